//! The HTTP listener against strangers (issue 12, items 1, 5 and 6), over
//! real sockets on loopback: connection budgets and timeouts, CORS and the
//! open laptop mode decided per request, and the local-only admin view.
//! Several clients are played by binding to 127.0.0.2, 127.0.0.3, ...

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::http::{connect_from, http, http_from};
use common::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A server with HTTP on 127.0.0.1 and these extra settings.
fn server(extra: &[(&str, &str)]) -> ternd::Running {
    let mut all = vec![("http.listen", "127.0.0.1:0")];
    all.extend_from_slice(extra);
    start(&turn_config(None, &all))
}

/// `ternd_budget_exhausted_total{budget="..."}` (or any other series) as
/// /metrics shows it to a client at `source`.
fn metric(source: &str, http_addr: SocketAddr, series: &str) -> f64 {
    let r = http_from(
        Some(ip(source)),
        http_addr,
        &http_addr.to_string(),
        "GET",
        "/metrics",
        &[],
    );
    assert_eq!(r.status, 200);
    r.body
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in /metrics"))
}

fn exhausted(budget: &str) -> String {
    format!("ternd_budget_exhausted_total{{budget=\"{budget}\"}}")
}

/// Waits up to `within` for the server to close `s` (EOF or reset); the
/// time it took, or None if it is still open.
fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < within {
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn idle_connections_from_one_source_are_capped_then_timed_out() {
    let server = server(&[
        ("http.max_connections_per_ip", "8"),
        ("http.header_timeout", "2s"),
        ("http.idle_timeout", "20s"),
    ]);
    let a = server.bound().http[0];
    let mut idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(a).unwrap()).collect();
    // One of them sends half a request head, and then nothing.
    idle[7]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let opened = Instant::now();

    // The ninth from the same source is closed at once.
    let mut ninth = TcpStream::connect(a).unwrap();
    let took = closed_within(&mut ninth, Duration::from_secs(5)).expect("the ninth connection is closed");
    assert!(
        took < Duration::from_secs(1),
        "closed on accept, not by a timeout: {took:?}"
    );

    // Meanwhile honest clients are served: HTTP from another source, TURN
    // over TCP (its own budget) from this one.
    let r = http_from(Some(ip("127.0.0.2")), a, &a.to_string(), "GET", "/healthz", &[]);
    assert_eq!((r.status, r.body.trim()), (200, "ok"));
    tcp_binding(server.bound().tcp[0]).expect("a STUN Binding over TCP answers");
    assert!(metric("127.0.0.2", a, &exhausted("http_connections_per_ip")) >= 1.0);

    // Every idle one is closed by the header timeout (2 s), not before.
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(8)).is_some(),
            "idle connection {i} still open after {:?}",
            opened.elapsed()
        );
    }
    assert!(
        opened.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        opened.elapsed()
    );
    assert!(metric("127.0.0.1", a, &exhausted("http_header_timeout")) >= 8.0);

    // A kept-alive connection idle between requests goes the same way.
    let mut kept = TcpStream::connect(a).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ok\n") {
        let n = kept.read(&mut buf).expect("a response");
        assert!(n > 0 && got.len() < 4096, "{}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let took = closed_within(&mut kept, Duration::from_secs(8)).expect("an idle keep-alive connection is closed");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    server.shutdown().unwrap();
}

#[test]
fn the_total_cap_holds_across_sources() {
    let server = server(&[("http.max_connections", "6"), ("http.max_connections_per_ip", "4")]);
    let a = server.bound().http[0];
    let mut held = Vec::new();
    for source in [
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.1",
        "127.0.0.2",
        "127.0.0.2",
    ] {
        held.push(connect_from(ip(source), a).unwrap());
    }
    let mut third = connect_from(ip("127.0.0.3"), a).unwrap();
    let took = closed_within(&mut third, Duration::from_secs(5)).expect("over the total: closed");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // A slot comes back when a client leaves.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let mut s = connect_from(ip("127.0.0.3"), a).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        if let Some(n) = body.lines().find_map(|l| {
            l.strip_prefix(&exhausted("http_connections"))?
                .trim()
                .parse::<f64>()
                .ok()
        }) {
            assert!(body.contains("ternd_http_connections 6"), "{body}");
            break n;
        }
        assert!(Instant::now() < deadline, "no slot came back: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(refused >= 1.0);
    server.shutdown().unwrap();
}

#[test]
fn a_connection_that_reads_no_response_is_closed_by_the_idle_timeout() {
    let server = server(&[
        ("http.header_timeout", "1s"),
        ("http.idle_timeout", "2s"),
        ("signaling.ping_interval", "1s"),
    ]);
    let a = server.bound().http[0];
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&a.into()).unwrap();
    let mut s: TcpStream = s.into();
    // Many pipelined requests for the 20 KB script, and never a byte read:
    // the server's writes stall once the socket buffers are full.
    let one = b"GET /app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    s.write_all(&one.repeat(400)).unwrap();
    let opened = Instant::now();
    let gauge = "ternd_http_connections";
    let deadline = opened + Duration::from_secs(10);
    // Only the /metrics request itself is left open.
    while metric("127.0.0.2", a, gauge) > 1.0 {
        assert!(Instant::now() < deadline, "the stalled connection is still open");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        opened.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        opened.elapsed()
    );
    assert_eq!(metric("127.0.0.2", a, &exhausted("http_idle_timeout")), 1.0);
    drop(s);
    server.shutdown().unwrap();
}

const ICE: &str = "/api/ice-servers";

#[test]
fn cors_only_for_listed_origins_also_in_open_mode() {
    // The laptop default (no keys, no origins): open to local callers, but
    // no page of another site may read the answer.
    let open = server(&[]);
    let a = open.bound().http[0];
    let r = http(a, "GET", ICE, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    for method in ["GET", "OPTIONS"] {
        let r = http(a, method, ICE, &[("Origin", "https://evil.example")]);
        assert_eq!(r.header("access-control-allow-origin"), None, "{method}");
        assert_eq!(r.status, 403, "{method}: {}", r.body);
    }
    open.shutdown().unwrap();

    let listed = server(&[("http.allowed_origins", "https://app.example.org")]);
    let a = listed.bound().http[0];
    let r = http(a, "GET", ICE, &[("Origin", "https://app.example.org")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.org"));
    let r = http(a, "GET", ICE, &[("Origin", "https://evil.example")]);
    assert_eq!(r.header("access-control-allow-origin"), None);
    listed.shutdown().unwrap();
}

#[test]
fn open_mode_is_decided_per_request() {
    let server = server(&[]);
    let a = server.bound().http[0];
    for host in [
        "localhost",
        "127.0.0.1",
        &a.to_string(),
        &format!("localhost:{}", a.port()),
    ] {
        let r = http_from(None, a, host, "GET", ICE, &[]);
        assert_eq!(r.status, 200, "Host: {host}: {}", r.body);
    }
    // The sample page's own same-origin call.
    let own = format!("http://{a}");
    let r = http(a, "GET", ICE, &[("Origin", &own), ("Sec-Fetch-Site", "same-origin")]);
    assert_eq!(r.status, 200, "{}", r.body);
    // Through a reverse proxy on this host, or from a rebound DNS name.
    for proxy in ["X-Forwarded-For", "X-Real-IP", "Forwarded"] {
        let r = http(a, "GET", ICE, &[(proxy, "203.0.113.9")]);
        assert!(matches!(r.status, 401 | 403), "{proxy}: {} {}", r.status, r.body);
        assert!(!r.body.contains("iceServers"), "{proxy}");
    }
    for host in ["turn.example.org", "rebound.evil.example:8080", "10.1.2.3"] {
        let r = http_from(None, a, host, "GET", ICE, &[]);
        assert!(matches!(r.status, 401 | 403), "Host: {host}: {} {}", r.status, r.body);
    }
    server.shutdown().unwrap();
}

#[test]
fn the_admin_view_refuses_all_but_proper_local_calls() {
    let server = server(&[]);
    let a = server.bound().http[0];
    let list = "/admin/allocations";
    let r = http(a, "GET", list, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let refused: [&[(&str, &str)]; 6] = [
        &[("Origin", "https://evil.example")],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("X-Real-IP", "203.0.113.9")],
        &[("X-Forwarded-Host", "turn.example.org")],
        &[("Forwarded", "for=203.0.113.9")],
        &[("X-Forwarded-For", "203.0.113.9")],
    ];
    for headers in refused {
        assert_eq!(http(a, "GET", list, headers).status, 403, "{headers:?}");
    }
    let r = http_from(None, a, "rebound.evil.example", "GET", list, &[]);
    assert_eq!(r.status, 403, "a non-loopback Host (DNS rebinding)");
    // A POST without the custom header, as a cross-site form could send it.
    let level = "/admin/log-level?level=info";
    let r = http(a, "POST", level, &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = http(
        a,
        "POST",
        level,
        &[("X-Ternd-Admin", "1"), ("Origin", "https://evil.example")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // The proper local call passes the guard (no logger is installed in
    // this test process, so the handler itself answers 400).
    let r = http(a, "POST", level, &[("X-Ternd-Admin", "1")]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("log level"), "{}", r.body);
    server.shutdown().unwrap();
}

#[test]
fn expired_usernames_leave_the_revoked_set() {
    let server = server(&[]);
    let a = server.bound().http[0];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expired = format!("{}:mallory", now - 10);
    let live = format!("{}:bob", now + 3600);
    let mut last = None;
    for user in [&expired, &live] {
        let r = http(
            a,
            "POST",
            &format!("/admin/revoke?username={user}"),
            &[("X-Ternd-Admin", "1")],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        last = Some(r.json());
    }
    assert_eq!(last.unwrap()["revocations"], 1, "only the live username is kept");
    assert_eq!(server.handle().revocations(), 1);
    server.shutdown().unwrap();
}

#[test]
fn an_upgraded_websocket_keeps_its_connection_slot() {
    let server = server(&[("http.max_connections_per_ip", "2")]);
    let a = server.bound().http[0];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ws = rt.block_on(common::ws::connect(a));
    let _second = TcpStream::connect(a).unwrap();
    let mut third = TcpStream::connect(a).unwrap();
    assert!(
        closed_within(&mut third, Duration::from_secs(3)).is_some(),
        "the WebSocket still holds one of the two slots"
    );
    assert_eq!(metric("127.0.0.2", a, "ternd_http_connections"), 3.0);
    // Closed, it gives its slot back.
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric("127.0.0.2", a, "ternd_http_connections") > 2.0 {
        assert!(Instant::now() < deadline, "the closed WebSocket still holds its slot");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.shutdown().unwrap();
}
