//! Operating a live server in-process: reload (secrets, TLS certificate,
//! peer policy; an invalid config refused), metrics that move with traffic
//! and keep a fixed series count, and the local admin view.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::http::http;
use common::turn::{Io, Relayed, TurnClient};
use common::*;
use ternd::config::{Config, Sources};

const SECRET_A: &str = "secret-a-0123456789abcdef";
const SECRET_B: &str = "secret-b-0123456789abcdef";

fn config_with(cert: &TestCert, secrets: &str, extra: &[(&str, &str)]) -> Config {
    let mut all = vec![("turn.secrets", secrets), ("http.listen", "127.0.0.1:0")];
    all.extend_from_slice(extra);
    turn_config(Some(cert), &all)
}

/// The same config with the bound ports, so a reload does not report them.
fn reloaded(base: &Config, overrides: &[(&str, &str)]) -> Config {
    let mut sources = Sources::default();
    for (k, v) in overrides {
        sources.overrides.push((k.to_string(), v.to_string()));
    }
    let mut c = Config::load(&sources).unwrap();
    c.listen = base.listen.clone();
    c.http = base.http.clone();
    c.server = base.server.clone();
    c.log = base.log.clone();
    c
}

fn tls_cert_der(addr: SocketAddr, cert: &TestCert) -> Vec<u8> {
    // Trust anything: we only want to see which certificate is presented.
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut conn = rustls::ClientConnection::new(cert.client_config(), name).unwrap();
    let mut tcp = tcp;
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            break;
        }
    }
    conn.peer_certificates().map(|c| c[0].to_vec()).unwrap_or_default()
}

#[test]
fn reload_rotates_secrets_swaps_the_certificate_and_changes_policy_without_dropping_relays() {
    let cert1 = TestCert::new();
    let cfg = config_with(&cert1, SECRET_A, &[]);
    let server = start(&cfg);
    let handle = server.handle();
    let udp = server.bound().udp[0];
    let tls = server.bound().tls[0];
    assert_eq!(tls_cert_der(tls, &cert1), cert1.cert_der);

    // A live relay with credentials from secret A.
    let peer = EchoPeer::start(false);
    let (ua, pa) = rest_credentials_from(SECRET_A, "old");
    let mut live = TurnClient::new(Io::udp(udp), &ua, &pa);
    live.allocate().unwrap();
    live.channel_bind(0x4001, peer.addr).unwrap();
    let relay_ok = |c: &mut TurnClient, i: u8| {
        c.send_channel(0x4001, &[i; 32]);
        assert_eq!(
            c.recv_relayed(),
            Some(Relayed::Channel(0x4001, vec![i; 32])),
            "relay still flows ({i})"
        );
    };
    relay_ok(&mut live, 1);
    let other: SocketAddr = "127.0.0.3:9".parse().unwrap();
    assert_eq!(
        live.create_permission(&[other]),
        Ok(()),
        "127.0.0.0/8 is allowed before the reload"
    );

    // Rotate: B is new, A kept until the credentials minted from it expire.
    let cert2 = TestCert::new();
    let step1 = reloaded(
        &cfg,
        &[
            ("turn.secrets", &format!("{SECRET_B},{SECRET_A}")),
            ("relay.ipv4", "127.0.0.1"),
            ("relay.ipv6", "::1"),
            ("relay.port_min", "61000"),
            ("peers.allow", "127.0.0.2/32"),
            ("tls.cert_file", cert2.cert_file.to_str().unwrap()),
            ("tls.key_file", cert2.key_file.to_str().unwrap()),
            ("listen.tls", "127.0.0.1:0"),
        ],
    );
    let report = common::block_on(handle.reload(&step1)).unwrap();
    assert!(
        !report.needs_restart.contains(&"relay.ipv4"),
        "{:?}",
        report.needs_restart
    );
    relay_ok(&mut live, 2);
    let (ub, pb) = rest_credentials_from(SECRET_B, "new");
    assert!(
        TurnClient::new(Io::udp(udp), &ub, &pb).allocate().is_ok(),
        "new secret works"
    );
    assert!(
        TurnClient::new(Io::udp(udp), &ua, &pa).allocate().is_ok(),
        "old secret honoured while listed"
    );
    // New handshakes see the new certificate.
    assert_eq!(tls_cert_der(tls, &cert2), cert2.cert_der);
    // The policy change applies to new permissions: 127.0.0.3 is no longer allowed.
    assert_eq!(live.create_permission(&[other]), Err(403));
    relay_ok(&mut live, 3);

    // Drop A: new allocations with A-minted credentials fail; the live one relays on.
    let mut step2 = step1.clone();
    step2.turn.secrets = vec![SECRET_B.into()];
    common::block_on(handle.reload(&step2)).unwrap();
    assert_eq!(TurnClient::new(Io::udp(udp), &ua, &pa).allocate(), Err(401));
    relay_ok(&mut live, 4);

    // An invalid config (a secret file that does not exist) is refused and
    // the running one stays in force.
    let mut bad = step2.clone();
    bad.turn.secret_files = vec!["/nonexistent/ternd-secret".into()];
    let e = common::block_on(handle.reload(&bad)).unwrap_err().to_string();
    assert!(e.contains("turn.secret_files"), "{e}");
    let (ub2, pb2) = rest_credentials_from(SECRET_B, "after-refusal");
    assert!(TurnClient::new(Io::udp(udp), &ub2, &pb2).allocate().is_ok());
    relay_ok(&mut live, 5);
    server.shutdown().unwrap();
}

fn scrape(addr: SocketAddr) -> Vec<(String, f64)> {
    let r = http(addr, "GET", "/metrics", &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    r.body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn value(m: &[(String, f64)], key: &str) -> f64 {
    m.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no series {key}"))
}

#[test]
fn metrics_move_with_traffic_and_keep_a_fixed_series_count() {
    let server = start(&turn_config(None, &[("http.listen", "127.0.0.1:0")]));
    let http_addr = server.bound().http[0];
    let before = scrape(http_addr);
    assert_eq!(value(&before, "ternd_allocations"), 0.0);

    let peer = EchoPeer::start(false);
    let mut clients = Vec::new();
    for i in 0..5 {
        let (u, p) = rest_credentials(&format!("user{i}"));
        let mut c = TurnClient::new(Io::udp(server.bound().udp[0]), &u, &p);
        c.allocate().unwrap();
        c.channel_bind(0x4000, peer.addr).unwrap();
        for _ in 0..10 {
            c.send_channel(0x4000, &[7; 100]);
            assert!(c.recv_relayed().is_some());
        }
        clients.push(c);
    }
    let mut wrong = TurnClient::new(Io::udp(server.bound().udp[0]), "alice", "nope");
    assert_eq!(wrong.allocate(), Err(401));

    let after = scrape(http_addr);
    assert_eq!(value(&after, "ternd_allocations"), 5.0);
    assert_eq!(value(&after, "ternd_channels"), 5.0);
    assert_eq!(
        value(&after, "ternd_relayed_packets_total{direction=\"to_peer\"}"),
        50.0
    );
    assert_eq!(
        value(&after, "ternd_relayed_packets_total{direction=\"to_client\"}"),
        50.0
    );
    assert_eq!(
        value(&after, "ternd_relayed_bytes_total{direction=\"to_client\"}"),
        5000.0
    );
    // One success per allocation, counted once.
    assert_eq!(
        value(&after, "ternd_responses_total{method=\"allocate\",code=\"200\"}"),
        5.0
    );
    assert_eq!(
        value(&after, "ternd_auth_failures_total{reason=\"bad_integrity\"}"),
        1.0
    );
    assert!(value(&after, "ternd_requests_total{method=\"channel_bind\"}") >= 5.0);
    // Users and clients do not add series.
    assert_eq!(before.len(), after.len(), "the series count is fixed");
    assert!(after
        .iter()
        .all(|(k, _)| !k.contains("user=") && !k.contains(":user") && !k.contains("127.0.0.1")));
    server.shutdown().unwrap();
}

#[test]
fn admin_index_lists_the_endpoints_to_local_requests_only() {
    let server = start(&turn_config(None, &[("http.listen", "127.0.0.1:0")]));
    let a = server.bound().http[0];
    let r = http(a, "GET", "/admin/", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let endpoints = r.json()["endpoints"].as_array().unwrap().clone();
    for (method, path) in [
        ("GET", "/admin/allocations"),
        ("POST", "/admin/close?client=IP:PORT"),
        ("POST", "/admin/revoke?username=EXPIRY:USER"),
        ("POST", "/admin/log-level?level=FILTER"),
    ] {
        let e = endpoints
            .iter()
            .find(|e| e["path"] == path)
            .unwrap_or_else(|| panic!("{path} listed"));
        assert_eq!(e["method"], method);
        assert!(e["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let r = http(a, "GET", "/admin/", &[("X-Forwarded-For", "203.0.113.9")]);
    assert_eq!(r.status, 403);
    server.shutdown().unwrap();
}

#[test]
fn admin_view_lists_closes_revokes_and_sets_the_log_level() {
    let server = start(&turn_config(None, &[("http.listen", "127.0.0.1:0")]));
    let a = server.bound().http[0];
    let udp = server.bound().udp[0];
    let (u, p) = rest_credentials("carol");
    let mut c = TurnClient::new(Io::udp(udp), &u, &p);
    let relayed = c.allocate().unwrap();
    let r = http(a, "GET", "/admin/allocations", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json()["allocations"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["user"], u.as_str());
    assert_eq!(list[0]["relays"][0], relayed.to_string());
    let client = list[0]["client"].as_str().unwrap().to_string();

    // Behind a proxy the admin view is refused.
    let r = http(a, "GET", "/admin/allocations", &[("X-Forwarded-For", "203.0.113.9")]);
    assert_eq!(r.status, 403);

    let admin = [("X-Ternd-Admin", "1")];
    let r = http(a, "POST", &format!("/admin/close?client={client}"), &admin);
    assert_eq!(r.json()["closed"], 1);
    assert_eq!(c.refresh(600), Err(437), "the allocation is gone");

    let r = http(a, "POST", &format!("/admin/revoke?username={u}"), &admin);
    assert_eq!(r.status, 200);
    let mut again = TurnClient::new(Io::udp(udp), &u, &p);
    assert_eq!(
        again.allocate(),
        Err(401),
        "a revoked username is refused before it expires"
    );

    // Install a real logger, as `ternd serve` does, so the level change acts.
    let log = ternd::logging::init(&ternd::config::LogSection {
        level: "warn".into(),
        format: ternd::config::LogFormat::Human,
    })
    .expect("this test is the only one installing a logger in its process");
    server.handle().set_log_handle(log);
    let r = http(a, "POST", "/admin/log-level?level=debug", &admin);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(tracing::enabled!(tracing::Level::DEBUG), "the new level is in force");
    let r = http(a, "POST", "/admin/log-level?level=loud", &admin);
    assert_eq!(r.status, 400, "{}", r.body);
    server.shutdown().unwrap();
}

/// /metrics carries the build, the process (RSS, open fds), free relay ports
/// per family, and the signaling sockets and rooms, each with a value that
/// moves as it should.
#[test]
fn metrics_show_build_process_ports_and_signaling() {
    let server = start(&turn_config(
        None,
        &[
            ("http.listen", "127.0.0.1:0"),
            ("relay.port_min", "61000"),
            ("relay.port_max", "61099"),
        ],
    ));
    let http_addr = server.bound().http[0];
    let m = scrape(http_addr);
    assert_eq!(
        value(
            &m,
            &format!("ternd_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))
        ),
        1.0
    );
    // The server runs in this test process: /proc/self is its own.
    let rss = value(&m, "process_resident_memory_bytes");
    assert!(rss > 4e6 && rss < 16e9, "{rss}");
    let fds = value(&m, "process_open_fds");
    let ours = std::fs::read_dir("/proc/self/fd").unwrap().count() as f64;
    assert!(fds > 5.0 && (fds - ours).abs() < 32.0, "{fds} vs {ours}");
    assert!(value(&m, "process_max_fds") >= fds);
    assert_eq!(value(&m, "ternd_relay_ports_free{family=\"ipv4\"}"), 100.0);
    assert_eq!(value(&m, "ternd_relay_ports_free{family=\"ipv6\"}"), 100.0);
    assert_eq!(value(&m, "ternd_signaling_connections"), 0.0);
    assert_eq!(value(&m, "ternd_signaling_rooms"), 0.0);

    let (u, p) = rest_credentials("ports");
    let mut c = TurnClient::new(Io::udp(server.bound().udp[0]), &u, &p);
    c.allocate().unwrap();
    let m = scrape(http_addr);
    assert_eq!(value(&m, "ternd_relay_ports_free{family=\"ipv4\"}"), 99.0);
    assert_eq!(value(&m, "ternd_relay_ports_free{family=\"ipv6\"}"), 100.0);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = rt.block_on(async {
        let mut a = common::ws::connect(http_addr).await;
        common::ws::send(&mut a, serde_json::json!({"type": "join", "room": "metrics"})).await;
        assert_eq!(common::ws::recv(&mut a).await["type"], "welcome");
        let b = common::ws::connect(http_addr).await;
        (a, b)
    });
    let m = scrape(http_addr);
    assert_eq!(value(&m, "ternd_signaling_connections"), 2.0);
    assert_eq!(value(&m, "ternd_signaling_rooms"), 1.0, "one joined, one not yet");
    drop((a, b));
    server.shutdown().unwrap();
}

/// A certificate renewed in place (files rewritten or renamed over, no
/// signal) is served to new handshakes within a bounded time; a broken or
/// mismatched pair is refused and the running certificate stays.
#[test]
fn a_certificate_whose_files_change_is_reloaded_without_a_signal() {
    let cert1 = TestCert::new();
    let server = start(&config_with(&cert1, SECRET_A, &[("tls.watch_interval", "100ms")]));
    let tls = server.bound().tls[0];
    assert_eq!(tls_cert_der(tls, &cert1), cert1.cert_der);
    let serves = |want: &TestCert| wait_for(Duration::from_secs(5), || tls_cert_der(tls, want) == want.cert_der);

    // Rewritten in place, key first (a moment of mismatch is refused, then fine).
    let cert2 = TestCert::new();
    std::fs::copy(&cert2.key_file, &cert1.key_file).unwrap();
    std::fs::copy(&cert2.cert_file, &cert1.cert_file).unwrap();
    assert!(serves(&cert2), "the rewritten certificate is served within 5 s");

    // A corrupt certificate file, then a certificate without its key: refused.
    std::fs::write(&cert1.cert_file, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        tls_cert_der(tls, &cert2),
        cert2.cert_der,
        "a corrupt file keeps the old one"
    );
    let cert3 = TestCert::new();
    std::fs::copy(&cert3.cert_file, &cert1.cert_file).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        tls_cert_der(tls, &cert2),
        cert2.cert_der,
        "a mismatched pair keeps the old one"
    );

    // Renamed over (how certbot and atomic writers replace files).
    let cert4 = TestCert::new();
    std::fs::rename(&cert4.key_file, &cert1.key_file).unwrap();
    std::fs::rename(&cert4.cert_file, &cert1.cert_file).unwrap();
    assert!(serves(&cert4), "the renamed-in certificate is served within 5 s");
    server.shutdown().unwrap();
}
