//! One shard: a thread with a single-threaded tokio runtime that owns one
//! protocol core, its own listener sockets and the relay sockets of the
//! allocations it created. Nothing here is shared with other shards, so the
//! packet path takes no lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use proto::{BindError, Command, DropReason, Event, FiveTuple, RelayId, ServerAddr, Transport};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::mmsg::{self, Udp, UdpBatch};
use super::stream::{self, ConnOut, StreamLimits};
use super::{relay, sockets, udp};

/// The sockets a shard serves, already bound (so errors surface at startup).
pub struct ShardSockets {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
    pub tls: Vec<std::net::TcpListener>,
}

/// Requests from outside the shard (signals, HTTP), handled between packets.
pub enum Control {
    /// Apply a new core configuration (what can change live); answer when applied.
    Reload(Box<proto::ServerConfig>, oneshot::Sender<()>),
    /// Refuse new allocations from now on; answer when in force.
    Drain(oneshot::Sender<()>),
    /// Answer to prove the shard's event loop is running (watchdog, readyz).
    Ping(oneshot::Sender<()>),
    /// Counters and gauges, for /metrics.
    Snapshot(oneshot::Sender<ShardSnapshot>),
    /// Every allocation, for the admin view.
    List(oneshot::Sender<Vec<AllocationInfo>>),
    /// Close the allocation of this client (admin).
    Close(FiveTuple, oneshot::Sender<bool>),
    /// Refuse this username from now on (admin); answer when in force.
    Revoke(String, oneshot::Sender<()>),
}

/// One shard's counters and gauges at one moment.
#[derive(Debug, Clone, Default)]
pub struct ShardSnapshot {
    pub index: usize,
    pub stats: proto::Stats,
    pub allocations: usize,
    pub permissions: usize,
    pub channels: usize,
}

/// One allocation as the admin view shows it.
#[derive(Debug, Clone)]
pub struct AllocationInfo {
    pub shard: usize,
    pub tuple: FiveTuple,
    pub username: String,
    pub relays: Vec<SocketAddr>,
    pub age: Duration,
    pub expires_in: Duration,
    pub to_peer_bytes: u64,
    pub to_client_bytes: u64,
}

pub struct ShardSetup {
    pub index: usize,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub sockets: ShardSockets,
    pub core_config: proto::ServerConfig,
    pub tls: Option<TlsAcceptor>,
    pub limits: StreamLimits,
    pub relay_buffers: (usize, usize),
    pub shutdown: watch::Receiver<bool>,
}

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

    /// Carries out every queued command of the core.
    pub fn pump(self: &Rc<Self>) {
        loop {
            let cmd = self.core.borrow_mut().poll_command();
            let Some(cmd) = cmd else { return };
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
                Command::Event(e) => log_event(&e),
            }
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
        let task = tokio::task::spawn_local(relay::read_peers(self.clone(), relay, socket.clone()));
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

/// Runs a shard to completion on the current thread; returns its counters.
pub fn run(setup: ShardSetup) -> std::io::Result<proto::Stats> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    let mut shutdown = setup.shutdown;
    let limits = Rc::new(setup.limits);
    let stats = local.block_on(&rt, async {
        let mut udp = Vec::new();
        for sock in setup.sockets.udp {
            let addr = sock.local_addr()?;
            udp.push((addr, Rc::new(mmsg::register(sock)?)));
        }
        let shard = Rc::new(Shard {
            core: RefCell::new(proto::Server::new(setup.core_config)),
            udp: udp.clone(),
            relays: RefCell::new(Vec::new()),
            conns: RefCell::new(HashMap::new()),
            peer_batch: RefCell::new(UdpBatch::new(proto::PEER_HEADROOM, proto::PEER_TAILROOM, false)),
            relay_buffers: setup.relay_buffers,
        });
        for (addr, sock) in udp {
            tokio::task::spawn_local(udp::serve(sock, ServerAddr(addr), shard.clone()));
        }
        let streams = setup
            .sockets
            .tcp
            .into_iter()
            .map(|l| (l, None))
            .chain(setup.sockets.tls.into_iter().map(|l| (l, setup.tls.clone())));
        for (listener, tls) in streams {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let addr = ServerAddr(listener.local_addr()?);
            tokio::task::spawn_local(stream::accept_loop(listener, addr, tls, shard.clone(), limits.clone()));
        }
        tokio::task::spawn_local(run_timers(shard.clone()));
        tokio::task::spawn_local(run_control(shard.clone(), setup.index, setup.control));
        tracing::debug!(shard = setup.index, "shard running");
        // Ends when the sender flips to true or is dropped.
        let _ = shutdown.wait_for(|stop| *stop).await;
        let stats = shard.core.borrow().stats().clone();
        Ok::<_, std::io::Error>(stats)
    })?;
    // Dropping the LocalSet and runtime cancels every task and closes sockets.
    drop(local);
    drop(rt);
    Ok(stats)
}

/// Drives the core's deadline queue. A 250 ms tick bounds how late an
/// expiry is noticed; the core itself checks expiry exactly on every use.
async fn run_timers(shard: Rc<Shard>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let due = shard.core.borrow().poll_timeout().is_some_and(|t| t <= now);
        if due {
            shard.core.borrow_mut().handle_timeout(now);
            shard.pump();
        }
    }
}

/// Carries out control requests, one at a time, between packets.
async fn run_control(shard: Rc<Shard>, index: usize, mut rx: mpsc::UnboundedReceiver<Control>) {
    while let Some(c) = rx.recv().await {
        let now = Instant::now();
        match c {
            Control::Reload(cfg, done) => {
                shard.core.borrow_mut().reload(cfg.live());
                let _ = done.send(());
            }
            Control::Drain(done) => {
                shard.core.borrow_mut().set_draining(true);
                let _ = done.send(());
            }
            Control::Ping(reply) => {
                let _ = reply.send(());
            }
            Control::Snapshot(reply) => {
                let core = shard.core.borrow();
                let (permissions, channels) = core.permission_and_channel_counts(now);
                let _ = reply.send(ShardSnapshot {
                    index,
                    stats: core.stats().clone(),
                    allocations: core.allocation_count(),
                    permissions,
                    channels,
                });
            }
            Control::List(reply) => {
                let core = shard.core.borrow();
                let list = core
                    .allocations()
                    .map(|a| AllocationInfo {
                        shard: index,
                        tuple: a.tuple,
                        username: a.username.clone(),
                        relays: a.relays.iter().map(|r| r.public).collect(),
                        age: now.saturating_duration_since(a.created),
                        expires_in: a.expires.saturating_duration_since(now),
                        to_peer_bytes: a.traffic.to_peer_bytes,
                        to_client_bytes: a.traffic.to_client_bytes,
                    })
                    .collect();
                let _ = reply.send(list);
            }
            Control::Close(tuple, reply) => {
                let closed = shard.core.borrow_mut().close_allocation(now, &tuple);
                shard.pump();
                let _ = reply.send(closed);
            }
            Control::Revoke(user, done) => {
                shard.core.borrow_mut().revoke(&user);
                let _ = done.send(());
            }
        }
    }
}
