//! Shared helpers for end-to-end tests: an in-process ternd on port 0, a
//! throwaway TLS certificate, and STUN messages built and read with the
//! independent webrtc-rs `stun` crate (so a bug shared by our own encoder and
//! decoder cannot pass).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use stun::agent::TransactionId;
use stun::message::{Getter, Message, BINDING_REQUEST, BINDING_SUCCESS};
use stun::xoraddr::XorMappedAddress;
use ternd::config::{Config, Sources};
use ternd::Running;

/// A self-signed certificate for localhost, 127.0.0.1 and ::1, written to a
/// fresh directory.
pub struct TestCert {
    pub dir: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_der: Vec<u8>,
}

/// A new empty directory under the system's temp dir, named `tag-PID-NANOS`.
pub fn fresh_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl TestCert {
    pub fn new() -> TestCert {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        let ck = rcgen::generate_simple_self_signed(names).expect("generate a certificate");
        let dir = fresh_dir("ternd-test");
        let cert_file = dir.join("cert.pem");
        let key_file = dir.join("key.pem");
        std::fs::write(&cert_file, ck.cert.pem()).unwrap();
        std::fs::write(&key_file, ck.key_pair.serialize_pem()).unwrap();
        TestCert {
            dir,
            cert_file,
            key_file,
            cert_der: ck.cert.der().to_vec(),
        }
    }

    /// A TLS client config that trusts only this certificate.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(self.cert_der.clone()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Config for a test server on loopback port 0 (IPv4 and IPv6, UDP, TCP and,
/// with a certificate, TLS) with two shards, plus any extra overrides.
pub fn test_config(cert: Option<&TestCert>, extra: &[(&str, &str)]) -> Config {
    let mut overrides: Vec<(String, String)> = vec![
        ("listen.udp".into(), "127.0.0.1:0,[::1]:0".into()),
        ("listen.tcp".into(), "127.0.0.1:0,[::1]:0".into()),
        ("server.shards".into(), "2".into()),
        ("log.level".into(), "warn".into()),
        // HTTP only where a test asks for it (on port 0).
        ("http.listen".into(), "".into()),
        // Small enough to fit a test machine's fd limit beside the relay
        // range, so src/fd_limit.rs leaves every configured budget as set.
        ("stream.max_connections".into(), "2000".into()),
    ];
    if let Some(c) = cert {
        overrides.push(("listen.tls".into(), "127.0.0.1:0,[::1]:0".into()));
        overrides.push(("tls.cert_file".into(), c.cert_file.display().to_string()));
        overrides.push(("tls.key_file".into(), c.key_file.display().to_string()));
    }
    for (k, v) in extra {
        overrides.push((k.to_string(), v.to_string()));
    }
    Config::load(&Sources {
        overrides,
        ..Sources::default()
    })
    .expect("test config is valid")
}

pub fn start(config: &Config) -> Running {
    ternd::start(config).expect("server starts")
}

/// A Binding request built by the webrtc-rs `stun` crate, with FINGERPRINT.
pub fn binding_request() -> Message {
    let mut m = Message::new();
    m.build(&[
        Box::new(TransactionId::new()),
        Box::new(BINDING_REQUEST),
        Box::new(stun::fingerprint::FINGERPRINT),
    ])
    .unwrap();
    m
}

/// Decodes a response with the `stun` crate, checks that it is a Binding
/// success for `request`, verifies its FINGERPRINT and returns XOR-MAPPED-ADDRESS.
pub fn mapped_address(request: &Message, response: &[u8]) -> SocketAddr {
    let mut m = Message::new();
    m.raw = response.to_vec();
    m.decode().expect("the stun crate decodes the response");
    assert_eq!(m.typ, BINDING_SUCCESS, "a Binding success response");
    assert_eq!(m.transaction_id, request.transaction_id, "transaction id echoed");
    stun::fingerprint::FINGERPRINT.check(&m).expect("FINGERPRINT verifies");
    let mut xor = XorMappedAddress::default();
    xor.get_from(&m).expect("XOR-MAPPED-ADDRESS present");
    SocketAddr::new(xor.ip, xor.port)
}

/// Sends one Binding request over UDP from a fresh socket and returns
/// (local address, XOR-MAPPED-ADDRESS).
pub fn udp_binding(server: SocketAddr) -> (SocketAddr, SocketAddr) {
    let bind: SocketAddr = if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }
        .parse()
        .unwrap();
    let sock = std::net::UdpSocket::bind(bind).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let req = binding_request();
    sock.send_to(&req.raw, server).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut buf).expect("a reply within 5 s");
    assert_eq!(from, server, "reply comes from the address the request went to");
    (sock.local_addr().unwrap(), mapped_address(&req, &buf[..n]))
}

/// Reads exactly one STUN message (header-framed) from a blocking stream.
/// Waits (at most `within`) until `done()`.
pub fn wait_for(within: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + within;
    while std::time::Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

/// One STUN Binding over a fresh TCP connection to `addr`: the
/// XOR-MAPPED-ADDRESS of a well-formed success (checked by the `stun`
/// crate), or None when the server refuses or drops the connection.
pub fn tcp_binding(addr: SocketAddr) -> Option<SocketAddr> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    let req = binding_request();
    s.write_all(&req.raw).ok()?;
    let mut head = [0u8; 20];
    std::io::Read::read_exact(&mut s, &mut head).ok()?;
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let mut reply = head.to_vec();
    reply.resize(20 + len, 0);
    std::io::Read::read_exact(&mut s, &mut reply[20..]).ok()?;
    Some(mapped_address(&req, &reply))
}

pub fn read_stun<R: std::io::Read>(r: &mut R) -> Vec<u8> {
    let mut head = [0u8; 20];
    r.read_exact(&mut head).expect("a STUN header");
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let mut msg = head.to_vec();
    msg.resize(20 + len, 0);
    r.read_exact(&mut msg[20..]).expect("the STUN body");
    msg
}

pub mod agent_bin;
pub mod binary;
pub mod chromium;
pub mod cluster;
pub mod coturn;
pub mod dtls;
pub mod http;
pub mod lab;
pub mod lab_agent;
pub mod lab_chromium;
pub mod lab_ternd;
pub mod lab_verify;
pub mod netns;
pub mod process;
pub mod raw_ip;
pub mod redis_server;
pub mod turn;
pub mod ws;
pub mod xdp_lab;
pub mod xdp_probe;

/// A UDP peer on loopback that echoes every datagram back to its sender, on
/// its own thread, until the returned guard is dropped. It stays off the
/// relay addresses' other ports, which peer policy refuses whatever
/// `peers.allow` says: on 127.0.0.2 for IPv4 (turn_config relays from
/// 127.0.0.1), and for IPv6, where ::1 is the only loopback address, on a
/// port at the top of turn_config's relay range (a relay that picks the same
/// port just tries another).
pub struct EchoPeer {
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoPeer {
    pub fn start(v6: bool) -> EchoPeer {
        EchoPeer::replying(v6, |datagram| datagram.to_vec())
    }

    /// A peer that answers every datagram with `reply(datagram)` instead
    /// (a fake server sending crafted replies).
    pub fn replying(v6: bool, reply: fn(&[u8]) -> Vec<u8>) -> EchoPeer {
        let sock = if v6 {
            (0..64u16)
                .find_map(|i| std::net::UdpSocket::bind(("::1", 65535 - i)).ok())
                .expect("a free port at the top of the relay range")
        } else {
            std::net::UdpSocket::bind("127.0.0.2:0").unwrap()
        };
        sock.set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&reply(&buf[..n]), from);
                }
            }
        });
        EchoPeer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TURN test config: relays on loopback (v4 and v6) and loopback peers
/// allowed (the default policy would refuse them), a static user and a
/// known REST secret.
pub const TEST_SECRET: &str = "test-secret-0123456789abcdef";

pub fn turn_config(cert: Option<&TestCert>, extra: &[(&str, &str)]) -> Config {
    let mut all: Vec<(&str, &str)> = vec![
        ("relay.ipv4", "127.0.0.1"),
        ("relay.ipv6", "::1"),
        // Outside the kernel's ephemeral range (32768-60999), so relay ports
        // never collide with test sockets and the own-address rule is exact.
        ("relay.port_min", "61000"),
        ("relay.port_max", "65535"),
        ("peers.allow", "127.0.0.0/8,::1/128"),
        ("turn.secrets", TEST_SECRET),
        ("turn.users.alice", "alice-password"),
    ];
    all.extend_from_slice(extra);
    test_config(cert, &all)
}

/// A candidate (JSON with `address` and `port`, from a browser or
/// ternd-ice-agent) is on ternd's relay address and a port of turn_config's
/// relay range.
pub fn assert_on_relay(c: &serde_json::Value, relay_ip: std::net::IpAddr) {
    assert_eq!(c["address"].as_str(), Some(relay_ip.to_string().as_str()), "{c}");
    let port = c["port"].as_u64().unwrap();
    assert!(
        (61000..=65535).contains(&port),
        "relay port from relay.port_min..=port_max: {c}"
    );
}

/// REST credentials for `user` valid for an hour, from TEST_SECRET.
pub fn rest_credentials(user: &str) -> (String, String) {
    rest_credentials_from(TEST_SECRET, user)
}

/// REST credentials for `user` valid for an hour, from `secret`.
pub fn rest_credentials_from(secret: &str, user: &str) -> (String, String) {
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    proto::auth::rest_credentials(proto::auth::RestHmac::Sha1, secret.as_bytes(), user, expiry)
}

/// The path of a coturn tool, or None when it is missing outside CI (under
/// CI=true a missing tool fails the test: tests/run.sh installs it).
pub fn tool(name: &str) -> Option<String> {
    let path = format!("/usr/bin/{name}");
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    missing(&format!("{name} (the Debian package `coturn`)"));
    None
}

/// A test cannot run for want of `what`: under CI (any CI variable) that is
/// a failure, since tests/run.sh installs everything; elsewhere the test is
/// reported SKIPPED and passes.
pub fn missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("missing {what}: tests/run.sh installs it (as root)");
    }
    eprintln!("SKIPPED: missing {what}; run tests/run.sh to install it");
}

/// Runs a future to completion on a current-thread runtime (the async side
/// of a blocking test).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The number after the last `key` in a tool's output (`key=123` or
/// `key 123`), e.g. turnutils_uclient's `tot_send_msgs=`.
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().rev().find(|l| l.contains(key))?;
    let rest = &line[line.find(key)? + key.len()..];
    rest.trim_start_matches(['=', ' '])
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
