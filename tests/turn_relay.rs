//! TURN end to end: the in-process server on port 0, real sockets, a client
//! whose messages are built and read by the webrtc-rs `stun` crate, over UDP,
//! TCP and TLS, IPv4 and IPv6, relaying to a real UDP echo peer.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::http::metric;
use common::turn::{Dual, Io, Relayed, TurnClient, FAMILY_IPV4, FAMILY_IPV6};
use common::*;

fn exercise_relay(mut c: TurnClient, peer: SocketAddr, label: &str) {
    let relayed = c
        .allocate()
        .unwrap_or_else(|e| panic!("{label}: allocate failed with {e}"));
    assert_eq!(
        relayed.ip(),
        if peer.is_ipv4() { "127.0.0.1" } else { "::1" }
            .parse::<std::net::IpAddr>()
            .unwrap()
    );
    assert!(relayed.port() >= 61000, "{label}: relay port from the configured range");
    assert_eq!(c.mapped, Some(c.io.local_addr()), "{label}: XOR-MAPPED-ADDRESS");

    // Send indication -> peer -> echo -> Data indication.
    c.create_permission(&[peer]).unwrap();
    for i in 0..5u8 {
        let payload = vec![i; 100 + i as usize];
        c.send_indication(peer, &payload);
        assert_eq!(
            c.recv_relayed(),
            Some(Relayed::Indication(peer, payload)),
            "{label}: Data indication {i}"
        );
    }
    // ChannelData both ways, odd sizes to exercise stream padding.
    c.channel_bind(0x4001, peer).unwrap();
    for (i, len) in [1usize, 2, 3, 4, 5, 1199, 1200].into_iter().enumerate() {
        let payload: Vec<u8> = (0..len)
            .map(|b| (b as u8).wrapping_mul(7).wrapping_add(i as u8))
            .collect();
        c.send_channel(0x4001, &payload);
        assert_eq!(
            c.recv_relayed(),
            Some(Relayed::Channel(0x4001, payload)),
            "{label}: ChannelData {len}"
        );
    }
    assert_eq!(c.refresh(1200), Ok(1200), "{label}: refresh");
    assert_eq!(c.refresh(0), Ok(0), "{label}: delete");
}

#[test]
fn relays_both_ways_over_udp_tcp_and_tls_ipv4_and_ipv6() {
    relay_everywhere("2");
}

#[test]
fn relays_with_one_shard_and_with_several() {
    relay_everywhere("1");
    relay_everywhere("4");
}

fn relay_everywhere(shards: &str) {
    let cert = TestCert::new();
    let server = start(&turn_config(Some(&cert), &[("server.shards", shards)]));
    let b = server.bound().clone();
    for v6 in [false, true] {
        let peer = EchoPeer::start(v6);
        let pick = |addrs: &[SocketAddr]| *addrs.iter().find(|a| a.is_ipv6() == v6).unwrap();
        let family = |m: &mut stun::message::Message| {
            if v6 {
                m.add(stun::attributes::ATTR_REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
            }
        };
        for (label, io) in [
            ("udp", Io::udp(pick(&b.udp))),
            ("tcp", Io::tcp(pick(&b.tcp))),
            ("tls", Io::tls(pick(&b.tls), cert.client_config())),
        ] {
            let label = format!("{label} v6={v6}");
            let mut c = TurnClient::new(io, "alice", "alice-password");
            if v6 {
                // IPv6 relays are asked for with REQUESTED-ADDRESS-FAMILY.
                let relayed = c.allocate_with(&family).unwrap();
                assert!(relayed.is_ipv6(), "{label}");
                c.refresh(0).unwrap();
                let mut c2 = TurnClient::new(
                    match label.split(' ').next().unwrap() {
                        "udp" => Io::udp(pick(&b.udp)),
                        "tcp" => Io::tcp(pick(&b.tcp)),
                        _ => Io::tls(pick(&b.tls), cert.client_config()),
                    },
                    "alice",
                    "alice-password",
                );
                let relayed = c2.allocate_with(&family).unwrap();
                c2.create_permission(&[peer.addr]).unwrap();
                c2.send_indication(peer.addr, b"v6 hello");
                assert_eq!(
                    c2.recv_relayed(),
                    Some(Relayed::Indication(peer.addr, b"v6 hello".to_vec())),
                    "{label} {relayed}"
                );
                c2.channel_bind(0x4002, peer.addr).unwrap();
                c2.send_channel(0x4002, b"abc");
                assert_eq!(
                    c2.recv_relayed(),
                    Some(Relayed::Channel(0x4002, b"abc".to_vec())),
                    "{label}"
                );
            } else {
                exercise_relay(c, peer.addr, &label);
            }
        }
    }
    let stats = server.shutdown().unwrap();
    assert!(stats.traffic.to_peer_packets >= 3 * 12);
    assert_eq!(stats.traffic.to_peer_packets, stats.traffic.to_client_packets);
}

#[test]
fn two_clients_of_one_server_relay_to_each_other() {
    // No allow list: the server's own relay address is allowed by itself.
    let server = start(&turn_config(None, &[("peers.allow", "")]));
    let udp = server.bound().udp[0];
    let mut a = TurnClient::new(Io::udp(udp), "alice", "alice-password");
    let (user, pass) = rest_credentials("bob");
    let mut b = TurnClient::new(Io::tcp(server.bound().tcp[0]), &user, &pass);
    let ra = a.allocate().unwrap();
    let rb = b.allocate().unwrap();
    a.create_permission(&[rb]).unwrap();
    b.create_permission(&[ra]).unwrap();
    a.send_indication(rb, b"hello bob");
    assert_eq!(b.recv_relayed(), Some(Relayed::Indication(ra, b"hello bob".to_vec())));
    b.channel_bind(0x4abc, ra).unwrap();
    b.send_channel(0x4abc, b"hello alice");
    assert_eq!(a.recv_relayed(), Some(Relayed::Indication(rb, b"hello alice".to_vec())));
    server.shutdown().unwrap();
}

#[test]
fn authentication_is_required_and_checked() {
    let server = start(&turn_config(None, &[]));
    let udp = server.bound().udp[0];
    // Wrong password: 401, and no allocation.
    let mut c = TurnClient::new(Io::udp(udp), "alice", "wrong");
    assert_eq!(c.allocate(), Err(401));
    // Unknown user and expired REST username: 401.
    let mut c = TurnClient::new(Io::udp(udp), "mallory", "x");
    assert_eq!(c.allocate(), Err(401));
    let expired = "1000000000:bob";
    let pass = proto::auth::rest_password(TEST_SECRET.as_bytes(), expired);
    let mut c = TurnClient::new(Io::udp(udp), expired, &pass);
    assert_eq!(c.allocate(), Err(401));
    // A request on someone else's allocation with other credentials: 441.
    let mut c = TurnClient::new(Io::udp(udp), "alice", "alice-password");
    c.allocate().unwrap();
    let (user, pass) = rest_credentials("eve");
    c.username = user;
    c.password = pass;
    assert_eq!(c.refresh(600), Err(441));
    let stats = server.shutdown().unwrap();
    assert_eq!(stats.allocations_created, 1);
}

#[test]
fn forbidden_peers_get_403_and_no_packet_leaves() {
    // The default policy: loopback and every special range refused.
    let server = start(&turn_config(None, &[("peers.allow", "")]));
    let watcher = UdpSocket::bind("127.0.0.1:0").unwrap();
    watcher.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let port = watcher.local_addr().unwrap().port();
    let mut c = TurnClient::new(Io::udp(server.bound().udp[0]), "alice", "alice-password");
    c.allocate().unwrap();
    for peer in [
        "127.0.0.1",
        "0.0.0.0",
        "10.0.0.1",
        "169.254.169.254",
        "192.168.1.1",
        "224.0.0.1",
    ] {
        let p: SocketAddr = format!("{peer}:{port}").parse().unwrap();
        assert_eq!(c.create_permission(&[p]), Err(403), "{peer}");
        assert_eq!(c.channel_bind(0x4000, p), Err(403), "{peer}");
        c.send_indication(p, b"must not leave");
    }
    let mut c6 = TurnClient::new(Io::udp(server.bound().udp[1]), "alice", "alice-password");
    c6.allocate_with(&|m| m.add(stun::attributes::ATTR_REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]))
        .unwrap();
    for peer in ["::1", "::ffff:127.0.0.1", "::", "fe80::1", "fd00::1", "64:ff9b::7f00:1"] {
        let p = SocketAddr::new(peer.parse().unwrap(), port);
        assert_eq!(c6.create_permission(&[p]), Err(403), "{peer}");
        c6.send_indication(p, b"must not leave");
    }
    let mut buf = [0u8; 64];
    assert!(
        watcher.recv_from(&mut buf).is_err(),
        "nothing reached the loopback watcher"
    );
    server.shutdown().unwrap();
}

#[test]
fn a_failed_relay_send_is_counted_and_the_allocation_keeps_working() {
    let server = start(&turn_config(None, &[("server.shards", "1")]));
    let peer = EchoPeer::start(false);
    let mut c = TurnClient::new(Io::udp(server.bound().udp[0]), "alice", "alice-password");
    c.allocate().unwrap();
    c.create_permission(&[peer.addr]).unwrap();
    // Port 0 is a permitted IP but the kernel refuses to send there (EINVAL),
    // as it would for an unroutable host candidate.
    let bad = SocketAddr::new(peer.addr.ip(), 0);
    for _ in 0..3 {
        c.send_indication(bad, b"lost");
    }
    c.channel_bind(0x4000, peer.addr).unwrap();
    c.send_channel(0x4000, b"still here");
    let got = c.recv_relayed();
    let stats = server.shutdown().unwrap();
    assert_eq!(got, Some(Relayed::Channel(0x4000, b"still here".to_vec())));
    assert_eq!(stats.drops.get(proto::DropReason::RelaySendFailed), 3);
}

#[test]
fn a_tcp_allocation_dies_with_its_connection() {
    let server = start(&turn_config(None, &[("server.shards", "1")]));
    let mut c = TurnClient::new(Io::tcp(server.bound().tcp[0]), "alice", "alice-password");
    let relayed = c.allocate().unwrap();
    assert!(UdpSocket::bind(relayed).is_err(), "the relay port is held");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let handle = server.handle();
    assert_eq!(rt.block_on(handle.allocations()).len(), 1);
    drop(c);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !rt.block_on(handle.allocations()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "allocation closed with its connection"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = server.shutdown().unwrap();
    assert_eq!((stats.allocations_created, stats.allocations_closed), (1, 1));
}

#[test]
fn quotas_give_486_and_508() {
    let server = start(&turn_config(
        None,
        &[("turn.max_allocations_per_user", "1"), ("turn.max_allocations", "2")],
    ));
    let udp = server.bound().udp[0];
    let mut a1 = TurnClient::new(Io::udp(udp), "alice", "alice-password");
    a1.allocate().unwrap();
    let mut a2 = TurnClient::new(Io::udp(udp), "alice", "alice-password");
    assert_eq!(a2.allocate(), Err(486));
    let (u, p) = rest_credentials("bob");
    let mut b = TurnClient::new(Io::udp(udp), &u, &p);
    b.allocate().unwrap();
    let (u, p) = rest_credentials("carol");
    let mut c = TurnClient::new(Io::udp(udp), &u, &p);
    assert_eq!(c.allocate(), Err(508));
    // Freed capacity is usable again.
    a1.refresh(0).unwrap();
    assert!(c.allocate().is_ok());
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn clients_on_different_shards_relay_to_each_other() {
    let server = start(&turn_config(None, &[("server.shards", "4"), ("peers.allow", "")]));
    let udp = server.bound().udp[0];
    let handle = server.handle();
    // Enough clients that SO_REUSEPORT spreads them over several shards.
    let mut clients: Vec<TurnClient> = (0..12)
        .map(|i| {
            let (u, p) = rest_credentials(&format!("c{i}"));
            TurnClient::new(Io::udp(udp), &u, &p)
        })
        .collect();
    let relays: Vec<SocketAddr> = clients.iter_mut().map(|c| c.allocate().unwrap()).collect();
    let list = handle.allocations().await;
    let shards: std::collections::HashSet<usize> = list.iter().map(|a| a.shard).collect();
    assert!(shards.len() >= 2, "allocations spread over shards: {shards:?}");
    // Each client talks to the next one's relay (a ring), through both relays.
    let n = clients.len();
    for i in 0..n {
        let j = (i + 1) % n;
        clients[i].create_permission(&[relays[j]]).unwrap();
        clients[j].create_permission(&[relays[i]]).unwrap();
        let msg = format!("{i}->{j}").into_bytes();
        clients[i].send_indication(relays[j], &msg);
        assert_eq!(
            clients[j].recv_relayed(),
            Some(Relayed::Indication(relays[i], msg)),
            "{i}->{j}"
        );
    }
    // Every allocation is still where it was made, and still answers.
    for c in clients.iter_mut() {
        assert_eq!(c.refresh(600), Ok(600));
    }
    let stats = server.shutdown().unwrap();
    assert_eq!(stats.allocations_created, n as u64);
}

#[test]
fn relaying_through_a_wildcard_listener_answers_from_the_address_used() {
    let server = start(&turn_config(None, &[("listen.udp", "0.0.0.0:0")]));
    let port = server.bound().udp[0].port();
    let peer = EchoPeer::start(false);
    let addr: SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
    // The client's Io::Udp asserts every datagram comes from `addr`:
    // responses, Data indications and ChannelData alike.
    let c = TurnClient::new(Io::udp(addr), "alice", "alice-password");
    exercise_relay(c, peer.addr, "wildcard 127.0.0.3");
    server.shutdown().unwrap();
}

/// Bursts from clients spread over four shards: every datagram of an
/// allocation is handled by the shard that owns it (the per-shard relay
/// counters match the allocations each shard holds, and no shard saw
/// ChannelData for an allocation it does not have), and back-to-back
/// datagrams (received and sent in batches, equal ones merged into GSO
/// sends) come back complete and in order.
#[test]
fn each_allocation_s_traffic_reaches_its_own_shard_in_batches() {
    const CLIENTS: usize = 16;
    const BURST: usize = 40;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = start(&turn_config(None, &[("server.shards", "4")]));
    let udp = server.bound().udp[0];
    let handle = server.handle();
    let peer = EchoPeer::start(false);
    let mut clients: Vec<TurnClient> = (0..CLIENTS)
        .map(|i| {
            let (u, p) = rest_credentials(&format!("burst{i}"));
            TurnClient::new(Io::udp(udp), &u, &p)
        })
        .collect();
    for c in clients.iter_mut() {
        c.allocate().unwrap();
        c.channel_bind(0x4000, peer.addr).unwrap();
    }
    let list = rt.block_on(handle.allocations());
    let shards: std::collections::HashSet<usize> = list.iter().map(|a| a.shard).collect();
    assert!(shards.len() >= 2, "allocations spread over shards: {shards:?}");
    let before = rt.block_on(handle.snapshots());

    // Each client fires its burst without waiting, then reads it back (one
    // client at a time: a burst from all at once would overflow the echo
    // peer's single socket, which is the test's limit, not the server's).
    // The first half of a burst has one size (sent as one GSO message each
    // way: the kernel cuts it back into datagrams), the rest grows.
    let payload = |c: usize, k: usize| {
        let mut p = format!("client {c:02} message {k:03} ").into_bytes();
        p.resize(if k < BURST / 2 { 200 } else { 200 + k * 7 }, b'a' + (k % 26) as u8);
        p
    };
    for (i, c) in clients.iter_mut().enumerate() {
        for k in 0..BURST {
            c.send_channel(0x4000, &payload(i, k));
        }
        for k in 0..BURST {
            assert_eq!(
                c.recv_relayed(),
                Some(Relayed::Channel(0x4000, payload(i, k))),
                "client {i} message {k}"
            );
        }
    }

    let after = rt.block_on(handle.snapshots());
    for (b, a) in before.iter().zip(&after) {
        let owned = list.iter().filter(|x| x.shard == a.index).count() as u64;
        let sent = a.stats.traffic.to_peer_packets - b.stats.traffic.to_peer_packets;
        let back = a.stats.traffic.to_client_packets - b.stats.traffic.to_client_packets;
        assert_eq!(
            sent,
            owned * BURST as u64,
            "shard {} relayed its own allocations' datagrams",
            a.index
        );
        assert_eq!(back, owned * BURST as u64, "shard {} sent the echoes back", a.index);
        for reason in [proto::DropReason::NoAllocation, proto::DropReason::ChannelData] {
            assert_eq!(a.stats.drops.get(reason), 0, "shard {}: {}", a.index, reason.label());
        }
    }
    server.shutdown().unwrap();
}

/// ChannelData on `channel` goes out and comes back from the echo peer.
fn channel_round_trip(c: &mut TurnClient, channel: u16, payload: &[u8]) {
    c.send_channel(channel, payload);
    assert_eq!(c.recv_relayed(), Some(Relayed::Channel(channel, payload.to_vec())));
}

/// The free relay ports of one family on `/metrics`.
fn free_ports(http: SocketAddr, family: &str) -> u64 {
    metric(http, &format!("ternd_relay_ports_free{{family=\"{family}\"}}"))
}

/// RFC 8656 §8.1: a dual allocation's IPv6 family deleted with a Refresh
/// naming it; its relay socket closes and its port comes back, the IPv4
/// family keeps relaying, and the IPv6 family is refused from then on.
#[test]
fn s8_1_deleting_one_family_of_a_dual_allocation_leaves_the_other_relaying() {
    let server = start(&turn_config(
        None,
        &[("server.shards", "1"), ("http.listen", "127.0.0.1:0")],
    ));
    let http = server.bound().http[0];
    let (peer4, peer6) = (EchoPeer::start(false), EchoPeer::start(true));
    let mut c = TurnClient::new(Io::udp(server.bound().udp[0]), "alice", "alice-password");
    let free = (free_ports(http, "ipv4"), free_ports(http, "ipv6"));
    let Dual { relays, address_error } = c.allocate_dual().unwrap();
    assert_eq!(address_error, None);
    let [relay4, relay6] = relays[..] else {
        panic!("two relayed addresses: {relays:?}")
    };
    assert!(relay4.is_ipv4() && relay6.is_ipv6(), "{relays:?}");
    assert_eq!(
        (free_ports(http, "ipv4"), free_ports(http, "ipv6")),
        (free.0 - 1, free.1 - 1)
    );
    c.create_permission(&[peer4.addr, peer6.addr]).unwrap();
    c.channel_bind(0x4000, peer4.addr).unwrap();
    c.channel_bind(0x4001, peer6.addr).unwrap();
    channel_round_trip(&mut c, 0x4000, b"four");
    channel_round_trip(&mut c, 0x4001, b"six");
    assert!(UdpSocket::bind(relay6).is_err(), "the IPv6 relay port is held");

    assert_eq!(c.refresh_family(0, Some(FAMILY_IPV6)), Ok(0));
    // The IPv6 relay socket is closed (the shard does it after answering)
    // and its port is free again, by the metric and for anyone to bind.
    assert!(
        wait_for(Duration::from_secs(5), || UdpSocket::bind(relay6).is_ok()),
        "the IPv6 relay socket closed"
    );
    assert_eq!(
        (free_ports(http, "ipv4"), free_ports(http, "ipv6")),
        (free.0 - 1, free.1)
    );
    // The IPv4 family relays as before, both ways.
    channel_round_trip(&mut c, 0x4000, b"four again");
    // (A Send indication's echo comes back on the channel bound to the peer.)
    c.send_indication(peer4.addr, b"indication");
    assert_eq!(c.recv_relayed(), Some(Relayed::Channel(0x4000, b"indication".to_vec())));
    // The IPv6 family is gone: naming it is 443 (RFC 8656 §8.2), and so is
    // an IPv6 peer.
    assert_eq!(c.refresh_family(600, Some(FAMILY_IPV6)), Err(443));
    assert_eq!(c.create_permission(&[peer6.addr]), Err(443));
    assert_eq!(c.refresh_family(600, Some(FAMILY_IPV4)), Ok(600));
    // The allocation ends with its last family.
    assert_eq!(c.refresh(0), Ok(0));
    assert!(wait_for(Duration::from_secs(5), || UdpSocket::bind(relay4).is_ok()));
    assert_eq!((free_ports(http, "ipv4"), free_ports(http, "ipv6")), free);
    let stats = server.shutdown().unwrap();
    assert_eq!((stats.allocations_created, stats.allocations_closed), (1, 1));
}

/// RFC 8656 §7.2 step 9: a dual Allocate whose relay of one family cannot
/// be bound (the configured address is not on this host, so the kernel
/// refuses the bind) gets the other family alone and ADDRESS-ERROR-CODE 508
/// for the failed one; that family relays.
#[test]
fn s7_2_step9_a_family_that_cannot_be_bound_leaves_the_other_with_address_error_code() {
    for (v4_fails, relay_ipv4, relay_ipv6) in [(true, "192.0.2.7", "::1"), (false, "127.0.0.1", "2001:db8::7")] {
        let server = start(&turn_config(
            None,
            &[
                ("server.shards", "1"),
                ("relay.ipv4", relay_ipv4),
                ("relay.ipv6", relay_ipv6),
            ],
        ));
        let peer = EchoPeer::start(v4_fails);
        let mut c = TurnClient::new(Io::udp(server.bound().udp[0]), "alice", "alice-password");
        let Dual { relays, address_error } = c.allocate_dual().unwrap();
        let label = format!("IPv4 relay at {relay_ipv4}, IPv6 relay at {relay_ipv6}");
        assert_eq!(relays.len(), 1, "{label}: {relays:?}");
        assert_eq!(relays[0].is_ipv6(), v4_fails, "{label}: {relays:?}");
        let failed = if v4_fails { FAMILY_IPV4 } else { FAMILY_IPV6 };
        assert_eq!(address_error, Some((failed, 508)), "{label}");
        c.create_permission(&[peer.addr]).unwrap();
        c.send_indication(peer.addr, b"one family");
        assert_eq!(
            c.recv_relayed(),
            Some(Relayed::Indication(peer.addr, b"one family".to_vec())),
            "{label}"
        );
        assert_eq!(c.refresh_family(600, Some(failed)), Err(443), "{label}");
        let stats = server.shutdown().unwrap();
        assert_eq!(stats.allocations_created, 1, "{label}");
    }
}
