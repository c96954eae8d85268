//! Checks what a lab router really does before a test trusts it, with plain
//! UDP sockets on both sides (no ternd involved): a client socket sends to
//! peer A (203.0.113.3:a) in the "internet", which sees the mapping; then
//! peer B (same address, other port) and peer C (203.0.113.4, reached by no
//! one yet) send to that mapping, showing the filtering; last the client
//! sends to peer D (a new port that has sent nothing: an unsolicited packet
//! from it would hold the conntrack tuple and make masquerade pick another
//! port), whose view of the mapping shows whether it depends on the
//! destination.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::lab::{Lab, Nat};

/// What one router was seen to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// The mapping peer A saw (None: nothing got out, UDP is blocked).
    pub mapping: Option<SocketAddr>,
    /// Peer D saw the same mapping as A.
    pub mapping_independent: bool,
    /// A packet from A's address but another port got in.
    pub other_port_gets_in: bool,
    /// A packet from an address never contacted got in.
    pub other_address_gets_in: bool,
}

impl Behaviour {
    /// The behaviour the lab promises for `nat`, given the mapping seen.
    pub fn expected(nat: Nat) -> (bool, bool, bool, bool) {
        // (gets out, mapping independent, other port gets in, other address gets in)
        match nat {
            Nat::FullCone => (true, true, true, true),
            Nat::RestrictedCone => (true, true, true, false),
            Nat::PortRestrictedCone => (true, true, false, false),
            Nat::Symmetric => (true, false, false, false),
            Nat::UdpBlocked => (false, false, false, false),
        }
    }

    fn observed(&self) -> (bool, bool, bool, bool) {
        (
            self.mapping.is_some(),
            self.mapping_independent,
            self.other_port_gets_in,
            self.other_address_gets_in,
        )
    }
}

/// How long a datagram may take to arrive; a negative check waits this long.
const WAIT: Duration = Duration::from_millis(700);

fn recv_from(sock: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 1500];
    sock.recv_from(&mut buf).ok().map(|(n, from)| (buf[..n].to_vec(), from))
}

/// Whether `sock` receives `tag` within WAIT (other datagrams are skipped, at most 8).
fn receives(sock: &UdpSocket, tag: &[u8]) -> bool {
    for _ in 0..8 {
        match recv_from(sock) {
            Some((data, _)) if data == tag => return true,
            Some(_) => continue,
            None => return false,
        }
    }
    false
}

/// The address `tag` from `client` arrives from at `peer`, with up to three
/// tries: the first packet through a fresh NAT may race its setup.
fn first_through(client: &UdpSocket, peer: &UdpSocket, tag: &[u8]) -> Option<SocketAddr> {
    let to = peer.local_addr().unwrap();
    for _ in 0..3 {
        client.send_to(tag, to).unwrap();
        if let Some((data, from)) = recv_from(peer) {
            if data == tag {
                return Some(from);
            }
        }
    }
    None
}

/// Probes the router of client `name`.
pub fn probe_router(lab: &Lab, name: &str) -> Behaviour {
    let (peer_a, peer_b, peer_c, peer_d) = lab.in_node("inet", || {
        (
            UdpSocket::bind("203.0.113.3:0").unwrap(),
            UdpSocket::bind("203.0.113.3:0").unwrap(),
            UdpSocket::bind("203.0.113.4:0").unwrap(),
            UdpSocket::bind("203.0.113.3:0").unwrap(),
        )
    });
    let client = lab.in_node(name, || UdpSocket::bind("0.0.0.0:0").unwrap());
    let d = peer_d.local_addr().unwrap();

    let mapping = first_through(&client, &peer_a, b"to-a");
    let Some(mapped) = mapping else {
        return Behaviour {
            mapping: None,
            mapping_independent: false,
            other_port_gets_in: false,
            other_address_gets_in: false,
        };
    };
    peer_b.send_to(b"from-b", mapped).unwrap();
    let other_port_gets_in = receives(&client, b"from-b");
    peer_c.send_to(b"from-c", mapped).unwrap();
    let other_address_gets_in = receives(&client, b"from-c");
    peer_a.send_to(b"from-a", mapped).unwrap();
    assert!(
        receives(&client, b"from-a"),
        "{name}: the peer the client sent to cannot answer through {mapped}"
    );
    // A router that loses the datagram to a second destination must not
    // pass for one that maps it differently.
    let seen_by_d = first_through(&client, &peer_d, b"to-d")
        .unwrap_or_else(|| panic!("{name}: nothing reaches a second destination {d}"));
    Behaviour {
        mapping: Some(mapped),
        mapping_independent: seen_by_d == mapped,
        other_port_gets_in,
        other_address_gets_in,
    }
}

/// Probes every client's router (in parallel) and panics unless each behaves
/// as its NAT type promises and maps to its router's public address.
pub fn verify_routers(lab: &Lab) -> Vec<(String, Behaviour)> {
    let seen: Vec<(String, Behaviour)> = std::thread::scope(|s| {
        let handles: Vec<_> = lab
            .clients
            .iter()
            .map(|c| (c.name.clone(), s.spawn(|| probe_router(lab, &c.name))))
            .collect();
        handles.into_iter().map(|(n, h)| (n, h.join().unwrap())).collect()
    });
    for (name, b) in &seen {
        let client = lab.client(name);
        assert_eq!(
            b.observed(),
            Behaviour::expected(client.nat),
            "router of {name} ({:?}) does not behave as promised: {b:?}\n{}",
            client.nat,
            lab.status()
        );
        if let Some(m) = b.mapping {
            assert_eq!(m.ip(), client.public, "{name} maps to its router's public address");
        }
    }
    seen
}
