//! RFC 5769 "Test Vectors for STUN": each sample decoded, its integrity and
//! fingerprint verified, and re-encoded with our builder.

use std::net::SocketAddr;

use proto::wire::{attr, long_term_key, Class, Message, MessageBuilder, Method};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

const SHORT_TERM_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const TID: [u8; 12] = [0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae];

/// §2.1 Sample Request.
fn request() -> Vec<u8> {
    hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
         00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36
         00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
         00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
         80 28 00 04 e5 7a 3b cf")
}

/// §2.2 Sample IPv4 Response.
fn ipv4_response() -> Vec<u8> {
    hex("01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 08 00 01 a1 47 e1 12 a6 43
         00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
         80 28 00 04 c0 7d 4c 96")
}

/// §2.3 Sample IPv6 Response.
fn ipv6_response() -> Vec<u8> {
    hex("01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
         00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
         80 28 00 04 c8 fb 0b 4c")
}

/// §2.4 Sample Request with Long-Term Authentication.
fn long_term_request() -> Vec<u8> {
    hex("00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
         00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
         00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
         00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
         00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66")
}

/// Re-encodes a Binding message with the same header and the given
/// attributes, then integrity with `key` and (optionally) a fingerprint.
fn reencode(class: Class, tid: &[u8; 12], attrs: &[(u16, &[u8])], key: &[u8], fingerprint: bool) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let mut b = MessageBuilder::new(&mut buf, proto::wire::MessageType::new(Method::BINDING, class), tid).unwrap();
    for (t, v) in attrs {
        b.add_bytes(*t, v).unwrap();
    }
    b.add_message_integrity(key).unwrap();
    if fingerprint {
        b.add_fingerprint().unwrap();
    }
    let n = b.finish();
    buf[..n].to_vec()
}

#[test]
fn sample_request() {
    let bytes = request();
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.message_type().method, Method::BINDING);
    assert_eq!(m.message_type().class, Class::Request);
    assert_eq!(m.transaction_id(), TID);
    assert_eq!(m.get(attr::SOFTWARE), Some(&b"STUN test client"[..]));
    assert_eq!(m.get(attr::USERNAME), Some(&b"evtj:h6vY"[..]));
    assert_eq!(m.get(attr::PRIORITY), Some(&[0x6e, 0x00, 0x01, 0xff][..]));
    assert!(m.fingerprint_ok());
    assert!(m.verify_integrity(SHORT_TERM_PASSWORD));
    assert!(!m.verify_integrity(b"wrong password"));

    // The RFC pads USERNAME with spaces (receivers must ignore padding);
    // our builder pads with zeros, so compare after zeroing that padding.
    let again = reencode(
        Class::Request,
        &TID,
        &[
            (attr::SOFTWARE, b"STUN test client"),
            (attr::PRIORITY, &[0x6e, 0x00, 0x01, 0xff]),
            (attr::ICE_CONTROLLED, &[0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36]),
            (attr::USERNAME, b"evtj:h6vY"),
        ],
        SHORT_TERM_PASSWORD,
        true,
    );
    assert_eq!(again.len(), bytes.len());
    assert_eq!(again[..73], bytes[..73]);
    assert_eq!(again[73..76], [0, 0, 0], "zero padding where the RFC used spaces");
    let m2 = Message::parse(&again).unwrap();
    assert!(m2.fingerprint_ok());
    assert!(m2.verify_integrity(SHORT_TERM_PASSWORD));
}

#[test]
fn sample_ipv4_response() {
    let bytes = ipv4_response();
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.message_type().class, Class::Success);
    assert!(m.fingerprint_ok());
    assert!(m.verify_integrity(SHORT_TERM_PASSWORD));
    assert_eq!(m.get(attr::SOFTWARE), Some(&b"test vector"[..]));
    let addr = attr::decode_address(m.get(attr::XOR_MAPPED_ADDRESS).unwrap(), Some(&TID)).unwrap();
    assert_eq!(addr, "192.0.2.1:32853".parse::<SocketAddr>().unwrap());
    check_reencoded_response(&bytes, addr);
}

#[test]
fn sample_ipv6_response() {
    let bytes = ipv6_response();
    let m = Message::parse(&bytes).unwrap();
    assert!(m.fingerprint_ok());
    assert!(m.verify_integrity(SHORT_TERM_PASSWORD));
    let addr = attr::decode_address(m.get(attr::XOR_MAPPED_ADDRESS).unwrap(), Some(&TID)).unwrap();
    assert_eq!(
        addr,
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse::<SocketAddr>()
            .unwrap()
    );
    check_reencoded_response(&bytes, addr);
}

/// Re-encodes SOFTWARE + XOR-MAPPED-ADDRESS + MESSAGE-INTEGRITY + FINGERPRINT
/// and checks the XOR-MAPPED-ADDRESS bytes match the RFC exactly.
fn check_reencoded_response(rfc: &[u8], addr: SocketAddr) {
    let mut buf = [0u8; 256];
    let mut b = MessageBuilder::new(
        &mut buf,
        proto::wire::MessageType::new(Method::BINDING, Class::Success),
        &TID,
    )
    .unwrap();
    b.add_bytes(attr::SOFTWARE, b"test vector").unwrap();
    b.add_xor_address(attr::XOR_MAPPED_ADDRESS, addr).unwrap();
    b.add_message_integrity(SHORT_TERM_PASSWORD).unwrap();
    b.add_fingerprint().unwrap();
    let n = b.finish();
    assert_eq!(n, rfc.len());
    // Header, SOFTWARE header and value, XOR-MAPPED-ADDRESS: identical
    // (only SOFTWARE's one padding byte differs: the RFC uses a space).
    assert_eq!(buf[..35], rfc[..35]);
    let xma = 36..36 + 4 + attr::address_len(&addr);
    assert_eq!(buf[xma.clone()], rfc[xma]);
    let m = Message::parse(&buf[..n]).unwrap();
    assert!(m.fingerprint_ok());
    assert!(m.verify_integrity(SHORT_TERM_PASSWORD));
}

#[test]
fn sample_long_term_request() {
    let bytes = long_term_request();
    let m = Message::parse(&bytes).unwrap();
    let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
    assert_eq!(m.get(attr::USERNAME), Some(username.as_bytes()));
    assert_eq!(m.get(attr::NONCE), Some(&b"f//499k954d6OL34oL9FSTvy64sA"[..]));
    assert_eq!(m.get(attr::REALM), Some(&b"example.org"[..]));
    assert!(!m.has_fingerprint());
    // The password "TheM\u{00AA}tr\u{2168}" is "TheMatrIX" after SASLprep/OpaqueString.
    let key = long_term_key(username, "example.org", "TheMatrIX");
    assert!(m.verify_integrity(&key));
    assert!(!m.verify_integrity(&long_term_key(username, "example.org", "thematrix")));

    // This sample pads with zeros, so our re-encoding is byte-exact.
    let mut tid = [0u8; 12];
    tid.copy_from_slice(&bytes[8..20]);
    let again = reencode(
        Class::Request,
        &tid,
        &[
            (attr::USERNAME, username.as_bytes()),
            (attr::NONCE, b"f//499k954d6OL34oL9FSTvy64sA"),
            (attr::REALM, b"example.org"),
        ],
        &key,
        false,
    );
    assert_eq!(again, bytes);
}

#[test]
fn tampering_is_detected() {
    let mut bytes = request();
    bytes[30] ^= 0x01; // inside SOFTWARE
    let m = Message::parse(&bytes).unwrap();
    assert!(!m.fingerprint_ok());
    assert!(!m.verify_integrity(SHORT_TERM_PASSWORD));
}
