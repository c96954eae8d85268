//! What the core asks of its driver: the answer to one input ([`Output`],
//! [`PeerOutput`]) and the queued work off the hot path ([`Command`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::addr::{FiveTuple, PeerAddr};
use crate::allocation::{RelayId, Traffic};
use crate::drop_reason::DropReason;

/// Bytes the driver must leave free in front of a peer datagram handed to
/// [`crate::Server::handle_peer`], for the Data indication or ChannelData header.
pub const PEER_HEADROOM: usize = 48;
/// Bytes the driver must leave free after a peer datagram (padding).
pub const PEER_TAILROOM: usize = 4;

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
        peer: PeerAddr,
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

/// Why the driver could not bind a relay socket. The core branches on it:
/// only a taken port is worth trying another port for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    /// This port is taken; another one may well be free.
    AddrInUse,
    /// The relay address is not (or no longer) on this host.
    AddrNotAvailable,
    /// Not allowed to bind there (a privileged port, a sandbox).
    PermissionDenied,
    /// Anything else (out of file descriptors, out of memory, ...).
    Other,
}

impl BindError {
    /// True if binding another port can succeed where this one failed.
    pub fn is_retryable(self) -> bool {
        self == BindError::AddrInUse
    }
}

/// Work for the driver, off the hot path; drain with [`crate::Server::poll_command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Bind a UDP socket to `addr` for relay `relay`, then report with [`crate::Server::relay_bound`].
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
        /// The relayed transport addresses it had (as clients were told).
        relays: Vec<SocketAddr>,
        age: Duration,
        reason: CloseReason,
        /// What the allocation relayed over its life.
        traffic: Traffic,
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
