//! TURN client side (RFC 8656 over UDP, long-term credentials, RFC 8489 §9.2),
//! built on ternd's own codec crate (`proto::wire`).
//!
//! [`Engine`] drives many clients at once, one UDP socket (one 5-tuple, one
//! allocation) each, one transaction in flight per client. Each client walks a
//! plan of requests (Allocate, CreatePermission, ChannelBind, Refresh, ...).
//! The first request goes out without credentials; the 401 (or a later 438)
//! supplies REALM and NONCE, which the client keeps and reuses for every later
//! request. Lost requests are retransmitted unchanged after `rto`.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use proto::wire::{attr, long_term_key, Class, ErrorCode, Message, MessageBuilder, MessageType, Method};

use crate::binding::Rng;
use crate::net::{self, Epoll};

/// Client ports for `fresh` sockets, used in sequence per client address, so
/// a 5-tuple only comes back after ~28000 cycles of that client.
const FRESH_PORT_MIN: u16 = 33000;
const FRESH_PORT_MAX: u16 = 60999;

/// REQUESTED-TRANSPORT value for UDP (RFC 8656 §18.7).
const UDP_TRANSPORT: u32 = 17 << 24;

#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// Allocate a UDP relay.
    Allocate,
    /// Refresh with this LIFETIME (0 deletes the allocation).
    Refresh(u32),
    CreatePermission(SocketAddr),
    ChannelBind(u16, SocketAddr),
}

impl Op {
    fn method(self) -> Method {
        match self {
            Op::Allocate => Method::ALLOCATE,
            Op::Refresh(_) => Method::REFRESH,
            Op::CreatePermission(_) => Method::CREATE_PERMISSION,
            Op::ChannelBind(..) => Method::CHANNEL_BIND,
        }
    }
}

/// Realm, nonce and the long-term key derived from them.
#[derive(Clone)]
struct Creds {
    realm: String,
    nonce: Vec<u8>,
    key: [u8; 16],
}

/// Writes `op` as a request into `buf`; with credentials when `creds` is set.
fn write_request(buf: &mut [u8], op: Op, tid: &[u8; 12], user: &str, creds: Option<&Creds>) -> usize {
    let ty = MessageType::new(op.method(), Class::Request);
    let mut b = MessageBuilder::new(buf, ty, tid).expect("buffer");
    match op {
        Op::Allocate => b.add_u32(attr::REQUESTED_TRANSPORT, UDP_TRANSPORT).expect("buffer"),
        Op::Refresh(lifetime) => b.add_u32(attr::LIFETIME, lifetime).expect("buffer"),
        Op::CreatePermission(peer) => b.add_xor_address(attr::XOR_PEER_ADDRESS, peer).expect("buffer"),
        Op::ChannelBind(ch, peer) => {
            b.add_u32(attr::CHANNEL_NUMBER, (ch as u32) << 16).expect("buffer");
            b.add_xor_address(attr::XOR_PEER_ADDRESS, peer).expect("buffer");
        }
    }
    if let Some(c) = creds {
        b.add_bytes(attr::USERNAME, user.as_bytes()).expect("buffer");
        b.add_bytes(attr::REALM, c.realm.as_bytes()).expect("buffer");
        b.add_bytes(attr::NONCE, &c.nonce).expect("buffer");
        b.add_message_integrity(&c.key).expect("buffer");
    }
    b.finish()
}

enum Reply {
    Ok { relayed: Option<SocketAddr> },
    /// 401 or 438 carrying a NONCE (and usually a REALM).
    Challenge { code: u16, realm: Option<String>, nonce: Vec<u8> },
    Error(u16),
}

fn parse_reply(buf: &[u8]) -> Option<([u8; 12], Reply)> {
    let m = Message::parse(buf).ok()?;
    let tid = m.transaction_id();
    let reply = match m.message_type().class {
        Class::Success => Reply::Ok {
            relayed: m
                .get(attr::XOR_RELAYED_ADDRESS)
                .and_then(|v| attr::decode_address(v, Some(&tid)).ok()),
        },
        Class::Error => {
            let code = m.get(attr::ERROR_CODE).and_then(ErrorCode::decode).map(|(c, _)| c.0).unwrap_or(0);
            match (code, m.get(attr::NONCE)) {
                (401 | 438, Some(nonce)) => Reply::Challenge {
                    code,
                    realm: m.get(attr::REALM).map(|r| String::from_utf8_lossy(r).into_owned()),
                    nonce: nonce.to_vec(),
                },
                _ => Reply::Error(code),
            }
        }
        _ => return None,
    };
    Some((tid, reply))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not started yet (waits for a free place among `parallel`).
    Idle,
    Waiting,
    Done,
    Failed,
}

pub struct Client {
    /// Usually one socket (one 5-tuple). `alloc` gives each client a pool and
    /// moves to the next socket after each cycle, so a 5-tuple is only reused
    /// long after its allocation was deleted.
    socks: Vec<UdpSocket>,
    cur: usize,
    creds: Option<Creds>,
    step: usize,
    state: State,
    tid: [u8; 12],
    out: Vec<u8>,
    out_len: usize,
    sent_at: Instant,
    tries: u32,
    challenges_in_row: u32,
    /// Setup: sockets replaced after a 437 (bounded).
    renewals: u32,
    /// XOR-RELAYED-ADDRESS of the last successful Allocate.
    pub relayed: Option<SocketAddr>,
}

impl Client {
    pub fn new(server: SocketAddrV4) -> io::Result<Client> {
        Client::with_pool(server, 1)
    }

    pub fn with_pool(server: SocketAddrV4, n: usize) -> io::Result<Client> {
        let socks = (0..n.max(1))
            .map(|_| net::connected_socket(server, 1 << 20))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Client {
            socks,
            cur: 0,
            creds: None,
            step: 0,
            state: State::Idle,
            tid: [0; 12],
            out: vec![0u8; 512],
            out_len: 0,
            sent_at: Instant::now(),
            tries: 0,
            challenges_in_row: 0,
            renewals: 0,
            relayed: None,
        })
    }

    /// The socket in use (the first one unless this client has a pool).
    pub fn into_socket(mut self) -> UdpSocket {
        self.socks.swap_remove(self.cur)
    }

    fn sock(&self) -> &UdpSocket {
        &self.socks[self.cur]
    }

    fn rotate(&mut self) {
        self.cur = (self.cur + 1) % self.socks.len();
    }

    /// Replace the current socket with a new one bound to `local` (a new
    /// 5-tuple); ports another socket holds are skipped.
    fn renew(&mut self, ep: &Epoll, id: u64, ip: std::net::Ipv4Addr, port: &mut u16) -> io::Result<()> {
        let server = match self.sock().peer_addr()? {
            std::net::SocketAddr::V4(a) => a,
            _ => return Err(io::Error::other("IPv4 only")),
        };
        let mut last = None;
        for _ in 0..64 {
            let p = *port;
            *port = if p >= FRESH_PORT_MAX { FRESH_PORT_MIN } else { p + 1 };
            match UdpSocket::bind(SocketAddrV4::new(ip, p)) {
                Ok(s) => {
                    s.connect(server)?;
                    s.set_nonblocking(true)?;
                    ep.add(s.as_raw_fd(), id)?;
                    // Closing the old socket also removes it from the epoll set.
                    self.socks[self.cur] = s;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free port")))
    }
}

#[derive(Clone, Copy, Default, Debug)]
pub struct Counters {
    /// Requests sent, retransmissions included.
    pub requests: u64,
    pub responses: u64,
    pub successes: u64,
    /// Completed plans (one Allocate + Refresh(0) cycle for `alloc`).
    pub cycles: u64,
    /// 401/438 answers carrying a (new) nonce.
    pub challenges: u64,
    /// Other error responses.
    pub errors: u64,
    /// Retransmissions after `rto` without an answer.
    pub retransmits: u64,
    /// Clients given up (too many retransmissions, errors or challenges).
    pub failed: u64,
    /// Responses that matched no outstanding transaction (late duplicates).
    pub stale: u64,
    pub last_error: u16,
}

impl Counters {
    pub fn minus(self, b: Counters) -> Counters {
        Counters {
            requests: self.requests - b.requests,
            responses: self.responses - b.responses,
            successes: self.successes - b.successes,
            cycles: self.cycles - b.cycles,
            challenges: self.challenges - b.challenges,
            errors: self.errors - b.errors,
            retransmits: self.retransmits - b.retransmits,
            failed: self.failed - b.failed,
            stale: self.stale - b.stale,
            last_error: self.last_error,
        }
    }
}

/// The plan: which request client `i` sends at step `s` (None = plan done).
pub type Plan = dyn Fn(usize, usize) -> Option<Op>;

pub struct Engine {
    pub clients: Vec<Client>,
    user: String,
    password: String,
    /// Loop: start the plan again after its last step (the `alloc` load).
    looping: bool,
    /// Looping only: a new socket (5-tuple) for every cycle instead of the pool.
    pub fresh: bool,
    fresh_ports: Vec<u16>,
    rto: Duration,
    max_tries: u32,
    parallel: usize,
    next_idle: usize,
    active: Vec<usize>,
    ep: Epoll,
    rng: Rng,
    pub c: Counters,
    recv_buf: Vec<u8>,
    ready: Vec<u64>,
}

impl Engine {
    pub fn new(
        clients: Vec<Client>,
        user: &str,
        password: &str,
        looping: bool,
        rto: Duration,
        parallel: usize,
    ) -> io::Result<Engine> {
        let ep = Epoll::new(1024)?;
        for (i, c) in clients.iter().enumerate() {
            for (k, s) in c.socks.iter().enumerate() {
                ep.add(s.as_raw_fd(), ((i as u64) << 20) | k as u64)?;
            }
        }
        let n = clients.len();
        Ok(Engine {
            clients,
            user: user.to_string(),
            password: password.to_string(),
            looping,
            fresh: false,
            fresh_ports: vec![FRESH_PORT_MIN; n],
            rto,
            max_tries: 6,
            parallel: parallel.max(1),
            next_idle: 0,
            active: Vec::new(),
            ep,
            rng: Rng::seeded(),
            c: Counters::default(),
            recv_buf: vec![0u8; 2048],
            ready: Vec::new(),
        })
    }

    /// Clients that finished their plan (setup mode).
    pub fn done(&self) -> usize {
        self.clients.iter().filter(|c| c.state == State::Done).count()
    }

    fn send_step(&mut self, i: usize, plan: &Plan, now: Instant) {
        let cl = &mut self.clients[i];
        let Some(op) = plan(i, cl.step) else {
            cl.state = State::Done;
            return;
        };
        let a = self.rng.next().to_be_bytes();
        let b = self.rng.next().to_be_bytes();
        cl.tid[..8].copy_from_slice(&a);
        cl.tid[8..].copy_from_slice(&b[..4]);
        cl.out_len = write_request(&mut cl.out, op, &cl.tid, &self.user, cl.creds.as_ref());
        cl.tries = 0;
        cl.state = State::Waiting;
        self.transmit(i, now);
    }

    fn transmit(&mut self, i: usize, now: Instant) {
        let cl = &mut self.clients[i];
        cl.sent_at = now;
        cl.tries += 1;
        // A full socket buffer or ICMP error is handled like a loss: the
        // retransmission timer resends it.
        let _ = cl.sock().send(&cl.out[..cl.out_len]);
        self.c.requests += 1;
    }

    /// Looping: move client `i` to its next 5-tuple (next pool socket, or a new socket).
    fn next_tuple(&mut self, i: usize) {
        let cl = &mut self.clients[i];
        if self.fresh {
            let id = ((i as u64) << 20) | cl.cur as u64;
            // Client i keeps one address of its own, 127.1.x.y, so its nonce
            // stays valid for servers that bind nonces to the client's IP.
            let ip = std::net::Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
            let port = &mut self.fresh_ports[i];
            if let Err(e) = cl.renew(&self.ep, id, ip, port) {
                eprintln!("ternd-loadgen: new client socket: {e}");
                self.fail(i);
            }
        } else {
            cl.rotate();
        }
    }

    fn fail(&mut self, i: usize) {
        self.clients[i].state = State::Failed;
        self.c.failed += 1;
    }

    /// Advance client `i` past a successful step.
    fn advance(&mut self, i: usize, plan: &Plan, now: Instant) {
        let cl = &mut self.clients[i];
        cl.step += 1;
        if plan(i, cl.step).is_none() {
            self.c.cycles += 1;
            if self.looping {
                cl.step = 0;
                self.next_tuple(i);
            } else {
                cl.state = State::Done;
                return;
            }
        }
        self.send_step(i, plan, now);
    }

    fn on_reply(&mut self, i: usize, k: usize, len: usize, plan: &Plan, now: Instant) {
        let Some((tid, reply)) = parse_reply(&self.recv_buf[..len]) else { return };
        let cl = &mut self.clients[i];
        if cl.state != State::Waiting || tid != cl.tid || k != cl.cur {
            self.c.stale += 1;
            return;
        }
        self.c.responses += 1;
        match reply {
            Reply::Ok { relayed } => {
                self.c.successes += 1;
                cl.challenges_in_row = 0;
                if relayed.is_some() {
                    cl.relayed = relayed;
                }
                self.advance(i, plan, now);
            }
            Reply::Challenge { code, realm, nonce } => {
                self.c.challenges += 1;
                cl.challenges_in_row += 1;
                // 401 with credentials already sent twice in a row means they are wrong.
                if cl.challenges_in_row > 3 {
                    self.c.last_error = code;
                    self.fail(i);
                    return;
                }
                let realm = realm.or_else(|| cl.creds.as_ref().map(|c| c.realm.clone())).unwrap_or_default();
                let key = match &cl.creds {
                    Some(c) if c.realm == realm => c.key,
                    _ => long_term_key(&self.user, &realm, &self.password),
                };
                cl.creds = Some(Creds { realm, nonce, key });
                self.send_step(i, plan, now);
            }
            Reply::Error(code) => {
                self.c.errors += 1;
                self.c.last_error = code;
                if !self.looping && code == 437 && matches!(plan(i, cl.step), Some(Op::Allocate)) && cl.renewals < 16 {
                    cl.renewals += 1;
                    // This 5-tuple still has an allocation on the server (left over
                    // from an earlier run that used the same port): take a new port.
                    let id = ((i as u64) << 20) | cl.cur as u64;
                    let server = cl.sock().peer_addr().ok();
                    let fresh = server.and_then(|a| match a {
                        std::net::SocketAddr::V4(a) => net::connected_socket(a, 1 << 20).ok(),
                        _ => None,
                    });
                    match fresh.map(|s| self.ep.add(s.as_raw_fd(), id).map(|_| s)) {
                        Some(Ok(s)) => {
                            let c = &mut self.clients[i];
                            c.socks[c.cur] = s;
                            self.send_step(i, plan, now);
                        }
                        _ => self.fail(i),
                    }
                } else if self.looping {
                    // Not a completed cycle. Start over on the next socket of
                    // the pool (a 437 means this 5-tuple still has an allocation).
                    cl.step = 0;
                    self.next_tuple(i);
                    self.send_step(i, plan, now);
                } else {
                    self.fail(i);
                }
            }
        }
    }

    /// Run until `until`, or (setup mode) until every client is done or failed.
    pub fn drive(&mut self, plan: &Plan, until: Instant) -> io::Result<()> {
        let mut last_scan = Instant::now();
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            // Start idle clients while there is room.
            self.active.retain(|&i| self.clients[i].state == State::Waiting);
            while self.active.len() < self.parallel && self.next_idle < self.clients.len() {
                let i = self.next_idle;
                self.next_idle += 1;
                if self.clients[i].state == State::Idle {
                    self.send_step(i, plan, now);
                    if self.clients[i].state == State::Waiting {
                        self.active.push(i);
                    }
                }
            }
            if self.active.is_empty() && self.next_idle >= self.clients.len() {
                return Ok(());
            }
            let mut ready = std::mem::take(&mut self.ready);
            self.ep.wait(Duration::from_millis(5), &mut ready)?;
            for &d in &ready {
                let (i, k) = ((d >> 20) as usize, (d & 0xF_FFFF) as usize);
                for _ in 0..8 {
                    let n = match self.clients[i].socks[k].recv(&mut self.recv_buf) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => continue, // ICMP error surfaced on the connected socket
                    };
                    self.on_reply(i, k, n, plan, now);
                }
            }
            self.ready = ready;
            if now.duration_since(last_scan) >= Duration::from_millis(10) {
                last_scan = now;
                for k in 0..self.active.len() {
                    let i = self.active[k];
                    let cl = &self.clients[i];
                    if cl.state == State::Waiting && now.duration_since(cl.sent_at) >= self.rto {
                        if cl.tries >= self.max_tries {
                            if self.looping {
                                // Give this transaction up, start the cycle over.
                                self.c.retransmits += 1;
                                self.clients[i].step = 0;
                                self.next_tuple(i);
                                self.send_step(i, plan, now);
                            } else {
                                self.fail(i);
                            }
                        } else {
                            self.c.retransmits += 1;
                            self.transmit(i, now);
                        }
                    }
                }
            }
        }
    }
}
