//! `ternd probe`, the real binary, against an in-process ternd (UDP, TCP,
//! TLS; REST secret, static user, iceServers URL; wrong password; two
//! server addresses for the NAT mapping test), against coturn's
//! `turnserver`, and against a fake server whose replies are malformed.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::lab_agent::strings as args;
use common::*;
use serde_json::Value;

fn ternd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ternd"))
}

/// Runs `ternd probe ARGS` (bounded: killed after 30 s) and returns its output.
fn probe(args: &[String]) -> Output {
    probe_with_env(args, &[])
}

/// `probe` with extra environment variables.
fn probe_with_env(args: &[String], env: &[(&str, &str)]) -> Output {
    process::output(
        ternd().arg("probe").args(args).envs(env.iter().copied()),
        Duration::from_secs(30),
    )
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts a line of the text report starts with `prefix`.
fn assert_line(o: &Output, prefix: &str) {
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with(prefix)),
        "a `{prefix}` line\n{}",
        text(o)
    );
}

/// The document of a `--json` run: `{"verdict", "ok", "diagnoses", "checks"}`.
fn json_doc(o: &Output) -> Value {
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not one JSON document ({e})\n{}", text(o)))
}

/// The checks of a `--json` run.
fn json_lines(o: &Output) -> Vec<Value> {
    json_doc(o)["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks\n{}", text(o)))
        .clone()
}

/// The diagnosis codes of a `--json` run.
fn codes(o: &Output) -> Vec<String> {
    json_doc(o)["diagnoses"]
        .as_array()
        .unwrap_or_else(|| panic!("no diagnoses\n{}", text(o)))
        .iter()
        .map(|d| d["code"].as_str().unwrap_or("").to_string())
        .collect()
}

fn checks<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["check"] == kind).collect()
}

fn v4(addrs: &[SocketAddr]) -> SocketAddr {
    *addrs.iter().find(|a| a.is_ipv4()).expect("an IPv4 listener")
}

/// Asserts a passing `--json` run: every binding reports a 127.0.0.1
/// reflexive address, every relay is 127.0.0.1 in the configured range
/// (61000-65535), and each transport's round trip passed.
fn assert_all_pass(o: &Output, transports: &[&str]) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    let lines = json_lines(o);
    for t in transports {
        let pick = |kind: &str| {
            *checks(&lines, kind)
                .iter()
                .find(|c| c["transport"] == *t)
                .unwrap_or_else(|| panic!("a {kind} check over {t}\n{}", text(o)))
        };
        let b = pick("binding");
        assert_eq!(b["ok"], true, "{b}");
        let reflexive: SocketAddr = b["reflexive"].as_str().unwrap().parse().unwrap();
        assert_eq!(reflexive.ip().to_string(), "127.0.0.1", "{b}");
        assert_ne!(reflexive.port(), 0);
        // On loopback there is no NAT: the local address is the reflexive one.
        assert_eq!(b["local"], b["reflexive"], "{b}");
        assert_eq!(b["nat"], false, "{b}");
        let a = pick("allocate");
        assert_eq!(a["ok"], true, "{a}");
        let relay: SocketAddr = a["relay"].as_str().unwrap().parse().unwrap();
        assert_eq!(relay.ip().to_string(), "127.0.0.1", "{a}");
        assert!(relay.port() >= 61000, "relay port from the configured range: {a}");
        assert_eq!(a["lifetime"], 600, "{a}");
        let r = pick("relay-round-trip");
        assert_eq!(r["ok"], true, "{r}");
        // 61: not a multiple of 4, so TCP/TLS ChannelData is padded.
        assert_eq!(r["bytes"], 61, "{r}");
        // RFC 6062 TCP relays, both ways, on stream transports.
        if *t != "udp" {
            let tcp = pick("tcp-relay");
            assert_eq!(tcp["status"], "pass", "{tcp}");
        }
    }
    let doc = json_doc(o);
    assert_eq!(doc["ok"], true);
    let verdict = doc["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with(&format!(
            "TURN works over {}; relay round trip OK",
            transports.join(",")
        )),
        "{verdict}"
    );
    // Everything is on loopback: relay and reflexive addresses are the server's and ours.
    assert_eq!(doc["diagnoses"], serde_json::json!([]), "{}", text(o));
}

#[test]
fn passes_against_ternd_over_udp_tcp_and_tls_with_a_rest_secret() {
    let cert = TestCert::new();
    let server = start(&turn_config(Some(&cert), &[]));
    let b = server.bound().clone();
    let o = probe(&args(&[
        "--json",
        "--secret",
        TEST_SECRET,
        "--rest-user",
        "probe-test",
        "--ca",
        &cert.cert_file.display().to_string(),
        &format!("turn:{}", v4(&b.udp)),
        &format!("turn:{}?transport=tcp", v4(&b.tcp)),
        &format!("turns:{}", v4(&b.tls)),
    ]));
    assert_all_pass(&o, &["udp", "tcp", "tls"]);
    // Without --alt-server/--alt-port the mapping test says what it needs.
    let lines = json_lines(&o);
    // turns: offers ALPN "stun.turn" (RFC 7443) and ternd agrees.
    let bindings = checks(&lines, "binding");
    let tls = bindings
        .iter()
        .find(|c| c["transport"] == "tls")
        .expect("a TLS binding");
    assert_eq!(tls["alpn"], "stun.turn", "{tls}");
    assert!(bindings
        .iter()
        .all(|c| c["transport"] == "tls" || c.get("alpn").is_none()));
    let m = checks(&lines, "nat-mapping");
    assert_eq!(m.len(), 1, "{}", text(&o));
    assert_eq!(m[0]["verdict"], "unknown");
    assert!(m[0]["detail"]
        .as_str()
        .unwrap()
        .contains("needs a second server address"));
    // Nor can the filtering test run: this server does no RFC 5780.
    let f = checks(&lines, "nat-filtering");
    assert_eq!(
        (f.len(), &f[0]["verdict"]),
        (1, &Value::from("unknown")),
        "{}",
        text(&o)
    );
    assert!(f[0]["detail"].as_str().unwrap().contains("no OTHER-ADDRESS"));

    // TLS trust: --insecure works with the self-signed certificate; neither
    // --ca nor --insecure fails and says what to give. (The secret from
    // the environment this time.)
    let turns = format!("turns:{}", v4(&b.tls));
    let o = probe_with_env(
        &args(&["--json", "--insecure", "--bind", "127.0.0.1", &turns]),
        &[("TERND_PROBE_SECRET", TEST_SECRET)],
    );
    assert_all_pass(&o, &["tls"]);
    let o = probe(&args(&["--secret", TEST_SECRET, &turns]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL  binding tls") && l.contains("--ca FILE") && l.contains("--insecure")),
        "{}",
        text(&o)
    );
    assert_line(&o, "FIX   tls-untrusted");

    // The system's CA store: rustls-native-certs reads SSL_CERT_FILE in
    // place of the OS bundle, so the test's CA there is trusted without --ca.
    let o = probe_with_env(
        &args(&["--json", "--secret", TEST_SECRET, &turns]),
        &[("SSL_CERT_FILE", &cert.cert_file.display().to_string())],
    );
    assert_all_pass(&o, &["tls"]);

    // Every allocation was deleted by a successful Refresh (lifetime 0):
    // 2 per transport and run (5), and 2 TCP relay ones per TCP or TLS run (4).
    let stats = server.shutdown().unwrap();
    assert_eq!(stats.allocations_created, 10 + 8);
    let refresh = proto::metrics::method_index(proto::wire::Method::REFRESH);
    assert_eq!(
        stats.requests.responses[refresh][proto::metrics::code_index(None)],
        10 + 8
    );
}

/// `turn.rest_hmac = "sha256"` on the server, `--rest-hmac sha256` on the
/// probe: REST passwords minted with HMAC-SHA-256 authenticate, and the
/// SHA-1 ones a default probe mints do not.
#[test]
fn rest_passwords_minted_with_hmac_sha256() {
    let server = start(&turn_config(None, &[("turn.rest_hmac", "sha256")]));
    let turn = format!("turn:{}", v4(&server.bound().udp));
    let o = probe(&args(&[
        "--json",
        "--secret",
        TEST_SECRET,
        "--rest-hmac",
        "sha256",
        &turn,
    ]));
    assert_all_pass(&o, &["udp"]);
    let o = probe(&args(&["--json", "--secret", TEST_SECRET, &turn]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let lines = json_lines(&o);
    assert_eq!(checks(&lines, "allocate")[0]["error_code"], 401, "{}", text(&o));
}

/// RFC 8489 §9.2: offered SHA-256 behind the nonce cookie, the probe
/// takes it (SHA-256 key, MESSAGE-INTEGRITY-SHA256) and says so; offered
/// nothing, it uses MD5.
#[test]
fn the_probe_negotiates_sha256_when_offered() {
    for (offer, want) in [("sha256,md5", "sha256"), ("md5", "md5")] {
        let server = start(&turn_config(None, &[("turn.password_algorithms", offer)]));
        let turn = format!("turn:{}", v4(&server.bound().udp));
        let o = probe(&args(&[
            "--json",
            "--user",
            "alice",
            "--password",
            "alice-password",
            &turn,
        ]));
        assert_all_pass(&o, &["udp"]);
        let lines = json_lines(&o);
        assert_eq!(
            checks(&lines, "allocate")[0]["password_algorithm"],
            want,
            "{}",
            text(&o)
        );
        let stats = server.shutdown().unwrap();
        assert!(stats
            .logins
            .iter()
            .any(|(alg, id, _, n)| alg == want && id == "plain" && n > 0));
    }
}

#[test]
fn passes_with_a_static_user_and_prints_one_line_per_check() {
    let server = start(&turn_config(None, &[]));
    let b = server.bound().clone();
    let o = probe(&args(&[
        "--user",
        "alice",
        "--password",
        "alice-password",
        &format!("stun:{}", v4(&b.udp)),
        &format!("turn:{}", v4(&b.udp)),
        &format!("turn:{}?transport=tcp", v4(&b.tcp)),
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "VERDICT: TURN works over udp,tcp; relay round trip OK",
        "{}",
        text(&o)
    );
    // The stun: URL and the turn: UDP URL share one binding check.
    for want in [
        format!("PASS  binding udp {}", v4(&b.udp)),
        format!("PASS  allocate udp {}", v4(&b.udp)),
        "PASS  relay round trip udp".to_string(),
        format!("PASS  binding tcp {}", v4(&b.tcp)),
        format!("PASS  allocate tcp {}", v4(&b.tcp)),
        "PASS  relay round trip tcp".to_string(),
        "INFO  nat mapping".to_string(),
    ] {
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(&want)).count(),
            1,
            "one `{want}` line\n{}",
            text(&o)
        );
    }
    assert!(!out.contains("FAIL"), "{}", text(&o));

    // The password from the environment instead of the command line.
    let o = probe_with_env(
        &args(&["--user", "alice", &format!("turn:{}", v4(&b.udp))]),
        &[("TERND_PROBE_PASSWORD", "alice-password")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn wrong_password_fails_with_401_and_exit_code_1() {
    let server = start(&turn_config(None, &[]));
    let udp = v4(&server.bound().udp);
    let url = format!("turn:{udp}");
    let wrong = |json: &[&str]| {
        probe(&args(
            &[json, &["--user", "alice", "--password", "nope", &url]].concat(),
        ))
    };
    let o = wrong(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL  allocate udp"))
        .unwrap_or_else(|| panic!("a FAIL allocate line\n{}", text(&o)));
    assert!(fail.contains("401"), "{fail}");
    // Binding needs no credentials and still passes.
    assert!(out.contains(&format!("PASS  binding udp {udp}")), "{}", text(&o));

    // The same in JSON, with the error code as a field.
    let o = wrong(&["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let lines = json_lines(&o);
    let a = checks(&lines, "allocate");
    assert_eq!(a[0]["ok"], false);
    assert_eq!(a[0]["error_code"], 401);
    assert_eq!(json_doc(&o)["ok"], false);
    assert_eq!(codes(&o), ["credentials-rejected"]);
    assert!(
        json_doc(&o)["verdict"]
            .as_str()
            .unwrap()
            .starts_with("relay unusable: 127.0.0.1"),
        "{}",
        text(&o)
    );
}

#[test]
fn nat_mapping_is_endpoint_independent_across_two_server_addresses_and_ports() {
    // Three UDP listeners: 127.0.0.1 twice (two ports) and 127.0.0.2.
    let server = start(&turn_config(
        None,
        &[
            ("listen.udp", "127.0.0.1:0,127.0.0.1:0,127.0.0.2:0"),
            ("listen.tcp", "127.0.0.1:0"),
        ],
    ));
    let udp = server.bound().udp.clone();
    let one: Vec<SocketAddr> = udp
        .iter()
        .copied()
        .filter(|a| a.ip().to_string() == "127.0.0.1")
        .collect();
    let two = *udp.iter().find(|a| a.ip().to_string() == "127.0.0.2").unwrap();
    assert_eq!(one.len(), 2, "{udp:?}");
    let o = probe(&args(&[
        "--json",
        "--alt-server",
        &two.to_string(),
        "--alt-port",
        &one[1].port().to_string(),
        &format!("stun:{}", one[0]),
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines = json_lines(&o);
    let m = checks(&lines, "nat-mapping");
    assert_eq!(m[0]["verdict"], "endpoint-independent", "{}", text(&o));
    let mappings = m[0]["mappings"].as_array().unwrap();
    assert_eq!(mappings.len(), 3, "{}", m[0]);
    let servers: Vec<&str> = mappings.iter().map(|x| x["server"].as_str().unwrap()).collect();
    assert_eq!(
        servers,
        [one[0].to_string(), two.to_string(), one[1].to_string()],
        "{}",
        m[0]
    );
    // One local socket, so one reflexive address for all three.
    assert!(
        mappings.iter().all(|x| x["reflexive"] == mappings[0]["reflexive"]),
        "{}",
        m[0]
    );
    let reflexive: SocketAddr = mappings[0]["reflexive"].as_str().unwrap().parse().unwrap();
    assert_eq!(reflexive.ip().to_string(), "127.0.0.1");

    // A second address where nothing answers: a FAIL naming it, exit 1.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let o = probe(&args(&[
        "--timeout",
        "1s",
        "--alt-server",
        &silent.local_addr().unwrap().to_string(),
        &format!("stun:{}", one[0]),
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines().any(|l| l.starts_with("FAIL  nat mapping")
            && l.contains(&silent.local_addr().unwrap().to_string())
            && l.contains("no response")),
        "{}",
        text(&o)
    );
}

#[test]
fn probes_every_url_of_an_ice_servers_endpoint() {
    const KEY: &str = "probe-test-api-key-0123456789";
    let cert = TestCert::new();
    let server = start(&turn_config(
        Some(&cert),
        &[("http.listen", "127.0.0.1:0"), ("http.api_keys", KEY)],
    ));
    let http = server.bound().http[0];
    let url = format!("http://{http}/api/ice-servers?user=probe");
    let ca = cert.cert_file.display().to_string();
    // The key from the environment.
    let o = probe_with_env(
        &args(&["--json", "--ice-servers", &url, "--ca", &ca]),
        &[("TERND_PROBE_KEY", KEY)],
    );
    assert_all_pass(&o, &["udp", "tcp", "tls"]);
    let lines = json_lines(&o);
    let fetched = checks(&lines, "ice-servers")[0];
    assert_eq!(fetched["ok"], true);
    // The source is printed without its query.
    assert_eq!(fetched["source"], format!("http://{http}/api/ice-servers"), "{fetched}");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("user=probe"),
        "{}",
        text(&o)
    );

    // A wrong key: the fetch fails with the HTTP status, exit 1.
    let o = probe(&args(&["--ice-servers", &url, "--key", "wrong-key-000000000000"]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL  ice servers") && l.contains("403")),
        "{}",
        text(&o)
    );
}

#[test]
fn ice_servers_documents_are_capped_at_32_urls() {
    // 40 URLs that do not parse: each probed one is a FAIL line of its own,
    // so nothing goes out on the network.
    let urls: Vec<String> = (0..40).map(|i| format!("\"bogus{i}\"")).collect();
    let body = format!("{{\"iceServers\":[{{\"urls\":[{}]}}]}}", urls.join(","));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let o = probe(&args(&["--ice-servers", &format!("http://{addr}/ice")]));
    server.join().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let count = |start: &str| out.lines().filter(|l| l.starts_with(start)).count();
    assert_eq!(count("FAIL  ice servers url"), 32, "{}", text(&o));
    let warn: Vec<&str> = out.lines().filter(|l| l.starts_with("WARN  ice servers")).collect();
    assert_eq!(warn.len(), 1, "{}", text(&o));
    assert!(warn[0].contains("8 more URL(s) not probed"), "{}", warn[0]);
}

#[test]
fn usage_errors_exit_2_with_a_reason() {
    for (a, why) in [
        (args(&[]), "required"),
        (args(&["turn://127.0.0.1"]), "no `//`"),
        (args(&["turn:127.0.0.1?transport=sctp"]), "unknown query"),
        (args(&["--user", "u", "stun:127.0.0.1"]), "--password"),
        (args(&["--timeout", "soon", "stun:127.0.0.1"]), "soon"),
        (
            args(&["--ca", "/nonexistent/ca.pem", "stun:127.0.0.1"]),
            "/nonexistent/ca.pem",
        ),
        (args(&["--alt-server", "[::1", "stun:127.0.0.1"]), "--alt-server"),
    ] {
        let o = probe(&a);
        assert_eq!(o.status.code(), Some(2), "{a:?}\n{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{a:?}: {}", text(&o));
    }
}

/// A Binding success header for `req`'s transaction with `body` appended,
/// the length field claiming `claimed` bytes.
fn success_with(req: &[u8], body: &[u8], claimed: u16) -> Vec<u8> {
    let mut m = vec![0x01, 0x01];
    m.extend_from_slice(&claimed.to_be_bytes());
    m.extend_from_slice(&req[4..20]);
    m.extend_from_slice(body);
    m
}

/// How a fake server answers a request.
type Reply = fn(&[u8]) -> Vec<u8>;

#[test]
fn malformed_replies_are_fail_lines_not_panics() {
    let cases: [(Reply, &str); 5] = [
        // An attribute that runs past the end of the message.
        (
            |req| success_with(req, &[0x00, 0x20, 0x00, 0x40, 1, 2, 3, 4], 8),
            "malformed",
        ),
        // A well-formed success without XOR-MAPPED-ADDRESS.
        (|req| success_with(req, &[], 0), "no XOR-MAPPED-ADDRESS"),
        // XOR-MAPPED-ADDRESS with an unknown family.
        (
            |req| success_with(req, &[0x00, 0x20, 0x00, 0x08, 0, 9, 0, 0, 1, 2, 3, 4], 12),
            "XOR-MAPPED-ADDRESS",
        ),
        // An error response without ERROR-CODE.
        (
            |req| {
                let mut m = success_with(req, &[], 0);
                m[1] = 0x11;
                m
            },
            "ERROR-CODE",
        ),
        // A reason phrase with a line break: printed on the same line.
        (
            |req| {
                let mut body = vec![0x00, 0x09, 0x00, 13, 0, 0, 4, 0];
                body.extend_from_slice(b"no\nFAIL x\0\0\0");
                let mut m = success_with(req, &body, 20);
                m[1] = 0x11;
                m
            },
            "error 400 no FAIL x",
        ),
    ];
    for (reply, why) in cases {
        let fake = EchoPeer::replying(false, reply);
        let o = probe(&args(&["--timeout", "2s", &format!("stun:{}", fake.addr)]));
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.lines()
                .any(|l| l.starts_with("FAIL  binding udp") && l.contains(why)),
            "expected a FAIL mentioning {why}\n{}",
            text(&o)
        );
        assert!(String::from_utf8_lossy(&o.stderr).is_empty(), "{}", text(&o));
    }
    // Garbage that is not STUN at all: ignored, so the binding times out and says so.
    let fake = EchoPeer::replying(false, |_| vec![0xff; 24]);
    let o = probe(&args(&["--timeout", "1s", &format!("stun:{}", fake.addr)]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("unusable replies"),
        "{}",
        text(&o)
    );
}

#[test]
fn passes_against_coturn_with_a_static_user_and_a_rest_secret() {
    let Some(bin) = tool("turnserver") else { return };
    for rest in [false, true] {
        let auth: &[&str] = if rest {
            &["--use-auth-secret", &format!("--static-auth-secret={TEST_SECRET}")]
        } else {
            &["--lt-cred-mech", "--user=alice:alice-password"]
        };
        let coturn = coturn::Coturn::start(&bin, "probe.test", auth);
        let addr = coturn.addr;
        let creds = if rest {
            args(&["--secret", TEST_SECRET])
        } else {
            args(&["--user", "alice", "--password", "alice-password"])
        };
        let o = probe(
            &[
                args(&["--json"]),
                creds,
                vec![format!("turn:{addr}"), format!("turn:{addr}?transport=tcp")],
            ]
            .concat(),
        );
        assert_eq!(o.status.code(), Some(0), "rest={rest}: {}", text(&o));
        let lines = json_lines(&o);
        for t in ["udp", "tcp"] {
            for kind in ["binding", "allocate", "relay-round-trip"] {
                let c = checks(&lines, kind);
                let c = c.iter().find(|c| c["transport"] == t).unwrap();
                assert_eq!(c["ok"], true, "rest={rest} {kind} {t}: {c}");
            }
        }
        // The probe's RFC 6062 client against coturn's TCP relays.
        let tcp = checks(&lines, "tcp-relay");
        assert_eq!(tcp[0]["status"], "pass", "rest={rest}: {}", tcp[0]);
        let relay: SocketAddr = checks(&lines, "allocate")[0]["relay"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(coturn.relay_ports.contains(&relay.port()), "coturn relay port: {relay}");
    }
}

/// How the fake TURN server signs its Allocate success.
#[derive(Clone, Copy, PartialEq)]
enum AllocateSuccess {
    /// MESSAGE-INTEGRITY with the request's key, XOR-MAPPED-ADDRESS included.
    Signed,
    /// No MESSAGE-INTEGRITY at all.
    Unsigned,
    /// MESSAGE-INTEGRITY computed with another password.
    WrongKey,
    /// Signed, but without XOR-MAPPED-ADDRESS (RFC 8656 §7.2 requires it).
    NoMapped,
    /// Signed, relay address 10.0.0.5 (relay.external_ip unset); every
    /// other request succeeds, but nothing is relayed.
    PrivateRelay,
    /// Signed, relay address the server's own (127.0.0.2); every other
    /// request succeeds, but nothing is relayed (a firewall on the relay ports).
    DropsData,
    /// Signed, relay address 198.51.100.7, not the server's; every other
    /// request succeeds, but nothing is relayed (no hairpin).
    Hairpin,
    /// Binding answers with the reflexive address 172.17.0.1 (a Docker bridge).
    PrivateReflexive,
}

impl AllocateSuccess {
    /// Answers CreatePermission, ChannelBind and Refresh with success.
    fn relays(self) -> bool {
        matches!(
            self,
            AllocateSuccess::PrivateRelay | AllocateSuccess::DropsData | AllocateSuccess::Hairpin
        )
    }
}

/// A fake TURN server whose messages are built and read by the webrtc-rs
/// `stun` crate: it challenges with 401 (nonce "n1"), calls "n1" stale (438,
/// nonce "n2"), accepts an Allocate only with nonce "n2" and a
/// MESSAGE-INTEGRITY that verifies for fake-user/fake-pass, and refuses
/// every other request with 403.
fn stale_nonce_server(req: &[u8]) -> Vec<u8> {
    fake_turn(req, AllocateSuccess::Signed)
}

fn fake_turn(req: &[u8], success: AllocateSuccess) -> Vec<u8> {
    use stun::attributes::*;
    use stun::error_code::*;
    use stun::integrity::MessageIntegrity;
    use stun::message::*;
    use stun::textattrs::TextAttribute;
    use stun::xoraddr::XorMappedAddress;

    let mut m = Message::new();
    m.raw = req.to_vec();
    // Send indications and ChannelData are dropped: nothing is relayed.
    if m.decode().is_err() || m.typ.class == CLASS_INDICATION {
        return Vec::new();
    }
    let key = MessageIntegrity::new_long_term_integrity("fake-user".into(), "fake".into(), "fake-pass".into());
    let (tid, method) = (m.transaction_id, m.typ.method);
    let mut r = Message::new();
    let reply = |r: &mut Message, class| {
        r.build(&[Box::new(tid), Box::new(MessageType::new(method, class))])
            .unwrap()
    };
    let at = |ip: &str, port| XorMappedAddress {
        ip: ip.parse().unwrap(),
        port,
    };
    let addr = |port| at("127.0.0.1", port);
    let error = |r: &mut Message, code: ErrorCode, nonce: Option<&str>| {
        reply(r, CLASS_ERROR_RESPONSE);
        ErrorCodeAttribute {
            code,
            reason: b"as the test says".to_vec(),
        }
        .add_to(r)
        .unwrap();
        if let Some(n) = nonce {
            TextAttribute::new(ATTR_REALM, "fake".into()).add_to(r).unwrap();
            TextAttribute::new(ATTR_NONCE, n.into()).add_to(r).unwrap();
        }
    };
    let nonce = m.get(ATTR_NONCE).ok();
    if m.typ.method == METHOD_BINDING {
        reply(&mut r, CLASS_SUCCESS_RESPONSE);
        match success {
            AllocateSuccess::PrivateReflexive => at("172.17.0.1", 40000),
            _ => addr(40000),
        }
        .add_to(&mut r)
        .unwrap();
    } else if nonce.is_none() {
        error(&mut r, CODE_UNAUTHORIZED, Some("n1"));
    } else if nonce.as_deref() == Some(b"n1") {
        error(&mut r, CODE_STALE_NONCE, Some("n2"));
    } else if key.check(&mut m).is_err() {
        error(&mut r, CODE_UNAUTHORIZED, None);
    } else if m.typ.method == METHOD_ALLOCATE {
        reply(&mut r, CLASS_SUCCESS_RESPONSE);
        match success {
            AllocateSuccess::PrivateRelay => at("10.0.0.5", 50000),
            AllocateSuccess::DropsData => at("127.0.0.2", 50000),
            AllocateSuccess::Hairpin => at("198.51.100.7", 50000),
            _ => addr(50000),
        }
        .add_to_as(&mut r, ATTR_XOR_RELAYED_ADDRESS)
        .unwrap();
        if success != AllocateSuccess::NoMapped {
            addr(40000).add_to(&mut r).unwrap();
        }
        r.add(ATTR_LIFETIME, &600u32.to_be_bytes());
        match success {
            AllocateSuccess::Unsigned => {}
            AllocateSuccess::WrongKey => {
                MessageIntegrity::new_long_term_integrity("fake-user".into(), "fake".into(), "other".into())
                    .add_to(&mut r)
                    .unwrap()
            }
            _ => key.add_to(&mut r).unwrap(),
        }
    } else if success.relays() {
        reply(&mut r, CLASS_SUCCESS_RESPONSE);
        key.add_to(&mut r).unwrap();
    } else {
        error(&mut r, CODE_FORBIDDEN, None);
    }
    stun::fingerprint::FINGERPRINT.add_to(&mut r).unwrap();
    r.raw
}

#[test]
fn follows_401_then_438_and_reports_refusals_with_their_code() {
    let fake = EchoPeer::replying(false, stale_nonce_server);
    let url = format!("turn:{}", fake.addr);
    let with_password = |pw: &str| {
        probe(&args(&[
            "--timeout",
            "2s",
            "--user",
            "fake-user",
            "--password",
            pw,
            &url,
        ]))
    };
    let o = with_password("fake-pass");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = |start: &str| {
        out.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("a `{start}` line\n{}", text(&o)))
            .to_string()
    };
    // 401 → credentials, 438 → the new nonce, then the Allocate succeeds.
    assert!(line("PASS  allocate udp").contains("relay 127.0.0.1:50000  lifetime 600 s"));
    // The fake refuses CreatePermission: the FAIL line says which step and the code.
    let rt = line("FAIL  relay round trip udp");
    assert!(rt.contains("error 403") && rt.contains("CreatePermission"), "{rt}");
    // Refresh 0 is refused too: a warning, not a failure of its own.
    assert!(line("WARN  delete allocations udp").contains("403"));
    // The 403 to its own relay address is the peer policy's.
    assert!(line("FIX   relay-peer-forbidden").contains("127.0.0.1:50000"));
    assert_eq!(
        out.lines().next(),
        Some("VERDICT: relay unusable: the server refuses its own relay address 127.0.0.1:50000 as a peer (403)")
    );

    let o = with_password("wrong");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with("FAIL  allocate udp") && l.contains("error 401")),
        "{}",
        text(&o)
    );
    assert_line(&o, "FIX   credentials-rejected");

    // No credentials at all: the 401 says what to give.
    let o = probe(&args(&["--json", "--timeout", "2s", &url]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(codes(&o), ["credentials-missing"], "{}", text(&o));
    assert!(
        diagnosis(&o, "credentials-missing")["advice"]
            .as_str()
            .unwrap()
            .contains("--secret"),
        "{}",
        text(&o)
    );
}

#[test]
fn an_allocate_success_without_valid_integrity_or_mapped_address_fails() {
    let cases: [(Reply, &str); 3] = [
        // RFC 8489 §9.2.5 over UDP: discarded, retransmitted, and at the
        // timeout the integrity failure is what is reported.
        (
            |req| fake_turn(req, AllocateSuccess::Unsigned),
            "integrity check failed: the response has no MESSAGE-INTEGRITY",
        ),
        (
            |req| fake_turn(req, AllocateSuccess::WrongKey),
            "integrity check failed: the response's MESSAGE-INTEGRITY does not verify",
        ),
        (|req| fake_turn(req, AllocateSuccess::NoMapped), "no XOR-MAPPED-ADDRESS"),
    ];
    for (reply, why) in cases {
        let fake = EchoPeer::replying(false, reply);
        let o = probe_fake_text(fake.addr);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("FAIL  allocate udp") && l.contains(why)),
            "expected a FAIL allocate mentioning {why}\n{}",
            text(&o)
        );
    }
}

#[test]
fn a_tls_handshake_that_trickles_is_bounded_by_the_timeout() {
    // A "TLS server" that sends one byte of a record header every 300 ms:
    // every read succeeds, so only the deadline ends the handshake.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        let Ok((mut s, _)) = listener.accept() else { return };
        let end = Instant::now() + Duration::from_secs(8);
        for b in [0x16u8, 0x03, 0x03, 0x40, 0x00].iter().cycle() {
            if Instant::now() > end || std::io::Write::write_all(&mut s, &[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let start = Instant::now();
    let o = probe(&args(&["--timeout", "1s", "--insecure", &format!("turns:{addr}")]));
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(took < Duration::from_secs(4), "took {took:?}\n{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with("FAIL  binding tls") && l.contains("timed out")),
        "{}",
        text(&o)
    );
    thread.join().unwrap();
}

#[test]
fn a_reply_from_another_address_is_named_in_the_timeout() {
    // A "multihomed server" that answers from a socket other than the one asked.
    let asked = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (asked_addr, other_addr) = (asked.local_addr().unwrap(), other.local_addr().unwrap());
    asked.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let thread = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 1500];
        while !s2.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok((n, from)) = asked.recv_from(&mut buf) {
                let _ = other.send_to(&buf[..n], from);
            }
        }
    });
    let o = probe(&args(&["--timeout", "1s", &format!("stun:{asked_addr}")]));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.join().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with("FAIL  binding udp") && l.contains(&format!("a reply came from {other_addr}"))),
        "{}",
        text(&o)
    );
}

/// `ternd probe --json --timeout TIMEOUT --user USER --password PASSWORD URL`.
fn probe_as(user: &str, password: &str, timeout: &str, url: &str) -> Output {
    probe(&args(&[
        "--json",
        "--timeout",
        timeout,
        "--user",
        user,
        "--password",
        password,
        url,
    ]))
}

/// `probe_fake` with the text report.
fn probe_fake_text(fake: SocketAddr) -> Output {
    probe(&args(&[
        "--timeout",
        "2s",
        "--user",
        "fake-user",
        "--password",
        "fake-pass",
        &format!("turn:{fake}"),
    ]))
}

/// `probe_as` fake-user/fake-pass against a fake TURN server at `fake`.
fn probe_fake(fake: SocketAddr) -> Output {
    probe_as("fake-user", "fake-pass", "2s", &format!("turn:{fake}"))
}

fn verdict(o: &Output) -> String {
    json_doc(o)["verdict"].as_str().unwrap_or("").to_string()
}

fn diagnosis(o: &Output, code: &str) -> Value {
    json_doc(o)["diagnoses"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["code"] == code).cloned())
        .unwrap_or_else(|| panic!("a `{code}` diagnosis\n{}", text(o)))
}

#[test]
fn a_private_relay_address_explains_a_lost_round_trip() {
    let fake = EchoPeer::replying(false, |req| fake_turn(req, AllocateSuccess::PrivateRelay));
    let o = probe_fake(fake.addr);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(codes(&o), ["private-relay-address", "relay-data-lost"], "{}", text(&o));
    let d = diagnosis(&o, "private-relay-address");
    assert_eq!(d["severity"], "error");
    assert!(d["advice"].as_str().unwrap().contains("relay.external_ip"), "{d}");
    let lost = diagnosis(&o, "relay-data-lost");
    assert!(
        lost["advice"].as_str().unwrap().contains("relay.external_ip is unset"),
        "{lost}"
    );
    assert_eq!(
        verdict(&o),
        "relay unusable: the relay address 10.0.0.5:50000 is private"
    );
    // The failed check names the step, so scripts can tell too.
    let rt = checks(&json_lines(&o), "relay-round-trip")[0].clone();
    assert_eq!(
        (rt["step"].as_str(), rt["timeout"].as_bool()),
        (Some("A→B"), Some(true)),
        "{rt}"
    );
    // The text report: the verdict first, a FIX line per diagnosis.
    let o = probe_fake_text(fake.addr);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.lines().next(),
        Some("VERDICT: relay unusable: the relay address 10.0.0.5:50000 is private"),
        "{}",
        text(&o)
    );
    assert_line(&o, "FIX   private-relay-address");
}

#[test]
fn relayed_data_lost_blames_the_relay_port_firewall_or_a_missing_hairpin() {
    // Relay on the server's own address: nothing in between but a firewall.
    let fake = EchoPeer::replying(false, |req| fake_turn(req, AllocateSuccess::DropsData));
    let o = probe_fake(fake.addr);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(codes(&o), ["relay-data-lost"], "{}", text(&o));
    let d = diagnosis(&o, "relay-data-lost");
    assert!(
        d["summary"]
            .as_str()
            .unwrap()
            .contains("between two relay ports of 127.0.0.2"),
        "{d}"
    );
    assert!(d["advice"].as_str().unwrap().contains("relay.port_min"), "{d}");
    assert!(
        verdict(&o).starts_with("relay unusable: relayed data lost"),
        "{}",
        text(&o)
    );

    // Relay on another (public) address: the data loops through a NAT.
    let fake = EchoPeer::replying(false, |req| fake_turn(req, AllocateSuccess::Hairpin));
    let o = probe_fake(fake.addr);
    assert_eq!(codes(&o), ["relay-data-lost"], "{}", text(&o));
    let d = diagnosis(&o, "relay-data-lost");
    assert!(
        d["summary"]
            .as_str()
            .unwrap()
            .contains("198.51.100.7:50000 is not the server's"),
        "{d}"
    );
    assert!(d["advice"].as_str().unwrap().contains("hairpin"), "{d}");
}

#[test]
fn a_private_reflexive_address_is_a_warning_and_a_bare_address_a_hint() {
    let fake = EchoPeer::replying(false, |req| fake_turn(req, AllocateSuccess::PrivateReflexive));
    // host:port without a scheme: probed as stun:, said so.
    let o = probe(&args(&["--json", "--timeout", "2s", &fake.addr.to_string()]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        codes(&o),
        ["private-reflexive-address", "url-without-scheme"],
        "{}",
        text(&o)
    );
    assert_eq!(verdict(&o), "STUN works over udp; but: private-reflexive-address");
    let hint = diagnosis(&o, "url-without-scheme");
    assert_eq!(hint["severity"], "hint");
    assert!(
        hint["advice"]
            .as_str()
            .unwrap()
            .contains(&format!("did you mean stun:{}", fake.addr)),
        "{hint}"
    );
    assert!(
        diagnosis(&o, "private-reflexive-address")["summary"]
            .as_str()
            .unwrap()
            .contains("172.17.0.1:40000"),
        "{}",
        text(&o)
    );
}

/// A fake server on `port` of 127.0.0.1: UDP bound but silent; TCP (when
/// `tcp`) answering each Binding like the fake TURN server. Stops when dropped.
struct SilentUdp {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _udp: UdpSocket,
}

impl SilentUdp {
    fn start(tcp: bool) -> SilentUdp {
        let port = coturn::free_port();
        let udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        let addr = udp.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let listener = tcp.then(|| std::net::TcpListener::bind(addr).unwrap());
        let thread = std::thread::spawn(move || {
            let Some(listener) = listener else { return };
            listener.set_nonblocking(true).unwrap();
            let end = Instant::now() + Duration::from_secs(20);
            while !s2.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                use std::io::{Read, Write};
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut head = [0u8; 20];
                if s.read_exact(&mut head).is_err() {
                    continue;
                }
                let mut req = head.to_vec();
                req.resize(20 + u16::from_be_bytes([head[2], head[3]]) as usize, 0);
                if s.read_exact(&mut req[20..]).is_ok() {
                    let _ = s.write_all(&fake_turn(&req, AllocateSuccess::Signed));
                }
            }
        });
        SilentUdp {
            addr,
            stop,
            thread: Some(thread),
            _udp: udp,
        }
    }
}

impl Drop for SilentUdp {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn udp_silent_but_tcp_answering_suggests_tcp_and_skips_the_allocate() {
    let server = SilentUdp::start(true);
    let o = probe_as("u", "p", "1s", &format!("turn:{}", server.addr));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let lines = json_lines(&o);
    // Binding dead → no Allocate sent, and no NAT mapping test.
    assert_eq!(checks(&lines, "binding")[0]["dead"], true, "{}", text(&o));
    assert_eq!(checks(&lines, "allocate")[0]["status"], "skip", "{}", text(&o));
    assert_eq!(checks(&lines, "nat-mapping")[0]["status"], "skip", "{}", text(&o));
    let fallback = checks(&lines, "fallback-binding")[0].clone();
    assert_eq!(fallback["status"], "info", "{fallback}");
    assert_eq!(fallback["reflexive"], "127.0.0.1:40000", "{fallback}");
    assert_eq!(codes(&o), ["udp-blocked"], "{}", text(&o));
    let d = diagnosis(&o, "udp-blocked");
    let advice = d["advice"].as_str().unwrap();
    assert!(
        advice.contains(&format!("turn:{}?transport=tcp", server.addr)) && advice.contains("turns:127.0.0.1:5349"),
        "{d}"
    );
    assert!(verdict(&o).contains("UDP to"), "{}", text(&o));
}

#[test]
fn nothing_answering_is_one_diagnosis_and_an_expired_rest_username_is_flagged_before_sending() {
    let server = SilentUdp::start(false);
    let o = probe_as("1600000000:alice", "p", "1s", &format!("turn:{}", server.addr));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // Nothing was sent with the credentials (the Allocate was skipped), yet the expiry is flagged.
    assert_eq!(codes(&o), ["no-answer", "rest-username-expired"], "{}", text(&o));
    assert_eq!(
        verdict(&o),
        format!("server unreachable: nothing answers on {} (udp, tcp)", server.addr)
    );
    let d = diagnosis(&o, "rest-username-expired");
    assert!(d["summary"].as_str().unwrap().contains("2020-09-13T12:26:40Z"), "{d}");

    // Against a server that answers: its 401 is explained by the expiry.
    let fake = EchoPeer::replying(false, stale_nonce_server);
    let o = probe_as("1600000000:alice", "p", "2s", &format!("turn:{}", fake.addr));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(codes(&o), ["rest-username-expired"], "{}", text(&o));
    assert!(
        verdict(&o).starts_with("relay unusable: the REST username `1600000000:alice` expired"),
        "{}",
        text(&o)
    );
}
