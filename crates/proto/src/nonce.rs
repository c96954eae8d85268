//! Stateless nonces (RFC 8489 §9.2, DESIGN.md §2): the nonce carries its own
//! expiry and a MAC over that expiry and the client's IP, so the server keeps
//! no per-source state before a client authenticates.
//!
//! Short, because it rides in every 401 (DESIGN.md §10): 9 bytes, base64 in
//! 12 characters (valid STUN quoted text, no padding). One byte is the low
//! byte of the expiry in minutes; the other 8 are a 64-bit HMAC-SHA256 tag
//! over the full expiry and the client IP. The checker rebuilds the full
//! expiry as the one still-valid minute with that low byte, which is why a
//! nonce lives at most [`MAX_NONCE_LIFETIME`].
//!
//! A server that offers more than RFC 5389 (SHA-256, USERHASH) puts the
//! RFC 8489 §9.2 nonce cookie in front: "obMatJos2" and its security
//! feature bits, which the MAC covers too, so a man in the middle who edits
//! the bits (to hide SHA-256) turns the nonce stale.

use std::net::IpAddr;
use std::time::Duration;

use ring::hmac;

use crate::base64::ALPHABET;
use crate::password_algorithm::{cookie, COOKIE_LEN};
use crate::wire::ct_eq;

/// Nonce text length: base64 of 1 byte of expiry and 8 bytes of MAC.
pub const NONCE_LEN: usize = 12;
/// Expiries are counted in minutes.
const TICK_SECS: u64 = 60;
/// The longest lifetime a 1-byte expiry can express: a nonce must expire
/// before its low byte comes round again.
pub const MAX_NONCE_LIFETIME: Duration = Duration::from_secs(255 * TICK_SECS);

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

impl NonceKey {
    pub fn new(secret: &[u8]) -> Self {
        NonceKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The nonce for `ip` that expires at the start of minute `tick`,
    /// without its cookie; the MAC covers `features` when there are any.
    fn encode(&self, tick: u64, ip: IpAddr, features: u32) -> [u8; NONCE_LEN] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(&tick.to_be_bytes());
        if features != 0 {
            ctx.update(&features.to_be_bytes()[1..]);
        }
        match ip {
            IpAddr::V4(v4) => ctx.update(&v4.octets()),
            IpAddr::V6(v6) => ctx.update(&v6.octets()),
        }
        let tag = ctx.sign();
        let mut raw = [0u8; 9];
        raw[0] = tick as u8;
        raw[1..].copy_from_slice(&tag.as_ref()[..8]);
        let mut out = [0u8; NONCE_LEN];
        for (chunk, text) in raw.chunks(3).zip(out.chunks_mut(4)) {
            let v = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
            for (i, c) in text.iter_mut().enumerate() {
                *c = ALPHABET[(v >> (18 - 6 * i) & 63) as usize];
            }
        }
        out
    }

    /// A nonce for `ip` valid until `expiry_unix` (rounded up to a whole
    /// minute), at most [`MAX_NONCE_LIFETIME`] after `unix_now`.
    pub fn issue(&self, unix_now: u64, expiry_unix: u64, ip: IpAddr) -> [u8; NONCE_LEN] {
        let expiry = expiry_unix.min(unix_now + MAX_NONCE_LIFETIME.as_secs());
        self.encode(expiry.div_ceil(TICK_SECS), ip, 0)
    }

    /// [`NonceKey::issue`] announcing the security `features` (RFC 8489
    /// §9.2): with the nonce cookie in front when they are not 0.
    pub fn issue_with(&self, unix_now: u64, expiry_unix: u64, ip: IpAddr, features: u32) -> Nonce {
        let expiry = expiry_unix.min(unix_now + MAX_NONCE_LIFETIME.as_secs());
        let body = self.encode(expiry.div_ceil(TICK_SECS), ip, features);
        let mut n = Nonce {
            bytes: [0; COOKIE_LEN + NONCE_LEN],
            len: 0,
        };
        if features != 0 {
            n.bytes[..COOKIE_LEN].copy_from_slice(&cookie(features));
            n.len = COOKIE_LEN;
        }
        n.bytes[n.len..n.len + NONCE_LEN].copy_from_slice(&body);
        n.len += NONCE_LEN;
        n
    }

    /// [`NonceKey::check`] for a nonce issued with `features`: the cookie
    /// must announce exactly those, or the nonce is stale.
    pub fn check_with(&self, nonce: &[u8], ip: IpAddr, unix_now: u64, features: u32) -> NonceCheck {
        if features == 0 {
            return self.check_body(nonce, ip, unix_now, 0);
        }
        match nonce.split_at_checked(COOKIE_LEN) {
            Some((c, body)) if c == cookie(features) => self.check_body(body, ip, unix_now, features),
            _ => NonceCheck::Stale,
        }
    }

    pub fn check(&self, nonce: &[u8], ip: IpAddr, unix_now: u64) -> NonceCheck {
        self.check_body(nonce, ip, unix_now, 0)
    }

    fn check_body(&self, nonce: &[u8], ip: IpAddr, unix_now: u64, features: u32) -> NonceCheck {
        let sextet = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|i| i as u64);
        let (Some(hi), Some(lo)) = (
            nonce.first().copied().and_then(sextet),
            nonce.get(1).copied().and_then(sextet),
        ) else {
            return NonceCheck::Stale;
        };
        // A nonce is valid while unix_now < tick * 60, so the only tick it
        // can still have is the one in (now, now + 256] with its low byte.
        let first = unix_now / TICK_SECS + 1;
        let low = hi << 2 | lo >> 4;
        let tick = first + (low.wrapping_sub(first) & 0xFF);
        if nonce.len() != NONCE_LEN || !ct_eq(&self.encode(tick, ip, features), nonce) {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }
}

/// A nonce as issued: the cookie, if any, and the MAC'd body.
#[derive(Debug, Clone, Copy)]
pub struct Nonce {
    bytes: [u8; COOKIE_LEN + NONCE_LEN],
    len: usize,
}

impl Nonce {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_and_its_features_are_under_the_mac() {
        let k = NonceKey::new(b"k");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let n = k.issue_with(0, 600, ip, 3);
        assert!(n.as_bytes().starts_with(b"obMatJos2AAAD"));
        assert_eq!(n.as_bytes().len(), COOKIE_LEN + NONCE_LEN);
        assert_eq!(k.check_with(n.as_bytes(), ip, 0, 3), NonceCheck::Valid);
        // Bid-down: the same MAC under edited bits, or with the cookie cut off.
        let mut edited = n.as_bytes().to_vec();
        edited[12] = b'B';
        assert_eq!(k.check_with(&edited, ip, 0, 2), NonceCheck::Stale);
        assert_eq!(k.check_with(&n.as_bytes()[COOKIE_LEN..], ip, 0, 0), NonceCheck::Stale);
        assert_eq!(k.check_with(&n.as_bytes()[COOKIE_LEN..], ip, 0, 3), NonceCheck::Stale);
        // The server changed its offer: old nonces go stale, new ones work.
        assert_eq!(k.check_with(n.as_bytes(), ip, 0, 1), NonceCheck::Stale);
        let plain = k.issue_with(0, 600, ip, 0);
        assert_eq!(plain.as_bytes(), k.issue(0, 600, ip));
        assert_eq!(k.check_with(plain.as_bytes(), ip, 0, 0), NonceCheck::Valid);
        assert_eq!(k.check_with(plain.as_bytes(), ip, 0, 3), NonceCheck::Stale);
    }

    #[test]
    fn issue_and_check() {
        let k = NonceKey::new(b"k");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let n = k.issue(0, 1020, ip);
        assert!(n.iter().all(|c| c.is_ascii_graphic() && *c != b'"' && *c != b'\\'));
        assert_eq!(k.check(&n, ip, 0), NonceCheck::Valid);
        assert_eq!(k.check(&n, ip, 1019), NonceCheck::Valid);
        assert_eq!(k.check(&n, ip, 1020), NonceCheck::Stale, "expired");
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
        for i in 0..NONCE_LEN {
            let mut forged = n;
            forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(k.check(&forged, ip, 999), NonceCheck::Stale, "byte {i} tampered");
        }
        assert_eq!(k.check(b"short", ip, 0), NonceCheck::Stale);
        assert_eq!(k.check(b"", ip, 0), NonceCheck::Stale);
    }

    #[test]
    fn an_expired_nonce_stays_expired_when_its_low_byte_comes_round() {
        let k = NonceKey::new(b"k");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let n = k.issue(0, 600, ip);
        for minutes in [10, 11, 255, 256, 257, 266, 512, 100_000] {
            assert_eq!(k.check(&n, ip, minutes * 60), NonceCheck::Stale, "{minutes} min");
        }
    }

    #[test]
    fn lifetimes_are_capped_so_the_expiry_byte_is_unambiguous() {
        let k = NonceKey::new(b"k");
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let now = 1_700_000_000;
        let n = k.issue(now, now + 100_000, ip);
        let max = MAX_NONCE_LIFETIME.as_secs();
        assert_eq!(k.check(&n, ip, now + max - 1), NonceCheck::Valid);
        assert_eq!(k.check(&n, ip, now + max + 60), NonceCheck::Stale);
    }
}
