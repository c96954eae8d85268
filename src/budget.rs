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
    /// `http.header_timeout`: a connection closed because its first request
    /// head did not arrive in time (idle keep-alive closes are not counted).
    HttpHeaderTimeout,
    /// `http.idle_timeout`: a connection closed because it moved no byte
    /// either way for that long.
    HttpIdleTimeout,
    /// `stream.max_connections`: open TURN TCP/TLS connections in total.
    StreamConnections,
    /// `stream.max_connections_per_ip`: open TURN TCP/TLS connections from one source.
    StreamConnectionsPerIp,
    /// `stream.max_queued_bytes`: bytes waiting for one TCP/TLS client; past
    /// it what is sent to that client is dropped.
    StreamQueuedBytes,
    /// `stream.max_queued_bytes_total`: bytes waiting for every TCP/TLS
    /// client together.
    StreamQueuedBytesTotal,
    /// `stream.write_stall_timeout`: a client that read nothing of what was
    /// queued for it for that long is disconnected.
    StreamWriteStall,
    /// `stream.auth_timeout`: a connection that holds no allocation that long
    /// after it was accepted is closed.
    StreamPreAuthTime,
    /// `stream.max_connections`, for DTLS sessions (counted apart from
    /// TCP/TLS connections).
    DtlsSessions,
    /// `stream.max_connections_per_ip`, for DTLS sessions.
    DtlsSessionsPerIp,
    /// `tls.handshake_timeout`: a DTLS session whose handshake did not
    /// complete in time is dropped.
    DtlsHandshakeTime,
    /// `stream.auth_timeout`: a DTLS session that holds no allocation that
    /// long after its handshake began is closed.
    DtlsPreAuthTime,
    /// `stream.idle_timeout`: a DTLS session without an allocation from
    /// which no record decrypted for that long is closed.
    DtlsIdleTime,
}

impl Budget {
    pub const ALL: [Budget; 15] = [
        Budget::HttpConnections,
        Budget::HttpConnectionsPerIp,
        Budget::HttpHeaderTimeout,
        Budget::HttpIdleTimeout,
        Budget::StreamConnections,
        Budget::StreamConnectionsPerIp,
        Budget::StreamQueuedBytes,
        Budget::StreamQueuedBytesTotal,
        Budget::StreamWriteStall,
        Budget::StreamPreAuthTime,
        Budget::DtlsSessions,
        Budget::DtlsSessionsPerIp,
        Budget::DtlsHandshakeTime,
        Budget::DtlsPreAuthTime,
        Budget::DtlsIdleTime,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Budget::HttpConnections => "http_connections",
            Budget::HttpConnectionsPerIp => "http_connections_per_ip",
            Budget::HttpHeaderTimeout => "http_header_timeout",
            Budget::HttpIdleTimeout => "http_idle_timeout",
            Budget::StreamConnections => "stream_connections",
            Budget::StreamConnectionsPerIp => "stream_connections_per_ip",
            Budget::StreamQueuedBytes => "stream_queued_bytes",
            Budget::StreamQueuedBytesTotal => "stream_queued_bytes_total",
            Budget::StreamWriteStall => "stream_write_stall",
            Budget::StreamPreAuthTime => "stream_pre_auth_time",
            Budget::DtlsSessions => "dtls_sessions",
            Budget::DtlsSessionsPerIp => "dtls_sessions_per_ip",
            Budget::DtlsHandshakeTime => "dtls_handshake_time",
            Budget::DtlsPreAuthTime => "dtls_pre_auth_time",
            Budget::DtlsIdleTime => "dtls_idle_time",
        }
    }
}

/// What the composition root hands every listener: where refusals are
/// counted, and the connection caps in force (the configured ones, lowered
/// if they did not fit the fd limit: `fd_limit`).
#[derive(Debug, Clone)]
pub struct Budgets {
    pub exhaustions: Arc<Exhaustions>,
    pub stream_connections: usize,
    pub http_connections: usize,
    pub stream_connections_per_ip: usize,
    pub http_connections_per_ip: usize,
}

/// How often each budget was exhausted, shared by every listener of one
/// server (the composition root makes one and hands it out). Lock-free: a
/// refusal can come for every dropped datagram of a flood.
#[derive(Debug)]
pub struct Exhaustions {
    counts: [AtomicU64; Budget::ALL.len()],
    /// Per budget: when it may be logged next (ms since `epoch`)...
    next_log_ms: [AtomicU64; Budget::ALL.len()],
    /// ...and its count when it was last logged.
    logged_at: [AtomicU64; Budget::ALL.len()],
    epoch: Instant,
}

impl Default for Exhaustions {
    fn default() -> Self {
        Exhaustions {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            next_log_ms: std::array::from_fn(|_| AtomicU64::new(0)),
            logged_at: std::array::from_fn(|_| AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }
}

impl Exhaustions {
    /// Counts one refusal by `budget` (and logs it, rate-limited). `source`
    /// is the address that asked, for the log line only.
    pub fn exhausted(&self, budget: Budget, source: Option<IpAddr>) {
        let count = self.counts[budget as usize].fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Some(held_back) = self.log_due(budget, count, now_ms) {
            tracing::warn!(
                budget = budget.label(),
                source = ?source,
                refused_since_last_warning = held_back,
                "budget exhausted, refusing"
            );
        }
    }

    /// Whether the refusal numbered `count` of `budget` is logged at `now_ms`:
    /// Some(refusals not logged since the last one) at most once per
    /// [`LOG_INTERVAL`] (one caller wins the interval).
    fn log_due(&self, budget: Budget, count: u64, now_ms: u64) -> Option<u64> {
        let i = budget as usize;
        let next = self.next_log_ms[i].load(Ordering::Relaxed);
        let until = now_ms.saturating_add(LOG_INTERVAL.as_millis() as u64);
        if now_ms < next
            || self.next_log_ms[i]
                .compare_exchange(next, until, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        let last = self.logged_at[i].swap(count, Ordering::Relaxed);
        Some(count.saturating_sub(last + 1))
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

/// Bytes held on behalf of many holders on any thread (queued towards slow
/// readers, say) against one limit: a holder reserves before it holds and
/// releases when it lets go. One atomic add per reservation, no lock.
#[derive(Debug)]
pub struct SharedBytes {
    budget: Budget,
    max: usize,
    used: AtomicUsize,
    exhaustions: Arc<Exhaustions>,
}

impl SharedBytes {
    pub fn new(budget: Budget, max: usize, exhaustions: Arc<Exhaustions>) -> Arc<SharedBytes> {
        Arc::new(SharedBytes {
            budget,
            max,
            used: AtomicUsize::new(0),
            exhaustions,
        })
    }

    /// Reserves `n` bytes, or refuses (counted and logged) when that would
    /// exceed the limit.
    pub fn try_reserve(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) <= self.max {
            return true;
        }
        self.used.fetch_sub(n, Ordering::Relaxed);
        self.exhaustions.exhausted(self.budget, None);
        false
    }

    /// Reserves `n` bytes even past the limit (for the holder's small
    /// allowance the caller bounds itself).
    pub fn reserve(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    /// Gives back `n` reserved bytes.
    pub fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
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
    fn a_budget_is_logged_at_most_once_per_interval_with_what_was_held_back() {
        let ex = Exhaustions::default();
        let b = Budget::StreamQueuedBytes;
        assert_eq!(ex.log_due(b, 1, 0), Some(0));
        assert_eq!(ex.log_due(b, 2, 1_000), None);
        assert_eq!(ex.log_due(b, 3, 9_999), None);
        assert_eq!(ex.log_due(b, 4, 10_000), Some(2));
        assert_eq!(ex.log_due(b, 5, 10_001), None);
        // Each budget has its own interval.
        assert_eq!(ex.log_due(Budget::StreamWriteStall, 1, 10_001), Some(0));
    }

    #[test]
    fn shared_bytes_refuse_past_the_limit_and_come_back_on_release() {
        let ex = Arc::new(Exhaustions::default());
        let b = SharedBytes::new(Budget::StreamQueuedBytesTotal, 100, ex.clone());
        assert!(b.try_reserve(60));
        assert!(b.try_reserve(40));
        assert!(!b.try_reserve(1), "full");
        assert_eq!(b.used(), 100, "a refusal holds nothing");
        assert_eq!(ex.get(Budget::StreamQueuedBytesTotal), 1);
        b.release(60);
        assert!(b.try_reserve(50));
        assert_eq!(b.used(), 90);
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
