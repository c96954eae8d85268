//! The IO driver: binds every listener for every shard, runs the shards on
//! their own threads, and stops them on request.

mod conn_out;
mod dtls;
mod errqueue;
mod event_loop;
mod handle;
mod interfaces;
mod mmsg;
pub mod proxy_protocol;
mod recv_loop;
mod relay;
pub mod setup;
mod shard;
mod sockets;
mod stream;
mod tcp_relay;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use tokio::sync::watch;

use crate::budget::{Budget, Budgets, ConnLimiter, SharedBytes};
use crate::config::Config;

pub use event_loop::{AllocationInfo, ShardSnapshot};
pub use handle::{FastpathCounters, ReloadReport, ServerHandle};
pub use stream::StreamLimits;

/// A copy of every allocation lifecycle event, for whoever listens (the
/// cluster and usage records); sent on the cold path only.
pub type EventTap = tokio::sync::mpsc::UnboundedSender<proto::Event>;

/// The addresses the server actually listens on (ports resolved when the
/// config asked for port 0); `http` is filled in by the composition root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundAddrs {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub dtls: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
}

/// One line for the log: `udp=a,b tcp=c http=d`, empty lists left out.
impl std::fmt::Display for BoundAddrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lists = [
            ("udp", &self.udp),
            ("tcp", &self.tcp),
            ("tls", &self.tls),
            ("dtls", &self.dtls),
            ("http", &self.http),
        ];
        let mut sep = "";
        for (name, addrs) in lists.into_iter().filter(|(_, a)| !a.is_empty()) {
            let joined: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
            write!(f, "{sep}{name}={}", joined.join(","))?;
            sep = " ";
        }
        Ok(())
    }
}

/// The running shards. Dropping it without [`RunningServer::shutdown`] leaves
/// them running until the process exits.
pub struct RunningServer {
    bound: BoundAddrs,
    handle: ServerHandle,
    shards: Vec<JoinHandle<std::io::Result<proto::Stats>>>,
    stop: watch::Sender<bool>,
}

impl RunningServer {
    pub fn bound(&self) -> &BoundAddrs {
        &self.bound
    }

    /// What the shards share now: credentials (to mint with), relay addresses.
    pub fn shared(&self) -> setup::Shared {
        self.handle.shared()
    }

    /// A handle for reload, drain, health and metrics.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Stops every shard and returns their counters summed.
    pub fn shutdown(self) -> anyhow::Result<proto::Stats> {
        let _ = self.stop.send(true);
        let mut totals = proto::Stats::default();
        for (i, h) in self.shards.into_iter().enumerate() {
            let stats = h
                .join()
                .map_err(|_| anyhow::anyhow!("shard {i} panicked"))?
                .with_context(|| format!("shard {i}"))?;
            totals.merge(&stats);
        }
        Ok(totals)
    }
}

/// Binds every listener for every shard and starts the shards.
///
/// All sockets are bound before any shard starts, so a bad address or a port
/// in use fails here with the address in the message. With port 0, the first
/// shard's socket picks the port and the other shards join it. `tls` serves
/// `listen.tls` and `dtls` serves `listen.dtls` (their certificates follow
/// reloads).
pub fn start(
    config: &Config,
    tls: Option<&crate::tls::TlsSetup>,
    dtls: Option<Arc<crate::dtls::DtlsSetup>>,
    budgets: &Budgets,
    events: Option<EventTap>,
) -> anyhow::Result<RunningServer> {
    let exhaustions = budgets.exhaustions.clone();
    let n = config.shard_count();
    let acceptor = tls
        .filter(|_| !config.listen.tls.is_empty())
        .map(|t| t.acceptor_with_alpn(&config.tls.alpn));

    let mut per_shard: Vec<event_loop::ShardSockets> = (0..n)
        .map(|_| event_loop::ShardSockets {
            udp: vec![],
            tcp: vec![],
            tls: vec![],
            dtls: vec![],
        })
        .collect();
    let mut bound = BoundAddrs::default();
    // RFC 5780: the three other combinations of the primary and alternate
    // IP and port are UDP listeners too.
    let nat_discovery = config.nat_discovery().map(|n| n.addresses());
    // Those already listed in listen.udp are bound once.
    let extra = nat_discovery
        .iter()
        .flat_map(|a| a[1..].iter())
        .filter(|a| !config.listen.udp.contains(a));
    let buffers = (
        config.udp.recv_buffer_bytes.usize(),
        config.udp.send_buffer_bytes.usize(),
    );
    for &addr in config.listen.udp.iter().chain(extra) {
        let socks = bind_udp_per_shard("listen.udp", addr, n, buffers)?;
        bound.udp.push(socks[0].local_addr()?);
        for (s, sock) in per_shard.iter_mut().zip(socks) {
            s.udp.push(sock);
        }
    }
    // TURN over DTLS: UDP sockets like the listeners above, one per shard.
    let dtls = dtls.filter(|_| !config.listen.dtls.is_empty());
    for &addr in &config.listen.dtls {
        let socks = bind_udp_per_shard("listen.dtls", addr, n, buffers)?;
        bound.dtls.push(socks[0].local_addr()?);
        for (s, sock) in per_shard.iter_mut().zip(socks) {
            s.dtls.push(sock);
        }
    }
    let proxy_rules = Arc::new(proxy_protocol::ProxyRules {
        trusted: config.listen.proxy_trusted.clone(),
        timeout: config.tls.handshake_timeout.0,
    });
    for (addrs, is_tls) in [(&config.listen.tcp, false), (&config.listen.tls, true)] {
        let key = if is_tls { "listen.tls" } else { "listen.tcp" };
        for &addr in addrs {
            let proxied = config
                .listen
                .proxy_protocol
                .iter()
                .any(|p| p.tls == is_tls && p.addr == addr);
            let proxy = proxied.then(|| proxy_rules.clone());
            sockets::ensure_free(addr, socket2::Type::STREAM).with_context(|| format!("{key} {addr}"))?;
            let mut actual =
                sockets::resolve_port(addr, socket2::Type::STREAM).with_context(|| format!("{key} {addr}"))?;
            for s in per_shard.iter_mut() {
                let l = sockets::tcp(actual).with_context(|| format!("{key}: cannot bind {actual}"))?;
                actual = l.local_addr()?;
                if is_tls {
                    s.tls.push((l, proxy.clone()))
                } else {
                    s.tcp.push((l, proxy.clone()))
                }
            }
            if is_tls {
                bound.tls.push(actual)
            } else {
                bound.tcp.push(actual)
            }
        }
    }

    let limits = StreamLimits {
        idle_timeout: config.stream.idle_timeout.0,
        auth_timeout: config.stream.auth_timeout.0,
        handshake_timeout: config.tls.handshake_timeout.0,
        max_message: config.stream.max_message_bytes.usize(),
        conns: ConnLimiter::new(
            (Budget::StreamConnections, budgets.stream_connections),
            (Budget::StreamConnectionsPerIp, budgets.stream_connections_per_ip),
            exhaustions.clone(),
        ),
        queue: Arc::new(conn_out::QueueLimits {
            per_conn: config.stream.max_queued_bytes.usize(),
            total: SharedBytes::new(
                Budget::StreamQueuedBytesTotal,
                config.stream.max_queued_bytes_total.usize(),
                exhaustions.clone(),
            ),
            write_stall: config.stream.write_stall_timeout.0,
            exhaustions: exhaustions.clone(),
        }),
    };
    // DTLS sessions have budgets of their own, with the stream limits.
    let dtls_sessions = ConnLimiter::new(
        (Budget::DtlsSessions, budgets.stream_connections),
        (Budget::DtlsSessionsPerIp, budgets.stream_connections_per_ip),
        exhaustions.clone(),
    );
    let dtls_limits = dtls.clone().map(|setup| event_loop::DtlsLimits {
        setup,
        sessions: dtls_sessions.clone(),
        handshake_timeout: config.tls.handshake_timeout.0,
        auth_timeout: config.stream.auth_timeout.0,
        idle_timeout: config.stream.idle_timeout.0,
        exhaustions: exhaustions.clone(),
    });
    let shared = setup::Shared::new(config)?;
    // After the listeners (it answers Binding on them), before the shards.
    let fastpath = crate::fastpath::FastPath::start(&config.fastpath, &bound.udp)?;
    let maps = fastpath.as_ref().map(|f| f.maps());
    let (controls, control_rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| tokio::sync::mpsc::unbounded_channel()).unzip();
    let handle = ServerHandle(Arc::new(handle::Inner {
        controls,
        draining: Default::default(),
        shards_alive: Default::default(),
        stream_conns: limits.conns.clone(),
        stream_queued: limits.queue.total.clone(),
        dtls_sessions,
        dtls,
        exhaustions,
        shared: std::sync::RwLock::new(shared.clone()),
        config: std::sync::Mutex::new(config.clone()),
        cert: tls.map(|t| t.resolver.clone()),
        revoked: Default::default(),
        log: Default::default(),
        fastpath: std::sync::Mutex::new(fastpath),
    }));
    let (stop, stop_rx) = watch::channel(false);
    let (foreign_binds, foreign_inboxes): (Vec<_>, Vec<_>) =
        (0..n).map(|_| tokio::sync::mpsc::unbounded_channel()).unzip();
    let mut shards = Vec::with_capacity(n);
    let per_shard = per_shard.into_iter().zip(control_rxs).zip(foreign_inboxes);
    for (index, ((sockets, control), foreign_inbox)) in per_shard.enumerate() {
        let setup = event_loop::ShardSetup {
            index,
            control,
            sockets,
            core_config: proto::ServerConfig {
                offload: maps.is_some(),
                ..shared.core_config(config, index, n)?
            },
            tls: acceptor.clone(),
            dtls: dtls_limits.clone(),
            limits: limits.clone(),
            relay_buffers: (
                config.relay.recv_buffer_bytes.usize(),
                config.relay.send_buffer_bytes.usize(),
            ),
            shutdown: stop_rx.clone(),
            fastpath: maps.clone(),
            foreign_binds: foreign_binds.clone(),
            foreign_inbox,
            events: events.clone(),
        };
        let h = std::thread::Builder::new()
            .name(format!("ternd-shard-{index}"))
            .spawn({
                let handle = handle.clone();
                move || {
                    // Counted alive while the thread runs (readyz, watchdog).
                    struct Alive(ServerHandle);
                    impl Drop for Alive {
                        fn drop(&mut self) {
                            self.0
                                 .0
                                .shards_alive
                                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    handle.0.shards_alive.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _alive = Alive(handle);
                    event_loop::run(setup)
                }
            })
            .context("cannot start a shard thread")?;
        shards.push(h);
    }
    Ok(RunningServer {
        bound,
        handle,
        shards,
        stop,
    })
}

/// One SO_REUSEPORT UDP socket per shard on `addr` (config key `key`, for
/// errors); with port 0 the first picks the port and the others join it.
fn bind_udp_per_shard(
    key: &str,
    addr: SocketAddr,
    shards: usize,
    (recv, send): (usize, usize),
) -> anyhow::Result<Vec<std::net::UdpSocket>> {
    sockets::ensure_free(addr, socket2::Type::DGRAM).with_context(|| format!("{key} {addr}"))?;
    let mut actual = sockets::resolve_port(addr, socket2::Type::DGRAM).with_context(|| format!("{key} {addr}"))?;
    let mut socks = Vec::with_capacity(shards);
    for _ in 0..shards {
        let sock = sockets::udp(actual, recv, send).with_context(|| format!("{key}: cannot bind {actual}"))?;
        actual = sock.local_addr()?;
        socks.push(sock);
    }
    Ok(socks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_addrs_display_as_one_readable_line() {
        let bound = BoundAddrs {
            udp: vec!["127.0.0.1:3478".parse().unwrap(), "[::]:3478".parse().unwrap()],
            tcp: vec![],
            tls: vec!["0.0.0.0:5349".parse().unwrap()],
            dtls: vec![],
            http: vec!["127.0.0.1:8080".parse().unwrap()],
        };
        assert_eq!(
            bound.to_string(),
            "udp=127.0.0.1:3478,[::]:3478 tls=0.0.0.0:5349 http=127.0.0.1:8080"
        );
        assert_eq!(BoundAddrs::default().to_string(), "");
    }
}
