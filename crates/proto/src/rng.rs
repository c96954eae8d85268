//! The core's random numbers: relay ports, RESERVATION-TOKENs, Data
//! indication transaction ids and the budget's hash key. A CSPRNG
//! (ChaCha12), because each output goes on the wire and must not reveal the
//! next (RFC 8656 §21.1.7 and RFC 6056 want relay ports hard to guess). The
//! core never reads entropy itself: the driver passes a 32-byte seed from
//! the OS, and tests pass a fixed one and get the same run every time.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

#[derive(Debug, Clone)]
pub struct Rng(ChaCha12Rng);

impl Rng {
    pub fn new(seed: [u8; 32]) -> Self {
        Rng(ChaCha12Rng::from_seed(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A fresh transaction id for an indication the server sends.
    pub fn tid(&mut self) -> [u8; 12] {
        let r = self.next_u64().to_be_bytes();
        let s = self.next_u64().to_be_bytes();
        [r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], s[0], s[1], s[2], s[3]]
    }

    /// Uniform-enough value in `0..n` (n > 0): the bias of `% n` is below
    /// n / 2^64, far under anything an observer could measure.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A 32-byte seed from a number, for tests and fuzz targets that name their
/// runs by a `u64`.
pub fn seed_from_u64(n: u64) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_one_sequence() {
        let run = |seed| {
            let mut r = Rng::new(seed);
            [r.next_u64(), r.next_u64(), r.below(1000)]
        };
        assert_eq!(run(seed_from_u64(1)), run(seed_from_u64(1)));
        assert_ne!(run(seed_from_u64(1)), run(seed_from_u64(2)));
    }
}
