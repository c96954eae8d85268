//! RFC 8656 §7.3 (Refresh) and allocation expiry, with the clock moved by
//! the test.

mod common;

use std::time::Duration;

use common::*;
use proto::wire::{attr, Class, MessageType, Method};
use proto::{CloseReason, DropReason, Event};

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
    // RFC 8656 §7.4: a client that gets 437 to a Refresh with LIFETIME 0
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
