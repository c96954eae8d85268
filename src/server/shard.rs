//! One shard's state, shared by its tasks (single-threaded: RefCell, no
//! locks): the protocol core, the listener and relay sockets, the open
//! stream connections, and the drive rule every task follows.
//!
//! # The drive rule
//! Every task that feeds the core an input (a batch of datagrams, the frames
//! of one read, a closed connection, a timer, a control request) calls
//! [`Shard::pump`] before it waits for I/O again. `pump` drains every queued
//! command (binding relay sockets answers the core at once, which may queue
//! more) and then re-arms the timer task from the core's `poll_timeout()`,
//! waking it only when the deadline moved earlier. Nothing else reads the
//! core's timers, and nothing polls.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use proto::{BindError, Command, ConnectionId, DropReason, Event, FiveTuple, Output, PeerAddr, RelayId, Transport};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use super::conn_out::ConnOut;
use super::dtls::session::DtlsSession;
use super::errqueue;
use super::mmsg::{self, Udp, UdpBatch};
use super::sockets;
use crate::fastpath::Mirror;

/// Starts the task that reads a relay socket's peers (injected by the event
/// loop, so this module needs no import of the relay reader).
pub type SpawnRelayReader = fn(Rc<Shard>, RelayId, Rc<Udp>) -> JoinHandle<()>;

/// The tasks of TCP relay allocations (RFC 6062), injected by the event loop
/// like [`SpawnRelayReader`].
pub struct SpawnTcpRelay {
    /// Accepts peers' connections on a TCP relay listener.
    pub accept: fn(Rc<Shard>, RelayId, tokio::net::TcpListener) -> JoinHandle<()>,
    /// Connects to a peer from a relay address.
    pub connect: fn(Rc<Shard>, ConnectionId, SocketAddr, PeerAddr) -> JoinHandle<()>,
}

pub struct RelaySocket {
    /// The UDP socket; None for a TCP relay, whose listener its task owns.
    pub socket: Option<Rc<Udp>>,
    task: JoinHandle<()>,
    /// DF as bound (Allocate's DONT-FRAGMENT), and as set now: a Send
    /// indication with DONT-FRAGMENT turns it on for its datagram.
    df: DontFragment,
}

/// A UDP relay socket's DF setting (RFC 8656 DONT-FRAGMENT).
struct DontFragment {
    v6: bool,
    bound: bool,
    now: Cell<bool>,
}

/// A peer data connection of a TCP relay allocation, as the driver holds it.
pub enum PeerConn {
    /// Being opened by this task.
    Connecting(JoinHandle<()>),
    /// Open, unread, waiting for its ConnectionBind.
    Waiting(tokio::net::TcpStream),
    /// Spliced to a client data connection (perhaps on another shard);
    /// notify to end the splice.
    Spliced(Arc<Notify>),
}

/// An RFC 6062 ConnectionBind that arrived on another shard's listener,
/// sent to the shard whose core made its CONNECTION-ID (ids name their
/// shard). The data connection stays where it is; the peer connection (a
/// plain TCP socket) moves to it.
pub enum ForeignBind {
    /// Handle `frame` from the client data connection on `tuple`.
    Bind {
        tuple: FiveTuple,
        frame: Vec<u8>,
        answer: oneshot::Sender<BindAnswer>,
    },
    /// The client data connection on `tuple` ended, having relayed these bytes.
    Closed {
        tuple: FiveTuple,
        to_peer: u64,
        to_client: u64,
    },
}

/// The owning shard's answer to [`ForeignBind::Bind`].
pub struct BindAnswer {
    /// The response to send (empty: none).
    pub reply: Vec<u8>,
    /// On success: the peer connection, and what ends its splice.
    pub peer: Option<(std::net::TcpStream, Arc<Notify>)>,
}

/// Everything one shard's tasks share (single-threaded: RefCell, no locks).
pub struct Shard {
    pub core: RefCell<proto::Server>,
    /// UDP listeners by local address, to answer clients from the address they used.
    pub udp: Vec<(SocketAddr, Rc<Udp>)>,
    pub relays: RefCell<Vec<Option<RelaySocket>>>,
    /// Open TCP/TLS client connections.
    pub conns: RefCell<HashMap<FiveTuple, Rc<ConnOut>>>,
    /// Open DTLS sessions (RFC 7350).
    pub dtls: RefCell<HashMap<FiveTuple, DtlsSession>>,
    /// One receive batch for every relay socket of the shard: with
    /// PEER_HEADROOM in front of each datagram so headers are written in place.
    pub peer_batch: RefCell<UdpBatch>,
    pub relay_buffers: (usize, usize),
    pub spawn_relay_reader: SpawnRelayReader,
    pub spawn_tcp_relay: SpawnTcpRelay,
    /// RFC 6062 peer data connections by CONNECTION-ID.
    pub peer_conns: RefCell<HashMap<ConnectionId, PeerConn>>,
    /// This shard's index, and every shard's inbox for [`ForeignBind`]s.
    pub index: usize,
    pub foreign_binds: Vec<mpsc::UnboundedSender<ForeignBind>>,
    /// The deadline the timer task sleeps until, and its wake-up call.
    pub timer_armed: Cell<Option<Instant>>,
    pub timer_wake: Notify,
    /// This shard's side of the kernel fast path, while it is attached.
    pub fastpath: RefCell<Option<Mirror>>,
    /// Where allocation lifecycle events also go (cluster, usage records).
    pub events: Option<super::EventTap>,
}

impl Shard {
    /// The listener a UDP client wrote to (server address `server`), and the
    /// source address to send from when that listener is a wildcard on that
    /// port (IP_PKTINFO).
    pub fn listener_for(&self, server: SocketAddr) -> Option<(Rc<Udp>, Option<IpAddr>)> {
        self.udp.iter().find_map(|(a, s)| {
            if a.port() != server.port() {
                None
            } else if a.ip() == server.ip() {
                Some((s.clone(), None))
            } else if a.ip().is_unspecified() && a.is_ipv4() == server.is_ipv4() {
                Some((s.clone(), Some(server.ip())))
            } else {
                None
            }
        })
    }

    /// The socket of relay `relay`, if it is still bound, with DF set for
    /// the next datagram if `dont_fragment` (else as bound). The socket
    /// option changes only when the setting does (one comparison otherwise),
    /// after `flush` has sent what was queued under the old setting. None
    /// also when DF cannot be set: the datagram must then be dropped
    /// (RFC 8656 §11.2).
    pub fn relay_socket(&self, relay: RelayId, dont_fragment: bool, flush: impl FnOnce()) -> Option<Rc<Udp>> {
        let relays = self.relays.borrow();
        let r = relays.get(relay.0 as usize)?.as_ref()?;
        let socket = r.socket.clone()?;
        let want = r.df.bound || dont_fragment;
        if want != r.df.now.get() {
            flush();
            if let Err(e) = sockets::set_dont_fragment(socket.get_ref(), r.df.v6, want) {
                tracing::debug!("relay DF setting failed: {e}");
                return None;
            }
            r.df.now.set(want);
        }
        Some(socket)
    }

    /// Sends bytes to a client now: on UDP from the listener it wrote to, on
    /// a stream through that connection's write buffer. (The UDP packet
    /// paths queue into their batch instead; this serves everything else.)
    pub fn to_client(&self, tuple: &FiveTuple, data: &[u8]) {
        if !self.deliver(tuple, data) {
            self.core.borrow_mut().count_drop(DropReason::ClientSendFailed);
        }
    }

    /// [`Shard::to_client`] without the count: true if the bytes left or
    /// were queued.
    pub fn deliver(&self, tuple: &FiveTuple, data: &[u8]) -> bool {
        match tuple.transport {
            Transport::Udp => self.listener_for(tuple.server.0).is_some_and(|(s, src)| {
                let sent = match src {
                    Some(ip) => sockets::send_from(s.get_ref(), data, tuple.client.0, ip),
                    None => sockets::send_now(s.get_ref(), data, tuple.client.0),
                };
                sent.is_ok()
            }),
            Transport::Tcp | Transport::Tls => self.conns.borrow().get(tuple).is_some_and(|c| c.push(data)),
            Transport::Dtls => self.dtls.borrow_mut().get_mut(tuple).is_some_and(|s| s.send(data)),
        }
    }

    /// Carries out the core's answer to one message a client sent outside a
    /// UDP batch (a stream frame, a DTLS record): relayed bytes
    /// (`msg[start..start + len]`) leave now; a reply (`out[..n]`) goes to
    /// `reply`, which says whether it was queued (a failure is counted).
    /// ReplyFrom is plain UDP only (RFC 5780): here it is the same client.
    pub fn carry_out(&self, output: Output, msg: &[u8], out: &[u8], reply: impl FnOnce(&[u8]) -> bool) {
        match output {
            Output::ToPeer {
                relay,
                peer,
                start,
                len,
                dont_fragment,
            } => self.to_peer(relay, peer.0, &msg[start..start + len], dont_fragment),
            Output::Reply(n) | Output::ReplyFrom { len: n, .. } => {
                if !reply(&out[..n]) {
                    self.core.borrow_mut().count_drop(DropReason::ClientSendFailed);
                }
            }
            Output::Nothing | Output::Drop(_) => {}
        }
    }

    /// Reports what the kernel fast path relayed since the last call to the
    /// core (before its counters are read for metrics or the admin view).
    pub fn flush_kernel_traffic(&self) {
        if let Some(m) = self.fastpath.borrow_mut().as_mut() {
            m.flush(&mut self.core.borrow_mut());
        }
    }

    /// Sends relayed bytes to a peer now (from stream clients). Failures
    /// (unreachable networks, EPERM from a firewall, a full buffer) drop the
    /// datagram and are counted; the allocation is not affected.
    pub fn to_peer(&self, relay: RelayId, peer: SocketAddr, data: &[u8], dont_fragment: bool) {
        // Nothing is queued for a relay socket outside its batch's turn.
        let ok = match self.relay_socket(relay, dont_fragment, || {}) {
            Some(s) => match sockets::send_now(s.get_ref(), data, peer) {
                Ok(_) => true,
                Err(e) => {
                    tracing::trace!(%peer, "relay send failed: {e}");
                    false
                }
            },
            None => false,
        };
        if !ok {
            self.core.borrow_mut().count_drop(DropReason::RelaySendFailed);
        }
    }

    /// Takes waiting peer connection `id` to splice it: the stream, and the
    /// signal [`Command::ClosePeer`] will use to end the splice.
    pub fn take_for_splice(&self, id: ConnectionId) -> Option<(tokio::net::TcpStream, Arc<Notify>)> {
        let mut conns = self.peer_conns.borrow_mut();
        let Some(PeerConn::Waiting(stream)) = conns.remove(&id) else {
            return None;
        };
        let close = Arc::new(Notify::new());
        conns.insert(id, PeerConn::Spliced(close.clone()));
        Some((stream, close))
    }

    /// Follows the drive rule (module docs): carries out every queued
    /// command of the core, then re-arms the timer.
    pub fn pump(self: &Rc<Self>) {
        loop {
            let cmd = self.core.borrow_mut().poll_command();
            let Some(cmd) = cmd else { break };
            match cmd {
                Command::BindRelay {
                    relay,
                    addr,
                    dont_fragment,
                    transport,
                } => {
                    let result = match transport {
                        Transport::Udp | Transport::Dtls => self.bind_relay(relay, addr, dont_fragment),
                        Transport::Tcp | Transport::Tls => self.bind_tcp_relay(relay, addr),
                    };
                    self.core.borrow_mut().relay_bound(Instant::now(), relay, result);
                }
                Command::ConnectPeer { id, from, peer, .. } => {
                    let task = (self.spawn_tcp_relay.connect)(self.clone(), id, from, peer);
                    self.peer_conns.borrow_mut().insert(id, PeerConn::Connecting(task));
                }
                Command::ClosePeer { id } => {
                    let gone = self.peer_conns.borrow_mut().remove(&id);
                    match gone {
                        Some(PeerConn::Connecting(task)) => task.abort(),
                        Some(PeerConn::Spliced(close)) => close.notify_one(),
                        Some(PeerConn::Waiting(_)) | None => {}
                    }
                }
                Command::ReleaseRelay { relay } => {
                    if let Some(slot) = self.relays.borrow_mut().get_mut(relay.0 as usize) {
                        if let Some(r) = slot.take() {
                            r.task.abort();
                        }
                    }
                }
                Command::SendToClient { tuple, data } => self.to_client(&tuple, &data),
                Command::Event(mut e) => {
                    if let (Event::AllocationClosed { tuple, traffic, .. }, Some(m)) =
                        (&mut e, self.fastpath.borrow_mut().as_mut())
                    {
                        m.closing(tuple, traffic);
                    }
                    log_event(&e);
                    if let Some(tap) = &self.events {
                        // Lifecycle only (never per packet); a stopped
                        // receiver just means no one listens any more.
                        let _ = tap.send(e);
                    }
                }
                Command::Offload(o) => {
                    if let Some(m) = self.fastpath.borrow_mut().as_mut() {
                        m.apply(o, &mut self.core.borrow_mut());
                    }
                }
            }
        }
        let next = self.core.borrow().poll_timeout();
        if next.is_some_and(|n| self.timer_armed.get().is_none_or(|armed| n < armed)) {
            self.timer_armed.set(next);
            self.timer_wake.notify_one();
        }
    }

    fn bind_relay(self: &Rc<Self>, relay: RelayId, addr: SocketAddr, df: bool) -> Result<SocketAddr, BindError> {
        let (rcv, snd) = self.relay_buffers;
        let std_sock = sockets::relay(addr, df, rcv, snd).map_err(|e| bind_error(addr, e))?;
        // ICMP errors about what it sends go to its reader (RFC 8656 §11.5).
        errqueue::enable(&std_sock, addr.is_ipv6()).map_err(|e| bind_error(addr, e))?;
        let local = std_sock.local_addr().map_err(|_| BindError::Other)?;
        let socket = Rc::new(mmsg::register(std_sock).map_err(|_| BindError::Other)?);
        let task = (self.spawn_relay_reader)(self.clone(), relay, socket.clone());
        let df = DontFragment {
            v6: addr.is_ipv6(),
            bound: df,
            now: Cell::new(df),
        };
        self.keep_relay(relay, Some(socket), task, df);
        Ok(local)
    }

    /// A TCP relay (RFC 6062 §5.1: "A server implementing this extension
    /// MUST accept relayed TCP connections by binding to a TCP listening port").
    fn bind_tcp_relay(self: &Rc<Self>, relay: RelayId, addr: SocketAddr) -> Result<SocketAddr, BindError> {
        let std_listener = sockets::tcp_relay(addr).map_err(|e| bind_error(addr, e))?;
        let local = std_listener.local_addr().map_err(|_| BindError::Other)?;
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(|_| BindError::Other)?;
        let task = (self.spawn_tcp_relay.accept)(self.clone(), relay, listener);
        let df = DontFragment {
            v6: addr.is_ipv6(),
            bound: false,
            now: Cell::new(false),
        };
        self.keep_relay(relay, None, task, df);
        Ok(local)
    }

    fn keep_relay(&self, relay: RelayId, socket: Option<Rc<Udp>>, task: JoinHandle<()>, df: DontFragment) {
        let mut relays = self.relays.borrow_mut();
        let i = relay.0 as usize;
        if relays.len() <= i {
            relays.resize_with(i + 1, || None);
        }
        if let Some(old) = relays[i].replace(RelaySocket { socket, task, df }) {
            old.task.abort();
        }
    }
}

fn bind_error(addr: SocketAddr, e: std::io::Error) -> BindError {
    tracing::debug!(%addr, "relay bind failed: {e}");
    match e.kind() {
        std::io::ErrorKind::AddrInUse => BindError::AddrInUse,
        std::io::ErrorKind::AddrNotAvailable => BindError::AddrNotAvailable,
        std::io::ErrorKind::PermissionDenied => BindError::PermissionDenied,
        _ => BindError::Other,
    }
}

fn log_event(e: &Event) {
    match e {
        Event::AllocationCreated {
            tuple,
            username,
            relays,
            lifetime,
        } => tracing::info!(
            client = %tuple.client,
            transport = tuple.transport.name(),
            user = %username,
            relays = ?relays,
            lifetime_s = lifetime.as_secs(),
            "allocation created"
        ),
        Event::AllocationClosed {
            tuple,
            username,
            relays: _,
            age,
            reason,
            traffic,
        } => tracing::info!(
            client = %tuple.client,
            transport = tuple.transport.name(),
            user = %username,
            reason = ?reason,
            age_s = age.as_secs(),
            to_peer_bytes = traffic.to_peer_bytes,
            to_peer_packets = traffic.to_peer_packets,
            to_client_bytes = traffic.to_client_bytes,
            to_client_packets = traffic.to_client_packets,
            "allocation closed"
        ),
        Event::RelayClosed { tuple, relay, reason } => tracing::info!(
            client = %tuple.client,
            transport = tuple.transport.name(),
            relay = %relay,
            reason = ?reason,
            "one family of a dual allocation closed"
        ),
        // Rate-limited by the core (one per reason per second and shard);
        // the USERNAME is quoted and escaped, it is the client's bytes.
        Event::AuthRefused {
            tuple,
            reason,
            username,
            held_back,
        } => tracing::info!(
            client = %tuple.client,
            transport = tuple.transport.name(),
            reason = reason.label(),
            user = ?username.as_deref().unwrap_or(""),
            held_back,
            "authentication refused"
        ),
    }
}
