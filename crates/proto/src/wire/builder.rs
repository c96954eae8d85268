//! Writes one STUN message into a caller-owned buffer (RFC 8489 §5, §14).

use std::net::SocketAddr;

use super::crc32::crc32;
use super::integrity::{self, Algorithm};
use super::{attr, pad4, ErrorCode, MessageType, TransactionId, ATTR_HEADER_LEN, HEADER_LEN, MAGIC_COOKIE};

/// The output buffer cannot hold the message being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("output buffer too small for the STUN message")]
pub struct BufferTooSmall;

/// Builds a message in place. Every `add_*` keeps the header length field
/// current, so integrity and fingerprint can be computed at any point.
pub struct MessageBuilder<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> MessageBuilder<'b> {
    pub fn new(buf: &'b mut [u8], message_type: MessageType, tid: &TransactionId) -> Result<Self, BufferTooSmall> {
        if buf.len() < HEADER_LEN {
            return Err(BufferTooSmall);
        }
        buf[0..2].copy_from_slice(&message_type.to_u16().to_be_bytes());
        buf[2..4].copy_from_slice(&0u16.to_be_bytes());
        buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf[8..20].copy_from_slice(tid);
        Ok(MessageBuilder { buf, len: HEADER_LEN })
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == HEADER_LEN
    }

    /// Reserves an attribute of `value_len` bytes (zero padding included) and
    /// returns its value slice, zeroed, for the caller to fill.
    pub fn reserve(&mut self, typ: u16, value_len: usize) -> Result<&mut [u8], BufferTooSmall> {
        let off = self.len;
        self.add_in_place(typ, value_len)?;
        let value = &mut self.buf[off + ATTR_HEADER_LEN..off + ATTR_HEADER_LEN + value_len];
        value.fill(0);
        Ok(value)
    }

    /// Writes an attribute header for a value of `value_len` bytes that is
    /// already in place in the buffer (zero-copy relaying), and zeroes its padding.
    pub fn add_in_place(&mut self, typ: u16, value_len: usize) -> Result<(), BufferTooSmall> {
        let total = ATTR_HEADER_LEN + pad4(value_len);
        let body = self.len + total - HEADER_LEN;
        if value_len > u16::MAX as usize || body > u16::MAX as usize || self.len + total > self.buf.len() {
            return Err(BufferTooSmall);
        }
        let off = self.len;
        self.buf[off..off + 2].copy_from_slice(&typ.to_be_bytes());
        self.buf[off + 2..off + 4].copy_from_slice(&(value_len as u16).to_be_bytes());
        self.buf[off + 4 + value_len..off + total].fill(0);
        self.len += total;
        self.buf[2..4].copy_from_slice(&(body as u16).to_be_bytes());
        Ok(())
    }

    pub fn add_bytes(&mut self, typ: u16, value: &[u8]) -> Result<(), BufferTooSmall> {
        self.reserve(typ, value.len())?.copy_from_slice(value);
        Ok(())
    }

    pub fn add_u32(&mut self, typ: u16, v: u32) -> Result<(), BufferTooSmall> {
        self.add_bytes(typ, &v.to_be_bytes())
    }

    /// An XOR-* address attribute (XOR-MAPPED-ADDRESS, XOR-RELAYED-ADDRESS, ...).
    pub fn add_xor_address(&mut self, typ: u16, addr: SocketAddr) -> Result<(), BufferTooSmall> {
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&self.buf[8..20]);
        let out = self.reserve(typ, attr::address_len(&addr))?;
        attr::encode_address(&addr, Some(&tid), out);
        Ok(())
    }

    /// A plain address attribute (MAPPED-ADDRESS, ALTERNATE-SERVER, ...).
    pub fn add_address(&mut self, typ: u16, addr: SocketAddr) -> Result<(), BufferTooSmall> {
        let out = self.reserve(typ, attr::address_len(&addr))?;
        attr::encode_address(&addr, None, out);
        Ok(())
    }

    /// ERROR-CODE (RFC 8489 §14.8). `reason` may be empty.
    pub fn add_error_code(&mut self, code: ErrorCode, reason: &str) -> Result<(), BufferTooSmall> {
        let out = self.reserve(attr::ERROR_CODE, 4 + reason.len())?;
        out[2] = (code.0 / 100) as u8;
        out[3] = (code.0 % 100) as u8;
        out[4..].copy_from_slice(reason.as_bytes());
        Ok(())
    }

    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.9).
    pub fn add_unknown_attributes(&mut self, types: &[u16]) -> Result<(), BufferTooSmall> {
        let out = self.reserve(attr::UNKNOWN_ATTRIBUTES, 2 * types.len())?;
        for (chunk, t) in out.chunks_exact_mut(2).zip(types) {
            chunk.copy_from_slice(&t.to_be_bytes());
        }
        Ok(())
    }

    /// MESSAGE-INTEGRITY (HMAC-SHA1) over everything written so far.
    pub fn add_message_integrity(&mut self, key: &[u8]) -> Result<(), BufferTooSmall> {
        self.add_integrity(attr::MESSAGE_INTEGRITY, integrity::SHA1_LEN, key, Algorithm::Sha1)
    }

    /// MESSAGE-INTEGRITY-SHA256 (full 32 bytes) over everything written so far.
    pub fn add_message_integrity_sha256(&mut self, key: &[u8]) -> Result<(), BufferTooSmall> {
        self.add_integrity(
            attr::MESSAGE_INTEGRITY_SHA256,
            integrity::SHA256_LEN,
            key,
            Algorithm::Sha256,
        )
    }

    /// The integrity attribute `key` signs with (RFC 8489 §14.5, §14.6).
    pub fn add_integrity_with(&mut self, key: &integrity::Key) -> Result<(), BufferTooSmall> {
        match key.mac {
            Algorithm::Sha1 => self.add_message_integrity(key.as_bytes()),
            Algorithm::Sha256 => self.add_message_integrity_sha256(key.as_bytes()),
        }
    }

    fn add_integrity(&mut self, typ: u16, n: usize, key: &[u8], alg: Algorithm) -> Result<(), BufferTooSmall> {
        let off = self.len;
        self.reserve(typ, n)?;
        let mut mac = [0u8; integrity::SHA256_LEN];
        integrity::compute(self.buf, off, n, key, alg, &mut mac[..n]);
        self.buf[off + ATTR_HEADER_LEN..off + ATTR_HEADER_LEN + n].copy_from_slice(&mac[..n]);
        Ok(())
    }

    /// FINGERPRINT (RFC 8489 §14.7); must be the last attribute added.
    pub fn add_fingerprint(&mut self) -> Result<(), BufferTooSmall> {
        let off = self.len;
        self.reserve(attr::FINGERPRINT, 4)?;
        let crc = crc32(&[&self.buf[..off]]) ^ attr::FINGERPRINT_XOR;
        self.buf[off + 4..off + 8].copy_from_slice(&crc.to_be_bytes());
        Ok(())
    }

    /// The length of the finished message at the start of the buffer.
    pub fn finish(self) -> usize {
        self.len
    }
}
