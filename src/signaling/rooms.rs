//! The signaling core: connections, rooms and peers, with no sockets and no
//! clock. Feed one input (`connect`, `handle`, `handle_disconnect`,
//! `handle_timeout`) with `now`, then drain every [`Output`] with
//! [`Rooms::poll_output`] and call `handle_timeout` again at
//! [`Rooms::poll_timeout`] (the end of the earliest resume grace).
//!
//! Relayed bytes are budgeted (see `budget`): each connection's outgoing
//! queue in the driver is charged what is delivered to it and credited by
//! `handle_sent` and `handle_queue_gone`; a peer in its grace holds its kept
//! messages here, serialized, until it resumes or the grace ends.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use super::budget::{DropCounts, Exhausted, QueueBudget};
use super::bus::BusMessage;
use super::ids::IdSource;
use super::message::{
    excerpt, ClientMessage, ErrorCode, PeerId, Refusal, RelayBody, Relayed, ResumeToken, RoomName, ServerMessage,
};
use super::rate::TokenBucket;
use super::SignalingLimits;

/// After this many protocol violations a connection is closed.
pub const MAX_PROTOCOL_ERRORS: u32 = 10;

/// Relayed messages kept for a peer during its resume grace; later ones are dropped.
pub const MAX_PENDING: usize = 32;

/// One WebSocket connection, as numbered by [`Rooms::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this message on this connection.
    Deliver(ConnId, ServerMessage),
    /// Send what is already queued for this connection, then close it. The
    /// core has already forgotten it (its peer, if any, is in its grace).
    Close(ConnId),
    /// Tell the other nodes of the cluster (only after [`Rooms::set_node`]).
    Publish(BusMessage),
}

/// A peer's seat: which room and which id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Seat {
    room: RoomName,
    peer: PeerId,
}

struct Conn {
    seat: Option<Seat>,
    bucket: TokenBucket,
    violations: u32,
}

struct Peer {
    /// None while the peer's socket is gone and its id is reserved.
    conn: Option<ConnId>,
    token: ResumeToken,
    grace_until: Option<Instant>,
    /// Relayed to it during its grace, serialized; `pending_bytes` in all.
    pending: VecDeque<Relayed>,
    pending_bytes: usize,
}

#[derive(Default)]
struct Room {
    peers: BTreeMap<PeerId, Peer>,
    /// Peers of this room on other nodes of the cluster.
    remote: BTreeMap<PeerId, RemotePeer>,
}

struct RemotePeer {
    node: String,
    token: ResumeToken,
}

impl Room {
    fn size(&self) -> usize {
        self.peers.len() + self.remote.len()
    }

    /// Every id in the room but `except`, local and remote, sorted.
    fn ids_except(&self, except: Option<&PeerId>) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> = self
            .peers
            .keys()
            .chain(self.remote.keys())
            .filter(|p| Some(*p) != except)
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    fn live_conns(&self) -> Vec<ConnId> {
        self.peers.values().filter_map(|p| p.conn).collect()
    }
}

/// Every connection, room and peer of one hub.
pub struct Rooms {
    limits: SignalingLimits,
    ids: IdSource,
    next_conn: u64,
    conns: HashMap<ConnId, Conn>,
    rooms: HashMap<RoomName, Room>,
    tokens: HashMap<ResumeToken, Seat>,
    /// Ends of resume graces: the one deadline queue.
    graces: BTreeSet<(Instant, Seat)>,
    out: VecDeque<Output>,
    /// Relayed bytes in each connection's outgoing queue in the driver, from
    /// `connect` until `handle_queue_gone` (which may come after the core
    /// forgot the connection: its queue is still being flushed).
    queues: HashMap<ConnId, usize>,
    budget: QueueBudget,
    drops: DropCounts,
    /// This node's id once it is part of a cluster (see `bus`).
    node: Option<String>,
}

impl Rooms {
    pub fn new(limits: SignalingLimits, secret: [u8; 32]) -> Rooms {
        Rooms {
            limits: limits.clone(),
            ids: IdSource::new(secret),
            next_conn: 0,
            conns: HashMap::new(),
            rooms: HashMap::new(),
            tokens: HashMap::new(),
            graces: BTreeSet::new(),
            out: VecDeque::new(),
            queues: HashMap::new(),
            budget: QueueBudget::new(limits.max_queued_bytes_per_peer, limits.max_queued_bytes),
            drops: DropCounts::default(),
            node: None,
        }
    }

    /// A new connection, not yet in a room.
    pub fn connect(&mut self, now: Instant) -> ConnId {
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        let conn = Conn {
            seat: None,
            bucket: TokenBucket::new(self.limits.max_messages_per_sec, now),
            violations: 0,
        };
        self.conns.insert(id, conn);
        self.queues.insert(id, 0);
        id
    }

    /// The driver wrote a message charged `size` bytes to `conn`'s socket
    /// (or could not queue it at all).
    pub fn handle_sent(&mut self, conn: ConnId, size: usize) {
        if let Some(held) = self.queues.get_mut(&conn) {
            let n = size.min(*held);
            *held -= n;
            self.budget.release(n);
        }
    }

    /// `conn`'s outgoing queue is gone with its socket: what it held is freed.
    pub fn handle_queue_gone(&mut self, conn: ConnId) {
        if let Some(held) = self.queues.remove(&conn) {
            self.budget.release(held);
        }
    }

    /// A budget the driver found exhausted (a slow reader's full queue).
    pub fn count_drop(&mut self, why: Exhausted) {
        self.drops.add(why);
    }

    /// Messages refused or dropped so far, by reason.
    pub fn drops(&self) -> &DropCounts {
        &self.drops
    }

    /// Rooms with at least one member (a peer in its resume grace counts).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Relayed bytes held now: in the driver's queues and for peers in their grace.
    pub fn queued_bytes(&self) -> usize {
        self.budget.total()
    }

    /// One frame from `conn`: a parsed message, or why it could not be parsed.
    /// Frames from a connection already closed are ignored.
    pub fn handle(&mut self, conn: ConnId, frame: Result<ClientMessage, Refusal>, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        // A flooder gets one error and is cut off.
        if !c.bucket.take(now) {
            let limit = self.limits.max_messages_per_sec;
            self.send_error(
                conn,
                Refusal::new(ErrorCode::RateLimited, format!("more than {limit} messages a second")),
            );
            self.close(conn, now);
            return;
        }
        let result = frame.and_then(|m| self.dispatch(conn, m));
        if let Err(refusal) = result {
            self.refuse(conn, refusal, now);
        }
    }

    /// The connection's socket is gone (or was closed by the driver). A seated
    /// peer keeps its id for `resume_grace`; others hear `peer-left` only when
    /// the grace ends.
    pub fn handle_disconnect(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let Some(seat) = c.seat else {
            return;
        };
        if self.limits.resume_grace.is_zero() {
            self.remove_peer(&seat);
            return;
        }
        let until = now + self.limits.resume_grace;
        if let Some(p) = self.peer_mut(&seat) {
            p.conn = None;
            p.grace_until = Some(until);
            self.graces.insert((until, seat));
        }
    }

    /// Ends every resume grace due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((until, _)) = self.graces.first() {
            if *until > now {
                break;
            }
            if let Some((_, seat)) = self.graces.pop_first() {
                self.remove_peer(&seat);
            }
        }
    }

    /// When to call [`Rooms::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.graces.first().map(|(t, _)| *t)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn dispatch(&mut self, conn: ConnId, msg: ClientMessage) -> Result<(), Refusal> {
        match msg {
            ClientMessage::Ping => {
                self.deliver(conn, ServerMessage::Pong);
                Ok(())
            }
            ClientMessage::Join { room, resume: None } => self.join(conn, room),
            ClientMessage::Join {
                room,
                resume: Some(token),
            } => self.resume(conn, room, token),
            ClientMessage::Relay { to, body } => self.relay(conn, to, body),
            ClientMessage::Leave => self.leave(conn),
        }
    }

    /// `join`: a fresh id in `room`; the others hear `peer-joined`.
    fn join(&mut self, conn: ConnId, room_name: RoomName) -> Result<(), Refusal> {
        self.not_seated(conn)?;
        let max = self.limits.max_room_size;
        let room = self.rooms.entry(room_name.clone()).or_default();
        if room.size() >= max {
            return Err(Refusal::new(
                ErrorCode::RoomFull,
                format!("room `{}` already has {max} peers", room_name.as_str()),
            ));
        }
        let id = loop {
            let id = self.ids.peer_id();
            if !room.peers.contains_key(&id) && !room.remote.contains_key(&id) {
                break id;
            }
        };
        let token = self.ids.resume_token();
        let peers = room.ids_except(None);
        let live = room.live_conns();
        room.peers.insert(
            id.clone(),
            Peer {
                conn: Some(conn),
                token: token.clone(),
                grace_until: None,
                pending: VecDeque::new(),
                pending_bytes: 0,
            },
        );
        let seat = Seat {
            room: room_name,
            peer: id.clone(),
        };
        self.tokens.insert(token.clone(), seat.clone());
        self.announce(&seat, &token, false);
        self.seat(conn, seat);
        for other in live {
            self.deliver(other, ServerMessage::PeerJoined(id.clone()));
        }
        self.deliver(
            conn,
            ServerMessage::Welcome {
                id,
                peers,
                resume: token,
            },
        );
        Ok(())
    }

    /// `join` with `resume`: the same id again, silently for the others (they
    /// never heard it leave). A still-open old socket is closed. The token is
    /// single-use: the welcome carries a new one. Messages kept during the
    /// grace follow the welcome.
    fn resume(&mut self, conn: ConnId, room: RoomName, token: ResumeToken) -> Result<(), Refusal> {
        self.not_seated(conn)?;
        let bad = || {
            Refusal::new(
                ErrorCode::BadResume,
                "unknown or expired resume token for this room; join without it",
            )
        };
        let seat = match self.tokens.get(&token) {
            Some(seat) if seat.room == room => seat.clone(),
            Some(_) => return Err(bad()),
            None => return self.resume_remote(conn, room, &token).ok_or_else(bad),
        };
        let Some(room) = self.rooms.get_mut(&seat.room) else {
            return Err(bad());
        };
        let Some(peer) = room.peers.get_mut(&seat.peer) else {
            return Err(bad());
        };
        let new_token = self.ids.resume_token();
        let old = peer.conn.replace(conn);
        let grace = peer.grace_until.take();
        let pending = std::mem::take(&mut peer.pending);
        // Moved from the grace queue to the socket's (charged again on delivery).
        self.budget.release(std::mem::take(&mut peer.pending_bytes));
        peer.token = new_token.clone();
        let peers = room.ids_except(Some(&seat.peer));
        if let Some(until) = grace {
            self.graces.remove(&(until, seat.clone()));
        }
        self.tokens.remove(&token);
        self.tokens.insert(new_token.clone(), seat.clone());
        self.announce(&seat, &new_token, true);
        if let Some(old) = old {
            self.conns.remove(&old);
            self.out.push_back(Output::Close(old));
        }
        self.deliver(
            conn,
            ServerMessage::Welcome {
                id: seat.peer.clone(),
                peers,
                resume: new_token,
            },
        );
        self.seat(conn, seat);
        for m in pending {
            self.deliver(conn, ServerMessage::Relayed(m));
        }
        Ok(())
    }

    /// `offer`/`answer`/`candidate`: to one other peer of the sender's room,
    /// with `from`. A peer in its grace gets it on resume (up to MAX_PENDING).
    /// Refused (`peer-busy`, `server-busy`) when it would take the target's
    /// queue or the hub over its byte budget; the target keeps what it has.
    fn relay(&mut self, conn: ConnId, to: PeerId, body: RelayBody) -> Result<(), Refusal> {
        let seat = self.seated(conn)?;
        let unknown = || {
            Refusal::new(
                ErrorCode::UnknownPeer,
                format!("no other peer `{}` in your room", excerpt(&to.0)),
            )
        };
        if to == seat.peer {
            return Err(unknown());
        }
        let Some(room) = self.rooms.get_mut(&seat.room) else {
            return Err(unknown());
        };
        if room.remote.contains_key(&to) {
            let text = Relayed::new(&seat.peer, &body).as_str().to_string();
            self.out.push_back(Output::Publish(BusMessage::Relay {
                room: seat.room.as_str().to_string(),
                to: to.0,
                text,
            }));
            return Ok(());
        }
        if !room.peers.contains_key(&to) {
            return Err(unknown());
        }
        let msg = Relayed::new(&seat.peer, &body);
        if let Err(why) = self.hand_to(&seat.room, &to, msg) {
            return Err(match why {
                Exhausted::HubQueueFull => Refusal::new(
                    ErrorCode::ServerBusy,
                    "the server holds too many undelivered messages; try again later",
                ),
                _ => Refusal::new(
                    ErrorCode::PeerBusy,
                    format!("peer `{to}` has too many undelivered messages; try again later"),
                ),
            });
        }
        Ok(())
    }

    /// Delivers `msg` to local peer `to` of `room`, or keeps it for them
    /// during their grace, within the byte budgets (a refusal is counted).
    /// Nothing happens when there is no such peer.
    fn hand_to(&mut self, room: &RoomName, to: &PeerId, msg: Relayed) -> Result<(), Exhausted> {
        let Some(target) = self.rooms.get_mut(room).and_then(|r| r.peers.get_mut(to)) else {
            return Ok(());
        };
        let size = msg.size();
        let admitted = match target.conn {
            Some(c) => self.budget.admit(self.queues.get(&c).copied().unwrap_or(0), size),
            None if target.pending.len() >= MAX_PENDING => Err(Exhausted::PeerQueueFull),
            None => self.budget.admit(target.pending_bytes, size),
        };
        if let Err(why) = admitted {
            self.drops.add(why);
            return Err(why);
        }
        match target.conn {
            Some(c) => self.deliver(c, ServerMessage::Relayed(msg)),
            None => {
                target.pending_bytes += size;
                target.pending.push_back(msg);
                self.budget.charge(size);
            }
        }
        Ok(())
    }

    /// `leave`: the id is released at once and the others hear `peer-left`.
    /// The connection stays open and may join again.
    fn leave(&mut self, conn: ConnId) -> Result<(), Refusal> {
        let seat = self.seated(conn)?;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.seat = None;
        }
        self.remove_peer(&seat);
        Ok(())
    }

    fn remove_peer(&mut self, seat: &Seat) {
        let Some(room) = self.rooms.get_mut(&seat.room) else {
            return;
        };
        let Some(peer) = room.peers.remove(&seat.peer) else {
            return;
        };
        let live = room.live_conns();
        if room.size() == 0 {
            self.rooms.remove(&seat.room);
        }
        if self.node.is_some() {
            self.out.push_back(Output::Publish(BusMessage::Left {
                room: seat.room.as_str().to_string(),
                peer: seat.peer.0.clone(),
            }));
        }
        self.tokens.remove(&peer.token);
        self.budget.release(peer.pending_bytes);
        if let Some(until) = peer.grace_until {
            self.graces.remove(&(until, seat.clone()));
        }
        if let Some(c) = peer.conn.and_then(|c| self.conns.get_mut(&c)) {
            c.seat = None;
        }
        for other in live {
            self.deliver(other, ServerMessage::PeerLeft(seat.peer.clone()));
        }
    }

    fn refuse(&mut self, conn: ConnId, refusal: Refusal, now: Instant) {
        let code = refusal.code;
        self.send_error(conn, refusal);
        let too_many = match self.conns.get_mut(&conn) {
            Some(c) if code.is_protocol_violation() => {
                c.violations += 1;
                c.violations >= MAX_PROTOCOL_ERRORS
            }
            _ => false,
        };
        if code == ErrorCode::TooLarge || too_many {
            self.close(conn, now);
        }
    }

    fn close(&mut self, conn: ConnId, now: Instant) {
        self.out.push_back(Output::Close(conn));
        self.handle_disconnect(conn, now);
    }

    fn send_error(&mut self, conn: ConnId, refusal: Refusal) {
        self.deliver(conn, ServerMessage::Error(refusal));
    }

    /// Queues `msg` for `conn`, charging its queue what the driver will
    /// credit back with `handle_sent`.
    fn deliver(&mut self, conn: ConnId, msg: ServerMessage) {
        let size = msg.charged_size();
        if let Some(held) = self.queues.get_mut(&conn) {
            *held += size;
            self.budget.charge(size);
        }
        self.out.push_back(Output::Deliver(conn, msg));
    }

    fn seat(&mut self, conn: ConnId, seat: Seat) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.seat = Some(seat);
        }
    }

    fn seated(&self, conn: ConnId) -> Result<Seat, Refusal> {
        self.conns
            .get(&conn)
            .and_then(|c| c.seat.clone())
            .ok_or_else(|| Refusal::new(ErrorCode::NotJoined, "join a room first"))
    }

    fn not_seated(&self, conn: ConnId) -> Result<(), Refusal> {
        match self.conns.get(&conn).and_then(|c| c.seat.as_ref()) {
            Some(seat) => Err(Refusal::new(
                ErrorCode::AlreadyJoined,
                format!("already in room `{}`; leave first", seat.room.as_str()),
            )),
            None => Ok(()),
        }
    }

    fn peer_mut(&mut self, seat: &Seat) -> Option<&mut Peer> {
        self.rooms.get_mut(&seat.room)?.peers.get_mut(&seat.peer)
    }
}

/// Rooms that span the nodes of a cluster (see `bus`): the other nodes'
/// peers sit here as remote seats, counted toward `max_room_size`, listed in
/// `welcome`, relayed to through the bus, and resumable here with their token.
impl Rooms {
    /// Joins the cluster as node `node`: from now on seats are announced
    /// with [`Output::Publish`].
    pub fn set_node(&mut self, node: String) {
        self.node = Some(node);
    }

    /// Tells the other nodes that `seat` sits here with `token`.
    fn announce(&mut self, seat: &Seat, token: &ResumeToken, resumed: bool) {
        let Some(node) = self.node.clone() else { return };
        let (room, peer, token) = (seat.room.as_str().to_string(), seat.peer.0.clone(), token.0.clone());
        self.out.push_back(Output::Publish(if resumed {
            BusMessage::Resumed {
                room,
                peer,
                node,
                token,
            }
        } else {
            BusMessage::Joined {
                room,
                peer,
                node,
                token,
            }
        }));
    }

    /// `join` with the token of a peer on another node (its socket dropped
    /// there and came back here): the seat moves here, silently for the
    /// others. None when no remote peer of `room` has that token.
    fn resume_remote(&mut self, conn: ConnId, room_name: RoomName, token: &ResumeToken) -> Option<()> {
        let room = self.rooms.get_mut(&room_name)?;
        let id = room
            .remote
            .iter()
            .find(|(_, r)| proto::wire::ct_eq(r.token.0.as_bytes(), token.0.as_bytes()))
            .map(|(id, _)| id.clone())?;
        room.remote.remove(&id);
        let new_token = self.ids.resume_token();
        room.peers.insert(
            id.clone(),
            Peer {
                conn: Some(conn),
                token: new_token.clone(),
                grace_until: None,
                pending: VecDeque::new(),
                pending_bytes: 0,
            },
        );
        let peers = room.ids_except(Some(&id));
        let seat = Seat {
            room: room_name,
            peer: id.clone(),
        };
        self.tokens.insert(new_token.clone(), seat.clone());
        self.announce(&seat, &new_token, true);
        self.seat(conn, seat);
        self.deliver(
            conn,
            ServerMessage::Welcome {
                id,
                peers,
                resume: new_token,
            },
        );
        Some(())
    }

    /// One message from another node.
    pub fn handle_bus(&mut self, msg: BusMessage, now: Instant) {
        match msg {
            BusMessage::Joined {
                room,
                peer,
                node,
                token,
            } => self.seat_remote(&room, peer, node, token, true),
            BusMessage::Resumed {
                room,
                peer,
                node,
                token,
            } => {
                let Some(name) = RoomName::parse(&room) else { return };
                let seat = Seat {
                    room: name,
                    peer: PeerId(peer.clone()),
                };
                if self.peer_mut(&seat).is_some() {
                    self.moved_away(&seat, now);
                }
                self.seat_remote(&room, peer, node, token, false);
            }
            BusMessage::Left { room, peer } => {
                if let Some(name) = RoomName::parse(&room) {
                    self.unseat_remote(&name, &PeerId(peer));
                }
            }
            BusMessage::Relay { room, to, text } => self.relay_from_bus(&room, PeerId(to), text),
            BusMessage::Hello { .. } => self.announce_all(),
        }
    }

    /// Announces every local peer again (a node joined or came back).
    pub fn announce_all(&mut self) {
        let seats: Vec<(Seat, ResumeToken)> = self
            .rooms
            .iter()
            .flat_map(|(name, room)| {
                room.peers.iter().map(move |(id, p)| {
                    (
                        Seat {
                            room: name.clone(),
                            peer: id.clone(),
                        },
                        p.token.clone(),
                    )
                })
            })
            .collect();
        for (seat, token) in seats {
            self.announce(&seat, &token, false);
        }
    }

    /// Forgets the remote peers of `node` (None: of every node, when this
    /// node is cut off from the cluster); the local peers hear `peer-left`.
    pub fn forget_remote(&mut self, node: Option<&str>) {
        let gone: Vec<(RoomName, PeerId)> = self
            .rooms
            .iter()
            .flat_map(|(name, room)| {
                room.remote
                    .iter()
                    .filter(|(_, r)| node.is_none_or(|n| r.node == n))
                    .map(move |(id, _)| (name.clone(), id.clone()))
            })
            .collect();
        for (name, id) in gone {
            self.unseat_remote(&name, &id);
        }
    }

    fn seat_remote(&mut self, room: &str, peer: String, node: String, token: String, announce: bool) {
        let Some(name) = RoomName::parse(room) else { return };
        let id = PeerId(peer);
        let r = self.rooms.entry(name).or_default();
        if r.peers.contains_key(&id) {
            return; // an id clash across nodes: the local peer keeps it
        }
        let token = ResumeToken(token);
        let new = r.remote.insert(id.clone(), RemotePeer { node, token }).is_none();
        if new && announce {
            for c in r.live_conns() {
                self.deliver(c, ServerMessage::PeerJoined(id.clone()));
            }
        }
    }

    fn unseat_remote(&mut self, name: &RoomName, id: &PeerId) {
        let Some(room) = self.rooms.get_mut(name) else { return };
        if room.remote.remove(id).is_none() {
            return;
        }
        let live = room.live_conns();
        if room.size() == 0 {
            self.rooms.remove(name);
        }
        for c in live {
            self.deliver(c, ServerMessage::PeerLeft(id.clone()));
        }
    }

    /// A local peer resumed on another node: its seat here goes without a
    /// word to anyone (an old socket is closed), and what was kept for it
    /// during its grace follows it there.
    fn moved_away(&mut self, seat: &Seat, now: Instant) {
        let Some(room) = self.rooms.get_mut(&seat.room) else {
            return;
        };
        let Some(peer) = room.peers.remove(&seat.peer) else {
            return;
        };
        self.tokens.remove(&peer.token);
        self.budget.release(peer.pending_bytes);
        if let Some(until) = peer.grace_until {
            self.graces.remove(&(until, seat.clone()));
        }
        if let Some(old) = peer.conn {
            if let Some(c) = self.conns.get_mut(&old) {
                c.seat = None;
            }
            self.out.push_back(Output::Close(old));
            self.handle_disconnect(old, now);
        }
        for m in peer.pending {
            self.out.push_back(Output::Publish(BusMessage::Relay {
                room: seat.room.as_str().to_string(),
                to: seat.peer.0.clone(),
                text: m.as_str().to_string(),
            }));
        }
    }

    /// A message relayed from another node to a peer here; dropped and
    /// counted when the budgets refuse it (its sender cannot be told).
    fn relay_from_bus(&mut self, room: &str, to: PeerId, text: String) {
        let Some(name) = RoomName::parse(room) else { return };
        let _ = self.hand_to(&name, &to, Relayed::from_text(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::message::parse;
    use serde_json::{json, Value};
    use std::time::Duration;

    const GRACE: Duration = Duration::from_secs(30);

    fn limits() -> SignalingLimits {
        SignalingLimits {
            max_message_bytes: 4096,
            max_room_size: 3,
            max_messages_per_sec: 10,
            resume_grace: GRACE,
            ping_interval: Duration::from_secs(15),
            max_queued_bytes_per_peer: 8192,
            max_queued_bytes: 1 << 20,
        }
    }

    /// The core with a clock the test moves.
    struct T {
        rooms: Rooms,
        now: Instant,
    }

    impl T {
        fn new() -> T {
            T::with(limits())
        }

        fn with(limits: SignalingLimits) -> T {
            T {
                rooms: Rooms::new(limits, [1; 32]),
                now: Instant::now(),
            }
        }

        fn connect(&mut self) -> ConnId {
            self.rooms.connect(self.now)
        }

        fn send(&mut self, conn: ConnId, text: &str) -> Vec<Output> {
            let frame = parse(text, 4096);
            self.rooms.handle(conn, frame, self.now);
            self.drain()
        }

        fn drain(&mut self) -> Vec<Output> {
            std::iter::from_fn(|| self.rooms.poll_output()).collect()
        }

        fn advance(&mut self, d: Duration) -> Vec<Output> {
            self.now += d;
            self.rooms.handle_timeout(self.now);
            self.drain()
        }

        fn disconnect(&mut self, conn: ConnId) -> Vec<Output> {
            self.rooms.handle_disconnect(conn, self.now);
            self.drain()
        }

        /// Connects and joins `room`: (conn, id, token).
        fn join(&mut self, room: &str) -> (ConnId, PeerId, ResumeToken) {
            let c = self.connect();
            let out = self.send(c, &format!(r#"{{"type":"join","room":"{room}"}}"#));
            let welcome = out
                .iter()
                .find_map(|o| match o {
                    Output::Deliver(to, ServerMessage::Welcome { id, resume, .. }) if *to == c => {
                        Some((id.clone(), resume.clone()))
                    }
                    _ => None,
                })
                .expect("a welcome");
            (c, welcome.0, welcome.1)
        }
    }

    fn error_code(out: &[Output], conn: ConnId) -> Option<ErrorCode> {
        out.iter().find_map(|o| match o {
            Output::Deliver(c, ServerMessage::Error(r)) if *c == conn => Some(r.code),
            _ => None,
        })
    }

    fn closes(out: &[Output], conn: ConnId) -> bool {
        out.contains(&Output::Close(conn))
    }

    fn offer(to: &PeerId) -> String {
        format!(r#"{{"type":"offer","to":"{to}","sdp":"v=0"}}"#)
    }

    /// Hands every `Publish` in `out` to `to` as from the bus; returns what
    /// `to` then does.
    fn carry(out: &[Output], to: &mut T) -> Vec<Output> {
        for o in out {
            if let Output::Publish(m) = o {
                to.rooms.handle_bus(m.clone(), to.now);
            }
        }
        to.drain()
    }

    fn clustered(node: &str) -> T {
        let mut t = T::new();
        t.rooms.set_node(node.into());
        t
    }

    #[test]
    fn rooms_span_nodes_through_the_bus() {
        let (mut n1, mut n2) = (clustered("n1"), clustered("n2"));
        let c1 = n1.connect();
        let out = n1.send(c1, r#"{"type":"join","room":"r"}"#);
        let id1 = match &out[0] {
            Output::Publish(BusMessage::Joined { peer, node, .. }) if node == "n1" => PeerId(peer.clone()),
            other => panic!("the join is announced first: {other:?}"),
        };
        assert!(carry(&out, &mut n2).is_empty(), "nobody on n2 to tell yet");
        let c2 = n2.connect();
        let out = n2.send(c2, r#"{"type":"join","room":"r"}"#);
        let Some(Output::Deliver(_, ServerMessage::Welcome { id: id2, peers, resume })) = out
            .iter()
            .find(|o| matches!(o, Output::Deliver(_, ServerMessage::Welcome { .. })))
        else {
            panic!("a welcome: {out:?}");
        };
        let (id2, token2) = (id2.clone(), resume.clone());
        assert_eq!(peers, &vec![id1.clone()], "the welcome lists the remote peer");
        let told = carry(&out, &mut n1);
        assert_eq!(told, [Output::Deliver(c1, ServerMessage::PeerJoined(id2.clone()))]);

        let out = n2.send(c2, &offer(&id1));
        assert!(
            matches!(&out[..], [Output::Publish(BusMessage::Relay { to, .. })] if *to == id1.0),
            "{out:?}"
        );
        let delivered = carry(&out, &mut n1);
        assert!(
            matches!(&delivered[..], [Output::Deliver(c, ServerMessage::Relayed(m))] if *c == c1 && m.as_str().contains(&id2.0)),
            "{delivered:?}"
        );

        // A third seat anywhere fills a room of 3.
        let (_, id3, _) = n1.join("r");
        let c4 = n2.connect();
        let out = n2.send(c4, r#"{"type":"join","room":"r"}"#);
        assert!(error_code(&out, c4).is_none(), "n2 has not heard of the third yet");
        let _ = carry(&out, &mut n1);
        let c5 = n1.connect();
        let out = n1.send(c5, r#"{"type":"join","room":"r"}"#);
        assert_eq!(error_code(&out, c5), Some(ErrorCode::RoomFull), "remote seats count");
        let _ = id3;

        // n2's peer drops and resumes on n1 with the token n2 announced.
        let out = n2.disconnect(c2);
        assert!(out.is_empty(), "its grace begins silently: {out:?}");
        let back = n1.connect();
        let out = n1.send(
            back,
            &format!(r#"{{"type":"join","room":"r","resume":"{}"}}"#, token2.0),
        );
        assert!(
            out.iter().any(
                |o| matches!(o, Output::Deliver(c, ServerMessage::Welcome { id, .. }) if *c == back && *id == id2)
            ),
            "{out:?}"
        );
        assert!(!out
            .iter()
            .any(|o| matches!(o, Output::Deliver(_, ServerMessage::PeerJoined(_)))));
        let moved = carry(&out, &mut n2);
        assert!(
            !moved
                .iter()
                .any(|o| matches!(o, Output::Deliver(_, ServerMessage::PeerLeft(_)))),
            "n2 lets the seat go silently: {moved:?}"
        );
        // A node that is gone takes its seats with it: peer-left here.
        let c4_id = n1.rooms.rooms[&RoomName::parse("r").unwrap()]
            .remote
            .keys()
            .next()
            .cloned()
            .unwrap();
        n1.rooms.forget_remote(Some("n2"));
        let left = n1.drain();
        assert!(
            left.contains(&Output::Deliver(c1, ServerMessage::PeerLeft(c4_id))),
            "{left:?}"
        );
    }

    #[test]
    fn join_welcomes_and_announces() {
        let mut t = T::new();
        let (a, ida, _) = t.join("r");
        let b = t.connect();
        let out = t.send(b, r#"{"type":"join","room":"r"}"#);
        let Output::Deliver(to, ServerMessage::PeerJoined(idb)) = &out[0] else {
            panic!("peer-joined first: {out:?}");
        };
        assert_eq!(*to, a);
        let Output::Deliver(to, ServerMessage::Welcome { id, peers, .. }) = &out[1] else {
            panic!("then the welcome: {out:?}");
        };
        assert_eq!((*to, id, peers), (b, idb, &vec![ida]));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn relay_adds_from_and_drops_to() {
        let mut t = T::new();
        let (a, ida, _) = t.join("r");
        let (b, idb, _) = t.join("r");
        let out = t.send(
            a,
            &format!(r#"{{"type":"candidate","to":"{idb}","candidate":{{"c":1}}}}"#),
        );
        let [Output::Deliver(to, msg)] = &out[..] else {
            panic!("one delivery: {out:?}");
        };
        assert_eq!(*to, b);
        assert_eq!(
            serde_json::from_str::<Value>(&msg.to_json()).unwrap(),
            json!({"type": "candidate", "candidate": {"c": 1}, "from": ida.0})
        );
    }

    #[test]
    fn leave_announces_and_frees_the_seat() {
        let mut t = T::new();
        let (a, ida, _) = t.join("r");
        let (b, _, _) = t.join("r");
        let out = t.send(a, r#"{"type":"leave"}"#);
        assert_eq!(out, vec![Output::Deliver(b, ServerMessage::PeerLeft(ida.clone()))]);
        // Still connected: may relay no more, may join again (a new id).
        assert_eq!(error_code(&t.send(a, &offer(&ida)), a), Some(ErrorCode::NotJoined));
        let out = t.send(a, r#"{"type":"join","room":"r"}"#);
        assert!(matches!(&out[1], Output::Deliver(c, ServerMessage::Welcome { id, .. }) if *c == a && *id != ida));
    }

    #[test]
    fn last_leave_removes_the_room() {
        let mut t = T::new();
        let (a, _, _) = t.join("r");
        t.send(a, r#"{"type":"leave"}"#);
        assert!(t.rooms.rooms.is_empty());
        assert!(t.rooms.tokens.is_empty());
    }

    #[test]
    fn rooms_are_isolated() {
        let mut t = T::new();
        let (a, _, _) = t.join("one");
        let b = t.connect();
        let out = t.send(b, r#"{"type":"join","room":"two"}"#);
        assert!(
            matches!(&out[..], [Output::Deliver(x, ServerMessage::Welcome { peers, .. })] if *x == b && peers.is_empty())
        );
        let c = t.connect();
        let out = t.send(c, r#"{"type":"join","room":"one"}"#);
        let Output::Deliver(x, ServerMessage::PeerJoined(idc)) = &out[0] else {
            panic!("room `one` hears of its own newcomer: {out:?}");
        };
        assert_eq!(*x, a);
        let out = t.send(b, &offer(idc));
        assert_eq!(error_code(&out, b), Some(ErrorCode::UnknownPeer));
        assert_eq!(out.len(), 1, "nothing reaches room `one`");
        let out = t.send(b, r#"{"type":"leave"}"#);
        assert!(out.is_empty(), "nobody in `one` hears of `two`: {out:?}");
    }

    #[test]
    fn ping_needs_no_room() {
        let mut t = T::new();
        let a = t.connect();
        assert_eq!(
            t.send(a, r#"{"type":"ping"}"#),
            vec![Output::Deliver(a, ServerMessage::Pong)]
        );
    }

    #[test]
    fn every_refusal() {
        let mut t = T::new();
        let a = t.connect();
        for (text, code) in [
            ("{", ErrorCode::BadJson),
            (r#"{"type":"hug"}"#, ErrorCode::UnknownType),
            (r#"{"type":"offer"}"#, ErrorCode::BadMessage),
            (r#"{"type":"offer","to":"x"}"#, ErrorCode::NotJoined),
            (r#"{"type":"leave"}"#, ErrorCode::NotJoined),
            (r#"{"type":"join","room":""}"#, ErrorCode::BadRoom),
            (r#"{"type":"join","room":"r","resume":"nope"}"#, ErrorCode::BadResume),
        ] {
            assert_eq!(error_code(&t.send(a, text), a), Some(code), "{text}");
        }
        let (b, idb, _) = t.join("r");
        assert_eq!(
            error_code(&t.send(b, r#"{"type":"join","room":"s"}"#), b),
            Some(ErrorCode::AlreadyJoined)
        );
        assert_eq!(
            error_code(&t.send(b, &offer(&idb)), b),
            Some(ErrorCode::UnknownPeer),
            "not to yourself"
        );
        assert_eq!(
            error_code(&t.send(b, &offer(&PeerId("ghost".into()))), b),
            Some(ErrorCode::UnknownPeer)
        );
        // A long `to` is not echoed back at length.
        let out = t.send(b, &offer(&PeerId("g".repeat(3000))));
        assert!(matches!(&out[..], [Output::Deliver(_, ServerMessage::Error(r))] if r.message.len() < 100));
        t.join("r");
        t.join("r");
        let d = t.connect();
        let out = t.send(d, r#"{"type":"join","room":"r"}"#);
        assert_eq!(error_code(&out, d), Some(ErrorCode::RoomFull));
        assert!(!closes(&out, d), "a full room leaves the connection open");
        assert!(matches!(
            &t.send(d, r#"{"type":"join","room":"other"}"#)[0],
            Output::Deliver(_, ServerMessage::Welcome { .. })
        ));
        // Too large closes at once.
        let e = t.connect();
        t.rooms.handle(e, Err(Refusal::too_large(4096)), t.now);
        let out = t.drain();
        assert_eq!(error_code(&out, e), Some(ErrorCode::TooLarge));
        assert!(closes(&out, e));
    }

    #[test]
    fn ten_violations_close() {
        let mut t = T::with(SignalingLimits {
            max_messages_per_sec: 1000,
            ..limits()
        });
        let a = t.connect();
        for _ in 0..MAX_PROTOCOL_ERRORS - 1 {
            let out = t.send(a, "garbage");
            assert_eq!(error_code(&out, a), Some(ErrorCode::BadJson));
            assert!(!closes(&out, a));
        }
        let out = t.send(a, "garbage");
        assert_eq!(error_code(&out, a), Some(ErrorCode::BadJson));
        assert!(closes(&out, a), "the tenth closes");
        assert!(t.send(a, "garbage").is_empty(), "a closed connection is ignored");
    }

    #[test]
    fn races_are_not_violations() {
        let mut t = T::with(SignalingLimits {
            max_messages_per_sec: 1000,
            ..limits()
        });
        let (a, _, _) = t.join("r");
        for _ in 0..3 * MAX_PROTOCOL_ERRORS {
            let out = t.send(a, &offer(&PeerId("gone".into())));
            assert!(!closes(&out, a));
        }
    }

    #[test]
    fn flooding_is_cut_off() {
        let mut t = T::new();
        let (a, _, _) = t.join("r");
        let (b, _, _) = t.join("r");
        // A burst of twice the rate; the join took one.
        for _ in 0..19 {
            assert_eq!(
                t.send(a, r#"{"type":"ping"}"#),
                vec![Output::Deliver(a, ServerMessage::Pong)]
            );
        }
        let out = t.send(a, r#"{"type":"ping"}"#);
        assert_eq!(error_code(&out, a), Some(ErrorCode::RateLimited));
        assert!(closes(&out, a));
        assert!(t.send(a, r#"{"type":"ping"}"#).is_empty());
        // The other peer is unaffected.
        assert_eq!(
            t.send(b, r#"{"type":"ping"}"#),
            vec![Output::Deliver(b, ServerMessage::Pong)]
        );
    }

    #[test]
    fn rate_refills_with_time() {
        let mut t = T::new();
        let a = t.connect();
        for _ in 0..20 {
            t.send(a, r#"{"type":"ping"}"#);
        }
        t.advance(Duration::from_millis(500));
        for _ in 0..5 {
            assert_eq!(
                t.send(a, r#"{"type":"ping"}"#),
                vec![Output::Deliver(a, ServerMessage::Pong)]
            );
        }
    }

    #[test]
    fn resume_keeps_the_id_silently_and_delivers_pending() {
        let mut t = T::new();
        let (a, ida, token) = t.join("r");
        let (b, _, _) = t.join("r");
        assert!(t.disconnect(a).is_empty(), "no peer-left during the grace");
        // Relayed while away: kept.
        assert!(t.send(b, &offer(&ida)).is_empty());
        t.join("r");
        t.advance(GRACE - Duration::from_secs(1));
        let a2 = t.connect();
        let out = t.send(a2, &format!(r#"{{"type":"join","room":"r","resume":"{}"}}"#, token.0));
        let Output::Deliver(to, ServerMessage::Welcome { id, peers, resume }) = &out[0] else {
            panic!("a welcome: {out:?}");
        };
        assert_eq!((*to, id), (a2, &ida));
        assert_eq!(peers.len(), 2);
        assert_ne!(*resume, token, "a fresh token");
        assert!(
            matches!(&out[1], Output::Deliver(c, m @ ServerMessage::Relayed(_)) if *c == a2 && serde_json::from_str::<Value>(&m.to_json()).unwrap()["sdp"] == "v=0")
        );
        assert_eq!(out.len(), 2, "the others are told nothing");
        // Past the old grace end nothing happens, and the used token is dead.
        assert!(t.advance(Duration::from_secs(5)).is_empty());
        let a3 = t.connect();
        let out = t.send(a3, &format!(r#"{{"type":"join","room":"r","resume":"{}"}}"#, token.0));
        assert_eq!(error_code(&out, a3), Some(ErrorCode::BadResume));
    }

    #[test]
    fn newcomer_sees_a_peer_in_its_grace() {
        let mut t = T::new();
        let (a, ida, _) = t.join("r");
        t.disconnect(a);
        let c = t.connect();
        let out = t.send(c, r#"{"type":"join","room":"r"}"#);
        assert!(
            matches!(&out[..], [Output::Deliver(_, ServerMessage::Welcome { peers, .. })] if *peers == vec![ida.clone()])
        );
    }

    #[test]
    fn resume_of_a_live_socket_closes_the_old_one() {
        let mut t = T::new();
        let (a, ida, token) = t.join("r");
        let (b, _, _) = t.join("r");
        let a2 = t.connect();
        let out = t.send(a2, &format!(r#"{{"type":"join","room":"r","resume":"{}"}}"#, token.0));
        assert!(closes(&out, a));
        assert!(!out.iter().any(|o| matches!(o, Output::Deliver(c, _) if *c == b)));
        // The old socket's late disconnect changes nothing.
        assert!(t.disconnect(a).is_empty());
        let out = t.send(b, &offer(&ida));
        assert!(matches!(&out[..], [Output::Deliver(c, _)] if *c == a2));
    }

    #[test]
    fn resume_needs_the_right_room() {
        let mut t = T::new();
        let (a, _, token) = t.join("r");
        t.disconnect(a);
        let a2 = t.connect();
        let out = t.send(
            a2,
            &format!(r#"{{"type":"join","room":"elsewhere","resume":"{}"}}"#, token.0),
        );
        assert_eq!(error_code(&out, a2), Some(ErrorCode::BadResume));
    }

    #[test]
    fn grace_expiry_announces_the_leave() {
        let mut t = T::new();
        let (a, ida, token) = t.join("r");
        let (b, _, _) = t.join("r");
        t.disconnect(a);
        assert_eq!(t.rooms.poll_timeout(), Some(t.now + GRACE));
        assert!(t.advance(GRACE - Duration::from_millis(1)).is_empty());
        assert_eq!(
            t.advance(Duration::from_millis(1)),
            vec![Output::Deliver(b, ServerMessage::PeerLeft(ida))]
        );
        assert_eq!(t.rooms.poll_timeout(), None);
        let a2 = t.connect();
        let out = t.send(a2, &format!(r#"{{"type":"join","room":"r","resume":"{}"}}"#, token.0));
        assert_eq!(error_code(&out, a2), Some(ErrorCode::BadResume), "too late");
    }

    #[test]
    fn zero_grace_leaves_at_once() {
        let mut t = T::with(SignalingLimits {
            resume_grace: Duration::ZERO,
            ..limits()
        });
        let (a, ida, _) = t.join("r");
        let (b, _, _) = t.join("r");
        assert_eq!(t.disconnect(a), vec![Output::Deliver(b, ServerMessage::PeerLeft(ida))]);
    }

    #[test]
    fn a_reserved_seat_counts_toward_the_room_size() {
        let mut t = T::new();
        let (a, _, _) = t.join("r");
        t.join("r");
        t.join("r");
        t.disconnect(a);
        let d = t.connect();
        assert_eq!(
            error_code(&t.send(d, r#"{"type":"join","room":"r"}"#), d),
            Some(ErrorCode::RoomFull)
        );
        t.advance(GRACE);
        assert!(matches!(
            &t.send(d, r#"{"type":"join","room":"r"}"#).last(),
            Some(Output::Deliver(_, ServerMessage::Welcome { .. }))
        ));
    }

    #[test]
    fn pending_is_bounded() {
        let mut t = T::with(SignalingLimits {
            max_messages_per_sec: 1000,
            ..limits()
        });
        let (a, ida, token) = t.join("r");
        let (b, _, _) = t.join("r");
        t.disconnect(a);
        for i in 0..MAX_PENDING + 10 {
            let refused = error_code(&t.send(b, &offer(&ida)), b);
            assert_eq!(refused, (i >= MAX_PENDING).then_some(ErrorCode::PeerBusy), "{i}");
        }
        assert_eq!(t.rooms.drops().get(Exhausted::PeerQueueFull), 10);
        let a2 = t.connect();
        let out = t.send(a2, &format!(r#"{{"type":"join","room":"r","resume":"{}"}}"#, token.0));
        assert_eq!(out.len(), 1 + MAX_PENDING);
    }

    /// An offer to `to` of about `pad` bytes.
    fn big_offer(to: &PeerId, pad: usize) -> String {
        format!(r#"{{"type":"offer","to":"{to}","sdp":"{}"}}"#, "x".repeat(pad))
    }

    /// The bytes charged for each message a test delivered.
    fn charged(out: &[Output]) -> Vec<usize> {
        out.iter()
            .filter_map(|o| match o {
                Output::Deliver(_, m @ ServerMessage::Relayed(_)) => Some(m.charged_size()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_live_peer_queue_is_budgeted_until_written() {
        // 8 KiB per peer: two 3 KiB offers fit, a third does not.
        let mut t = T::new();
        let (a, _, _) = t.join("r");
        let (b, idb, _) = t.join("r");
        let first = charged(&t.send(a, &big_offer(&idb, 3000)));
        let second = charged(&t.send(a, &big_offer(&idb, 3000)));
        assert_eq!(t.rooms.queued_bytes(), first[0] + second[0]);
        let out = t.send(a, &big_offer(&idb, 3000));
        assert_eq!(error_code(&out, a), Some(ErrorCode::PeerBusy));
        assert!(!closes(&out, a), "not a violation");
        assert!(!out.iter().any(|o| matches!(o, Output::Deliver(c, _) if *c == b)));
        assert_eq!(t.rooms.drops().get(Exhausted::PeerQueueFull), 1);
        // The driver wrote one: room for another.
        t.rooms.handle_sent(b, first[0]);
        assert_eq!(charged(&t.send(a, &big_offer(&idb, 3000))).len(), 1);
        // Its socket ends: everything it held is freed, and the entry goes.
        t.disconnect(b);
        t.rooms.handle_queue_gone(b);
        assert_eq!(t.rooms.queued_bytes(), 0);
        assert!(!t.rooms.queues.contains_key(&b));
        t.rooms.handle_sent(b, 100);
        assert_eq!(t.rooms.queued_bytes(), 0, "late credits are ignored");
    }

    #[test]
    fn the_hub_total_is_shared_by_every_peer() {
        let mut t = T::with(SignalingLimits {
            max_queued_bytes: 10_000,
            ..limits()
        });
        let (a, _, _) = t.join("one");
        let (_, ida2, _) = t.join("one");
        let (c, _, _) = t.join("two");
        let (_, idc2, _) = t.join("two");
        t.send(a, &big_offer(&ida2, 3000));
        t.send(c, &big_offer(&idc2, 3000));
        t.send(c, &big_offer(&idc2, 3000));
        let out = t.send(a, &big_offer(&ida2, 3000));
        assert_eq!(error_code(&out, a), Some(ErrorCode::ServerBusy));
        assert_eq!(t.rooms.drops().get(Exhausted::HubQueueFull), 1);
        assert!(t.rooms.queued_bytes() <= 10_000);
    }

    #[test]
    fn grace_bytes_are_budgeted_moved_on_resume_and_freed_at_its_end() {
        let mut t = T::new();
        let (a, ida, token) = t.join("r");
        let (b, _, _) = t.join("r");
        t.disconnect(a);
        t.rooms.handle_queue_gone(a);
        assert!(t.send(b, &big_offer(&ida, 3000)).is_empty());
        assert!(t.send(b, &big_offer(&ida, 3000)).is_empty());
        let kept = t.rooms.queued_bytes();
        assert!(kept > 6000);
        assert_eq!(
            error_code(&t.send(b, &big_offer(&ida, 3000)), b),
            Some(ErrorCode::PeerBusy)
        );
        // On resume the kept bytes move to the new socket's queue.
        let a2 = t.connect();
        let out = t.send(a2, &format!(r#"{{"type":"join","room":"r","resume":"{}"}}"#, token.0));
        assert_eq!(charged(&out).iter().sum::<usize>(), kept);
        assert_eq!(t.rooms.queued_bytes(), kept);
        t.rooms.handle_queue_gone(a2);
        assert_eq!(t.rooms.queued_bytes(), 0);

        // Kept for a grace that ends: freed, and every map shrinks back.
        let mut t = T::new();
        let (a, ida, _) = t.join("r");
        let (b, _, _) = t.join("r");
        t.disconnect(a);
        t.rooms.handle_queue_gone(a);
        t.send(b, &big_offer(&ida, 3000));
        assert!(t.rooms.queued_bytes() > 0);
        t.advance(GRACE);
        assert_eq!(t.rooms.queued_bytes(), 0);
        t.disconnect(b);
        t.rooms.handle_queue_gone(b);
        t.advance(GRACE);
        assert!(t.rooms.rooms.is_empty() && t.rooms.tokens.is_empty() && t.rooms.graces.is_empty());
        assert!(t.rooms.conns.is_empty() && t.rooms.queues.is_empty());
    }
}
