//! RFC 5780 NAT behaviour discovery on loopback (issue 15 item 3): ternd with
//! `listen.alternate` against coturn's `turnutils_natdiscovery`, an
//! independent client, and CHANGE-REQUEST answers checked with the
//! webrtc-rs `stun` crate and real sockets.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::*;
use stun::attributes::AttrType;
use stun::message::{Getter, Message, Setter};
use ternd::Running;

const CHANGE_REQUEST: AttrType = AttrType(0x0003);
const RESPONSE_ORIGIN: AttrType = AttrType(0x802B);
const OTHER_ADDRESS: AttrType = AttrType(0x802C);

/// ternd with the primary UDP address 127.0.0.1:P and the alternate one
/// 127.0.0.2:Q. The ports are found free on 127.0.0.1 and tried until all
/// four addresses bind (bounded).
fn start_rfc5780() -> (Running, SocketAddr, SocketAddr) {
    for _ in 0..10 {
        let p = coturn::free_port();
        let q = coturn::free_port();
        if p == q {
            continue;
        }
        let primary: SocketAddr = format!("127.0.0.1:{p}").parse().unwrap();
        let alternate: SocketAddr = format!("127.0.0.2:{q}").parse().unwrap();
        let config = test_config(
            None,
            &[
                ("listen.udp", &primary.to_string()),
                ("listen.alternate", &alternate.to_string()),
            ],
        );
        if let Ok(running) = ternd::start(&config) {
            return (running, primary, alternate);
        }
    }
    panic!("no two ports free on 127.0.0.1 and 127.0.0.2 in 10 tries");
}

#[test]
fn turnutils_natdiscovery_finds_no_nat_on_loopback() {
    let Some(bin) = tool("turnutils_natdiscovery") else {
        return;
    };
    let (server, primary, _) = start_rfc5780();
    let out = Command::new(&bin)
        .args([
            "-m",
            "-f",
            "-p",
            &primary.port().to_string(),
            "-L",
            "127.0.0.1",
            "127.0.0.1",
        ])
        .output()
        .expect("run turnutils_natdiscovery");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "turnutils_natdiscovery failed: {stdout}");
    // RFC 5780 §4.3 and §4.4 on loopback: nothing translates or filters.
    assert!(!stdout.contains("timeout"), "{stdout}");
    assert!(stdout.contains("No NAT! (Endpoint Independent Mapping)"), "{stdout}");
    assert!(stdout.contains("NAT with Endpoint Independent Filtering!"), "{stdout}");
    assert!(stdout.contains("Response origin: : 127.0.0.2:"), "{stdout}");
    let stats = server.shutdown().unwrap();
    assert!(stats.binding_success() >= 4, "ternd answered every test");
}

/// Sends a Binding request with CHANGE-REQUEST `flags` from `sock` to `to`
/// and returns the decoded answer and the address it came from.
fn change_request(sock: &UdpSocket, to: SocketAddr, flags: u32) -> (Message, SocketAddr) {
    let req = request_with_change(flags);
    sock.send_to(&req.raw, to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut buf).expect("an answer within 5 s");
    let mut m = Message::new();
    m.raw = buf[..n].to_vec();
    m.decode().expect("the stun crate decodes the answer");
    assert_eq!(m.transaction_id, req.transaction_id);
    (m, from)
}

/// A Binding request with CHANGE-REQUEST `flags` and FINGERPRINT, built by
/// the `stun` crate.
fn request_with_change(flags: u32) -> Message {
    let mut m = Message::new();
    m.build(&[
        Box::new(stun::agent::TransactionId::new()),
        Box::new(stun::message::BINDING_REQUEST),
    ])
    .unwrap();
    m.add(CHANGE_REQUEST, &flags.to_be_bytes());
    stun::fingerprint::FINGERPRINT.add_to(&mut m).unwrap();
    m
}

/// MAPPED-ADDRESS-style value (RFC 8489 §14.1) of attribute `t`.
fn plain_address(m: &Message, t: AttrType) -> SocketAddr {
    let v = m.get(t).unwrap_or_else(|_| panic!("{t} present"));
    assert_eq!((v[1], v.len()), (1, 8), "an IPv4 address");
    let port = u16::from_be_bytes([v[2], v[3]]);
    SocketAddr::new(std::net::Ipv4Addr::new(v[4], v[5], v[6], v[7]).into(), port)
}

// RFC 5780 §7.2/§7.3: the answer leaves from the address CHANGE-REQUEST
// asks for, and RESPONSE-ORIGIN names it; OTHER-ADDRESS is the alternate.
#[test]
fn change_request_answers_come_from_the_asked_address() {
    let (server, primary, alternate) = start_rfc5780();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (p, q) = (primary.port(), alternate.port());
    for (flags, expected) in [
        (0, format!("127.0.0.1:{p}")),
        (4, format!("127.0.0.2:{p}")),
        (2, format!("127.0.0.1:{q}")),
        (6, format!("127.0.0.2:{q}")),
    ] {
        let expected: SocketAddr = expected.parse().unwrap();
        let (m, from) = change_request(&sock, primary, flags);
        assert_eq!(from, expected, "flags {flags}");
        assert_eq!(plain_address(&m, RESPONSE_ORIGIN), expected, "flags {flags}");
        assert_eq!(plain_address(&m, OTHER_ADDRESS), alternate, "flags {flags}");
    }
    // Over TCP, CHANGE-REQUEST stays unknown: 420 (RFC 8489 §6.3.1).
    let tcp = server.bound().tcp[0];
    let mut stream = std::net::TcpStream::connect(tcp).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = request_with_change(6);
    std::io::Write::write_all(&mut stream, &req.raw).unwrap();
    let mut m = Message::new();
    m.raw = read_stun(&mut stream);
    m.decode().unwrap();
    let mut code = stun::error_code::ErrorCodeAttribute::default();
    code.get_from(&m).expect("an error response");
    assert_eq!(code.code.0, 420);
    server.shutdown().unwrap();
}

// `ternd probe` (the real binary) against the RFC 5780 server, with no
// --alt-server/--alt-port: OTHER-ADDRESS gives the mapping test its second
// address and port (§4.3), CHANGE-REQUEST drives the filtering test (§4.4);
// on loopback both are endpoint-independent.
#[test]
fn probe_reports_mapping_and_filtering_from_other_address() {
    let (server, primary, alternate) = start_rfc5780();
    let o = process::output(
        Command::new(env!("CARGO_BIN_EXE_ternd")).args(["probe", "--json", &format!("stun:{primary}")]),
        Duration::from_secs(30),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let check = |name: &str| {
        doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {out}"))
            .clone()
    };
    let filtering = check("nat-filtering");
    assert_eq!(filtering["verdict"], "endpoint-independent", "{out}");
    assert_eq!(filtering["other_address"], alternate.to_string(), "{out}");
    let mapping = check("nat-mapping");
    assert_eq!(mapping["verdict"], "endpoint-independent", "{out}");
    assert_eq!(mapping["mappings"].as_array().map(Vec::len), Some(3), "{out}");
    assert!(o.status.success(), "{out}");
    server.shutdown().unwrap();
}

/// The verdicts `turnutils_natdiscovery -m -f` printed: (mapping,
/// filtering) in RFC 4787 words, "?" where it printed none.
fn natdiscovery_verdicts(stdout: &str) -> (&'static str, &'static str) {
    let text = stdout.to_lowercase();
    let pick = |what: &str| {
        if text.contains(&format!("endpoint independent {what}")) {
            "endpoint-independent"
        } else if text.contains(&format!("address and port dependent {what}")) {
            "address-and-port-dependent"
        } else if text.contains(&format!("address dependent {what}")) {
            "address-dependent"
        } else {
            "?"
        }
    };
    (pick("mapping"), pick("filtering"))
}

// Behind every NAT of the lab, `ternd probe` and coturn's
// `turnutils_natdiscovery` (an independent RFC 5780 client) agree on the
// mapping (§4.3) and filtering (§4.4), and both match the routers' own
// configuration (common::lab::Nat).
#[test]
fn turnutils_natdiscovery_and_probe_agree_behind_each_nat() {
    use common::lab::{prerequisites, Nat, UDP_NATS};
    use common::lab_agent::{filtering_verdict, mapping_verdict, probe};
    use common::lab_ternd::{verified_lab_with_ternd, PUBLIC};
    if !prerequisites() {
        return;
    }
    let Some(bin) = tool("turnutils_natdiscovery") else {
        return;
    };
    let (lab, _ternd) = verified_lab_with_ternd(&UDP_NATS, false);
    for c in lab.clients.clone() {
        let want = match c.nat {
            Nat::FullCone => ("endpoint-independent", "endpoint-independent"),
            Nat::RestrictedCone => ("endpoint-independent", "address-dependent"),
            Nat::PortRestrictedCone => ("endpoint-independent", "address-and-port-dependent"),
            _ => ("address-and-port-dependent", "address-and-port-dependent"),
        };
        // The order matters: the lab's address-restricted router lets in
        // every remote IP its client wrote to, from any local port, for 5
        // minutes (deploy/lab/ternd-lab: the `contacted` set), so the
        // filtering tests run before anything writes to the alternate IP:
        // natdiscovery -f, then the probe (filtering before its mapping
        // test), then natdiscovery -m.
        let natdiscovery = |test: &str| {
            let o = process::output(
                lab.command(&c.name, &bin).args([test, "-p", "3478", PUBLIC]),
                Duration::from_secs(60),
            );
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let filtering = natdiscovery("-f");
        let p = probe(&lab, &c.name);
        let ours = (mapping_verdict(&p), filtering_verdict(&p));
        assert_eq!((ours.0.as_str(), ours.1.as_str()), want, "{}: {}", c.name, p.report());
        let mapping = natdiscovery("-m");
        let stdout = format!("{mapping}{filtering}");
        assert_eq!(natdiscovery_verdicts(&stdout), want, "{}: {stdout}", c.name);
    }
}
