//! RFC 8656 §7.1–§7.2 (Allocate, with §7.2 steps 6-9's dual stack),
//! on the pure core with a fake driver.

mod common;
mod rng;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use common::*;
use proto::auth::rest_password;
use proto::metrics::{code_index, method_index};
use proto::quota::{QuotaLimits, Quotas};
use proto::wire::{attr, long_term_key, Class, MessageType, Method};
use proto::{BindError, Event, Transport};

const EVEN_PORT: u16 = attr::EVEN_PORT;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A driver whose quota allows 10 allocations per user, and the quota.
fn with_quotas() -> (Driver, Arc<Quotas>) {
    let quotas = Arc::new(Quotas::new(10, 1));
    let q = quotas.clone();
    (Driver::with(|c| c.quotas = q), quotas)
}

fn relayed(r: &Resp) -> Vec<SocketAddr> {
    r.xor_addrs(attr::XOR_RELAYED_ADDRESS)
}

/// A signed Allocate with `attrs` (plus REQUESTED-TRANSPORT unless `bare`), as bytes.
fn allocate_bytes(d: &mut Driver, c: &mut Client, attrs: &[A]) -> Vec<u8> {
    if c.nonce.is_none() {
        d.fetch_nonce(c);
    }
    let tid = c.tid();
    build(
        MessageType::new(Method::ALLOCATE, Class::Request),
        &tid,
        attrs,
        Some(&c.auth()),
    )
}

#[test]
fn success_carries_relayed_mapped_address_and_lifetime() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let r = d.allocate(&mut c);
    // The driver was asked to bind the internal address ...
    assert_eq!(d.binds.len(), 1);
    let (relay, local, df) = d.binds[0];
    assert_eq!(local.ip(), ip(RELAY_V4));
    assert!(!df);
    // ... and the client is told the address peers see (external_ips applied).
    assert_eq!(relayed(&r), vec![SocketAddr::new(ip(RELAY_V4_PUBLIC), local.port())]);
    assert_eq!(r.xor_addr(attr::XOR_MAPPED_ADDRESS), Some(c.tuple.client.0));
    assert_eq!(r.lifetime(), Some(600));
    assert_eq!(r.get(attr::RESERVATION_TOKEN), None);
    assert_eq!(d.server.allocation_count(), 1);
    assert_eq!(d.relay_of(&c.tuple), relay);
    assert_eq!(
        d.events,
        vec![Event::AllocationCreated {
            tuple: c.tuple,
            username: ALICE.0.into(),
            relays: vec![SocketAddr::new(ip(RELAY_V4_PUBLIC), local.port())],
            lifetime: std::time::Duration::from_secs(600),
        }]
    );
}

#[test]
fn a_success_is_counted_once_in_the_response_metrics() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate(&mut c);
    let responses = d.server.stats().requests.responses[method_index(Method::ALLOCATE)];
    // The 401 that fetched the nonce, then the success.
    assert_eq!(responses[code_index(None)], 1);
    assert_eq!(responses.iter().sum::<u64>(), 2);
}

#[test]
fn lifetime_is_clamped_between_default_and_maximum() {
    let mut d = Driver::default_setup();
    for (i, (asked, got)) in [(1200, 1200), (99_999, 3600), (10, 600), (600, 600), (3600, 3600)]
        .into_iter()
        .enumerate()
    {
        let mut c = Client::udp(&format!("198.51.100.1:{}", 41000 + i));
        let r = d.allocate_with(&mut c, &[lifetime(asked)]);
        r.assert_ok(Method::ALLOCATE, &c.key);
        assert_eq!(r.lifetime(), Some(got), "asked for {asked}");
    }
}

#[test]
fn step3_missing_requested_transport_is_400() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let r = d.request(&mut c, Method::ALLOCATE, &[]).resp();
    r.assert_error(Method::ALLOCATE, 400);
    assert!(r.verifies(&c.key), "errors to authenticated requests are signed");
    // Malformed (wrong length) is 400 too.
    let r = d
        .request(
            &mut c,
            Method::ALLOCATE,
            &[A::Bytes(attr::REQUESTED_TRANSPORT, vec![17])],
        )
        .resp();
    r.assert_error(Method::ALLOCATE, 400);
    assert!(d.binds.is_empty());
    assert_eq!(d.server.allocation_count(), 0);
}

/// With TCP relays turned off (`turn.tcp_relay = false`) TCP is a transport
/// this server does not support; with them on, see tests/turn_tcp_relay.rs.
#[test]
fn step3_tcp_transport_is_442_when_tcp_relays_are_off() {
    let mut d = Driver::with(|c| c.tcp_relay = false);
    let mut c = Client::new("198.51.100.1:40000", Transport::Tcp, ALICE);
    let r = d
        .request(
            &mut c,
            Method::ALLOCATE,
            &[A::Bytes(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])],
        )
        .resp();
    r.assert_error(Method::ALLOCATE, 442);
    assert!(d.binds.is_empty());
}

#[test]
fn step2_retransmission_gets_identical_bytes_without_a_second_bind() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let req = allocate_bytes(&mut d, &mut c, &[transport_udp()]);
    let first = d.input(c.tuple, &req).resp();
    first.assert_ok(Method::ALLOCATE, &c.key);
    d.advance(2);
    let again = d.input(c.tuple, &req).resp();
    assert_eq!(again, first);
    assert_eq!(d.binds.len(), 1);
    assert_eq!(d.created_events(), 1);
    assert_eq!(d.server.allocation_count(), 1);
}

#[test]
fn step2_other_transaction_on_the_same_tuple_is_437() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate(&mut c);
    let r = d.allocate_with(&mut c, &[]);
    r.assert_error(Method::ALLOCATE, 437);
    assert!(r.verifies(&c.key));
    assert_eq!(d.binds.len(), 1);
}

#[test]
fn step2_retransmission_while_the_bind_is_pending_is_absorbed() {
    let mut d = Driver::default_setup();
    d.auto_bind = false;
    let mut c = Client::udp("198.51.100.1:40000");
    let req = allocate_bytes(&mut d, &mut c, &[transport_udp()]);
    assert_eq!(d.input(c.tuple, &req), Out::Nothing);
    // The client retransmits before the relay socket is bound: the answer is
    // already on its way, so nothing new happens.
    assert_eq!(d.input(c.tuple, &req), Out::Nothing);
    assert_eq!(d.binds.len(), 1);
    // A different Allocate on the same 5-tuple meanwhile is refused.
    let other = allocate_bytes(&mut d, &mut c, &[transport_udp()]);
    d.input(c.tuple, &other).resp().assert_error(Method::ALLOCATE, 437);
    assert_eq!(d.binds.len(), 1);
    d.release_held_binds();
    let answers: Vec<_> = d.sent.iter().filter(|(t, _)| *t == c.tuple).cloned().collect();
    assert_eq!(answers.len(), 1);
    Resp(answers[0].1.clone()).assert_ok(Method::ALLOCATE, &c.key);
    assert_eq!(d.server.allocation_count(), 1);
    assert_eq!(d.created_events(), 1);
    // And once it exists, the retransmission gets the same bytes again.
    assert_eq!(d.input(c.tuple, &req).resp().0, answers[0].1);
}

#[test]
fn connection_closed_while_the_bind_is_pending_creates_nothing() {
    let quotas = Arc::new(Quotas::new(10, 10));
    let q = quotas.clone();
    let mut d = Driver::with(|c| c.quotas = q);
    d.auto_bind = false;
    let mut c = Client::new("198.51.100.1:40000", Transport::Tcp, ALICE);
    assert_eq!(d.request(&mut c, Method::ALLOCATE, &[transport_udp()]), Out::Nothing);
    assert_eq!(quotas.total(), 1);
    d.server.connection_closed(d.now, c.tuple);
    d.release_held_binds();
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(d.created_events(), 0);
    assert!(
        d.sent.iter().all(|(t, _)| *t != c.tuple),
        "no answer to a closed connection"
    );
    assert!(d.bound.is_empty(), "the relay bound for it is released");
    assert_eq!(quotas.total(), 0);
}

#[test]
fn requested_address_family_ipv6_gets_an_ipv6_relay() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let r = d.allocate_with(&mut c, &[family(2)]);
    r.assert_ok(Method::ALLOCATE, &c.key);
    let relays = relayed(&r);
    assert_eq!(relays.len(), 1);
    assert_eq!(relays[0].ip(), ip(RELAY_V6));
    assert_eq!(d.binds[0].1, relays[0]);
    // Explicit IPv4 works as well.
    let mut c4 = Client::udp("198.51.100.1:40001");
    let r = d.allocate_with(&mut c4, &[family(1)]);
    assert_eq!(relayed(&r)[0].ip(), ip(RELAY_V4_PUBLIC));
}

#[test]
fn unknown_family_value_is_440() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate_with(&mut c, &[family(3)])
        .assert_error(Method::ALLOCATE, 440);
    assert!(d.binds.is_empty());
}

#[test]
fn family_without_a_relay_address_is_440() {
    let mut d = Driver::with(|c| c.relay_ipv6 = None);
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate_with(&mut c, &[family(2)])
        .assert_error(Method::ALLOCATE, 440);
    let mut d = Driver::with(|c| c.relay_ipv4 = None);
    let mut c = Client::udp("198.51.100.1:40000");
    // The default family is IPv4.
    d.allocate_with(&mut c, &[]).assert_error(Method::ALLOCATE, 440);
    assert!(d.binds.is_empty());
}

fn additional(f: u8) -> A {
    A::Bytes(attr::ADDITIONAL_ADDRESS_FAMILY, vec![f, 0, 0, 0])
}

#[test]
fn additional_address_family_gets_two_relays() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let r = d.allocate_with(&mut c, &[additional(2)]);
    r.assert_ok(Method::ALLOCATE, &c.key);
    let relays = relayed(&r);
    assert_eq!(relays.len(), 2);
    assert_eq!(relays[0].ip(), ip(RELAY_V4_PUBLIC));
    assert_eq!(relays[1].ip(), ip(RELAY_V6));
    assert_eq!(r.get(attr::ADDRESS_ERROR_CODE), None);
    assert_eq!(d.binds.len(), 2);
    assert_eq!(d.relays_of(&c.tuple).len(), 2);
}

#[test]
fn additional_with_requested_family_is_400() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate_with(&mut c, &[family(1), additional(2)])
        .assert_error(Method::ALLOCATE, 400);
}

#[test]
fn additional_family_ipv4_is_400() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate_with(&mut c, &[additional(1)])
        .assert_error(Method::ALLOCATE, 400);
}

#[test]
fn dual_stack_without_an_ipv6_relay_reports_address_error_code_440() {
    let mut d = Driver::with(|c| c.relay_ipv6 = None);
    let mut c = Client::udp("198.51.100.1:40000");
    let r = d.allocate_with(&mut c, &[additional(2)]);
    r.assert_ok(Method::ALLOCATE, &c.key);
    let relays = relayed(&r);
    assert_eq!(relays.len(), 1);
    assert!(relays[0].is_ipv4());
    // RFC 8656 §18.12: family, reserved, class, number, reason.
    let aec = r.get(attr::ADDRESS_ERROR_CODE).expect("ADDRESS-ERROR-CODE");
    assert_eq!(aec[0], 0x02, "about the IPv6 family");
    assert_eq!((aec[2] & 7) as u16 * 100 + aec[3] as u16, 440);
}

/// A dual-stack Allocate whose IPv4 bind succeeds and whose next `fails`
/// (IPv6) binds fail with `error`: the IPv4 relay stands and
/// ADDRESS-ERROR-CODE reports 508 for IPv6. Returns the binds asked for.
fn dual_stack_with_ipv6_bind_failures(error: BindError, fails: u32) -> usize {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.fetch_nonce(&mut c);
    d.auto_bind = false;
    let req = allocate_bytes(&mut d, &mut c, &[transport_udp(), additional(2)]);
    assert_eq!(d.input(c.tuple, &req), Out::Nothing);
    d.auto_bind = true;
    d.bind_error = error;
    d.fail_binds = fails;
    d.release_held_binds();
    let r = Resp(d.sent.last().unwrap().1.clone());
    r.assert_ok(Method::ALLOCATE, &c.key);
    assert_eq!(relayed(&r).len(), 1);
    let aec = r.get(attr::ADDRESS_ERROR_CODE).expect("ADDRESS-ERROR-CODE");
    assert_eq!((aec[0], (aec[2] & 7) as u16 * 100 + aec[3] as u16), (0x02, 508));
    d.binds.len()
}

#[test]
fn dual_stack_ipv6_bind_failures_keep_the_ipv4_relay_and_report_508() {
    // The IPv4 bind, then eight taken IPv6 ports.
    assert_eq!(dual_stack_with_ipv6_bind_failures(BindError::AddrInUse, 8), 9);
}

/// The ADDRESS-ERROR-CODE of an Allocate success (RFC 8656 §18.12:
/// family, reserved, class, number, reason) as (family, code).
fn address_error(r: &Resp) -> Option<(u8, u16)> {
    let v = r.get(attr::ADDRESS_ERROR_CODE)?;
    Some((v[0], (v[2] & 7) as u16 * 100 + v[3] as u16))
}

/// A dual-stack Allocate whose first `fails` binds (the IPv4 ones) fail with
/// `error`: RFC 8656 §7.2 step 9's partial success, an IPv6 relay alone and
/// ADDRESS-ERROR-CODE 508 for IPv4. Returns the binds asked for.
fn dual_stack_with_ipv4_bind_failures(error: BindError, fails: u32) -> usize {
    let (mut d, quotas) = with_quotas();
    let mut c = Client::udp("198.51.100.1:40000");
    d.bind_error = error;
    d.fail_binds = fails;
    let r = d.allocate_with(&mut c, &[additional(2)]);
    r.assert_ok(Method::ALLOCATE, &c.key);
    assert_eq!(relayed(&r).len(), 1);
    assert!(relayed(&r)[0].is_ipv6(), "{:?}", relayed(&r));
    assert_eq!(address_error(&r), Some((0x01, 508)), "about the IPv4 family");
    // Only the IPv6 relay is held, and the allocation counts once.
    assert_eq!(d.relays_of(&c.tuple).len(), 1);
    assert_eq!(d.live_relay_addrs().len(), 1);
    assert_eq!(quotas.total(), 1);
    // The allocation has no IPv4 family to refresh (RFC 8656 §8.2) ...
    d.request(&mut c, Method::REFRESH, &[family(1)])
        .resp()
        .assert_error(Method::REFRESH, 443);
    // ... and relays to IPv6 peers only.
    d.create_permission(&mut c, &[addr(PEER_A)])
        .assert_error(Method::CREATE_PERMISSION, 443);
    d.create_permission(&mut c, &[addr(PEER_V6)])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    assert!(matches!(
        d.send_indication(&c, addr(PEER_V6), b"six"),
        Out::ToPeer { .. }
    ));
    d.binds.len()
}

#[test]
fn s7_2_step9_ipv4_bind_failures_keep_the_ipv6_relay_and_report_508() {
    // Eight taken IPv4 ports, then the IPv6 bind.
    assert_eq!(dual_stack_with_ipv4_bind_failures(BindError::AddrInUse, 8), 9);
}

#[test]
fn s7_2_step9_an_ipv4_bind_error_another_port_cannot_fix_keeps_the_ipv6_relay() {
    assert_eq!(dual_stack_with_ipv4_bind_failures(BindError::AddrNotAvailable, 1), 2);
}

#[test]
fn s7_2_step9_no_free_ipv4_port_gives_the_ipv6_relay_alone() {
    // One port: the first allocation's IPv4 relay takes it.
    let mut d = Driver::with(|c| {
        c.port_min = 50000;
        c.port_max = 50000;
    });
    let mut first = Client::udp("198.51.100.1:40000");
    d.allocate(&mut first);
    let mut c = Client::udp("198.51.100.1:40001");
    let r = d.allocate_with(&mut c, &[additional(2)]);
    r.assert_ok(Method::ALLOCATE, &c.key);
    assert_eq!(relayed(&r), vec![SocketAddr::new(ip(RELAY_V6), 50000)]);
    assert_eq!(address_error(&r), Some((0x01, 508)));
    assert_eq!(d.binds.len(), 2, "no IPv4 bind asked for");
}

#[test]
fn s7_2_step9_both_families_failing_is_508() {
    let (mut d, quotas) = with_quotas();
    let mut c = Client::udp("198.51.100.1:40000");
    d.bind_error = BindError::AddrNotAvailable;
    d.fail_binds = 2;
    let r = d.allocate_with(&mut c, &[additional(2)]);
    // "If the server cannot satisfy the request, then the server rejects
    // the request with a 508 (Insufficient Capacity) error."
    r.assert_error(Method::ALLOCATE, 508);
    assert!(r.verifies(&c.key));
    assert_eq!(d.binds.len(), 2);
    assert!(d.live_relay_addrs().is_empty());
    assert_eq!((quotas.total(), d.server.allocation_count()), (0, 0));
    // The IPv4 relay failing and the IPv6 family missing: 508 as well.
    let mut d = Driver::with(|c| c.relay_ipv6 = None);
    let mut c = Client::udp("198.51.100.1:40001");
    d.bind_error = BindError::AddrNotAvailable;
    d.fail_binds = 1;
    d.allocate_with(&mut c, &[additional(2)])
        .assert_error(Method::ALLOCATE, 508);
}

#[test]
fn s7_2_step7_a_dual_allocate_on_a_server_without_ipv4_is_440() {
    // Step 7 ("If the REQUESTED-ADDRESS-FAMILY attribute is absent and the
    // server does not support the IPv4 address family ... 440") comes
    // before step 9's partial success.
    let mut d = Driver::with(|c| c.relay_ipv4 = None);
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate_with(&mut c, &[additional(2)])
        .assert_error(Method::ALLOCATE, 440);
    assert!(d.binds.is_empty());
}

#[test]
fn even_port_gets_an_even_port() {
    let mut d = Driver::default_setup();
    for i in 0..20 {
        let mut c = Client::udp(&format!("198.51.100.1:{}", 40000 + i));
        let r = d.allocate_with(&mut c, &[A::Bytes(EVEN_PORT, vec![0x00])]);
        r.assert_ok(Method::ALLOCATE, &c.key);
        assert_eq!(relayed(&r)[0].port() % 2, 0);
        assert_eq!(r.get(attr::RESERVATION_TOKEN), None, "no R bit, no token");
    }
}

#[test]
fn even_port_with_r_bit_reserves_the_next_port_for_a_token() {
    let mut d = Driver::default_setup();
    let mut a = Client::udp("198.51.100.1:40000");
    let r = d.allocate_with(&mut a, &[A::Bytes(EVEN_PORT, vec![0x80])]);
    r.assert_ok(Method::ALLOCATE, &a.key);
    let port = relayed(&r)[0].port();
    assert_eq!(port % 2, 0);
    let token = r.get(attr::RESERVATION_TOKEN).expect("RESERVATION-TOKEN");
    assert_eq!(token.len(), 8);
    // The reserved port is not handed to anyone else meanwhile.
    for i in 0..50 {
        let mut o = Client::udp(&format!("198.51.100.3:{}", 40000 + i));
        let r = d.allocate(&mut o);
        assert_ne!(relayed(&r)[0].port(), port + 1);
    }
    // Another client (another 5-tuple, another user) redeems the token.
    let mut b = Client::new("198.51.100.2:50000", Transport::Udp, BOB);
    let r = d.allocate_with(&mut b, &[A::Bytes(attr::RESERVATION_TOKEN, token.clone())]);
    r.assert_ok(Method::ALLOCATE, &b.key);
    assert_eq!(relayed(&r), vec![SocketAddr::new(ip(RELAY_V4_PUBLIC), port + 1)]);
    assert_eq!(d.binds.last().unwrap().1, SocketAddr::new(ip(RELAY_V4), port + 1));
    // A token works once.
    let mut e = Client::udp("198.51.100.2:50001");
    d.allocate_with(&mut e, &[A::Bytes(attr::RESERVATION_TOKEN, token)])
        .assert_error(Method::ALLOCATE, 508);
}

#[test]
fn even_port_r_bit_with_additional_family_is_400() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate_with(&mut c, &[A::Bytes(EVEN_PORT, vec![0x80]), additional(2)])
        .assert_error(Method::ALLOCATE, 400);
    assert!(d.binds.is_empty());
    // Without the R bit, both relays are even.
    let r = d.allocate_with(&mut c, &[A::Bytes(EVEN_PORT, vec![0x00]), additional(2)]);
    r.assert_ok(Method::ALLOCATE, &c.key);
    assert!(relayed(&r).iter().all(|a| a.port() % 2 == 0));
}

/// RFC 8656 §7.2 step 9 with EVEN-PORT: no even IPv4 port left is the
/// IPv4 family's partial failure; the IPv6 relay still gets an even port.
#[test]
fn s7_2_step9_even_port_with_no_even_ipv4_port_left_gives_an_even_ipv6_relay_alone() {
    let mut d = Driver::with(|c| {
        c.port_min = 50000;
        c.port_max = 50001;
    });
    let mut first = Client::udp("198.51.100.1:40000");
    let r = d.allocate_with(&mut first, &[A::Bytes(EVEN_PORT, vec![0x00])]);
    assert_eq!(relayed(&r), vec![SocketAddr::new(ip(RELAY_V4_PUBLIC), 50000)]);
    let mut c = Client::udp("198.51.100.1:40001");
    let r = d.allocate_with(&mut c, &[A::Bytes(EVEN_PORT, vec![0x00]), additional(2)]);
    r.assert_ok(Method::ALLOCATE, &c.key);
    assert_eq!(relayed(&r), vec![SocketAddr::new(ip(RELAY_V6), 50000)]);
    assert_eq!(address_error(&r), Some((0x01, 508)));
    assert_eq!(r.get(attr::RESERVATION_TOKEN), None);
    // The odd IPv4 port is still free for an Allocate without EVEN-PORT.
    let mut other = Client::udp("198.51.100.1:40002");
    let r = d.allocate(&mut other);
    assert_eq!(relayed(&r), vec![SocketAddr::new(ip(RELAY_V4_PUBLIC), 50001)]);
}

#[test]
fn token_with_even_port_is_400() {
    let mut d = Driver::default_setup();
    let mut a = Client::udp("198.51.100.1:40000");
    let r = d.allocate_with(&mut a, &[A::Bytes(EVEN_PORT, vec![0x80])]);
    let token = r.get(attr::RESERVATION_TOKEN).unwrap();
    let mut b = Client::udp("198.51.100.2:50000");
    d.allocate_with(
        &mut b,
        &[
            A::Bytes(attr::RESERVATION_TOKEN, token.clone()),
            A::Bytes(EVEN_PORT, vec![0]),
        ],
    )
    .assert_error(Method::ALLOCATE, 400);
    d.allocate_with(&mut b, &[A::Bytes(attr::RESERVATION_TOKEN, token), family(1)])
        .assert_error(Method::ALLOCATE, 400);
}

#[test]
fn unknown_token_is_508() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.allocate_with(&mut c, &[A::Bytes(attr::RESERVATION_TOKEN, vec![1; 8])])
        .assert_error(Method::ALLOCATE, 508);
    assert!(d.binds.is_empty());
}

#[test]
fn expired_token_is_508() {
    let mut d = Driver::default_setup();
    let mut a = Client::udp("198.51.100.1:40000");
    let r = d.allocate_with(&mut a, &[A::Bytes(EVEN_PORT, vec![0x80])]);
    let token = r.get(attr::RESERVATION_TOKEN).unwrap();
    d.advance(31);
    let mut b = Client::udp("198.51.100.2:50000");
    d.allocate_with(&mut b, &[A::Bytes(attr::RESERVATION_TOKEN, token)])
        .assert_error(Method::ALLOCATE, 508);
    assert_eq!(d.binds.len(), 1);
}

#[test]
fn eight_bind_failures_are_508_and_release_the_quota() {
    let (mut d, quotas) = with_quotas();
    let mut c = Client::udp("198.51.100.1:40000");
    d.fail_binds = 8;
    let r = d.allocate_with(&mut c, &[]);
    r.assert_error(Method::ALLOCATE, 508);
    assert!(r.verifies(&c.key));
    assert_eq!(d.binds.len(), 8, "eight ports tried");
    assert_eq!(quotas.total(), 0);
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(d.created_events(), 0);
    // Seven failures, then success on the eighth port.
    d.fail_binds = 7;
    d.allocate(&mut c);
    assert_eq!(d.binds.len(), 16);
    assert_eq!(quotas.total(), 1);
}

#[test]
fn a_bind_error_another_port_cannot_fix_is_508_at_once() {
    for error in [
        BindError::AddrNotAvailable,
        BindError::PermissionDenied,
        BindError::Other,
    ] {
        let (mut d, quotas) = with_quotas();
        let mut c = Client::udp("198.51.100.1:40000");
        d.bind_error = error;
        d.fail_binds = 1;
        let r = d.allocate_with(&mut c, &[]);
        r.assert_error(Method::ALLOCATE, 508);
        assert_eq!(d.binds.len(), 1, "{error:?}: one BindRelay, no retry");
        assert_eq!(quotas.total(), 0);
        assert_eq!(d.server.allocation_count(), 0);
    }
}

#[test]
fn a_taken_port_is_retried_on_another_port() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.fail_binds = 3;
    d.allocate(&mut c).assert_ok(Method::ALLOCATE, &c.key);
    assert_eq!(d.binds.len(), 4, "three taken ports, then success");
    let ports: std::collections::HashSet<u16> = d.binds.iter().map(|b| b.1.port()).collect();
    assert_eq!(ports.len(), 4, "each try is another port");
}

#[test]
fn dual_stack_ipv6_bind_error_another_port_cannot_fix_keeps_the_ipv4_relay() {
    // The IPv4 bind and one IPv6 bind.
    assert_eq!(dual_stack_with_ipv6_bind_failures(BindError::AddrNotAvailable, 1), 2);
}

#[test]
fn quota_per_user_is_486_and_total_is_508() {
    let mut d = Driver::with(|c| c.quotas = Arc::new(Quotas::new(10, 1)));
    let mut a1 = Client::udp("198.51.100.1:40000");
    let mut a2 = Client::udp("198.51.100.1:40001");
    let mut b = Client::new("198.51.100.2:40000", Transport::Udp, BOB);
    d.allocate(&mut a1);
    d.allocate_with(&mut a2, &[]).assert_error(Method::ALLOCATE, 486);
    d.allocate(&mut b);
    // Deleting frees the user's quota.
    d.refresh(&mut a1, Some(0)).assert_ok(Method::REFRESH, &a1.key);
    d.allocate(&mut a2);

    let mut d = Driver::with(|c| c.quotas = Arc::new(Quotas::new(2, 10)));
    let mut c1 = Client::udp("198.51.100.1:40000");
    let mut c2 = Client::udp("198.51.100.1:40001");
    let mut c3 = Client::new("198.51.100.2:40000", Transport::Udp, BOB);
    d.allocate(&mut c1);
    d.allocate(&mut c2);
    d.allocate_with(&mut c3, &[]).assert_error(Method::ALLOCATE, 508);
    assert_eq!(d.binds.len(), 2);
}

/// A REST client that mints a fresh credential per Allocate is still one
/// user; one source prefix gets its own cap whatever the credentials.
#[test]
fn fresh_rest_credentials_share_the_users_quota_and_each_source_has_a_cap() {
    let rest = |client: &str, user: &str, expiry: u64| {
        let name = format!("{expiry}:{user}");
        let key = long_term_key(&name, REALM, &rest_password(REST_SECRET, &name));
        Client::with_key(client, Transport::Udp, &name, key)
    };
    let mut d = Driver::with(|c| c.quotas = Arc::new(Quotas::new(100, 2)));
    for i in 0..2 {
        d.allocate(&mut rest(
            &format!("198.51.100.1:{}", 40000 + i),
            "mallory",
            ANCHOR_UNIX + 100 + i,
        ));
    }
    let mut third = rest("198.51.100.2:40000", "mallory", ANCHOR_UNIX + 999);
    d.allocate_with(&mut third, &[]).assert_error(Method::ALLOCATE, 486);
    d.allocate(&mut rest("198.51.100.2:40001", "trent", ANCHOR_UNIX + 999));

    let limits = QuotaLimits {
        total: 100,
        per_user: 100,
        per_source: 3,
    };
    let mut d = Driver::with(|c| c.quotas = Arc::new(Quotas::with_limits(limits)));
    for i in 0..3 {
        d.allocate(&mut rest(
            &format!("198.51.100.1:{}", 40000 + i),
            &format!("u{i}"),
            ANCHOR_UNIX + 100,
        ));
    }
    let mut over = rest("198.51.100.1:41000", "u9", ANCHOR_UNIX + 100);
    d.allocate_with(&mut over, &[]).assert_error(Method::ALLOCATE, 486);
    d.allocate(&mut rest("198.51.100.2:41000", "u9", ANCHOR_UNIX + 100));
    let v6 = |i: u16| rest(&format!("[2001:db8:0:1::{i}]:40000"), "v6", ANCHOR_UNIX + 100);
    for i in 1..=3 {
        d.allocate(&mut v6(i));
    }
    d.allocate_with(&mut v6(9), &[]).assert_error(Method::ALLOCATE, 486);
}

#[test]
fn dont_fragment_is_accepted_and_passed_to_the_bind() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let r = d.allocate_with(&mut c, &[A::Bytes(attr::DONT_FRAGMENT, vec![])]);
    r.assert_ok(Method::ALLOCATE, &c.key);
    assert!(d.binds[0].2);
}

/// RFC 8656 §13.1-13.3: across families, or from an IPv6 client, the
/// relay ignores DONT-FRAGMENT ("MUST be ignored"); IPv4 to IPv4 keeps it.
#[test]
fn dont_fragment_is_ignored_unless_relaying_ipv4_to_ipv4() {
    let mut d = Driver::default_setup();
    let mut v4 = Client::udp("198.51.100.1:40000");
    let df = || A::Bytes(attr::DONT_FRAGMENT, vec![]);
    let v6_family = || A::Bytes(attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0]);
    d.allocate_with(&mut v4, &[df(), v6_family()])
        .assert_ok(Method::ALLOCATE, &v4.key);
    assert!(d.binds.last().unwrap().1.is_ipv6());
    assert!(!d.binds.last().unwrap().2, "IPv4 to IPv6: ignored");
    let mut v6 = Client::udp("[2001:db8:0:1::1]:40000");
    d.allocate_with(&mut v6, &[df()]).assert_ok(Method::ALLOCATE, &v6.key);
    assert!(d.binds.last().unwrap().1.is_ipv4());
    assert!(!d.binds.last().unwrap().2, "IPv6 to IPv4: ignored");
    let mut v6b = Client::udp("[2001:db8:0:1::2]:40000");
    d.allocate_with(&mut v6b, &[df(), v6_family()])
        .assert_ok(Method::ALLOCATE, &v6b.key);
    assert!(!d.binds.last().unwrap().2, "IPv6 to IPv6: ignored");
    let mut v4b = Client::udp("198.51.100.2:40000");
    d.allocate_with(&mut v4b, &[df()]).assert_ok(Method::ALLOCATE, &v4b.key);
    assert!(d.binds.last().unwrap().2, "IPv4 to IPv4: honoured");
}

/// RFC 8656 §21.1.7 wants relay ports hard to guess. The old SplitMix64 core
/// generator gave its state away in one Data indication transaction id, and
/// the next relay port followed: that prediction must now miss, every seed.
#[test]
fn a_data_indication_does_not_predict_the_next_relay_port() {
    let mut hits = 0;
    for seed in 0..32 {
        let mut d = Driver::with(|c| c.rng_seed = proto::seed_from_u64(seed));
        let mut a = Client::udp("198.51.100.1:40000");
        d.allocate(&mut a);
        let relay = d.relay_of(&a.tuple);
        d.create_permission(&mut a, &[addr(PEER_A)])
            .assert_ok(Method::CREATE_PERMISSION, &a.key);
        let PeerOut::ToClient { bytes, .. } = d.peer_datagram(relay, addr(PEER_A), b"x") else {
            panic!("the peer datagram is relayed");
        };
        // Transaction id bytes 0..8 are one whole generator output.
        let seen = u64::from_be_bytes(bytes[8..16].try_into().unwrap());
        let predicted = rng::splitmix_next_after(rng::splitmix_next_after(seen));
        let predicted_port = 49152 + (predicted % 16384) as u16;
        let mut b = Client::udp("198.51.100.2:40000");
        let port = relayed(&d.allocate(&mut b))[0].port();
        hits += usize::from(port == predicted_port);
    }
    assert_eq!(hits, 0, "relay ports predicted from a transaction id");
}

#[test]
fn one_seed_gives_one_run() {
    let ports = |seed| {
        let mut d = Driver::with(|c| c.rng_seed = proto::seed_from_u64(seed));
        (0..4)
            .map(|i| {
                let mut c = Client::udp(&format!("198.51.100.{}:40000", i + 1));
                relayed(&d.allocate(&mut c))[0].port()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(ports(5), ports(5));
    assert_ne!(ports(5), ports(6));
}
