//! One shard's event loop: a thread with a single-threaded tokio runtime
//! that owns one protocol core, its own listener sockets and the relay
//! sockets of the allocations it created, and the requests it takes from
//! outside (reload, drain, metrics, admin). Nothing here is shared with other
//! shards, so the packet path takes no lock.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{FiveTuple, ServerAddr};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_rustls::TlsAcceptor;

use super::proxy_protocol::ProxyRules;

use super::mmsg::{self, UdpBatch};
use super::shard::Shard;
use super::stream::{self, StreamLimits};
use super::{dtls, relay, tcp_relay, udp};
use crate::fastpath::Mirror;

/// The sockets a shard serves, already bound (so errors surface at startup).
pub struct ShardSockets {
    pub udp: Vec<std::net::UdpSocket>,
    /// Stream listeners, each with the PROXY protocol rules it follows, if any.
    pub tcp: Vec<(std::net::TcpListener, Option<Arc<ProxyRules>>)>,
    pub tls: Vec<(std::net::TcpListener, Option<Arc<ProxyRules>>)>,
    /// TURN over DTLS listeners (UDP).
    pub dtls: Vec<std::net::UdpSocket>,
}

/// What every shard's DTLS listeners share (`server::dtls`).
#[derive(Clone)]
pub struct DtlsLimits {
    pub setup: Arc<crate::dtls::DtlsSetup>,
    pub sessions: Arc<crate::budget::ConnLimiter>,
    pub handshake_timeout: Duration,
    pub auth_timeout: Duration,
    pub idle_timeout: Duration,
    pub exhaustions: Arc<crate::budget::Exhaustions>,
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
    /// Refuse this username from now on and close its allocations (admin,
    /// cluster); answer when in force.
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
    /// Free relay ports of the shard's block, IPv4 and IPv6 (None: no relay of that family).
    pub free_relay_ports: (Option<usize>, Option<usize>),
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
    /// Set when there are DTLS listeners.
    pub dtls: Option<DtlsLimits>,
    pub limits: StreamLimits,
    pub relay_buffers: (usize, usize),
    pub shutdown: watch::Receiver<bool>,
    /// The kernel fast path's maps, when it is attached.
    pub fastpath: Option<std::sync::Arc<crate::fastpath::Maps>>,
    /// Every shard's inbox for RFC 6062 ConnectionBinds, and this one's.
    pub foreign_binds: Vec<mpsc::UnboundedSender<super::shard::ForeignBind>>,
    pub foreign_inbox: mpsc::UnboundedReceiver<super::shard::ForeignBind>,
    pub events: Option<super::EventTap>,
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
            dtls: RefCell::new(HashMap::new()),
            peer_batch: RefCell::new(UdpBatch::new(proto::PEER_HEADROOM, proto::PEER_TAILROOM, false)),
            relay_buffers: setup.relay_buffers,
            spawn_relay_reader: |shard, id, socket| tokio::task::spawn_local(relay::read_peers(shard, id, socket)),
            spawn_tcp_relay: super::shard::SpawnTcpRelay {
                accept: |shard, id, listener| tokio::task::spawn_local(tcp_relay::accept_peers(shard, id, listener)),
                connect: |shard, id, from, peer| {
                    tokio::task::spawn_local(tcp_relay::connect_peer(shard, id, from, peer))
                },
            },
            peer_conns: RefCell::new(HashMap::new()),
            index: setup.index,
            foreign_binds: setup.foreign_binds,
            timer_armed: Cell::new(None),
            timer_wake: Notify::new(),
            fastpath: RefCell::new(setup.fastpath.map(|maps| Mirror::new(maps, setup.index))),
            events: setup.events,
        });
        for (addr, sock) in udp {
            tokio::task::spawn_local(udp::serve(sock, ServerAddr(addr), shard.clone()));
        }
        let streams = setup.sockets.tcp.into_iter().map(|(l, proxy)| (l, None, proxy)).chain(
            setup
                .sockets
                .tls
                .into_iter()
                .map(|(l, proxy)| (l, setup.tls.clone(), proxy)),
        );
        for (listener, tls, proxy) in streams {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let addr = ServerAddr(listener.local_addr()?);
            let accepting = stream::Accepting {
                local: addr,
                tls,
                proxy,
            };
            tokio::task::spawn_local(stream::accept_loop(listener, accepting, shard.clone(), limits.clone()));
        }
        if let Some(d) = setup.dtls.filter(|_| !setup.sockets.dtls.is_empty()) {
            let dtls_shard = Rc::new(dtls::DtlsShard {
                setup: d.setup,
                sessions: d.sessions,
                handshake_timeout: d.handshake_timeout,
                auth_timeout: d.auth_timeout,
                idle_timeout: d.idle_timeout,
                keys: RefCell::new(dtls::cookie::CookieKeys::new(Instant::now()).map_err(std::io::Error::other)?),
                exhaustions: d.exhaustions,
                records: Default::default(),
            });
            for sock in setup.sockets.dtls {
                let addr = ServerAddr(sock.local_addr()?);
                let sock = Rc::new(mmsg::register(sock)?);
                tokio::task::spawn_local(dtls::serve(sock, addr, shard.clone(), dtls_shard.clone()));
            }
            tokio::task::spawn_local(dtls::sweep(shard.clone(), dtls_shard));
        }
        tokio::task::spawn_local(run_timers(shard.clone()));
        tokio::task::spawn_local(tcp_relay::serve_foreign_binds(shard.clone(), setup.foreign_inbox));
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

/// Sleeps until the core's next deadline (`poll_timeout`), runs the timers
/// then, and sleeps again; [`Shard::pump`] wakes it when an input moved the
/// deadline earlier.
async fn run_timers(shard: Rc<Shard>) {
    loop {
        let next = shard.core.borrow().poll_timeout();
        shard.timer_armed.set(next);
        let Some(at) = next else {
            shard.timer_wake.notified().await;
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => {
                shard.core.borrow_mut().handle_timeout(Instant::now());
                shard.pump();
            }
            _ = shard.timer_wake.notified() => {}
        }
    }
}

/// Carries out control requests, one at a time, between packets.
async fn run_control(shard: Rc<Shard>, index: usize, mut rx: mpsc::UnboundedReceiver<Control>) {
    while let Some(c) = rx.recv().await {
        let now = Instant::now();
        match c {
            Control::Reload(cfg, done) => {
                if !cfg.offload {
                    // The fast path is being turned off: take back what this shard installed.
                    if let Some(mut m) = shard.fastpath.borrow_mut().take() {
                        m.clear(&mut shard.core.borrow_mut());
                    }
                }
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
                shard.flush_kernel_traffic();
                let core = shard.core.borrow();
                let (permissions, channels) = core.permission_and_channel_counts(now);
                let _ = reply.send(ShardSnapshot {
                    index,
                    stats: core.stats().clone(),
                    allocations: core.allocation_count(),
                    permissions,
                    channels,
                    free_relay_ports: core.free_relay_ports(),
                });
            }
            Control::List(reply) => {
                shard.flush_kernel_traffic();
                let core = shard.core.borrow();
                let fastpath = shard.fastpath.borrow();
                let list = core
                    .allocations()
                    .map(|a| {
                        let mut traffic = a.traffic;
                        if let Some(m) = fastpath.as_ref() {
                            traffic.add(&m.gone_share(&a.tuple));
                        }
                        AllocationInfo {
                            shard: index,
                            tuple: a.tuple,
                            username: a.username.clone(),
                            relays: a.relays.iter().map(|r| r.public).collect(),
                            age: now.saturating_duration_since(a.created),
                            expires_in: a.expires().saturating_duration_since(now),
                            to_peer_bytes: traffic.to_peer_bytes,
                            to_client_bytes: traffic.to_client_bytes,
                        }
                    })
                    .collect();
                let _ = reply.send(list);
            }
            Control::Close(tuple, reply) => {
                let closed = shard.core.borrow_mut().close_allocation(now, &tuple);
                // Carry out the close (the kernel fast path's channels
                // removed with it) before the operator hears it is done.
                shard.pump();
                let _ = reply.send(closed);
            }
            Control::Revoke(user, done) => {
                let mut core = shard.core.borrow_mut();
                core.revoke(now, &user);
                let live: Vec<FiveTuple> = core
                    .allocations()
                    .filter(|a| a.username == user)
                    .map(|a| a.tuple)
                    .collect();
                for tuple in live {
                    core.close_allocation(now, &tuple);
                }
                drop(core);
                shard.pump();
                let _ = done.send(());
            }
        }
        shard.pump();
    }
}
