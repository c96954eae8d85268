//! RFC 8656 §11.2 and §14 end to end: a Send indication with DONT-FRAGMENT
//! leaves the relay with DF set, so a datagram above the path MTU is not
//! fragmented (the kernel refuses it), while one without DONT-FRAGMENT, or
//! ChannelData, is fragmented and arrives. Run in a network namespace of the
//! test's own whose loopback has a 1300-byte MTU.

mod common;

use std::process::Command;

use common::turn::{Io, Relayed, TurnClient};
use common::*;

/// A network namespace with loopback up at `mtu`, deleted on drop.
struct SmallMtuNs(String);

impl SmallMtuNs {
    fn new(mtu: u32) -> SmallMtuNs {
        let name = format!("ternd-df-{}", std::process::id());
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("ip runs");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
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

/// Root and `ip`, or SKIPPED (a failure under CI).
fn prerequisites() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    if root && ip {
        return true;
    }
    missing("root and iproute2 (a network namespace with a small loopback MTU)");
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
