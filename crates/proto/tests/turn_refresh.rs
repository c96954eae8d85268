//! RFC 8656 §8 (Refresh, with §8.1's families of a dual allocation
//! refreshed and deleted one at a time) and allocation expiry, with the
//! clock moved by the test.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use proto::quota::Quotas;
use proto::wire::{attr, Class, MessageType, Method};
use proto::{CloseReason, DropReason, Event, FiveTuple, RelayId};

#[test]
fn refresh_extends_the_lifetime() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate(&mut c);
    d.advance(500);
    let r = d.refresh(&mut c, Some(600));
    r.assert_ok(Method::REFRESH, &c.key);
    assert_eq!(r.lifetime(), Some(600));
    d.advance(500);
    assert_eq!(d.server.allocation_count(), 1, "alive 1000 s after a 600 s Allocate");
    // No LIFETIME: the default. Too long: the maximum. Too short: the default.
    assert_eq!(d.refresh(&mut c, None).lifetime(), Some(600));
    assert_eq!(d.refresh(&mut c, Some(99_999)).lifetime(), Some(3600));
    assert_eq!(d.refresh(&mut c, Some(1)).lifetime(), Some(600));
    assert_eq!(d.refresh(&mut c, Some(2000)).lifetime(), Some(2000));
    d.advance(1999);
    assert_eq!(d.server.allocation_count(), 1);
    d.advance(1);
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(d.closed_events(), vec![(c.tuple, CloseReason::Expired)]);
}

#[test]
fn refresh_zero_deletes_and_a_retransmission_gets_437() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate(&mut c);
    let relay = d.relay_of(&c.tuple);
    d.advance(7);
    let tid = c.tid();
    let req = build(
        MessageType::new(Method::REFRESH, Class::Request),
        &tid,
        &[lifetime(0)],
        Some(&c.auth()),
    );
    let r = d.input(c.tuple, &req).resp();
    r.assert_ok(Method::REFRESH, &c.key);
    assert_eq!(r.lifetime(), Some(0));
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(d.releases, vec![relay]);
    match d.events.last() {
        Some(Event::AllocationClosed { tuple, reason, age, .. }) => {
            assert_eq!(
                (*tuple, *reason, *age),
                (c.tuple, CloseReason::Deleted, Duration::from_secs(7))
            );
        }
        other => panic!("expected AllocationClosed, got {other:?}"),
    }
    // RFC 8656 §8.3: a client that gets 437 to a Refresh with LIFETIME 0
    // counts the allocation as deleted.
    let again = d.input(c.tuple, &req).resp();
    again.assert_error(Method::REFRESH, 437);
    assert!(again.verifies(&c.key));
    assert_eq!(d.releases.len(), 1, "released once");
    assert_eq!(d.closed_events().len(), 1);
    // The relay is gone for peers too.
    assert_eq!(
        d.peer_datagram(relay, addr(PEER_A), b"late"),
        PeerOut::Drop(DropReason::UnknownRelay)
    );
}

#[test]
fn refresh_without_an_allocation_is_437() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let r = d.refresh(&mut c, Some(600));
    r.assert_error(Method::REFRESH, 437);
    assert!(r.verifies(&c.key));
    // Another 5-tuple of the same client has no allocation either.
    d.allocate(&mut c);
    let mut other = Client::udp("198.51.100.1:40001");
    other.nonce = c.nonce.clone();
    d.refresh(&mut other, Some(0)).assert_error(Method::REFRESH, 437);
    assert_eq!(d.server.allocation_count(), 1);
}

#[test]
fn requested_address_family_mismatch_is_443() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate(&mut c);
    d.request(&mut c, Method::REFRESH, &[family(2)])
        .resp()
        .assert_error(Method::REFRESH, 443);
    d.request(&mut c, Method::REFRESH, &[family(1)])
        .resp()
        .assert_ok(Method::REFRESH, &c.key);
    let mut v6 = Client::udp("198.51.100.1:40001");
    d.allocate_with(&mut v6, &[family(2)]);
    d.request(&mut v6, Method::REFRESH, &[family(1)])
        .resp()
        .assert_error(Method::REFRESH, 443);
    d.request(&mut v6, Method::REFRESH, &[family(2)])
        .resp()
        .assert_ok(Method::REFRESH, &v6.key);
}

#[test]
fn expiry_deletes_the_allocation_and_frees_its_port() {
    // One port only, so its reuse is visible.
    let mut d = Driver::with(|c| {
        c.port_min = 50000;
        c.port_max = 50000;
    });
    let mut a = Client::udp("198.51.100.1:40000");
    let r = d.allocate(&mut a);
    assert_eq!(r.xor_addr(attr::XOR_RELAYED_ADDRESS).unwrap().port(), 50000);
    let relay = d.relay_of(&a.tuple);
    let mut b = Client::udp("198.51.100.2:40000");
    d.allocate_with(&mut b, &[]).assert_error(Method::ALLOCATE, 508);
    d.advance(599);
    assert_eq!(d.server.allocation_count(), 1);
    assert!(d.releases.is_empty());
    // The deadline is the allocation's expiry.
    assert_eq!(d.server.poll_timeout(), Some(d.t0 + Duration::from_secs(600)));
    d.advance(1);
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(d.releases, vec![relay]);
    assert_eq!(d.closed_events(), vec![(a.tuple, CloseReason::Expired)]);
    assert_eq!(d.server.poll_timeout(), None);
    let r = d.allocate(&mut b);
    assert_eq!(r.xor_addr(attr::XOR_RELAYED_ADDRESS).unwrap().port(), 50000);
    // The old client's requests now find nothing.
    d.refresh(&mut a, Some(600)).assert_error(Method::REFRESH, 437);
}

#[test]
fn a_request_after_expiry_but_before_the_timer_finds_no_allocation() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate(&mut c);
    d.create_permission(&mut c, &[addr(PEER_A)]);
    // Move the clock without running the timer, as a late driver would.
    d.now += Duration::from_secs(600);
    d.refresh(&mut c, Some(600)).assert_error(Method::REFRESH, 437);
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(d.closed_events(), vec![(c.tuple, CloseReason::Expired)]);
    assert_eq!(d.releases.len(), 1);
    // The stale timer entry is harmless when it fires.
    d.advance(4000);
    assert_eq!(d.releases.len(), 1);
}

#[test]
fn allocation_churn_creates_and_closes_every_allocation() {
    let mut d = Driver::default_setup();
    let mut keep = Client::udp("198.51.100.9:40000");
    d.allocate(&mut keep);
    let mut c = Client::udp("198.51.100.1:40000");
    for _ in 0..5_000 {
        d.allocate_with(&mut c, &[lifetime(3600)])
            .assert_ok(Method::ALLOCATE, &c.key);
        d.refresh(&mut c, Some(0)).assert_ok(Method::REFRESH, &c.key);
    }
    assert_eq!(d.server.allocation_count(), 1);
    assert_eq!(d.created_events(), 5_001);
    assert_eq!(d.closed_events().len(), 5_000);
}

/// A dual allocation (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 §7.2 step 9) of
/// `lifetime` seconds: its (IPv4, IPv6) relays.
fn dual(d: &mut Driver, c: &mut Client, lifetime_s: u32) -> ((RelayId, SocketAddr), (RelayId, SocketAddr)) {
    let additional = A::Bytes(attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0]);
    d.allocate_with(c, &[additional, lifetime(lifetime_s)])
        .assert_ok(Method::ALLOCATE, &c.key);
    match d.relays_of(&c.tuple)[..] {
        [v4, v6] if v4.1.is_ipv4() && v6.1.is_ipv6() => (v4, v6),
        ref other => panic!("expected an IPv4 and an IPv6 relay, got {other:?}"),
    }
}

/// A Refresh naming one family (REQUESTED-ADDRESS-FAMILY, 1 = IPv4, 2 = IPv6).
fn refresh_family(d: &mut Driver, c: &mut Client, f: u8, secs: u32) -> Resp {
    d.request(c, Method::REFRESH, &[family(f), lifetime(secs)]).resp()
}

/// The RelayClosed events: (tuple, relayed address, reason).
fn relays_closed(d: &Driver) -> Vec<(FiveTuple, SocketAddr, CloseReason)> {
    d.events
        .iter()
        .filter_map(|e| match e {
            Event::RelayClosed { tuple, relay, reason } => Some((*tuple, *relay, *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn s8_1_refresh_with_requested_address_family_refreshes_only_that_family() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let ((v4, v4_local), (v6, v6_addr)) = dual(&mut d, &mut c, 600);
    d.advance(500);
    let r = refresh_family(&mut d, &mut c, 1, 1200);
    r.assert_ok(Method::REFRESH, &c.key);
    assert_eq!(r.lifetime(), Some(1200), "the IPv4 family's new time-to-expiry");
    d.advance(99);
    assert_eq!(d.relays_of(&c.tuple).len(), 2, "both families live at 599 s");
    // The IPv6 family was not refreshed: it ends at 600 s, alone.
    d.advance(1);
    assert_eq!(d.relays_of(&c.tuple), vec![(v4, v4_local)]);
    assert_eq!(d.releases, vec![v6]);
    assert_eq!(relays_closed(&d), vec![(c.tuple, v6_addr, CloseReason::Expired)]);
    assert_eq!(d.closed_events(), vec![], "the allocation carries on over IPv4");
    // The IPv4 family lasts its 1200 s from the Refresh at 500 s.
    d.advance(1099);
    assert_eq!(d.server.allocation_count(), 1);
    d.advance(1);
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(d.closed_events(), vec![(c.tuple, CloseReason::Expired)]);
    assert_eq!(d.releases, vec![v6, v4]);
}

#[test]
fn s8_1_refresh_without_requested_address_family_refreshes_both() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    dual(&mut d, &mut c, 600);
    d.advance(500);
    assert_eq!(d.refresh(&mut c, Some(1200)).lifetime(), Some(1200));
    d.advance(1199);
    assert_eq!(d.relays_of(&c.tuple).len(), 2);
    d.advance(1);
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(relays_closed(&d), vec![], "both ended with the allocation");
    assert_eq!(d.closed_events(), vec![(c.tuple, CloseReason::Expired)]);
}

#[test]
fn s8_1_refresh_zero_with_requested_address_family_deletes_only_that_family() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let ((v4, _), (v6, v6_local)) = dual(&mut d, &mut c, 600);
    let (peer4, peer6) = (addr(PEER_A), addr(PEER_V6));
    d.create_permission(&mut c, &[peer4, peer6])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    d.channel_bind(&mut c, 0x4000, peer4)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    d.channel_bind(&mut c, 0x4001, peer6)
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    let free_before = d.server.free_relay_ports();
    d.advance(10);

    let r = refresh_family(&mut d, &mut c, 2, 0);
    r.assert_ok(Method::REFRESH, &c.key);
    assert_eq!(r.lifetime(), Some(0));
    // The IPv6 relay, its socket and its port are gone ...
    assert_eq!(d.releases, vec![v6]);
    assert_eq!(relays_closed(&d), vec![(c.tuple, v6_local, CloseReason::Deleted)]);
    let free_after = d.server.free_relay_ports();
    assert_eq!(free_after.0, free_before.0, "the IPv4 port is still held");
    assert_eq!(
        free_after.1.zip(free_before.1).map(|(a, b)| a - b),
        Some(1),
        "the IPv6 port is free again"
    );
    // ... with the permission and the channel to the IPv6 peer ...
    assert_eq!(
        d.send_indication(&c, peer6, b"six"),
        Out::Drop(DropReason::NoPermission)
    );
    assert_eq!(d.channel_data(&c, 0x4001, b"six"), Out::Drop(DropReason::ChannelData));
    assert_eq!(
        d.peer_datagram(v6, peer6, b"six"),
        PeerOut::Drop(DropReason::UnknownRelay)
    );
    // ... while the IPv4 family relays both ways as before (RFC 8656 §8.1:
    // it "MUST NOT affect any permissions or channels associated with
    // allocations for the other address family").
    assert_eq!(d.server.allocation_count(), 1);
    assert_eq!(d.closed_events(), vec![]);
    assert!(matches!(d.send_indication(&c, peer4, b"four"), Out::ToPeer { relay, .. } if relay == v4));
    assert!(matches!(d.channel_data(&c, 0x4000, b"four"), Out::ToPeer { relay, .. } if relay == v4));
    assert!(matches!(d.peer_datagram(v4, peer4, b"four"), PeerOut::ToClient { tuple, .. } if tuple == c.tuple));
    // The permission and the channel to the IPv4 peer keep their own
    // lifetimes: both lapse at 300 s, the allocation lives on to 600 s.
    d.advance(289);
    assert!(matches!(d.channel_data(&c, 0x4000, b"four"), Out::ToPeer { .. }));
    d.advance(1);
    assert_eq!(
        d.send_indication(&c, peer4, b"four"),
        Out::Drop(DropReason::NoPermission)
    );
    assert_eq!(d.server.allocation_count(), 1);
}

#[test]
fn s8_2_a_family_the_allocation_no_longer_has_is_443() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    dual(&mut d, &mut c, 600);
    refresh_family(&mut d, &mut c, 2, 0).assert_ok(Method::REFRESH, &c.key);
    // "If the server receives a Refresh Request with a
    // REQUESTED-ADDRESS-FAMILY attribute and the attribute value does not
    // match the address family of the allocation, the server MUST reply
    // with a 443 (Peer Address Family Mismatch) error response."
    for secs in [600, 0] {
        let r = refresh_family(&mut d, &mut c, 2, secs);
        r.assert_error(Method::REFRESH, 443);
        assert!(r.verifies(&c.key));
    }
    // The IPv6 peer is refused too (§10.2, §12.2: no relay of its family).
    d.create_permission(&mut c, &[addr(PEER_V6)])
        .assert_error(Method::CREATE_PERMISSION, 443);
    d.channel_bind(&mut c, 0x4001, addr(PEER_V6))
        .assert_error(Method::CHANNEL_BIND, 443);
    // A mismatch changes nothing: the IPv4 family is still there.
    assert_eq!(d.relays_of(&c.tuple).len(), 1);
    refresh_family(&mut d, &mut c, 1, 600).assert_ok(Method::REFRESH, &c.key);
}

#[test]
fn s8_1_the_allocation_ends_with_its_last_family() {
    // One allocation per user, so the quota unit is seen to stay and return.
    let quotas = Arc::new(Quotas::new(10, 1));
    let q = quotas.clone();
    let mut d = Driver::with(|c| c.quotas = q);
    let mut c = Client::udp("198.51.100.1:40000");
    let ((v4, _), (v6, _)) = dual(&mut d, &mut c, 600);
    d.advance(3);
    refresh_family(&mut d, &mut c, 2, 0).assert_ok(Method::REFRESH, &c.key);
    assert_eq!(d.server.allocation_count(), 1);
    // The allocation still counts once against the user while IPv4 lives.
    assert_eq!(quotas.total(), 1);
    let mut other = Client::udp("198.51.100.1:40001");
    d.allocate_with(&mut other, &[]).assert_error(Method::ALLOCATE, 486);
    refresh_family(&mut d, &mut c, 1, 0).assert_ok(Method::REFRESH, &c.key);
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(d.releases, vec![v6, v4]);
    assert_eq!(relays_closed(&d).len(), 1, "only the first family ends on its own");
    assert_eq!(d.closed_events(), vec![(c.tuple, CloseReason::Deleted)]);
    // The quota unit came back with the allocation: a new one fits.
    assert_eq!(quotas.total(), 0);
    d.refresh(&mut c, Some(600)).assert_error(Method::REFRESH, 437);
    dual(&mut d, &mut c, 600);
    assert_eq!(quotas.total(), 1);
}

#[test]
fn s8_1_a_family_past_its_lifetime_is_gone_before_its_timer_runs() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let (_, (v6, _)) = dual(&mut d, &mut c, 600);
    refresh_family(&mut d, &mut c, 1, 1200).assert_ok(Method::REFRESH, &c.key);
    // Move the clock without running the timer, as a late driver would.
    d.now += Duration::from_secs(600);
    refresh_family(&mut d, &mut c, 2, 600).assert_error(Method::REFRESH, 443);
    assert_eq!(d.releases, vec![v6]);
    refresh_family(&mut d, &mut c, 1, 600).assert_ok(Method::REFRESH, &c.key);
    // The stale timer entry is harmless when it fires.
    d.advance(1);
    assert_eq!(d.releases, vec![v6]);
    assert_eq!(d.server.allocation_count(), 1);
}

/// The close event (and with it the close log and the usage record) names
/// every relayed address the allocation had, the one of a family that ended
/// first too: the bytes relayed through it are in that event's counts.
#[test]
fn s8_1_the_close_event_names_the_relay_of_a_family_that_ended_first() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let (_, (v6, _)) = dual(&mut d, &mut c, 600);
    let told = d.events.iter().find_map(|e| match e {
        Event::AllocationCreated { relays, .. } => Some(relays.clone()),
        _ => None,
    });
    assert_eq!(told.as_ref().map(Vec::len), Some(2), "{told:?}");
    d.create_permission(&mut c, &[addr(PEER_V6)])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    assert!(matches!(d.send_indication(&c, addr(PEER_V6), b"six"), Out::ToPeer { relay, .. } if relay == v6));
    refresh_family(&mut d, &mut c, 2, 0).assert_ok(Method::REFRESH, &c.key);
    d.advance(5);
    d.refresh(&mut c, Some(0)).assert_ok(Method::REFRESH, &c.key);
    let closed: Vec<_> = d
        .events
        .iter()
        .filter_map(|e| match e {
            Event::AllocationClosed { relays, traffic, .. } => Some((relays.clone(), traffic.to_peer_bytes)),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![(told.unwrap(), 3)]);
}
