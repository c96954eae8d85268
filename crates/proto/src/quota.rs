//! Allocation quotas shared by every shard (DESIGN.md §3: touched on
//! Allocate and on deletion only, never per packet): in total, per user, and
//! per source (IPv4 /32, IPv6 /64) so one address cannot take every relay port.
//!
//! In a cluster the per-user quota counts the other nodes' allocations too:
//! the driver hands them in with [`Quotas::set_remote_users`] (a cache it
//! keeps fresh from Redis), so an Allocate never waits for anything.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::addr::SourceKey;
use crate::auth::quota_user;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaError {
    /// RFC 8656 486 Allocation Quota Reached: the user's quota.
    User,
    /// 486 as well: the source address's quota.
    Source,
    /// RFC 8656 508 Insufficient Capacity.
    Total,
}

/// The limits a [`Quotas`] enforces; `usize::MAX` means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub total: usize,
    pub per_user: usize,
    pub per_source: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    users: HashMap<String, usize>,
    sources: HashMap<SourceKey, usize>,
    /// Allocations per user on the other nodes of a cluster, as last heard.
    remote_users: HashMap<String, usize>,
}

#[derive(Debug, Default)]
pub struct Quotas {
    max_total: AtomicUsize,
    max_per_user: AtomicUsize,
    max_per_source: AtomicUsize,
    state: Mutex<Counts>,
}

/// Takes one from `key`'s count, forgetting keys that reach zero.
fn drop_one<K: Borrow<Q> + Hash + Eq, Q: Hash + Eq + ?Sized>(map: &mut HashMap<K, usize>, key: &Q) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Quotas {
    /// Totals and per-user limits; no per-source limit.
    pub fn new(max_total: usize, max_per_user: usize) -> Self {
        Quotas::with_limits(QuotaLimits {
            total: max_total,
            per_user: max_per_user,
            per_source: usize::MAX,
        })
    }

    pub fn with_limits(limits: QuotaLimits) -> Self {
        let q = Quotas::default();
        q.set_limits(limits);
        q
    }

    /// Charges one allocation to `username` (to the user part of a REST name,
    /// see [`quota_user`]) and to the source prefix of `source`.
    pub fn try_acquire(&self, username: &str, source: IpAddr) -> Result<(), QuotaError> {
        let user = quota_user(username);
        let source = SourceKey::of(source);
        // A poisoned lock only means another shard panicked mid-update of
        // the counters; the counts are still usable.
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *g;
        let held = c.users.get(user).copied().unwrap_or(0) + c.remote_users.get(user).copied().unwrap_or(0);
        if held >= self.max_per_user.load(Ordering::Relaxed) {
            return Err(QuotaError::User);
        }
        if c.sources.get(&source).copied().unwrap_or(0) >= self.max_per_source.load(Ordering::Relaxed) {
            return Err(QuotaError::Source);
        }
        if c.total >= self.max_total.load(Ordering::Relaxed) {
            return Err(QuotaError::Total);
        }
        c.total += 1;
        match c.users.get_mut(user) {
            Some(n) => *n += 1,
            None => {
                c.users.insert(user.to_string(), 1);
            }
        }
        *c.sources.entry(source).or_insert(0) += 1;
        Ok(())
    }

    /// New limits (config reload); allocations over them are not cut off.
    pub fn set_limits(&self, limits: QuotaLimits) {
        self.max_total.store(limits.total, Ordering::Relaxed);
        self.max_per_user.store(limits.per_user, Ordering::Relaxed);
        self.max_per_source.store(limits.per_source, Ordering::Relaxed);
    }

    /// Gives back what [`Quotas::try_acquire`] took for `username` and `source`.
    pub fn release(&self, username: &str, source: IpAddr) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *g;
        c.total = c.total.saturating_sub(1);
        drop_one(&mut c.users, quota_user(username));
        drop_one(&mut c.sources, &SourceKey::of(source));
    }

    /// The other nodes' allocations per user (quota user names, see
    /// [`quota_user`]); empty when alone or cut off from the cluster, so the
    /// quota falls back to this node's own counts.
    pub fn set_remote_users(&self, remote: HashMap<String, usize>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).remote_users = remote;
    }

    /// This node's allocations per user (quota user names), for the cluster.
    pub fn local_users(&self) -> HashMap<String, usize> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).users.clone()
    }

    pub fn total(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn fresh_rest_names_of_one_user_share_its_quota() {
        let q = Quotas::new(10, 2);
        let a = ip("192.0.2.1");
        assert_eq!(q.try_acquire("1700000000:alice", a), Ok(()));
        assert_eq!(q.try_acquire("1700000001:alice", a), Ok(()));
        assert_eq!(q.try_acquire("1700000002:alice", a), Err(QuotaError::User));
        assert_eq!(q.try_acquire("1700000002:bob", a), Ok(()));
        q.release("1700000000:alice", a);
        assert_eq!(q.try_acquire("1700000003:alice", a), Ok(()));
    }

    #[test]
    fn other_nodes_allocations_count_against_the_user_quota() {
        let q = Quotas::new(10, 3);
        let a = ip("192.0.2.1");
        q.set_remote_users(HashMap::from([("alice".to_string(), 2)]));
        assert_eq!(q.try_acquire("1700000000:alice", a), Ok(()));
        assert_eq!(q.try_acquire("1700000001:alice", a), Err(QuotaError::User));
        assert_eq!(q.local_users(), HashMap::from([("alice".to_string(), 1)]));
        q.set_remote_users(HashMap::new());
        assert_eq!(
            q.try_acquire("1700000002:alice", a),
            Ok(()),
            "alone again: local counts"
        );
    }

    #[test]
    fn one_source_prefix_has_its_own_cap() {
        let q = Quotas::with_limits(QuotaLimits {
            total: 100,
            per_user: 100,
            per_source: 2,
        });
        for (i, (first, second, other)) in [
            ("192.0.2.1", "192.0.2.1", "192.0.2.2"),
            ("2001:db8:0:1::1", "2001:db8:0:1::ffff", "2001:db8:0:2::1"),
        ]
        .into_iter()
        .enumerate()
        {
            let user = format!("u{i}");
            assert_eq!(q.try_acquire(&user, ip(first)), Ok(()));
            assert_eq!(q.try_acquire(&user, ip(second)), Ok(()));
            assert_eq!(
                q.try_acquire(&user, ip(first)),
                Err(QuotaError::Source),
                "same /32 or /64"
            );
            assert_eq!(q.try_acquire(&user, ip(other)), Ok(()), "next /32 or /64");
            q.release(&user, ip(second));
            assert_eq!(q.try_acquire(&user, ip(first)), Ok(()));
        }
        assert_eq!(
            q.try_acquire("u9", ip("::ffff:192.0.2.1")),
            Err(QuotaError::Source),
            "mapped form"
        );
    }
}
