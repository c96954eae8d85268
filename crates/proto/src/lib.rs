//! ternd's protocol core: STUN (RFC 8489) and TURN (RFC 8656, RFC 6156
//! dual-stack), with no sockets, no clock and no runtime. Every input carries
//! `now`; every output is a value the driver acts on.
//!
//! # The drive loop
//! A driver owns one [`Server`] per shard and follows one rule:
//! 1. Feed an input (or the batch of inputs one system call brought, all
//!    with the same `now`): [`Server::handle_client`], [`Server::handle_peer`],
//!    [`Server::handle_peer_icmp`], [`Server::relay_bound`], [`Server::peer_connected`],
//!    [`Server::peer_accepted`], [`Server::handle_timeout`],
//!    [`Server::connection_closed`], [`Server::close_allocation`],
//!    [`Server::revoke`], [`Server::set_draining`] or [`Server::reload`].
//!    The data path answers in the returned [`Output`] or [`PeerOutput`]
//!    (reply with `out[..n]`, or send a range of the buffer) and never allocates.
//! 2. Then, before waiting for I/O again, drain [`Server::poll_command`]
//!    until it returns `None`: bind or release relay sockets, send deferred
//!    responses, log events.
//! 3. Then re-arm the one timer from [`Server::poll_timeout`], sleep until it
//!    fires or the next input comes, and call [`Server::handle_timeout`] when due.
//!
//! The core never reads the time itself, so every behaviour is testable by
//! feeding inputs and advancing a fake clock. TCP/TLS drivers cut the byte
//! stream into messages with [`framing::next_frame`].

pub mod addr;
pub mod allocation;
mod allocations;
pub mod amplification;
mod answering;
pub mod auth;
pub mod auth_failure;
mod base64;
mod binding;
mod binding_request;
mod budget;
pub mod clock;
mod close;
pub mod config;
pub mod connection;
pub mod drop_reason;
pub mod framing;
pub mod logins;
pub mod metrics;
pub mod nat_discovery;
pub mod nonce;
mod offload;
pub mod output;
pub mod password_algorithm;
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
pub use auth_failure::{AuthFailure, AuthFailureCounters};
pub use config::{LiveConfig, ServerConfig};
pub use connection::ConnectionId;
pub use drop_reason::{DropCounters, DropReason};
pub use output::{
    BindError, CloseReason, Command, Event, KernelChannel, Offload, Output, PeerOutput, PEER_HEADROOM, PEER_TAILROOM,
};
pub use rng::seed_from_u64;
pub use server::Server;
pub use stats::{IcmpCounters, Stats, TcpRelayCounters};
pub use turn::{PeerIcmp, ICMP_INDICATION_LEN};
