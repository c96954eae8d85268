//! The command line of `ternd-ice-agent` without any server: URLs that
//! webrtc-ice cannot use are refused by name, a `connect` with nobody to
//! talk to ends within its timeout with `ok:false` and an error, and SIGTERM
//! ends a run with its summary line printed.
//!
//! (Being an integration test of this package also makes cargo build the
//! binary itself at target/<profile>/ternd-ice-agent, where the root
//! tests/ice_agent.rs finds it.)

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const AGENT: &str = env!("CARGO_BIN_EXE_ternd-ice-agent");

/// Runs the agent to its end, killed (by its pid) if it runs past 30 s.
fn agent(args: &[&str]) -> Output {
    let mut child = Command::new(AGENT)
        .args(args)
        // Only the command line gives credentials here.
        .env_remove("TERND_ICE_CREDENTIAL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ternd-ice-agent");
    wait_bounded(&mut child, Duration::from_secs(30));
    child.wait_with_output().unwrap()
}

/// Polls `child` until it exits or `limit` passes; then kills it by its pid.
fn wait_bounded(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn turn_over_tcp_and_tls_are_refused_with_a_clear_error() {
    for (url, says) in [
        ("turn:127.0.0.1:3478?transport=tcp", "TURN over TCP is not supported"),
        ("turns:127.0.0.1:5349?transport=tcp", "no TLS/DTLS transport"),
        ("stuns:127.0.0.1:5349", "no TLS/DTLS transport"),
    ] {
        let out = agent(&["gather", "--url", url, "--username", "u", "--credential", "p"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing gathered for {url}");
    }
}

#[test]
fn a_turn_url_without_credentials_is_refused() {
    let out = agent(&["gather", "--url", "turn:127.0.0.1:3478"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs --username and --credential"), "{stderr}");
}

#[test]
fn connect_without_a_signaling_server_fails_within_its_timeout() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let start = Instant::now();
    let out = agent(&[
        "connect",
        "--signal",
        "ws://127.0.0.1:9/ws",
        "--room",
        "r",
        "--timeout",
        "3s",
    ]);
    assert!(start.elapsed() < Duration::from_secs(10), "bounded by --timeout");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("a result line")).unwrap();
    assert_eq!(result["event"], "result");
    assert_eq!(result["ok"], false);
    assert!(
        result["error"].as_str().unwrap().contains("cannot open the WebSocket"),
        "{result}"
    );
}

#[test]
fn sigterm_ends_gathering_with_its_summary() {
    // A TURN "server" that never answers: the Allocate would wait ~8 s.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("turn:{}?transport=udp", silent.local_addr().unwrap());
    let mut child = Command::new(AGENT)
        .args([
            "--log",
            "info",
            "gather",
            "--url",
            &url,
            "--username",
            "u",
            "--credential",
            "p",
            "--timeout",
            "30s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ternd-ice-agent");
    // Wait (bounded) for the line saying the signal handlers are in place.
    let (tx, rx) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            if line.contains("ready: SIGTERM") {
                let _ = tx.send(());
            }
        }
        all
    });
    let ready = rx.recv_timeout(Duration::from_secs(10));
    let start = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    wait_bounded(&mut child, Duration::from_secs(10));
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(ready.is_ok(), "no readiness line within 10 s: {stderr}");
    assert!(start.elapsed() < Duration::from_secs(6), "{:?}", start.elapsed());
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("a summary line")).unwrap();
    assert_eq!(last["event"], "gathered", "{stdout}");
    assert_eq!(last["error"], "stopped by SIGTERM", "{stdout}");
}
