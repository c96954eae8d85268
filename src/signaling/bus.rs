//! What the nodes of a cluster tell each other about their rooms, carried
//! by the cluster task over Redis pub/sub (channel `ternd:signal`).
//!
//! Delivery is at most once: a message published while a node is cut off
//! from Redis is lost for it. Order is kept per sending node (one
//! publishing connection, and Redis delivers a connection's messages in
//! order), so one peer's offer, answer and candidates arrive in the order it
//! sent them. Each node holds the peers of other nodes as remote seats; a
//! node that comes back (or a new one) says `hello`, and every node answers
//! by announcing its own peers again.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum BusMessage {
    /// A peer sits in `room` on node `node`, with this resume token (a
    /// token is good on every node; the bus is inside the trusted cluster).
    Joined {
        room: String,
        peer: String,
        node: String,
        token: String,
    },
    /// A peer left (`leave`, or the end of its grace).
    Left { room: String, peer: String },
    /// A peer resumed its id on node `node`, with a fresh token.
    Resumed {
        room: String,
        peer: String,
        node: String,
        token: String,
    },
    /// A relayed message (its text as delivered, with `from`) for `to`.
    Relay { room: String, to: String, text: String },
    /// Node `node` joined the bus (again): announce your peers.
    Hello { node: String },
}

/// One message on the channel, with the node that sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub node: String,
    pub msg: BusMessage,
}
