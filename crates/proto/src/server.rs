//! The server core: one per shard. It takes bytes from clients and peers
//! with the time they arrived and says what to send where; it never touches
//! a socket or a clock. This file holds the state and the dispatch; the
//! handlers live in `turn/` and `binding`, the rest in files named after it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::addr::FiveTuple;
use crate::allocation::{Allocation, RelayId};
use crate::allocations::Allocations;
use crate::auth_failure::AuthLogLimit;
use crate::budget::SourceBudget;
use crate::config::{LiveConfig, ServerConfig};
use crate::connection::Connections;
use crate::drop_reason::DropReason;
use crate::output::{Command, Output, PeerOutput};
use crate::pending::PendingAllocate;
use crate::ports::Ports;
use crate::reservation::Reservation;
use crate::rng::Rng;
use crate::stats::Stats;
use crate::timers::Deadlines;
use crate::wire::{attr, Class, ErrorCode, Message, Method, ParseError, TransactionId};

/// At most this many types are listed in UNKNOWN-ATTRIBUTES; a request naming
/// more still gets 420, with the first ones listed.
const MAX_UNKNOWN_LISTED: usize = 16;

/// The sans-IO STUN/TURN server state of one shard.
#[derive(Debug)]
pub struct Server {
    pub(crate) config: ServerConfig,
    pub(crate) stats: Stats,
    pub(crate) allocations: Allocations,
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
    /// RFC 6062 peer data connections of TCP relay allocations.
    pub(crate) connections: Connections,
    /// Refusing new allocations (SIGTERM drain); existing ones carry on.
    pub(crate) draining: bool,
    pub(crate) auth_log: AuthLogLimit,
}

impl Server {
    pub fn new(config: ServerConfig) -> Self {
        let ports = Ports::new(config.port_min, config.port_max, config.shard_index, config.shard_count);
        let mut rng = Rng::new(config.rng_seed);
        let budget_key = (rng.next_u64(), rng.next_u64());
        let budget = SourceBudget::new(
            config.unauthenticated_rate,
            config.unauthenticated_rate_per_shard(),
            budget_key,
        );
        Server {
            config,
            stats: Stats::default(),
            allocations: Allocations::default(),
            pending: HashMap::new(),
            pending_tuples: HashMap::new(),
            reservations: HashMap::new(),
            ports,
            timers: Deadlines::default(),
            commands: VecDeque::new(),
            rng,
            budget,
            connections: Connections::default(),
            draining: false,
            auth_log: AuthLogLimit::default(),
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
        self.allocations.len()
    }

    /// True if the client on `tuple` holds an allocation.
    pub fn has_allocation(&self, tuple: &FiveTuple) -> bool {
        self.allocations.by_tuple(tuple).is_some()
    }

    /// Starts or stops draining: new Allocates get 508 (Server Draining);
    /// existing allocations, refreshes and relaying carry on.
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// Applies the settings that may change live ([`LiveConfig`]); the
    /// rest of the config stays as the server started with it.
    pub fn reload(&mut self, live: LiveConfig) {
        let offload = self.config.offload;
        self.config.apply(live);
        if offload != self.config.offload {
            self.reset_offload();
        }
        self.budget.set_limits(
            self.config.unauthenticated_rate,
            self.config.unauthenticated_rate_per_shard(),
        );
    }

    /// Refuses `username` from now on (its allocations are not touched),
    /// and forgets revoked REST usernames that have expired meanwhile.
    pub fn revoke(&mut self, now: Instant, username: &str) {
        let unix = self.unix(now);
        let credentials = &mut self.config.credentials;
        credentials.revoked.insert(username.to_string());
        credentials.prune_revoked(unix);
    }

    /// Relay ports of this shard's block not held by an allocation, on the
    /// IPv4 and the IPv6 relay address (None: no relay of that family).
    pub fn free_relay_ports(&self) -> (Option<usize>, Option<usize>) {
        let free = |ip: Option<std::net::IpAddr>| ip.map(|ip| self.ports.free(ip));
        (free(self.config.relay_ipv4), free(self.config.relay_ipv6))
    }

    /// Counts of live permissions and channel bindings, for metrics.
    pub fn permission_and_channel_counts(&self, now: Instant) -> (usize, usize) {
        self.allocations.iter().fold((0, 0), |(p, c), a| {
            (
                p + a.permissions.iter().filter(|x| now < x.expires).count(),
                c + a.channels.iter().filter(|x| now < x.expires).count(),
            )
        })
    }

    /// Every live allocation, for the admin view.
    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.allocations.iter()
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
        let mut n_unknown = unknown_comprehension_required(&msg, &mut unknown);
        if let Some(i) = unknown[..n_unknown].iter().position(|&t| t == attr::CHANGE_REQUEST) {
            if self.understands_change_request(&tuple, &msg) {
                unknown.copy_within(i + 1..n_unknown, i);
                n_unknown -= 1;
            }
        }
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
                    Method::BINDING => self.binding(now, tuple, &msg, out),
                    Method::ALLOCATE => self.allocate(now, tuple, &msg, out),
                    Method::REFRESH | Method::CREATE_PERMISSION | Method::CHANNEL_BIND | Method::CONNECT => {
                        self.allocation_request(now, tuple, &msg, out)
                    }
                    Method::CONNECTION_BIND => self.connection_bind(now, tuple, &msg, out),
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
