//! The server core: one per shard. It takes bytes from clients and peers
//! with the time they arrived and says what to send where; it never touches
//! a socket or a clock.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::addr::FiveTuple;
use crate::allocation::{Allocation, Relay, RelayId, Traffic};
use crate::auth::Credentials;
use crate::binding;
use crate::clock::Clock;
use crate::drop_reason::{DropCounters, DropReason};
use crate::nonce::NonceKey;
use crate::policy::PeerPolicy;
use crate::ports::Ports;
use crate::quota::Quotas;
use crate::rng::Rng;
use crate::timers::{Deadlines, Timer};
use crate::turn::{PendingAllocate, Reservation, SourceBudget};
use crate::wire::{
    attr, BufferTooSmall, Class, ErrorCode, Message, MessageBuilder, MessageType, Method, ParseError, TransactionId,
};

/// At most this many types are listed in UNKNOWN-ATTRIBUTES; a request naming
/// more still gets 420, with the first ones listed.
const MAX_UNKNOWN_LISTED: usize = 16;

/// Bytes the driver must leave free in front of a peer datagram handed to
/// [`Server::handle_peer`], for the Data indication or ChannelData header.
pub const PEER_HEADROOM: usize = 48;
/// Bytes the driver must leave free after a peer datagram (padding).
pub const PEER_TAILROOM: usize = 4;

/// What a response needs to know of the request it answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answering {
    pub method: Method,
    pub tid: [u8; 12],
    /// The request carried FINGERPRINT, so the response does too.
    pub fingerprint: bool,
}

/// Settings of the protocol core (the driver maps its config onto this).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// SOFTWARE attribute for responses; `None` sends none (smaller replies).
    pub software: Option<String>,
    pub credentials: Credentials,
    pub nonce_key: NonceKey,
    pub nonce_lifetime: Duration,
    /// Where wall time comes from (REST expiry, nonces).
    pub clock: Clock,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    /// Relay addresses per family; `None` disables that family.
    pub relay_ipv4: Option<IpAddr>,
    pub relay_ipv6: Option<IpAddr>,
    /// 1:1 NAT mappings: (relay address bound here, address peers see).
    pub external_ips: Vec<(IpAddr, IpAddr)>,
    pub port_min: u16,
    pub port_max: u16,
    /// This shard's index and the number of shards: each takes its own block of ports.
    pub shard_index: usize,
    pub shard_count: usize,
    pub policy: PeerPolicy,
    pub quotas: Arc<Quotas>,
    /// RESERVATION-TOKENs, shared by every shard.
    pub reservations: Arc<crate::reservation::SharedReservations>,
    /// Per-allocation relay bandwidth cap, bytes per second each way; 0 = none.
    pub bandwidth_limit: u64,
    /// Accept channel numbers up to 0x7FFF as RFC 5766 did (RFC 8656 allows
    /// 0x4000-0x4FFF only); for older clients such as coturn's own tools.
    pub legacy_channel_numbers: bool,
    /// Requests per second one source IP may make without authenticating; 0 = no limit.
    pub unauthenticated_rate: u32,
    pub rng_seed: u64,
}

impl Default for ServerConfig {
    /// A STUN-only setup for tests: no relay addresses, a fixed nonce key,
    /// and wall time stuck at `anchor_unix`.
    fn default() -> Self {
        ServerConfig {
            software: None,
            credentials: Credentials::default(),
            nonce_key: NonceKey::new(&[0; 32]),
            nonce_lifetime: Duration::from_secs(3600),
            clock: Clock {
                anchor: None,
                anchor_unix: 1_700_000_000,
            },
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            relay_ipv4: None,
            relay_ipv6: None,
            external_ips: vec![],
            port_min: 49152,
            port_max: 65535,
            shard_index: 0,
            shard_count: 1,
            policy: PeerPolicy::default(),
            quotas: Arc::new(Quotas::new(usize::MAX, usize::MAX)),
            reservations: Arc::default(),
            bandwidth_limit: 0,
            legacy_channel_numbers: false,
            unauthenticated_rate: 0,
            rng_seed: 0,
        }
    }
}

/// What to do with one input from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Send the first `n` bytes of the output buffer back to the client.
    Reply(usize),
    /// Valid input that needs no answer now (a keepalive, or an Allocate
    /// whose answer follows once its relay socket is bound: see [`Command`]).
    Nothing,
    /// Invalid input, dropped silently and counted.
    Drop(DropReason),
    /// Send `input[start..start + len]` from relay socket `relay` to `peer`.
    ToPeer {
        relay: RelayId,
        peer: SocketAddr,
        start: usize,
        len: usize,
    },
}

/// What to do with one datagram from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerOutput {
    /// Send `buf[start..start + len]` to the client on `tuple`.
    ToClient {
        tuple: FiveTuple,
        start: usize,
        len: usize,
    },
    Drop(DropReason),
}

/// Why the driver could not bind a relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    AddrInUse,
    Other,
}

/// Work for the driver, off the hot path; drain with [`Server::poll_command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Bind a UDP socket to `addr` for relay `relay`, then report with [`Server::relay_bound`].
    BindRelay {
        relay: RelayId,
        addr: SocketAddr,
        dont_fragment: bool,
    },
    /// Close the socket of relay `relay`.
    ReleaseRelay { relay: RelayId },
    /// Send these bytes to the client on `tuple` (deferred responses).
    SendToClient { tuple: FiveTuple, data: Vec<u8> },
    /// Something worth logging happened.
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AllocationCreated {
        tuple: FiveTuple,
        username: String,
        relays: Vec<SocketAddr>,
        lifetime: Duration,
    },
    AllocationClosed {
        tuple: FiveTuple,
        username: String,
        age: Duration,
        reason: CloseReason,
        to_peer_bytes: u64,
        to_peer_packets: u64,
        to_client_bytes: u64,
        to_client_packets: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Refresh with LIFETIME 0.
    Deleted,
    Expired,
    /// The client's TCP/TLS connection closed.
    ConnectionClosed,
    /// Closed by an operator.
    Closed,
}

/// Counters a shard keeps about its own traffic; the driver sums shards.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub drops: DropCounters,
    pub allocations_created: u64,
    pub allocations_closed: u64,
    pub traffic: Traffic,
    pub requests: crate::metrics::RequestCounters,
}

impl Stats {
    /// Successful Binding responses (derived from the per-method counters).
    pub fn binding_success(&self) -> u64 {
        self.requests.responses[crate::metrics::method_index(Method::BINDING)][crate::metrics::code_index(None)]
    }

    /// Error responses of every method and code.
    pub fn error_responses(&self) -> u64 {
        self.requests.responses.iter().map(|r| r[1..].iter().sum::<u64>()).sum()
    }

    /// Adds another shard's counters to these.
    pub fn merge(&mut self, other: &Stats) {
        self.drops.merge(&other.drops);
        self.requests.merge(&other.requests);
        self.allocations_created += other.allocations_created;
        self.allocations_closed += other.allocations_closed;
        self.traffic.add(&other.traffic);
    }
}

#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub gen: u32,
    pub alloc: Option<Allocation>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum RelayState {
    /// Bind requested, allocation not created yet.
    Pending,
    /// Serving allocation `slot`.
    Active { slot: u32 },
}

/// The sans-IO STUN/TURN server state of one shard.
#[derive(Debug)]
pub struct Server {
    pub(crate) config: ServerConfig,
    pub(crate) stats: Stats,
    pub(crate) slots: Vec<Slot>,
    pub(crate) free_slots: Vec<u32>,
    pub(crate) by_tuple: HashMap<FiveTuple, u32>,
    pub(crate) relays: Vec<Option<RelayState>>,
    pub(crate) free_relays: Vec<u32>,
    pub(crate) pending: HashMap<RelayId, PendingAllocate>,
    /// The transaction of the Allocate pending on each 5-tuple, so that a
    /// retransmission does not start a second one (RFC 8656 §7.2 step 2).
    pub(crate) pending_tuples: HashMap<FiveTuple, TransactionId>,
    pub(crate) reservations: HashMap<[u8; 8], Reservation>,
    pub(crate) ports: Ports,
    pub(crate) timers: Deadlines,
    pub(crate) commands: VecDeque<Command>,
    pub(crate) rng: Rng,
    pub(crate) budget: SourceBudget,
    /// Refusing new allocations (SIGTERM drain); existing ones carry on.
    pub(crate) draining: bool,
}

impl Server {
    pub fn new(config: ServerConfig) -> Self {
        let ports = Ports::new(config.port_min, config.port_max, config.shard_index, config.shard_count);
        let rng = Rng::new(config.rng_seed);
        let budget = SourceBudget::new(config.unauthenticated_rate);
        Server {
            config,
            stats: Stats::default(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            by_tuple: HashMap::new(),
            relays: Vec::new(),
            free_relays: Vec::new(),
            pending: HashMap::new(),
            pending_tuples: HashMap::new(),
            reservations: HashMap::new(),
            ports,
            timers: Deadlines::default(),
            commands: VecDeque::new(),
            rng,
            budget,
            draining: false,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Live allocations on this shard.
    pub fn allocation_count(&self) -> usize {
        self.by_tuple.len()
    }

    /// True if the client on `tuple` holds an allocation.
    pub fn has_allocation(&self, tuple: &FiveTuple) -> bool {
        self.by_tuple.contains_key(tuple)
    }

    /// Starts or stops draining: new Allocates get 508 (Server Draining);
    /// existing allocations, refreshes and relaying carry on.
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// Applies a new configuration live. What cannot change without a
    /// restart (relay addresses and ports, shard layout, clock, nonce key,
    /// the shared quota and reservation registries) is kept from the old one.
    pub fn reload(&mut self, new: ServerConfig) {
        let old = &self.config;
        let kept = ServerConfig {
            clock: old.clock,
            nonce_key: old.nonce_key.clone(),
            relay_ipv4: old.relay_ipv4,
            relay_ipv6: old.relay_ipv6,
            external_ips: old.external_ips.clone(),
            port_min: old.port_min,
            port_max: old.port_max,
            shard_index: old.shard_index,
            shard_count: old.shard_count,
            quotas: old.quotas.clone(),
            reservations: old.reservations.clone(),
            rng_seed: old.rng_seed,
            ..new
        };
        self.budget = SourceBudget::new(kept.unauthenticated_rate);
        self.config = kept;
    }

    /// Refuses `username` from now on (its allocations are not touched).
    pub fn revoke(&mut self, username: &str) {
        self.config.credentials.revoked.insert(username.to_string());
    }

    /// Counts of live permissions and channel bindings, for metrics.
    pub fn permission_and_channel_counts(&self, now: Instant) -> (usize, usize) {
        let live = self.slots.iter().filter_map(|s| s.alloc.as_ref());
        live.fold((0, 0), |(p, c), a| {
            (
                p + a.permissions.iter().filter(|x| now < x.expires).count(),
                c + a.channels.iter().filter(|x| now < x.expires).count(),
            )
        })
    }

    /// Every live allocation, for the admin view.
    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.slots.iter().filter_map(|s| s.alloc.as_ref())
    }

    /// Closes the allocation on `tuple` (admin action). True if there was one.
    pub fn close_allocation(&mut self, now: Instant, tuple: &FiveTuple) -> bool {
        match self.by_tuple.get(tuple) {
            Some(&slot) => {
                self.delete_allocation(slot, now, CloseReason::Closed);
                true
            }
            None => false,
        }
    }

    /// The next command for the driver, if any.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When [`Server::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Counts a drop the driver decided on (e.g. a stream that lost framing).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.stats.drops.add(reason);
    }

    pub(crate) fn drop(&mut self, reason: DropReason) -> Output {
        self.stats.drops.add(reason);
        Output::Drop(reason)
    }

    /// [`Server::drop`] for a datagram from a peer.
    pub(crate) fn drop_peer(&mut self, reason: DropReason) -> PeerOutput {
        self.stats.drops.add(reason);
        PeerOutput::Drop(reason)
    }

    /// Handles one STUN message or ChannelData message (a UDP datagram or
    /// one framed stream message) from a client. A reply is written to the
    /// start of `out`.
    ///
    /// RFC 8489 §6.3 "Receiving a STUN Message"; RFC 8656 §12 for ChannelData.
    pub fn handle_client(&mut self, now: Instant, tuple: FiveTuple, data: &[u8], out: &mut [u8]) -> Output {
        // RFC 8656 §12: the first two bits 0b01 mean ChannelData (0x4000-0x4FFF).
        if let Some(&b) = data.first() {
            if b & 0xC0 == 0x40 {
                return self.channel_data(now, tuple, data);
            }
        }
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(ParseError::Header(e)) => return self.drop(e.into()),
            Err(ParseError::Body {
                message_type,
                transaction_id,
                ..
            }) => {
                // Recognisably STUN but malformed: a request gets 400, anything
                // else is dropped (nothing may answer an indication or response).
                if message_type.class != Class::Request {
                    return self.drop(DropReason::MalformedNonRequest);
                }
                return self.error(
                    message_type,
                    &transaction_id,
                    ErrorCode::BAD_REQUEST,
                    &[],
                    false,
                    data.len(),
                    out,
                );
            }
        };
        // §6.3: "If the FINGERPRINT extension is being used, the agent checks
        // that the FINGERPRINT attribute is present and contains the correct
        // value" ... "If any errors are detected, the message is silently discarded."
        if !msg.fingerprint_ok() {
            return self.drop(DropReason::BadFingerprint);
        }
        let message_type = msg.message_type();
        let mut unknown = [0u16; MAX_UNKNOWN_LISTED];
        let n_unknown = unknown_comprehension_required(&msg, &mut unknown);
        match message_type.class {
            Class::Request => {
                self.stats.requests.request(message_type.method);
                let tid = msg.transaction_id();
                // §6.3.1: "If the request contains one or more unknown
                // comprehension-required attributes, the server replies with
                // an error response with an error code of 420 (Unknown
                // Attribute) and includes an UNKNOWN-ATTRIBUTES attribute".
                if n_unknown > 0 {
                    return self.error(
                        message_type,
                        &tid,
                        ErrorCode::UNKNOWN_ATTRIBUTE,
                        &unknown[..n_unknown],
                        msg.has_fingerprint(),
                        data.len(),
                        out,
                    );
                }
                match message_type.method {
                    Method::BINDING => match binding::respond(&msg, tuple.client, self.config.software.as_deref(), out)
                    {
                        Ok(n) => {
                            self.stats.requests.response(Method::BINDING, None);
                            Output::Reply(n)
                        }
                        Err(_) => self.drop(DropReason::ReplyTooLarge),
                    },
                    Method::ALLOCATE => self.allocate(now, tuple, &msg, out),
                    Method::REFRESH | Method::CREATE_PERMISSION | Method::CHANNEL_BIND => {
                        self.allocation_request(now, tuple, &msg, out)
                    }
                    // A method this server does not implement.
                    _ => self.error(
                        message_type,
                        &tid,
                        ErrorCode::BAD_REQUEST,
                        &[],
                        msg.has_fingerprint(),
                        data.len(),
                        out,
                    ),
                }
            }
            Class::Indication => {
                // §6.3.2: unknown comprehension-required attributes in an
                // indication: "the message is discarded and processing ceases".
                if n_unknown > 0 {
                    return self.drop(DropReason::UnknownIndication);
                }
                match message_type.method {
                    // A Binding indication is a keepalive (§3): no answer.
                    Method::BINDING => Output::Nothing,
                    Method::SEND => self.send_indication(now, tuple, &msg, data),
                    _ => self.drop(DropReason::UnexpectedClass),
                }
            }
            Class::Success | Class::Error => self.drop(DropReason::UnexpectedClass),
        }
    }

    /// Writes a response to `request`: success when `code` is None, else an
    /// error with ERROR-CODE; `attrs` adds the other attributes, then
    /// MESSAGE-INTEGRITY with `key` if given, then FINGERPRINT if the request
    /// had one. Every response is counted by method and code.
    pub(crate) fn respond(
        &mut self,
        request: &Message<'_>,
        code: Option<ErrorCode>,
        key: Option<&[u8]>,
        out: &mut [u8],
        attrs: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BufferTooSmall>,
    ) -> Result<usize, BufferTooSmall> {
        let to = Answering {
            method: request.message_type().method,
            tid: request.transaction_id(),
            fingerprint: request.has_fingerprint(),
        };
        self.write_response(to, code, key, out, attrs)
    }

    /// [`Server::respond`] for a request that is no longer at hand (an
    /// Allocate answered once its relay sockets are bound).
    pub(crate) fn write_response(
        &mut self,
        to: Answering,
        code: Option<ErrorCode>,
        key: Option<&[u8]>,
        out: &mut [u8],
        attrs: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BufferTooSmall>,
    ) -> Result<usize, BufferTooSmall> {
        let class = if code.is_none() { Class::Success } else { Class::Error };
        let mut b = MessageBuilder::new(out, MessageType::new(to.method, class), &to.tid)?;
        if let Some(c) = code {
            let reason = if c == ErrorCode::INSUFFICIENT_CAPACITY && self.draining {
                "Server Draining"
            } else {
                c.reason()
            };
            b.add_error_code(c, reason)?;
        }
        attrs(&mut b)?;
        if let Some(s) = &self.config.software {
            b.add_bytes(attr::SOFTWARE, s.as_bytes())?;
        }
        if let Some(k) = key {
            b.add_message_integrity(k)?;
        }
        if to.fingerprint {
            b.add_fingerprint()?;
        }
        self.stats.requests.response(to.method, code);
        Ok(b.finish())
    }

    /// `respond` mapped to an [`Output`].
    pub(crate) fn reply(
        &mut self,
        request: &Message<'_>,
        code: Option<ErrorCode>,
        key: Option<&[u8]>,
        out: &mut [u8],
        attrs: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BufferTooSmall>,
    ) -> Output {
        match self.respond(request, code, key, out, attrs) {
            Ok(n) => Output::Reply(n),
            Err(_) => self.drop(DropReason::ReplyTooLarge),
        }
    }

    /// An error response with MESSAGE-INTEGRITY (for authenticated requests).
    pub(crate) fn error_with_key(
        &mut self,
        request: &Message<'_>,
        code: ErrorCode,
        key: &[u8],
        out: &mut [u8],
    ) -> Output {
        self.reply(request, Some(code), Some(key), out, |_| Ok(()))
    }

    /// An error response kept as small as the RFC allows: the reason phrase is
    /// optional, so it is left out when it would make the reply larger than
    /// the request. A bare error reply is 28 bytes, so requests shorter than
    /// that still get a slightly larger answer, as every Binding does.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn error(
        &mut self,
        request: MessageType,
        tid: &TransactionId,
        code: ErrorCode,
        unknown: &[u16],
        fingerprint: bool,
        request_len: usize,
        out: &mut [u8],
    ) -> Output {
        let bare = 20
            + 8
            + if unknown.is_empty() {
                0
            } else {
                4 + crate::wire::pad4(2 * unknown.len())
            }
            + if fingerprint { 8 } else { 0 };
        let reason = code.reason();
        let reason = if bare + crate::wire::pad4(reason.len()) <= request_len {
            reason
        } else {
            ""
        };
        let built = (|| {
            let mut b = MessageBuilder::new(out, request.response(false), tid)?;
            b.add_error_code(code, reason)?;
            if !unknown.is_empty() {
                b.add_unknown_attributes(unknown)?;
            }
            if fingerprint {
                b.add_fingerprint()?;
            }
            Ok::<_, BufferTooSmall>(b.finish())
        })();
        match built {
            Ok(n) => {
                self.stats.requests.response(request.method, Some(code));
                Output::Reply(n)
            }
            Err(_) => self.drop(DropReason::ReplyTooLarge),
        }
    }

    /// Runs every timer due at `now`: expired allocations are deleted and
    /// their relay sockets released; stale permissions and channels pruned.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, t)) = self.timers.pop_due(now) {
            match t {
                Timer::Allocation { slot, gen } => {
                    let Some(s) = self.slots.get_mut(slot as usize) else {
                        continue;
                    };
                    if s.gen != gen {
                        continue;
                    }
                    let Some(a) = s.alloc.as_mut() else { continue };
                    // An entry superseded by an earlier one: that one is live.
                    if a.armed != Some(at) {
                        continue;
                    }
                    a.armed = None;
                    if a.is_expired(now) {
                        self.delete_allocation(slot, now, CloseReason::Expired);
                    } else {
                        a.prune(now);
                        self.arm(slot, now);
                    }
                }
                Timer::Reservation { token } => {
                    if let Some(r) = self.reservations.get(&token) {
                        if r.expires <= now {
                            let r = self.reservations.remove(&token).expect("present");
                            self.ports.release(r.addr.ip(), r.addr.port());
                            self.config.reservations.remove(&token);
                        }
                    }
                }
            }
        }
    }

    /// The live allocation in `slot`. Callers hold a slot from `by_tuple` or
    /// an active relay, both of which only ever name live allocations.
    pub(crate) fn live(&self, slot: u32) -> &Allocation {
        self.slots[slot as usize]
            .alloc
            .as_ref()
            .expect("indexed slots hold a live allocation")
    }

    pub(crate) fn live_mut(&mut self, slot: u32) -> &mut Allocation {
        self.slots[slot as usize]
            .alloc
            .as_mut()
            .expect("indexed slots hold a live allocation")
    }

    /// Queues allocation `slot`'s timer for its next deadline unless an entry
    /// at or before it is already queued. Deadlines only move earlier when a
    /// permission or channel is added, so the queue holds O(allocations)
    /// entries however often clients refresh.
    pub(crate) fn arm(&mut self, slot: u32, now: Instant) {
        let s = &mut self.slots[slot as usize];
        let Some(a) = s.alloc.as_mut() else { return };
        let next = a.next_deadline(now).max(now + Duration::from_millis(1));
        if a.armed.is_none_or(|t| next < t) {
            a.armed = Some(next);
            self.timers.push(next, Timer::Allocation { slot, gen: s.gen });
            self.compact_timers();
        }
    }

    /// Drops the entries that can no longer do anything (deleted
    /// allocations, superseded deadlines, used reservations) once they
    /// outnumber the live ones four to one, so the queue stays
    /// O(allocations + reservations) however fast allocations come and go.
    /// Each allocation keeps at most two entries, so this is amortised O(1).
    pub(crate) fn compact_timers(&mut self) {
        let live = self.by_tuple.len() + self.reservations.len();
        if self.timers.len() <= 4 * (live + 1) {
            return;
        }
        let (slots, reservations) = (&self.slots, &self.reservations);
        self.timers.retain(|at, t| match *t {
            Timer::Allocation { slot, gen } => slots
                .get(slot as usize)
                .is_some_and(|s| s.gen == gen && s.alloc.as_ref().is_some_and(|a| a.armed == Some(at))),
            Timer::Reservation { token } => reservations.contains_key(&token),
        });
    }

    /// Timer entries queued (for tests: it must stay bounded).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// The client's TCP/TLS connection closed: its allocation dies with it
    /// (RFC 8656 §3.1).
    pub fn connection_closed(&mut self, now: Instant, tuple: FiveTuple) {
        // An Allocate still waiting for its relay is abandoned when the bind is answered.
        self.pending_tuples.remove(&tuple);
        if let Some(&slot) = self.by_tuple.get(&tuple) {
            self.delete_allocation(slot, now, CloseReason::ConnectionClosed);
        }
    }

    /// Deletes allocation `slot`: releases its relays, ports and quota.
    pub(crate) fn delete_allocation(&mut self, slot: u32, now: Instant, reason: CloseReason) {
        let s = &mut self.slots[slot as usize];
        let Some(a) = s.alloc.take() else { return };
        s.gen = s.gen.wrapping_add(1);
        self.free_slots.push(slot);
        self.by_tuple.remove(&a.tuple);
        for r in &a.relays {
            self.release_relay(r.id, Some(r.local));
        }
        self.config.quotas.release(&a.username);
        self.stats.allocations_closed += 1;
        self.commands.push_back(Command::Event(Event::AllocationClosed {
            tuple: a.tuple,
            username: a.username,
            age: now.saturating_duration_since(a.created),
            reason,
            to_peer_bytes: a.traffic.to_peer_bytes,
            to_peer_packets: a.traffic.to_peer_packets,
            to_client_bytes: a.traffic.to_client_bytes,
            to_client_packets: a.traffic.to_client_packets,
        }));
        self.compact_timers();
    }

    pub(crate) fn new_relay_id(&mut self) -> RelayId {
        match self.free_relays.pop() {
            Some(i) => {
                self.relays[i as usize] = Some(RelayState::Pending);
                RelayId(i)
            }
            None => {
                self.relays.push(Some(RelayState::Pending));
                RelayId(self.relays.len() as u32 - 1)
            }
        }
    }

    /// Frees a relay id; if it was bound, asks the driver to close the socket.
    pub(crate) fn release_relay(&mut self, id: RelayId, bound: Option<SocketAddr>) {
        if let Some(slot) = self.relays.get_mut(id.0 as usize) {
            *slot = None;
            self.free_relays.push(id.0);
        }
        if let Some(addr) = bound {
            self.ports.release(addr.ip(), addr.port());
            self.commands.push_back(Command::ReleaseRelay { relay: id });
        }
    }

    /// The allocation a relay serves, if any.
    pub(crate) fn allocation_of_relay(&self, relay: RelayId) -> Option<u32> {
        match self.relays.get(relay.0 as usize) {
            Some(Some(RelayState::Active { slot })) => Some(*slot),
            _ => None,
        }
    }

    /// The public address peers see for a relay bound to `local`.
    pub(crate) fn public_addr(&self, local: SocketAddr) -> SocketAddr {
        let ip = self
            .config
            .external_ips
            .iter()
            .find(|(internal, _)| *internal == local.ip())
            .map_or(local.ip(), |(_, public)| *public);
        SocketAddr::new(ip, local.port())
    }

    pub(crate) fn unix(&self, now: Instant) -> u64 {
        self.config.clock.unix(now)
    }

    /// Every relay of every allocation, for tests and the admin view.
    pub fn relays(&self) -> impl Iterator<Item = (&FiveTuple, &Relay)> {
        self.slots
            .iter()
            .filter_map(|s| s.alloc.as_ref())
            .flat_map(|a| a.relays.iter().map(move |r| (&a.tuple, r)))
    }
}

/// Collects the distinct unknown comprehension-required attribute types into
/// `out` and returns how many there are (at most `out.len()`).
fn unknown_comprehension_required(msg: &Message<'_>, out: &mut [u16]) -> usize {
    let mut n = 0;
    for a in msg.attributes() {
        if a.typ < 0x8000 && !attr::is_comprehension_required_known(a.typ) && !out[..n].contains(&a.typ) {
            out[n] = a.typ;
            n += 1;
            if n == out.len() {
                break;
            }
        }
    }
    n
}
