//! TCP relay allocations (RFC 6062): Connect (§5.2), incoming peer
//! connections and ConnectionAttempt (§5.3), ConnectionBind (§5.4), and the
//! end of data connections (§5.5). The core keeps the state and the 30 s
//! timers; the driver opens, accepts and splices the TCP connections when
//! asked ([`Command::ConnectPeer`], [`Command::ClosePeer`]).

use std::time::Instant;

use crate::addr::{Family, FiveTuple, PeerAddr};
use crate::answering::Answering;
use crate::connection::{ConnState, ConnectionId, PeerConnection, CONNECTION_TIMEOUT, MAX_CONNECTIONS};
use crate::output::{Command, Output};
use crate::server::Server;
use crate::timers::Timer;
use crate::wire::{attr, Class, ErrorCode, Key, Message, MessageBuilder, MessageType, Method};

impl Server {
    /// RFC 6062 §5.2 "Receiving a Connect Request" (authenticated, on an
    /// allocation of this 5-tuple). The answer follows once the driver
    /// reports the connection ([`Server::peer_connected`]).
    pub(super) fn connect(&mut self, now: Instant, slot: u32, msg: &Message<'_>, key: &Key, out: &mut [u8]) -> Output {
        let a = self.allocations.live(slot);
        // Connect only makes sense on a TCP allocation.
        if !a.tcp {
            return self.error_with_key(msg, ErrorCode::BAD_REQUEST, key, out);
        }
        // "If the request does not contain an XOR-PEER-ADDRESS attribute, or
        // if such attribute is invalid, the server MUST return a 400 (Bad
        // Request) error." "If the new connection is forbidden by local
        // policy, the server MUST reject the request with a 403 (Forbidden)
        // error." (443 for a family without a relay, as in RFC 8656.)
        let peer = match self.one_checked_peer(slot, msg) {
            Ok(peer) => peer,
            Err(code) => return self.error_with_key(msg, code, key, out),
        };
        let a = self.allocations.live(slot);
        // Like every relayed byte (RFC 8656 §9), a connection needs a
        // permission for the peer's address: 403 without one.
        if !a.permits(peer.ip(), now) {
            return self.error_with_key(msg, ErrorCode::FORBIDDEN, key, out);
        }
        let control = a.tuple;
        let Some(relay) = a.relay_for(&peer).copied() else {
            return self.error_with_key(msg, ErrorCode::PEER_ADDRESS_FAMILY_MISMATCH, key, out);
        };
        // "If the server is currently processing a Connect request for this
        // allocation with the same XOR-PEER-ADDRESS, it MUST return a 446
        // (Connection Already Exists) error." "If the server has already
        // successfully processed a Connect request for this allocation with
        // the same XOR-PEER-ADDRESS, and the resulting client and peer data
        // connections are either pending or active, it MUST return a 446".
        if self.connections.has_peer(&control, &peer) {
            return self.error_with_key(msg, ErrorCode::CONNECTION_ALREADY_EXISTS, key, out);
        }
        if self.connections.count_of(&control) >= MAX_CONNECTIONS {
            return self.error_with_key(msg, ErrorCode::INSUFFICIENT_CAPACITY, key, out);
        }
        // "Otherwise, the server MUST initiate an outgoing TCP connection.
        // The local endpoint is the relayed transport address associated
        // with the allocation. The remote endpoint is the one indicated by
        // the XOR-PEER-ADDRESS attribute."
        let Some(id) = self.new_connection_id() else {
            return self.error_with_key(msg, ErrorCode::INSUFFICIENT_CAPACITY, key, out);
        };
        let answering = Answering {
            method: Method::CONNECT,
            tid: msg.transaction_id(),
            fingerprint: msg.has_fingerprint(),
        };
        self.add_connection(
            id,
            PeerConnection {
                control,
                peer,
                state: ConnState::Connecting { answering, key: *key },
                deadline: now + CONNECTION_TIMEOUT,
            },
        );
        self.commands.push_back(Command::ConnectPeer {
            id,
            relay: relay.id,
            from: relay.local,
            peer,
        });
        Output::Nothing
    }

    /// The driver's answer to [`Command::ConnectPeer`]: true if it should
    /// keep the connection (waiting for a ConnectionBind), false if it must
    /// close it (the Connect was given up or the allocation is gone).
    pub fn peer_connected(&mut self, now: Instant, id: ConnectionId, connected: bool) -> bool {
        let Some(c) = self.connections.get(id) else {
            return false;
        };
        let ConnState::Connecting { answering, key } = c.state.clone() else {
            return false;
        };
        let control = c.control;
        if !connected {
            // "If the connection attempt fails or times out, the server MUST
            // return a 447 (Connection Timeout or Failure) error."
            self.connections.remove(id);
            self.stats.tcp_relay.failed += 1;
            self.send_response(
                control,
                answering,
                Some(ErrorCode::CONNECTION_TIMEOUT_OR_FAILURE),
                &key,
                None,
            );
            return false;
        }
        // "If the connection is successful, it is now called a peer data
        // connection." "The server MUST include the CONNECTION-ID attribute
        // in the Connect success response." "If no ConnectionBind request
        // associated with this peer data connection is received after 30
        // seconds, the peer data connection MUST be closed."
        self.connections.connected(id, now + CONNECTION_TIMEOUT);
        self.stats.tcp_relay.connected += 1;
        self.timers
            .push(now + CONNECTION_TIMEOUT, Timer::Connection { id: id.0 });
        self.send_response(control, answering, None, &key, Some(id));
        true
    }

    /// RFC 6062 §5.3 "Receiving a TCP Connection on a Relayed Transport
    /// Address": the driver accepted a connection from `peer` on TCP relay
    /// `relay`. Returns its CONNECTION-ID if the driver should keep it
    /// (unread, so the kernel buffers the peer's data) for a ConnectionBind;
    /// None: close it.
    pub fn peer_accepted(&mut self, now: Instant, relay: crate::RelayId, peer: PeerAddr) -> Option<ConnectionId> {
        let slot = self.allocations.by_relay(relay)?;
        let a = self.allocations.live(slot);
        // Connections from peers the policy refuses, or that hold no
        // permission, are closed; the client hears nothing of them.
        if !a.tcp || a.is_expired(now) || !a.permits(peer.ip(), now) || !self.config.policy.allows(peer) {
            return None;
        }
        let control = a.tuple;
        if self.connections.count_of(&control) >= MAX_CONNECTIONS {
            return None;
        }
        let id = self.new_connection_id()?;
        self.add_connection(
            id,
            PeerConnection {
                control,
                peer,
                state: ConnState::Pending,
                deadline: now + CONNECTION_TIMEOUT,
            },
        );
        // "the server MUST send a ConnectionAttempt indication to the client
        // over the control connection. The indication MUST include an
        // XOR-PEER-ADDRESS attribute containing the peer's transport
        // address, as well as a CONNECTION-ID attribute uniquely identifying
        // the peer data connection."
        let mut buf = [0u8; 128];
        let mut tid = [0u8; 12];
        tid[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        tid[8..].copy_from_slice(&(self.rng.next_u64() as u32).to_be_bytes());
        let built = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::CONNECTION_ATTEMPT, Class::Indication),
            &tid,
        )
        .and_then(|mut b| {
            b.add_xor_address(attr::XOR_PEER_ADDRESS, peer.0)?;
            b.add_u32(attr::CONNECTION_ID, id.0)?;
            b.add_fingerprint()?;
            Ok(b.finish())
        });
        if let Ok(n) = built {
            self.commands.push_back(Command::SendToClient {
                tuple: control,
                data: buf[..n].to_vec(),
            });
        }
        self.stats.tcp_relay.accepted += 1;
        Some(id)
    }

    /// RFC 6062 §5.4 "Receiving a ConnectionBind Request", on a new client
    /// connection. On success the driver asks [`Server::data_connection`]
    /// and from then on splices the two connections: the bytes after this
    /// request on the client connection are the peer's, unframed.
    pub(crate) fn connection_bind(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message<'_>,
        out: &mut [u8],
    ) -> Output {
        // "If the client connection transport is not TCP or TLS, the server
        // MUST return a 400 (Bad Request) error." (Bare, before any
        // authentication work: it cannot succeed.)
        if !tuple.transport.is_stream() {
            return self.refuse_stranger(now, tuple, msg, ErrorCode::BAD_REQUEST, out);
        }
        let (username, key) = match self.authenticate(now, tuple, msg, out) {
            Ok(v) => v,
            Err(o) => return o,
        };
        // "If the request does not contain the CONNECTION-ID attribute, or if
        // this attribute does not refer to an existing pending connection,
        // the server MUST return a 400 (Bad Request) error." A connection
        // already carrying an allocation or a data connection cannot become one.
        let id = match msg.get(attr::CONNECTION_ID) {
            Some(v) if v.len() == 4 => ConnectionId(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            _ => return self.error_with_key(msg, ErrorCode::BAD_REQUEST, &key, out),
        };
        let pending = match self.connections.get(id) {
            Some(c) if matches!(c.state, ConnState::Pending) => c.control,
            _ => return self.error_with_key(msg, ErrorCode::BAD_REQUEST, &key, out),
        };
        if self.allocations.by_tuple(&tuple).is_some() || self.connections.by_data(&tuple).is_some() {
            return self.error_with_key(msg, ErrorCode::BAD_REQUEST, &key, out);
        }
        // The data connection must use the credentials of the allocation
        // (RFC 8656 §5: otherwise 441).
        let owner = self
            .allocations
            .by_tuple(&pending)
            .map(|slot| self.allocations.live(slot).username.as_str());
        if owner != Some(username.as_str()) {
            return self.error_with_key(msg, ErrorCode::WRONG_CREDENTIALS, &key, out);
        }
        // "Otherwise, the client connection is now called a client data
        // connection. Data received on it MUST be sent as-is to the
        // associated peer data connection. Data received on the associated
        // peer data connection MUST be sent as-is on this client data
        // connection."
        self.connections.bind(id, tuple);
        self.stats.tcp_relay.bound += 1;
        self.reply(msg, None, Some(&key), out, |_| Ok(()))
    }

    /// The peer data connection spliced to the client data connection on
    /// `tuple`, once its ConnectionBind succeeded.
    pub fn data_connection(&self, tuple: &FiveTuple) -> Option<ConnectionId> {
        self.connections.by_data(tuple)
    }

    /// Counts what the splice of the client data connection on `data`
    /// relayed into its allocation's traffic (logs, admin view, metrics).
    pub fn count_spliced(&mut self, data: &FiveTuple, to_peer: u64, to_client: u64) {
        let Some(id) = self.connections.by_data(data) else {
            return;
        };
        let Some(control) = self.connections.get(id).map(|c| c.control) else {
            return;
        };
        let traffic = crate::allocation::Traffic {
            to_peer_bytes: to_peer,
            to_client_bytes: to_client,
            ..Default::default()
        };
        self.stats.traffic.add(&traffic);
        if let Some(slot) = self.allocations.by_tuple(&control) {
            self.allocations.live_mut(slot).traffic.add(&traffic);
        }
    }

    /// Peer data connection `id` ended (either side closed, or the driver
    /// could not keep it): forget it.
    pub fn peer_connection_closed(&mut self, id: ConnectionId) {
        self.connections.remove(id);
    }

    /// RFC 6062 §5.5: the connections of an allocation end with it (those
    /// to peers of `family` with that family's relay, RFC 8656 §8.1).
    pub(crate) fn close_connections_of(&mut self, control: &FiveTuple, family: Option<Family>) {
        for id in self.connections.of_allocation(control, family) {
            self.connections.remove(id);
            self.commands.push_back(Command::ClosePeer { id });
        }
    }

    /// A connection's timer: a Connect still unanswered gets 447 and an
    /// unbound connection is closed (both 30 s, RFC 6062 §5.2, §5.3).
    pub(crate) fn connection_timeout(&mut self, now: Instant, id: ConnectionId) {
        let Some(c) = self.connections.get(id) else { return };
        if now < c.deadline {
            return;
        }
        match c.state {
            ConnState::Connecting { .. } => {
                self.peer_connected(now, id, false);
                self.commands.push_back(Command::ClosePeer { id });
            }
            ConnState::Pending => {
                self.connections.remove(id);
                self.stats.tcp_relay.expired += 1;
                self.commands.push_back(Command::ClosePeer { id });
            }
            ConnState::Bound { .. } => {}
        }
    }

    fn add_connection(&mut self, id: ConnectionId, c: PeerConnection) {
        self.timers.push(c.deadline, Timer::Connection { id: id.0 });
        self.connections.insert(id, c);
        self.compact_timers();
    }

    /// A fresh CONNECTION-ID, unique on this shard, that names this shard
    /// (`id % shard_count == shard_index`). None only if 16 random tries
    /// all collided, which a shard holding far fewer than 2^32 connections
    /// never sees.
    fn new_connection_id(&mut self) -> Option<ConnectionId> {
        let count = self.config.shard_count.max(1) as u64;
        let index = self.config.shard_index as u64;
        (0..16).find_map(|_| {
            let r = self.rng.next_u64() >> 32;
            let v = r - r % count + index;
            let id = ConnectionId(u32::try_from(v).ok()?);
            (id.0 != 0 && !self.connections.contains(id)).then_some(id)
        })
    }

    /// Sends a deferred response (signed with `key`) to the client on `tuple`.
    fn send_response(
        &mut self,
        tuple: FiveTuple,
        to: Answering,
        code: Option<ErrorCode>,
        key: &Key,
        id: Option<ConnectionId>,
    ) {
        let mut buf = [0u8; 256];
        let built = self.write_response(to, code, Some(key), &mut buf, |b| match id {
            Some(id) => b.add_u32(attr::CONNECTION_ID, id.0),
            None => Ok(()),
        });
        if let Ok(n) = built {
            self.commands.push_back(Command::SendToClient {
                tuple,
                data: buf[..n].to_vec(),
            });
        }
    }
}
