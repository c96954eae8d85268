//! The STUN wire format (RFC 8489 §5, §14): a zero-copy view over received
//! bytes ([`Message`]) and a builder that writes into a caller-owned buffer
//! ([`MessageBuilder`]). Nothing here allocates.
//!
//! Why our own codec rather than `stun-types` (DESIGN.md §4 allowed either):
//! - the server must tell "not STUN at all" (drop, counted by reason) from
//!   "recognisably STUN but malformed" (400) from "unknown
//!   comprehension-required attribute" (420); stun-types' parse errors do not
//!   map onto that split;
//! - responses and Data indications are written into the caller's buffer,
//!   headers in place in front of relayed payloads (zero-copy), which needs
//!   a builder over a borrowed `&mut [u8]`;
//! - stun-types' default `std` feature pulls `rand`'s thread RNG into what
//!   must be a clock- and entropy-free core.
//!
//! The cost is this module (~600 lines); RFC 5769 vectors, property tests and
//! two fuzz targets cover it, and tests talk to it only through independent
//! codecs (webrtc-rs `stun`/`turn`, coturn's tools).

pub mod attr;
mod builder;
mod crc32;
pub mod error_code;
pub mod icmp;
mod integrity;
mod message;
mod method;

pub use builder::{BufferTooSmall, MessageBuilder};
pub use error_code::ErrorCode;
pub use icmp::Icmp;
pub use integrity::{ct_eq, long_term_key, long_term_key_sha256, userhash, Algorithm as Mac, Key};
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
