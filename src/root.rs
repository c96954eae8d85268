//! The composition root: starts the shards, then the HTTP listener with the
//! running shards' handle, and stops them in the reverse order. Nothing below
//! it knows of anything above it (the shards know no HTTP, HTTP knows the
//! shards only through [`ServerHandle`]).

use std::future::Future;
use std::sync::Arc;

use crate::budget::{Budgets, Exhaustions};
use crate::cert_watch::CertWatch;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::http::HttpServer;
use crate::server::{BoundAddrs, RunningServer, ServerHandle};
use crate::tls::TlsSetup;

/// A running ternd: shards and, when configured, the HTTP listener.
pub struct Running {
    bound: BoundAddrs,
    server: RunningServer,
    http: Option<HttpServer>,
    /// Reloads the certificate when its files change (with TLS only).
    _cert_watch: Option<CertWatch>,
    cluster: Option<Cluster>,
}

/// Starts ternd for `config`: one TLS setup for TURN over TLS and HTTPS,
/// the shards (every listener bound first), then HTTP on the shards' handle.
pub fn start(config: &Config) -> anyhow::Result<Running> {
    let wants_tls = !config.listen.tls.is_empty()
        || !config.listen.dtls.is_empty()
        || (config.http.tls && !config.http.listen.is_empty());
    let cert_stamps = crate::cert_watch::stamps(&config.tls.cert_file, &config.tls.key_file);
    let tls = if wants_tls {
        Some(TlsSetup::load(&config.tls.cert_file, &config.tls.key_file)?)
    } else {
        None
    };
    let dtls = if config.listen.dtls.is_empty() {
        None
    } else {
        let d = crate::dtls::DtlsSetup::load(&config.tls.cert_file, &config.tls.key_file, &config.tls.alpn)?;
        Some(Arc::new(d))
    };
    let fds = crate::fd_limit::plan(config, crate::fd_limit::raise_soft_limit());
    if let Some(why) = &fds.lowered {
        tracing::warn!("{why}");
    }
    let budgets = Budgets {
        exhaustions: Arc::new(Exhaustions::default()),
        stream_connections: fds.stream_connections,
        http_connections: fds.http_connections,
        stream_connections_per_ip: fds.stream_connections_per_ip,
        http_connections_per_ip: fds.http_connections_per_ip,
    };
    let (events, events_rx) = if crate::cluster::wanted(config) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let server = crate::server::start(config, tls.as_ref(), dtls, &budgets, events)?;
    let mut bound = server.bound().clone();
    // Chromium opens TLS over TCP for `turns:…?transport=udp` too: on the
    // DTLS port, that only works when a TLS listener shares the number.
    if let Some(d) = bound.dtls.first() {
        if !bound.tls.iter().any(|t| t.port() == d.port()) {
            tracing::warn!(
                dtls_port = d.port(),
                "no TLS listener on the DTLS port: browsers that take turns:…?transport=udp as TLS over TCP (Chromium) will not reach it; give listen.tls and listen.dtls the same port (5349)"
            );
        }
    }
    let cert_watch = match &tls {
        Some(t) => Some(crate::cert_watch::start(
            server.handle(),
            t.resolver.clone(),
            cert_stamps,
        )?),
        None => None,
    };
    let hub = crate::signaling::Hub::new(crate::signaling::SignalingLimits::from_config(&config.signaling));
    let cluster = crate::cluster::start(config, &server.handle(), &bound, events_rx, &hub)?;
    let http_tls = tls.filter(|_| config.http.tls).map(|t| t.acceptor());
    let cluster_handle = cluster.as_ref().map(Cluster::handle);
    let http = crate::http::start(
        config,
        &server.handle(),
        &bound,
        http_tls,
        &budgets,
        hub,
        cluster_handle,
    )?;
    if let Some(h) = &http {
        bound.http = h.bound.clone();
    }
    Ok(Running {
        bound,
        server,
        http,
        _cert_watch: cert_watch,
        cluster,
    })
}

/// Runs ternd for `config` until `shutdown` completes, then stops it and
/// returns the shards' counters summed (the mini-redis `run(listener,
/// shutdown)` shape, for embedding and tests). `ternd serve` uses [`start`]
/// directly, as it also reloads and drains on signals.
pub fn run(config: &Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<proto::Stats> {
    let running = start(config)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(shutdown);
    running.shutdown()
}

impl Running {
    /// The addresses every listener is bound to (port 0 resolved).
    pub fn bound(&self) -> &BoundAddrs {
        &self.bound
    }

    /// What the shards share now: credentials (to mint with), relay addresses.
    pub fn shared(&self) -> crate::server::setup::Shared {
        self.server.shared()
    }

    /// A handle for reload, drain, health and metrics.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Stops HTTP, then every shard, then the cluster task (which leaves
    /// the registry); returns the shards' counters summed.
    pub fn shutdown(self) -> anyhow::Result<proto::Stats> {
        drop(self._cert_watch);
        if let Some(h) = self.http {
            h.shutdown();
        }
        let stats = self.server.shutdown();
        if let Some(c) = self.cluster {
            c.shutdown();
        }
        stats
    }
}
