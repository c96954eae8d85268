//! Relay port selection. Each shard draws from its own block of the
//! configured range, so shards never race for a port; a port another
//! process holds just fails to bind and another is tried.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::rng::Rng;

#[derive(Debug)]
pub struct Ports {
    lo: u16,
    hi: u16,
    in_use: HashSet<(IpAddr, u16)>,
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
            in_use: HashSet::new(),
        }
    }

    /// A free port on `ip` (even if `even`), chosen at random.
    pub fn pick(&mut self, ip: IpAddr, even: bool, rng: &mut Rng) -> Option<u16> {
        let span = (self.hi - self.lo) as u64 + 1;
        for _ in 0..64 {
            let mut p = self.lo as u64 + rng.below(span);
            if even && p % 2 == 1 {
                p = if p > self.lo as u64 { p - 1 } else { p + 1 };
                if p > self.hi as u64 {
                    continue;
                }
            }
            let p = p as u16;
            if !self.in_use.contains(&(ip, p)) {
                return Some(p);
            }
        }
        None
    }

    /// True if `port` on `ip` is in this shard's block and free.
    pub fn pick_specific(&self, ip: IpAddr, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port) && !self.in_use.contains(&(ip, port))
    }

    pub fn mark(&mut self, ip: IpAddr, port: u16) {
        self.in_use.insert((ip, port));
    }

    pub fn release(&mut self, ip: IpAddr, port: u16) {
        self.in_use.remove(&(ip, port));
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
        let mut rng = Rng::new(1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            let port = p.pick(ip, true, &mut rng).unwrap();
            assert_eq!(port % 2, 0);
            p.mark(ip, port);
        }
        assert_eq!(p.pick(ip, true, &mut rng), None, "all five even ports are taken");
    }
}
