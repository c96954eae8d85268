//! Several ternd nodes as one, through one Redis (DESIGN.md §9): a node
//! registry with load, cluster-wide revocation, per-user quotas counted
//! across nodes, the iceServers API sending callers to the least-loaded
//! node, and usage records. Without `cluster.redis_url` none of it runs
//! (usage records still go to `usage.file` when set).
//!
//! # No wait on the packet path
//! The shards never talk to Redis. The cluster runs on its own thread and
//! hands the shards what they need before they need it:
//! - quotas: each node writes its allocations per user to a hash that
//!   expires after three heartbeats (a crashed node's share comes back by
//!   itself) and announces the change; every node keeps the others' counts
//!   in the shared [`proto::quota::Quotas`], which an Allocate reads under
//!   the lock it already takes. The price: two Allocates for one user on
//!   two nodes within the propagation time (one pub/sub round trip) can
//!   both pass. Reserving a slot in Redis before answering would close that
//!   window but put a Redis round trip, and Redis's availability, inside
//!   every Allocate; a quota is a fairness limit, not a security boundary,
//!   so ternd takes the cache.
//! - revocations: published on a channel and stored with the credential's
//!   expiry; each node puts one in force on every shard (closing its live
//!   allocations) as soon as it hears it, and reads them all back whenever
//!   its subscription is (re)made.
//!
//! When Redis is away each node goes on alone: relaying, quotas on local
//! counts, `cluster=degraded` on /readyz and `ternd_cluster_up 0`; it
//! resynchronises when Redis answers again.

mod keys;
mod node;
mod redacted;
mod status;
mod store;
mod subscriber;
mod task;
pub mod usage;

use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;

pub use node::{NodeRecord, Wanted};
pub use redacted::redacted;
pub use status::Status;

use crate::config::Config;
use crate::ice_servers::IcePorts;
use crate::server::{BoundAddrs, ServerHandle};
use crate::signaling::Hub;

/// Whether `config` needs the cluster task (Redis, or usage records to a file),
/// and so a copy of the shards' allocation events.
pub fn wanted(config: &Config) -> bool {
    config.cluster.enabled() || !config.usage.file.as_os_str().is_empty()
}

/// What the HTTP side may ask of the cluster; never waits for Redis.
#[derive(Clone)]
pub struct ClusterHandle {
    status: Arc<Status>,
    revokes: UnboundedSender<String>,
}

impl ClusterHandle {
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Tells every node to refuse `username` (this node has it in force
    /// already). Sent from the cluster thread; kept until Redis answers.
    pub fn revoke(&self, username: &str) {
        if self.status.enabled {
            let _ = self.revokes.send(username.to_string());
        }
    }
}

/// The running cluster task.
pub struct Cluster {
    handle: ClusterHandle,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Cluster {
    pub fn handle(&self) -> ClusterHandle {
        self.handle.clone()
    }

    /// Stops the task; a node in a cluster leaves the registry first.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// This host's name, for `cluster.node_id` left empty.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ternd".into())
}

/// The host this node's URLs carry: `cluster.advertise`, else
/// `http.public_host`, else the first UDP (or TCP) listener's address.
fn advertise(config: &Config, bound: &BoundAddrs) -> String {
    if !config.cluster.advertise.is_empty() {
        return config.cluster.advertise.clone();
    }
    if !config.http.public_host.is_empty() {
        return config.http.public_host.clone();
    }
    let ip = bound.udp.iter().chain(&bound.tcp).map(|a| a.ip()).next();
    match ip {
        Some(ip) if !ip.is_unspecified() => ip.to_string(),
        _ => "127.0.0.1".into(),
    }
}

/// Starts the cluster task when [`wanted`], taking the shards' events.
pub fn start(
    config: &Config,
    server: &ServerHandle,
    bound: &BoundAddrs,
    events: Option<UnboundedReceiver<proto::Event>>,
    hub: &Arc<Hub>,
) -> anyhow::Result<Option<Cluster>> {
    if !wanted(config) {
        return Ok(None);
    }
    let c = &config.cluster;
    let node_id = if c.node_id.is_empty() {
        hostname()
    } else {
        c.node_id.clone()
    };
    let client = if c.enabled() {
        let url = c.redis_url.expose();
        Some(redis::Client::open(url).with_context(|| format!("cluster.redis_url {}", redacted(url)))?)
    } else {
        None
    };
    let status = Arc::new(Status::new(c.enabled(), node_id, c.heartbeat.0));
    let settings = task::Settings {
        client,
        redacted_url: redacted(c.redis_url.expose()),
        advertise: advertise(config, bound),
        region: c.region.clone(),
        ports: IcePorts::from_bound(bound),
        usage_file: Some(config.usage.file.clone()).filter(|f| !f.as_os_str().is_empty()),
        stream_max_records: config.usage.stream_max_records,
        hub: c.enabled().then(|| hub.clone()),
    };
    if c.enabled() {
        tracing::info!(
            node = %status.node_id,
            advertise = %settings.advertise,
            "cluster: joining through Redis at {}",
            settings.redacted_url
        );
    }
    let (revokes_tx, revokes) = unbounded_channel();
    let (stop, stop_rx) = watch::channel(false);
    let handle = ClusterHandle {
        status: status.clone(),
        revokes: revokes_tx,
    };
    let server = server.clone();
    let inputs = task::Inputs {
        events,
        revokes,
        stop: stop_rx,
    };
    let thread = crate::runtime_thread::spawn("ternd-cluster", move || task::run(settings, server, status, inputs))
        .context("cannot start the cluster thread")?;
    Ok(Some(Cluster {
        handle,
        stop,
        thread: Some(thread),
    }))
}
