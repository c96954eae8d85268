//! `Server::handle_client` on arbitrary bytes: no panic, and every reply is a
//! well-formed response to the request it answers, no larger than the request
//! when it carries a reason phrase (no amplification).

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use proto::wire::{attr, Class, ErrorCode, Message, MessageType, ParseError};
use proto::{ClientAddr, DropReason, FiveTuple, Output, Server, ServerAddr, ServerConfig, Transport};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let tuple = FiveTuple {
        client: ClientAddr("198.51.100.7:40000".parse().unwrap()),
        server: ServerAddr("192.0.2.10:3478".parse().unwrap()),
        transport: Transport::Udp,
    };
    let mut server = Server::new(ServerConfig {
        software: Some("ternd".into()),
        ..ServerConfig::default()
    });
    let mut out = [0u8; 1500];
    // A full buffer, then one too small for most replies.
    for out_len in [out.len(), data.len() % 48] {
        let out = &mut out[..out_len];
        match server.handle_client(now, tuple, data, out) {
            Output::Reply(n) => {
                assert!(n <= out_len);
                check_reply(tuple, data, &out[..n]);
            }
            Output::Nothing => {
                let m = Message::parse(data).expect("only a valid message needs no answer");
                assert_eq!(m.message_type().class, Class::Indication);
            }
            Output::Drop(reason) => {
                // 0b01 first bits are ChannelData, which has reasons of its own.
                let channel_data = data.first().is_some_and(|b| b & 0xC0 == 0x40);
                if let (false, Err(ParseError::Header(e))) = (channel_data, Message::parse(data)) {
                    assert_eq!(reason, DropReason::from(e));
                }
            }
            Output::ToPeer { .. } => panic!("no allocation exists, so nothing may be relayed"),
        }
    }
});

fn check_reply(tuple: FiveTuple, request: &[u8], reply: &[u8]) {
    let request_type = MessageType::from_u16(u16::from_be_bytes([request[0], request[1]]));
    assert_eq!(request_type.class, Class::Request);
    let m = Message::parse(reply).expect("a reply parses");
    assert_eq!(m.transaction_id()[..], request[8..20]);
    assert!(m.fingerprint_ok());
    match m.message_type().class {
        Class::Success => {
            assert_eq!(m.message_type(), request_type.response(true));
            let value = m.get(attr::XOR_MAPPED_ADDRESS).expect("XOR-MAPPED-ADDRESS");
            assert_eq!(
                attr::decode_address(value, Some(&m.transaction_id())),
                Ok(tuple.client.0)
            );
        }
        Class::Error => {
            assert_eq!(m.message_type(), request_type.response(false));
            let (code, reason) = ErrorCode::decode(m.get(attr::ERROR_CODE).expect("ERROR-CODE")).unwrap();
            // TURN requests without valid credentials are challenged (RFC 8489
            // §9.2.4): 401 or 438 with REALM and NONCE, as the RFC requires.
            if code == ErrorCode::UNAUTHENTICATED || code == ErrorCode::STALE_NONCE {
                assert_ne!(request_type.method, proto::wire::Method::BINDING);
                assert!(m.get(attr::REALM).is_some() && m.get(attr::NONCE).is_some());
                return;
            }
            assert!(
                code == ErrorCode::BAD_REQUEST || code == ErrorCode::UNKNOWN_ATTRIBUTE,
                "{code:?}"
            );
            if !reason.is_empty() {
                assert!(reply.len() <= request.len());
            }
            if code == ErrorCode::UNKNOWN_ATTRIBUTE {
                let listed = m.get(attr::UNKNOWN_ATTRIBUTES).expect("UNKNOWN-ATTRIBUTES");
                for t in listed.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])) {
                    assert!(t < 0x8000 && !attr::is_comprehension_required_known(t));
                }
            }
        }
        class => panic!("reply of class {class:?}"),
    }
}
