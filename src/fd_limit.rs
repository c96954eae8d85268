//! File descriptors are one table for HTTP connections, TURN's TCP/TLS
//! connections and relay sockets. If strangers' connections could fill it,
//! an honest client's Allocate would get 508 and its TCP connection would
//! not be accepted. At start the soft limit is raised to the hard one (as
//! systemd's `LimitNOFILE` sets both), and if the connection budgets
//! (`stream.max_connections`, `http.max_connections`) do not fit beside the
//! listeners and the relay sockets, they are lowered so that they do, with a
//! warning naming the keys.

use crate::config::Config;

/// Descriptors kept for the process itself: logs, epoll and event fds,
/// the HTTP runtime, accepting a connection only to close it.
const RESERVE: u64 = 64;

/// The connection caps in force, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdPlan {
    pub limit: u64,
    pub stream_connections: usize,
    pub http_connections: usize,
    pub stream_connections_per_ip: usize,
    pub http_connections_per_ip: usize,
    /// Set when the configured caps were lowered to fit `limit`.
    pub lowered: Option<String>,
}

/// Raises the soft fd limit to the hard one; returns the soft limit then in force.
pub fn raise_soft_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return u64::MAX;
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: l.rlim_max,
                rlim_max: l.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    l.rlim_cur
}

/// Fits the connection budgets of `config` into `limit` descriptors.
/// Listener sockets and the reserve come first; then the relay sockets
/// allocations may need, except that connections always keep at least half
/// of what is left (TURN over TCP/TLS serves honest clients too). The two
/// connection caps share their part in proportion to their configured
/// sizes.
pub fn plan(config: &Config, limit: u64) -> FdPlan {
    let (stream, http) = (config.stream.max_connections, config.http.max_connections);
    let listeners = (config.listen.udp.len() + config.listen.tcp.len() + config.listen.tls.len()) as u64
        * config.shard_count() as u64
        + config.http.listen.len() as u64;
    let ports = (config.relay.port_max - config.relay.port_min) as u64 + 1;
    let relays = (config.turn.max_allocations as u64).min(2 * ports);
    let available = limit.saturating_sub(RESERVE + listeners);
    let http_wanted = if config.http.listen.is_empty() { 0 } else { http };
    let wanted = (stream + http_wanted) as u64;
    let budget = available.saturating_sub(relays).max(available / 2);
    if wanted <= budget {
        return FdPlan {
            limit,
            stream_connections: stream,
            http_connections: http,
            stream_connections_per_ip: config.stream.max_connections_per_ip,
            http_connections_per_ip: config.http.max_connections_per_ip,
            lowered: None,
        };
    }
    let http_share = ((budget as u128 * http_wanted as u128) / wanted as u128) as usize;
    let http_now = http_share.max(1).min(http);
    let stream_now = (budget as usize).saturating_sub(http_now).clamp(1, stream);
    // One source keeps at most a quarter of a lowered cap, so a single host
    // cannot take all of it.
    let per_ip = |configured: usize, cap: usize| configured.min((cap / 4).max(1));
    FdPlan {
        limit,
        stream_connections: stream_now,
        http_connections: http_now,
        stream_connections_per_ip: per_ip(config.stream.max_connections_per_ip, stream_now),
        http_connections_per_ip: per_ip(config.http.max_connections_per_ip, http_now),
        lowered: Some(format!(
            "the fd limit ({limit}) does not hold stream.max_connections ({stream}) + http.max_connections \
             ({http_wanted}) beside {listeners} listener sockets and up to {relays} relay sockets: lowered to \
             {stream_now} and {http_now}; raise LimitNOFILE (or ulimit -n) to keep the configured budgets"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sources;

    fn config(sets: &[(&str, &str)]) -> Config {
        Config::load(&Sources {
            overrides: sets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Sources::default()
        })
        .unwrap()
    }

    #[test]
    fn a_roomy_limit_keeps_the_configured_budgets() {
        let c = config(&[]);
        let p = plan(&c, 65536);
        assert_eq!((p.stream_connections, p.http_connections), (20000, 1024));
        assert!(p.lowered.is_none());
    }

    #[test]
    fn a_small_limit_lowers_both_and_leaves_room_for_relays() {
        let c = config(&[("server.shards", "2")]);
        let p = plan(&c, 400);
        let total = (p.stream_connections + p.http_connections) as u64;
        // Half of what the reserve and the listeners leave, at most.
        assert!(total <= (400 - RESERVE) / 2, "{p:?}");
        assert!(p.stream_connections >= 1 && p.http_connections >= 1, "{p:?}");
        assert!(p.http_connections_per_ip <= (p.http_connections / 4).max(1), "{p:?}");
        assert!(p.stream_connections_per_ip <= p.stream_connections / 4, "{p:?}");
        let why = p.lowered.expect("lowered");
        assert!(
            why.contains("stream.max_connections") && why.contains("http.max_connections"),
            "{why}"
        );
    }

    #[test]
    fn relays_come_before_connections_when_both_fit_half() {
        // 1000 allocations at most: connections get what the relays leave.
        let c = config(&[("turn.max_allocations", "1000")]);
        let p = plan(&c, 5000);
        let listeners = 4 * c.shard_count() as u64 + 1;
        let total = (p.stream_connections + p.http_connections) as u64;
        assert_eq!(total, 5000 - RESERVE - listeners - 1000, "{p:?}");
    }
}
