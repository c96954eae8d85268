//! The NAT lab itself (deploy/lab/ternd-lab): every router type behaves as
//! promised (checked with plain sockets), the lab is gone after teardown and
//! after its owner dies, ternd serving in the lab sees each client at its
//! router's public address, and the script's own `serve` and `verify` (the
//! path users take) pass. `up` and `down` touch only the namespaces the lab made, and
//! an `up` ended by SIGTERM removes what it built. Needs root, ip and nft
//! (tests/run.sh installs them); otherwise SKIPPED, or a failure under CI=true.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::lab::{prerequisites, Lab, Nat};
use common::lab_ternd::verified_lab_with_ternd;
use common::lab_verify::verify_routers;

const ALL: [(&str, Nat); 5] = [
    ("full", Nat::FullCone),
    ("restricted", Nat::RestrictedCone),
    ("port", Nat::PortRestrictedCone),
    ("symmetric", Nat::Symmetric),
    ("blocked", Nat::UdpBlocked),
];

fn netns_names() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

#[test]
fn every_router_behaves_as_its_nat_type_and_teardown_removes_the_lab() {
    if !prerequisites() {
        return;
    }
    let lab = Lab::up(&ALL, false);
    let prefix = format!("{}-", lab.prefix);
    assert_eq!(
        netns_names().iter().filter(|n| n.starts_with(&prefix)).count(),
        1 + 2 * ALL.len(),
        "inet plus a router and a client per NAT"
    );
    verify_routers(&lab);
    drop(lab);
    assert!(
        !netns_names().iter().any(|n| n.starts_with(&prefix)),
        "no namespace of {prefix} is left: {:?}",
        netns_names()
    );
}

/// A STUN Binding from `sock` to `server` (webrtc-rs `stun` encodes and decodes).
fn binding(sock: &UdpSocket, server: SocketAddr) -> Option<SocketAddr> {
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    for _ in 0..3 {
        let req = common::binding_request();
        sock.send_to(&req.raw, server).unwrap();
        let mut buf = [0u8; 1500];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Some(common::mapped_address(&req, &buf[..n]));
        }
    }
    None
}

#[test]
fn ternd_in_the_lab_sees_each_client_at_its_routers_address() {
    if !prerequisites() {
        return;
    }
    let (lab, ternd) = verified_lab_with_ternd(&ALL, false);
    let (a, b): (SocketAddr, SocketAddr) = ("203.0.113.1:3478".parse().unwrap(), "203.0.113.2:3479".parse().unwrap());
    for c in lab.clients.clone() {
        let sock = lab.in_node(&c.name, || UdpSocket::bind("0.0.0.0:0").unwrap());
        let first = binding(&sock, a);
        if c.nat == Nat::UdpBlocked {
            assert_eq!(first, None, "{}: UDP is blocked", c.name);
            continue;
        }
        let first = first.unwrap_or_else(|| panic!("{}: no Binding answer\n{}", c.name, ternd.log_text()));
        let second = binding(&sock, b).expect("a Binding answer from the other address and port");
        assert_eq!(first.ip(), std::net::IpAddr::V4(c.public), "{}", c.name);
        if c.nat == Nat::Symmetric {
            assert_ne!(first, second, "{}: a new mapping per destination", c.name);
        } else {
            assert_eq!(first, second, "{}: one mapping for every destination", c.name);
        }
    }
}

#[test]
fn the_scripts_serve_and_verify_check_every_router_with_ternd_probe() {
    if !prerequisites() {
        return;
    }
    let lab = Lab::up(&ALL, false);
    let ternd = env!("CARGO_BIN_EXE_ternd");
    // No ternd yet: verify fails on its positive control (a blocked client alone
    // would otherwise pass, as nothing answers it).
    let out = lab.script(&["verify", ternd]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "verify without ternd:\n{text}");
    assert!(text.starts_with("FAIL ternd not answering"), "{text}");
    let out = lab.script(&["serve", ternd]);
    assert!(out.status.success(), "serve: {}", String::from_utf8_lossy(&out.stderr));
    // The recorded pid is ternd's own, not a wrapper's.
    let pid = std::fs::read_to_string(format!("/run/ternd-lab/{}/ternd.pid", lab.prefix)).unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", pid.trim())).unwrap();
    assert_eq!(comm.trim(), "ternd", "ternd.pid {pid}");
    let out = lab.script(&["verify", ternd]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "ok   full (full): mapping endpoint-independent, public 198.51.100.11",
        "ok   restricted (restricted): mapping endpoint-independent, public 198.51.100.12",
        "ok   port (port): mapping endpoint-independent, public 198.51.100.13",
        "ok   symmetric (symmetric): mapping address-and-port-dependent, public 198.51.100.14",
        "ok   blocked (udp-blocked): UDP blocked",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
    }
}

#[test]
fn a_lab_whose_owner_died_is_swept() {
    if !prerequisites() {
        return;
    }
    // The owner is a child that dies, as a killed test process would.
    let mut owner = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let prefix = format!("tl{:x}dead", std::process::id());
    let up = common::lab::script_command(&prefix, owner.id())
        .args(["up", "only=port"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let ours = || {
        netns_names()
            .into_iter()
            .filter(|n| n.starts_with(&format!("{prefix}-")))
            .count()
    };
    assert_eq!(ours(), 3, "inet, r-only, only");
    // Alive owner: sweep keeps the lab.
    let sweep = || {
        common::lab::script_command("unused", std::process::id())
            .arg("sweep")
            .output()
            .unwrap()
    };
    assert!(sweep().status.success());
    assert_eq!(ours(), 3, "a live owner's lab stays");
    // A process left running inside the lab, as a killed test leaves ternd or a browser.
    let mut inside = std::process::Command::new("ip")
        .args(["netns", "exec", &format!("{prefix}-only"), "sleep", "30"])
        .spawn()
        .unwrap();
    let lab_ns = std::fs::metadata(format!("/run/netns/{prefix}-only")).unwrap().ino();
    let t = std::time::Instant::now();
    while std::fs::metadata(format!("/proc/{}/ns/net", inside.id()))
        .map(|m| m.ino())
        .ok()
        != Some(lab_ns)
    {
        assert!(t.elapsed() < Duration::from_secs(3), "sleep entered the lab");
        std::thread::sleep(Duration::from_millis(10));
    }
    owner.kill().unwrap();
    owner.wait().unwrap();
    let out = sweep();
    assert!(out.status.success());
    assert_eq!(
        ours(),
        0,
        "the dead owner's lab is gone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = std::time::Instant::now();
    while inside.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "the process inside the lab was ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!std::path::Path::new(&format!("/run/ternd-lab/{prefix}")).exists());
}

#[test]
fn a_bad_client_spec_is_refused_by_name_before_anything_is_built() {
    if !prerequisites() {
        return;
    }
    let prefix = format!("tl{:x}bad", std::process::id());
    for (spec, error) in [
        (
            "x=cone",
            "client x: unknown NAT type 'cone' (full, restricted, port, symmetric, udp-blocked)",
        ),
        ("inet=full", "client name 'inet' is reserved"),
        ("Bad=full", "client name 'Bad': 1-12 of a-z0-9, starting with a letter"),
    ] {
        let out = common::lab::run_script(&prefix, &["up", "ok=port", spec]);
        assert_eq!(out.status.code(), Some(1), "{spec}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(error), "{spec}: {stderr}");
        assert!(
            !netns_names().iter().any(|n| n.starts_with(&prefix)),
            "{spec}: nothing built"
        );
    }
}

/// A namespace with a lab's prefix that the lab did not make; deleted on drop.
struct Stranger(String);

impl Stranger {
    fn add(name: String) -> Stranger {
        let st = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Stranger(name)
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

#[test]
fn up_and_down_leave_namespaces_the_lab_did_not_make() {
    if !prerequisites() {
        return;
    }
    let prefix = format!("tl{:x}str", std::process::id());
    // One with a name no node has: `up` then `down` keep it.
    let stranger = Stranger::add(format!("{prefix}-stranger"));
    let up = common::lab::run_script(&prefix, &["up", "only=port"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let down = common::lab::run_script(&prefix, &["down"]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    let left: Vec<String> = netns_names()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect();
    assert_eq!(
        left,
        std::slice::from_ref(&stranger.0),
        "down removed the lab's nodes and only those"
    );
    drop(stranger);
    // One with the name of a node (inet): `up` fails on it, and its cleanup keeps it.
    let stranger = Stranger::add(format!("{prefix}-inet"));
    let up = common::lab::run_script(&prefix, &["up", "only=port"]);
    assert!(!up.status.success(), "up over an existing {prefix}-inet");
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(stderr.contains("up failed; removed the partial lab"), "{stderr}");
    assert!(netns_names().contains(&stranger.0), "the failed up left {}", stranger.0);
    assert!(!std::path::Path::new(&format!("/run/ternd-lab/{prefix}")).exists());
}

#[test]
fn an_up_ended_by_sigterm_removes_what_it_built() {
    if !prerequisites() {
        return;
    }
    let prefix = format!("tl{:x}term", std::process::id());
    let ours = || {
        netns_names()
            .into_iter()
            .filter(|n| n.starts_with(&format!("{prefix}-")))
            .count()
    };
    let mut specs = vec!["up".to_string()];
    specs.extend(ALL.iter().map(|(n, t)| format!("{n}={}", t.lab_type())));
    let mut up = common::lab::script_command(&prefix, std::process::id())
        .args(&specs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Signal it half way: some nodes made, not all 11.
    let nodes = format!("/run/ternd-lab/{prefix}/nodes");
    let t = std::time::Instant::now();
    while std::fs::read_to_string(&nodes).map_or(0, |s| s.lines().count()) < 3 {
        if let Some(status) = up.try_wait().unwrap() {
            let _ = common::lab::run_script(&prefix, &["down"]);
            panic!("up ended ({status}) before it was signalled");
        }
        assert!(t.elapsed() < Duration::from_secs(20), "up made 3 nodes");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on our own child's pid, which has not been reaped.
    assert_eq!(unsafe { libc::kill(up.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = up.kill();
            let _ = up.wait();
            let _ = common::lab::run_script(&prefix, &["down"]);
            panic!("up did not end within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(up.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let left = ours();
    if left != 0 {
        let _ = common::lab::run_script(&prefix, &["down"]);
    }
    assert!(!status.success(), "up reported success after SIGTERM: {stderr}");
    assert!(
        stderr.contains("up interrupted (SIGTERM); removed the partial lab"),
        "{stderr}"
    );
    assert_eq!(left, 0, "no namespace of {prefix} is left: {stderr}");
    assert!(!std::path::Path::new(&format!("/run/ternd-lab/{prefix}")).exists());
}
