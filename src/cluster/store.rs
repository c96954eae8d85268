//! The Redis side of the cluster: every command ternd sends, each a short
//! pipeline on one reconnecting connection (redis-rs `ConnectionManager`)
//! with a response timeout, so a Redis that went away costs the cluster
//! task a bounded wait and never the packet path anything.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisResult};

use super::keys;
use super::node::NodeRecord;
use super::usage::UsageRecord;

/// How long one Redis command may take before the cluster counts Redis as away.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// Most revocation keys read back in one resynchronisation.
const MAX_REVOCATIONS: usize = 100_000;

pub struct Store {
    conn: ConnectionManager,
    node: String,
    /// The life of this node's heartbeat and per-user counts.
    ttl: Duration,
}

impl Store {
    /// A connection to `client`'s Redis, made on the first command (so a
    /// node starts while Redis is away) and remade after a failure.
    pub fn new(client: redis::Client, node: String, ttl: Duration) -> RedisResult<Store> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Store { conn, node, ttl })
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    pub async fn ping(&mut self) -> RedisResult<()> {
        redis::cmd("PING").query_async::<()>(&mut self.conn).await
    }

    /// Writes this node's heartbeat (expiring after the TTL) and lists it.
    pub async fn heartbeat(&mut self, record: &NodeRecord) -> RedisResult<()> {
        let json = serde_json::to_string(record).map_err(|e| redis::RedisError::from(std::io::Error::other(e)))?;
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(keys::node(&self.node))
            .arg(json)
            .arg("PX")
            .arg(self.ttl_ms())
            .ignore()
            .cmd("SADD")
            .arg(keys::NODES)
            .arg(&self.node)
            .ignore()
            .query_async::<()>(&mut self.conn)
            .await
    }

    /// Every node with a live heartbeat; ids whose key expired leave the set.
    pub async fn registry(&mut self) -> RedisResult<Vec<NodeRecord>> {
        let ids: Vec<String> = self.conn.smembers(keys::NODES).await?;
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let node_keys: Vec<String> = ids.iter().map(|id| keys::node(id)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&node_keys).query_async(&mut self.conn).await?;
        let mut nodes = Vec::new();
        let mut gone = Vec::new();
        for (id, value) in ids.into_iter().zip(values) {
            match value.and_then(|v| serde_json::from_str::<NodeRecord>(&v).ok()) {
                Some(n) => nodes.push(n),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            self.conn.srem::<_, _, ()>(keys::NODES, gone).await?;
        }
        Ok(nodes)
    }

    /// Replaces this node's allocations-per-user hash (expiring with the
    /// heartbeat, so a crashed node's share comes back) and tells the others.
    pub async fn write_users(&mut self, counts: &HashMap<String, usize>) -> RedisResult<()> {
        let key = keys::users(&self.node);
        let mut p = redis::pipe();
        p.atomic().cmd("DEL").arg(&key).ignore();
        if !counts.is_empty() {
            p.cmd("HSET").arg(&key);
            for (user, n) in counts {
                p.arg(user).arg(*n);
            }
            p.ignore();
            p.cmd("PEXPIRE").arg(&key).arg(self.ttl_ms()).ignore();
        }
        p.cmd("PUBLISH").arg(keys::QUOTA_CHANNEL).arg(&self.node).ignore();
        p.query_async::<()>(&mut self.conn).await
    }

    /// The other live nodes' allocations per user, summed.
    pub async fn remote_users(&mut self, nodes: &[NodeRecord]) -> RedisResult<HashMap<String, usize>> {
        let others: Vec<&NodeRecord> = nodes.iter().filter(|n| n.id != self.node).collect();
        let mut sum = HashMap::new();
        if others.is_empty() {
            return Ok(sum);
        }
        let mut p = redis::pipe();
        for n in &others {
            p.cmd("HGETALL").arg(keys::users(&n.id));
        }
        let all: Vec<HashMap<String, usize>> = p.query_async(&mut self.conn).await?;
        for counts in all {
            for (user, n) in counts {
                *sum.entry(user).or_insert(0) += n;
            }
        }
        Ok(sum)
    }

    /// Stores a revocation until the credential would have expired (a REST
    /// name's expiry; a static user's stays) and tells every node.
    pub async fn revoke(&mut self, username: &str, unix_now: u64) -> RedisResult<()> {
        let expiry = proto::auth::rest_expiry(username);
        if expiry.is_some_and(|e| e <= unix_now) {
            return Ok(()); // it can never authenticate again anyway
        }
        let mut p = redis::pipe();
        p.atomic().cmd("SET").arg(keys::revoked(username)).arg(1);
        if let Some(e) = expiry {
            p.arg("EXAT").arg(e);
        }
        p.ignore()
            .cmd("PUBLISH")
            .arg(keys::REVOKE_CHANNEL)
            .arg(username)
            .ignore()
            .query_async::<()>(&mut self.conn)
            .await
    }

    /// Every stored revocation (SCAN, bounded), for a resynchronisation.
    pub async fn revocations(&mut self) -> RedisResult<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", keys::REVOKED_PREFIX))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn)
                .await?;
            out.extend(
                batch
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(keys::REVOKED_PREFIX).map(String::from)),
            );
            cursor = next;
            if cursor == 0 || out.len() >= MAX_REVOCATIONS {
                return Ok(out);
            }
        }
    }

    /// Appends usage records to the stream, trimmed to about `max_len`.
    pub async fn usage(&mut self, records: &[UsageRecord], max_len: usize) -> RedisResult<()> {
        let mut p = redis::pipe();
        for r in records {
            p.cmd("XADD")
                .arg(keys::USAGE_STREAM)
                .arg("MAXLEN")
                .arg("~")
                .arg(max_len)
                .arg("*");
            for (k, v) in r.fields() {
                p.arg(k).arg(v);
            }
            p.ignore();
        }
        p.query_async::<()>(&mut self.conn).await
    }

    /// Publishes `payload` on `channel` (signaling across nodes).
    pub async fn publish(&mut self, channel: &str, payload: &str) -> RedisResult<()> {
        self.conn.publish::<_, _, ()>(channel, payload).await
    }

    /// Removes this node from the registry at once (a clean stop).
    pub async fn leave(&mut self) -> RedisResult<()> {
        redis::pipe()
            .cmd("DEL")
            .arg(keys::node(&self.node))
            .arg(keys::users(&self.node))
            .ignore()
            .cmd("SREM")
            .arg(keys::NODES)
            .arg(&self.node)
            .ignore()
            .cmd("PUBLISH")
            .arg(keys::QUOTA_CHANNEL)
            .arg(&self.node)
            .ignore()
            .query_async::<()>(&mut self.conn)
            .await
    }
}
