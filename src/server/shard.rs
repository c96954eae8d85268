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

use proto::{BindError, Command, DropReason, Event, FiveTuple, RelayId, Transport};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::conn_out::ConnOut;
use super::mmsg::{self, Udp, UdpBatch};
use super::sockets;

/// Starts the task that reads a relay socket's peers (injected by the event
/// loop, so this module needs no import of the relay reader).
pub type SpawnRelayReader = fn(Rc<Shard>, RelayId, Rc<Udp>) -> JoinHandle<()>;

pub struct RelaySocket {
    pub socket: Rc<Udp>,
    task: JoinHandle<()>,
}

/// Everything one shard's tasks share (single-threaded: RefCell, no locks).
pub struct Shard {
    pub core: RefCell<proto::Server>,
    /// UDP listeners by local address, to answer clients from the address they used.
    pub udp: Vec<(SocketAddr, Rc<Udp>)>,
    pub relays: RefCell<Vec<Option<RelaySocket>>>,
    /// Open TCP/TLS client connections.
    pub conns: RefCell<HashMap<FiveTuple, Rc<ConnOut>>>,
    /// One receive batch for every relay socket of the shard: with
    /// PEER_HEADROOM in front of each datagram so headers are written in place.
    pub peer_batch: RefCell<UdpBatch>,
    pub relay_buffers: (usize, usize),
    pub spawn_relay_reader: SpawnRelayReader,
    /// The deadline the timer task sleeps until, and its wake-up call.
    pub timer_armed: Cell<Option<Instant>>,
    pub timer_wake: Notify,
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

    /// The socket of relay `relay`, if it is still bound.
    pub fn relay_socket(&self, relay: RelayId) -> Option<Rc<Udp>> {
        match self.relays.borrow().get(relay.0 as usize) {
            Some(Some(r)) => Some(r.socket.clone()),
            _ => None,
        }
    }

    /// Sends bytes to a client now: on UDP from the listener it wrote to, on
    /// a stream through that connection's write buffer. (The UDP packet
    /// paths queue into their batch instead; this serves everything else.)
    pub fn to_client(&self, tuple: &FiveTuple, data: &[u8]) {
        let sent = match tuple.transport {
            Transport::Udp => self.listener_for(tuple.server.0).is_some_and(|(s, src)| {
                let sent = match src {
                    Some(ip) => sockets::send_from(s.get_ref(), data, tuple.client.0, ip),
                    None => sockets::send_now(s.get_ref(), data, tuple.client.0),
                };
                sent.is_ok()
            }),
            Transport::Tcp | Transport::Tls => self.conns.borrow().get(tuple).is_some_and(|c| c.push(data)),
        };
        if !sent {
            self.core.borrow_mut().count_drop(DropReason::ClientSendFailed);
        }
    }

    /// Sends relayed bytes to a peer now (from stream clients). Failures
    /// (unreachable networks, EPERM from a firewall, a full buffer) drop the
    /// datagram and are counted; the allocation is not affected.
    pub fn to_peer(&self, relay: RelayId, peer: SocketAddr, data: &[u8]) {
        let ok = match self.relay_socket(relay) {
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
                } => {
                    let result = self.bind_relay(relay, addr, dont_fragment);
                    self.core.borrow_mut().relay_bound(Instant::now(), relay, result);
                }
                Command::ReleaseRelay { relay } => {
                    if let Some(slot) = self.relays.borrow_mut().get_mut(relay.0 as usize) {
                        if let Some(r) = slot.take() {
                            r.task.abort();
                        }
                    }
                }
                Command::SendToClient { tuple, data } => self.to_client(&tuple, &data),
                Command::Event(e) => {
                    log_event(&e);
                    if let Some(tap) = &self.events {
                        // Lifecycle only (never per packet); a stopped
                        // receiver just means no one listens any more.
                        let _ = tap.send(e);
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
        let std_sock = sockets::relay(addr, df, rcv, snd).map_err(|e| {
            tracing::debug!(%addr, "relay bind failed: {e}");
            match e.kind() {
                std::io::ErrorKind::AddrInUse => BindError::AddrInUse,
                std::io::ErrorKind::AddrNotAvailable => BindError::AddrNotAvailable,
                std::io::ErrorKind::PermissionDenied => BindError::PermissionDenied,
                _ => BindError::Other,
            }
        })?;
        let local = std_sock.local_addr().map_err(|_| BindError::Other)?;
        let socket = Rc::new(mmsg::register(std_sock).map_err(|_| BindError::Other)?);
        let task = (self.spawn_relay_reader)(self.clone(), relay, socket.clone());
        let mut relays = self.relays.borrow_mut();
        let i = relay.0 as usize;
        if relays.len() <= i {
            relays.resize_with(i + 1, || None);
        }
        if let Some(old) = relays[i].replace(RelaySocket { socket, task }) {
            old.task.abort();
        }
        Ok(local)
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
    }
}
