//! `binding`: closed-loop STUN Binding load over UDP.
//!
//! `sockets` connected UDP sockets, each with `window` slots. A free slot is
//! (re)filled with a fresh Binding request whose transaction id is
//! (slot index, random nonce); a Binding success response with a matching id
//! frees it again. A slot unanswered for `timeout` is counted as a timeout
//! and re-sent with a new nonce, so lost datagrams never shrink the window.
//! I/O is batched with recvmmsg/sendmmsg; one thread drives all sockets.

use std::fmt;
use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::net::{self, Batch};
use crate::stun;

pub struct Config {
    pub server: SocketAddrV4,
    pub duration: Duration,
    pub warmup: Duration,
    pub sockets: usize,
    pub window: usize,
    pub batch: usize,
    /// Send each socket's requests of a pass as one UDP GSO message (they
    /// are all 20 bytes to one server): the load core then spends less per
    /// request and can drive a faster server harder.
    pub gso: bool,
    pub timeout: Duration,
    /// Offered requests/s (token bucket over the refills); 0 = the window
    /// alone limits the load (closed loop).
    pub rate: f64,
    /// Print answered/s for every second of the run on stderr.
    pub progress: bool,
    /// Also report the CPU use of this process (the server under test).
    pub server_pid: Option<u32>,
}

#[derive(Clone, Copy, Default)]
struct Counters {
    sent: u64,
    received: u64,
    answered: u64,
    timeouts: u64,
    stale: u64,
    bad: u64,
}

impl Counters {
    fn minus(self, b: Counters) -> Counters {
        Counters {
            sent: self.sent - b.sent,
            received: self.received - b.received,
            answered: self.answered - b.answered,
            timeouts: self.timeouts - b.timeouts,
            stale: self.stale - b.stale,
            bad: self.bad - b.bad,
        }
    }
}

pub struct Report {
    c: Counters,
    elapsed: Duration,
    cpu: Duration,
    cfg: (usize, usize, usize),
    /// Per-CPU busy share over the measured interval (all processes).
    cpus: Vec<f64>,
    /// Whole machine (busy, softirq) in percent of one core: softirq is
    /// where XDP and the receive path land, charged to no process.
    machine: (f64, f64),
    rcvbuf_errors: u64,
    server_cpu: Option<Duration>,
}

struct Snapshot {
    c: Counters,
    at: Instant,
    cpu: Duration,
    jiffies: Vec<(u64, u64)>,
    machine: (u64, u64, u64),
    rcvbuf_errors: u64,
    server_cpu: Option<Duration>,
}

impl Snapshot {
    fn take(c: Counters, server_pid: Option<u32>) -> Snapshot {
        Snapshot {
            server_cpu: server_pid.and_then(net::process_cpu_time),
            c,
            at: Instant::now(),
            cpu: net::cpu_time(),
            jiffies: net::cpu_jiffies(),
            machine: net::machine_jiffies(),
            rcvbuf_errors: net::udp_rcvbuf_errors(),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "answered_per_sec={:.0} sent={} received={} answered={} timeouts={} stale={} bad={} \
             elapsed={:.3} gen_cpu_pct={:.1} udp_rcvbuf_errors={} sockets={} window={} batch={}",
            self.c.answered as f64 / secs,
            self.c.sent,
            self.c.received,
            self.c.answered,
            self.c.timeouts,
            self.c.stale,
            self.c.bad,
            secs,
            100.0 * self.cpu.as_secs_f64() / secs,
            self.rcvbuf_errors,
            self.cfg.0,
            self.cfg.1,
            self.cfg.2,
        )?;
        if let Some(sc) = self.server_cpu {
            write!(f, " server_cpu_pct={:.1}", 100.0 * sc.as_secs_f64() / secs)?;
        }
        for (i, b) in self.cpus.iter().enumerate() {
            write!(f, " cpu{i}_busy_pct={b:.1}")?;
        }
        write!(f, " machine_busy_pct={:.1} machine_softirq_pct={:.1}", self.machine.0, self.machine.1)
    }
}

#[derive(Clone, Copy)]
struct Slot {
    nonce: u64,
    sent_at: Instant,
    busy: bool,
}

struct Sock {
    _sock: UdpSocket,
    fd: RawFd,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

/// xorshift64*: transaction-id nonces only, not for anything secret.
pub struct Rng(u64);
impl Rng {
    pub fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng((t ^ ((std::process::id() as u64) << 32)) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const RECV_CAP: usize = 2048;
const SCAN_EVERY: Duration = Duration::from_millis(10);
const IDLE_POLL: Duration = Duration::from_millis(1);

pub fn run(cfg: &Config) -> io::Result<Report> {
    let start = Instant::now();
    let mut socks = Vec::with_capacity(cfg.sockets);
    for _ in 0..cfg.sockets {
        let s = net::connected_socket(cfg.server, 4 << 20)?;
        let fd = s.as_raw_fd();
        socks.push(Sock {
            _sock: s,
            fd,
            slots: vec![Slot { nonce: 0, sent_at: start, busy: false }; cfg.window],
            free: (0..cfg.window as u32).rev().collect(),
        });
    }
    let mut pfds: Vec<libc::pollfd> = socks.iter().map(|s| net::pollfd(s.fd)).collect();
    let mut rb = Batch::new(cfg.batch, RECV_CAP, false);
    let mut sb = Batch::new(cfg.batch, stun::HEADER_LEN, false);
    let mut rng = Rng::seeded();
    let b = cfg.batch;

    let warm_end = start + cfg.warmup;
    let end = warm_end + cfg.duration;
    let mut c = Counters::default();
    let mut base: Option<Snapshot> = None;
    let mut last_scan = start;
    let (mut tick, mut tick_answered) = (start, 0u64);
    // Requests the rate still allows (unbounded in closed loop); at most
    // 1 ms worth plus a batch may pile up.
    let (mut tokens, mut last_fill) = (0.0f64, start);

    loop {
        let now = Instant::now();
        if base.is_none() && now >= warm_end {
            base = Some(Snapshot::take(c, cfg.server_pid));
        }
        if now >= end {
            break;
        }
        if cfg.rate > 0.0 {
            let dt = now.duration_since(last_fill).as_secs_f64();
            tokens = (tokens + dt * cfg.rate).min(cfg.rate / 1000.0 + b as f64);
            last_fill = now;
        } else {
            tokens = f64::MAX;
        }
        let mut got = 0usize;
        for s in socks.iter_mut() {
            // Drain responses (bounded: a few batches per socket per pass).
            for _ in 0..4 {
                let n = rb.recv(s.fd, b)?;
                for i in 0..n {
                    c.received += 1;
                    match rb.msg(i).and_then(|m| stun::parse_header(m, stun::BINDING_SUCCESS)) {
                        Some((tag, nonce)) => match s.slots.get_mut(tag as usize) {
                            Some(slot) if slot.busy && slot.nonce == nonce => {
                                slot.busy = false;
                                s.free.push(tag);
                                c.answered += 1;
                            }
                            _ => c.stale += 1,
                        },
                        None => c.bad += 1,
                    }
                }
                got += n;
                if n < b {
                    break;
                }
            }
            // Refill every free slot.
            while !s.free.is_empty() && tokens >= 1.0 {
                let k = s.free.len().min(b).min(tokens as usize);
                let top = s.free.len() - 1;
                for j in 0..k {
                    let tag = s.free[top - j];
                    let nonce = rng.next();
                    let len = stun::write_binding_request(sb.buf_mut(j), tag, nonce);
                    sb.set_len(j, len);
                    s.slots[tag as usize].nonce = nonce;
                }
                let sent = if cfg.gso && k > 1 {
                    sb.send_gso(s.fd, k, stun::HEADER_LEN as u16)?
                } else {
                    sb.send(s.fd, 0, k)?
                };
                for _ in 0..sent {
                    let tag = s.free.pop().unwrap();
                    let slot = &mut s.slots[tag as usize];
                    slot.busy = true;
                    slot.sent_at = now;
                }
                c.sent += sent as u64;
                tokens -= sent as f64;
                if sent < k {
                    break; // socket buffer full: retry next pass
                }
            }
        }
        if cfg.progress && now.duration_since(tick) >= Duration::from_secs(1) {
            let secs = now.duration_since(tick).as_secs_f64();
            eprintln!(
                "t={:.1}s answered_per_sec={:.0} timeouts={}",
                now.duration_since(start).as_secs_f64(),
                (c.answered - tick_answered) as f64 / secs,
                c.timeouts
            );
            (tick, tick_answered) = (now, c.answered);
        }
        if now.duration_since(last_scan) >= SCAN_EVERY {
            last_scan = now;
            for s in socks.iter_mut() {
                for (tag, slot) in s.slots.iter_mut().enumerate() {
                    if slot.busy && now.duration_since(slot.sent_at) >= cfg.timeout {
                        slot.busy = false;
                        s.free.push(tag as u32);
                        c.timeouts += 1;
                    }
                }
            }
        }
        if got == 0 {
            net::poll_in(&mut pfds, IDLE_POLL);
        }
    }
    let b = base.unwrap_or_else(|| Snapshot::take(c, cfg.server_pid));
    let e = Snapshot::take(c, cfg.server_pid);
    let cpus = net::busy_pcts(&b.jiffies, &e.jiffies);
    let per_cpu = (e.machine.2.saturating_sub(b.machine.2) as f64 / e.jiffies.len().max(1) as f64).max(1.0);
    let machine = (
        100.0 * e.machine.0.saturating_sub(b.machine.0) as f64 / per_cpu,
        100.0 * e.machine.1.saturating_sub(b.machine.1) as f64 / per_cpu,
    );
    Ok(Report {
        machine,
        c: e.c.minus(b.c),
        elapsed: e.at.duration_since(b.at),
        cpu: e.cpu.saturating_sub(b.cpu),
        cfg: (cfg.sockets, cfg.window, cfg.batch),
        cpus,
        rcvbuf_errors: e.rcvbuf_errors.saturating_sub(b.rcvbuf_errors),
        server_cpu: match (b.server_cpu, e.server_cpu) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x)),
            _ => None,
        },
    })
}
