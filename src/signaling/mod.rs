//! WebSocket signaling (DESIGN.md §6): peers meet in named rooms and relay
//! `offer`/`answer`/`candidate` to each other through `GET /ws`.
//!
//! # Protocol
//! One JSON object per text frame, with a `type`. Unknown extra fields are
//! ignored.
//!
//! Client → server:
//! - `{"type":"join","room":"NAME"}`: NAME is 1-64 of `[A-Za-z0-9_-]`. Add
//!   `"resume":"TOKEN"` to take back the id a dropped socket had (below).
//! - `{"type":"offer"|"answer"|"candidate","to":"PEER_ID",...}`: relayed to
//!   that peer of your room; every other field (`sdp`, `candidate`, ...) is
//!   passed through untouched.
//! - `{"type":"leave"}`: leave the room (no reply); the socket stays open and
//!   may join again, with a new id.
//! - `{"type":"ping"}` → `{"type":"pong"}`, also before joining.
//!
//! Server → client:
//! - `{"type":"welcome","id":"PEER_ID","peers":["ID",...],"resume":"TOKEN"}`:
//!   your id, the others in the room (including ones inside their resume
//!   grace), and a single-use token for resuming.
//! - `{"type":"peer-joined","id":"ID"}`, `{"type":"peer-left","id":"ID"}`.
//! - Relayed messages: the sender's message with `"from":"SENDER_ID"` added
//!   and `to` removed (a client-supplied `from` is discarded).
//! - `{"type":"error","code":"CODE","message":"human text"}`, codes:
//!   `bad-json` (not a JSON object, or a binary frame), `unknown-type`,
//!   `bad-message` (a relay without a string `to`), `not-joined`,
//!   `already-joined`, `bad-room`, `room-full`, `unknown-peer` (no such
//!   other peer in your room), `too-large`, `rate-limited`, `bad-resume`
//!   (unknown, used, expired or other-room token), `peer-busy` and
//!   `server-busy` (a relay refused by a queue budget, below).
//!
//! # Limits
//! - A message over `max_message_bytes`: `too-large`, then the server closes.
//!   A WebSocket frame is refused by its header alone, before its payload
//!   is read.
//! - `max_messages_per_sec` per connection, bursts up to twice that (token
//!   bucket; every frame counts): one `rate-limited`, then the server closes.
//! - Ten protocol violations (bad-json, unknown-type, bad-message, bad-room,
//!   not-joined, already-joined) close the connection. room-full,
//!   unknown-peer and bad-resume do not count: a correct client hits them by
//!   racing other peers (nor do peer-busy and server-busy). After
//!   room-full the socket may join another room.
//! - The server sends a WebSocket ping every `ping_interval` and drops a
//!   socket from which nothing (pong or any frame) arrived for three.
//! - A reader whose send queue (256 messages) is full is dropped.
//! - Relayed messages are held as the text to send, never as parsed JSON,
//!   and their bytes are budgeted: waiting for one peer (in its socket's
//!   queue or kept during its grace) at most `max_queued_bytes_per_peer`,
//!   for all peers together at most `max_queued_bytes`. A relay that would
//!   exceed either is refused: the sender gets `peer-busy` or `server-busy`
//!   and the target keeps what it has. Each refusal is counted in
//!   `ternd_signaling_dropped_total{reason}` and warned about at most once
//!   per `WARN_INTERVAL`.
//!
//! # Resume
//! When a socket drops without `leave` (including every close by the
//! server), its id stays reserved in the room for `resume_grace`: the others
//! hear nothing until the grace ends, then `peer-left`. A new socket that
//! joins the same room with the token gets a `welcome` with the same id and
//! a fresh token; the others are told nothing (they never saw it leave). Up
//! to 32 messages relayed to the peer during its grace (within its byte
//! budget) are kept and follow that welcome; later ones are refused with
//! `peer-busy`. What a peer kept is freed when its grace ends. Resuming an id whose old socket is
//! still open (the server has not noticed it die) closes the old socket.
//! A reserved id counts toward `max_room_size`.
//!
//! # Across the nodes of a cluster
//! With `cluster.redis_url`, a room spans every node (`bus`): peers on
//! other nodes are listed in `welcome`, announced with `peer-joined` and
//! `peer-left`, count toward `max_room_size` (two joins on two nodes at the
//! same instant can both pass), receive relays through Redis pub/sub, and a
//! peer may resume its id on any node with its token. Delivery between
//! nodes is at most once and in order per sending node. While Redis is away
//! each node's rooms hold only its own peers (the others hear `peer-left`);
//! when it returns the nodes announce their peers again.
//!
//! # Layout
//! `message` (wire format), `rooms` (the pure core: inputs with `now`,
//! outputs drained), `rate`, `ids` and `budget` (its helpers), `bus` (what
//! nodes tell each other), `hub` (the core behind a mutex, delivering to
//! per-socket queues and to the cluster), `socket` (the per-socket task).

pub mod budget;
pub mod bus;
mod hub;
mod ids;
pub mod message;
mod rate;
pub mod rooms;
mod socket;

use std::time::Duration;

use crate::config::SignalingSection;

pub use hub::{Hub, HubStats, WARN_INTERVAL};
pub use socket::serve_socket;

/// Limits from `[signaling]`.
#[derive(Debug, Clone)]
pub struct SignalingLimits {
    pub max_message_bytes: usize,
    pub max_room_size: usize,
    pub max_messages_per_sec: u32,
    pub resume_grace: Duration,
    pub ping_interval: Duration,
    /// Relayed bytes waiting for one peer (socket queue or resume grace).
    pub max_queued_bytes_per_peer: usize,
    /// Relayed bytes waiting in the whole hub.
    pub max_queued_bytes: usize,
}

impl SignalingLimits {
    pub fn from_config(s: &SignalingSection) -> SignalingLimits {
        SignalingLimits {
            max_message_bytes: s.max_message_bytes.usize(),
            max_room_size: s.max_room_size,
            max_messages_per_sec: s.max_messages_per_sec,
            resume_grace: s.resume_grace.0,
            ping_interval: s.ping_interval.0,
            max_queued_bytes_per_peer: s.max_queued_bytes_per_peer.usize(),
            max_queued_bytes: s.max_queued_bytes.usize(),
        }
    }
}
