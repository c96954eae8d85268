//! The real binary as systemd runs it: the notify protocol on a test
//! NOTIFY_SOCKET (READY after bind, WATCHDOG pings, RELOADING/READY around
//! SIGHUP, STOPPING on SIGTERM), a SIGHUP with an invalid config (refused,
//! old config serves on), and a SIGTERM drain with a live allocation.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::binary::Ternd;
use common::http::http;
use common::turn::{Io, Relayed, TurnClient};
use common::EchoPeer;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ternd-{tag}-{}-{:?}", std::process::id(), Instant::now()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Starts the binary with a config file and extra env; reads the banner for
/// the bound ports.
fn spawn(config: &std::path::Path, env: &[(&str, String)]) -> Ternd {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ternd"));
    cmd.args(["--config", config.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    common::binary::spawn(&mut cmd)
}

const CONFIG: &str = r#"
[server]
shards = 2
drain_timeout = "20s"
[listen]
udp = ["127.0.0.1:0"]
tcp = []
[turn]
secrets = ["service-test-secret-0123456789"]
[turn.users]
alice = "alice-password"
[relay]
ipv4 = "127.0.0.1"
port_min = 61000
[peers]
allow = ["127.0.0.0/8"]
[http]
listen = ["127.0.0.1:0"]
[log]
level = "warn"
"#;

fn recv_state(sock: &UnixDatagram, want: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {want} from ternd within {within:?}");
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if msg.lines().any(|l| l == want) {
                return msg;
            }
        }
    }
}

#[test]
fn notify_protocol_ready_watchdog_reload_stopping() {
    let dir = temp_dir("notify");
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let config = dir.join("ternd.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut t = spawn(
        &config,
        &[
            ("NOTIFY_SOCKET", sock_path.display().to_string()),
            ("WATCHDOG_USEC", "400000".to_string()),
        ],
    );
    recv_state(&sock, "READY=1", Duration::from_secs(10));
    recv_state(&sock, "WATCHDOG=1", Duration::from_secs(2));
    recv_state(&sock, "WATCHDOG=1", Duration::from_secs(2));

    t.signal(libc::SIGHUP);
    let reloading = recv_state(&sock, "RELOADING=1", Duration::from_secs(5));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    recv_state(&sock, "READY=1", Duration::from_secs(5));

    t.signal(libc::SIGTERM);
    recv_state(&sock, "STOPPING=1", Duration::from_secs(5));
    assert!(t.wait_exit(Duration::from_secs(10)).success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_with_an_invalid_config_keeps_the_old_one() {
    let dir = temp_dir("badreload");
    let config = dir.join("ternd.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut t = spawn(&config, &[]);
    let mut c = TurnClient::new(Io::udp(t.udp), "alice", "alice-password");
    c.allocate().unwrap();
    // Break the file: unknown key. The reload is refused, alice still works.
    std::fs::write(&config, format!("{CONFIG}\n[bogus]\nx = 1\n")).unwrap();
    t.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    let mut c2 = TurnClient::new(Io::udp(t.udp), "alice", "alice-password");
    assert!(c2.allocate().is_ok(), "the old config serves on");
    // A valid change (a new user) applies on the next SIGHUP.
    std::fs::write(
        &config,
        CONFIG.replace("[turn.users]", "[turn.users]\nbob = \"bob-password\""),
    )
    .unwrap();
    t.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut b = TurnClient::new(Io::udp(t.udp), "bob", "bob-password");
        if b.allocate().is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the reloaded user works");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.refresh(600), Ok(600), "allocations survive reloads");
    t.signal(libc::SIGINT);
    assert!(t.wait_exit(Duration::from_secs(10)).success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_drains_then_exits_zero() {
    let dir = temp_dir("drain");
    let config = dir.join("ternd.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut t = spawn(&config, &[]);
    let peer = EchoPeer::start(false);
    let mut live = TurnClient::new(Io::udp(t.udp), "alice", "alice-password");
    live.allocate().unwrap();
    live.channel_bind(0x4000, peer.addr).unwrap();
    // Ready: every shard answers a ping within 2 s (a loaded CI machine may
    // need a second try).
    let deadline = Instant::now() + Duration::from_secs(10);
    while http(t.http, "GET", "/readyz", &[]).status != 200 {
        assert!(Instant::now() < deadline, "/readyz is 200 before the signal");
        std::thread::sleep(Duration::from_millis(100));
    }

    t.signal(libc::SIGTERM);
    // Not ready any more; new allocations refused; the live one relays on.
    let deadline = Instant::now() + Duration::from_secs(5);
    while http(t.http, "GET", "/readyz", &[]).status != 503 {
        assert!(Instant::now() < deadline, "/readyz turns 503 while draining");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut late = TurnClient::new(Io::udp(t.udp), "alice", "alice-password");
    assert_eq!(late.allocate(), Err(508), "no new allocations while draining");
    for i in 0..5u8 {
        live.send_channel(0x4000, &[i; 40]);
        assert_eq!(live.recv_relayed(), Some(Relayed::Channel(0x4000, vec![i; 40])));
    }
    assert!(
        t.child.try_wait().unwrap().is_none(),
        "still running while an allocation lives"
    );
    // The last allocation ends: the drain completes and ternd exits 0.
    live.refresh(0).unwrap();
    assert!(t.wait_exit(Duration::from_secs(10)).success());
    let _ = std::fs::remove_dir_all(&dir);
}
