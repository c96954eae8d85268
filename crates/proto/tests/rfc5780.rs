//! RFC 5780 NAT behaviour discovery on the pure core: OTHER-ADDRESS and
//! RESPONSE-ORIGIN in Binding responses, CHANGE-REQUEST answered from the
//! asked address, and none of it when not configured or off the Binding path.

mod common;

use std::net::SocketAddr;

use common::*;
use proto::nat_discovery::NatDiscovery;
use proto::wire::{attr, Class, MessageType, Method, TransactionId};
use proto::{Output, Server, ServerAddr, ServerConfig, Transport};

const TID: TransactionId = *b"rfc5780-test";
const BINDING: MessageType = MessageType::new(Method::BINDING, Class::Request);
const ALLOCATE: MessageType = MessageType::new(Method::ALLOCATE, Class::Request);
const PRIMARY: &str = "192.0.2.1:3478";
const ALTERNATE: &str = "192.0.2.2:3479";
const CLIENT: &str = "198.51.100.7:40000";

fn server(discovery: bool) -> Server {
    let nat_discovery = discovery.then(|| NatDiscovery {
        primary: addr(PRIMARY),
        alternate: addr(ALTERNATE),
    });
    Server::new(ServerConfig {
        nat_discovery,
        ..ServerConfig::default()
    })
}

fn change(flags: u32) -> A {
    A::Bytes(attr::CHANGE_REQUEST, flags.to_be_bytes().to_vec())
}

/// Sends `attrs` in a request of type `ty` to `local` over `transport`.
fn send(s: &mut Server, ty: MessageType, local: &str, transport: Transport, attrs: &[A]) -> (Output, Resp) {
    let mut t = tuple(CLIENT, transport);
    t.server = ServerAddr(addr(local));
    let request = build(ty, &TID, attrs, None);
    let mut out = vec![0u8; 1500];
    let output = s.handle_client(start(), t, &request, &mut out);
    let len = match output {
        Output::Reply(n) | Output::ReplyFrom { len: n, .. } => n,
        other => panic!("no reply: {other:?}"),
    };
    let reply = Resp(out[..len].to_vec());
    assert!(
        proto::amplification::within_bound(request.len(), len),
        "{len} bytes answer {}",
        request.len()
    );
    (output, reply)
}

fn plain_addr(r: &Resp, typ: u16) -> Option<SocketAddr> {
    r.get(typ).map(|v| attr::decode_address(&v, None).unwrap())
}

// RFC 5780 §7.3: the response carries OTHER-ADDRESS (the other IP and the
// other port) and RESPONSE-ORIGIN (where it is sent from).
#[test]
fn binding_carries_other_address_and_response_origin_rfc5780_7_3() {
    let mut s = server(true);
    let (output, r) = send(&mut s, BINDING, PRIMARY, Transport::Udp, &[change(0)]);
    assert!(matches!(output, Output::Reply(_)), "{output:?}");
    assert_eq!(r.code(), None);
    assert_eq!(r.xor_addr(attr::XOR_MAPPED_ADDRESS), Some(addr(CLIENT)));
    assert_eq!(plain_addr(&r, attr::OTHER_ADDRESS), Some(addr(ALTERNATE)));
    assert_eq!(plain_addr(&r, attr::RESPONSE_ORIGIN), Some(addr(PRIMARY)));
    // From the alternate IP with the primary port, the other address is the
    // primary IP with the alternate port.
    let (_, r) = send(&mut s, BINDING, "192.0.2.2:3478", Transport::Udp, &[change(0)]);
    assert_eq!(plain_addr(&r, attr::OTHER_ADDRESS), Some(addr("192.0.2.1:3479")));
}

// RFC 5780 §7.2/§7.3: change IP (0x4), change port (0x2), or both: the
// response leaves from that address, and RESPONSE-ORIGIN says so.
#[test]
fn change_request_answers_from_the_asked_address_rfc5780_7_2() {
    let mut s = server(true);
    for (flags, from) in [(4, "192.0.2.2:3478"), (2, "192.0.2.1:3479"), (6, ALTERNATE)] {
        let (output, r) = send(&mut s, BINDING, PRIMARY, Transport::Udp, &[change(flags)]);
        assert_eq!(
            output,
            Output::ReplyFrom {
                len: r.0.len(),
                from: addr(from)
            },
            "flags {flags}"
        );
        assert_eq!(plain_addr(&r, attr::RESPONSE_ORIGIN), Some(addr(from)));
        assert_eq!(plain_addr(&r, attr::OTHER_ADDRESS), Some(addr(ALTERNATE)));
    }
}

// A bare 20-byte Binding gets OTHER-ADDRESS but not RESPONSE-ORIGIN too: the
// reply stays within the unauthenticated amplification bound.
#[test]
fn a_bare_binding_stays_within_the_amplification_bound() {
    let mut s = server(true);
    let mut t = tuple(CLIENT, Transport::Udp);
    t.server = ServerAddr(addr(PRIMARY));
    let mut request = vec![0u8; 20];
    request[1] = 1;
    request[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    request[8..20].copy_from_slice(&TID);
    let mut out = vec![0u8; 1500];
    let Output::Reply(n) = s.handle_client(start(), t, &request, &mut out) else {
        panic!("no reply")
    };
    assert!(proto::amplification::within_bound(20, n));
    let m = proto::wire::Message::parse(&out[..n]).unwrap();
    assert!(m.get(attr::OTHER_ADDRESS).is_some());
    assert!(m.get(attr::RESPONSE_ORIGIN).is_none());
}

// Without RFC 5780 configured, on TCP, on an address outside the four, and
// on the TURN allocation path, CHANGE-REQUEST stays an unknown
// comprehension-required attribute: 420 (RFC 8489 §6.3.1), no extra attributes.
#[test]
fn change_request_elsewhere_gets_420() {
    let mut off = server(false);
    let (_, r) = send(&mut off, BINDING, PRIMARY, Transport::Udp, &[change(6)]);
    assert_eq!(r.code(), Some(420));
    let (_, r) = send(&mut off, BINDING, PRIMARY, Transport::Udp, &[]);
    assert_eq!((r.code(), r.get(attr::OTHER_ADDRESS)), (None, None));
    let mut on = server(true);
    let (_, r) = send(&mut on, BINDING, PRIMARY, Transport::Tcp, &[change(6)]);
    assert_eq!(r.code(), Some(420));
    let (_, r) = send(&mut on, BINDING, "192.0.2.9:3478", Transport::Udp, &[change(6)]);
    assert_eq!(r.code(), Some(420));
    let (output, r) = send(
        &mut on,
        ALLOCATE,
        PRIMARY,
        Transport::Udp,
        &[transport_udp(), change(6)],
    );
    assert!(matches!(output, Output::Reply(_)));
    assert_eq!(r.code(), Some(420));
    assert_eq!(r.get(attr::UNKNOWN_ATTRIBUTES), Some(vec![0, 3]));
}

// Answers from another address are charged to the unauthenticated budget.
#[test]
fn change_requests_are_charged_to_the_unauthenticated_budget() {
    let mut s = Server::new(ServerConfig {
        nat_discovery: Some(NatDiscovery {
            primary: addr(PRIMARY),
            alternate: addr(ALTERNATE),
        }),
        unauthenticated_rate: 2,
        ..ServerConfig::default()
    });
    let mut t = tuple(CLIENT, Transport::Udp);
    t.server = ServerAddr(addr(PRIMARY));
    let request = build(BINDING, &TID, &[change(6)], None);
    let now = start();
    let outputs: Vec<Output> = (0..20)
        .map(|_| s.handle_client(now, t, &request, &mut [0u8; 1500]))
        .collect();
    let dropped = outputs
        .iter()
        .filter(|o| **o == Output::Drop(proto::DropReason::RateLimited))
        .count();
    assert!(dropped >= 15, "{outputs:?}");
}
