//! What the cluster task knows, shared with the HTTP side: whether Redis
//! answers, the registry as last read, and counters for /metrics. Read
//! without waiting for Redis: the iceServers API and /readyz use the last
//! heartbeat's view.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use super::node::{choose, NodeRecord, Wanted};

#[derive(Debug, Default)]
pub struct Status {
    /// A Redis URL is configured.
    pub enabled: bool,
    pub node_id: String,
    pub heartbeat: Duration,
    up: AtomicBool,
    nodes: RwLock<Vec<NodeRecord>>,
    /// Redis commands that failed or timed out.
    pub redis_errors: AtomicU64,
    /// Usage records written, to the file and to the stream.
    pub usage_file_records: AtomicU64,
    pub usage_stream_records: AtomicU64,
    /// Usage records lost: the file could not be written, or the backlog
    /// kept while Redis was away overflowed.
    pub usage_dropped: AtomicU64,
    /// Revocations heard from the cluster and put in force here.
    pub revocations_applied: AtomicU64,
    /// Signaling messages for other nodes lost because Redis was away.
    pub signal_dropped: AtomicU64,
}

impl Status {
    pub fn new(enabled: bool, node_id: String, heartbeat: Duration) -> Status {
        Status {
            enabled,
            node_id,
            heartbeat,
            ..Status::default()
        }
    }

    /// Redis answers (false when single-node).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(super) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// "ok", "degraded", or None when single-node (/readyz details).
    pub fn health(&self) -> Option<&'static str> {
        self.enabled.then(|| if self.is_up() { "ok" } else { "degraded" })
    }

    pub(super) fn set_nodes(&self, nodes: Vec<NodeRecord>) {
        *self.nodes.write().unwrap_or_else(|e| e.into_inner()) = nodes;
    }

    /// Every node in the registry as last read, this one included.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Nodes whose heartbeat is at most three heartbeats old.
    pub fn live_nodes(&self, now_ms: u64) -> usize {
        let max = u64::try_from(self.max_age().as_millis()).unwrap_or(u64::MAX);
        self.nodes()
            .iter()
            .filter(|n| now_ms.saturating_sub(n.at_ms) <= max)
            .count()
    }

    /// The node a new caller goes to (see [`choose`]); None while Redis is
    /// away or nothing fits (the caller then serves this node itself).
    pub fn choose(&self, wanted: Wanted, now_ms: u64) -> Option<NodeRecord> {
        if !self.is_up() {
            return None;
        }
        choose(&self.nodes(), wanted, now_ms, self.max_age()).cloned()
    }

    /// How old a heartbeat may be before its node counts as gone.
    pub fn max_age(&self) -> Duration {
        self.heartbeat * 3
    }
}
