//! The cluster task: one loop on its own thread that turns what happens on
//! this node (allocation events, operator revocations, heartbeats) into
//! Redis writes and what Redis says (revocations, other nodes' counts) into
//! inputs for the shards. Everything it learns reaches the packet path as
//! state handed in ahead of need ([`proto::quota::Quotas::set_remote_users`],
//! a revocation sent to each shard), never as a wait.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::keys;
use super::node::{LoadSampler, NodeRecord};
use super::status::Status;
use super::store::Store;
use super::subscriber::{self, Heard};
use super::usage::{self, UsageRecord};
use crate::ice_servers::IcePorts;
use crate::server::ServerHandle;
use crate::signaling::bus::{BusMessage, Envelope};
use crate::signaling::Hub;
use crate::utc_time::unix_ms;

/// Usage records kept while Redis is away; older ones are dropped (and
/// counted) beyond this.
const MAX_BACKLOG: usize = 10_000;
/// Records per XADD pipeline.
const USAGE_BATCH: usize = 100;

pub struct Settings {
    pub client: Option<redis::Client>,
    /// The Redis URL with its password hidden, for log lines.
    pub redacted_url: String,
    pub advertise: String,
    pub region: String,
    pub ports: IcePorts,
    pub usage_file: Option<PathBuf>,
    pub stream_max_records: usize,
    /// The signaling hub whose rooms span the cluster.
    pub hub: Option<Arc<Hub>>,
}

pub struct Inputs {
    pub events: Option<UnboundedReceiver<proto::Event>>,
    pub revokes: UnboundedReceiver<String>,
    pub stop: watch::Receiver<bool>,
}

struct Task {
    settings: Settings,
    server: ServerHandle,
    status: Arc<Status>,
    store: Option<Store>,
    load: LoadSampler,
    backlog: VecDeque<UsageRecord>,
    revokes_out: Vec<String>,
    /// This node's per-user counts must be written.
    dirty_users: bool,
    /// The other nodes' per-user counts must be read.
    read_remote: bool,
    /// Revocations must be exchanged in full (start, or Redis back).
    resync: bool,
    /// The signaling rooms must be exchanged in full (subscribed again).
    hello: bool,
}

pub async fn run(settings: Settings, server: ServerHandle, status: Arc<Status>, inputs: Inputs) {
    let Inputs {
        mut events,
        mut revokes,
        mut stop,
    } = inputs;
    let store = settings.client.clone().and_then(|c| {
        Store::new(c, status.node_id.clone(), status.max_age())
            .map_err(|e| tracing::error!("cluster: cannot use Redis at {}: {e}", settings.redacted_url))
            .ok()
    });
    let (heard_tx, mut heard) = unbounded_channel();
    let (bus_tx, mut bus) = unbounded_channel::<BusMessage>();
    if let Some(hub) = &settings.hub {
        hub.join_cluster(status.node_id.clone(), bus_tx);
    }
    if let Some(c) = &settings.client {
        let retry = status.heartbeat.min(Duration::from_secs(1));
        tokio::spawn(subscriber::listen(c.clone(), heard_tx, retry));
    }
    let mut tick = tokio::time::interval(status.heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut t = Task {
        settings,
        server,
        status,
        store,
        load: LoadSampler::default(),
        backlog: VecDeque::new(),
        revokes_out: Vec::new(),
        dirty_users: true,
        read_remote: true,
        resync: true,
        hello: false,
    };
    loop {
        let mut now = false;
        let mut events_closed = false;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            e = recv_or_wait(&mut events) => match e {
                Some(e) => t.on_event(&e),
                None => events_closed = true,
            },
            Some(user) = revokes.recv() => {
                t.revokes_out.push(user);
                now = true;
            }
            Some(h) = heard.recv() => now = t.on_heard(h).await,
            Some(m) = bus.recv() => t.publish(m).await,
            _ = tick.tick() => {
                t.heartbeat().await;
                now = true;
            }
        }
        if events_closed {
            events = None;
        }
        // Take every event already queued, so one sync covers them all.
        while let Some(e) = events.as_mut().and_then(|rx| rx.try_recv().ok()) {
            t.on_event(&e);
        }
        if now || t.status.is_up() {
            t.sync().await;
        }
    }
    if let Some(store) = &mut t.store {
        // A clean stop leaves the registry at once instead of by expiry.
        let _ = tokio::time::timeout(Duration::from_millis(500), store.leave()).await;
    }
}

async fn recv_or_wait<T>(rx: &mut Option<UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Task {
    fn on_event(&mut self, e: &proto::Event) {
        self.dirty_users = true;
        let Some(record) = UsageRecord::of(e, &self.status.node_id, unix_ms()) else {
            return;
        };
        if let Some(path) = &self.settings.usage_file {
            match usage::append_line(path, &record) {
                Ok(()) => self.status.usage_file_records.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!("usage.file {}: {e}", path.display());
                    self.status.usage_dropped.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
        if self.store.is_some() {
            if self.backlog.len() >= MAX_BACKLOG {
                self.backlog.pop_front();
                self.status.usage_dropped.fetch_add(1, Ordering::Relaxed);
            }
            self.backlog.push_back(record);
        }
    }

    /// Acts on what the subscription heard; true when Redis should be
    /// talked to now.
    async fn on_heard(&mut self, h: Heard) -> bool {
        match h {
            Heard::Connected => {
                self.resync = true;
                self.read_remote = true;
                self.dirty_users = true;
                self.hello = true;
                true
            }
            Heard::Signal(payload) => {
                match serde_json::from_str::<Envelope>(&payload) {
                    Ok(e) if e.node == self.status.node_id => {}
                    Ok(e) => {
                        if let Some(hub) = &self.settings.hub {
                            if let BusMessage::Hello { node } = &e.msg {
                                // It (re)starts with the peers it announces next.
                                hub.forget_remote(Some(node));
                            }
                            hub.handle_bus(e.msg);
                        }
                    }
                    Err(_) => {
                        self.status.redis_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                false
            }
            Heard::Lost => {
                self.degrade("the subscription dropped");
                false
            }
            Heard::Revoked(user) => {
                if !self.server.revoked_names().contains(&user) {
                    self.server.revoke(&user).await;
                    self.status.revocations_applied.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(user = %user, "cluster: revoked on another node");
                }
                false
            }
            Heard::QuotaChanged(node) => {
                if node != self.status.node_id {
                    self.read_remote = true;
                }
                false
            }
        }
    }

    /// Sends a signaling message to the other nodes, in order; lost (at
    /// most once) while Redis is away.
    async fn publish(&mut self, msg: BusMessage) {
        let Some(store) = &mut self.store else { return };
        if !self.status.is_up() {
            self.status.signal_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let envelope = Envelope {
            node: self.status.node_id.clone(),
            msg,
        };
        let Ok(payload) = serde_json::to_string(&envelope) else {
            return;
        };
        if let Err(e) = store.publish(keys::SIGNAL_CHANNEL, &payload).await {
            self.status.signal_dropped.fetch_add(1, Ordering::Relaxed);
            self.degrade(&e.to_string());
        }
    }

    /// This node's load as the registry shows it.
    async fn record(&mut self) -> NodeRecord {
        let shards = self.server.snapshots().await;
        let relayed: u64 = shards
            .iter()
            .map(|s| s.stats.traffic.to_peer_bytes + s.stats.traffic.to_client_bytes)
            .sum();
        let (relayed_bps, cpu_percent) = self.load.sample(relayed);
        NodeRecord {
            id: self.status.node_id.clone(),
            region: self.settings.region.clone(),
            advertise: self.settings.advertise.clone(),
            udp_port: self.settings.ports.udp,
            tcp_port: self.settings.ports.tcp,
            tls_port: self.settings.ports.tls,
            dtls_port: self.settings.ports.dtls,
            allocations: shards.iter().map(|s| s.allocations).sum(),
            relayed_bps,
            cpu_percent,
            draining: self.server.is_draining(),
            at_ms: unix_ms(),
        }
    }

    /// One heartbeat: write this node's load, read everyone's.
    async fn heartbeat(&mut self) {
        if self.store.is_none() {
            return;
        }
        let record = self.record().await;
        let Some(store) = &mut self.store else { return };
        let result = async {
            store.heartbeat(&record).await?;
            store.registry().await
        }
        .await;
        match result {
            Ok(nodes) => {
                if let Some(hub) = &self.settings.hub {
                    // A node whose heartbeat expired took its peers with it.
                    for gone in self
                        .status
                        .nodes()
                        .iter()
                        .filter(|old| !nodes.iter().any(|n| n.id == old.id))
                    {
                        hub.forget_remote(Some(&gone.id));
                    }
                }
                self.status.set_nodes(nodes);
                // Refresh this node's counts' expiry, and re-read the others'.
                self.dirty_users = true;
                self.read_remote = true;
            }
            Err(e) => self.degrade(&e.to_string()),
        }
    }

    /// Sends what is pending to Redis; on the first failure, the node is
    /// degraded and everything stays pending for the next heartbeat.
    async fn sync(&mut self) {
        if let Err(e) = self.try_sync().await {
            self.degrade(&e.to_string());
            return;
        }
        if !self.status.is_up() && self.store.is_some() {
            tracing::info!(
                "cluster: Redis at {} answers; in sync again",
                self.settings.redacted_url
            );
            self.status.set_up(true);
        }
        if self.hello && self.status.is_up() {
            self.hello = false;
            if let Some(hub) = self.settings.hub.clone() {
                // Everyone answers with their peers; ours follow.
                let node = self.status.node_id.clone();
                self.publish(BusMessage::Hello { node }).await;
                hub.announce_all();
            }
        }
    }

    async fn try_sync(&mut self) -> redis::RedisResult<()> {
        let Some(store) = &mut self.store else { return Ok(()) };
        let unix = unix_ms() / 1000;
        if self.resync {
            store.ping().await?;
            // Ours to everyone, then everyone's to us.
            let local: HashSet<String> = self.server.revoked_names().into_iter().collect();
            for user in &local {
                store.revoke(user, unix).await?;
            }
            for user in store.revocations().await? {
                if !local.contains(&user) {
                    self.server.revoke(&user).await;
                    self.status.revocations_applied.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.resync = false;
        }
        while let Some(user) = self.revokes_out.last() {
            store.revoke(user, unix).await?;
            self.revokes_out.pop();
        }
        let quotas = self.server.shared().quotas;
        if self.dirty_users {
            store.write_users(&quotas.local_users()).await?;
            self.dirty_users = false;
        }
        if self.read_remote {
            let nodes = self.status.nodes();
            quotas.set_remote_users(store.remote_users(&nodes).await?);
            self.read_remote = false;
        }
        while !self.backlog.is_empty() {
            let n = self.backlog.len().min(USAGE_BATCH);
            let batch: Vec<UsageRecord> = self.backlog.iter().take(n).cloned().collect();
            store.usage(&batch, self.settings.stream_max_records).await?;
            self.backlog.drain(..n);
            self.status.usage_stream_records.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Redis is away: quotas fall back to this node's own counts, and
    /// everything is exchanged in full once it answers again.
    fn degrade(&mut self, why: &str) {
        self.status.redis_errors.fetch_add(1, Ordering::Relaxed);
        if self.status.is_up() {
            tracing::warn!(
                "cluster: Redis at {} does not answer ({why}); degraded to this node alone",
                self.settings.redacted_url
            );
        }
        self.status.set_up(false);
        self.server.shared().quotas.set_remote_users(Default::default());
        if let Some(hub) = &self.settings.hub {
            // Signaling falls back to this node's own rooms.
            hub.forget_remote(None);
        }
        self.resync = true;
        self.dirty_users = true;
        self.read_remote = true;
    }
}
