//! RFC 8656 §11.5 end to end: a relay that sends to a closed port on
//! loopback gets the kernel's ICMP "port unreachable" (IP_RECVERR /
//! IPV6_RECVERR), and the client gets a Data indication with XOR-PEER-ADDRESS
//! and an ICMP attribute, read by an independent decoder (stun-rs). Relaying
//! to a live peer of the same allocation goes on undisturbed.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::turn::{Io, TurnClient};
use common::*;
use stun_rs::attributes::turn::Icmp;
use stun_rs::attributes::turn::{Data, XorPeerAddress};
use stun_rs::{MessageClass, MessageDecoderBuilder};

/// What the client got through its allocation.
#[derive(Debug, Default)]
struct Got {
    /// (peer, ICMP type, ICMP code, error data) of each ICMP Data indication.
    icmp: Vec<(SocketAddr, u8, u16, [u8; 4])>,
    /// Echoes from the live peer (Data indications or ChannelData).
    echoes: usize,
}

/// Reads what reaches `c` until `want` says enough or 3 s pass; at most
/// 1000 messages.
fn collect(c: &mut TurnClient, want: impl Fn(&Got) -> bool) -> Got {
    let mut got = Got::default();
    let until = Instant::now() + Duration::from_secs(3);
    for _ in 0..1000 {
        if want(&got) || Instant::now() > until {
            break;
        }
        let Some(bytes) = c.next_unsolicited() else { continue };
        if bytes[0] & 0xC0 == 0x40 {
            got.echoes += 1;
            continue;
        }
        let (m, _) = MessageDecoderBuilder::default()
            .build()
            .decode(&bytes)
            .expect("stun-rs decodes ternd's indication");
        assert_eq!(
            (m.method(), m.class()),
            (stun_rs::methods::DATA, MessageClass::Indication)
        );
        let peer = *m
            .get::<XorPeerAddress>()
            .expect("XOR-PEER-ADDRESS")
            .as_xor_peer_address()
            .unwrap()
            .socket_address();
        match m.get::<Icmp>() {
            Some(a) => {
                let icmp = a.as_icmp().unwrap();
                assert!(m.get::<Data>().is_none(), "an ICMP Data indication has no DATA");
                let data: [u8; 4] = icmp.error_data().try_into().unwrap();
                got.icmp
                    .push((peer, icmp.icmp_type().get(), icmp.icmp_code().get(), data));
            }
            None => got.echoes += 1,
        }
    }
    got
}

/// A port nothing listens on: bound once to learn it, then closed. For ::1
/// (the relay's own address) it is taken from the top of turn_config's
/// relay range, the only ports of our own address peers may have.
fn closed_port(ip: IpAddr) -> SocketAddr {
    let s = if ip.is_ipv4() {
        UdpSocket::bind((ip, 0)).unwrap()
    } else {
        (0..64u16)
            .find_map(|i| UdpSocket::bind((ip, 65535 - 64 - i)).ok())
            .expect("a free port in the relay range")
    };
    s.local_addr().unwrap()
}

fn client(server: &ternd::Running, v6: bool, tcp: bool) -> TurnClient {
    let b = server.bound();
    let list = if tcp { &b.tcp } else { &b.udp };
    let addr = *list.iter().find(|a| a.is_ipv6() == v6).unwrap();
    let io = if tcp { Io::tcp(addr) } else { Io::udp(addr) };
    let mut c = TurnClient::new(io, "alice", "alice-password");
    let family = |m: &mut stun::message::Message| {
        if v6 {
            m.add(stun::attributes::ATTR_REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
        }
    };
    let relayed = c.allocate_with(&family).unwrap();
    assert_eq!(relayed.is_ipv6(), v6);
    c
}

/// ICMPv4 3/3 or ICMPv6 1/4: "port unreachable".
fn port_unreachable(v6: bool) -> (u8, u16) {
    if v6 {
        (1, 4)
    } else {
        (3, 3)
    }
}

#[test]
fn s11_5_port_unreachable_reaches_the_client_over_udp_and_tcp_ipv4_and_ipv6() {
    let server = start(&turn_config(
        None,
        &[
            ("server.shards", "1"),
            ("http.listen", "127.0.0.1:0"),
            ("turn.relay_icmp", "true"),
        ],
    ));
    let mut relayed = 0;
    for v6 in [false, true] {
        for tcp in [false, true] {
            let label = format!("v6={v6} tcp={tcp}");
            let live = EchoPeer::start(v6);
            let closed = closed_port(live.addr.ip());
            let mut c = client(&server, v6, tcp);
            c.create_permission(&[live.addr]).unwrap();
            // Relaying to the live peer works before ...
            c.send_indication(live.addr, b"before");
            assert_eq!(collect(&mut c, |g| g.echoes == 1).echoes, 1, "{label}");
            // ... a Send indication and ChannelData to the closed port each
            // come back as an ICMP Data indication ...
            c.channel_bind(0x4000, closed).unwrap();
            c.send_indication(closed, b"nobody home");
            c.send_channel(0x4000, b"nobody home either");
            let got = collect(&mut c, |g| g.icmp.len() == 2);
            let (typ, code) = port_unreachable(v6);
            assert_eq!(got.icmp, vec![(closed, typ, code, [0; 4]); 2], "{label}");
            relayed += 2;
            // ... and the live peer still gets through afterwards, by Send
            // indication and by channel.
            c.channel_bind(0x4001, live.addr).unwrap();
            c.send_indication(live.addr, b"after");
            c.send_channel(0x4001, b"after, by channel");
            assert_eq!(collect(&mut c, |g| g.echoes == 2).echoes, 2, "{label}");
        }
    }
    let http = server.bound().http[0];
    let series = |o: &str| http::metric(http, &format!("ternd_peer_icmp_total{{outcome=\"{o}\"}}"));
    assert_eq!(series("relayed"), relayed);
    assert_eq!(series("no_permission"), 0);
    let stats = server.shutdown().unwrap();
    assert_eq!(stats.peer_icmp.relayed, relayed);
}

/// The kernel holds an ICMP error as the socket's pending error too, which
/// the next send or receive on it reports once (ECONNREFUSED): that must not
/// cost an honest datagram. Sends to a closed port and to a live peer,
/// interleaved without waiting, all arrive, and every ICMP error is relayed.
#[test]
fn an_icmp_error_costs_no_other_datagram() {
    let server = start(&turn_config(
        None,
        &[("server.shards", "1"), ("turn.relay_icmp", "true")],
    ));
    for v6 in [false, true] {
        // The kernel sends at most 50 ICMP errors in a burst (1000/s after,
        // net.ipv4.icmp_msgs_burst): let the bucket fill between families.
        std::thread::sleep(Duration::from_millis(100));
        let live = EchoPeer::start(v6);
        let closed = closed_port(live.addr.ip());
        let mut c = client(&server, v6, false);
        c.create_permission(&[live.addr]).unwrap();
        c.channel_bind(0x4000, live.addr).unwrap();
        // More than one drain reads (errqueue::DRAIN_MAX is 16).
        const ROUNDS: usize = 20;
        for i in 0..ROUNDS {
            c.send_indication(closed, &[i as u8; 40]);
            c.send_channel(0x4000, &[i as u8; 40]);
        }
        let got = collect(&mut c, |g| g.echoes == ROUNDS && g.icmp.len() == ROUNDS);
        assert_eq!(got.echoes, ROUNDS, "v6={v6}: every datagram to the live peer came back");
        assert_eq!(got.icmp.len(), ROUNDS, "v6={v6}: every ICMP error was relayed");
    }
    let stats = server.shutdown().unwrap();
    assert_eq!(stats.drops.get(proto::DropReason::RelaySendFailed), 0);
    assert_eq!(stats.peer_icmp.relayed, 40);
}

/// Without a permission for the closed port's IP nothing leaves the relay
/// (RFC 8656 §11.2), so no ICMP error comes back and nothing reaches the
/// client. (That the ICMP error itself is checked against the permissions
/// is a core scenario test: crates/proto/tests/turn_icmp.rs.)
#[test]
fn s11_5_without_a_permission_the_client_gets_nothing() {
    let server = start(&turn_config(
        None,
        &[("server.shards", "1"), ("turn.relay_icmp", "true")],
    ));
    let closed = closed_port("127.0.0.3".parse().unwrap());
    let mut c = client(&server, false, false);
    c.send_indication(closed, b"no permission");
    assert_eq!(c.next_unsolicited(), None, "nothing within the read timeout");
    let stats = server.shutdown().unwrap();
    assert_eq!(stats.drops.get(proto::DropReason::NoPermission), 1);
    assert_eq!(stats.peer_icmp, proto::IcmpCounters::default());
}

/// With `turn.relay_icmp` off (the default, for RFC 5766 clients that
/// expect DATA in every Data indication) the error is read, counted and not
/// sent; nothing else changes: the live peer still gets through, and no
/// honest datagram is lost to the socket's pending error.
#[test]
fn with_relay_icmp_off_the_error_is_counted_and_not_sent() {
    let server = start(&turn_config(None, &[("server.shards", "1")]));
    let live = EchoPeer::start(false);
    let closed = closed_port(live.addr.ip());
    let mut c = client(&server, false, false);
    c.create_permission(&[live.addr]).unwrap();
    for i in 0..5u8 {
        c.send_indication(closed, &[i; 20]);
        c.send_indication(live.addr, &[i; 20]);
    }
    let got = collect(&mut c, |g| g.echoes == 5);
    assert_eq!((got.echoes, got.icmp.len()), (5, 0));
    // The errors came back before the echoes; give the reader a moment.
    std::thread::sleep(Duration::from_millis(300));
    let stats = server.shutdown().unwrap();
    assert_eq!((stats.peer_icmp.disabled, stats.peer_icmp.relayed), (5, 0));
    assert_eq!(stats.drops.get(proto::DropReason::RelaySendFailed), 0);
}
