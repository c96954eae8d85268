//! Stateless nonces (RFC 8489 §9.2, DESIGN.md §2): the nonce carries its own
//! expiry and a MAC over that expiry and the client's IP, so the server keeps
//! no per-source state before a client authenticates.

use std::net::IpAddr;

use ring::hmac;

use crate::wire::ct_eq;

/// Nonce text length: 8 hex digits of expiry + 16 hex digits of MAC.
pub const NONCE_LEN: usize = 24;

/// The key nonces are MAC'd with; shared by every shard.
#[derive(Clone)]
pub struct NonceKey(hmac::Key);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

/// What a received nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Expired, forged, or issued to another address: the client gets 438 and a fresh one.
    Stale,
}

fn hex(v: &[u8], out: &mut [u8]) {
    const H: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in v.iter().enumerate() {
        out[2 * i] = H[(b >> 4) as usize];
        out[2 * i + 1] = H[(b & 15) as usize];
    }
}

impl NonceKey {
    pub fn new(secret: &[u8]) -> Self {
        NonceKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    fn mac(&self, expiry: u32, ip: IpAddr) -> [u8; 8] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(&expiry.to_be_bytes());
        match ip {
            IpAddr::V4(v4) => ctx.update(&v4.octets()),
            IpAddr::V6(v6) => ctx.update(&v6.octets()),
        }
        let tag = ctx.sign();
        let mut m = [0u8; 8];
        m.copy_from_slice(&tag.as_ref()[..8]);
        m
    }

    /// A nonce for `ip` valid until `expiry_unix`.
    pub fn issue(&self, expiry_unix: u64, ip: IpAddr) -> [u8; NONCE_LEN] {
        let expiry = expiry_unix.min(u32::MAX as u64) as u32;
        let mut out = [0u8; NONCE_LEN];
        hex(&expiry.to_be_bytes(), &mut out[..8]);
        hex(&self.mac(expiry, ip), &mut out[8..]);
        out
    }

    pub fn check(&self, nonce: &[u8], ip: IpAddr, unix_now: u64) -> NonceCheck {
        if nonce.len() != NONCE_LEN {
            return NonceCheck::Stale;
        }
        let Some(expiry) = std::str::from_utf8(&nonce[..8])
            .ok()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
        else {
            return NonceCheck::Stale;
        };
        let mut want = [0u8; 16];
        hex(&self.mac(expiry, ip), &mut want);
        if !ct_eq(&want, &nonce[8..]) || (expiry as u64) <= unix_now {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_check() {
        let k = NonceKey::new(b"k");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let n = k.issue(1000, ip);
        assert_eq!(k.check(&n, ip, 999), NonceCheck::Valid);
        assert_eq!(k.check(&n, ip, 1000), NonceCheck::Stale, "expired");
        assert_eq!(
            k.check(&n, "192.0.2.2".parse().unwrap(), 999),
            NonceCheck::Stale,
            "other client"
        );
        assert_eq!(
            NonceKey::new(b"other").check(&n, ip, 999),
            NonceCheck::Stale,
            "other key"
        );
        let mut forged = n;
        forged[3] = b'f';
        assert_eq!(k.check(&forged, ip, 999), NonceCheck::Stale, "expiry tampered");
        assert_eq!(k.check(b"short", ip, 0), NonceCheck::Stale);
    }
}
