//! A validated, zero-copy view of one received STUN message (RFC 8489 §5, §6.3).

use super::attr;
use super::crc32::crc32;
use super::integrity;
use super::{pad4, MessageType, TransactionId, ATTR_HEADER_LEN, HEADER_LEN, MAGIC_COOKIE};

/// Real messages carry a handful of attributes; a request with more than this
/// is refused with 400 rather than walked again and again.
pub const MAX_ATTRIBUTES: usize = 128;

/// Why some bytes are not a STUN message at all. Such input is dropped
/// silently: it may belong to another protocol (RFC 8489 §6.3, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("the two most significant bits are not zero")]
    NotStun,
    #[error("no magic cookie")]
    BadMagicCookie,
    #[error("message length is not a multiple of 4")]
    LengthNotMultipleOf4,
    #[error("message length does not match the bytes received")]
    LengthMismatch,
}

/// Why a message with a valid STUN header has an unusable body. A request in
/// this state is "recognisably STUN" and gets 400; anything else is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("an attribute runs past the end of the message")]
    AttributeOverrun,
    #[error("more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    #[error("an integrity or fingerprint attribute has the wrong length")]
    BadIntegrityLength,
}

/// The outcome of [`Message::parse`] when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not STUN: {0}")]
    Header(#[from] HeaderError),
    #[error("malformed STUN body: {error}")]
    Body {
        message_type: MessageType,
        transaction_id: TransactionId,
        error: BodyError,
    },
}

/// One attribute as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttr<'a> {
    pub typ: u16,
    pub value: &'a [u8],
}

/// A STUN message whose header and attribute framing have been validated.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
    message_type: MessageType,
    /// Attributes before this offset are the ones that count (RFC 8489 §14.5:
    /// after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT do).
    counted_end: usize,
    integrity: Option<usize>,
    integrity_sha256: Option<usize>,
    fingerprint: Option<usize>,
}

/// Checks the 20-byte header (RFC 8489 §6.3 first paragraph) and returns the
/// message type. `buf` must hold exactly one message.
pub fn check_header(buf: &[u8]) -> Result<MessageType, HeaderError> {
    if buf.len() < HEADER_LEN {
        return Err(HeaderError::TooShort);
    }
    if buf[0] & 0xC0 != 0 {
        return Err(HeaderError::NotStun);
    }
    if u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE {
        return Err(HeaderError::BadMagicCookie);
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    if len % 4 != 0 {
        return Err(HeaderError::LengthNotMultipleOf4);
    }
    if len + HEADER_LEN != buf.len() {
        return Err(HeaderError::LengthMismatch);
    }
    Ok(MessageType::from_u16(u16::from_be_bytes([buf[0], buf[1]])))
}

impl<'a> Message<'a> {
    /// Validates `buf` as exactly one STUN message. Does not check
    /// FINGERPRINT or MESSAGE-INTEGRITY values; see [`Self::fingerprint_ok`]
    /// and [`Self::verify_integrity`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        let message_type = check_header(buf)?;
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&buf[8..20]);
        let body_err = |error| ParseError::Body {
            message_type,
            transaction_id,
            error,
        };

        let mut msg = Message {
            buf,
            message_type,
            counted_end: buf.len(),
            integrity: None,
            integrity_sha256: None,
            fingerprint: None,
        };
        let mut off = HEADER_LEN;
        let mut count = 0;
        while off < buf.len() {
            if msg.fingerprint.is_some() {
                return Err(body_err(BodyError::FingerprintNotLast));
            }
            count += 1;
            if count > MAX_ATTRIBUTES {
                return Err(body_err(BodyError::TooManyAttributes));
            }
            if buf.len() - off < ATTR_HEADER_LEN {
                return Err(body_err(BodyError::AttributeOverrun));
            }
            let typ = u16::from_be_bytes([buf[off], buf[off + 1]]);
            let len = u16::from_be_bytes([buf[off + 2], buf[off + 3]]) as usize;
            let next = off + ATTR_HEADER_LEN + pad4(len);
            if next > buf.len() {
                return Err(body_err(BodyError::AttributeOverrun));
            }
            let first_integrity = msg.integrity.is_none() && msg.integrity_sha256.is_none();
            match typ {
                attr::MESSAGE_INTEGRITY if first_integrity => {
                    if len != integrity::SHA1_LEN {
                        return Err(body_err(BodyError::BadIntegrityLength));
                    }
                    msg.integrity = Some(off);
                    msg.counted_end = msg.counted_end.min(off);
                }
                attr::MESSAGE_INTEGRITY_SHA256 if msg.integrity_sha256.is_none() => {
                    // RFC 8489 §14.6: 16 to 32 bytes, a multiple of 4.
                    if !(16..=32).contains(&len) || len % 4 != 0 {
                        return Err(body_err(BodyError::BadIntegrityLength));
                    }
                    msg.integrity_sha256 = Some(off);
                    msg.counted_end = msg.counted_end.min(off);
                }
                attr::FINGERPRINT => {
                    if len != 4 {
                        return Err(body_err(BodyError::BadIntegrityLength));
                    }
                    msg.fingerprint = Some(off);
                    msg.counted_end = msg.counted_end.min(off);
                }
                _ => {}
            }
            off = next;
        }
        Ok(msg)
    }

    pub fn message_type(&self) -> MessageType {
        self.message_type
    }

    pub fn transaction_id(&self) -> TransactionId {
        let mut t = [0u8; 12];
        t.copy_from_slice(&self.buf[8..20]);
        t
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The attributes that count: those before MESSAGE-INTEGRITY,
    /// MESSAGE-INTEGRITY-SHA256 or FINGERPRINT (RFC 8489 §14.5–§14.7).
    pub fn attributes(&self) -> impl Iterator<Item = RawAttr<'a>> + 'a {
        AttrIter {
            buf: &self.buf[..self.counted_end],
            off: HEADER_LEN,
        }
    }

    /// The value of the first counted attribute of type `typ`.
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.typ == typ).map(|a| a.value)
    }

    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some() || self.integrity_sha256.is_some()
    }

    /// The HMAC [`Self::verify_integrity`] checks: SHA-256 when the message
    /// has MESSAGE-INTEGRITY-SHA256, else SHA-1 when it has MESSAGE-INTEGRITY.
    pub fn integrity_mac(&self) -> Option<integrity::Algorithm> {
        if self.integrity_sha256.is_some() {
            Some(integrity::Algorithm::Sha256)
        } else {
            self.integrity.map(|_| integrity::Algorithm::Sha1)
        }
    }

    /// RFC 8489 §14.7: CRC-32 of the message up to FINGERPRINT, XOR 0x5354554e.
    /// True when there is no FINGERPRINT at all.
    pub fn fingerprint_ok(&self) -> bool {
        let Some(off) = self.fingerprint else {
            return true;
        };
        let v = &self.buf[off + ATTR_HEADER_LEN..off + ATTR_HEADER_LEN + 4];
        let got = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
        // FINGERPRINT is last, so the header length already covers it.
        crc32(&[&self.buf[..off]]) ^ attr::FINGERPRINT_XOR == got
    }

    /// Verifies MESSAGE-INTEGRITY-SHA256 if present, else MESSAGE-INTEGRITY
    /// (RFC 8489 §9.2.4), in constant time. False when neither is present.
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        if let Some(off) = self.integrity_sha256 {
            integrity::verify(self.buf, off, key, integrity::Algorithm::Sha256)
        } else if let Some(off) = self.integrity {
            integrity::verify(self.buf, off, key, integrity::Algorithm::Sha1)
        } else {
            false
        }
    }
}

struct AttrIter<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = RawAttr<'a>;

    fn next(&mut self) -> Option<RawAttr<'a>> {
        // Framing was validated by `Message::parse`; the checks only keep
        // this iterator total on its own.
        let b = self.buf;
        let off = self.off;
        if b.len() < off + ATTR_HEADER_LEN {
            return None;
        }
        let typ = u16::from_be_bytes([b[off], b[off + 1]]);
        let len = u16::from_be_bytes([b[off + 2], b[off + 3]]) as usize;
        let start = off + ATTR_HEADER_LEN;
        let value = b.get(start..start + len)?;
        self.off = start + pad4(len);
        Some(RawAttr { typ, value })
    }
}
