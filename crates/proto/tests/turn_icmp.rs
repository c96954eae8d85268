//! RFC 8656 §11.5 "Receiving an ICMP Packet" and §18.13 (the ICMP
//! attribute): ICMP errors about relayed datagrams reach the client as Data
//! indications, only for peers it holds a permission for.

mod common;

use std::net::SocketAddr;

use common::*;
use proto::wire::{attr, Class, Icmp, Message, MessageType, Method};
use proto::{DropReason, FiveTuple, PeerIcmp};

const PORT_UNREACHABLE: PeerIcmp = PeerIcmp {
    typ: 3,
    code: 3,
    mtu: 0,
};

/// A driver with ICMP relaying on (`turn.relay_icmp`; off by default).
fn icmp_on() -> Driver {
    Driver::with(|c| c.relay_icmp = true)
}

fn dual(d: &mut Driver) -> Client {
    let mut c = Client::udp("198.51.100.1:40000");
    let r = d.allocate_with(&mut c, &[A::Bytes(attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
    r.assert_ok(Method::ALLOCATE, &c.key);
    c
}

/// The relay of `c`'s allocation whose family is that of `peer`.
fn relay_for(d: &Driver, c: &Client, peer: SocketAddr) -> proto::RelayId {
    let relays = d.relays_of(&c.tuple);
    relays
        .iter()
        .find(|(_, a)| a.is_ipv4() == peer.is_ipv4())
        .expect("a relay of the peer's family")
        .0
}

/// The Data indication of an ICMP error: (its 5-tuple, XOR-PEER-ADDRESS, ICMP).
#[track_caller]
fn icmp_indication(o: PeerOut) -> (FiveTuple, SocketAddr, Icmp) {
    let PeerOut::ToClient { tuple, bytes, .. } = o else {
        panic!("expected a Data indication, got {o:?}");
    };
    let m = Message::parse(&bytes).expect("the indication parses");
    assert_eq!(m.message_type(), MessageType::new(Method::DATA, Class::Indication));
    assert!(m.get(attr::DATA).is_none(), "an ICMP Data indication carries no DATA");
    let peer = Resp(bytes.clone())
        .xor_addr(attr::XOR_PEER_ADDRESS)
        .expect("XOR-PEER-ADDRESS");
    let icmp = Icmp::decode(m.get(attr::ICMP).expect("ICMP attribute")).expect("8-byte ICMP value");
    (tuple, peer, icmp)
}

#[test]
fn s11_5_port_unreachable_reaches_the_client_as_a_data_indication() {
    let mut d = icmp_on();
    let mut c = dual(&mut d);
    for p in [addr(PEER_A), addr(PEER_V6)] {
        d.create_permission(&mut c, &[p])
            .assert_ok(Method::CREATE_PERMISSION, &c.key);
    }
    let v4 = d.peer_icmp(relay_for(&d, &c, addr(PEER_A)), addr(PEER_A), PORT_UNREACHABLE);
    let (tuple, peer, icmp) = icmp_indication(v4);
    assert_eq!(
        (tuple, peer),
        (c.tuple, addr(PEER_A)),
        "sent on the allocation's 5-tuple"
    );
    assert_eq!((icmp.typ, icmp.code, icmp.error_data), (3, 3, 0));
    // ICMPv6 Destination Unreachable, port unreachable (type 1, code 4).
    let v6_icmp = PeerIcmp {
        typ: 1,
        code: 4,
        mtu: 0,
    };
    let (_, peer, icmp) = icmp_indication(d.peer_icmp(relay_for(&d, &c, addr(PEER_V6)), addr(PEER_V6), v6_icmp));
    assert_eq!(peer, addr(PEER_V6), "the port of the original destination is kept");
    assert_eq!((icmp.typ, icmp.code, icmp.error_data), (1, 4, 0));
    assert_eq!(d.server.stats().peer_icmp.relayed, 2);
}

/// §18.13: the error data is the next-hop MTU for ICMPv4 3/4 and ICMPv6 2,
/// and "MUST be set to zero" for every other type and code.
#[test]
fn s18_13_error_data_is_the_mtu_only_for_fragmentation_needed_and_packet_too_big() {
    let mut d = icmp_on();
    let mut c = dual(&mut d);
    for p in [addr(PEER_A), addr(PEER_V6)] {
        d.create_permission(&mut c, &[p])
            .assert_ok(Method::CREATE_PERMISSION, &c.key);
    }
    for (peer, typ, code, want) in [
        (PEER_A, 3, 4, 1400),
        (PEER_A, 3, 1, 0),
        (PEER_A, 11, 0, 0),
        (PEER_V6, 2, 0, 1280),
        (PEER_V6, 1, 0, 0),
        (PEER_V6, 3, 0, 0),
    ] {
        let mtu = if want == 0 { 1350 } else { want };
        let p = addr(peer);
        let o = d.peer_icmp(relay_for(&d, &c, p), p, PeerIcmp { typ, code, mtu });
        let (_, _, icmp) = icmp_indication(o);
        assert_eq!(
            (icmp.typ, u16::from(code), icmp.error_data),
            (typ, icmp.code, want),
            "{peer} type {typ} code {code}"
        );
    }
}

/// §11.5: only ICMPv4 types 3 and 11 and ICMPv6 types 1, 2 and 3 are
/// relayed; anything else is "silently dropped", and counted.
#[test]
fn s11_5_other_icmp_types_are_dropped() {
    let mut d = icmp_on();
    let mut c = dual(&mut d);
    for p in [addr(PEER_A), addr(PEER_V6)] {
        d.create_permission(&mut c, &[p])
            .assert_ok(Method::CREATE_PERMISSION, &c.key);
    }
    let cases = [
        (PEER_A, 0),
        (PEER_A, 1),
        (PEER_A, 4),
        (PEER_A, 5),
        (PEER_A, 12),
        (PEER_V6, 4),
        (PEER_V6, 128),
        (PEER_V6, 11),
    ];
    for (peer, typ) in cases {
        let p = addr(peer);
        let o = d.peer_icmp(relay_for(&d, &c, p), p, PeerIcmp { typ, code: 0, mtu: 0 });
        assert_eq!(o, PeerOut::Drop(DropReason::IcmpType), "{peer} type {typ}");
    }
    let stats = d.server.stats();
    assert_eq!(stats.peer_icmp.ignored_type, cases.len() as u64);
    assert_eq!(stats.drops.get(DropReason::IcmpType), cases.len() as u64);
    assert_eq!(stats.peer_icmp.relayed, 0);
}

/// §11.5: the permission is checked against the destination of the
/// datagram the error is about ("Note that only addresses are compared and
/// port numbers are not considered"); without one nothing reaches the client.
#[test]
fn s11_5_needs_a_permission_for_the_destination_ip() {
    let mut d = icmp_on();
    let mut c = dual(&mut d);
    let relay = relay_for(&d, &c, addr(PEER_A));
    assert_eq!(
        d.peer_icmp(relay, addr(PEER_A), PORT_UNREACHABLE),
        PeerOut::Drop(DropReason::NoPermission)
    );
    d.create_permission(&mut c, &[addr(PEER_A)])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    let other_port: SocketAddr = "93.184.216.34:5999".parse().unwrap();
    let (_, peer, _) = icmp_indication(d.peer_icmp(relay, other_port, PORT_UNREACHABLE));
    assert_eq!(peer, other_port);
    assert_eq!(
        d.peer_icmp(relay, addr(PEER_B), PORT_UNREACHABLE),
        PeerOut::Drop(DropReason::NoPermission),
        "another IP of the same allocation"
    );
    // Permissions last 300 s (§9); an ICMP error does not refresh one.
    d.advance(301);
    assert_eq!(
        d.peer_icmp(relay, addr(PEER_A), PORT_UNREACHABLE),
        PeerOut::Drop(DropReason::NoPermission)
    );
    assert_eq!(d.server.stats().peer_icmp.no_permission, 3);
}

/// §11.5: "If no such allocation exists, the packet is silently dropped."
#[test]
fn s11_5_without_an_allocation_it_is_dropped() {
    let mut d = icmp_on();
    let mut c = dual(&mut d);
    let relay = relay_for(&d, &c, addr(PEER_A));
    d.create_permission(&mut c, &[addr(PEER_A)])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    d.refresh(&mut c, Some(0)).assert_ok(Method::REFRESH, &c.key);
    assert_eq!(
        d.peer_icmp(relay, addr(PEER_A), PORT_UNREACHABLE),
        PeerOut::Drop(DropReason::UnknownRelay)
    );
    assert_eq!(
        d.peer_icmp(proto::RelayId(9999), addr(PEER_A), PORT_UNREACHABLE),
        PeerOut::Drop(DropReason::UnknownRelay)
    );
    assert_eq!(d.server.stats().peer_icmp.no_allocation, 2);
}

/// §11.5: "The Data indication MUST contain both an XOR-PEER-ADDRESS and an
/// ICMP attribute": with a channel bound to the peer too (ChannelData has no
/// room for it), and peer datagrams still go as ChannelData after it.
#[test]
fn s11_5_a_bound_channel_still_gets_a_data_indication() {
    let mut d = icmp_on();
    let mut c = dual(&mut d);
    d.channel_bind(&mut c, 0x4000, addr(PEER_A))
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    let relay = relay_for(&d, &c, addr(PEER_A));
    let (_, peer, icmp) = icmp_indication(d.peer_icmp(relay, addr(PEER_A), PORT_UNREACHABLE));
    assert_eq!((peer, icmp.typ, icmp.code), (addr(PEER_A), 3, 3));
    let PeerOut::ToClient { bytes, .. } = d.peer_datagram(relay, addr(PEER_A), b"after") else {
        panic!("the peer's datagram is still relayed");
    };
    assert_eq!(&bytes[..2], &0x4000u16.to_be_bytes(), "as ChannelData");
}

/// Over TCP the indication goes on the client's stream (its 5-tuple).
#[test]
fn s11_5_a_stream_client_gets_it_on_its_connection() {
    let mut d = icmp_on();
    let mut c = Client::new("198.51.100.7:40000", proto::Transport::Tcp, ALICE);
    d.allocate(&mut c);
    d.create_permission(&mut c, &[addr(PEER_A)])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    let relay = d.relay_of(&c.tuple);
    let (tuple, _, _) = icmp_indication(d.peer_icmp(relay, addr(PEER_A), PORT_UNREACHABLE));
    assert_eq!(tuple, c.tuple);
}

/// Off by config (`turn.relay_icmp`, the default): dropped and counted,
/// nothing for the client; a reload turns it on.
#[test]
fn s11_5_off_by_config_nothing_reaches_the_client() {
    let mut d = Driver::default_setup();
    let mut c = dual(&mut d);
    d.create_permission(&mut c, &[addr(PEER_A)])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    let relay = relay_for(&d, &c, addr(PEER_A));
    assert_eq!(
        d.peer_icmp(relay, addr(PEER_A), PORT_UNREACHABLE),
        PeerOut::Drop(DropReason::IcmpOff)
    );
    assert_eq!(d.server.stats().peer_icmp.disabled, 1);
    let mut live = d.server.config().live();
    live.relay_icmp = true;
    d.server.reload(live);
    let (_, peer, _) = icmp_indication(d.peer_icmp(relay, addr(PEER_A), PORT_UNREACHABLE));
    assert_eq!(peer, addr(PEER_A));
}
