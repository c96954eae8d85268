//! RFC 8656 §11.2 and §14 end to end: a Send indication with DONT-FRAGMENT
//! leaves the relay with DF set, so a datagram above the path MTU is not
//! fragmented (the kernel refuses it), while one without DONT-FRAGMENT, or
//! ChannelData, is fragmented and arrives. Run in network namespaces of the
//! test's own: one whose loopback has a 1300-byte MTU, and a three-node path
//! whose router answers DF datagrams too big for its next link with ICMP
//! "fragmentation needed", which reaches the client (§11.5, §18.13).

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::turn::{Io, Relayed, TurnClient};
use common::*;

/// A network namespace with loopback up at `mtu`, deleted on drop.
struct SmallMtuNs(String);

impl SmallMtuNs {
    fn new(mtu: u32) -> SmallMtuNs {
        let name = format!("ternd-df-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = SmallMtuNs(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "mtu", &mtu.to_string(), "up"]);
        ns
    }
}

impl Drop for SmallMtuNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Three namespaces in a row, deleted on drop: `server` (10.77.1.1,
/// fd77:1::1) to `router` (.1.2 | .2.1, forwarding) to `peer` (10.77.2.2,
/// fd77:2::2), the router-peer link with a 1300-byte MTU and the other 1500.
struct NarrowPath {
    names: [String; 3],
}

impl NarrowPath {
    fn new() -> NarrowPath {
        let pid = std::process::id();
        let names = ["s", "r", "p"].map(|n| format!("ternd-df{n}-{pid}"));
        for n in &names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            ip(&["netns", "add", n]);
        }
        let path = NarrowPath { names };
        let [s, r, p] = &path.names;
        // Two veth pairs, made in this namespace under unique names and
        // moved: server-router at 1500, router-peer at 1300.
        let link = |me: &str| (format!("tdf{me}{pid}"), format!("tdf{me}x{pid}"));
        for ((here, there), (ns, other), mtu) in [(link("a"), (s, r), "1500"), (link("c"), (r, p), "1300")] {
            ip(&[
                "link", "add", &here, "mtu", mtu, "type", "veth", "peer", "name", &there, "mtu", mtu,
            ]);
            ip(&["link", "set", &here, "netns", ns]);
            ip(&["link", "set", &there, "netns", other]);
        }
        let ((a, ax), (c, cx)) = (link("a"), link("c"));
        for (ns, dev, v4, v6) in [
            (s, &a, "10.77.1.1/24", "fd77:1::1/64"),
            (r, &ax, "10.77.1.2/24", "fd77:1::2/64"),
            (r, &c, "10.77.2.1/24", "fd77:2::1/64"),
            (p, &cx, "10.77.2.2/24", "fd77:2::2/64"),
        ] {
            ip(&["-n", ns, "addr", "add", v4, "dev", dev]);
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        for ns in &path.names {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", s, "route", "add", "default", "via", "10.77.1.2"]);
        ip(&["-n", p, "route", "add", "default", "via", "10.77.2.1"]);
        ip(&["-n", s, "-6", "route", "add", "default", "via", "fd77:1::2"]);
        ip(&["-n", p, "-6", "route", "add", "default", "via", "fd77:2::1"]);
        for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            let fwd = Command::new("ip")
                .args(["netns", "exec", r, "sysctl", "-qw", key])
                .output()
                .expect("sysctl runs");
            assert!(fwd.status.success(), "{}", String::from_utf8_lossy(&fwd.stderr));
        }
        path
    }
}

impl Drop for NarrowPath {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// Root, `ip` and `sysctl`, or SKIPPED (a failure under CI).
fn prerequisites() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tool = |t: &str| Command::new(t).arg("-V").output().is_ok_and(|o| o.status.success());
    if root && tool("ip") && tool("sysctl") {
        return true;
    }
    missing("root, iproute2 and procps (network namespaces with small MTUs)");
    false
}

fn send_with_df(c: &mut TurnClient, peer: std::net::SocketAddr, data: &[u8]) {
    c.send_indication_with(peer, data, &|m| m.add(stun::attributes::ATTR_DONT_FRAGMENT, &[]));
}

#[test]
fn s11_2_a_send_indication_with_dont_fragment_is_not_fragmented() {
    if !prerequisites() {
        return;
    }
    let ns = SmallMtuNs::new(1300);
    let stats = netns::in_ns(&ns.0, || {
        let server = start(&turn_config(None, &[("server.shards", "1")]));
        let udp = *server.bound().udp.iter().find(|a| a.is_ipv4()).unwrap();
        let peer = EchoPeer::start(false);
        let mut c = TurnClient::new(Io::udp(udp), "alice", "alice-password");
        c.allocate().unwrap();
        c.create_permission(&[peer.addr]).unwrap();
        let big = vec![0xB1; 1400];
        // Without DONT-FRAGMENT, 1400 bytes on a 1300-byte path are
        // fragmented and arrive (and come back).
        c.send_indication(peer.addr, &big);
        assert_eq!(c.recv_relayed(), Some(Relayed::Indication(peer.addr, big.clone())));
        // With it, DF is set and the kernel refuses to send them; the small
        // one after it goes (DF set or not, it fits), and is the first echo.
        send_with_df(&mut c, peer.addr, &big);
        send_with_df(&mut c, peer.addr, b"small, with DF");
        assert_eq!(
            c.recv_relayed(),
            Some(Relayed::Indication(peer.addr, b"small, with DF".to_vec())),
            "the 1400 bytes with DONT-FRAGMENT must not have been fragmented"
        );
        // DF is per datagram: without the attribute, and by channel, big
        // datagrams are fragmented again.
        c.send_indication(peer.addr, &big);
        assert_eq!(c.recv_relayed(), Some(Relayed::Indication(peer.addr, big.clone())));
        c.channel_bind(0x4000, peer.addr).unwrap();
        c.send_channel(0x4000, &big);
        assert_eq!(c.recv_relayed(), Some(Relayed::Channel(0x4000, big.clone())));

        // RFC 8656 §14.2: relaying IPv4 to IPv6, "the DONT-FRAGMENT attribute
        // MUST be ignored": the big datagram is fragmented and arrives.
        let peer6 = EchoPeer::start(true);
        let mut c6 = TurnClient::new(Io::udp(udp), "alice", "alice-password");
        let family = |m: &mut stun::message::Message| {
            m.add(stun::attributes::ATTR_REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
        };
        assert!(c6.allocate_with(&family).unwrap().is_ipv6());
        c6.create_permission(&[peer6.addr]).unwrap();
        send_with_df(&mut c6, peer6.addr, &big);
        assert_eq!(c6.recv_relayed(), Some(Relayed::Indication(peer6.addr, big)));
        server.shutdown().unwrap()
    });
    assert_eq!(
        stats.drops.get(proto::DropReason::RelaySendFailed),
        1,
        "only the DONT-FRAGMENT datagram above the MTU was refused"
    );
}

/// A DF datagram too big for a link beyond the first hop: the router drops
/// it and answers ICMP 3/4 with the next-hop MTU, which the client gets as
/// a Data indication whose ICMP attribute carries that MTU as error data
/// (RFC 8656 §18.13); the datagram never reaches the peer, and one without
/// DONT-FRAGMENT is fragmented and does.
#[test]
fn s18_13_fragmentation_needed_from_a_router_reaches_the_client_with_the_mtu() {
    too_big_for_the_path(false);
}

/// The same over IPv6, where routers never fragment: the first big datagram
/// (DONT-FRAGMENT or not: §14 ignores it there) gets ICMPv6 2/0 "packet too
/// big" with the MTU; the relay's host fragments the next one itself.
#[test]
fn s18_13_packet_too_big_from_a_router_reaches_the_client_with_the_mtu() {
    too_big_for_the_path(true);
}

fn too_big_for_the_path(v6: bool) {
    if !prerequisites() {
        return;
    }
    let path = NarrowPath::new();
    let peer_addr: std::net::SocketAddr = if v6 { "[fd77:2::2]:5000" } else { "10.77.2.2:5000" }.parse().unwrap();
    let peer = netns::in_ns(&path.names[2], move || UdpSocket::bind(peer_addr).unwrap());
    // Generous: the router may still be resolving the peer's link address
    // (IPv6 neighbour discovery on links a moment old).
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let (icmp, relay, got) = netns::in_ns(&path.names[0], move || {
        let server = start(&turn_config(
            None,
            &[
                ("server.shards", "1"),
                ("relay.ipv4", "10.77.1.1"),
                ("relay.ipv6", "fd77:1::1"),
                ("peers.allow", "10.77.2.0/24,fd77:2::/64"),
                ("turn.relay_icmp", "true"),
            ],
        ));
        let udp = *server.bound().udp.iter().find(|a| a.is_ipv4()).unwrap();
        let mut c = TurnClient::new(Io::udp(udp), "alice", "alice-password");
        let family = |m: &mut stun::message::Message| {
            if v6 {
                m.add(stun::attributes::ATTR_REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
            }
        };
        let relay = c.allocate_with(&family).unwrap();
        c.create_permission(&[peer_addr]).unwrap();
        send_with_df(&mut c, peer_addr, &[0xD0; 1400]);
        let icmp = c.next_unsolicited().expect("the ICMP Data indication");
        // Without DONT-FRAGMENT the same size is fragmented and arrives.
        c.send_indication(peer_addr, &[0xD1; 1400]);
        let mut buf = [0u8; 2000];
        let got = peer.recv_from(&mut buf).map(|(n, from)| (n, from, buf[0]));
        let stats = server.shutdown().unwrap();
        assert_eq!(stats.peer_icmp.relayed, 1);
        (icmp, relay, got)
    });
    let m = common::turn::decode(&icmp);
    assert_eq!(
        common::turn::xor_addr(&m, stun::attributes::ATTR_XOR_PEER_ADDRESS),
        Some(peer_addr)
    );
    let value = m.get(stun::attributes::AttrType(0x8004)).expect("an ICMP attribute");
    // 16 reserved bits, the type in 7 bits, the code in 9, then the MTU:
    // ICMPv4 3/4 or ICMPv6 2/0, error data 1300.
    let (typ, code) = if v6 { (2, 0) } else { (3, 4) };
    assert_eq!(value, [0, 0, typ << 1, code, 0, 0, 0x05, 0x14], "v6={v6}");
    assert_eq!(
        got.expect("the datagram without DF"),
        (1400, relay, 0xD1),
        "v6={v6}: the one without DONT-FRAGMENT arrived, and first"
    );
}
