//! RFC 7443 (ALPN for STUN/TURN) on the TLS listeners, with a rustls client
//! offering each protocol in turn: "stun.turn" and "stun.nat-discovery" are
//! negotiated and the connection then answers STUN; an offer of only
//! unknown protocols is refused in the handshake (RFC 7301 §3.2,
//! no_application_protocol); no offer at all is accepted, as browsers make
//! none.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// Handshakes with `server` offering `alpn`; on success, sends a Binding
/// over the connection and returns the negotiated protocol and the
/// XOR-MAPPED-ADDRESS; on failure, the TLS error.
fn offer(server: SocketAddr, cert: &TestCert, alpn: &[&str]) -> Result<(Option<Vec<u8>>, SocketAddr), rustls::Error> {
    let mut config = (*cert.client_config()).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let tcp = TcpStream::connect(server).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = tcp;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()).cloned();
            return Err(tls.unwrap_or_else(|| panic!("not a TLS error: {e}")));
        }
    }
    let negotiated = conn.alpn_protocol().map(<[u8]>::to_vec);
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let request = binding_request();
    tls.write_all(&request.raw).unwrap();
    let response = read_stun(&mut tls);
    Ok((negotiated, mapped_address(&request, &response)))
}

fn server(extra: &[(&str, &str)]) -> (TestCert, ternd::Running) {
    let cert = TestCert::new();
    let server = start(&test_config(Some(&cert), extra));
    (cert, server)
}

/// RFC 7443 §4: both STUN protocol IDs are negotiated, and the connection
/// carries STUN afterwards.
#[test]
fn rfc7443_stun_turn_and_stun_nat_discovery_are_negotiated() {
    let (cert, server) = server(&[]);
    let tls = server.bound().tls[0];
    for p in ["stun.turn", "stun.nat-discovery"] {
        let (negotiated, mapped) = offer(tls, &cert, &[p]).expect("handshake");
        assert_eq!(negotiated.as_deref(), Some(p.as_bytes()));
        assert_eq!(mapped.ip(), tls.ip(), "{p}: the Binding is answered");
    }
    // Among other offers, the STUN one is picked.
    let (negotiated, _) = offer(tls, &cert, &["h2", "stun.turn", "http/1.1"]).expect("handshake");
    assert_eq!(negotiated.as_deref(), Some(&b"stun.turn"[..]));
}

/// RFC 7301 §3.2: a client offering only protocols the server does not
/// speak gets a fatal no_application_protocol alert.
#[test]
fn rfc7301_an_unknown_protocol_is_refused() {
    let (cert, server) = server(&[]);
    let tls = server.bound().tls[0];
    let err = offer(tls, &cert, &["h2", "http/1.1"]).expect_err("refused");
    assert_eq!(
        err,
        rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
    );
}

/// A client offering no ALPN (browsers, turnutils) is served as before.
#[test]
fn no_alpn_offer_is_accepted() {
    let (cert, server) = server(&[]);
    let tls = server.bound().tls[0];
    let (negotiated, mapped) = offer(tls, &cert, &[]).expect("handshake");
    assert_eq!(negotiated, None);
    assert_eq!(mapped.ip(), tls.ip());
}

/// `tls.alpn = []` turns negotiation off: any offer is accepted, none chosen.
#[test]
fn an_empty_alpn_list_ignores_offers() {
    let (cert, server) = server(&[("tls.alpn", "")]);
    let tls = server.bound().tls[0];
    let (negotiated, _) = offer(tls, &cert, &["h2"]).expect("handshake");
    assert_eq!(negotiated, None);
}
