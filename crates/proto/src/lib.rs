//! ternd's protocol core: STUN (RFC 8489) and, later, TURN (RFC 8656), with no
//! sockets, no clock and no runtime.
//!
//! # The drive loop
//! A driver owns one [`Server`] per shard and, for every datagram or framed
//! stream message from a client:
//! 1. reads the bytes and notes `now` (a monotonic [`std::time::Instant`]);
//! 2. calls [`Server::handle_client`] with the client's [`FiveTuple`], the
//!    bytes and an output buffer;
//! 3. acts on the returned [`Output`]: send `out[..n]` back on the same
//!    socket or connection, or count the drop.
//!
//! The core never blocks, never allocates on the request path and never reads
//! the time itself, so every behaviour is testable by feeding inputs and
//! advancing a fake clock. TCP/TLS drivers cut the byte stream into messages
//! with [`framing::next_frame`].

pub mod addr;
pub mod allocation;
mod allocations;
pub mod auth;
mod binding;
mod budget;
pub mod clock;
mod close;
pub mod config;
pub mod drop_reason;
pub mod framing;
pub mod metrics;
pub mod nonce;
pub mod output;
mod pending;
pub mod policy;
mod ports;
pub mod quota;
pub mod reservation;
mod respond;
mod rng;
pub mod server;
pub mod stats;
mod timeouts;
mod timers;
mod turn;
pub mod wire;

pub use addr::{canonical, ClientAddr, FiveTuple, ServerAddr, Transport};
pub use allocation::RelayId;
pub use config::{LiveConfig, ServerConfig};
pub use drop_reason::{DropCounters, DropReason};
pub use output::{BindError, CloseReason, Command, Event, Output, PeerOutput, PEER_HEADROOM, PEER_TAILROOM};
pub use server::Server;
pub use stats::Stats;
