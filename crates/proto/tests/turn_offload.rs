//! The kernel fast path's view (issue 14): the core tells the driver which
//! channels a kernel may relay on its own, and when to stop, at the moment
//! the userspace path would stop (RFC 8656 §9 permissions, §12 channels,
//! §8 allocation lifetime).

mod common;

use std::time::Duration;

use common::*;
use proto::allocation::Traffic;
use proto::wire::Method;
use proto::{CloseReason, Event, Offload, Transport};

fn offloading() -> Driver {
    Driver::with(|c| c.offload = true)
}

fn bound_client(d: &mut Driver) -> Client {
    let mut c = Client::new("198.51.100.1:40000", Transport::Udp, ALICE);
    d.allocate(&mut c);
    d.channel_bind(&mut c, 0x4000, addr(PEER_A))
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    c
}

/// The offload commands after index `from`, as (seconds since start, kind).
fn kinds(d: &Driver, from: usize) -> Vec<(u64, &'static str)> {
    d.offloads[from..]
        .iter()
        .map(|(at, o)| {
            let kind = match o {
                Offload::ChannelBound { .. } => "bound",
                Offload::ChannelExpired(_) => "channel expired",
                Offload::PermissionLapsed(_) => "permission lapsed",
                Offload::AllocationGone { .. } => "allocation gone",
            };
            ((*at - d.t0).as_secs(), kind)
        })
        .collect()
}

#[test]
fn a_bound_channel_is_offloaded_until_its_permission_lapses() {
    let mut d = offloading();
    let c = bound_client(&mut d);
    let (relay, relay_addr) = d.relays_of(&c.tuple)[0];
    match &d.offloads[..] {
        [(_, Offload::ChannelBound { channel, until })] => {
            assert_eq!(channel.tuple, c.tuple);
            assert_eq!((channel.relay, channel.relay_addr), (relay, relay_addr));
            assert_eq!((channel.number.0, channel.peer.0), (0x4000, addr(PEER_A)));
            // §9: the permission ChannelBind installs lasts 300 s, less than the binding.
            assert_eq!(*until - d.t0, Duration::from_secs(300));
        }
        other => panic!("expected one ChannelBound, got {other:?}"),
    }
    d.advance(299);
    assert_eq!(d.offloads.len(), 1, "nothing changes before the permission lapses");
    d.advance(1);
    assert_eq!(kinds(&d, 1), [(300, "permission lapsed")]);
    // The userspace path stops at that moment too.
    assert!(matches!(d.channel_data(&c, 0x4000, b"x"), Out::Drop(_)));
}

#[test]
fn refreshing_the_permission_extends_the_kernel_deadline_until_the_channel_expires() {
    let mut d = offloading();
    let mut c = bound_client(&mut d);
    // The allocation outlives the binding; its refresh changes no deadline.
    d.refresh(&mut c, Some(3600)).assert_ok(Method::REFRESH, &c.key);
    assert_eq!(d.offloads.len(), 1);
    for _ in 0..3 {
        d.advance(200);
        d.create_permission(&mut c, &[addr(PEER_A)])
            .assert_ok(Method::CREATE_PERMISSION, &c.key);
    }
    // Bound at 0 (until 300), refreshed at 200 (500), 400 (600: the binding's end), 600 (gone).
    assert_eq!(
        kinds(&d, 0),
        [(0, "bound"), (200, "bound"), (400, "bound"), (600, "channel expired")]
    );
    match &d.offloads[2].1 {
        Offload::ChannelBound { until, .. } => assert_eq!(*until - d.t0, Duration::from_secs(600)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_allocation_going_away_comes_before_its_close_event_and_kernel_traffic_counts() {
    let mut d = offloading();
    let mut c = bound_client(&mut d);
    let (relay, _) = d.relays_of(&c.tuple)[0];
    let kernel = Traffic {
        to_peer_bytes: 1000,
        to_peer_packets: 10,
        to_client_bytes: 500,
        to_client_packets: 5,
    };
    d.server.kernel_traffic(relay, kernel);
    assert_eq!(d.server.stats().traffic, kernel);
    d.refresh(&mut c, Some(0)).assert_ok(Method::REFRESH, &c.key);
    assert_eq!(kinds(&d, 1), [(0, "allocation gone")]);
    match &d.offloads[1].1 {
        Offload::AllocationGone { tuple, relays } => assert_eq!((tuple, &relays[..]), (&c.tuple, &[relay][..])),
        other => panic!("{other:?}"),
    }
    let closed = d.events.iter().find_map(|e| match e {
        Event::AllocationClosed { traffic, reason, .. } => Some((*traffic, *reason)),
        _ => None,
    });
    assert_eq!(closed, Some((kernel, CloseReason::Deleted)));
}

#[test]
fn expiry_and_operator_close_stop_the_kernel_too() {
    let mut d = offloading();
    bound_client(&mut d);
    d.advance(600);
    // The permission lapsed at 300; the allocation (600 s) expires at 600.
    assert_eq!(kinds(&d, 1), [(300, "permission lapsed"), (600, "allocation gone")]);
    let mut d = offloading();
    let c = bound_client(&mut d);
    assert!(d.server.close_allocation(d.now, &c.tuple));
    d.pump();
    assert_eq!(kinds(&d, 1), [(0, "allocation gone")]);
}

/// `turn.permission_lifetime` / `turn.channel_lifetime` (labs and tests
/// only): the kernel's deadline and the userspace path follow the
/// configured lifetimes, to the second.
#[test]
fn configured_lifetimes_set_the_kernel_deadline_and_stop_both_paths_together() {
    // A short permission under a longer channel: the permission decides.
    let mut d = Driver::with(|c| {
        c.offload = true;
        c.permission_lifetime = Duration::from_secs(3);
        c.channel_lifetime = Duration::from_secs(20);
    });
    let c = bound_client(&mut d);
    match &d.offloads[..] {
        [(_, Offload::ChannelBound { until, .. })] => assert_eq!(*until - d.t0, Duration::from_secs(3)),
        other => panic!("expected one ChannelBound, got {other:?}"),
    }
    d.advance(2);
    assert!(matches!(d.channel_data(&c, 0x4000, b"x"), Out::ToPeer { .. }));
    assert!(matches!(d.send_indication(&c, addr(PEER_A), b"x"), Out::ToPeer { .. }));
    d.advance(1);
    assert_eq!(kinds(&d, 1), [(3, "permission lapsed")]);
    assert!(matches!(d.channel_data(&c, 0x4000, b"x"), Out::Drop(_)));
    assert!(matches!(d.send_indication(&c, addr(PEER_A), b"x"), Out::Drop(_)));

    // A short channel under a longer permission: the channel decides, and
    // a Send indication to the same peer still goes (its permission holds).
    let mut d = Driver::with(|c| {
        c.offload = true;
        c.permission_lifetime = Duration::from_secs(20);
        c.channel_lifetime = Duration::from_secs(4);
    });
    let c = bound_client(&mut d);
    d.advance(3);
    assert!(matches!(d.channel_data(&c, 0x4000, b"x"), Out::ToPeer { .. }));
    d.advance(1);
    assert_eq!(kinds(&d, 1), [(4, "channel expired")]);
    assert!(matches!(d.channel_data(&c, 0x4000, b"x"), Out::Drop(_)));
    assert!(matches!(d.send_indication(&c, addr(PEER_A), b"x"), Out::ToPeer { .. }));
}

#[test]
fn capped_stream_and_disabled_allocations_are_never_offloaded() {
    let mut d = Driver::with(|c| {
        c.offload = true;
        c.bandwidth_limit = 1_000_000;
    });
    bound_client(&mut d);
    assert!(
        d.offloads
            .iter()
            .all(|(_, o)| matches!(o, Offload::AllocationGone { .. })),
        "a bandwidth cap is enforced in userspace only: {:?}",
        d.offloads
    );

    let mut d = offloading();
    let mut c = Client::new("198.51.100.1:40000", Transport::Tcp, ALICE);
    d.allocate(&mut c);
    d.channel_bind(&mut c, 0x4000, addr(PEER_A))
        .assert_ok(Method::CHANNEL_BIND, &c.key);
    assert!(d.offloads.is_empty(), "TCP clients stay in userspace: {:?}", d.offloads);

    let mut d = Driver::default_setup();
    bound_client(&mut d);
    d.advance(700);
    assert!(d.offloads.is_empty(), "offload off: no commands");
}

/// The `until` of the last ChannelBound for `peer`, in seconds since start.
fn last_until(d: &Driver, peer: &str) -> u64 {
    d.offloads
        .iter()
        .rev()
        .find_map(|(_, o)| match o {
            Offload::ChannelBound { channel, until } if channel.peer.0 == addr(peer) => Some((*until - d.t0).as_secs()),
            _ => None,
        })
        .expect("a ChannelBound for the peer")
}

#[test]
fn s8_1_each_family_of_a_dual_allocation_leaves_the_kernel_on_its_own() {
    let mut d = offloading();
    let mut c = Client::new("198.51.100.1:40000", Transport::Udp, ALICE);
    let additional = A::Bytes(proto::wire::attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0]);
    d.allocate_with(&mut c, &[additional])
        .assert_ok(Method::ALLOCATE, &c.key);
    let relays = d.relays_of(&c.tuple);
    let v6 = relays[1].0;
    d.advance(500);
    for (number, peer) in [(0x4000, PEER_A), (0x4001, PEER_V6)] {
        d.channel_bind(&mut c, number, addr(peer))
            .assert_ok(Method::CHANNEL_BIND, &c.key);
    }
    d.request(&mut c, Method::REFRESH, &[family(1), lifetime(1200)])
        .resp()
        .assert_ok(Method::REFRESH, &c.key);
    // Permissions to 800 s; the IPv6 family, not refreshed, ends at 600 s
    // and its channel leaves the kernel then, the IPv4 one at 800 s.
    assert_eq!((last_until(&d, PEER_A), last_until(&d, PEER_V6)), (800, 600));
    let from = d.offloads.len();
    d.advance(100);
    assert_eq!(kinds(&d, from), [(600, "allocation gone")]);
    match &d.offloads[from].1 {
        Offload::AllocationGone { tuple, relays } => assert_eq!((tuple, &relays[..]), (&c.tuple, &[v6][..])),
        other => panic!("{other:?}"),
    }
    // Kernel counts of the relay that ended still reach the totals.
    let kernel = Traffic {
        to_peer_bytes: 100,
        to_peer_packets: 1,
        ..Traffic::default()
    };
    d.server.kernel_traffic(v6, kernel);
    assert_eq!(d.server.stats().traffic, kernel);
    // The IPv4 channel stays in the kernel until its permission lapses.
    d.advance(199);
    assert_eq!(d.offloads.len(), from + 1);
    d.advance(1);
    assert_eq!(kinds(&d, from + 1), [(800, "permission lapsed")]);
    assert_eq!(d.relays_of(&c.tuple), vec![relays[0]], "the IPv4 relay carries on");
}
