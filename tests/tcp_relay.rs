//! RFC 6062 TCP relay allocations end to end: the in-process server with
//! real sockets, driven by a TURN client whose messages the webrtc-rs `stun`
//! crate encodes (§5.1 Allocate, §5.2 Connect to a real TCP peer, §5.3 a
//! peer connecting to the relay address, §5.4 ConnectionBind and the
//! splice), and by coturn's `turnutils_uclient -T` / `-P` (an independent
//! client) through two shards.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::turn::{decode, Io, TurnClient};
use common::*;
use stun::attributes::{AttrType, ATTR_REQUESTED_TRANSPORT, ATTR_XOR_PEER_ADDRESS};
use stun::error_code::ErrorCodeAttribute;
use stun::message::{
    Getter, Message, METHOD_ALLOCATE, METHOD_CONNECT, METHOD_CONNECTION_ATTEMPT, METHOD_CONNECTION_BIND,
};
use stun::xoraddr::XorMappedAddress;

const ATTR_CONNECTION_ID: AttrType = AttrType(0x002A);

fn code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|_| e.code.0)
}

fn connection_id(m: &Message) -> u32 {
    let v = m.get(ATTR_CONNECTION_ID).expect("CONNECTION-ID");
    u32::from_be_bytes(v.try_into().unwrap())
}

fn add_peer(m: &mut Message, peer: SocketAddr) {
    XorMappedAddress {
        ip: peer.ip(),
        port: peer.port(),
    }
    .add_to_as(m, ATTR_XOR_PEER_ADDRESS)
    .unwrap();
}

/// Allocate with REQUESTED-TRANSPORT TCP: Ok(relayed address) or the error code.
fn allocate_tcp(c: &mut TurnClient) -> Result<SocketAddr, u16> {
    let r = c.request(METHOD_ALLOCATE, &|m| m.add(ATTR_REQUESTED_TRANSPORT, &[6, 0, 0, 0]));
    match code(&r) {
        Some(c) => Err(c),
        None => Ok(common::turn::xor_addr(&r, stun::attributes::ATTR_XOR_RELAYED_ADDRESS).unwrap()),
    }
}

fn connect(c: &mut TurnClient, peer: SocketAddr) -> Result<u32, u16> {
    let r = c.request(METHOD_CONNECT, &|m| add_peer(m, peer));
    match code(&r) {
        Some(c) => Err(c),
        None => Ok(connection_id(&r)),
    }
}

/// Opens a client data connection and binds it to `id` (RFC 6062 §5.4);
/// returns the raw stream on success.
fn connection_bind(server: SocketAddr, id: u32) -> Result<TcpStream, u16> {
    let (user, pass) = credentials();
    let mut dc = TurnClient::new(Io::tcp(server), user, pass);
    let r = dc.request(METHOD_CONNECTION_BIND, &|m| {
        m.add(ATTR_CONNECTION_ID, &id.to_be_bytes())
    });
    if let Some(c) = code(&r) {
        return Err(c);
    }
    match dc.into_io() {
        Io::Tcp(s) => Ok(s),
        _ => unreachable!("opened over TCP"),
    }
}

/// A TCP peer on 127.0.0.2 that echoes what it reads, one connection at a time.
fn echo_peer() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.2:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// One REST credential for every connection of the test binary: a data
/// connection must use the allocation's (else 441).
fn credentials() -> &'static (String, String) {
    static CREDS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    CREDS.get_or_init(|| rest_credentials("tcp-relay"))
}

fn control(server: SocketAddr) -> TurnClient {
    let (user, pass) = credentials();
    TurnClient::new(Io::tcp(server), user, pass)
}

/// A TCP connection to `to` from 127.0.0.2 (not the relay's own address).
fn connect_from_peer_ip(to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5)).unwrap();
    s.into()
}

fn echo_through(s: &mut TcpStream, payload: &[u8]) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(payload).unwrap();
    let mut back = vec![0u8; payload.len()];
    s.read_exact(&mut back).expect("the peer's echo through the splice");
    assert_eq!(back, payload);
}

#[test]
fn s5_1_tcp_allocations_need_a_stream_and_the_key_on() {
    let server = start(&turn_config(None, &[]));
    let udp = server.bound().udp[0];
    let tcp = server.bound().tcp[0];
    let (user, pass) = credentials();
    let mut over_udp = TurnClient::new(Io::udp(udp), user, pass);
    assert_eq!(allocate_tcp(&mut over_udp), Err(400), "RFC 6062 §5.1: not over UDP");
    let relay = allocate_tcp(&mut control(tcp)).expect("TCP allocation over TCP");
    assert_eq!(relay.ip(), "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
    server.shutdown().unwrap();

    let off = start(&turn_config(None, &[("turn.tcp_relay", "false")]));
    assert_eq!(allocate_tcp(&mut control(off.bound().tcp[0])), Err(442));
    off.shutdown().unwrap();
}

#[test]
fn s5_2_connect_then_connection_bind_splices_to_a_real_peer() {
    let server = start(&turn_config(None, &[]));
    let tcp = server.bound().tcp[0];
    let peer = echo_peer();
    let mut c = control(tcp);
    allocate_tcp(&mut c).unwrap();
    // No permission yet: 403.
    assert_eq!(connect(&mut c, peer), Err(403));
    c.create_permission(&[peer]).unwrap();
    // A peer the policy refuses (peers.allow is 127/8 here): 403.
    assert_eq!(connect(&mut c, "192.168.1.1:80".parse().unwrap()), Err(403));
    // Nothing listens there (a port held by a socket that does not
    // listen, so nothing else takes it meanwhile): 447.
    let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    held.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into()).unwrap();
    let closed = held.local_addr().unwrap().as_socket().unwrap();
    assert_eq!(connect(&mut c, closed), Err(447));
    let id = connect(&mut c, peer).expect("connected");
    assert_eq!(connect(&mut c, peer), Err(446), "one connection per peer");
    assert_eq!(connection_bind(tcp, id ^ 1).err(), Some(400), "an unknown id");
    // Several data connections land on either shard: each is spliced.
    let mut data = connection_bind(tcp, id).expect("bound");
    let sizes = [1, 100, 4000, 70_000];
    for size in sizes {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        echo_through(&mut data, &payload);
    }
    assert_eq!(connection_bind(tcp, id).err(), Some(400), "bound already");
    // Once the data connection is gone, what it relayed is counted.
    drop(data);
    let handle = server.handle();
    assert!(
        wait_for(Duration::from_secs(5), || handle.open_connections() == 1),
        "the data connection ends with its client"
    );
    let stats = server.shutdown().unwrap();
    let c = stats.tcp_relay;
    assert_eq!((c.connected, c.failed, c.bound), (1, 1, 1), "{c:?}");
    let total: u64 = sizes.iter().sum();
    let t = stats.traffic;
    assert_eq!((t.to_peer_bytes, t.to_client_bytes), (total, total), "{t:?}");
}

#[test]
fn s5_3_a_peer_connecting_to_the_relay_is_announced_and_bound() {
    let server = start(&turn_config(None, &[]));
    let tcp = server.bound().tcp[0];
    for round in 0..4 {
        let mut c = control(tcp);
        let relay = allocate_tcp(&mut c).unwrap();
        // Without a permission the connection is closed unannounced.
        let mut refused = connect_from_peer_ip(relay);
        refused.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(
            matches!(refused.read(&mut [0u8; 1]), Ok(0) | Err(_)),
            "closed without a permission"
        );
        c.create_permission(&["127.0.0.2:1".parse().unwrap()]).unwrap();
        let mut peer = connect_from_peer_ip(relay);
        let bytes = c.next_unsolicited().expect("a ConnectionAttempt");
        let m = decode(&bytes);
        assert_eq!(m.typ.method, METHOD_CONNECTION_ATTEMPT, "round {round}");
        let from = common::turn::xor_addr(&m, ATTR_XOR_PEER_ADDRESS).unwrap();
        assert_eq!(from, peer.local_addr().unwrap());
        let mut data = connection_bind(tcp, connection_id(&m)).expect("bound");
        // Both ways, and what the peer sent before the bind is not lost.
        peer.write_all(b"early").unwrap();
        let mut got = [0u8; 5];
        data.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        data.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"early");
        data.write_all(b"to the peer").unwrap();
        let mut got = [0u8; 11];
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"to the peer");
        // §5.5: the peer leaving closes the client data connection.
        drop(peer);
        assert!(matches!(data.read(&mut [0u8; 1]), Ok(0) | Err(_)));
    }
    server.shutdown().unwrap();
}

/// `turn.bandwidth_limit` holds each way of a splice to its rate.
#[test]
fn a_splice_keeps_to_the_bandwidth_limit() {
    let server = start(&turn_config(None, &[("turn.bandwidth_limit", "20000")]));
    let tcp = server.bound().tcp[0];
    let peer = echo_peer();
    let mut c = control(tcp);
    allocate_tcp(&mut c).unwrap();
    c.create_permission(&[peer]).unwrap();
    let id = connect(&mut c, peer).unwrap();
    let mut data = connection_bind(tcp, id).unwrap();
    // 60 000 B at 20 000 B/s with a one-second burst: at least 2 s.
    let started = std::time::Instant::now();
    data.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let payload = vec![7u8; 60_000];
    let writer = {
        let mut w = data.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&payload).unwrap())
    };
    let mut back = vec![0u8; 60_000];
    data.read_exact(&mut back).expect("all of it, slowly");
    writer.join().unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1800), "paced: {took:?}");
    assert!(took < Duration::from_secs(8), "not stalled: {took:?}");
    server.shutdown().unwrap();
}

/// Runs uclient with `args` (bounded); None if it hung and was stopped.
fn uclient(args: &[String]) -> Option<(u64, u64, u64, String)> {
    let bin = tool("turnutils_uclient")?;
    let done = process::spawn(std::process::Command::new(bin).args(args)).finish(Duration::from_secs(40));
    let text = done.stdout + &done.stderr;
    done.status?;
    let num_after = |key: &str| common::number_after(&text, key);
    let sent = num_after("tot_send_msgs=").unwrap_or(0);
    let recv = num_after("tot_recv_msgs=").unwrap_or(0);
    let lost = num_after("Total lost packets").unwrap_or(u64::MAX);
    Some((sent, recv, lost, text))
}

/// uclient hangs now and then, against coturn too: up to three runs.
fn uclient_retried(args: &[String]) -> (u64, u64, u64, String) {
    let mut last = String::new();
    for _ in 0..3 {
        match uclient(args) {
            Some(r) => return r,
            None => last = "uclient hung".into(),
        }
    }
    panic!("{last} three times: {args:?}");
}

fn uclient_args(extra: &[&str], port: u16) -> Vec<String> {
    let port = port.to_string();
    let common = [
        "-W",
        TEST_SECRET,
        "-u",
        "uclient",
        "-n",
        "20",
        "-m",
        "4",
        "-l",
        "300",
        "-p",
        &port,
    ];
    extra
        .iter()
        .chain(common.iter())
        .chain(["127.0.0.1"].iter())
        .map(|s| s.to_string())
        .collect()
}

/// TLS client connections are left to the probe test (tests/probe.rs):
/// uclient picks TLS 1.0/1.1 contexts at random for some connections,
/// which ternd (rustls) refuses, and then hangs.
#[test]
fn uclient_tcp_relay_client_to_client_through_two_shards() {
    if tool("turnutils_uclient").is_none() {
        return;
    }
    let server = start(&turn_config(None, &[("turn.legacy_channel_numbers", "true")]));
    let tcp = server.bound().tcp[0].port();
    // -T: TCP relays (RFC 6062); -y: the clients are each other's peers,
    // so each one's Connect is another's ConnectionAttempt.
    for round in 0..3 {
        let (sent, recv, lost, text) = uclient_retried(&uclient_args(&["-T", "-y"], tcp));
        assert_eq!(sent, 80, "round {round}: 4 clients x 20 messages\n{text}");
        assert_eq!(recv, sent, "round {round}: every message relayed\n{text}");
        assert_eq!(lost, 0, "round {round}\n{text}");
    }
    let stats = server.shutdown().unwrap();
    assert!(stats.allocations_created >= 3 * 4, "{}", stats.allocations_created);
    // Each run: every client Connects to another and is connected to.
    let c = stats.tcp_relay;
    assert!(c.connected >= 3 * 4 && c.accepted >= 3 * 4, "{c:?}");
    assert_eq!(c.bound, c.connected + c.accepted, "every connection bound: {c:?}");
}

/// `-P` (passive: the peer side opens the connection to the relay) with
/// `-y` delivers only one direction's messages with coturn itself; ternd
/// must deliver exactly what coturn does. The active peers connect from
/// 127.0.0.2 (`-L`): ternd's policy admits its own relay IP (127.0.0.1) on
/// relay ports only.
#[test]
fn uclient_passive_tcp_relay_matches_coturn() {
    let (Some(_), Some(turnserver)) = (tool("turnutils_uclient"), tool("turnserver")) else {
        return;
    };
    let server = start(&turn_config(None, &[("turn.legacy_channel_numbers", "true")]));
    let coturn = coturn::Coturn::start(
        &turnserver,
        "tcp-relay.test",
        &["--use-auth-secret", &format!("--static-auth-secret={TEST_SECRET}")],
    );
    let passive = ["-P", "-y", "-L", "127.0.0.2"];
    let ternd = uclient_retried(&uclient_args(&passive, server.bound().tcp[0].port()));
    let reference = uclient_retried(&uclient_args(&passive, coturn.addr.port()));
    assert_eq!(reference.0, 80, "coturn: sent\n{}", reference.3);
    assert!(reference.1 > 0, "coturn relayed something\n{}", reference.3);
    assert_eq!(
        (ternd.0, ternd.1, ternd.2),
        (reference.0, reference.1, reference.2),
        "ternd (sent, received, lost) as coturn's\nternd:\n{}\ncoturn:\n{}",
        ternd.3,
        reference.3
    );
    server.shutdown().unwrap();
}
