//! Budgets for what a stranger can make the server hold (DESIGN.md §10):
//! one mechanism for every listener kind. A budget is a limit from the
//! config; when it is exhausted the request for more is refused, the refusal
//! is counted under a fixed label (`ternd_budget_exhausted_total{budget}`)
//! and logged at most once per [`LOG_INTERVAL`] per budget.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::logging::WarnLimiter;

/// A refusal is logged at most this often per budget.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Every budget the driver enforces. The label names the config key's idea
/// and is the `budget` label of the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// `http.max_connections`: open HTTP connections in total.
    HttpConnections,
    /// `http.max_connections_per_ip`: open HTTP connections from one source.
    HttpConnectionsPerIp,
    /// `stream.max_connections`: open TURN TCP/TLS connections in total.
    StreamConnections,
    /// `stream.max_connections_per_ip`: open TURN TCP/TLS connections from one source.
    StreamConnectionsPerIp,
}

impl Budget {
    pub const ALL: [Budget; 4] = [
        Budget::HttpConnections,
        Budget::HttpConnectionsPerIp,
        Budget::StreamConnections,
        Budget::StreamConnectionsPerIp,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Budget::HttpConnections => "http_connections",
            Budget::HttpConnectionsPerIp => "http_connections_per_ip",
            Budget::StreamConnections => "stream_connections",
            Budget::StreamConnectionsPerIp => "stream_connections_per_ip",
        }
    }
}

/// How often each budget was exhausted, shared by every listener of one
/// server (the composition root makes one and hands it out).
#[derive(Debug)]
pub struct Exhaustions {
    counts: [AtomicU64; Budget::ALL.len()],
    log: Mutex<[WarnLimiter; Budget::ALL.len()]>,
}

impl Default for Exhaustions {
    fn default() -> Self {
        Exhaustions {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            log: Mutex::new(std::array::from_fn(|_| WarnLimiter::new(LOG_INTERVAL))),
        }
    }
}

impl Exhaustions {
    /// Counts one refusal by `budget` (and logs it, rate-limited). `source`
    /// is the address that asked, for the log line only.
    pub fn exhausted(&self, budget: Budget, source: Option<IpAddr>) {
        self.counts[budget as usize].fetch_add(1, Ordering::Relaxed);
        let allowed = self.log.lock().unwrap_or_else(|e| e.into_inner())[budget as usize].allow(Instant::now());
        if let Some(held_back) = allowed {
            tracing::warn!(
                budget = budget.label(),
                source = ?source,
                refused_since_last_warning = held_back,
                "budget exhausted, refusing"
            );
        }
    }

    pub fn get(&self, budget: Budget) -> u64 {
        self.counts[budget as usize].load(Ordering::Relaxed)
    }
}

pub use proto::addr::SourceKey;

/// Open connections of one listener kind, in total and per source, each
/// against its own budget.
#[derive(Debug)]
pub struct ConnLimiter {
    total: Budget,
    per_source: Budget,
    max_total: usize,
    max_per_source: usize,
    open: AtomicUsize,
    by_source: Mutex<HashMap<SourceKey, usize>>,
    exhaustions: Arc<Exhaustions>,
}

/// One open connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    key: SourceKey,
}

impl ConnLimiter {
    pub fn new(
        (total, max_total): (Budget, usize),
        (per_source, max_per_source): (Budget, usize),
        exhaustions: Arc<Exhaustions>,
    ) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            total,
            per_source,
            max_total,
            max_per_source,
            open: AtomicUsize::new(0),
            by_source: Mutex::new(HashMap::new()),
            exhaustions,
        })
    }

    /// A slot for a connection from `ip`, or None (counted and logged) when
    /// the total or the source's budget is exhausted.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let key = SourceKey::of(ip);
        let mut by_source = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        let refused = if self.open.load(Ordering::Relaxed) >= self.max_total {
            Some(self.total)
        } else if by_source.get(&key).copied().unwrap_or(0) >= self.max_per_source {
            Some(self.per_source)
        } else {
            None
        };
        if let Some(budget) = refused {
            drop(by_source);
            self.exhaustions.exhausted(budget, Some(ip));
            return None;
        }
        *by_source.entry(key).or_insert(0) += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(ConnPermit {
            limiter: self.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let l = &self.limiter;
        let mut by_source = l.by_source.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_source.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                by_source.remove(&self.key);
            }
        }
        l.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(total: usize, per_source: usize) -> (Arc<ConnLimiter>, Arc<Exhaustions>) {
        let ex = Arc::new(Exhaustions::default());
        let l = ConnLimiter::new(
            (Budget::StreamConnections, total),
            (Budget::StreamConnectionsPerIp, per_source),
            ex.clone(),
        );
        (l, ex)
    }

    #[test]
    fn one_source_cannot_take_every_slot() {
        let (l, ex) = limiter(10, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| l.acquire(a).expect("within budget")).collect();
        assert!(l.acquire(a).is_none());
        assert_eq!(ex.get(Budget::StreamConnectionsPerIp), 1);
        // Another source is still served.
        let b = l.acquire("192.0.2.2".parse().unwrap()).expect("another source");
        assert_eq!(l.open(), 4);
        drop(held);
        drop(b);
        assert_eq!(l.open(), 0);
        assert!(l.by_source.lock().unwrap().is_empty(), "no state left for gone sources");
        assert!(l.acquire(a).is_some());
    }

    #[test]
    fn the_total_holds_across_sources() {
        let (l, ex) = limiter(2, 2);
        let _a = l.acquire("192.0.2.1".parse().unwrap()).unwrap();
        let _b = l.acquire("192.0.2.2".parse().unwrap()).unwrap();
        assert!(l.acquire("192.0.2.3".parse().unwrap()).is_none());
        assert_eq!(ex.get(Budget::StreamConnections), 1);
        assert_eq!(ex.get(Budget::StreamConnectionsPerIp), 0);
    }

    #[test]
    fn ipv6_sources_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let k = |s: &str| SourceKey::of(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.1"), k("192.0.2.1"));
        assert_ne!(k("::c000:201"), k("192.0.2.1"));
    }
}
