//! The budget for requests that do not authenticate (DESIGN.md §10: every
//! resource a stranger can make the server spend is a budget): per source
//! prefix (IPv4 /32, IPv6 /64) and in total, reset every second. Charged
//! before any nonce or MAC work, so a flood costs a hash and a counter.

use std::hash::Hasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::addr::SourceKey;

/// Fixed memory (hashed buckets), so spoofed floods cannot grow it. The
/// bucket of a source is a keyed hash (SipHash, key from the core's random
/// generator) of its prefix: an attacker who cannot learn the key cannot
/// pick a source that shares a victim's bucket, so flooding silences only
/// the flooder (and, by chance, 1 in 4096 others), until the total runs out.
#[derive(Debug)]
pub struct SourceBudget {
    per_source: u32,
    total: u32,
    key: (u64, u64),
    window: Option<Instant>,
    used: u32,
    counts: Vec<u32>,
}

const BUDGET_BUCKETS: usize = 4096;

impl SourceBudget {
    /// `per_source` and `total` requests per second; 0 = no limit.
    pub fn new(per_source: u32, total: u32, key: (u64, u64)) -> Self {
        let mut b = SourceBudget {
            per_source: 0,
            total: 0,
            key,
            window: None,
            used: 0,
            counts: Vec::new(),
        };
        b.set_limits(per_source, total);
        b
    }

    /// New limits (config reload); the hash key stays.
    pub fn set_limits(&mut self, per_source: u32, total: u32) {
        self.per_source = per_source;
        self.total = total;
        self.window = None;
        self.used = 0;
        self.counts = if per_source == 0 {
            vec![]
        } else {
            vec![0; BUDGET_BUCKETS]
        };
    }

    fn bucket(&self, ip: IpAddr) -> usize {
        // SipHash-2-4 is deprecated in std only in favour of hashers that
        // do not take a key; a keyed PRF is what is needed here.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(self.key.0, self.key.1);
        h.write_u128(SourceKey::of(ip).value());
        (h.finish() % BUDGET_BUCKETS as u64) as usize
    }

    /// Counts one unauthenticated request from `ip`; false when over budget
    /// (the source's or the total).
    pub fn charge(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.per_source == 0 && self.total == 0 {
            return true;
        }
        match self.window {
            Some(w) if now.saturating_duration_since(w) < Duration::from_secs(1) => {}
            _ => {
                self.window = Some(now);
                self.used = 0;
                self.counts.fill(0);
            }
        }
        if self.per_source != 0 {
            let i = self.bucket(ip);
            self.counts[i] = self.counts[i].saturating_add(1);
            if self.counts[i] > self.per_source {
                return false;
            }
        }
        if self.total != 0 {
            if self.used >= self.total {
                return false;
            }
            self.used += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_prefix_then_total() {
        let t = crate::clock::test_start();
        let mut b = SourceBudget::new(2, 5, (1, 2));
        assert!(b.charge(ip("192.0.2.1"), t));
        assert!(b.charge(ip("192.0.2.1"), t));
        assert!(!b.charge(ip("192.0.2.1"), t), "source over");
        assert!(!b.charge(ip("::ffff:192.0.2.1"), t), "same source, mapped");
        assert!(b.charge(ip("2001:db8:0:1::1"), t));
        assert!(b.charge(ip("2001:db8:0:1::2"), t));
        assert!(!b.charge(ip("2001:db8:0:1:ffff::"), t), "same /64");
        assert!(b.charge(ip("2001:db8:0:2::1"), t));
        assert!(!b.charge(ip("2001:db8:0:3::1"), t), "total over");
        let t = t + Duration::from_secs(1);
        assert!(b.charge(ip("192.0.2.1"), t), "a new second");
    }

    /// With the old unkeyed hash (`u32(ip) * 0x9E3779B97F4A7C15 >> 52`)
    /// these addresses all shared 198.51.100.5's bucket, so flooding from
    /// them silenced it; with a secret key they land anywhere.
    #[test]
    fn addresses_aimed_at_a_victims_bucket_miss_it() {
        let victim = ip("198.51.100.5");
        let aimed = [
            "198.51.4.105",
            "198.51.14.129",
            "198.51.30.214",
            "198.51.40.238",
            "198.51.57.67",
        ];
        for key in [(1, 2), (3, 4), (5, 6)] {
            let b = SourceBudget::new(10, 0, key);
            for a in aimed {
                assert_ne!(b.bucket(ip(a)), b.bucket(victim), "{a} with key {key:?}");
            }
        }
    }
}
