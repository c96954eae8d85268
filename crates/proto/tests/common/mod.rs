//! A fake driver for scenario tests on the pure core: it binds every relay
//! the core asks for (or fails, or holds the answer back when told to),
//! collects what the core sends, and moves a simulated clock by jumping to
//! each deadline `poll_timeout` names. Nothing here sleeps.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::auth::Credentials;
use proto::clock::Clock;
use proto::quota::Quotas;
use proto::wire::{attr, long_term_key, Class, ErrorCode, Message, MessageBuilder, MessageType, Method, TransactionId};
use proto::{
    BindError, ClientAddr, Command, ConnectionId, DropReason, Event, FiveTuple, Offload, Output, PeerAddr, PeerOutput,
    RelayId, Server, ServerAddr, ServerConfig, Transport, PEER_HEADROOM, PEER_TAILROOM,
};

pub const REALM: &str = "ternd.test";
pub const ANCHOR_UNIX: u64 = 1_700_000_000;
/// Relay addresses: the IPv4 one sits behind a 1:1 NAT (`external_ips`).
pub const RELAY_V4: &str = "10.1.0.1";
pub const RELAY_V4_PUBLIC: &str = "192.0.2.100";
pub const RELAY_V6: &str = "2001:db8:1::1";
pub const SERVER_V4: &str = "192.0.2.1:3478";
pub const SERVER_V6: &str = "[2001:db8::1]:3478";
/// Peers the default policy allows.
pub const PEER_A: &str = "93.184.216.34:5000";
pub const PEER_B: &str = "93.184.216.35:6000";
pub const PEER_V6: &str = "[2606:4700::1111]:7000";
/// Static users and the REST secret of [`config`].
pub const ALICE: (&str, &str) = ("alice", "alice-pw");
pub const BOB: (&str, &str) = ("bob", "bob-pw");
pub const REST_SECRET: &[u8] = b"rest-secret";
/// Largest number of timer wake-ups one `advance` may take before the test
/// calls it a spinning timer.
const MAX_WAKEUPS: usize = 10_000;

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The base config: both families, a NAT mapping for IPv4, two static users
/// and one REST secret, wall time running from `t0`.
pub fn config(t0: Instant) -> ServerConfig {
    let mut credentials = Credentials {
        realm: REALM.into(),
        rest_secrets: vec![REST_SECRET.to_vec()],
        ..Default::default()
    };
    credentials.add_static_user(ALICE.0, ALICE.1);
    credentials.add_static_user(BOB.0, BOB.1);
    let policy = proto::policy::PeerPolicy {
        own: vec![
            RELAY_V4.parse().unwrap(),
            RELAY_V4_PUBLIC.parse().unwrap(),
            RELAY_V6.parse().unwrap(),
        ],
        ..Default::default()
    };
    ServerConfig {
        credentials,
        clock: Clock {
            anchor: Some(t0),
            anchor_unix: ANCHOR_UNIX,
        },
        relay_ipv4: Some(RELAY_V4.parse().unwrap()),
        relay_ipv6: Some(RELAY_V6.parse().unwrap()),
        external_ips: vec![(RELAY_V4.parse().unwrap(), RELAY_V4_PUBLIC.parse().unwrap())],
        quotas: Arc::new(Quotas::new(1000, 100)),
        policy,
        ..ServerConfig::default()
    }
}

/// The instant tests start at. The test stands in for the driver, the one
/// place that reads the clock; everything after is `t0 + offset`.
pub fn start() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

pub fn tuple(client: &str, transport: Transport) -> FiveTuple {
    let client = addr(client);
    let server = if client.is_ipv4() { SERVER_V4 } else { SERVER_V6 };
    FiveTuple {
        client: ClientAddr(client),
        server: ServerAddr(addr(server)),
        transport,
    }
}

/// One attribute to put in a request.
#[derive(Debug, Clone)]
pub enum A {
    Bytes(u16, Vec<u8>),
    Xor(u16, SocketAddr),
}

pub fn transport_udp() -> A {
    A::Bytes(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])
}

pub fn lifetime(secs: u32) -> A {
    A::Bytes(attr::LIFETIME, secs.to_be_bytes().to_vec())
}

pub fn family(f: u8) -> A {
    A::Bytes(attr::REQUESTED_ADDRESS_FAMILY, vec![f, 0, 0, 0])
}

pub fn peer(p: SocketAddr) -> A {
    A::Xor(attr::XOR_PEER_ADDRESS, p)
}

pub fn channel(number: u16) -> A {
    let n = number.to_be_bytes();
    A::Bytes(attr::CHANNEL_NUMBER, vec![n[0], n[1], 0, 0])
}

/// Credentials a request is signed with.
#[derive(Debug, Clone)]
pub struct Auth {
    pub username: String,
    pub realm: String,
    pub nonce: Vec<u8>,
    pub key: [u8; 16],
}

/// Encodes one STUN message.
pub fn build(ty: MessageType, tid: &TransactionId, attrs: &[A], auth: Option<&Auth>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut b = MessageBuilder::new(&mut buf, ty, tid).unwrap();
    for a in attrs {
        match a {
            A::Bytes(t, v) => b.add_bytes(*t, v).unwrap(),
            A::Xor(t, addr) => b.add_xor_address(*t, *addr).unwrap(),
        }
    }
    if let Some(a) = auth {
        b.add_bytes(attr::USERNAME, a.username.as_bytes()).unwrap();
        b.add_bytes(attr::REALM, a.realm.as_bytes()).unwrap();
        b.add_bytes(attr::NONCE, &a.nonce).unwrap();
        b.add_message_integrity(&a.key).unwrap();
    }
    b.add_fingerprint().unwrap();
    let n = b.finish();
    buf.truncate(n);
    buf
}

/// A decoded response (owned bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resp(pub Vec<u8>);

impl Resp {
    pub fn msg(&self) -> Message<'_> {
        let m = Message::parse(&self.0).expect("the core sent a well-formed message");
        assert!(m.fingerprint_ok());
        m
    }

    pub fn class(&self) -> Class {
        self.msg().message_type().class
    }

    pub fn method(&self) -> Method {
        self.msg().message_type().method
    }

    pub fn tid(&self) -> TransactionId {
        self.msg().transaction_id()
    }

    /// The error code, or `None` for a success response.
    pub fn code(&self) -> Option<u16> {
        let m = self.msg();
        let v = m.get(attr::ERROR_CODE)?;
        Some(ErrorCode::decode(v).expect("valid ERROR-CODE").0 .0)
    }

    pub fn get(&self, typ: u16) -> Option<Vec<u8>> {
        self.msg().get(typ).map(<[u8]>::to_vec)
    }

    pub fn xor_addrs(&self, typ: u16) -> Vec<SocketAddr> {
        let m = self.msg();
        let tid = m.transaction_id();
        m.attributes()
            .filter(|a| a.typ == typ)
            .map(|a| attr::decode_address(a.value, Some(&tid)).unwrap())
            .collect()
    }

    pub fn xor_addr(&self, typ: u16) -> Option<SocketAddr> {
        self.xor_addrs(typ).first().copied()
    }

    pub fn lifetime(&self) -> Option<u32> {
        self.get(attr::LIFETIME)
            .map(|v| u32::from_be_bytes(v.try_into().unwrap()))
    }

    pub fn nonce(&self) -> Option<Vec<u8>> {
        self.get(attr::NONCE)
    }

    pub fn verifies(&self, key: &[u8]) -> bool {
        self.msg().verify_integrity(key)
    }

    pub fn has_integrity(&self) -> bool {
        self.msg().has_integrity()
    }

    /// Asserts a success response to `method`, signed with `key`.
    pub fn assert_ok(&self, method: Method, key: &[u8]) {
        assert_eq!(self.code(), None, "expected success, got {:?}", self.code());
        assert_eq!(self.msg().message_type(), MessageType::new(method, Class::Success));
        assert!(self.verifies(key), "success response not signed with the client's key");
    }

    /// Asserts an error response with `code`.
    pub fn assert_error(&self, method: Method, code: u16) {
        assert_eq!(self.msg().message_type(), MessageType::new(method, Class::Error));
        assert_eq!(self.code(), Some(code));
    }
}

/// What one input from a client led to, once every command was carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// An immediate reply or a deferred one (SendToClient to this client).
    Reply(Resp),
    /// `Output::Nothing` and nothing sent to this client.
    Nothing,
    Drop(DropReason),
    ToPeer {
        relay: RelayId,
        peer: SocketAddr,
        start: usize,
        len: usize,
        bytes: Vec<u8>,
        dont_fragment: bool,
    },
}

impl Out {
    #[track_caller]
    pub fn resp(self) -> Resp {
        match self {
            Out::Reply(r) => r,
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

/// What a peer datagram led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOut {
    /// `start` is where the message begins in the receive buffer, whose
    /// payload sat at [`PEER_HEADROOM`].
    ToClient {
        tuple: FiveTuple,
        start: usize,
        bytes: Vec<u8>,
    },
    Drop(DropReason),
}

/// One client: its 5-tuple, the credentials it uses and the nonce it holds.
#[derive(Debug, Clone)]
pub struct Client {
    pub tuple: FiveTuple,
    pub username: String,
    pub key: [u8; 16],
    pub nonce: Option<Vec<u8>>,
    next_tid: u64,
}

impl Client {
    pub fn new(client: &str, transport: Transport, user: (&str, &str)) -> Self {
        Client::with_key(client, transport, user.0, long_term_key(user.0, REALM, user.1))
    }

    pub fn udp(client: &str) -> Self {
        Client::new(client, Transport::Udp, ALICE)
    }

    pub fn with_key(client: &str, transport: Transport, username: &str, key: [u8; 16]) -> Self {
        Client {
            tuple: tuple(client, transport),
            username: username.into(),
            key,
            nonce: None,
            next_tid: 1,
        }
    }

    /// A fresh transaction id, unique per client.
    pub fn tid(&mut self) -> TransactionId {
        let mut t = [0u8; 12];
        t[..8].copy_from_slice(&self.next_tid.to_be_bytes());
        let port = self.tuple.client.0.port().to_be_bytes();
        t[8..10].copy_from_slice(&port);
        t[10] = 0x7E;
        self.next_tid += 1;
        t
    }

    pub fn auth(&self) -> Auth {
        Auth {
            username: self.username.clone(),
            realm: REALM.into(),
            nonce: self.nonce.clone().expect("client holds a nonce"),
            key: self.key,
        }
    }
}

/// The fake driver around one [`Server`].
pub struct Driver {
    pub server: Server,
    pub t0: Instant,
    pub now: Instant,
    /// Answer BindRelay at once (else they wait in `held_binds`).
    pub auto_bind: bool,
    /// Fail this many of the next binds with `bind_error`.
    pub fail_binds: u32,
    /// How `fail_binds` fail (AddrInUse unless a test says otherwise).
    pub bind_error: BindError,
    pub held_binds: Vec<(RelayId, SocketAddr)>,
    /// Every BindRelay seen: (relay, addr, dont_fragment).
    pub binds: Vec<(RelayId, SocketAddr, bool)>,
    /// Relays bound successfully and not yet released.
    pub bound: HashMap<RelayId, SocketAddr>,
    pub releases: Vec<RelayId>,
    pub sent: Vec<(FiveTuple, Vec<u8>)>,
    pub events: Vec<Event>,
    /// Every Offload command, in order, with the time it came.
    pub offloads: Vec<(Instant, Offload)>,
    /// Commands seen in total (of any kind).
    pub commands: usize,
    /// Binds answered AddrInUse because a live relay held the address.
    pub conflicts: usize,
    /// The transport of every BindRelay seen.
    pub bind_transports: Vec<(RelayId, Transport)>,
    /// Every ConnectPeer seen: (id, relay, from, peer).
    pub connects: Vec<(ConnectionId, RelayId, SocketAddr, SocketAddr)>,
    /// Every ClosePeer seen.
    pub closed_peers: Vec<ConnectionId>,
    releasing_held: bool,
}

impl Driver {
    pub fn new(config: ServerConfig, t0: Instant) -> Self {
        Driver {
            server: Server::new(config),
            t0,
            now: t0,
            auto_bind: true,
            fail_binds: 0,
            bind_error: BindError::AddrInUse,
            held_binds: Vec::new(),
            binds: Vec::new(),
            bound: HashMap::new(),
            releases: Vec::new(),
            sent: Vec::new(),
            events: Vec::new(),
            offloads: Vec::new(),
            commands: 0,
            conflicts: 0,
            bind_transports: Vec::new(),
            connects: Vec::new(),
            closed_peers: Vec::new(),
            releasing_held: false,
        }
    }

    /// A driver on [`config`].
    pub fn default_setup() -> Self {
        let t0 = start();
        Driver::new(config(t0), t0)
    }

    /// A driver on [`config`] changed by `f`.
    pub fn with(f: impl FnOnce(&mut ServerConfig)) -> Self {
        let t0 = start();
        let mut c = config(t0);
        f(&mut c);
        Driver::new(c, t0)
    }

    /// Seconds since the test began.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Carries out every queued command.
    pub fn pump(&mut self) {
        while let Some(cmd) = self.server.poll_command() {
            self.commands += 1;
            match cmd {
                Command::BindRelay {
                    relay,
                    addr,
                    dont_fragment,
                    transport,
                } => {
                    self.bind_transports.push((relay, transport));
                    self.binds.push((relay, addr, dont_fragment));
                    if !self.auto_bind {
                        self.held_binds.push((relay, addr));
                    } else if self.fail_binds > 0 {
                        self.fail_binds -= 1;
                        self.server.relay_bound(self.now, relay, Err(self.bind_error));
                    } else {
                        self.bind(relay, addr);
                    }
                }
                Command::ReleaseRelay { relay } => {
                    assert!(
                        self.bound.remove(&relay).is_some(),
                        "ReleaseRelay {relay:?} for a relay that is not bound"
                    );
                    self.releases.push(relay);
                }
                Command::SendToClient { tuple, data } => self.sent.push((tuple, data)),
                Command::ConnectPeer { id, relay, from, peer } => self.connects.push((id, relay, from, peer.0)),
                Command::ClosePeer { id } => self.closed_peers.push(id),
                Command::Event(e) => self.events.push(e),
                Command::Offload(o) => self.offloads.push((self.now, o)),
            }
        }
    }

    /// Binds like an OS would: an address a live relay holds is AddrInUse.
    /// While no bind is held back the core knows every bound port, so asking
    /// for a taken one is a bug in its bookkeeping.
    fn bind(&mut self, relay: RelayId, addr: SocketAddr) {
        if self.bound.values().any(|a| *a == addr) {
            assert!(
                self.releasing_held || !self.held_binds.is_empty(),
                "core asked to bind {addr}, which a live relay holds"
            );
            self.conflicts += 1;
            self.server.relay_bound(self.now, relay, Err(BindError::AddrInUse));
            return;
        }
        assert!(
            self.bound.insert(relay, addr).is_none(),
            "relay id {relay:?} reused while bound"
        );
        self.server.relay_bound(self.now, relay, Ok(addr));
    }

    /// Answers the held binds (successfully) in order.
    pub fn release_held_binds(&mut self) {
        self.releasing_held = true;
        for (relay, addr) in std::mem::take(&mut self.held_binds) {
            self.bind(relay, addr);
            self.pump();
        }
        self.releasing_held = false;
    }

    /// Feeds `data` from `tuple` and carries out the commands it led to.
    pub fn input(&mut self, tuple: FiveTuple, data: &[u8]) -> Out {
        let mut out = vec![0u8; 1500];
        let sent_before = self.sent.len();
        let o = self.server.handle_client(self.now, tuple, data, &mut out);
        self.pump();
        let deferred: Vec<Vec<u8>> = self.sent[sent_before..]
            .iter()
            .filter(|(t, _)| *t == tuple)
            .map(|(_, d)| d.clone())
            .collect();
        match o {
            Output::Reply(n) => {
                assert!(deferred.is_empty(), "a reply and a deferred reply at once");
                Out::Reply(Resp(out[..n].to_vec()))
            }
            Output::Nothing => match deferred.len() {
                0 => Out::Nothing,
                1 => Out::Reply(Resp(deferred[0].clone())),
                n => panic!("{n} deferred replies to one request"),
            },
            Output::Drop(r) => Out::Drop(r),
            Output::ReplyFrom { from, .. } => panic!("a TURN harness has no RFC 5780 addresses, yet {from}"),
            Output::ToPeer {
                relay,
                peer,
                start,
                len,
                dont_fragment,
            } => Out::ToPeer {
                relay,
                peer: peer.0,
                start,
                len,
                bytes: data[start..start + len].to_vec(),
                dont_fragment,
            },
        }
    }

    /// Sends a request from `c`, signed with its credentials and current nonce.
    /// A client without a nonce first fetches one with an unsigned request.
    pub fn request(&mut self, c: &mut Client, method: Method, attrs: &[A]) -> Out {
        if c.nonce.is_none() {
            self.fetch_nonce(c);
        }
        let tid = c.tid();
        let bytes = build(MessageType::new(method, Class::Request), &tid, attrs, Some(&c.auth()));
        self.input(c.tuple, &bytes)
    }

    /// Sends an unsigned request and stores the NONCE of the 401 it gets.
    pub fn fetch_nonce(&mut self, c: &mut Client) {
        let tid = c.tid();
        let bytes = build(
            MessageType::new(Method::ALLOCATE, Class::Request),
            &tid,
            &[transport_udp()],
            None,
        );
        let r = self.input(c.tuple, &bytes).resp();
        assert_eq!(r.code(), Some(401));
        c.nonce = Some(r.nonce().expect("401 carries a NONCE"));
    }

    /// Allocate with `attrs` added to REQUESTED-TRANSPORT UDP.
    pub fn allocate_with(&mut self, c: &mut Client, attrs: &[A]) -> Resp {
        let mut all = vec![transport_udp()];
        all.extend_from_slice(attrs);
        self.request(c, Method::ALLOCATE, &all).resp()
    }

    /// A successful plain Allocate; returns the response.
    pub fn allocate(&mut self, c: &mut Client) -> Resp {
        let r = self.allocate_with(c, &[]);
        r.assert_ok(Method::ALLOCATE, &c.key);
        r
    }

    pub fn refresh(&mut self, c: &mut Client, secs: Option<u32>) -> Resp {
        let attrs: Vec<A> = secs.into_iter().map(lifetime).collect();
        self.request(c, Method::REFRESH, &attrs).resp()
    }

    pub fn create_permission(&mut self, c: &mut Client, peers: &[SocketAddr]) -> Resp {
        let attrs: Vec<A> = peers.iter().map(|p| peer(*p)).collect();
        self.request(c, Method::CREATE_PERMISSION, &attrs).resp()
    }

    pub fn channel_bind(&mut self, c: &mut Client, number: u16, p: SocketAddr) -> Resp {
        self.request(c, Method::CHANNEL_BIND, &[channel(number), peer(p)])
            .resp()
    }

    pub fn send_indication(&mut self, c: &Client, p: SocketAddr, payload: &[u8]) -> Out {
        self.send_indication_with(c, p, payload, &[])
    }

    /// A Send indication with `extra` attributes after XOR-PEER-ADDRESS and DATA.
    pub fn send_indication_with(&mut self, c: &Client, p: SocketAddr, payload: &[u8], extra: &[A]) -> Out {
        let tid = *b"send-indic-1";
        let mut attrs = vec![peer(p), A::Bytes(attr::DATA, payload.to_vec())];
        attrs.extend_from_slice(extra);
        let bytes = build(MessageType::new(Method::SEND, Class::Indication), &tid, &attrs, None);
        self.input(c.tuple, &bytes)
    }

    /// ChannelData from the client, padded to 4 bytes on streams.
    pub fn channel_data(&mut self, c: &Client, number: u16, payload: &[u8]) -> Out {
        let mut bytes = number.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        bytes.extend_from_slice(payload);
        if c.tuple.transport.is_stream() {
            while bytes.len() % 4 != 0 {
                bytes.push(0);
            }
        }
        self.input(c.tuple, &bytes)
    }

    /// A datagram from `peer` on `relay`, with the headroom and tailroom the
    /// core asks for.
    pub fn peer_datagram(&mut self, relay: RelayId, peer: SocketAddr, payload: &[u8]) -> PeerOut {
        let mut buf = vec![0xEEu8; PEER_HEADROOM + payload.len() + PEER_TAILROOM];
        buf[PEER_HEADROOM..PEER_HEADROOM + payload.len()].copy_from_slice(payload);
        match self
            .server
            .handle_peer(self.now, relay, PeerAddr(peer), &mut buf, PEER_HEADROOM, payload.len())
        {
            PeerOutput::ToClient { tuple, start, len } => PeerOut::ToClient {
                tuple,
                start,
                bytes: buf[start..start + len].to_vec(),
            },
            PeerOutput::Drop(r) => PeerOut::Drop(r),
        }
    }

    /// An ICMP error about a datagram `relay` sent to `peer` (RFC 8656 §11.5).
    pub fn peer_icmp(&mut self, relay: RelayId, peer: SocketAddr, icmp: proto::PeerIcmp) -> PeerOut {
        let mut out = [0u8; proto::ICMP_INDICATION_LEN];
        match self
            .server
            .handle_peer_icmp(self.now, relay, PeerAddr(peer), icmp, &mut out)
        {
            PeerOutput::ToClient { tuple, start, len } => PeerOut::ToClient {
                tuple,
                start,
                bytes: out[start..start + len].to_vec(),
            },
            PeerOutput::Drop(r) => PeerOut::Drop(r),
        }
    }

    /// Moves the clock `d` forward, waking at every deadline on the way as a
    /// driver would, and carries out the commands that follow.
    pub fn advance_by(&mut self, d: Duration) {
        let target = self.now + d;
        let mut wakeups = 0;
        while let Some(t) = self.server.poll_timeout() {
            if t > target {
                break;
            }
            wakeups += 1;
            assert!(wakeups <= MAX_WAKEUPS, "timer spins: {wakeups} wake-ups, next at {t:?}");
            self.now = self.now.max(t);
            self.server.handle_timeout(self.now);
            self.pump();
        }
        self.now = target;
        self.server.handle_timeout(self.now);
        self.pump();
    }

    pub fn advance(&mut self, secs: u64) {
        self.advance_by(Duration::from_secs(secs));
    }

    /// The relays of the allocation on `tuple`, as (id, local address).
    pub fn relays_of(&self, tuple: &FiveTuple) -> Vec<(RelayId, SocketAddr)> {
        self.server
            .allocations()
            .filter(|a| a.tuple == *tuple)
            .flat_map(|a| a.relays.iter().map(|r| (r.id, r.local)))
            .collect()
    }

    /// The one relay of the allocation on `tuple`.
    pub fn relay_of(&self, tuple: &FiveTuple) -> RelayId {
        let r = self.relays_of(tuple);
        assert_eq!(r.len(), 1, "expected one relay, found {r:?}");
        r[0].0
    }

    pub fn closed_events(&self) -> Vec<(FiveTuple, proto::CloseReason)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::AllocationClosed { tuple, reason, .. } => Some((*tuple, *reason)),
                _ => None,
            })
            .collect()
    }

    pub fn created_events(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::AllocationCreated { .. }))
            .count()
    }

    /// Local addresses of every live relay (checked against the driver's view).
    pub fn live_relay_addrs(&self) -> HashSet<SocketAddr> {
        self.bound.values().copied().collect()
    }
}

/// Parses a Data indication: (XOR-PEER-ADDRESS, DATA).
pub fn data_indication(bytes: &[u8]) -> (SocketAddr, Vec<u8>) {
    let r = Resp(bytes.to_vec());
    let m = Message::parse(bytes).expect("Data indication parses");
    assert_eq!(m.message_type(), MessageType::new(Method::DATA, Class::Indication));
    let p = r.xor_addr(attr::XOR_PEER_ADDRESS).expect("XOR-PEER-ADDRESS");
    (p, m.get(attr::DATA).expect("DATA").to_vec())
}
