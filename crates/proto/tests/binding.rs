//! Scenario tests for the Binding method on the pure core (RFC 8489 §3, §6.3):
//! what `Server::handle_client` answers, and what it drops, for each kind of input.

use std::net::SocketAddr;
use std::time::Instant;

use proto::wire::{attr, Class, ErrorCode, Message, MessageBuilder, MessageType, Method, TransactionId};
use proto::{canonical, ClientAddr, DropReason, FiveTuple, Output, Server, ServerAddr, ServerConfig, Transport};

const TID: TransactionId = *b"ternd-test-1";
const BINDING_REQUEST: MessageType = MessageType::new(Method::BINDING, Class::Request);
const BINDING_INDICATION: MessageType = MessageType::new(Method::BINDING, Class::Indication);
const BINDING_SUCCESS: MessageType = MessageType::new(Method::BINDING, Class::Success);
/// `proto::wire::message::MAX_ATTRIBUTES`, which the crate does not export.
const MAX_ATTRIBUTES: usize = 128;
/// Header plus ERROR-CODE with an empty reason phrase: the smallest error response.
const BARE_ERROR_LEN: usize = 20 + 8;
/// Bytes the core must leave alone outside the reply it reports.
const SENTINEL: u8 = 0xA5;

/// One client talking to one server, at one fixed instant: Binding has no timers.
struct Harness {
    server: Server,
    now: Instant,
    tuple: FiveTuple,
}

impl Harness {
    fn new(config: ServerConfig, client: &str) -> Self {
        let client: SocketAddr = client.parse().unwrap();
        let server: SocketAddr = if client.is_ipv4() {
            "192.0.2.10:3478"
        } else {
            "[2001:db8::10]:3478"
        }
        .parse()
        .unwrap();
        // The test stands in for the driver, the one place that reads the clock.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Harness {
            server: Server::new(config),
            now,
            tuple: FiveTuple {
                client: ClientAddr(client),
                server: ServerAddr(server),
                transport: Transport::Udp,
            },
        }
    }

    fn v4() -> Self {
        Harness::new(ServerConfig::default(), "198.51.100.7:40000")
    }

    /// Feeds `data` with an output buffer of `out_len` bytes and checks that
    /// nothing past the reported reply was written.
    fn send_with(&mut self, data: &[u8], out_len: usize) -> (Output, Vec<u8>) {
        let mut out = vec![SENTINEL; out_len];
        let output = self.server.handle_client(self.now, self.tuple, data, &mut out);
        let n = match output {
            Output::Reply(n) => n,
            _ => 0,
        };
        assert!(n <= out_len, "reply of {n} bytes in a {out_len}-byte buffer");
        // A reply that did not fit may have been half written: the buffer is scratch.
        if output != Output::Drop(DropReason::ReplyTooLarge) {
            assert!(
                out[n..].iter().all(|&b| b == SENTINEL),
                "{output:?} wrote past its reply"
            );
        }
        (output, out[..n].to_vec())
    }

    fn send(&mut self, data: &[u8]) -> (Output, Vec<u8>) {
        self.send_with(data, 1500)
    }

    fn reply(&mut self, data: &[u8]) -> Vec<u8> {
        match self.send(data) {
            (Output::Reply(_), reply) => reply,
            (other, _) => panic!("expected a reply, got {other:?}"),
        }
    }

    /// Asserts `data` is dropped for `reason`, counted once, and not answered.
    fn expect_drop(&mut self, data: &[u8], reason: DropReason) {
        let before = self.server.stats().clone();
        let (output, _) = self.send(data);
        assert_eq!(output, Output::Drop(reason), "input {data:02x?}");
        let after = self.server.stats();
        assert_eq!(after.drops.get(reason), before.drops.get(reason) + 1);
        assert_eq!(after.drops.total(), before.drops.total() + 1);
        assert_eq!(after.binding_success(), before.binding_success());
        assert_eq!(after.error_responses(), before.error_responses());
    }

    /// A fresh, valid Binding request still gets its mapped address.
    fn assert_binding_works(&mut self) {
        let reply = self.reply(&binding_request(false));
        let m = Message::parse(&reply).unwrap();
        assert_eq!(m.message_type(), BINDING_SUCCESS);
        assert_eq!(mapped_address(&m), self.tuple.client.0);
    }
}

fn message(ty: MessageType, attrs: &[(u16, &[u8])], fingerprint: bool) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let mut b = MessageBuilder::new(&mut buf, ty, &TID).unwrap();
    for (t, v) in attrs {
        b.add_bytes(*t, v).unwrap();
    }
    if fingerprint {
        b.add_fingerprint().unwrap();
    }
    let n = b.finish();
    buf.truncate(n);
    buf
}

fn binding_request(fingerprint: bool) -> Vec<u8> {
    message(BINDING_REQUEST, &[], fingerprint)
}

fn mapped_address(m: &Message<'_>) -> SocketAddr {
    let value = m.get(attr::XOR_MAPPED_ADDRESS).expect("XOR-MAPPED-ADDRESS");
    attr::decode_address(value, Some(&m.transaction_id())).unwrap()
}

/// The code and reason phrase of an error response answering `request`.
fn error_of(reply: &[u8], request: MessageType) -> (ErrorCode, String) {
    let m = Message::parse(reply).unwrap();
    assert_eq!(m.message_type(), request.response(false));
    assert_eq!(m.transaction_id(), TID);
    assert!(m.fingerprint_ok());
    let (code, reason) = ErrorCode::decode(m.get(attr::ERROR_CODE).expect("ERROR-CODE")).unwrap();
    (code, String::from_utf8(reason.to_vec()).unwrap())
}

/// Sets the header length field (bytes 2..4).
fn set_length(msg: &mut [u8], len: u16) {
    msg[2..4].copy_from_slice(&len.to_be_bytes());
}

// RFC 8489 §6.3.1.1: the success response carries XOR-MAPPED-ADDRESS.

#[test]
fn binding_ipv4_maps_the_client_address() {
    let mut h = Harness::v4();
    let reply = h.reply(&binding_request(false));
    // Header + XOR-MAPPED-ADDRESS (4 + 8), nothing else.
    assert_eq!(reply.len(), 32);
    let m = Message::parse(&reply).unwrap();
    assert_eq!(m.message_type(), BINDING_SUCCESS);
    assert_eq!(m.transaction_id(), TID);
    assert_eq!(m.get(attr::XOR_MAPPED_ADDRESS).unwrap().len(), 8);
    assert_eq!(mapped_address(&m), "198.51.100.7:40000".parse::<SocketAddr>().unwrap());
    assert!(!m.has_fingerprint());
    assert_eq!(m.get(attr::SOFTWARE), None);
    assert_eq!(h.server.stats().binding_success(), 1);
    assert_eq!(h.server.stats().drops.total(), 0);
}

#[test]
fn binding_ipv6_maps_the_client_address() {
    let mut h = Harness::new(ServerConfig::default(), "[2001:db8:1234::5]:61000");
    let reply = h.reply(&binding_request(false));
    assert_eq!(reply.len(), 20 + 4 + 20);
    let m = Message::parse(&reply).unwrap();
    assert_eq!(m.message_type(), BINDING_SUCCESS);
    assert_eq!(m.transaction_id(), TID);
    assert_eq!(
        mapped_address(&m),
        "[2001:db8:1234::5]:61000".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn ipv4_mapped_client_is_reported_as_ipv4_once_canonical() {
    let mapped: SocketAddr = "[::ffff:203.0.113.9]:5000".parse().unwrap();
    let v4: SocketAddr = "203.0.113.9:5000".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::9]:5000".parse().unwrap();
    assert_eq!(canonical(mapped), v4);
    assert_eq!(canonical(v4), v4);
    assert_eq!(canonical(v6), v6);

    // The driver canonicalises a dual-stack socket's source address before
    // calling the core, so the client learns its real (IPv4) address.
    let mut h = Harness::new(ServerConfig::default(), "[::ffff:203.0.113.9]:5000");
    h.tuple.client = ClientAddr(canonical(h.tuple.client.0));
    let reply = h.reply(&binding_request(false));
    let m = Message::parse(&reply).unwrap();
    assert_eq!(m.get(attr::XOR_MAPPED_ADDRESS).unwrap().len(), 8, "IPv4 family");
    assert_eq!(mapped_address(&m), v4);

    // The core itself reports exactly the address it is given.
    let mut h = Harness::new(ServerConfig::default(), "[::ffff:203.0.113.9]:5000");
    let reply = h.reply(&binding_request(false));
    assert_eq!(mapped_address(&Message::parse(&reply).unwrap()), mapped);
}

#[test]
fn fingerprint_in_reply_iff_in_request() {
    let mut h = Harness::v4();
    let reply = h.reply(&binding_request(true));
    assert_eq!(reply.len(), 32 + 8);
    let m = Message::parse(&reply).unwrap();
    assert!(m.has_fingerprint());
    assert!(m.fingerprint_ok());
    assert_eq!(m.transaction_id(), TID);
    // FINGERPRINT is the last attribute (parse refuses it elsewhere).
    assert_eq!(u16::from_be_bytes([reply[32], reply[33]]), attr::FINGERPRINT);

    let reply = h.reply(&binding_request(false));
    assert!(!Message::parse(&reply).unwrap().has_fingerprint());
}

#[test]
fn transaction_id_is_echoed() {
    let mut h = Harness::v4();
    for i in 0..=255u8 {
        let tid = [i, 0, 0xFF, i, 1, 2, 3, 4, 5, 6, 7, i ^ 0x5A];
        let mut buf = [0u8; 20];
        let n = MessageBuilder::new(&mut buf, BINDING_REQUEST, &tid).unwrap().finish();
        let reply = h.reply(&buf[..n]);
        let m = Message::parse(&reply).unwrap();
        assert_eq!(m.transaction_id(), tid);
        // The XOR with the transaction id is undone with the same id.
        assert_eq!(mapped_address(&m), h.tuple.client.0);
    }
    assert_eq!(h.server.stats().binding_success(), 256);
}

#[test]
fn software_only_when_configured() {
    let config = ServerConfig {
        software: Some("ternd test".into()),
        ..ServerConfig::default()
    };
    let mut h = Harness::new(config, "198.51.100.7:40000");
    let reply = h.reply(&binding_request(true));
    // XOR-MAPPED-ADDRESS, SOFTWARE (4 + 10 + 2 padding), FINGERPRINT.
    assert_eq!(reply.len(), 32 + 16 + 8);
    let m = Message::parse(&reply).unwrap();
    assert_eq!(m.get(attr::SOFTWARE), Some(&b"ternd test"[..]));
    assert!(m.fingerprint_ok());

    let mut h = Harness::v4();
    let reply = h.reply(&binding_request(true));
    assert_eq!(Message::parse(&reply).unwrap().get(attr::SOFTWARE), None);
}

#[test]
fn ice_connectivity_check_gets_success() {
    // RFC 5769 §2.1: SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME,
    // MESSAGE-INTEGRITY, FINGERPRINT. The server ignores what it does not need.
    let request: Vec<u8> = "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
         00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36
         00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
         00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
         80 28 00 04 e5 7a 3b cf"
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let mut h = Harness::v4();
    let reply = h.reply(&request);
    let m = Message::parse(&reply).unwrap();
    assert_eq!(m.message_type(), BINDING_SUCCESS);
    assert_eq!(m.transaction_id()[..], request[8..20]);
    assert!(m.has_fingerprint() && m.fingerprint_ok());
    assert_eq!(mapped_address(&m), h.tuple.client.0);
}

// RFC 8489 §6.3.1: unknown comprehension-required attributes get 420.

#[test]
fn unknown_comprehension_required_gets_420_listing_each_once() {
    let mut h = Harness::v4();
    let request = message(
        BINDING_REQUEST,
        &[
            (0x0003, &[0, 0, 0, 4]), // CHANGE-REQUEST: unknown without RFC 5780 configured
            (attr::SOFTWARE, b"client"),
            (0x7777, b"x"),
            (0x0003, &[0, 0, 0, 2]),
            (0x8123, b"optional"),
            (0x7777, b""),
        ],
        true,
    );
    let reply = h.reply(&request);
    let (code, reason) = error_of(&reply, BINDING_REQUEST);
    assert_eq!(code, ErrorCode::UNKNOWN_ATTRIBUTE);
    assert_eq!(reason, "Unknown Attribute");
    let m = Message::parse(&reply).unwrap();
    assert_eq!(m.get(attr::UNKNOWN_ATTRIBUTES), Some(&[0x00, 0x03, 0x77, 0x77][..]));
    assert!(m.has_fingerprint() && m.fingerprint_ok());
    assert!(reply.len() <= request.len());
    assert_eq!(h.server.stats().error_responses(), 1);
    assert_eq!(h.server.stats().binding_success(), 0);
    h.assert_binding_works();
}

#[test]
fn at_most_sixteen_unknown_types_are_listed() {
    let mut h = Harness::v4();
    let types: Vec<u16> = (0x7000..0x7014).collect();
    let attrs: Vec<(u16, &[u8])> = types.iter().map(|&t| (t, &b""[..])).collect();
    let reply = h.reply(&message(BINDING_REQUEST, &attrs, false));
    assert_eq!(error_of(&reply, BINDING_REQUEST).0, ErrorCode::UNKNOWN_ATTRIBUTE);
    let listed: Vec<u16> = Message::parse(&reply)
        .unwrap()
        .get(attr::UNKNOWN_ATTRIBUTES)
        .unwrap()
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(listed, types[..16]);
}

#[test]
fn unknown_comprehension_optional_is_ignored() {
    let mut h = Harness::v4();
    let reply = h.reply(&message(BINDING_REQUEST, &[(0x8123, b"ignore me")], false));
    let m = Message::parse(&reply).unwrap();
    assert_eq!(m.message_type(), BINDING_SUCCESS);
    assert_eq!(mapped_address(&m), h.tuple.client.0);
}

#[test]
fn attributes_after_message_integrity_are_ignored() {
    // RFC 8489 §14.5: only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count after it.
    let mut buf = [0u8; 128];
    let mut b = MessageBuilder::new(&mut buf, BINDING_REQUEST, &TID).unwrap();
    b.add_message_integrity(b"key").unwrap();
    b.add_bytes(0x7777, b"late").unwrap();
    let n = b.finish();
    let mut h = Harness::v4();
    let reply = h.reply(&buf[..n]);
    assert_eq!(Message::parse(&reply).unwrap().message_type(), BINDING_SUCCESS);
}

// RFC 8489 §6.3: input that is not (valid) STUN is dropped silently and counted.

#[test]
fn empty_and_truncated_headers_are_too_short() {
    let mut h = Harness::v4();
    h.expect_drop(&[], DropReason::TooShort);
    let request = binding_request(false);
    for n in 1..20 {
        h.expect_drop(&request[..n], DropReason::TooShort);
    }
    assert_eq!(h.server.stats().drops.get(DropReason::TooShort), 20);
    h.assert_binding_works();
}

#[test]
fn wrong_magic_cookie_is_dropped() {
    let mut h = Harness::v4();
    let mut request = binding_request(false);
    request[4..8].copy_from_slice(&0x2112_A443u32.to_be_bytes());
    h.expect_drop(&request, DropReason::BadMagicCookie);
    // An RFC 3489 request: a random transaction id where the cookie goes.
    request[4..8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    h.expect_drop(&request, DropReason::BadMagicCookie);
    h.assert_binding_works();
}

#[test]
fn top_bits_set_is_not_stun() {
    let mut h = Harness::v4();
    for top in [0x80u8, 0xC0] {
        let mut request = binding_request(false);
        request[0] |= top;
        h.expect_drop(&request, DropReason::NotStun);
    }
    // 0b01 is ChannelData (RFC 8656 §12): with no allocation it is dropped as
    // such, and a length past the datagram is malformed ChannelData.
    let mut request = binding_request(false);
    request[0] |= 0x40;
    h.expect_drop(&request, DropReason::NoAllocation);
    h.expect_drop(&[0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4], DropReason::NoAllocation);
    h.expect_drop(&[0x40, 0x00, 0x00, 0x10, 0, 0, 0, 0], DropReason::ChannelData);
    assert_eq!(h.server.stats().drops.get(DropReason::NotStun), 2);
    h.assert_binding_works();
}

#[test]
fn header_length_must_be_a_multiple_of_4_and_match() {
    let mut h = Harness::v4();
    let base = message(BINDING_REQUEST, &[(attr::SOFTWARE, b"abcd")], false);
    // Not a multiple of 4, though it matches the datagram.
    let mut odd = base[..20].to_vec();
    odd.extend_from_slice(&[0, 0]);
    set_length(&mut odd, 2);
    h.expect_drop(&odd, DropReason::BadLength);
    // A multiple of 4 that claims more, or less, than was received.
    let mut long = base.clone();
    set_length(&mut long, 12);
    h.expect_drop(&long, DropReason::BadLength);
    let mut short = base.clone();
    set_length(&mut short, 4);
    h.expect_drop(&short, DropReason::BadLength);
    // Two messages in one datagram.
    let mut two = base.clone();
    two.extend_from_slice(&base);
    h.expect_drop(&two, DropReason::BadLength);
    assert_eq!(h.server.stats().drops.get(DropReason::BadLength), 4);
    h.assert_binding_works();
}

#[test]
fn bad_fingerprint_is_dropped() {
    let mut h = Harness::v4();
    let good = message(BINDING_REQUEST, &[(attr::SOFTWARE, b"client")], true);
    let mut bad_value = good.clone();
    *bad_value.last_mut().unwrap() ^= 1;
    h.expect_drop(&bad_value, DropReason::BadFingerprint);
    let mut bad_body = good.clone();
    bad_body[24] ^= 0x20; // inside SOFTWARE
    h.expect_drop(&bad_body, DropReason::BadFingerprint);
    let mut bad_tid = good.clone();
    bad_tid[19] ^= 0x01;
    h.expect_drop(&bad_tid, DropReason::BadFingerprint);
    assert_eq!(h.server.stats().error_responses(), 0);
    h.reply(&good);
}

#[test]
fn random_bytes_are_dropped() {
    let mut h = Harness::v4();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut data = [0u8; 128];
    let iterations = 20_000;
    for _ in 0..iterations {
        let n = (rng.next() % 129) as usize;
        for b in &mut data[..n] {
            *b = rng.next() as u8;
        }
        let input = &data[..n];
        let expected = if n > 0 && input[0] & 0xC0 == 0x40 {
            // ChannelData framing: complete frames name no allocation.
            let len = if n >= 4 {
                u16::from_be_bytes([input[2], input[3]]) as usize
            } else {
                usize::MAX
            };
            if n >= 4 && 4 + len <= n {
                DropReason::NoAllocation
            } else {
                DropReason::ChannelData
            }
        } else if n < 20 {
            DropReason::TooShort
        } else if input[0] & 0xC0 != 0 {
            DropReason::NotStun
        } else {
            // 2^-32 per input to hit the cookie: this seed never does.
            assert_ne!(input[4..8], [0x21, 0x12, 0xA4, 0x42]);
            DropReason::BadMagicCookie
        };
        h.expect_drop(input, expected);
    }
    assert_eq!(h.server.stats().drops.total(), iterations);
    h.assert_binding_works();
}

#[test]
fn malformed_response_or_indication_is_dropped() {
    let mut h = Harness::v4();
    for ty in [BINDING_SUCCESS, BINDING_INDICATION, BINDING_REQUEST.response(false)] {
        let mut msg = message(ty, &[(attr::SOFTWARE, b"abcd")], false);
        msg[22..24].copy_from_slice(&64u16.to_be_bytes()); // SOFTWARE overruns
        h.expect_drop(&msg, DropReason::MalformedNonRequest);
    }
    assert_eq!(h.server.stats().drops.get(DropReason::MalformedNonRequest), 3);
    h.assert_binding_works();
}

// Recognisably STUN but malformed requests get 400 (RFC 8489 §6.3.1). The
// reason phrase is left out when it would make the reply larger than the
// request; the bare 28-byte reply can still exceed a request shorter than that.

/// Asserts a 400 answering a Binding request, returns its reason phrase,
/// and checks that the server still answers a valid request afterwards.
fn expect_400(h: &mut Harness, request: &[u8]) -> String {
    let before = h.server.stats().clone();
    let reply = h.reply(request);
    let (code, reason) = error_of(&reply, BINDING_REQUEST);
    assert_eq!(code, ErrorCode::BAD_REQUEST);
    assert!(!Message::parse(&reply).unwrap().has_fingerprint());
    if reason.is_empty() {
        assert_eq!(reply.len(), BARE_ERROR_LEN);
    } else {
        assert_eq!(reason, "Bad Request");
        assert!(reply.len() <= request.len(), "{} > {}", reply.len(), request.len());
    }
    // Without the phrase the reply is the smallest error response there is.
    assert!(reply.len() <= request.len().max(BARE_ERROR_LEN));
    assert_eq!(h.server.stats().error_responses(), before.error_responses() + 1);
    assert_eq!(h.server.stats().drops.total(), before.drops.total());
    h.assert_binding_works();
    reason
}

#[test]
fn attribute_overrunning_the_message_gets_400() {
    let mut h = Harness::v4();
    // SOFTWARE (24 bytes) then an attribute header claiming 256 bytes.
    let mut big = message(
        BINDING_REQUEST,
        &[(attr::SOFTWARE, &[b'a'; 20]), (0x8123, b"abcd")],
        false,
    );
    big[46..48].copy_from_slice(&256u16.to_be_bytes());
    assert_eq!(big.len(), 52);
    assert_eq!(expect_400(&mut h, &big), "Bad Request");
    assert_eq!(h.reply(&big).len(), 40);

    // The smallest such request: one attribute header claiming 4 bytes.
    let mut tiny = binding_request(false);
    tiny.extend_from_slice(&[0x80, 0x22, 0x00, 0x04]);
    set_length(&mut tiny, 4);
    assert_eq!(expect_400(&mut h, &tiny), "");
}

#[test]
fn too_many_attributes_get_400() {
    let mut h = Harness::v4();
    let optional = |n: usize| -> Vec<(u16, &[u8])> { (0..n).map(|_| (0x8123, &b""[..])).collect() };
    // The limit counts every attribute, FINGERPRINT included.
    let at_limit = message(BINDING_REQUEST, &optional(MAX_ATTRIBUTES - 1), true);
    assert_eq!(
        Message::parse(&h.reply(&at_limit)).unwrap().message_type(),
        BINDING_SUCCESS
    );
    let over = message(BINDING_REQUEST, &optional(MAX_ATTRIBUTES), true);
    assert_eq!(expect_400(&mut h, &over), "Bad Request");

    // Thousands, built in a 64 KiB buffer, unknown comprehension-required
    // ones among them: refused as malformed (400) before being judged (420).
    let types = [0x8123, attr::SOFTWARE, 0x7777, attr::PRIORITY];
    let thousands: Vec<(u16, &[u8])> = (0..2000).map(|i| (types[i % 4], &b"ab"[..])).collect();
    let request = message(BINDING_REQUEST, &thousands, true);
    assert_eq!(request.len(), 20 + 2000 * 8 + 8);
    assert_eq!(expect_400(&mut h, &request), "Bad Request");
}

#[test]
fn fingerprint_not_last_gets_400() {
    let mut h = Harness::v4();
    let mut buf = [0u8; 64];
    let mut b = MessageBuilder::new(&mut buf, BINDING_REQUEST, &TID).unwrap();
    b.add_fingerprint().unwrap();
    b.add_bytes(attr::SOFTWARE, b"late").unwrap();
    let n = b.finish();
    assert_eq!(n, 36);
    // 28 + "Bad Request" (12) would be 40 > 36: the phrase is left out.
    assert_eq!(expect_400(&mut h, &buf[..n]), "");
}

#[test]
fn unknown_method_request_gets_400() {
    let mut h = Harness::v4();
    let ty = MessageType::new(Method(0x0FF), Class::Request);
    let reply = h.reply(&message(ty, &[], false));
    let (code, reason) = error_of(&reply, ty);
    assert_eq!(code, ErrorCode::BAD_REQUEST);
    // A 20-byte request: no room for the phrase in a 28-byte minimum.
    assert_eq!((reason.as_str(), reply.len()), ("", BARE_ERROR_LEN));

    let request = message(ty, &[(attr::SOFTWARE, b"a client with a long name")], true);
    let reply = h.reply(&request);
    assert_eq!(
        error_of(&reply, ty),
        (ErrorCode::BAD_REQUEST, "Bad Request".to_string())
    );
    assert!(Message::parse(&reply).unwrap().has_fingerprint());
    assert!(reply.len() <= request.len());
    assert_eq!(h.server.stats().error_responses(), 2);
    h.assert_binding_works();
}

// Indications and responses (RFC 8489 §6.3.2, §6.3.3).

#[test]
fn binding_indication_is_a_silent_keepalive() {
    let mut h = Harness::v4();
    for fingerprint in [false, true] {
        let (output, reply) = h.send(&message(BINDING_INDICATION, &[], fingerprint));
        assert_eq!(output, Output::Nothing);
        assert!(reply.is_empty());
    }
    let stats = h.server.stats();
    assert_eq!(
        (stats.drops.total(), stats.binding_success(), stats.error_responses()),
        (0, 0, 0)
    );

    h.expect_drop(
        &message(BINDING_INDICATION, &[(0x7777, b"")], false),
        DropReason::UnknownIndication,
    );
    // A Data indication only ever goes from server to client.
    let data_indication = MessageType::new(Method::DATA, Class::Indication);
    h.expect_drop(&message(data_indication, &[], false), DropReason::UnexpectedClass);
    // A Send indication with no allocation behind it.
    let send_indication = MessageType::new(Method::SEND, Class::Indication);
    h.expect_drop(&message(send_indication, &[], false), DropReason::NoAllocation);
}

#[test]
fn responses_sent_to_the_server_are_dropped() {
    let mut h = Harness::v4();
    h.expect_drop(&message(BINDING_SUCCESS, &[], false), DropReason::UnexpectedClass);
    h.expect_drop(&message(BINDING_SUCCESS, &[], true), DropReason::UnexpectedClass);
    // A reflected reply of the server's own.
    let reply = h.reply(&binding_request(true));
    h.expect_drop(&reply, DropReason::UnexpectedClass);
    let error = message(
        BINDING_REQUEST.response(false),
        &[(attr::ERROR_CODE, &[0, 0, 4, 0])],
        false,
    );
    h.expect_drop(&error, DropReason::UnexpectedClass);
    assert_eq!(h.server.stats().drops.get(DropReason::UnexpectedClass), 4);
}

#[test]
fn output_buffer_too_small_is_reply_too_large() {
    let mut h = Harness::v4();
    let request = binding_request(false);
    for out_len in [0, 1, 19, 20, 27, 31] {
        let (output, _) = h.send_with(&request, out_len);
        assert_eq!(output, Output::Drop(DropReason::ReplyTooLarge), "buffer of {out_len}");
    }
    assert_eq!(h.send_with(&request, 32).0, Output::Reply(32));
    assert_eq!(
        h.send_with(&binding_request(true), 39).0,
        Output::Drop(DropReason::ReplyTooLarge)
    );

    // Error responses too.
    let unknown = message(BINDING_REQUEST, &[(0x7777, b"")], false);
    assert_eq!(h.send_with(&unknown, 35).0, Output::Drop(DropReason::ReplyTooLarge));
    assert_eq!(h.send_with(&unknown, 36).0, Output::Reply(36));
    let mut overrun = binding_request(false);
    overrun.extend_from_slice(&[0x80, 0x22, 0x00, 0x04]);
    set_length(&mut overrun, 4);
    assert_eq!(h.send_with(&overrun, 27).0, Output::Drop(DropReason::ReplyTooLarge));

    let stats = h.server.stats();
    assert_eq!(stats.drops.get(DropReason::ReplyTooLarge), 9);
    assert_eq!(stats.binding_success(), 1);
    assert_eq!(stats.error_responses(), 1);
}

/// xorshift64: deterministic bytes without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
