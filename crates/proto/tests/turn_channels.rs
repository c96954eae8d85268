//! RFC 8656 §12 (ChannelBind and ChannelData), the bandwidth cap, and
//! the end of an allocation with its TCP connection (§3.1).

mod common;

use std::time::Duration;

use common::*;
use proto::wire::Method;
use proto::{CloseReason, DropReason, Transport, PEER_HEADROOM};

fn client(d: &mut Driver, transport: Transport) -> Client {
    let mut c = Client::new("198.51.100.1:40000", transport, ALICE);
    d.allocate(&mut c);
    c
}

/// ChannelData as the client expects it from the server.
fn channel_data_bytes(number: u16, payload: &[u8], padded: bool) -> Vec<u8> {
    let mut v = number.to_be_bytes().to_vec();
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    while padded && v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

#[track_caller]
fn assert_to_peer(o: Out, relay: proto::RelayId, peer: std::net::SocketAddr, payload: &[u8]) {
    match o {
        Out::ToPeer {
            relay: r,
            peer: p,
            start,
            bytes,
            ..
        } => {
            assert_eq!((r, p, start), (relay, peer, 4));
            assert_eq!(bytes, payload);
        }
        other => panic!("expected ToPeer, got {other:?}"),
    }
}

#[test]
fn channel_data_flows_both_ways_over_udp() {
    let mut d = Driver::default_setup();
    let mut c = client(&mut d, Transport::Udp);
    let relay = d.relay_of(&c.tuple);
    let peer = addr(PEER_A);
    d.channel_bind(&mut c, 0x4000, peer)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    for payload in [&b"hello"[..], b"", b"1234", &[9u8; 1000]] {
        assert_to_peer(d.channel_data(&c, 0x4000, payload), relay, peer, payload);
        // Peer to client: the 4-byte header is written in front of the
        // payload, in place; UDP needs no padding.
        match d.peer_datagram(relay, peer, payload) {
            PeerOut::ToClient { tuple, start, bytes } => {
                assert_eq!(tuple, c.tuple);
                assert_eq!(start, PEER_HEADROOM - 4);
                assert_eq!(bytes, channel_data_bytes(0x4000, payload, false));
            }
            other => panic!("expected ToClient, got {other:?}"),
        }
    }
    // A UDP datagram may carry padding after the ChannelData.
    let mut padded = channel_data_bytes(0x4000, b"abc", true);
    assert_eq!(padded.len(), 8);
    assert_to_peer(d.input(c.tuple, &padded), relay, peer, b"abc");
    padded.extend_from_slice(&[0; 4]);
    assert_to_peer(d.input(c.tuple, &padded), relay, peer, b"abc");
}

#[test]
fn channel_data_is_padded_on_tcp() {
    let mut d = Driver::default_setup();
    let mut c = client(&mut d, Transport::Tcp);
    let relay = d.relay_of(&c.tuple);
    let peer = addr(PEER_A);
    d.channel_bind(&mut c, 0x4FFF, peer)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    for payload in [&b"hello"[..], b"", b"1234", b"123456"] {
        assert_to_peer(d.channel_data(&c, 0x4FFF, payload), relay, peer, payload);
        match d.peer_datagram(relay, peer, payload) {
            PeerOut::ToClient { start, bytes, .. } => {
                assert_eq!(start, PEER_HEADROOM - 4);
                assert_eq!(bytes, channel_data_bytes(0x4FFF, payload, true), "zero padding");
                assert_eq!(bytes.len() % 4, 0);
            }
            other => panic!("expected ToClient, got {other:?}"),
        }
    }
}

#[test]
fn channel_numbers_outside_0x4000_to_0x4fff_are_400() {
    let mut d = Driver::default_setup();
    let mut c = client(&mut d, Transport::Udp);
    let peer = addr(PEER_A);
    for n in [0x0000, 0x3FFF, 0x5000, 0x7FFF, 0xFFFF] {
        d.channel_bind(&mut c, n, peer).assert_error(Method::CHANNEL_BIND, 400);
    }
    // Missing CHANNEL-NUMBER or XOR-PEER-ADDRESS: 400 too.
    d.request(&mut c, Method::CHANNEL_BIND, &[peer_attr(peer)])
        .resp()
        .assert_error(Method::CHANNEL_BIND, 400);
    d.request(&mut c, Method::CHANNEL_BIND, &[channel(0x4000)])
        .resp()
        .assert_error(Method::CHANNEL_BIND, 400);
    d.channel_bind(&mut c, 0x4000, peer)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
}

fn peer_attr(p: std::net::SocketAddr) -> A {
    common::peer(p)
}

#[test]
fn rebinding_rules() {
    let mut d = Driver::default_setup();
    let mut c = client(&mut d, Transport::Udp);
    let (a, b) = (addr(PEER_A), addr(PEER_B));
    d.channel_bind(&mut c, 0x4000, a)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    // Same number, same peer: a refresh.
    d.channel_bind(&mut c, 0x4000, a)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    // The number is bound to another peer.
    d.channel_bind(&mut c, 0x4000, b)
        .assert_error(Method::CHANNEL_BIND, 400);
    // The peer is bound to another number (same IP, same port).
    d.channel_bind(&mut c, 0x4001, a)
        .assert_error(Method::CHANNEL_BIND, 400);
    // The same IP with another port is another transport address.
    let a2 = addr("93.184.216.34:5001");
    d.channel_bind(&mut c, 0x4001, a2)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    d.channel_bind(&mut c, 0x4002, b)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    // Channels of another allocation are independent.
    let mut o = Client::udp("198.51.100.2:40000");
    d.allocate(&mut o);
    d.channel_bind(&mut o, 0x4000, b)
        .assert_ok(Method::CHANNEL_BIND, &o.key);
}

#[test]
fn expired_bindings_stay_reserved_for_five_more_minutes() {
    let mut d = Driver::default_setup();
    let mut c = client(&mut d, Transport::Udp);
    d.refresh(&mut c, Some(3600)).assert_ok(Method::REFRESH, &c.key);
    let relay = d.relay_of(&c.tuple);
    let (a, b) = (addr(PEER_A), addr(PEER_B));
    d.channel_bind(&mut c, 0x4000, a)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    d.create_permission(&mut c, &[a, b]);
    d.advance(599);
    d.create_permission(&mut c, &[a, b]);
    assert_to_peer(d.channel_data(&c, 0x4000, b"x"), relay, a, b"x");
    d.advance(1);
    // Expired at 600 s: ChannelData on it is dropped, and the peer's data
    // comes as a Data indication (the permission is still there).
    assert_eq!(d.channel_data(&c, 0x4000, b"x"), Out::Drop(DropReason::ChannelData));
    match d.peer_datagram(relay, a, b"y") {
        PeerOut::ToClient { bytes, .. } => assert_eq!(data_indication(&bytes), (a, b"y".to_vec())),
        other => panic!("expected a Data indication, got {other:?}"),
    }
    // Nothing happens by itself during the cooldown: the next wake-up is not
    // a busy loop.
    let next = d.server.poll_timeout().expect("a deadline");
    assert!(
        next >= d.now + Duration::from_secs(1),
        "timer due {:?} after now",
        next - d.now
    );
    for wait in [299, 0] {
        d.channel_bind(&mut c, 0x4000, b)
            .assert_error(Method::CHANNEL_BIND, 400);
        d.channel_bind(&mut c, 0x4001, a)
            .assert_error(Method::CHANNEL_BIND, 400);
        d.advance(wait);
    }
    // 600 + 300 s after the bind, both are free again.
    d.create_permission(&mut c, &[a, b]);
    d.advance(1);
    assert_eq!(d.elapsed(), Duration::from_secs(900));
    d.channel_bind(&mut c, 0x4000, b)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    d.channel_bind(&mut c, 0x4001, a)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    assert_to_peer(d.channel_data(&c, 0x4000, b"z"), relay, b, b"z");
    assert_to_peer(d.channel_data(&c, 0x4001, b"z"), relay, a, b"z");
}

#[test]
fn an_expired_binding_may_be_renewed_to_the_same_peer() {
    let mut d = Driver::default_setup();
    let mut c = client(&mut d, Transport::Udp);
    d.refresh(&mut c, Some(3600));
    let relay = d.relay_of(&c.tuple);
    let a = addr(PEER_A);
    d.channel_bind(&mut c, 0x4000, a);
    d.advance(700);
    d.channel_bind(&mut c, 0x4000, a)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    assert_to_peer(d.channel_data(&c, 0x4000, b"again"), relay, a, b"again");
}

#[test]
fn channel_bind_installs_a_permission() {
    let mut d = Driver::default_setup();
    let mut c = client(&mut d, Transport::Udp);
    let relay = d.relay_of(&c.tuple);
    let a = addr(PEER_A);
    d.channel_bind(&mut c, 0x4000, a)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    // A Send indication to that IP, any port, is allowed now ...
    let other_port = addr("93.184.216.34:5999");
    assert!(matches!(d.send_indication(&c, other_port, b"s"), Out::ToPeer { .. }));
    // ... and data from another port of the peer arrives as a Data indication.
    match d.peer_datagram(relay, other_port, b"d") {
        PeerOut::ToClient { bytes, .. } => assert_eq!(data_indication(&bytes), (other_port, b"d".to_vec())),
        other => panic!("expected a Data indication, got {other:?}"),
    }
    // The permission lasts 300 s; re-binding the channel refreshes it.
    d.advance(250);
    d.channel_bind(&mut c, 0x4000, a)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    d.advance(250);
    assert_to_peer(d.channel_data(&c, 0x4000, b"x"), relay, a, b"x");
    d.advance(50);
    assert_eq!(d.channel_data(&c, 0x4000, b"x"), Out::Drop(DropReason::NoPermission));
}

#[test]
fn bad_channel_data_is_dropped() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    assert_eq!(d.channel_data(&c, 0x4000, b"x"), Out::Drop(DropReason::NoAllocation));
    d.allocate(&mut c);
    // Unbound channel.
    assert_eq!(d.channel_data(&c, 0x4000, b"x"), Out::Drop(DropReason::ChannelData));
    d.channel_bind(&mut c, 0x4000, addr(PEER_A));
    // The length field promises more than the datagram holds.
    let mut long = channel_data_bytes(0x4000, b"abcd", false);
    long[3] = 5;
    assert_eq!(d.input(c.tuple, &long), Out::Drop(DropReason::ChannelData));
    // Shorter than a ChannelData header.
    assert_eq!(
        d.input(c.tuple, &[0x40, 0x00, 0x00]),
        Out::Drop(DropReason::ChannelData)
    );
    // A reserved number (0x5000-0x7FFF) is not a channel.
    let reserved = channel_data_bytes(0x5000, b"x", true);
    assert_eq!(d.input(c.tuple, &reserved), Out::Drop(DropReason::ChannelData));
    assert_eq!(d.server.stats().drops.get(DropReason::ChannelData), 4);
}

#[test]
fn bandwidth_cap_drops_the_excess_each_way() {
    let mut d = Driver::with(|c| c.bandwidth_limit = 1000);
    let mut c = client(&mut d, Transport::Udp);
    let relay = d.relay_of(&c.tuple);
    let a = addr(PEER_A);
    d.channel_bind(&mut c, 0x4000, a);
    // One second's worth may go at once, in each direction.
    for _ in 0..4 {
        assert!(matches!(d.channel_data(&c, 0x4000, &[0; 250]), Out::ToPeer { .. }));
    }
    for _ in 0..4 {
        assert!(matches!(d.peer_datagram(relay, a, &[0; 250]), PeerOut::ToClient { .. }));
    }
    assert_eq!(d.channel_data(&c, 0x4000, &[0; 1]), Out::Drop(DropReason::RateLimited));
    assert_eq!(
        d.peer_datagram(relay, a, &[0; 1]),
        PeerOut::Drop(DropReason::RateLimited)
    );
    assert_eq!(d.send_indication(&c, a, &[0; 1]), Out::Drop(DropReason::RateLimited));
    assert_eq!(d.server.stats().drops.get(DropReason::RateLimited), 3);
    // Half a second later, half the budget is back.
    d.advance_by(Duration::from_millis(500));
    assert!(matches!(d.channel_data(&c, 0x4000, &[0; 500]), Out::ToPeer { .. }));
    assert_eq!(d.channel_data(&c, 0x4000, &[0; 1]), Out::Drop(DropReason::RateLimited));
    assert!(matches!(d.peer_datagram(relay, a, &[0; 500]), PeerOut::ToClient { .. }));
    // Each allocation has its own budget.
    let mut o = Client::udp("198.51.100.2:40000");
    d.allocate(&mut o);
    d.channel_bind(&mut o, 0x4000, a);
    assert!(matches!(d.channel_data(&o, 0x4000, &[0; 1000]), Out::ToPeer { .. }));
}

#[test]
fn closing_the_tcp_connection_deletes_the_allocation() {
    let mut d = Driver::default_setup();
    let c = client(&mut d, Transport::Tcp);
    let relay = d.relay_of(&c.tuple);
    // Closing another connection changes nothing.
    d.server
        .connection_closed(d.now, tuple("198.51.100.1:40001", Transport::Tcp));
    d.pump();
    assert_eq!(d.server.allocation_count(), 1);
    d.advance(10);
    d.server.connection_closed(d.now, c.tuple);
    d.pump();
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(d.releases, vec![relay]);
    assert_eq!(d.closed_events(), vec![(c.tuple, CloseReason::ConnectionClosed)]);
    assert_eq!(
        d.peer_datagram(relay, addr(PEER_A), b"x"),
        PeerOut::Drop(DropReason::UnknownRelay)
    );
    // Twice is harmless.
    d.server.connection_closed(d.now, c.tuple);
    d.pump();
    assert_eq!(d.releases.len(), 1);
}
