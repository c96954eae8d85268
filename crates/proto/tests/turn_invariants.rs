//! Property test: random sequences of TURN operations from several clients,
//! with time jumps, bind failures, binds answered late and closed
//! connections, keep the core's invariants after every step. A small seeded
//! generator drives it, so a failure reproduces exactly (the seed and step
//! are in the panic message).

mod common;
mod rng;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use proto::quota::Quotas;
use proto::wire::{attr, Class, Method};
use proto::{canonical, Event, FiveTuple, RelayId, Transport};
use rng::Rng;

const SEEDS: [u64; 5] = [1, 2, 0xDEAD_BEEF, 0x005E_ED0F_7E57, 0x0123_4567_89AB_CDEF];
const STEPS: usize = 4000;

const PEERS: &[&str] = &[
    PEER_A,
    PEER_B,
    "93.184.216.34:9999",
    PEER_V6,
    "[2606:4700::1111]:7001",
    "127.0.0.1:80",
    "10.1.0.1:50000",
    "[::ffff:93.184.216.34]:5000",
];

/// What the test believes about the server, to check outputs against.
struct Model {
    /// Permissions granted: (client, peer IP) -> expiry.
    permissions: HashMap<(FiveTuple, IpAddr), Instant>,
    /// Reservation tokens handed out, with when.
    tokens: Vec<([u8; 8], Instant)>,
    /// Events already looked at.
    seen_events: usize,
    created: usize,
    closed: usize,
}

struct Fuzz {
    rng: Rng,
    d: Driver,
    clients: Vec<Client>,
    quotas: Arc<Quotas>,
    model: Model,
}

impl Fuzz {
    fn new(seed: u64) -> Self {
        let quotas = Arc::new(Quotas::new(6, 3));
        let q = quotas.clone();
        let d = Driver::with(|c| {
            c.quotas = q;
            c.bandwidth_limit = 20_000;
            c.unauthenticated_rate = 50;
            c.rng_seed = proto::seed_from_u64(seed);
            c.relay_icmp = seed % 2 == 0;
        });
        let clients = vec![
            Client::new("198.51.100.1:40000", Transport::Udp, ALICE),
            Client::new("198.51.100.1:40001", Transport::Udp, ALICE),
            Client::new("198.51.100.2:40000", Transport::Tcp, ALICE),
            Client::new("198.51.100.3:40000", Transport::Udp, BOB),
            Client::new("[2001:db8:9::1]:40000", Transport::Tls, BOB),
            Client::new("198.51.100.4:40000", Transport::Tcp, BOB),
        ];
        Fuzz {
            rng: Rng(seed | 1),
            d,
            clients,
            quotas,
            model: Model {
                permissions: HashMap::new(),
                tokens: Vec::new(),
                seen_events: 0,
                created: 0,
                closed: 0,
            },
        }
    }

    /// A signed request, retried once with the fresh nonce of a 438.
    fn request(&mut self, i: usize, method: Method, attrs: &[A]) -> Out {
        let mut c = self.clients[i].clone();
        let mut out = self.d.request(&mut c, method, attrs);
        if let Out::Reply(r) = &out {
            if r.code() == Some(438) {
                c.nonce = r.nonce();
                out = self.d.request(&mut c, method, attrs);
            }
        }
        self.clients[i] = c;
        out
    }

    /// Mostly the well-behaved peers, so that data flows; sometimes any.
    fn random_peer(&mut self) -> SocketAddr {
        let n = if self.rng.chance(4) { PEERS.len() } else { 3 };
        addr(PEERS[self.rng.below(n as u64) as usize])
    }

    fn step(&mut self) {
        let i = self.rng.below(self.clients.len() as u64) as usize;
        let tuple = self.clients[i].tuple;
        match self.rng.below(100) {
            0..=11 => {
                let mut attrs = vec![transport_udp()];
                match self.rng.below(8) {
                    0 => attrs.push(lifetime(self.rng.below(4000) as u32)),
                    1 => attrs.push(family(*self.rng.pick(&[1, 2, 3]))),
                    2 => attrs.push(A::Bytes(attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])),
                    3 => attrs.push(A::Bytes(attr::EVEN_PORT, vec![*self.rng.pick(&[0, 0x80])])),
                    4 => {
                        let token = match self.model.tokens.last() {
                            Some((t, _)) if !self.rng.chance(4) => *t,
                            _ => self.rng.next().to_be_bytes(),
                        };
                        attrs.push(A::Bytes(attr::RESERVATION_TOKEN, token.to_vec()));
                    }
                    5 => attrs.push(A::Bytes(attr::DONT_FRAGMENT, vec![])),
                    _ => {}
                }
                if self.rng.chance(15) {
                    self.d.auto_bind = false;
                } else if self.rng.chance(6) {
                    self.d.fail_binds = self.rng.below(10) as u32;
                }
                let out = self.request(i, Method::ALLOCATE, &attrs);
                self.d.auto_bind = true;
                self.d.fail_binds = 0;
                if let Out::Reply(r) = out {
                    self.note_allocate(&r);
                }
            }
            12..=19 => {
                let secs = *self.rng.pick(&[0, 1, 600, 1200, 3600, 99_999]);
                let mut attrs = vec![lifetime(secs)];
                // One family of a dual allocation (RFC 8656 §8.1), or a mismatch.
                if self.rng.chance(3) {
                    attrs.push(family(*self.rng.pick(&[1, 2])));
                }
                self.request(i, Method::REFRESH, &attrs);
            }
            20..=29 => {
                let n = if self.rng.chance(4) { 1 + self.rng.below(3) } else { 1 };
                let peers: Vec<SocketAddr> = (0..n).map(|_| self.random_peer()).collect();
                let attrs: Vec<A> = peers.iter().map(|p| peer(*p)).collect();
                if let Out::Reply(r) = self.request(i, Method::CREATE_PERMISSION, &attrs) {
                    if r.class() == Class::Success {
                        for p in peers {
                            self.model
                                .permissions
                                .insert((tuple, p.ip()), self.d.now + Duration::from_secs(300));
                        }
                    }
                }
            }
            30..=37 => {
                let number = *self.rng.pick(&[0x4000, 0x4000, 0x4001, 0x4002, 0x4FFF, 0x3FFF, 0x5000]);
                let p = self.random_peer();
                if let Out::Reply(r) = self.request(i, Method::CHANNEL_BIND, &[channel(number), peer(p)]) {
                    if r.class() == Class::Success {
                        self.model
                            .permissions
                            .insert((tuple, p.ip()), self.d.now + Duration::from_secs(300));
                    }
                }
            }
            38..=49 => {
                let p = self.random_peer();
                let len = self.rng.below(300) as usize;
                let c = self.clients[i].clone();
                let out = self.d.send_indication(&c, p, &vec![0x5A; len]);
                self.check_to_peer(tuple, out);
            }
            50..=61 => {
                let number = *self.rng.pick(&[0x4000, 0x4000, 0x4001, 0x4002, 0x4FFF, 0x5000]);
                let len = self.rng.below(300) as usize;
                let c = self.clients[i].clone();
                let out = self.d.channel_data(&c, number, &vec![0xC3; len]);
                self.check_to_peer(tuple, out);
            }
            62..=73 => {
                let mine = self.d.relays_of(&tuple);
                let relay = match mine.first() {
                    Some(&(r, _)) if !self.rng.chance(5) => r,
                    _ => RelayId(self.rng.below(12) as u32),
                };
                let p = self.random_peer();
                let len = self.rng.below(300) as usize;
                // Now and then an ICMP error about a datagram to `p` instead
                // (RFC 8656 §11.5), held to the same rules.
                let out = if self.rng.chance(4) {
                    let icmp = proto::PeerIcmp {
                        typ: *self.rng.pick(&[1, 2, 3, 4, 11, 128]),
                        code: self.rng.below(16) as u8,
                        mtu: self.rng.below(2000) as u32,
                    };
                    self.d.peer_icmp(relay, p, icmp)
                } else {
                    self.d.peer_datagram(relay, p, &vec![0x11; len])
                };
                if let PeerOut::ToClient { tuple, .. } = out {
                    let owner = self.d.relays_of(&tuple);
                    assert!(
                        owner.iter().any(|(r, _)| *r == relay),
                        "data from a relay of another allocation"
                    );
                    self.assert_permitted(tuple, canonical(p).ip());
                }
            }
            74..=79 => {
                let len = self.rng.below(64) as usize;
                let mut junk: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
                if let Some(b) = junk.first_mut() {
                    *b &= *self.rng.pick(&[0x3F, 0x7F, 0xFF]);
                }
                let out = self.d.input(tuple, &junk);
                assert!(!matches!(out, Out::ToPeer { .. }) || junk[0] & 0xC0 == 0x40);
                self.check_to_peer(tuple, out);
            }
            80..=89 => {
                let secs = match self.rng.below(10) {
                    0..=6 => self.rng.below(5),
                    7..=8 => 5 + self.rng.below(300),
                    _ => 300 + self.rng.below(1700),
                };
                let ms = self.rng.below(1000);
                self.d.advance_by(Duration::from_secs(secs) + Duration::from_millis(ms));
            }
            90..=93 => {
                if tuple.transport != Transport::Udp {
                    self.d.server.connection_closed(self.d.now, tuple);
                    self.d.pump();
                }
            }
            _ => self.d.release_held_binds(),
        }
        self.observe();
    }

    fn note_allocate(&mut self, r: &Resp) {
        if let Some(t) = r.get(attr::RESERVATION_TOKEN) {
            self.model.tokens.push((t.try_into().unwrap(), self.d.now));
        }
    }

    fn check_to_peer(&mut self, tuple: FiveTuple, out: Out) {
        if let Out::ToPeer { relay, peer, .. } = out {
            let relays = self.d.relays_of(&tuple);
            let (_, local) = relays
                .iter()
                .find(|(r, _)| *r == relay)
                .copied()
                .expect("ToPeer from a relay of the sender's allocation");
            assert_eq!(local.is_ipv4(), peer.is_ipv4(), "relay family matches the peer");
            self.assert_permitted(tuple, peer.ip());
        }
    }

    #[track_caller]
    fn assert_permitted(&self, tuple: FiveTuple, ip: IpAddr) {
        let exp = self.model.permissions.get(&(tuple, ip));
        assert!(
            exp.is_some_and(|e| self.d.now < *e),
            "relayed for {ip} without a live permission (model: {exp:?}, now {:?})",
            self.d.now - self.d.t0
        );
    }

    /// Reads new events and the deferred Allocate answers into the model.
    fn observe(&mut self) {
        let new: Vec<Event> = self.d.events[self.model.seen_events..].to_vec();
        self.model.seen_events = self.d.events.len();
        for e in new {
            match e {
                Event::AllocationCreated { .. } => self.model.created += 1,
                Event::AuthRefused { .. } => {}
                Event::AllocationClosed { tuple, .. } => {
                    self.model.closed += 1;
                    self.model.permissions.retain(|(t, _), _| *t != tuple);
                }
                // One family ended: its permissions went with it.
                Event::RelayClosed { tuple, relay, .. } => {
                    let gone = |ip: &IpAddr| ip.to_canonical().is_ipv4() == relay.is_ipv4();
                    self.model.permissions.retain(|(t, ip), _| *t != tuple || !gone(ip));
                }
            }
        }
        // Answers to held binds arrive outside `request`.
        let sent: Vec<Vec<u8>> = self.d.sent.drain(..).map(|(_, d)| d).collect();
        for s in sent {
            let r = Resp(s);
            if r.method() == Method::ALLOCATE {
                self.note_allocate(&r);
            }
        }
    }

    fn check(&self, seed: u64, step: usize) {
        let ctx = || format!("seed {seed:#x}, step {step}");
        let s = &self.d.server;
        let live = s.allocation_count();
        assert_eq!(live, self.model.created - self.model.closed, "{}", ctx());
        // Each ReleaseRelay named a relay bound and not yet released: the
        // driver asserts that as it carries the commands out.
        if self.d.held_binds.is_empty() {
            // Nothing half-done: the bound sockets are exactly the live
            // allocations' relays, and the quota counts exactly those.
            let relays: HashSet<RelayId> = s.allocations().flat_map(|a| a.relays.iter().map(|r| r.id)).collect();
            let bound: HashSet<RelayId> = self.d.bound.keys().copied().collect();
            assert_eq!(relays, bound, "{}", ctx());
            assert_eq!(self.quotas.total(), live, "{}", ctx());
        }
    }
}

/// Names the seed and step of a failure, wherever in the step it panics.
struct Where(u64, usize);

impl Drop for Where {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failed at seed {:#x}, step {}", self.0, self.1);
        }
    }
}

#[test]
fn random_operations_keep_the_invariants() {
    for seed in SEEDS {
        let mut f = Fuzz::new(seed);
        for step in 0..STEPS {
            let _at = Where(seed, step);
            f.step();
            f.check(seed, step);
        }
        // Let everything run out: all relays released, queue empty.
        f.d.release_held_binds();
        f.observe();
        f.d.advance(4000);
        f.observe();
        f.check(seed, STEPS);
        assert_eq!(f.d.server.allocation_count(), 0);
        assert!(f.d.bound.is_empty(), "relays left bound: {:?}", f.d.bound);
        assert_eq!(f.quotas.total(), 0);
        assert_eq!(f.d.server.poll_timeout(), None);
        // The run exercised what it claims to: data went both ways.
        let t = f.d.server.stats().traffic;
        assert!(
            t.to_peer_packets > 20 && t.to_client_packets > 20,
            "seed {seed:#x}: {t:?}"
        );
        assert!(
            f.model.created > 10,
            "seed {seed:#x} made only {} allocations",
            f.model.created
        );
    }
}
