//! `relay`: TURN relay throughput over UDP.
//!
//! Setup: `allocations` clients (one UDP socket each) authenticate, Allocate,
//! CreatePermission and ChannelBind (channel 0x4000) to one of `peers` UDP
//! echo sockets of this very process. Load: a closed loop of `inflight`
//! ChannelData messages of `payload` bytes in total, handed out round-robin
//! over the allocations (so every allocation carries traffic). The server
//! relays each to the echo peer, the peer sends it straight back to the relay
//! address, and the server returns it to the client as ChannelData. An echoed
//! message frees its slot, which is refilled at once (or when the optional
//! `rate` token bucket allows). A slot unanswered after `timeout` counts as
//! lost and is refilled. The echo peer runs in the same thread and event loop
//! as the clients (no cross-thread wakeups on the load core); all I/O is
//! batched with recvmmsg/sendmmsg where the socket layout allows it (per
//! client socket for the clients, per echo socket for the peer).
//!
//! `ceiling` mode skips the server: each client socket is connected straight
//! to its echo socket and sends the same ChannelData bytes. That is the bare
//! ceiling of this load generator on its core for the same shape of load.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::binding::Rng;
use crate::net::{self, Batch, Epoll, Usage};
use crate::turn::{Client, Engine, Op};

pub struct Config {
    /// None: ceiling mode (no server).
    pub server: Option<SocketAddrV4>,
    pub allocations: usize,
    pub payload: usize,
    pub inflight: usize,
    /// Offered messages per second (0: as fast as the window allows).
    pub rate: f64,
    pub batch: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub peers: usize,
    /// Address the echo peers bind to.
    pub peer_ip: std::net::Ipv4Addr,
    /// Network namespace the echo peers live in (None: ours).
    pub peer_netns: Option<String>,
    pub user: String,
    pub password: String,
    pub parallel: usize,
    pub setup_timeout: Duration,
    pub server_pid: Option<u32>,
    pub progress: bool,
}

const CHANNEL: u16 = 0x4000;
/// Slot id (4 bytes) + nonce (8 bytes) at the start of every payload.
pub const MIN_PAYLOAD: usize = 12;

#[derive(Clone, Copy, Default)]
struct Counters {
    sent: u64,
    echoed: u64,
    timeouts: u64,
    stale: u64,
    bad: u64,
    peer_in: u64,
}

impl Counters {
    fn minus(self, b: Counters) -> Counters {
        Counters {
            sent: self.sent - b.sent,
            echoed: self.echoed - b.echoed,
            timeouts: self.timeouts - b.timeouts,
            stale: self.stale - b.stale,
            bad: self.bad - b.bad,
            peer_in: self.peer_in - b.peer_in,
        }
    }
}

#[derive(Clone, Copy)]
struct Slot {
    nonce: u64,
    sent_at: Instant,
    busy: bool,
    alloc: u32,
}

/// RTT histogram, 1 µs buckets up to 100 ms.
struct Hist {
    b: Vec<u32>,
    over: u64,
    n: u64,
}

impl Hist {
    fn new() -> Hist {
        Hist { b: vec![0; 100_000], over: 0, n: 0 }
    }
    fn clear(&mut self) {
        self.b.iter_mut().for_each(|x| *x = 0);
        self.over = 0;
        self.n = 0;
    }
    fn add(&mut self, d: Duration) {
        let us = d.as_micros() as usize;
        match self.b.get_mut(us) {
            Some(x) => *x += 1,
            None => self.over += 1,
        }
        self.n += 1;
    }
    /// Percentile in µs (100000 = at least 100 ms).
    fn pct(&self, p: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let want = ((self.n as f64) * p / 100.0).ceil().max(1.0) as u64;
        let mut acc = 0u64;
        for (us, &c) in self.b.iter().enumerate() {
            acc += c as u64;
            if acc >= want {
                return us as u64;
            }
        }
        self.b.len() as u64
    }
}

struct Sock {
    _s: UdpSocket,
    fd: RawFd,
}

pub fn run(cfg: &Config) -> io::Result<String> {
    let a_n = cfg.allocations.max(1);
    let payload = cfg.payload.max(MIN_PAYLOAD);
    // Echo peers.
    let echoes: Vec<UdpSocket> = net::in_netns(cfg.peer_netns.as_deref(), || {
        (0..cfg.peers.max(1)).map(|_| net::bound_socket(cfg.peer_ip, 4 << 20)).collect()
    })?;
    let peer_addrs: Vec<SocketAddrV4> = echoes
        .iter()
        .map(|s| match s.local_addr() {
            Ok(SocketAddr::V4(a)) => Ok(a),
            _ => Err(io::Error::other("echo socket has no IPv4 address")),
        })
        .collect::<io::Result<_>>()?;
    let k_n = peer_addrs.len();

    // Client sockets: through the server (after the TURN setup) or straight to the echo.
    let t0 = Instant::now();
    let socks: Vec<UdpSocket> = match cfg.server {
        Some(server) => {
            let clients = (0..a_n).map(|_| Client::new(server)).collect::<io::Result<Vec<_>>>()?;
            let mut eng = Engine::new(clients, &cfg.user, &cfg.password, false, Duration::from_millis(500), cfg.parallel)?;
            let peers: Vec<SocketAddr> = peer_addrs.iter().map(|&a| SocketAddr::V4(a)).collect();
            let plan = move |i: usize, s: usize| {
                let p = peers[i % peers.len()];
                match s {
                    0 => Some(Op::Allocate),
                    1 => Some(Op::CreatePermission(p)),
                    2 => Some(Op::ChannelBind(CHANNEL, p)),
                    _ => None,
                }
            };
            eng.drive(&plan, t0 + cfg.setup_timeout)?;
            let done = eng.done();
            if done < a_n {
                return Err(io::Error::other(format!(
                    "setup: only {done} of {a_n} allocations ready after {:.1}s (failed={} last_error={} retransmits={})",
                    t0.elapsed().as_secs_f64(),
                    eng.c.failed,
                    eng.c.last_error,
                    eng.c.retransmits
                )));
            }
            eng.clients.into_iter().map(|c| c.into_socket()).collect()
        }
        None => (0..a_n)
            .map(|i| net::connected_socket(peer_addrs[i % k_n], 1 << 20))
            .collect::<io::Result<_>>()?,
    };
    let setup_secs = t0.elapsed().as_secs_f64();
    let clients: Vec<Sock> = socks
        .into_iter()
        .map(|s| {
            let fd = s.as_raw_fd();
            Sock { _s: s, fd }
        })
        .collect();
    let echo_fds: Vec<RawFd> = echoes.iter().map(|s| s.as_raw_fd()).collect();

    let mut ep = Epoll::new(1024)?;
    for (i, c) in clients.iter().enumerate() {
        ep.add(c.fd, i as u64)?;
    }
    for (k, &fd) in echo_fds.iter().enumerate() {
        ep.add(fd, (a_n + k) as u64)?;
    }

    let b = cfg.batch.clamp(1, 1024);
    let msg_len = 4 + payload;
    let mut sb = Batch::new(b, msg_len, false);
    let mut rb = Batch::new(b, 2048, false);
    let mut eb = Batch::new(b, 2048, true);
    // Constant part of every message: ChannelData header and filler bytes.
    for j in 0..b {
        let m = sb.buf_mut(j);
        m[0..2].copy_from_slice(&CHANNEL.to_be_bytes());
        m[2..4].copy_from_slice(&(payload as u16).to_be_bytes());
        for (x, byte) in m[4 + MIN_PAYLOAD..].iter_mut().enumerate() {
            *byte = x as u8;
        }
        sb.set_len(j, msg_len);
    }

    let inflight = cfg.inflight.max(1);
    let start = Instant::now();
    let mut slots = vec![Slot { nonce: 0, sent_at: start, busy: false, alloc: 0 }; inflight];
    let mut free: Vec<u32> = (0..inflight as u32).rev().collect();
    let mut pending: Vec<u32> = Vec::with_capacity(b);
    let mut rng = Rng::seeded();
    let mut hist = Hist::new();
    let mut c = Counters::default();
    let mut rr = 0usize;
    let mut tokens = 0.0f64;
    let mut last_tokens = start;
    let warm_end = start + cfg.warmup;
    let end = warm_end + cfg.duration;
    let mut base: Option<(Counters, Usage)> = None;
    let mut ready: Vec<u64> = Vec::with_capacity(1024);
    let mut got_any = true;
    let mut last_scan = start;
    let (mut tick, mut tick_echoed) = (start, 0u64);

    loop {
        let now = Instant::now();
        if base.is_none() && now >= warm_end {
            hist.clear();
            base = Some((c, Usage::take(cfg.server_pid)));
        }
        if now >= end {
            break;
        }
        ep.wait(if got_any { Duration::ZERO } else { Duration::from_millis(1) }, &mut ready)?;
        got_any = false;
        let now = Instant::now();
        for &d in &ready {
            let d = d as usize;
            if d < a_n {
                // Echoed ChannelData back at client d.
                let fd = clients[d].fd;
                for _ in 0..4 {
                    let n = rb.recv(fd, b)?;
                    got_any |= n > 0;
                    for i in 0..n {
                        let Some(m) = rb.msg(i) else {
                            c.bad += 1;
                            continue;
                        };
                        if m.len() < 4 + MIN_PAYLOAD
                            || u16::from_be_bytes([m[0], m[1]]) != CHANNEL
                            || u16::from_be_bytes([m[2], m[3]]) as usize != payload
                            || m.len() < 4 + payload
                        {
                            c.bad += 1;
                            continue;
                        }
                        let tag = u32::from_be_bytes(m[4..8].try_into().unwrap()) as usize;
                        let nonce = u64::from_be_bytes(m[8..16].try_into().unwrap());
                        match slots.get_mut(tag) {
                            Some(s) if s.busy && s.nonce == nonce && s.alloc as usize == d => {
                                s.busy = false;
                                hist.add(now.duration_since(s.sent_at));
                                free.push(tag as u32);
                                c.echoed += 1;
                            }
                            _ => c.stale += 1,
                        }
                    }
                    if n < b {
                        break;
                    }
                }
            } else {
                // The echo peer: send every datagram back where it came from.
                let fd = echo_fds[d - a_n];
                for _ in 0..4 {
                    let n = eb.recv(fd, b)?;
                    got_any |= n > 0;
                    c.peer_in += n as u64;
                    for i in 0..n {
                        let len = eb.msg_len(i);
                        eb.set_len(i, len);
                    }
                    let mut done = 0;
                    let mut tries = 0;
                    while done < n && tries < 8 {
                        done += eb.send(fd, done, n - done)?;
                        tries += 1;
                    }
                    if n < b {
                        break;
                    }
                }
            }
        }

        // Refill free slots, round-robin over the allocations; consecutive
        // messages of one allocation go out in one sendmmsg.
        if cfg.rate > 0.0 {
            tokens = (tokens + cfg.rate * now.duration_since(last_tokens).as_secs_f64()).min((b as f64).max(cfg.rate * 0.002));
            last_tokens = now;
        }
        let mut cur = usize::MAX;
        'fill: loop {
            let want_more = !free.is_empty() && (cfg.rate <= 0.0 || tokens >= 1.0);
            let a = rr;
            if !pending.is_empty() && (!want_more || a != cur || pending.len() == b) {
                let k = pending.len();
                let sent = sb.send(clients[cur].fd, 0, k)?;
                for (j, &tag) in pending.iter().enumerate() {
                    if j < sent {
                        let s = &mut slots[tag as usize];
                        s.busy = true;
                        s.sent_at = now;
                        s.alloc = cur as u32;
                    } else {
                        free.push(tag);
                    }
                }
                c.sent += sent as u64;
                pending.clear();
                if sent < k {
                    break 'fill; // socket buffer full: retry next pass
                }
                continue;
            }
            if !want_more {
                break;
            }
            let tag = free.pop().unwrap();
            let nonce = rng.next();
            slots[tag as usize].nonce = nonce;
            let j = pending.len();
            let m = sb.buf_mut(j);
            m[4..8].copy_from_slice(&tag.to_be_bytes());
            m[8..16].copy_from_slice(&nonce.to_be_bytes());
            pending.push(tag);
            cur = a;
            rr = if rr + 1 >= a_n { 0 } else { rr + 1 };
            if cfg.rate > 0.0 {
                tokens -= 1.0;
            }
        }

        if now.duration_since(last_scan) >= Duration::from_millis(10) {
            last_scan = now;
            for (tag, s) in slots.iter_mut().enumerate() {
                if s.busy && now.duration_since(s.sent_at) >= cfg.timeout {
                    s.busy = false;
                    free.push(tag as u32);
                    c.timeouts += 1;
                }
            }
        }
        if cfg.progress && now.duration_since(tick) >= Duration::from_secs(1) {
            eprintln!(
                "t={:.1}s echoed_per_sec={:.0} timeouts={}",
                now.duration_since(start).as_secs_f64(),
                (c.echoed - tick_echoed) as f64 / now.duration_since(tick).as_secs_f64(),
                c.timeouts
            );
            (tick, tick_echoed) = (now, c.echoed);
        }
    }
    let (c0, u0) = base.unwrap_or_else(|| (c, Usage::take(cfg.server_pid)));
    let u1 = Usage::take(cfg.server_pid);
    let d = c.minus(c0);
    let secs = u0.secs_until(&u1);
    Ok(format!(
        "echoed_per_sec={:.0} mbit_per_sec={:.1} loss_pct={:.3} rtt_p50_us={} rtt_p99_us={} sent={} echoed={} \
         timeouts={} stale={} bad={} peer_in={} allocations={} payload={} inflight={} peers={} batch={} rate={} \
         setup_secs={:.2} mode={} {}",
        d.echoed as f64 / secs,
        d.echoed as f64 * payload as f64 * 8.0 / secs / 1e6,
        if d.sent > 0 { 100.0 * d.timeouts as f64 / d.sent as f64 } else { 0.0 },
        hist.pct(50.0),
        hist.pct(99.0),
        d.sent,
        d.echoed,
        d.timeouts,
        d.stale,
        d.bad,
        d.peer_in,
        a_n,
        payload,
        inflight,
        k_n,
        b,
        cfg.rate,
        setup_secs,
        if cfg.server.is_some() { "relay" } else { "ceiling" },
        u0.fields(&u1)
    ))
}
