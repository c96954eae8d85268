//! One node as the registry holds it: where callers reach it and how loaded
//! it is, written as JSON under a key that expires after three heartbeats.
//! The iceServers API picks among these ([`choose`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    /// `cluster.region` (empty: none).
    #[serde(default)]
    pub region: String,
    /// The host its stun:/turn:/turns: URLs carry.
    pub advertise: String,
    pub udp_port: Option<u16>,
    pub tcp_port: Option<u16>,
    pub tls_port: Option<u16>,
    /// TURN over DTLS; absent in records of nodes from before it.
    #[serde(default)]
    pub dtls_port: Option<u16>,
    pub allocations: usize,
    /// Relayed payload, both directions, over the last heartbeat.
    pub relayed_bps: u64,
    /// Processor time over the last heartbeat, in percent of one core.
    pub cpu_percent: u32,
    pub draining: bool,
    /// When it was written (Unix milliseconds, the writer's clock).
    pub at_ms: u64,
}

/// What a caller asks the iceServers API for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted<'a> {
    /// This node by id, or none.
    pub node: Option<&'a str>,
    /// Preferably a node of this region (any node when it has none live).
    pub region: Option<&'a str>,
}

/// The node a new caller should go to among `nodes`: never a draining one
/// nor one whose heartbeat is older than `max_age`; `wanted.node` picks one
/// by id, otherwise the least loaded (fewest allocations, then least
/// traffic, then least CPU, then id, so every node answers alike), in
/// `wanted.region` when that has a live node.
pub fn choose<'a>(nodes: &'a [NodeRecord], wanted: Wanted, now_ms: u64, max_age: Duration) -> Option<&'a NodeRecord> {
    let max_age = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
    let live: Vec<&'a NodeRecord> = nodes
        .iter()
        .filter(|n| !n.draining && now_ms.saturating_sub(n.at_ms) <= max_age)
        .collect();
    if let Some(id) = wanted.node {
        return live.into_iter().find(|n| n.id == id);
    }
    let least = |region: Option<&str>| {
        live.iter()
            .copied()
            .filter(|n| region.is_none_or(|r| n.region == r))
            .min_by_key(|n| (n.allocations, n.relayed_bps, n.cpu_percent, &n.id))
    };
    wanted.region.and_then(|r| least(Some(r))).or_else(|| least(None))
}

/// Measures this process's CPU and relayed rate between two heartbeats.
#[derive(Debug, Default)]
pub struct LoadSampler {
    last: Option<(std::time::Instant, u64, u64)>,
}

impl LoadSampler {
    /// (relayed bit/s, CPU percent of one core) since the previous call,
    /// from the relayed byte total and /proc/self/stat.
    pub fn sample(&mut self, relayed_bytes: u64) -> (u64, u32) {
        let now = std::time::Instant::now();
        let cpu_ticks = cpu_ticks().unwrap_or(0);
        let out = match self.last {
            Some((at, bytes, ticks)) => {
                let secs = now.duration_since(at).as_secs_f64().max(0.001);
                let bps = (relayed_bytes.saturating_sub(bytes) as f64 * 8.0 / secs) as u64;
                let hz = ticks_per_second() as f64;
                let cpu = (cpu_ticks.saturating_sub(ticks) as f64 / hz / secs * 100.0) as u32;
                (bps, cpu)
            }
            None => (0, 0),
        };
        self.last = Some((now, relayed_bytes, cpu_ticks));
        out
    }
}

/// User plus system time of this process, in clock ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; count from its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, allocations: usize, draining: bool, at_ms: u64) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            region: if id < "c" { "eu".into() } else { "us".into() },
            advertise: "192.0.2.1".into(),
            udp_port: Some(3478),
            tcp_port: None,
            tls_port: None,
            dtls_port: None,
            allocations,
            relayed_bps: 0,
            cpu_percent: 0,
            draining,
            at_ms,
        }
    }

    #[test]
    fn the_least_loaded_live_node_is_chosen() {
        let age = Duration::from_secs(3);
        let nodes = [
            node("a", 5, false, 10_000),
            node("b", 1, true, 10_000),
            node("c", 2, false, 10_000),
            node("d", 0, false, 6_000),
        ];
        let any = Wanted::default();
        let node = |id| Wanted {
            node: Some(id),
            region: None,
        };
        let region = |r| Wanted {
            node: None,
            region: Some(r),
        };
        assert_eq!(choose(&nodes, any, 10_500, age).unwrap().id, "c", "b drains, d is dead");
        assert_eq!(choose(&nodes, node("a"), 10_500, age).unwrap().id, "a");
        assert!(
            choose(&nodes, node("b"), 10_500, age).is_none(),
            "never a draining node"
        );
        assert!(choose(&nodes, node("d"), 10_500, age).is_none(), "never a dead node");
        assert_eq!(
            choose(&nodes, region("eu"), 10_500, age).unwrap().id,
            "a",
            "eu: a (b drains)"
        );
        assert_eq!(
            choose(&nodes, region("mars"), 10_500, age).unwrap().id,
            "c",
            "no such region: any"
        );
        assert!(choose(&nodes, any, 20_000, age).is_none());
    }

    #[test]
    fn load_is_sampled_between_calls() {
        let mut s = LoadSampler::default();
        assert_eq!(s.sample(0), (0, 0));
        std::thread::sleep(Duration::from_millis(20));
        let (bps, _) = s.sample(1000);
        assert!(bps > 0);
        assert!(cpu_ticks().is_some());
    }
}
