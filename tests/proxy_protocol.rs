//! The PROXY protocol (haproxy's proxy-protocol.txt, v1 and v2) on chosen
//! TCP and TLS listeners (`listen.proxy_protocol`), over real sockets: the
//! address a header carries is the client's in XOR-MAPPED-ADDRESS (Binding
//! and Allocate) and in the per-address allocation quota; sources outside
//! `listen.proxy_trusted` and garbage headers are closed and counted. The
//! headers are written byte by byte here from the spec, not by the `ppp`
//! crate ternd parses them with.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::turn::{Io, TurnClient};
use common::*;

/// A v1 header: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" (§2.1).
fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// A v2 header (§2.2): the 12-byte signature, version 2 / command PROXY
/// (0x21), TCP over IPv4 (0x11) or IPv6 (0x21), the address length, the
/// addresses and ports, and one NOOP TLV as balancers add.
fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21);
    let mut body = Vec::new();
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h.push(0x11);
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            h.push(0x21);
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
        }
        _ => panic!("one family"),
    }
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    body.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]); // PP2_TYPE_NOOP, length 1
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

/// A v2 LOCAL header (a balancer's health check): no addresses.
fn v2_local() -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    h
}

fn proxied(extra: &[(&str, &str)], cert: Option<&TestCert>) -> ternd::Running {
    let mut all = vec![
        ("listen.tcp", "127.0.0.1:0"),
        ("listen.proxy_protocol", "tcp:127.0.0.1:0"),
        ("listen.proxy_trusted", "127.0.0.0/8"),
    ];
    if cert.is_some() {
        all.push(("listen.tls", "127.0.0.1:0"));
        all[1].1 = "tcp:127.0.0.1:0,tls:127.0.0.1:0";
    }
    all.extend_from_slice(extra);
    start(&turn_config(cert, &all))
}

fn connect(addr: SocketAddr, header: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(header).unwrap();
    s
}

/// A Binding over `s` (after its header): the XOR-MAPPED-ADDRESS.
fn binding_over(s: &mut impl ReadWrite) -> SocketAddr {
    let request = binding_request();
    s.write_all(&request.raw).unwrap();
    mapped_address(&request, &read_stun(s))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

const CLIENT_V4: &str = "198.51.100.7:40001";
const CLIENT_V6: &str = "[2001:db8::7]:40002";

#[test]
fn v1_and_v2_headers_set_the_mapped_address_over_tcp() {
    let server = proxied(&[], None);
    let tcp = server.bound().tcp[0];
    for (what, header, want) in [
        ("v1 TCP4", v1(CLIENT_V4.parse().unwrap(), tcp), CLIENT_V4),
        ("v2 IPv4", v2(CLIENT_V4.parse().unwrap(), tcp), CLIENT_V4),
        (
            "v2 IPv6",
            v2(CLIENT_V6.parse().unwrap(), "[2001:db8::1]:3478".parse().unwrap()),
            CLIENT_V6,
        ),
        (
            "v1 TCP6",
            v1(CLIENT_V6.parse().unwrap(), "[2001:db8::1]:3478".parse().unwrap()),
            CLIENT_V6,
        ),
    ] {
        let mut s = connect(tcp, &header);
        assert_eq!(binding_over(&mut s), want.parse::<SocketAddr>().unwrap(), "{what}");
    }
    // A health check (v2 LOCAL) is served as the balancer itself.
    let mut s = connect(tcp, &v2_local());
    assert_eq!(binding_over(&mut s).ip(), tcp.ip());
}

/// The header goes before the TLS handshake (as balancers send it): the
/// address inside reaches STUN over TLS.
#[test]
fn v2_header_before_a_tls_handshake() {
    let cert = TestCert::new();
    let server = proxied(&[], Some(&cert));
    let tls = server.bound().tls[0];
    for header in [v2(CLIENT_V4.parse().unwrap(), tls), v1(CLIENT_V4.parse().unwrap(), tls)] {
        let s = connect(tls, &header);
        let name = rustls::pki_types::ServerName::IpAddress(tls.ip().into());
        let conn = rustls::ClientConnection::new(cert.client_config(), name).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, s);
        assert_eq!(binding_over(&mut stream), CLIENT_V4.parse::<SocketAddr>().unwrap());
    }
}

/// Allocations: XOR-MAPPED-ADDRESS is the real client, and
/// `turn.max_allocations_per_ip` counts real clients, not the balancer.
#[test]
fn allocations_see_the_real_client_and_its_quota() {
    let server = proxied(&[("turn.max_allocations_per_ip", "1")], None);
    let tcp = server.bound().tcp[0];
    let alloc = |src: &str| {
        let s = connect(tcp, &v2(src.parse().unwrap(), tcp));
        let mut c = TurnClient::new(Io::Tcp(s), "alice", "alice-password");
        let r = c.allocate();
        (c, r)
    };
    let (a, r) = alloc("198.51.100.1:5000");
    r.expect("first client allocates");
    assert_eq!(a.mapped, Some("198.51.100.1:5000".parse().unwrap()));
    let (_b, r) = alloc("198.51.100.2:5000");
    r.expect("another client behind the same balancer allocates");
    let (_c, r) = alloc("198.51.100.1:5001");
    assert_eq!(r.err(), Some(486), "the first client's address is at its quota");
}

/// A source outside `listen.proxy_trusted` is closed unread, even with a
/// well-formed header; so is a trusted one whose header is garbage. Both
/// are counted by reason.
#[test]
fn untrusted_sources_and_bad_headers_are_closed_and_counted() {
    // The server may close (and reset) the connection before or while the
    // client writes: a write may fail, the read must see no answer.
    let closed_unanswered = |addr: SocketAddr, bytes: &[&[u8]]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for b in bytes {
            let _ = s.write_all(b);
        }
        let mut buf = [0u8; 64];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "closed without an answer");
    };
    let server = proxied(&[("listen.proxy_trusted", "192.0.2.0/24")], None);
    let tcp = server.bound().tcp[0];
    closed_unanswered(tcp, &[&v1(CLIENT_V4.parse().unwrap(), tcp), &binding_request().raw]);

    let server2 = proxied(&[], None);
    let tcp2 = server2.bound().tcp[0];
    for garbage in [&b"GET / HTTP/1.1\r\n\r\n"[..], &binding_request().raw[..]] {
        closed_unanswered(tcp2, &[garbage]);
    }
    let stats = server.shutdown().unwrap();
    assert_eq!(stats.drops.get(proto::DropReason::ProxyUntrusted), 1);
    let stats2 = server2.shutdown().unwrap();
    assert_eq!(stats2.drops.get(proto::DropReason::ProxyHeader), 2);
}

/// Listeners not named in `listen.proxy_protocol` take no header: plain
/// clients on them are served as before.
#[test]
fn other_listeners_are_unchanged() {
    let server = start(&turn_config(
        None,
        &[
            ("listen.tcp", "127.0.0.1:0,[::1]:0"),
            ("listen.proxy_protocol", "tcp:[::1]:0"),
            ("listen.proxy_trusted", "::1"),
        ],
    ));
    let b = server.bound();
    assert_eq!(tcp_binding(b.tcp[0]).map(|a| a.ip()), Some(b.tcp[0].ip()));
    let mut s = connect(b.tcp[1], &v1(CLIENT_V6.parse().unwrap(), b.tcp[1]));
    assert_eq!(binding_over(&mut s), CLIENT_V6.parse::<SocketAddr>().unwrap());
}
