//! MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 §14.5), MESSAGE-INTEGRITY-SHA256
//! (§14.6) and the long-term credential key (§9.2.2).

use md5::{Digest, Md5};
use ring::hmac;

use super::{ATTR_HEADER_LEN, HEADER_LEN};

pub const SHA1_LEN: usize = 20;
pub const SHA256_LEN: usize = 32;

#[derive(Debug, Clone, Copy)]
pub enum Algorithm {
    Sha1,
    Sha256,
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
