//! The real `ternd` binary serving inside a lab: in the "internet" node on
//! 203.0.113.1 and 203.0.113.2, or (server-NAT labs) in node `srv` on
//! 10.99.0.2/10.99.0.3 behind a 1:1 NAT with `relay.external_ip` set. Its
//! config, its TLS certificate (signed by a throwaway CA that browsers can be
//! told to trust), readiness, and its Prometheus counters.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::lab::Lab;

/// The public addresses of ternd in every lab.
pub const PUBLIC: &str = "203.0.113.1";
pub const PUBLIC_ALT: &str = "203.0.113.2";
/// The API key, user and password in deploy/lab/ternd-lab*.toml.
pub const API_KEY: &str = "lab-key-0123456789";
pub const USER: &str = "lab";
pub const PASSWORD: &str = "lab-password";

/// A CA and a server certificate for ternd's lab addresses, in `dir`.
pub struct LabCert {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl LabCert {
    pub fn new(dir: &std::path::Path) -> LabCert {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "ternd lab CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let names = [PUBLIC, PUBLIC_ALT, "10.99.0.2", "localhost"];
        let mut leaf = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, PUBLIC);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
        let (ca_file, cert_file, key_file) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        LabCert {
            ca_file,
            cert_file,
            key_file,
        }
    }
}

/// ternd running in a lab. The process itself belongs to the [`Lab`], which
/// ends it on drop.
pub struct LabTernd {
    pub dir: PathBuf,
    pub cert: LabCert,
    /// The node ternd runs in (`inet` or `srv`).
    pub node: &'static str,
    /// The address ternd binds (203.0.113.1, or 10.99.0.2 behind the 1:1 NAT).
    pub bind: &'static str,
    pub log: PathBuf,
}

/// A temporary directory, removed by the owner.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("ternd-lab-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The shipped lab config for this topology (deploy/lab/), as users run it.
pub fn config_file(server_nat: bool) -> PathBuf {
    let name = if server_nat {
        "ternd-lab-server-nat.toml"
    } else {
        "ternd-lab.toml"
    };
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/lab")
        .join(name)
}

/// A lab whose routers were checked (see `lab_verify`), with ternd serving
/// in it.
pub fn verified_lab_with_ternd(clients: &[(&str, super::lab::Nat)], server_nat: bool) -> (Lab, LabTernd) {
    let mut lab = Lab::up(clients, server_nat);
    super::lab_verify::verify_routers(&lab);
    let ternd = LabTernd::start(&mut lab);
    (lab, ternd)
}

impl LabTernd {
    /// Starts ternd in the lab and waits (at most 30 s: CI machines are busy) until /readyz answers 200.
    pub fn start(lab: &mut Lab) -> LabTernd {
        let dir = temp_dir(&lab.prefix);
        let cert = LabCert::new(&dir);
        let log = dir.join("ternd.log");
        let (node, bind) = if lab.server_nat {
            ("srv", "10.99.0.2")
        } else {
            ("inet", PUBLIC)
        };
        let mut cmd = lab.command(node, env!("CARGO_BIN_EXE_ternd"));
        // The shipped config plus TLS on 443, which the UDP-blocked firewall lets through,
        // and DTLS on the same port number (RFC 7350 §4.2: `turns:…:443?transport=udp`).
        cmd.arg("serve").arg("--config").arg(config_file(lab.server_nat));
        cmd.args(["--set", &format!("listen.tls={bind}:443")]);
        cmd.args(["--set", &format!("listen.dtls={bind}:443")]);
        cmd.args(["--set", &format!("tls.cert_file={}", cert.cert_file.display())]);
        cmd.args(["--set", &format!("tls.key_file={}", cert.key_file.display())]);
        cmd.stdout(std::fs::File::create(dir.join("ternd.out")).unwrap());
        cmd.stderr(std::fs::File::create(&log).unwrap());
        lab.spawn("ternd", cmd);
        let t = LabTernd {
            dir,
            cert,
            node,
            bind,
            log,
        };
        let start = Instant::now();
        loop {
            if let Some(status) = lab.exited("ternd") {
                panic!("ternd exited ({status}):\n{}", t.log_text());
            }
            if t.get(lab, "/readyz").is_some_and(|(code, _)| code == 200) {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "ternd not ready within 30 s:\n{}",
                t.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The HTTP address in ternd's own namespace.
    pub fn http_addr(&self) -> SocketAddr {
        format!("{}:8080", self.bind).parse().unwrap()
    }

    /// `GET path` on ternd's HTTP listener, from ternd's node: (status, body).
    pub fn get(&self, lab: &Lab, path: &str) -> Option<(u16, String)> {
        self.get_with(lab, path, "")
    }

    /// `GET path` with extra header lines (each ending in `\r\n`).
    pub fn get_with(&self, lab: &Lab, path: &str, headers: &str) -> Option<(u16, String)> {
        let addr = self.http_addr();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
        lab.in_node(self.node, move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(req.as_bytes()).ok()?;
            let mut raw = String::new();
            s.read_to_string(&mut raw).ok()?;
            let (head, body) = raw.split_once("\r\n\r\n")?;
            let code = head.split(' ').nth(1)?.parse().ok()?;
            Some((code, body.to_string()))
        })
    }

    /// Relayed payload bytes so far: (to peers, to clients), from /metrics.
    pub fn relayed_bytes(&self, lab: &Lab) -> (u64, u64) {
        let value =
            |direction: &str| self.metric(lab, &format!("ternd_relayed_bytes_total{{direction=\"{direction}\"}}"));
        (value("to_peer"), value("to_client"))
    }

    /// Asserts that ternd relayed more bytes both ways than `before` (from
    /// [`LabTernd::relayed_bytes`]) and returns the new counts.
    pub fn assert_relayed_since(&self, lab: &Lab, before: (u64, u64), what: &str) -> (u64, u64) {
        let after = self.relayed_bytes(lab);
        assert!(
            after.0 > before.0 && after.1 > before.1,
            "ternd relayed {what} both ways: {before:?} -> {after:?}"
        );
        after
    }

    /// The value of the sample `name` (with its labels, if any) in /metrics.
    pub fn metric(&self, lab: &Lab, name: &str) -> u64 {
        let (code, body) = self.get(lab, "/metrics").expect("/metrics answers");
        assert_eq!(code, 200, "/metrics: {body}");
        let key = format!("{name} ");
        body.lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    /// The transports of the allocations ternd logged as created on the
    /// relayed address `relay` (IP:PORT), from its info log.
    pub fn allocation_transports(&self, relay: &str) -> Vec<String> {
        let relays = format!("relays=[{relay}]");
        self.log_text()
            .lines()
            .filter(|l| l.contains("allocation created") && l.contains(&relays))
            .filter_map(|l| l.split("transport=\"").nth(1)?.split('"').next().map(str::to_string))
            .collect()
    }

    /// `/api/ice-servers` with the lab API key: the TURN URLs it hands out.
    pub fn ice_server_urls(&self, lab: &Lab) -> Vec<String> {
        let auth = format!("Authorization: Bearer {API_KEY}\r\n");
        let (code, body) = self
            .get_with(lab, "/api/ice-servers", &auth)
            .expect("/api/ice-servers answers");
        assert_eq!(code, 200, "/api/ice-servers: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let servers = v["iceServers"].as_array().cloned().unwrap_or_default();
        servers
            .iter()
            .flat_map(|s| s["urls"].as_array().cloned().unwrap_or_default())
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect()
    }

    /// The sample page URL with the API key, as a client in the lab opens it.
    pub fn page_url(&self, query: &str) -> String {
        format!("http://{PUBLIC}:8080/?key={API_KEY}{query}")
    }
}

impl Drop for LabTernd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
