//! RFC 8656 §9 (permissions), §10 (CreatePermission), §11 (Send and Data
//! indications) and the peer
//! policy that refuses special-purpose addresses with 403.

mod common;

use std::net::SocketAddr;

use common::*;
use proto::wire::{attr, Method};
use proto::DropReason;

/// A client with a dual-stack allocation (one IPv4 and one IPv6 relay).
fn dual(d: &mut Driver) -> Client {
    let mut c = Client::udp("198.51.100.1:40000");
    let r = d.allocate_with(&mut c, &[A::Bytes(attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
    r.assert_ok(Method::ALLOCATE, &c.key);
    c
}

fn v4(d: &mut Driver) -> Client {
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate(&mut c);
    c
}

#[track_caller]
fn assert_to_peer(o: Out, relay: proto::RelayId, peer: SocketAddr, payload: &[u8]) {
    match o {
        Out::ToPeer {
            relay: r,
            peer: p,
            bytes,
            len,
            ..
        } => {
            assert_eq!((r, p), (relay, peer));
            assert_eq!(len, payload.len());
            assert_eq!(bytes, payload);
        }
        other => panic!("expected ToPeer, got {other:?}"),
    }
}

#[test]
fn send_indication_reaches_a_permitted_peer() {
    let mut d = Driver::default_setup();
    let mut c = v4(&mut d);
    let relay = d.relay_of(&c.tuple);
    let peer = addr(PEER_A);
    let r = d.create_permission(&mut c, &[peer]);
    r.assert_ok(Method::CREATE_PERMISSION, &c.key);
    for payload in [&b"hello"[..], b"", b"four", &[0xAB; 1200]] {
        assert_to_peer(d.send_indication(&c, peer, payload), relay, peer, payload);
    }
    let t = d.server.stats().traffic;
    assert_eq!((t.to_peer_packets, t.to_peer_bytes), (4, 5 + 4 + 1200));
}

#[test]
fn send_without_permission_or_allocation_is_dropped() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    assert_eq!(
        d.send_indication(&c, addr(PEER_A), b"x"),
        Out::Drop(DropReason::NoAllocation)
    );
    d.allocate(&mut c);
    assert_eq!(
        d.send_indication(&c, addr(PEER_A), b"x"),
        Out::Drop(DropReason::NoPermission)
    );
    d.create_permission(&mut c, &[addr(PEER_A)]);
    assert_eq!(
        d.send_indication(&c, addr(PEER_B), b"x"),
        Out::Drop(DropReason::NoPermission)
    );
    assert_eq!(d.server.stats().drops.get(DropReason::NoPermission), 2);
}

#[test]
fn permissions_expire_after_300_s_unless_refreshed() {
    let mut d = Driver::default_setup();
    let mut c = v4(&mut d);
    let relay = d.relay_of(&c.tuple);
    let (a, b) = (addr(PEER_A), addr(PEER_B));
    d.create_permission(&mut c, &[a, b]);
    d.advance(200);
    d.create_permission(&mut c, &[b])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    d.advance(99);
    assert_to_peer(d.send_indication(&c, a, b"x"), relay, a, b"x");
    d.advance(1);
    assert_eq!(d.send_indication(&c, a, b"x"), Out::Drop(DropReason::NoPermission));
    assert_eq!(d.peer_datagram(relay, a, b"y"), PeerOut::Drop(DropReason::NoPermission));
    // B was refreshed at 200 s: good until 500 s.
    d.advance(199);
    assert_to_peer(d.send_indication(&c, b, b"x"), relay, b, b"x");
    d.advance(1);
    assert_eq!(d.send_indication(&c, b, b"x"), Out::Drop(DropReason::NoPermission));
}

#[test]
fn permissions_match_the_ip_address_only() {
    let mut d = Driver::default_setup();
    let mut c = v4(&mut d);
    let relay = d.relay_of(&c.tuple);
    d.create_permission(&mut c, &[addr("93.184.216.34:5000")]);
    let other_port = addr("93.184.216.34:9999");
    assert_to_peer(d.send_indication(&c, other_port, b"x"), relay, other_port, b"x");
    assert!(matches!(
        d.peer_datagram(relay, other_port, b"y"),
        PeerOut::ToClient { .. }
    ));
}

#[test]
fn one_request_installs_several_peers() {
    let mut d = Driver::default_setup();
    let mut c = dual(&mut d);
    let relays = d.relays_of(&c.tuple);
    let v6_relay = relays.iter().find(|(_, a)| a.is_ipv6()).unwrap().0;
    let v4_relay = relays.iter().find(|(_, a)| a.is_ipv4()).unwrap().0;
    let (a, b, v6) = (addr(PEER_A), addr(PEER_B), addr(PEER_V6));
    d.create_permission(&mut c, &[a, b, v6])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    assert_to_peer(d.send_indication(&c, a, b"1"), v4_relay, a, b"1");
    assert_to_peer(d.send_indication(&c, b, b"2"), v4_relay, b, b"2");
    // An IPv6 peer goes out of the IPv6 relay.
    assert_to_peer(d.send_indication(&c, v6, b"3"), v6_relay, v6, b"3");
}

#[test]
fn forbidden_peers_are_403_and_install_nothing() {
    let mut d = Driver::default_setup();
    let mut c = dual(&mut d);
    let good = addr(PEER_A);
    for bad in [
        "127.0.0.1:80",
        "0.0.0.0:80",
        "[::1]:80",
        "[::ffff:127.0.0.1]:80",
        "169.254.169.254:80",
        "10.0.0.1:80",
        "[fe80::1]:80",
        "[64:ff9b::7f00:1]:80",
        "192.168.1.1:80",
        "172.16.0.1:80",
        "100.64.0.1:80",
        "224.0.0.1:80",
        "255.255.255.255:80",
        "[::]:80",
        "[fd00::1]:80",
        "[ff02::1]:80",
    ] {
        let bad = addr(bad);
        let r = d.create_permission(&mut c, &[bad]);
        r.assert_error(Method::CREATE_PERMISSION, 403);
        assert!(r.verifies(&c.key));
        assert_eq!(
            d.send_indication(&c, bad, b"x"),
            Out::Drop(DropReason::NoPermission),
            "{bad}"
        );
        // ChannelBind obeys the same policy.
        d.channel_bind(&mut c, 0x4000, bad)
            .assert_error(Method::CHANNEL_BIND, 403);
        // All or nothing: the good peer beside it is not installed either.
        d.create_permission(&mut c, &[good, bad])
            .assert_error(Method::CREATE_PERMISSION, 403);
        d.create_permission(&mut c, &[bad, good])
            .assert_error(Method::CREATE_PERMISSION, 403);
        assert_eq!(d.send_indication(&c, good, b"x"), Out::Drop(DropReason::NoPermission));
    }
}

#[test]
fn allow_list_overrides_the_default_deny() {
    let mut d = Driver::with(|c| c.policy.allow.push("10.0.0.0/8".parse().unwrap()));
    let mut c = v4(&mut d);
    let relay = d.relay_of(&c.tuple);
    let lan = addr("10.0.0.1:5000");
    d.create_permission(&mut c, &[lan])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    assert_to_peer(d.send_indication(&c, lan, b"x"), relay, lan, b"x");
    d.create_permission(&mut c, &[addr("127.0.0.1:5000")])
        .assert_error(Method::CREATE_PERMISSION, 403);
}

#[test]
fn the_servers_own_relay_addresses_are_allowed() {
    let mut d = Driver::default_setup();
    let mut a = v4(&mut d);
    let mut b = Client::udp("198.51.100.2:40000");
    let rb = d.allocate(&mut b);
    // B's relayed address is in 192.0.2.0/24, denied by default, but it is ours.
    let b_public = rb.xor_addr(attr::XOR_RELAYED_ADDRESS).unwrap();
    let b_local = d.relays_of(&b.tuple)[0].1;
    assert_eq!(b_public.ip().to_string(), RELAY_V4_PUBLIC);
    d.create_permission(&mut a, &[b_public, b_local])
        .assert_ok(Method::CREATE_PERMISSION, &a.key);
    let ra = d.relay_of(&a.tuple);
    assert_to_peer(d.send_indication(&a, b_public, b"hi B"), ra, b_public, b"hi B");
    // Other addresses in the same denied ranges stay denied.
    d.create_permission(&mut a, &[addr("192.0.2.101:5000")])
        .assert_error(Method::CREATE_PERMISSION, 403);
    d.create_permission(&mut a, &[addr("10.1.0.2:5000")])
        .assert_error(Method::CREATE_PERMISSION, 403);
}

#[test]
fn peer_of_a_family_without_a_relay_is_443() {
    let mut d = Driver::default_setup();
    let mut c = v4(&mut d);
    d.create_permission(&mut c, &[addr(PEER_V6)])
        .assert_error(Method::CREATE_PERMISSION, 443);
    d.create_permission(&mut c, &[addr(PEER_A), addr(PEER_V6)])
        .assert_error(Method::CREATE_PERMISSION, 443);
    assert_eq!(
        d.send_indication(&c, addr(PEER_A), b"x"),
        Out::Drop(DropReason::NoPermission)
    );
    let mut v6 = Client::udp("198.51.100.1:40001");
    d.allocate_with(&mut v6, &[family(2)]);
    d.create_permission(&mut v6, &[addr(PEER_A)])
        .assert_error(Method::CREATE_PERMISSION, 443);
}

#[test]
fn missing_or_malformed_peer_address_is_400() {
    let mut d = Driver::default_setup();
    let mut c = v4(&mut d);
    d.create_permission(&mut c, &[])
        .assert_error(Method::CREATE_PERMISSION, 400);
    d.request(
        &mut c,
        Method::CREATE_PERMISSION,
        &[A::Bytes(attr::XOR_PEER_ADDRESS, vec![0, 1, 0])],
    )
    .resp()
    .assert_error(Method::CREATE_PERMISSION, 400);
}

#[test]
fn peer_datagrams_arrive_as_data_indications() {
    let mut d = Driver::default_setup();
    let mut c = dual(&mut d);
    let relays = d.relays_of(&c.tuple);
    let (a, v6) = (addr(PEER_A), addr(PEER_V6));
    d.create_permission(&mut c, &[a, v6]);
    for (peer, relay) in [(a, relays[0].0), (v6, relays[1].0)] {
        for payload in [&b"odd"[..], b"", b"1234", &[7u8; 1000]] {
            match d.peer_datagram(relay, peer, payload) {
                PeerOut::ToClient { tuple, bytes, .. } => {
                    assert_eq!(tuple, c.tuple);
                    assert_eq!(data_indication(&bytes), (peer, payload.to_vec()));
                }
                other => panic!("expected ToClient, got {other:?}"),
            }
        }
    }
    // A dual-stack socket reports IPv4 peers as mapped addresses: same peer.
    let mapped = addr("[::ffff:93.184.216.34]:5000");
    match d.peer_datagram(relays[0].0, mapped, b"m") {
        PeerOut::ToClient { bytes, .. } => assert_eq!(data_indication(&bytes).0, a),
        other => panic!("expected ToClient, got {other:?}"),
    }
    assert_eq!(
        d.peer_datagram(relays[0].0, addr(PEER_B), b"no"),
        PeerOut::Drop(DropReason::NoPermission)
    );
    assert_eq!(d.server.stats().traffic.to_client_packets, 9);
}

#[test]
fn permissions_and_channels_per_allocation_are_capped_with_508() {
    use proto::allocation::{MAX_CHANNELS, MAX_PERMISSIONS};
    let mut d = Driver::default_setup();
    let mut c = v4(&mut d);
    let peer_n = |i: usize| addr(&format!("93.184.{}.{}:5000", i / 200, 1 + i % 200));
    for i in 0..MAX_PERMISSIONS {
        d.create_permission(&mut c, &[peer_n(i)])
            .assert_ok(Method::CREATE_PERMISSION, &c.key);
    }
    // Refreshing an existing one is fine; a new one is over the cap.
    d.create_permission(&mut c, &[peer_n(0)])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    d.create_permission(&mut c, &[peer_n(MAX_PERMISSIONS)])
        .assert_error(Method::CREATE_PERMISSION, 508);
    // Channels to already-permitted peers, up to their own cap.
    for i in 0..MAX_CHANNELS {
        d.channel_bind(&mut c, 0x4000 + i as u16, peer_n(i))
            .assert_ok(Method::CHANNEL_BIND, &c.key);
    }
    let extra = peer_n(0);
    d.create_permission(&mut c, &[extra])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    d.channel_bind(&mut c, 0x4000 + MAX_CHANNELS as u16, addr("93.184.0.1:6000"))
        .assert_error(Method::CHANNEL_BIND, 508);
}

/// RFC 8656 §10.2: up to 8 peers in one CreatePermission are installed;
/// more than this server takes at once is 508 (Insufficient Capacity), and
/// nothing is installed.
#[test]
fn more_peers_than_one_request_may_install_is_508() {
    let mut d = Driver::default_setup();
    let mut c = v4(&mut d);
    let peers = |n: u16| {
        (0..n)
            .map(|i| addr(&format!("93.184.216.{}:5000", 40 + i)))
            .collect::<Vec<_>>()
    };
    d.create_permission(&mut c, &peers(8))
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    let nine = peers(9);
    d.create_permission(&mut c, &nine)
        .assert_error(Method::CREATE_PERMISSION, 508);
    assert_eq!(
        d.send_indication(&c, nine[8], b"x"),
        Out::Drop(DropReason::NoPermission),
        "all or nothing"
    );
}

/// Whether a relayed datagram must leave with DF set, or the drop reason.
#[track_caller]
fn df_of(o: Out) -> bool {
    match o {
        Out::ToPeer { dont_fragment, .. } => dont_fragment,
        other => panic!("expected ToPeer, got {other:?}"),
    }
}

/// RFC 8656 §11.2 and §14.1: a Send indication with DONT-FRAGMENT, relayed
/// IPv4 to IPv4, leaves with DF set; the next one without it, and
/// ChannelData, leave as the relay was bound (not asked at Allocate: no DF).
#[test]
fn s11_2_dont_fragment_in_a_send_indication_sets_df_for_that_datagram() {
    let mut d = Driver::default_setup();
    let mut c = v4(&mut d);
    let peer = addr(PEER_A);
    d.create_permission(&mut c, &[peer])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    let df = [A::Bytes(attr::DONT_FRAGMENT, vec![])];
    assert!(df_of(d.send_indication_with(&c, peer, b"df", &df)));
    assert!(!df_of(d.send_indication(&c, peer, b"no df")));
    d.channel_bind(&mut c, 0x4000, peer)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    assert!(!df_of(d.channel_data(&c, 0x4000, b"channel")));
    assert!(df_of(d.send_indication_with(&c, peer, b"df again", &df)));
    assert_eq!(
        d.binds.last().map(|b| b.2),
        Some(false),
        "the relay was bound without DF"
    );
}

/// RFC 8656 §14.2-14.4: across families and IPv6 to IPv6 "the DONT-FRAGMENT
/// attribute MUST be ignored"; from a TCP client (§15) it is honoured.
#[test]
fn s14_dont_fragment_in_a_send_indication_is_ignored_unless_ipv4_to_ipv4_or_from_tcp() {
    let mut d = Driver::default_setup();
    let df = [A::Bytes(attr::DONT_FRAGMENT, vec![])];
    // An IPv4 client with IPv4 and IPv6 relays.
    let mut c = dual(&mut d);
    let v6_peer = addr(PEER_V6);
    d.create_permission(&mut c, &[addr(PEER_A), v6_peer])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    assert!(df_of(d.send_indication_with(&c, addr(PEER_A), b"4 to 4", &df)));
    assert!(!df_of(d.send_indication_with(&c, v6_peer, b"4 to 6", &df)));
    // An IPv6 client relaying to IPv4 and to IPv6.
    let mut c6 = Client::udp("[2001:db8:0:1::1]:40000");
    let r = d.allocate_with(&mut c6, &[A::Bytes(attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])]);
    r.assert_ok(Method::ALLOCATE, &c6.key);
    d.create_permission(&mut c6, &[addr(PEER_A), v6_peer])
        .assert_ok(Method::CREATE_PERMISSION, &c6.key);
    assert!(!df_of(d.send_indication_with(&c6, addr(PEER_A), b"6 to 4", &df)));
    assert!(!df_of(d.send_indication_with(&c6, v6_peer, b"6 to 6", &df)));
    // A TCP client.
    let mut t = Client::new("198.51.100.9:40000", proto::Transport::Tcp, ALICE);
    d.allocate(&mut t);
    d.create_permission(&mut t, &[addr(PEER_A)])
        .assert_ok(Method::CREATE_PERMISSION, &t.key);
    assert!(df_of(d.send_indication_with(&t, addr(PEER_A), b"tcp", &df)));
}
