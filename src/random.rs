//! Randomness from the operating system's CSPRNG, for secrets, keys and
//! seeds. A failing generator is an error, never a predictable fallback.

use ring::rand::{SecureRandom, SystemRandom};

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(b)
}
