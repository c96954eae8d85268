//! Binding over UDP, TCP and TLS, IPv4 and IPv6, against the in-process
//! server on port 0, with requests built and responses read by the
//! independent webrtc-rs `stun` crate.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn binding_over_udp_ipv4_and_ipv6() {
    let server = start(&test_config(None, &[]));
    assert_eq!(server.bound().udp.len(), 2);
    for &addr in &server.bound().udp {
        // Several sockets, so both shards (SO_REUSEPORT) are likely exercised.
        for _ in 0..8 {
            let (local, mapped) = udp_binding(addr);
            assert_eq!(mapped, local, "the reflexive address is the client's own on loopback");
        }
    }
    let stats = server.shutdown().unwrap();
    assert_eq!(stats.binding_success(), 16);
    assert_eq!(stats.drops.total(), 0);
}

#[test]
fn binding_over_tcp_ipv4_and_ipv6() {
    let server = start(&test_config(None, &[]));
    for &addr in &server.bound().tcp {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Two requests on one connection, the second written in two pieces
        // (stream framing must reassemble it).
        for split in [None, Some(7)] {
            let req = binding_request();
            match split {
                None => s.write_all(&req.raw).unwrap(),
                Some(k) => {
                    s.write_all(&req.raw[..k]).unwrap();
                    s.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                    s.write_all(&req.raw[k..]).unwrap();
                }
            }
            let resp = read_stun(&mut s);
            assert_eq!(mapped_address(&req, &resp), s.local_addr().unwrap());
        }
        // Two requests in one write.
        let (a, b) = (binding_request(), binding_request());
        s.write_all(&[a.raw.clone(), b.raw.clone()].concat()).unwrap();
        assert_eq!(mapped_address(&a, &read_stun(&mut s)), s.local_addr().unwrap());
        assert_eq!(mapped_address(&b, &read_stun(&mut s)), s.local_addr().unwrap());
    }
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn binding_over_tls_ipv4_and_ipv6() {
    let cert = TestCert::new();
    let server = start(&test_config(Some(&cert), &[]));
    assert_eq!(server.bound().tls.len(), 2);
    let connector = tokio_rustls::TlsConnector::from(cert.client_config());
    for &addr in &server.bound().tls {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local: SocketAddr = tcp.local_addr().unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
            .await
            .expect("handshake in time")
            .expect("handshake succeeds");
        for _ in 0..3 {
            let req = binding_request();
            tls.write_all(&req.raw).await.unwrap();
            let mut head = [0u8; 20];
            tls.read_exact(&mut head).await.unwrap();
            let len = u16::from_be_bytes([head[2], head[3]]) as usize;
            let mut body = vec![0u8; len];
            tls.read_exact(&mut body).await.unwrap();
            let resp = [head.to_vec(), body].concat();
            assert_eq!(mapped_address(&req, &resp), local);
        }
    }
    server.shutdown().unwrap();
}

#[test]
fn tls_port_refuses_plain_stun_without_harming_tls_clients() {
    let cert = TestCert::new();
    let server = start(&test_config(Some(&cert), &[("tls.handshake_timeout", "500ms")]));
    let addr = server.bound().tls[0];
    // Plain STUN on the TLS port is not a handshake: the server hangs up.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&binding_request().raw).unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
    assert!(n == 0 || buf[0] == 0x15, "closed or a TLS alert, not a STUN answer");
    // A proper UDP client is unaffected.
    let (local, mapped) = udp_binding(server.bound().udp[0]);
    assert_eq!(local, mapped);
    server.shutdown().unwrap();
}

#[test]
fn a_wildcard_listener_answers_from_the_address_the_client_used() {
    // 127.0.0.0/8 is all local, so a wildcard socket is reachable on
    // 127.0.0.2 and 127.0.0.3 while routing would pick 127.0.0.1 as source.
    let server = start(&test_config(None, &[("listen.udp", "0.0.0.0:0,[::]:0")]));
    let port = server.bound().udp[0].port();
    for ip in ["127.0.0.2", "127.0.0.3"] {
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        // udp_binding asserts the reply's source equals `addr`.
        let (local, mapped) = udp_binding(addr);
        assert_eq!(local, mapped);
    }
    let v6port = server.bound().udp[1].port();
    let (local, mapped) = udp_binding(format!("[::1]:{v6port}").parse().unwrap());
    assert_eq!(local, mapped);
    server.shutdown().unwrap();
}
