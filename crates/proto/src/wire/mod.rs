//! The STUN wire format (RFC 8489 §5, §14): a zero-copy view over received
//! bytes ([`Message`]) and a builder that writes into a caller-owned buffer
//! ([`MessageBuilder`]). Nothing here allocates.

pub mod attr;
mod builder;
mod crc32;
pub mod error_code;
mod integrity;
mod message;
mod method;

pub use builder::{BufferTooSmall, MessageBuilder};
pub use error_code::ErrorCode;
pub use integrity::{ct_eq, long_term_key};
pub use message::{BodyError, HeaderError, Message, ParseError, RawAttr, MAX_ATTRIBUTES};
pub use method::{Class, MessageType, Method};

/// RFC 8489 §5: the fixed value in bytes 4..8 of every STUN message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// RFC 8489 §5: the header is 20 bytes.
pub const HEADER_LEN: usize = 20;
/// RFC 8489 §14: an attribute's type and length take 4 bytes.
pub const ATTR_HEADER_LEN: usize = 4;

/// The 96-bit transaction ID (RFC 8489 §5).
pub type TransactionId = [u8; 12];

/// Rounds `n` up to the next multiple of 4 (attribute padding, RFC 8489 §14).
pub const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}
