//! ternd's protocol core: STUN (RFC 8489) and TURN (RFC 8656, RFC 6156
//! dual-stack), with no sockets, no clock and no runtime. Every input carries
//! `now`; every output is a value the driver acts on.
//!
//! # The drive loop
//! A driver owns one [`Server`] per shard and keeps one rule:
//! 1. feed one input: [`Server::handle_client`] (a datagram or framed stream
//!    message; act on the returned [`Output`]: reply with `out[..n]`, send a
//!    range of the input to a peer, or nothing), [`Server::handle_peer`]
//!    (act on the [`PeerOutput`]), [`Server::relay_bound`],
//!    [`Server::handle_timeout`], [`Server::connection_closed`],
//!    [`Server::close_allocation`], [`Server::revoke`], [`Server::reload`] or
//!    [`Server::set_draining`];
//! 2. after every one of them, drain [`Server::poll_command`] until it
//!    returns `None` (bind or release relay sockets, send deferred
//!    responses, log events);
//! 3. re-arm its one timer from [`Server::poll_timeout`], sleep until then
//!    or the next input, and call [`Server::handle_timeout`] when it is due.
//!
//! The data path (`handle_client` with ChannelData or Send, `handle_peer`)
//! never allocates and answers through its return value, not the queue. The
//! core never reads the time itself, so every behaviour is testable by
//! feeding inputs and advancing a fake clock. TCP/TLS drivers cut the byte
//! stream into messages with [`framing::next_frame`].

pub mod addr;
pub mod allocation;
mod allocations;
mod answering;
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

pub use addr::{canonical, ClientAddr, Family, FiveTuple, PeerAddr, ServerAddr, Transport};
pub use allocation::{ChannelNumber, RelayId};
pub use config::{LiveConfig, ServerConfig};
pub use drop_reason::{DropCounters, DropReason};
pub use output::{BindError, CloseReason, Command, Event, Output, PeerOutput, PEER_HEADROOM, PEER_TAILROOM};
pub use server::Server;
pub use stats::Stats;
