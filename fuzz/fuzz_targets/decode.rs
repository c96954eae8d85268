//! The decoders on arbitrary bytes: `Message::parse`, every accessor of a
//! parsed message, the attribute value codecs, and stream framing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::framing::{next_frame, Frame};
use proto::wire::{attr, ErrorCode, Message, ParseError};

/// Largest STUN message: a 20-byte header and a 16-bit length.
const MAX_MESSAGE: usize = 20 + 0xFFFF;

fuzz_target!(|data: &[u8]| {
    let parsed = Message::parse(data);
    match parsed {
        Ok(m) => {
            assert_eq!(m.as_bytes(), data);
            assert_eq!(m.message_type().to_u16(), u16::from_be_bytes([data[0], data[1]]));
            let tid = m.transaction_id();
            assert_eq!(tid[..], data[8..20]);
            let mut count = 0;
            for a in m.attributes() {
                count += 1;
                assert!(m.get(a.typ).is_some());
                let _ = attr::decode_address(a.value, Some(&tid));
                let _ = attr::decode_address(a.value, None);
                let _ = ErrorCode::decode(a.value);
            }
            assert!(count <= 128);
            let _ = m.has_fingerprint();
            let _ = m.fingerprint_ok();
            let _ = m.has_integrity();
            assert!(!m.verify_integrity(b"fuzz: not the key") || m.has_integrity());
        }
        Err(ParseError::Body {
            message_type,
            transaction_id,
            ..
        }) => {
            assert_eq!(message_type.to_u16(), u16::from_be_bytes([data[0], data[1]]));
            assert_eq!(transaction_id[..], data[8..20]);
        }
        Err(ParseError::Header(_)) => {}
    }

    for max in [0, 4, 20, 1500, MAX_MESSAGE] {
        if let Ok(Some(frame)) = next_frame(data, max) {
            assert!(frame.len() <= max && frame.len() <= data.len() && !frame.is_empty());
            if let Frame::ChannelData { len, payload } = frame {
                assert!(payload <= len - 4 && len - 4 - payload < 4);
            }
        }
        if parsed.is_ok() && data.len() <= max {
            assert_eq!(next_frame(data, max), Ok(Some(Frame::Stun(data.len()))));
        }
    }
    // As a byte stream: frames are consumed until one is incomplete or bad.
    let mut rest = data;
    while let Ok(Some(frame)) = next_frame(rest, 1500) {
        rest = &rest[frame.len()..];
    }
});
