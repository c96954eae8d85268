//! The iceServers API over real HTTP: the JSON shape, credentials that
//! actually authenticate an Allocate on ternd, the TTL cap, API keys,
//! origins and the CORS preflight.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::http::http;
use common::turn::{Io, TurnClient};
use common::*;

const KEY: &str = "api-key-0123456789abcdef";

fn secured(extra: &[(&str, &str)]) -> ternd::config::Config {
    let mut all = vec![
        ("http.listen", "127.0.0.1:0"),
        ("http.api_keys", KEY),
        ("http.allowed_origins", "https://app.example.org"),
        ("http.max_ttl", "2h"),
    ];
    all.extend_from_slice(extra);
    turn_config(None, &all)
}

#[test]
fn ice_servers_json_has_the_rtcconfiguration_shape_and_working_credentials() {
    let server = start(&secured(&[]));
    let http_addr = server.bound().http[0];
    let auth = format!("Bearer {KEY}");
    let r = http(
        http_addr,
        "GET",
        "/api/ice-servers?user=alice-web&ttl=600",
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let j = r.json();
    assert_eq!(j["ttl"], 600);
    let servers = j["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    let stun: Vec<&str> = servers[0]["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(stun.iter().all(|u| u.starts_with("stun:127.0.0.1:")), "{stun:?}");
    let turn = &servers[1];
    let urls: Vec<&str> = turn["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(urls.iter().any(|u| u.ends_with("?transport=udp")), "{urls:?}");
    assert!(urls.iter().any(|u| u.ends_with("?transport=tcp")), "{urls:?}");
    let username = turn["username"].as_str().unwrap();
    let credential = turn["credential"].as_str().unwrap();
    assert!(username.ends_with(":alice-web"), "{username}");

    // The URL's port is the UDP listener's, and the credential works there.
    let udp = server.bound().udp[0];
    assert!(
        urls.contains(&format!("turn:127.0.0.1:{}?transport=udp", udp.port()).as_str()),
        "{urls:?}"
    );
    let mut c = TurnClient::new(Io::udp(udp), username, credential);
    assert!(c.allocate().is_ok(), "minted credentials authenticate an Allocate");
    server.shutdown().unwrap();
}

/// `turn.rest_hmac = "sha256"`: the iceServers API mints HMAC-SHA-256
/// passwords (coturn issue 2062), and they authenticate.
#[test]
fn ice_servers_mint_hmac_sha256_passwords_when_configured() {
    let server = start(&secured(&[("turn.rest_hmac", "sha256")]));
    let auth = format!("Bearer {KEY}");
    let r = http(
        server.bound().http[0],
        "GET",
        "/api/ice-servers?user=bob",
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let turn = &j["iceServers"][1];
    let (username, credential) = (turn["username"].as_str().unwrap(), turn["credential"].as_str().unwrap());
    assert_eq!(credential.len(), 44, "base64 of an HMAC-SHA-256: {credential}");
    let want = proto::auth::RestHmac::Sha256.password(TEST_SECRET.as_bytes(), username);
    assert_eq!(credential, want);
    let mut c = TurnClient::new(Io::udp(server.bound().udp[0]), username, credential);
    assert!(c.allocate().is_ok(), "minted credentials authenticate an Allocate");
}

#[test]
fn ttl_is_capped_and_validated() {
    let server = start(&secured(&[]));
    let a = server.bound().http[0];
    let auth = format!("Bearer {KEY}");
    let r = http(a, "GET", "/api/ice-servers?ttl=999999", &[("Authorization", &auth)]);
    assert_eq!(r.json()["ttl"], 7200, "capped at http.max_ttl");
    let r = http(a, "GET", "/api/ice-servers", &[("Authorization", &auth)]);
    assert_eq!(r.json()["ttl"], 3600, "http.default_ttl");
    for bad in ["0", "-5", "abc", "1.5"] {
        let r = http(
            a,
            "GET",
            &format!("/api/ice-servers?ttl={bad}"),
            &[("Authorization", &auth)],
        );
        assert_eq!(r.status, 400, "ttl={bad}");
        assert_eq!(r.json()["error"]["code"], 400);
        assert!(r.json()["error"]["message"].as_str().unwrap().contains("ttl"));
    }
    let r = http(a, "GET", "/api/ice-servers?user=a:b", &[("Authorization", &auth)]);
    assert_eq!(r.status, 400);
    server.shutdown().unwrap();
}

#[test]
fn keys_and_origins_are_checked() {
    let server = start(&secured(&[]));
    let a = server.bound().http[0];
    let r = http(a, "GET", "/api/ice-servers", &[]);
    assert_eq!(r.status, 401, "no key");
    assert_eq!(r.json()["error"]["code"], 401);
    let r = http(
        a,
        "GET",
        "/api/ice-servers",
        &[("Authorization", "Bearer wrong-key-0000000000")],
    );
    assert_eq!(r.status, 403, "wrong key");
    let r = http(a, "GET", "/api/ice-servers", &[("Authorization", "Basic abc")]);
    assert_eq!(r.status, 401, "not a bearer key");
    let r = http(a, "GET", "/api/ice-servers", &[("Origin", "https://evil.example")]);
    assert_eq!(r.status, 401, "an unlisted origin needs a key");
    assert_eq!(r.header("access-control-allow-origin"), None);
    // A listed origin may call without a key, and gets CORS headers.
    let r = http(a, "GET", "/api/ice-servers", &[("Origin", "https://app.example.org")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.org"));
    assert_eq!(r.header("vary"), Some("Origin"));
    server.shutdown().unwrap();

    // The laptop default: no keys, no origins, loopback only -> open.
    let server = start(&turn_config(None, &[("http.listen", "127.0.0.1:0")]));
    let r = http(server.bound().http[0], "GET", "/api/ice-servers", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    server.shutdown().unwrap();
}

#[test]
fn cors_preflight() {
    let server = start(&secured(&[]));
    let a = server.bound().http[0];
    let r = http(
        a,
        "OPTIONS",
        "/api/ice-servers",
        &[
            ("Origin", "https://app.example.org"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.org"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    assert!(r.header("access-control-allow-methods").unwrap().contains("GET"));
    let r = http(a, "OPTIONS", "/api/ice-servers", &[("Origin", "https://evil.example")]);
    assert_eq!(r.status, 403);
    server.shutdown().unwrap();
}

#[test]
fn a_public_listener_without_keys_or_origins_is_refused() {
    let e = ternd::config::Config::load(&ternd::config::Sources {
        overrides: vec![("http.listen".into(), "0.0.0.0:8080".into())],
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("http.api_keys"), "{e}");
}

#[test]
fn health_and_sample_page_are_served() {
    let server = start(&turn_config(None, &[("http.listen", "127.0.0.1:0")]));
    let a = server.bound().http[0];
    let r = http(a, "GET", "/healthz", &[]);
    assert_eq!((r.status, r.body.trim()), (200, "ok"));
    let r = http(a, "GET", "/", &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("app.js"));
    // Every file the page loads is served, same-origin only by its CSP.
    for (path, kind) in [
        ("/", "text/html"),
        ("/style.css", "text/css"),
        ("/app.js", "text/javascript"),
        ("/tester.js", "text/javascript"),
        ("/stats.js", "text/javascript"),
    ] {
        let r = http(a, "GET", path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(kind), "{path}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}: {csp}"
        );
    }
    server.shutdown().unwrap();
}

#[test]
fn unknown_paths_and_methods_answer_json_errors() {
    let server = start(&turn_config(None, &[("http.listen", "127.0.0.1:0")]));
    let a = server.bound().http[0];
    for (method, path, code) in [("GET", "/no-such-page", 404), ("DELETE", "/healthz", 405)] {
        let r = http(a, method, path, &[]);
        assert_eq!(r.status, code, "{method} {path}");
        assert!(r.header("content-type").unwrap().starts_with("application/json"));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"]["code"], code, "{}", r.body);
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    server.shutdown().unwrap();
}

#[test]
fn https_serves_the_same_api_with_the_tls_certificate() {
    let cert = TestCert::new();
    let cfg = turn_config(Some(&cert), &[("http.listen", "127.0.0.1:0"), ("http.tls", "true")]);
    let server = start(&cfg);
    let addr = server.bound().http[0];
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(cert.client_config(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET /api/ice-servers HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    let _ = tls.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("\"iceServers\""), "{raw}");
    // Plain HTTP on the HTTPS port is not answered as HTTP.
    let plain = http_raw(addr);
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");
    server.shutdown().unwrap();
}

fn http_raw(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

/// The URLs of one `/api/ice-servers` answer.
fn ice_urls(http_addr: SocketAddr) -> Vec<String> {
    let r = http(
        http_addr,
        "GET",
        "/api/ice-servers",
        &[("Authorization", &format!("Bearer {KEY}"))],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    j["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["urls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().to_string())
        })
        .collect()
}

/// "stun:HOST:PORT" or "turn:HOST:PORT?transport=tcp" -> HOST:PORT.
fn url_addr(url: &str) -> SocketAddr {
    let rest = url.split_once(':').unwrap().1;
    rest.split('?').next().unwrap().parse().unwrap()
}

/// HTTP on 127.0.0.1, STUN/TURN on 127.0.0.2 only: the URLs name where
/// STUN/TURN listen, not the Host of the request, and a real Binding over
/// UDP and TCP reaches them.
#[test]
fn ice_server_urls_name_the_turn_listeners_when_http_listens_elsewhere() {
    let server = start(&secured(&[
        ("listen.udp", "127.0.0.2:0"),
        ("listen.tcp", "127.0.0.2:0"),
    ]));
    let urls = ice_urls(server.bound().http[0]);
    let stun = urls.iter().find(|u| u.starts_with("stun:")).unwrap();
    let tcp = urls.iter().find(|u| u.ends_with("?transport=tcp")).unwrap();
    assert!(urls.iter().all(|u| u.contains(":127.0.0.2:")), "{urls:?}");
    let (local, mapped) = udp_binding(url_addr(stun));
    assert_eq!(mapped, local, "a STUN Binding over UDP at {stun}");
    assert!(tcp_binding(url_addr(tcp)).is_some(), "a STUN Binding over TCP at {tcp}");
    server.shutdown().unwrap();

    // http.public_host, when set, is what the URLs name.
    let server = start(&secured(&[
        ("listen.udp", "127.0.0.2:0"),
        ("http.public_host", "127.0.0.3"),
    ]));
    let urls = ice_urls(server.bound().http[0]);
    assert!(urls.iter().all(|u| u.contains(":127.0.0.3:")), "{urls:?}");
    server.shutdown().unwrap();
}
