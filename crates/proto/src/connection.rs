//! RFC 6062 peer data connections of TCP relay allocations: each one is
//! known by its CONNECTION-ID from the Connect (or the ConnectionAttempt)
//! that made it until one side closes or its 30 s bind timer runs out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::addr::{Family, FiveTuple, PeerAddr};
use crate::answering::Answering;
use crate::wire::Key;

/// RFC 6062 §5.2 and §5.3: "If no ConnectionBind request associated with
/// this peer data connection is received after 30 seconds, the peer data
/// connection MUST be closed"; §5.2: a Connect times out after "at least 30
/// seconds".
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Peer data connections one allocation may hold at once (pending and bound);
/// past it a Connect gets 508 and an incoming connection is closed.
pub const MAX_CONNECTIONS: usize = 64;

/// A CONNECTION-ID (RFC 6062 §6.2.1). Ids come from the core's CSPRNG and
/// are never 0; `id % shard_count` is the shard that made it, so a driver
/// can tell which shard owns the connection a ConnectionBind names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u32);

impl ConnectionId {
    /// The shard (of `shard_count`) whose core made this id.
    pub fn shard(self, shard_count: usize) -> usize {
        self.0 as usize % shard_count.max(1)
    }
}

/// The CONNECTION-ID a ConnectionBind request names, read without any
/// check beyond the framing (the owning shard's core does the checks): a
/// driver uses it to hand the request to the shard that made the id.
pub fn bind_target(frame: &[u8]) -> Option<ConnectionId> {
    let msg = crate::wire::Message::parse(frame).ok()?;
    let t = msg.message_type();
    if t.method != crate::wire::Method::CONNECTION_BIND || t.class != crate::wire::Class::Request {
        return None;
    }
    match msg.get(crate::wire::attr::CONNECTION_ID)? {
        v if v.len() == 4 => Some(ConnectionId(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
        _ => None,
    }
}

/// Where a peer data connection is in its life.
#[derive(Debug, Clone)]
pub(crate) enum ConnState {
    /// Connect asked for it; the driver is connecting (the answer to send
    /// once it reports).
    Connecting { answering: Answering, key: Key },
    /// Connected or accepted, waiting for a ConnectionBind.
    Pending,
    /// Spliced to the client data connection on this 5-tuple.
    Bound { data: FiveTuple },
}

#[derive(Debug, Clone)]
pub(crate) struct PeerConnection {
    /// The control connection's 5-tuple (the allocation's).
    pub control: FiveTuple,
    pub peer: PeerAddr,
    pub state: ConnState,
    /// When the Connect gives up or an unbound connection is closed.
    pub deadline: Instant,
}

/// Every peer data connection of one shard.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    by_id: HashMap<ConnectionId, PeerConnection>,
    by_data: HashMap<FiveTuple, ConnectionId>,
}

impl Connections {
    pub fn get(&self, id: ConnectionId) -> Option<&PeerConnection> {
        self.by_id.get(&id)
    }

    pub fn contains(&self, id: ConnectionId) -> bool {
        self.by_id.contains_key(&id)
    }

    pub fn insert(&mut self, id: ConnectionId, c: PeerConnection) {
        self.by_id.insert(id, c);
    }

    pub fn remove(&mut self, id: ConnectionId) -> Option<PeerConnection> {
        let c = self.by_id.remove(&id)?;
        if let ConnState::Bound { data } = c.state {
            self.by_data.remove(&data);
        }
        Some(c)
    }

    /// The connection now spliced to the data connection on `data`.
    pub fn bind(&mut self, id: ConnectionId, data: FiveTuple) {
        if let Some(c) = self.by_id.get_mut(&id) {
            c.state = ConnState::Bound { data };
            self.by_data.insert(data, id);
        }
    }

    /// The connection a client data connection is spliced to.
    pub fn by_data(&self, data: &FiveTuple) -> Option<ConnectionId> {
        self.by_data.get(data).copied()
    }

    /// Marks a Connect answered: the connection waits for its ConnectionBind
    /// until `deadline`.
    pub fn connected(&mut self, id: ConnectionId, deadline: Instant) {
        if let Some(c) = self.by_id.get_mut(&id) {
            c.state = ConnState::Pending;
            c.deadline = deadline;
        }
    }

    /// The ids of the connections of the allocation on `control`, to peers
    /// of `family` only if one is given.
    pub fn of_allocation(&self, control: &FiveTuple, family: Option<Family>) -> Vec<ConnectionId> {
        self.by_id
            .iter()
            .filter(|(_, c)| c.control == *control && family.is_none_or(|f| c.peer.family() == f))
            .map(|(id, _)| *id)
            .collect()
    }

    /// True if the allocation on `control` has a connection to `peer`.
    pub fn has_peer(&self, control: &FiveTuple, peer: &PeerAddr) -> bool {
        self.by_id.values().any(|c| c.control == *control && c.peer == *peer)
    }

    pub fn count_of(&self, control: &FiveTuple) -> usize {
        self.by_id.values().filter(|c| c.control == *control).count()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}
