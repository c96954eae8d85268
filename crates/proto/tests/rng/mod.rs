//! xorshift64*: the tiny, seeded, dependency-free generator of the property
//! tests (`random_input.rs`, `turn_invariants.rs`), so a failure reproduces
//! from its seed.

#![allow(dead_code)] // each test uses part of it

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n`; `n` must not be 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// What the old core generator (SplitMix64) would output after `seen`: its
/// output function is a bijection, so one output gave its whole state away.
/// Tests use it to show the core's outputs no longer predict the next.
pub fn splitmix_next_after(seen: u64) -> u64 {
    let state = splitmix_unmix(seen);
    splitmix_mix(state.wrapping_add(0x9E37_79B9_7F4A_7C15))
}

pub fn splitmix_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn splitmix_unmix(mut z: u64) -> u64 {
    fn unshift(y: u64, s: u32) -> u64 {
        let mut z = y;
        for _ in 0..64 / s + 1 {
            z = y ^ (z >> s);
        }
        z
    }
    // The inverse of an odd `c` modulo 2^64, by Newton's iteration.
    fn inverse(c: u64) -> u64 {
        let mut x = c;
        for _ in 0..6 {
            x = x.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(x)));
        }
        x
    }
    z = unshift(z, 31);
    z = unshift(z.wrapping_mul(inverse(0x94D0_49BB_1331_11EB)), 27);
    unshift(z.wrapping_mul(inverse(0xBF58_476D_1CE4_E5B9)), 30)
}
