//! Message framing on TCP/TLS byte streams (RFC 8489 §6.2.2, RFC 8656 §12.5):
//! STUN messages delimit themselves through their length field, ChannelData
//! through its 4-byte header plus padding to a multiple of 4.

use crate::wire::HEADER_LEN;

/// What a complete frame at the start of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A STUN message of this many bytes.
    Stun(usize),
    /// A ChannelData message: `len` bytes on the wire, of which `payload`
    /// follow the 4-byte header (the rest is padding).
    ChannelData { len: usize, payload: usize },
}

impl Frame {
    pub fn len(self) -> usize {
        match self {
            Frame::Stun(n) => n,
            Frame::ChannelData { len, .. } => len,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// The stream cannot be resynchronised: the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("bytes on the stream are neither STUN nor ChannelData")]
    NotStunOrChannelData,
    #[error("frame of {0} bytes exceeds the limit")]
    TooLong(usize),
}

/// Looks at the start of `buf`: `Ok(None)` if more bytes are needed,
/// `Ok(Some(frame))` once a whole frame is there. `max` caps a frame's size.
pub fn next_frame(buf: &[u8], max: usize) -> Result<Option<Frame>, FramingError> {
    if buf.len() < 4 {
        // The first byte alone already tells garbage apart.
        if let Some(&b) = buf.first() {
            if b & 0xC0 != 0 && b & 0xC0 != 0x40 {
                return Err(FramingError::NotStunOrChannelData);
            }
        }
        return Ok(None);
    }
    let len16 = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let frame = match buf[0] & 0xC0 {
        0x00 => {
            // A stream cannot skip a bad message and stay in sync, so the
            // magic cookie is checked here, as soon as it has arrived.
            if buf.len() < 8 {
                return Ok(None);
            }
            if buf[4..8] != crate::wire::MAGIC_COOKIE.to_be_bytes() {
                return Err(FramingError::NotStunOrChannelData);
            }
            Frame::Stun(HEADER_LEN + len16)
        }
        // ChannelData: RFC 8656 allows channels 0x4000-0x4FFF, RFC 5766 up to
        // 0x7FFE; the whole 0b01 space is framed alike and the core drops
        // numbers that are not bound.
        0x40 => Frame::ChannelData {
            len: 4 + crate::wire::pad4(len16),
            payload: len16,
        },
        _ => return Err(FramingError::NotStunOrChannelData),
    };
    if frame.len() > max {
        return Err(FramingError::TooLong(frame.len()));
    }
    Ok((buf.len() >= frame.len()).then_some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_stun_and_channel_data() {
        let stun = [0u8, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42];
        assert_eq!(next_frame(&stun, 1500), Ok(None));
        let mut full = vec![0u8; 28];
        full[..8].copy_from_slice(&stun);
        assert_eq!(next_frame(&full, 1500), Ok(Some(Frame::Stun(28))));
        let cd = [0x40u8, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0, 0xFF];
        assert_eq!(
            next_frame(&cd, 1500),
            Ok(Some(Frame::ChannelData { len: 12, payload: 5 }))
        );
        assert_eq!(next_frame(&cd[..11], 1500), Ok(None));
    }

    #[test]
    fn rejects_garbage_and_oversize() {
        assert_eq!(next_frame(&[0x80], 1500), Err(FramingError::NotStunOrChannelData));
        // A TLS ClientHello sent to the plain TCP port: no magic cookie.
        assert_eq!(
            next_frame(&[0x16, 3, 1, 2, 0, 1, 0, 1, 3], 1500),
            Err(FramingError::NotStunOrChannelData)
        );
        // RFC 5766 channel numbers (0x5000-0x7FFF) are framed like any
        // ChannelData; the core drops the ones not bound.
        assert_eq!(
            next_frame(&[0x50, 0, 0, 4, 1, 2, 3, 4], 1500),
            Ok(Some(Frame::ChannelData { len: 8, payload: 4 }))
        );
        assert_eq!(
            next_frame(&[0, 1, 0xFF, 0xFC, 0x21, 0x12, 0xa4, 0x42], 1500),
            Err(FramingError::TooLong(20 + 0xFFFC))
        );
    }
}
