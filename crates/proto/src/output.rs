//! What the core asks of its driver: the answer to one input ([`Output`],
//! [`PeerOutput`]) and the queued work off the hot path ([`Command`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::addr::{FiveTuple, PeerAddr, Transport};
use crate::allocation::{ChannelNumber, RelayId, Traffic};
use crate::auth_failure::AuthFailure;
use crate::connection::ConnectionId;
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
    /// Send the first `len` bytes of the output buffer to the client from
    /// local UDP address `from` instead of the one the request reached
    /// (RFC 5780 CHANGE-REQUEST; one of [`crate::nat_discovery::NatDiscovery::addresses`]).
    ReplyFrom { len: usize, from: SocketAddr },
    /// Valid input that needs no answer now (a keepalive, or an Allocate
    /// whose answer follows once its relay socket is bound: see [`Command`]).
    Nothing,
    /// Invalid input, dropped silently and counted.
    Drop(DropReason),
    /// Send `input[start..start + len]` from relay socket `relay` to `peer`.
    /// With `dont_fragment` it must leave with DF set (IPv6: not
    /// fragmented), else be dropped: a Send indication asked so (RFC 8656
    /// §11.2 DONT-FRAGMENT). Otherwise it leaves as the relay was bound
    /// ([`Command::BindRelay`]'s `dont_fragment`).
    ToPeer {
        relay: RelayId,
        peer: PeerAddr,
        start: usize,
        len: usize,
        dont_fragment: bool,
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
    /// Bind a socket to `addr` for relay `relay`, then report with
    /// [`crate::Server::relay_bound`]: a UDP socket, or for `Transport::Tcp`
    /// (RFC 6062) a TCP listener (SO_REUSEADDR and SO_REUSEPORT, so
    /// connections to peers can be bound to the same address) whose
    /// incoming connections go to [`crate::Server::peer_accepted`].
    BindRelay {
        relay: RelayId,
        addr: SocketAddr,
        dont_fragment: bool,
        transport: Transport,
    },
    /// RFC 6062 §5.2: open a TCP connection from relay address `from` (of
    /// relay `relay`) to `peer`, giving up after 30 s, and report with
    /// [`crate::Server::peer_connected`]. Read nothing from it until it is
    /// spliced: the kernel buffers what the peer sends meanwhile.
    ConnectPeer {
        id: ConnectionId,
        relay: RelayId,
        from: SocketAddr,
        peer: PeerAddr,
    },
    /// Close peer data connection `id` (and the client data connection
    /// spliced to it, if any), or stop connecting it.
    ClosePeer { id: ConnectionId },
    /// Close the socket of relay `relay`.
    ReleaseRelay { relay: RelayId },
    /// Send these bytes to the client on `tuple` (deferred responses).
    SendToClient { tuple: FiveTuple, data: Vec<u8> },
    /// Something worth logging happened.
    Event(Event),
    /// Change what the kernel fast path relays on its own (only with
    /// [`crate::ServerConfig::offload`] on).
    Offload(Offload),
}

/// One channel as the kernel fast path sees it: ChannelData from the client
/// on `tuple` with `number` goes from `relay_addr` to `peer`, and datagrams
/// from `peer` to `relay_addr` go back to the client as ChannelData.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelChannel {
    pub tuple: FiveTuple,
    pub relay: RelayId,
    /// The address the relay socket is bound to.
    pub relay_addr: SocketAddr,
    pub number: ChannelNumber,
    pub peer: PeerAddr,
}

/// What the driver mirrors into the kernel's maps. The core stays the only
/// source of truth: the kernel relays a channel only between a
/// [`Offload::ChannelBound`] and the removal that follows it, and never
/// after `until` (the kernel checks it too, so an expiry stops both paths at
/// the same moment). Allocations with a bandwidth cap, stream clients and
/// peers that are our own addresses are never offloaded: the userspace path
/// enforces what the kernel cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offload {
    /// Relay this channel in the kernel until `until` (new, or refreshed).
    ChannelBound {
        channel: KernelChannel,
        until: std::time::Instant,
    },
    /// The binding expired (RFC 8656 §12): stop.
    ChannelExpired(KernelChannel),
    /// The peer's permission lapsed (RFC 8656 §9) while the binding lives: stop.
    PermissionLapsed(KernelChannel),
    /// The allocation is gone: stop every channel of these relays and
    /// report what the kernel relayed for them ([`crate::Server::kernel_traffic`])
    /// before the [`Event::AllocationClosed`] that follows is logged. Also
    /// sent with the one relay of a family that ended while the allocation
    /// carries on over the other (RFC 8656 §8.1, [`Event::RelayClosed`]).
    AllocationGone { tuple: FiveTuple, relays: Vec<RelayId> },
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
    /// One family of a dual allocation ended (RFC 8656 §8.1: a Refresh
    /// naming it with LIFETIME 0, or its lifetime ran out); the allocation
    /// carries on over the other. Its traffic is told with the
    /// [`Event::AllocationClosed`] at the end.
    RelayClosed {
        tuple: FiveTuple,
        /// The relayed transport address that ended (as the client was told).
        relay: SocketAddr,
        reason: CloseReason,
    },
    /// A signed request failed authentication (rate-limited per reason:
    /// [`crate::auth_failure::AUTH_LOG_INTERVAL`]). Never carries the
    /// password, key or MESSAGE-INTEGRITY.
    AuthRefused {
        tuple: FiveTuple,
        reason: AuthFailure,
        /// The USERNAME as sent (lossy UTF-8, cut to 64 characters), if any.
        username: Option<String>,
        /// Refusals of this reason not reported since the last event.
        held_back: u64,
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
