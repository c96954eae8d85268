//! MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5), MESSAGE-INTEGRITY-SHA256
//! (§14.6) and the long-term credential key (§9.2.2).

use md5::{Digest, Md5};
use ring::hmac;

use super::{ATTR_HEADER_LEN, HEADER_LEN};

pub const SHA1_LEN: usize = 20;
pub const SHA256_LEN: usize = 32;

/// Which HMAC protects a message: MESSAGE-INTEGRITY (SHA-1, §14.5) or
/// MESSAGE-INTEGRITY-SHA256 (§14.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
}

/// A long-term credential key (RFC 8489 §9.2.2), 16 bytes (MD5) or 32
/// (SHA-256), and the HMAC it signs with: the one the request used, so the
/// response carries the same integrity attribute (§9.2.4: a client that sent
/// MESSAGE-INTEGRITY-SHA256 checks MESSAGE-INTEGRITY-SHA256).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key {
    bytes: [u8; SHA256_LEN],
    len: u8,
    pub mac: Algorithm,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} bytes, {:?})", self.len, self.mac)
    }
}

impl Key {
    /// An MD5 key (PASSWORD-ALGORITHM MD5, or none) signing with HMAC-SHA1.
    pub fn md5(k: [u8; 16]) -> Key {
        let mut bytes = [0; SHA256_LEN];
        bytes[..16].copy_from_slice(&k);
        Key {
            bytes,
            len: 16,
            mac: Algorithm::Sha1,
        }
    }

    /// A SHA-256 key (PASSWORD-ALGORITHM SHA-256) signing with HMAC-SHA1
    /// until [`Key::with_mac`] says otherwise.
    pub fn sha256(bytes: [u8; SHA256_LEN]) -> Key {
        Key {
            bytes,
            len: SHA256_LEN as u8,
            mac: Algorithm::Sha1,
        }
    }

    /// This key, signing with `mac`.
    pub fn with_mac(self, mac: Algorithm) -> Key {
        Key { mac, ..self }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// RFC 8489 §9.2.2: key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password)).
/// The caller passes strings already processed by OpaqueString (RFC 8265).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// RFC 8489 §9.2.2 with PASSWORD-ALGORITHM SHA-256:
/// key = SHA-256(username ":" OpaqueString(realm) ":" OpaqueString(password)).
pub fn long_term_key_sha256(username: &str, realm: &str, password: &str) -> [u8; SHA256_LEN] {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [username, ":", realm, ":", password] {
        h.update(part.as_bytes());
    }
    let mut out = [0; SHA256_LEN];
    out.copy_from_slice(h.finish().as_ref());
    out
}

/// RFC 8489 §14.4 USERHASH: SHA-256(OpaqueString(username) ":" OpaqueString(realm)).
pub fn userhash(username: &str, realm: &str) -> [u8; SHA256_LEN] {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [username, ":", realm] {
        h.update(part.as_bytes());
    }
    let mut out = [0; SHA256_LEN];
    out.copy_from_slice(h.finish().as_ref());
    out
}

/// HMAC over the message up to the integrity attribute at `attr_off`, with
/// the header length rewritten to end just after that attribute (§14.5).
pub(super) fn compute(buf: &[u8], attr_off: usize, value_len: usize, key: &[u8], alg: Algorithm, out: &mut [u8]) {
    let algorithm = match alg {
        Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        Algorithm::Sha256 => hmac::HMAC_SHA256,
    };
    let key = hmac::Key::new(algorithm, key);
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&buf[..HEADER_LEN]);
    let len = (attr_off + ATTR_HEADER_LEN + value_len - HEADER_LEN) as u16;
    header[2..4].copy_from_slice(&len.to_be_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(&header);
    ctx.update(&buf[HEADER_LEN..attr_off]);
    let tag = ctx.sign();
    let n = out.len().min(tag.as_ref().len());
    out[..n].copy_from_slice(&tag.as_ref()[..n]);
}

pub(super) fn verify(buf: &[u8], attr_off: usize, key: &[u8], alg: Algorithm) -> bool {
    let len = u16::from_be_bytes([buf[attr_off + 2], buf[attr_off + 3]]) as usize;
    let got = &buf[attr_off + ATTR_HEADER_LEN..attr_off + ATTR_HEADER_LEN + len];
    let mut want = [0u8; SHA256_LEN];
    compute(buf, attr_off, len, key, alg, &mut want[..len]);
    ct_eq(got, &want[..len])
}

/// Constant-time equality for secrets and MACs: the time taken depends only
/// on the lengths, never on where the inputs differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    core::hint::black_box(diff) == 0
}
