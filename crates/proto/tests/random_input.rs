//! Property test: whatever bytes arrive, the decoders and the server neither
//! panic nor break their contracts. Inputs are random bytes and truncations,
//! bit flips and splices of valid messages, from a seeded generator, so a
//! failure reproduces exactly.

use std::net::SocketAddr;
use std::time::Instant;

use proto::framing::{next_frame, Frame};
use proto::wire::{
    attr, Class, ErrorCode, HeaderError, Message, MessageBuilder, MessageType, Method, ParseError, MAGIC_COOKIE,
};
use proto::{ClientAddr, DropReason, FiveTuple, Output, Server, ServerAddr, ServerConfig, Transport};

mod rng;
mod server_checks;
use rng::Rng;
use server_checks::check_server;

const ITERATIONS: u64 = 200_000;
const KEY: &[u8] = b"property-test-key";
/// Largest STUN message: a 20-byte header and a 16-bit length.
const MAX_MESSAGE: usize = 20 + 0xFFFF;
/// Valid messages built up front: HMAC is slow in debug builds.
const POOL: usize = 512;

#[test]
fn random_input_keeps_invariants() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    // The test stands in for the driver, the one place that reads the clock.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let tuples = [
        tuple("198.51.100.7:40000", "192.0.2.10:3478"),
        tuple("[2001:db8::7]:40000", "[2001:db8::10]:3478"),
    ];
    let mut server = Server::new(ServerConfig {
        software: Some("ternd".into()),
        ..ServerConfig::default()
    });
    let pool: Vec<Vec<u8>> = (0..POOL)
        .map(|_| {
            let mut buf = vec![0u8; 2048];
            let n = valid_message(&mut rng, &mut buf);
            buf.truncate(n);
            buf
        })
        .collect();
    let mut data = Vec::with_capacity(2048);
    let mut out = vec![0u8; 1500];
    let mut nothing = 0;
    for i in 0..ITERATIONS {
        let valid = &pool[rng.below(POOL as u64) as usize];
        mutate(&mut rng, valid, &mut data);
        check_decoders(&mut rng, &data);
        check_framing(&mut rng, &data);
        let out_len = if rng.below(8) == 0 {
            rng.below(64) as usize
        } else {
            out.len()
        };
        let t = tuples[(i % 2) as usize];
        if check_server(&mut server, now, t, &data, &mut out[..out_len]) == Output::Nothing {
            nothing += 1;
        }
    }
    let stats = server.stats();
    assert_eq!(
        stats.drops.total() + stats.binding_success() + stats.error_responses() + nothing,
        ITERATIONS
    );
    // The generator reaches every outcome, not just the first check that fails.
    for reason in [
        DropReason::TooShort,
        DropReason::NotStun,
        DropReason::BadMagicCookie,
        DropReason::BadLength,
        DropReason::BadFingerprint,
        DropReason::MalformedNonRequest,
        DropReason::UnexpectedClass,
        DropReason::UnknownIndication,
        DropReason::ReplyTooLarge,
    ] {
        assert!(stats.drops.get(reason) > 0, "{reason:?} never happened");
    }
    assert!(stats.binding_success() > 0 && stats.error_responses() > 0 && nothing > 0);
}

fn tuple(client: &str, server: &str) -> FiveTuple {
    FiveTuple {
        client: ClientAddr(client.parse().unwrap()),
        server: ServerAddr(server.parse().unwrap()),
        transport: Transport::Udp,
    }
}

/// Builds a random valid message into `buf` and checks that it decodes.
fn valid_message(rng: &mut Rng, buf: &mut [u8]) -> usize {
    let message_type = if rng.below(4) != 0 {
        MessageType::new(
            Method::BINDING,
            if rng.below(8) == 0 {
                Class::Indication
            } else {
                Class::Request
            },
        )
    } else {
        MessageType::from_u16(rng.next() as u16 & 0x3FFF)
    };
    let mut tid = [0u8; 12];
    rng.fill(&mut tid);
    let mut b = MessageBuilder::new(buf, message_type, &tid).unwrap();
    let mut bytes = [0u8; 40];
    for _ in 0..rng.below(7) {
        let value = &mut bytes[..rng.below(41) as usize];
        rng.fill(value);
        match rng.below(8) {
            0 => b.add_bytes(attr::SOFTWARE, value),
            1 => b.add_bytes(attr::USERNAME, value),
            2 => b.add_xor_address(attr::XOR_MAPPED_ADDRESS, random_addr(rng)),
            3 => b.add_address(attr::MAPPED_ADDRESS, random_addr(rng)),
            4 => b.add_error_code(ErrorCode(300 + rng.below(400) as u16), "reason"),
            5 => b.add_unknown_attributes(&[0x7777, 0x0003, rng.next() as u16]),
            6 => b.add_u32(attr::PRIORITY, rng.next() as u32),
            _ => {
                // Any type but those whose position and length the parser enforces.
                let typ = match rng.next() as u16 {
                    attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 | attr::FINGERPRINT => 0x7777,
                    t => t,
                };
                b.add_bytes(typ, value)
            }
        }
        .unwrap();
    }
    let integrity = rng.below(3);
    if integrity == 1 {
        b.add_message_integrity(KEY).unwrap();
    } else if integrity == 2 {
        b.add_message_integrity_sha256(KEY).unwrap();
    }
    let fingerprint = rng.below(2) == 0;
    if fingerprint {
        b.add_fingerprint().unwrap();
    }
    let n = b.finish();

    let m = Message::parse(&buf[..n]).expect("a built message parses");
    assert_eq!(m.message_type(), message_type);
    assert_eq!(m.transaction_id(), tid);
    assert_eq!(m.has_fingerprint(), fingerprint);
    assert!(m.fingerprint_ok());
    assert_eq!(m.has_integrity(), integrity != 0);
    assert_eq!(m.verify_integrity(KEY), integrity != 0);
    n
}

fn random_addr(rng: &mut Rng) -> SocketAddr {
    let port = rng.next() as u16;
    if rng.below(2) == 0 {
        SocketAddr::new((rng.next() as u32).to_be_bytes().into(), port)
    } else {
        let mut ip = [0u8; 16];
        rng.fill(&mut ip);
        SocketAddr::new(ip.into(), port)
    }
}

/// Writes into `data` random bytes, or `valid` as is, truncated, bit-flipped
/// or with its body changed.
fn mutate(rng: &mut Rng, valid: &[u8], data: &mut Vec<u8>) {
    data.clear();
    match rng.below(8) {
        0 => {
            data.resize(rng.below(300) as usize, 0);
            rng.fill(data);
        }
        1 => {
            // Random body behind a header that passes the header checks.
            data.resize(20 + 4 * rng.below(40) as usize, 0);
            rng.fill(data);
            data[0] &= 0x3F;
            data[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            set_length(data);
        }
        2 => data.extend_from_slice(&valid[..rng.below(valid.len() as u64) as usize]),
        3 | 4 => {
            data.extend_from_slice(valid);
            for _ in 0..1 + rng.below(4) {
                let bit = rng.below(8 * data.len() as u64);
                data[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
            if rng.below(2) == 0 {
                data[0] &= 0x3F;
                data[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                set_length(data);
            }
        }
        5 => {
            // Overwrite one attribute header field with a random value.
            data.extend_from_slice(valid);
            if data.len() > 20 {
                let at = 20 + 2 * rng.below((data.len() as u64 - 20) / 2) as usize;
                data[at..at + 2].copy_from_slice(&(rng.next() as u16).to_be_bytes());
            }
        }
        6 => {
            // Attributes appended after the end (after FINGERPRINT, say).
            data.extend_from_slice(valid);
            let extra = 4 * (1 + rng.below(8) as usize);
            let start = data.len();
            data.resize(start + extra, 0);
            rng.fill(&mut data[start..]);
            data[start + 2..start + 4].copy_from_slice(&(rng.below(extra as u64) as u16).to_be_bytes());
            set_length(data);
        }
        _ => data.extend_from_slice(valid),
    }
}

/// Makes the header length field match the bytes after the header.
fn set_length(data: &mut [u8]) {
    let len = (data.len() - 20) as u16;
    data[2..4].copy_from_slice(&len.to_be_bytes());
}

/// Every accessor of a parsed message is total, and agrees with the others.
fn check_decoders(rng: &mut Rng, data: &[u8]) {
    let m = match Message::parse(data) {
        Ok(m) => m,
        Err(ParseError::Header(HeaderError::TooShort)) => return assert!(data.len() < 20),
        Err(ParseError::Header(_)) => return,
        Err(ParseError::Body {
            message_type,
            transaction_id,
            ..
        }) => {
            assert_eq!(message_type.to_u16(), u16::from_be_bytes([data[0], data[1]]));
            assert_eq!(transaction_id[..], data[8..20]);
            return;
        }
    };
    assert_eq!(m.as_bytes(), data);
    assert_eq!(m.message_type().to_u16(), u16::from_be_bytes([data[0], data[1]]));
    let tid = m.transaction_id();
    assert_eq!(tid[..], data[8..20]);
    let mut count = 0;
    for a in m.attributes() {
        count += 1;
        let first = m.get(a.typ).expect("an attribute seen is found");
        assert!(first.len() <= data.len() - 24);
        let _ = attr::decode_address(a.value, Some(&tid));
        let _ = attr::decode_address(a.value, None);
        let _ = ErrorCode::decode(a.value);
    }
    assert!(count <= 128);
    let _ = m.fingerprint_ok();
    let _ = m.has_integrity();
    // One HMAC per message at most: they dominate the run time.
    if rng.below(2) == 0 {
        assert!(!m.verify_integrity(b"not the key"));
    } else {
        let _ = m.verify_integrity(KEY);
    }
}

/// `next_frame` never promises more bytes than the buffer holds or `max`
/// allows, and frames a valid message exactly.
fn check_framing(rng: &mut Rng, data: &[u8]) {
    let random_max = rng.below(200) as usize;
    let valid = Message::parse(data).is_ok();
    for max in [0, 4, 20, 100, random_max, 1500, MAX_MESSAGE] {
        if let Ok(Some(frame)) = next_frame(data, max) {
            assert!(frame.len() <= max, "{frame:?} over {max}");
            assert!(frame.len() <= data.len());
            assert!(!frame.is_empty());
            if let Frame::ChannelData { len, payload } = frame {
                assert!(payload <= len - 4 && len - 4 - payload < 4);
            }
        }
        if valid && data.len() <= max {
            assert_eq!(next_frame(data, max), Ok(Some(Frame::Stun(data.len()))));
        }
    }
    // A stream: consume frames until one is incomplete or the stream is bad.
    let mut rest = data;
    while let Ok(Some(frame)) = next_frame(rest, 1500) {
        assert!(frame.len() <= rest.len().min(1500));
        rest = &rest[frame.len()..];
    }
}
