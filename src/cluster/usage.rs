//! Usage records: one per closed allocation (node, user, client, relay,
//! start, duration, bytes and packets each way), for billing and audit.
//! Written as JSON lines to `usage.file` and, in a cluster, as entries of
//! the Redis stream `ternd:usage` (trimmed with MAXLEN ~).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRecord {
    pub node: String,
    pub user: String,
    pub client: String,
    pub transport: &'static str,
    /// The relayed addresses, comma-separated (two for a dual-stack allocation).
    pub relay: String,
    /// Unix milliseconds.
    pub start_ms: u64,
    pub duration_ms: u64,
    pub to_peer_bytes: u64,
    pub to_peer_packets: u64,
    pub to_client_bytes: u64,
    pub to_client_packets: u64,
    pub reason: String,
}

impl UsageRecord {
    /// The record of `event` if it closed an allocation, as of `now_ms`.
    pub fn of(event: &proto::Event, node: &str, now_ms: u64) -> Option<UsageRecord> {
        let proto::Event::AllocationClosed {
            tuple,
            username,
            relays,
            age,
            reason,
            traffic,
        } = event
        else {
            return None;
        };
        let duration_ms = millis(*age);
        Some(UsageRecord {
            node: node.to_string(),
            user: username.clone(),
            client: tuple.client.to_string(),
            transport: tuple.transport.name(),
            relay: relays.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            start_ms: now_ms.saturating_sub(duration_ms),
            duration_ms,
            to_peer_bytes: traffic.to_peer_bytes,
            to_peer_packets: traffic.to_peer_packets,
            to_client_bytes: traffic.to_client_bytes,
            to_client_packets: traffic.to_client_packets,
            reason: format!("{reason:?}").to_lowercase(),
        })
    }

    /// The stream entry's fields, in the record's order.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("node", self.node.clone()),
            ("user", self.user.clone()),
            ("client", self.client.clone()),
            ("transport", self.transport.to_string()),
            ("relay", self.relay.clone()),
            ("start_ms", self.start_ms.to_string()),
            ("duration_ms", self.duration_ms.to_string()),
            ("to_peer_bytes", self.to_peer_bytes.to_string()),
            ("to_peer_packets", self.to_peer_packets.to_string()),
            ("to_client_bytes", self.to_client_bytes.to_string()),
            ("to_client_packets", self.to_client_packets.to_string()),
            ("reason", self.reason.clone()),
        ]
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Appends `record` as one JSON line to `path` (created if missing).
pub fn append_line(path: &Path, record: &UsageRecord) -> std::io::Result<()> {
    let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    // One write per line: concurrent appenders (O_APPEND) never interleave it.
    f.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{ClientAddr, FiveTuple, ServerAddr, Transport};

    #[test]
    fn a_closed_allocation_makes_one_record_and_one_json_line() {
        let event = proto::Event::AllocationClosed {
            tuple: FiveTuple {
                client: ClientAddr("192.0.2.7:5000".parse().unwrap()),
                server: ServerAddr("192.0.2.1:3478".parse().unwrap()),
                transport: Transport::Udp,
            },
            username: "1700000000:alice".into(),
            relays: vec!["192.0.2.1:61000".parse().unwrap()],
            age: Duration::from_millis(2500),
            reason: proto::CloseReason::Deleted,
            traffic: proto::allocation::Traffic {
                to_peer_bytes: 10,
                to_peer_packets: 1,
                to_client_bytes: 20,
                to_client_packets: 2,
            },
        };
        let r = UsageRecord::of(&event, "n1", 10_000).unwrap();
        assert_eq!((r.start_ms, r.duration_ms), (7_500, 2_500));
        assert_eq!(r.relay, "192.0.2.1:61000");
        assert_eq!(r.reason, "deleted");
        assert_eq!(r.fields().len(), 12);
        let dir = std::env::temp_dir().join(format!("ternd-usage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("usage.jsonl");
        append_line(&file, &r).unwrap();
        append_line(&file, &r).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["to_client_bytes"], 20);
        assert_eq!(lines[0]["user"], "1700000000:alice");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
