//! Which config keys a reload may change: all but the ones listed here,
//! which take effect only on restart. The reload report and the config a
//! reload applies both come from this one table, and README.md's reload
//! paragraph is checked against it.

use super::Config;

/// Copies one restart-only key from the running config (second argument)
/// into a reloaded one (first argument).
type KeepRunning = fn(&mut Config, &Config);

/// The keys that only change on restart, by the names a reload reports.
pub const RESTART_KEYS: &[(&str, KeepRunning)] = &[
    ("listen", |to, from| to.listen = from.listen.clone()),
    ("server.shards", |to, from| to.server.shards = from.server.shards),
    ("relay.ipv4", |to, from| to.relay.ipv4 = from.relay.ipv4),
    ("relay.ipv6", |to, from| to.relay.ipv6 = from.relay.ipv6),
    ("relay.external_ip", |to, from| {
        to.relay.external_ip = from.relay.external_ip.clone()
    }),
    ("relay.port_min/port_max", |to, from| {
        to.relay.port_min = from.relay.port_min;
        to.relay.port_max = from.relay.port_max;
    }),
    ("relay.recv_buffer_bytes/send_buffer_bytes", |to, from| {
        to.relay.recv_buffer_bytes = from.relay.recv_buffer_bytes;
        to.relay.send_buffer_bytes = from.relay.send_buffer_bytes;
    }),
    ("http", |to, from| to.http = from.http.clone()),
    ("signaling", |to, from| to.signaling = from.signaling.clone()),
    ("stream", |to, from| to.stream = from.stream.clone()),
    ("udp", |to, from| to.udp = from.udp.clone()),
    ("tls.handshake_timeout", |to, from| {
        to.tls.handshake_timeout = from.tls.handshake_timeout
    }),
    ("tls.alpn", |to, from| to.tls.alpn = from.tls.alpn.clone()),
    ("log.format", |to, from| to.log.format = from.log.format),
    // A reload may turn the fast path off; anything else waits for a restart.
    ("fastpath", |to, from| {
        if to.fastpath.mode != super::FastpathMode::Off {
            to.fastpath = from.fastpath.clone();
        }
    }),
    ("cluster", |to, from| to.cluster = from.cluster.clone()),
    ("usage", |to, from| to.usage = from.usage.clone()),
];

/// What a reload from the running config to a new one does.
#[derive(Debug)]
pub struct ReloadPlan {
    /// The config to put in force: the new one, with every restart-only key
    /// as it runs now.
    pub applied: Config,
    /// Restart-only keys whose new value waits for a restart.
    pub needs_restart: Vec<&'static str>,
}

impl ReloadPlan {
    pub fn new(running: &Config, new: &Config) -> ReloadPlan {
        let mut applied = new.clone();
        let mut needs_restart = Vec::new();
        for (key, keep_running) in RESTART_KEYS {
            let before = applied.clone();
            keep_running(&mut applied, running);
            if applied != before {
                needs_restart.push(*key);
            }
        }
        ReloadPlan { applied, needs_restart }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ByteSize, FastpathMode, LogFormat, RelayIp, Secret};

    #[test]
    fn live_keys_apply_and_restart_keys_wait() {
        let running = Config::default();
        let mut new = running.clone();
        new.turn.secrets = vec![Secret::from("a-new-secret-of-some-length")];
        new.turn.max_allocations += 1;
        new.log.level = "debug".into();
        new.relay.ipv4 = RelayIp::Addr("192.0.2.1".parse().unwrap());
        new.relay.port_max -= 1;
        new.udp.recv_buffer_bytes = ByteSize(1);
        new.log.format = LogFormat::Json;
        let plan = ReloadPlan::new(&running, &new);
        assert_eq!(
            plan.needs_restart,
            ["relay.ipv4", "relay.port_min/port_max", "udp", "log.format"]
        );
        assert_eq!(plan.applied.turn, new.turn);
        assert_eq!(plan.applied.log.level, "debug");
        assert_eq!(plan.applied.relay, running.relay);
        assert_eq!(plan.applied.udp, running.udp);
        assert_eq!(plan.applied.log.format, running.log.format);
    }

    #[test]
    fn a_reload_may_turn_the_fast_path_off_but_not_on() {
        let mut running = Config::default();
        running.fastpath.mode = FastpathMode::Xdp;
        running.fastpath.interfaces = vec!["eth0".into()];
        let plan = ReloadPlan::new(&running, &Config::default());
        assert!(plan.needs_restart.is_empty());
        assert_eq!(plan.applied.fastpath.mode, FastpathMode::Off);
        let plan = ReloadPlan::new(&Config::default(), &running);
        assert_eq!(plan.needs_restart, ["fastpath"]);
        assert_eq!(plan.applied.fastpath.mode, FastpathMode::Off);
    }

    #[test]
    fn an_unchanged_config_needs_no_restart() {
        let c = Config::default();
        let plan = ReloadPlan::new(&c, &c);
        assert!(plan.needs_restart.is_empty());
        assert_eq!(plan.applied, c);
    }

    #[test]
    fn every_restart_key_is_detected() {
        let running = Config::default();
        let mut new = running.clone();
        new.listen.udp.clear();
        new.server.shards += 1;
        new.relay.ipv4 = RelayIp::Off;
        new.relay.ipv6 = RelayIp::Auto;
        new.relay.external_ip = vec!["203.0.113.1".parse().unwrap()];
        new.relay.port_min += 1;
        new.relay.send_buffer_bytes = ByteSize(1);
        new.http.public_host = "elsewhere.example".into();
        new.signaling.max_room_size += 1;
        new.stream.max_connections += 1;
        new.udp.send_buffer_bytes = ByteSize(1);
        new.tls.handshake_timeout.0 += std::time::Duration::from_secs(1);
        new.tls.alpn.clear();
        new.log.format = LogFormat::Json;
        new.fastpath.mode = FastpathMode::Auto;
        new.fastpath.interfaces = vec!["eth0".into()];
        new.cluster.node_id = "another".into();
        new.usage.stream_max_records += 1;
        let plan = ReloadPlan::new(&running, &new);
        let all: Vec<&str> = RESTART_KEYS.iter().map(|(k, _)| *k).collect();
        assert_eq!(plan.needs_restart, all);
        assert_eq!(plan.applied, running);
    }

    #[test]
    fn the_readme_lists_every_restart_key() {
        let readme = include_str!("../../README.md");
        let at = readme
            .find("only change on restart")
            .expect("README.md says which keys only change on restart");
        let start = readme[..at].rfind("\n\n").map_or(0, |i| i + 2);
        let end = readme[at..].find("\n\n").map_or(readme.len(), |i| at + i);
        let paragraph = readme[start..end].replace('\n', " ");
        for (key, _) in RESTART_KEYS {
            assert!(
                paragraph.contains(&format!("`{key}`")) || paragraph.contains(&format!("`[{key}]`")),
                "README.md's reload paragraph does not name `{key}`: {paragraph}"
            );
        }
    }
}
