//! Every Redis key and channel ternd uses, in one place (README "Running a
//! cluster" lists them for operators).

/// The set of node ids that have written a heartbeat (pruned lazily).
pub const NODES: &str = "ternd:nodes";
/// Channel: a username revoked (payload: the username).
pub const REVOKE_CHANNEL: &str = "ternd:revoke";
/// Channel: a node's per-user allocation counts changed (payload: node id).
pub const QUOTA_CHANNEL: &str = "ternd:quota";
/// Channel: signaling rooms across nodes (payload: a `signaling::bus::Envelope`).
pub const SIGNAL_CHANNEL: &str = "ternd:signal";
/// The usage-record stream.
pub const USAGE_STREAM: &str = "ternd:usage";
/// Prefix of the revocation keys (`ternd:revoked:USERNAME`).
pub const REVOKED_PREFIX: &str = "ternd:revoked:";

/// A node's heartbeat: its load as JSON, expiring after three heartbeats.
pub fn node(id: &str) -> String {
    format!("ternd:node:{id}")
}

/// A node's allocations per user (a hash), expiring like its heartbeat.
pub fn users(id: &str) -> String {
    format!("ternd:users:{id}")
}

pub fn revoked(username: &str) -> String {
    format!("{REVOKED_PREFIX}{username}")
}
