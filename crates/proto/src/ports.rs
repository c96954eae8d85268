//! Relay port selection. Each shard draws from its own block of the
//! configured range, so shards never race for a port; a port another
//! process holds just fails to bind and another is tried.
//!
//! The ports in use are a bitmap per relay address (2 KiB for a whole
//! 16 384-port range), searched from a random starting point: a pick is
//! random while the block is mostly free (RFC 8656 §21.1.7 and RFC 6056 want
//! relay ports hard to guess) and still finds the last free port of a
//! full range in at most one pass over the bitmap, where random probing
//! alone would give up long before the range is full.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::rng::Rng;

#[derive(Debug)]
pub struct Ports {
    lo: u16,
    hi: u16,
    /// Bit `o` of a map set = port `lo + o` in use on that address.
    in_use: HashMap<IpAddr, Vec<u64>>,
}

impl Ports {
    /// Block `index` of `count` equal blocks of `min..=max`.
    pub fn new(min: u16, max: u16, index: usize, count: usize) -> Self {
        let span = (max as usize - min as usize + 1).max(1);
        let count = count.max(1);
        let block = (span / count).max(1);
        let lo = min as usize + (index.min(count - 1) * block).min(span - 1);
        let hi = if index + 1 >= count {
            max as usize
        } else {
            (lo + block - 1).min(max as usize)
        };
        Ports {
            lo: lo as u16,
            hi: hi as u16,
            in_use: HashMap::new(),
        }
    }

    fn span(&self) -> usize {
        (self.hi - self.lo) as usize + 1
    }

    /// Ports of this block not held by an allocation on `ip` (another
    /// process may still hold some of them).
    pub fn free(&self, ip: IpAddr) -> usize {
        let used: u32 = self
            .in_use
            .get(&ip)
            .map_or(0, |m| m.iter().map(|w| w.count_ones()).sum());
        self.span() - used as usize
    }

    /// A free port on `ip`, chosen at random: even if `even`, and with the
    /// port above it free too if `pair` (EVEN-PORT with the R bit: "a pair of
    /// port numbers N and N+1", RFC 8656 §7.2).
    pub fn pick(&mut self, ip: IpAddr, even: bool, pair: bool, rng: &mut Rng) -> Option<u16> {
        let span = self.span();
        let words = span.div_ceil(64);
        let map = self.in_use.get(&ip);
        let start = rng.below(span as u64) as usize;
        // Offset o is port lo + o: even ports are the offsets of lo's parity.
        let parity = match (even, self.lo % 2 == 0) {
            (false, _) => !0u64,
            (true, true) => 0x5555_5555_5555_5555,
            (true, false) => 0xAAAA_AAAA_AAAA_AAAA,
        };
        // One pass from the start word round to it again; the start word is
        // looked at twice: first above the start bit, last below it.
        for k in 0..=words {
            let w = (start / 64 + k) % words;
            let valid = if (w + 1) * 64 <= span {
                !0u64
            } else {
                (1u64 << (span - w * 64)) - 1
            };
            let used = map.map_or(0, |m| m[w]);
            let mut free = !used & valid;
            if pair {
                // Both o and o + 1 free (a pair never straddles two words).
                free &= free >> 1;
            }
            free &= parity;
            if k == 0 {
                free &= !0u64 << (start % 64);
            } else if k == words {
                free &= !(!0u64 << (start % 64));
            }
            if free != 0 {
                return Some(self.lo + (w * 64 + free.trailing_zeros() as usize) as u16);
            }
        }
        None
    }

    /// Marks `port` on `ip` in use (ports outside the block are not tracked:
    /// they are never picked here).
    pub fn mark(&mut self, ip: IpAddr, port: u16) {
        if !(self.lo..=self.hi).contains(&port) {
            return;
        }
        let words = self.span().div_ceil(64);
        let o = (port - self.lo) as usize;
        self.in_use.entry(ip).or_insert_with(|| vec![0; words])[o / 64] |= 1 << (o % 64);
    }

    pub fn release(&mut self, ip: IpAddr, port: u16) {
        if !(self.lo..=self.hi).contains(&port) {
            return;
        }
        let o = (port - self.lo) as usize;
        if let Some(m) = self.in_use.get_mut(&ip) {
            m[o / 64] &= !(1 << (o % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_partition_the_range() {
        let a = Ports::new(49152, 65535, 0, 2);
        let b = Ports::new(49152, 65535, 1, 2);
        assert_eq!((a.lo, b.hi), (49152, 65535));
        assert_eq!(a.hi + 1, b.lo);
    }

    #[test]
    fn picks_free_even_ports() {
        let mut p = Ports::new(50000, 50009, 0, 1);
        let mut rng = Rng::new(crate::rng::seed_from_u64(1));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            let port = p.pick(ip, true, false, &mut rng).unwrap();
            assert_eq!(port % 2, 0);
            p.mark(ip, port);
        }
        assert_eq!(p.pick(ip, true, false, &mut rng), None, "all five even ports are taken");
        assert_eq!(p.free(ip), 5, "the five odd ones are free");
        assert_eq!(p.free("192.0.2.2".parse().unwrap()), 10, "another address is untouched");
        p.release(ip, 50000);
        assert_eq!(p.free(ip), 6);
    }

    #[test]
    fn finds_the_last_free_port_of_a_whole_range() {
        // 16 384 ports, all taken but one: random probing would miss it.
        let mut p = Ports::new(49152, 65535, 0, 1);
        let mut rng = Rng::new(crate::rng::seed_from_u64(7));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for port in 49152..=65535u16 {
            p.mark(ip, port);
        }
        assert_eq!(p.pick(ip, false, false, &mut rng), None);
        p.release(ip, 60001);
        for _ in 0..100 {
            assert_eq!(p.pick(ip, false, false, &mut rng), Some(60001));
        }
        assert_eq!(p.pick(ip, true, false, &mut rng), None, "60001 is odd");
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(p.pick(other, false, false, &mut rng).is_some(), "per address");
    }

    #[test]
    fn picks_pairs_for_the_r_bit_and_never_a_used_port() {
        let mut p = Ports::new(1000, 1199, 0, 1);
        let mut rng = Rng::new(crate::rng::seed_from_u64(3));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut used = std::collections::HashSet::new();
        // Take ports in pairs until none is left; every pick is even, free,
        // and its upper neighbour free.
        while let Some(port) = p.pick(ip, true, true, &mut rng) {
            assert_eq!(port % 2, 0);
            assert!(
                used.insert(port) && used.insert(port + 1),
                "{port} or {} was in use",
                port + 1
            );
            assert!((1000..=1199).contains(&port) && port < 1199);
            p.mark(ip, port);
            p.mark(ip, port + 1);
        }
        assert_eq!(used.len(), 200, "every pair of the block was found");
        // Random single picks after releasing a few: only released ports come back.
        for port in [1003, 1100, 1199] {
            p.release(ip, port);
        }
        for _ in 0..50 {
            let port = p.pick(ip, false, false, &mut rng).unwrap();
            assert!([1003, 1100, 1199].contains(&port));
        }
    }
}
