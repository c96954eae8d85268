//! TURN against a hostile client (issue 12), end to end: the in-process
//! server, real UDP sockets on several loopback source addresses, an
//! independent client (webrtc-rs `stun`) and hand-built minimal requests.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::turn::{decode, Io, Relayed, TurnClient};
use common::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// REST credentials for `user` from TEST_SECRET, expiring `secs` from now:
/// a fresh username for each `secs`.
fn rest_for(user: &str, secs: u64) -> (String, String) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    proto::auth::rest_credentials(proto::auth::RestHmac::Sha1, TEST_SECRET.as_bytes(), user, now + secs)
}

/// Allocates from a new socket on `source` with `creds`; Ok or the error code.
fn allocate_from(source: &str, server: SocketAddr, creds: &(String, String)) -> (TurnClient, Result<SocketAddr, u16>) {
    let mut c = TurnClient::new(Io::udp_from(ip(source), server), &creds.0, &creds.1);
    let r = c.allocate();
    (c, r)
}

/// A minimal request: the 20-byte header (`method`, class request) and
/// `attrs` written as they are.
fn minimal(method: u16, attrs: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(20 + attrs.len());
    m.extend_from_slice(&method.to_be_bytes());
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    m.extend_from_slice(b"hostile-tid!");
    m.extend_from_slice(attrs);
    m
}

/// An Allocate with REQUESTED-TRANSPORT UDP only: 28 bytes.
fn minimal_allocate() -> Vec<u8> {
    minimal(0x0003, &[0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0])
}

/// The server on one UDP listener (127.0.0.1) with `extra` settings, and
/// that listener's address.
fn udp_server(extra: &[(&str, &str)]) -> (ternd::Running, SocketAddr) {
    let mut all = vec![("listen.udp", "127.0.0.1:0")];
    all.extend_from_slice(extra);
    let server = start(&turn_config(None, &all));
    let udp = server.bound().udp[0];
    (server, udp)
}

fn udp_socket(source: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip(source), 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// (a) One address hits 486 after `turn.max_allocations_per_ip`, however
/// fresh its credentials; another address still allocates.
#[test]
fn one_source_address_is_capped_whatever_its_credentials() {
    let (server, udp) = udp_server(&[("turn.max_allocations_per_ip", "3")]);
    let mut held = Vec::new();
    for i in 0..3 {
        let (c, r) = allocate_from("127.0.0.2", udp, &rest_for(&format!("user{i}"), 3600));
        assert!(r.is_ok(), "allocation {i}: {r:?}");
        held.push(c);
    }
    let (_, r) = allocate_from("127.0.0.2", udp, &rest_for("user9", 3600));
    assert_eq!(r, Err(486), "the fourth from 127.0.0.2");
    let (_, r) = allocate_from("127.0.0.3", udp, &rest_for("user9", 3600));
    assert!(r.is_ok(), "127.0.0.3 has its own cap: {r:?}");
    server.shutdown().unwrap();
}

/// (b) A REST user minting a fresh credential per Allocate is one user.
#[test]
fn fresh_rest_credentials_do_not_bypass_the_per_user_quota() {
    let (server, udp) = udp_server(&[("turn.max_allocations_per_user", "2")]);
    let (_a, r) = allocate_from("127.0.0.6", udp, &rest_for("mallory", 3600));
    assert!(r.is_ok(), "{r:?}");
    let (_b, r) = allocate_from("127.0.0.7", udp, &rest_for("mallory", 3601));
    assert!(r.is_ok(), "{r:?}");
    let (_, r) = allocate_from("127.0.0.8", udp, &rest_for("mallory", 3602));
    assert_eq!(r, Err(486), "a third credential of the same user");
    let (_, r) = allocate_from("127.0.0.8", udp, &rest_for("trent", 3602));
    assert!(r.is_ok(), "another user: {r:?}");
    server.shutdown().unwrap();
}

/// (c) A flood of unsigned Allocates does not silence a neighbour's 401:
/// neither from the next address nor from one aimed at the victim's
/// bucket of the old unkeyed hash (127.0.26.114 shared 127.0.0.5's).
#[test]
fn a_flood_does_not_silence_a_neighbours_challenge() {
    let (server, udp) = udp_server(&[("server.shards", "1"), ("turn.unauthenticated_rate", "20")]);
    let flooders = [udp_socket("127.0.0.4"), udp_socket("127.0.26.114")];
    for _ in 0..200 {
        for f in &flooders {
            f.send_to(&minimal_allocate(), udp).unwrap();
        }
    }
    // One try, within the second the flood fills: a retry a second later
    // would find every budget refilled and prove nothing.
    let victim = udp_socket("127.0.0.5");
    victim.send_to(&minimal_allocate(), udp).unwrap();
    let mut buf = [0u8; 1500];
    let answered = victim
        .recv_from(&mut buf)
        .is_ok_and(|(n, _)| common::turn::class_of(&decode(&buf[..n])) == stun::message::CLASS_ERROR_RESPONSE);
    let stats = server.shutdown().unwrap();
    assert!(answered, "127.0.0.5 got its 401");
    assert!(
        stats.drops.get(proto::DropReason::RateLimited) > 0,
        "the flood was limited"
    );
}

/// (d) The smallest Allocate and Binding get at most 1.7 times their size
/// back on the wire (IPv4 and UDP headers counted), with the longest realm
/// and SOFTWARE the config accepts.
#[test]
fn minimal_requests_are_not_amplified() {
    let (server, udp) = udp_server(&[
        ("turn.realm", "turn.example.org"),
        ("server.software", "ternd/0.1 built with a 32B label"),
    ]);
    let s = udp_socket("127.0.0.9");
    for (name, request) in [("Allocate", minimal_allocate()), ("Binding", minimal(0x0001, &[]))] {
        s.send_to(&request, udp).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = s.recv_from(&mut buf).unwrap();
        let (req, resp) = (request.len() + 28, n + 28);
        println!(
            "{name}: {} -> {n} bytes, {:.2}x on the wire",
            request.len(),
            resp as f64 / req as f64
        );
        assert!(resp * 10 <= req * 17, "{name}: {resp} bytes on the wire for {req}");
    }
    server.shutdown().unwrap();
}

/// (e) `peers.allow = 127.0.0.0/8` covers the server's own address, yet
/// its listener stays out of reach through the relay; a real loopback peer
/// is relayed to as before.
#[test]
fn an_allow_list_covering_the_server_does_not_open_its_listener() {
    let (server, udp) = udp_server(&[]);
    let mut a = TurnClient::new(Io::udp(udp), "alice", "alice-password");
    a.allocate().unwrap();
    assert_eq!(
        a.create_permission(&[udp]),
        Err(403),
        "CreatePermission to the listener"
    );
    assert_eq!(a.channel_bind(0x4000, udp), Err(403), "ChannelBind to the listener");
    // A permission for 127.0.0.1 from another client's relay (allowed, a
    // relay port), then a Send to the listener's port: a Binding that must
    // not arrive (its answer would come back as a Data indication).
    let bob = rest_for("bob", 3600);
    let mut b = TurnClient::new(Io::udp(udp), &bob.0, &bob.1);
    let b_relay = b.allocate().unwrap();
    a.create_permission(&[b_relay]).unwrap();
    a.send_indication(udp, &minimal(0x0001, &[]));
    let leaked = a.recv_relayed();
    assert_eq!(leaked, None, "nothing came back from the listener");
    // A real peer on loopback is relayed to.
    let peer = EchoPeer::start(false);
    a.channel_bind(0x4001, peer.addr).unwrap();
    a.send_channel(0x4001, b"hello");
    assert_eq!(a.recv_relayed(), Some(Relayed::Channel(0x4001, b"hello".to_vec())));
    server.shutdown().unwrap();
}
