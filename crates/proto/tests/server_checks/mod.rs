//! What the server must do with any input, checked the same way by the
//! property test (`random_input.rs`) and the `server` fuzz target (which
//! includes this file by path): a drop is counted with the header's reason,
//! only a Binding indication needs no answer, nothing is relayed without an
//! allocation, and every reply is a well-formed response to its request,
//! challenged (401/438) or no larger than the request when it carries a
//! reason phrase (no amplification).

use std::time::Instant;

use proto::wire::{attr, Class, ErrorCode, Message, MessageType, Method, ParseError};
use proto::{DropReason, FiveTuple, Output, Server};

/// Feeds `data` to the server and checks what comes back.
pub fn check_server(server: &mut Server, now: Instant, tuple: FiveTuple, data: &[u8], out: &mut [u8]) -> Output {
    let drops_before = server.stats().drops.total();
    let output = server.handle_client(now, tuple, data, out);
    match output {
        Output::Drop(reason) => {
            assert_eq!(server.stats().drops.total(), drops_before + 1);
            // 0b01 first bits are ChannelData, which has reasons of its own.
            let channel_data = data.first().is_some_and(|b| b & 0xC0 == 0x40);
            if let (false, Err(ParseError::Header(e))) = (channel_data, Message::parse(data)) {
                assert_eq!(reason, DropReason::from(e));
            }
        }
        Output::Nothing => {
            let m = Message::parse(data).expect("only a valid message needs no answer");
            assert_eq!(m.message_type(), MessageType::new(Method::BINDING, Class::Indication));
        }
        Output::Reply(n) | Output::ReplyFrom { len: n, .. } => {
            assert!(n <= out.len());
            check_reply(tuple, data, &out[..n]);
        }
        Output::ToPeer { .. } => panic!("no allocation exists, so nothing may be relayed"),
    }
    output
}

/// A reply answers a request: same method and transaction id, a response
/// class, a correct FINGERPRINT if any, and no amplification in errors.
fn check_reply(tuple: FiveTuple, request: &[u8], reply: &[u8]) {
    let request_type = MessageType::from_u16(u16::from_be_bytes([request[0], request[1]]));
    assert_eq!(request_type.class, Class::Request);
    let m = Message::parse(reply).expect("a reply parses");
    assert_eq!(m.transaction_id()[..], request[8..20]);
    assert!(m.fingerprint_ok());
    // Nothing here authenticates: no reply may amplify (DESIGN.md §10).
    assert!(
        proto::amplification::within_bound(request.len(), reply.len()),
        "{} byte reply to {} bytes",
        reply.len(),
        request.len()
    );
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
            // 437: an unsigned request on a 5-tuple with no allocation.
            assert!(
                code == ErrorCode::BAD_REQUEST
                    || code == ErrorCode::UNKNOWN_ATTRIBUTE
                    || code == ErrorCode::ALLOCATION_MISMATCH,
                "{code:?}"
            );
            if !reason.is_empty() {
                assert!(
                    reply.len() <= request.len(),
                    "{} byte error for {}",
                    reply.len(),
                    request.len()
                );
            }
            if code == ErrorCode::UNKNOWN_ATTRIBUTE {
                let listed = m.get(attr::UNKNOWN_ATTRIBUTES).expect("UNKNOWN-ATTRIBUTES");
                assert!(!listed.is_empty() && listed.len() <= 32);
                for t in listed.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])) {
                    assert!(
                        t < 0x8000 && !attr::is_comprehension_required_known(t),
                        "{t:#06x} listed"
                    );
                }
            }
        }
        class => panic!("reply of class {class:?}"),
    }
}
