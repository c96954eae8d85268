//! The webrtc-rs `webrtc-ice` agent (crates/ice-agent, the `ternd-ice-agent`
//! binary the NAT lab runs in its namespaces) against an in-process ternd on
//! loopback: gathering finds host, srflx and relay candidates, the relay one
//! on ternd's relay address; two agents meet on ternd's signaling WebSocket,
//! connect relay-to-relay and exchange messages, and ternd counts the relayed
//! traffic; an agent alone in its room fails within its timeout.
//!
//! The agent binary belongs to another package, so cargo gives this test no
//! `CARGO_BIN_EXE_` for it. It lives in the same target directory as this
//! test's executable (target/<profile>/deps/ice_agent-HASH →
//! target/<profile>/ternd-ice-agent); `cargo nextest run --workspace`
//! (tests/run.sh) builds it, because crates/ice-agent has integration tests.
//! When it is missing (e.g. `cargo test --test ice_agent`), `agent_bin` runs
//! `cargo build -p ternd-ice-agent` for the same profile and target dir.
//!
//! webrtc-ice skips loopback interfaces when it gathers host candidates, so
//! `gather` is run with `--include-loopback` here; on one machine there is no
//! other address every run can count on.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use common::agent_bin::agent_bin;
use common::lab_agent::{strings, Finished, Running};
use common::*;
use serde_json::Value;

/// A running agent (the lab's process runner, on loopback).
struct Agent(Running);

fn spawn_agent(args: &[String]) -> Agent {
    let what = format!("ternd-ice-agent {}", args.join(" "));
    Agent(Running::new(what, Command::new(agent_bin()).args(args)))
}

impl Agent {
    /// Waits up to `limit` for the exit; the test fails if the agent had to
    /// be stopped or printed anything but JSON lines.
    fn finish(self, limit: Duration) -> Finished {
        let f = self.0.finish(limit);
        assert!(f.code.is_some(), "ran over {limit:?} and was stopped:\n{}", f.report());
        assert!(f.stray.is_empty(), "not JSON lines: {:?}\n{}", f.stray, f.report());
        f
    }
}

/// The first IPv4 UDP listener of the server.
fn udp4(server: &ternd::Running) -> SocketAddr {
    *server
        .bound()
        .udp
        .iter()
        .find(|a| a.is_ipv4())
        .expect("an IPv4 UDP listener")
}

/// A relay candidate (UDP, as every TURN relay) on ternd's relay address.
fn assert_relay(c: &Value, relay_ip: IpAddr) {
    assert_eq!(c["type"], "relay", "{c}");
    assert_eq!(c["protocol"], "udp", "{c}");
    assert_on_relay(c, relay_ip);
}

#[test]
fn gather_finds_host_srflx_and_a_relay_on_ternds_relay_address() {
    let server = start(&turn_config(None, &[]));
    let relay_ip = server.shared().relay_ipv4.expect("a relay address");
    let udp = udp4(&server);
    let (user, pass) = rest_credentials("agent");
    let f = spawn_agent(&strings(&[
        "gather",
        "--include-loopback",
        "--url",
        &format!("stun:{udp}"),
        "--url",
        &format!("turn:{udp}?transport=udp"),
        "--username",
        &user,
        "--credential",
        &pass,
        "--timeout",
        "10s",
    ]))
    .finish(Duration::from_secs(20));
    assert_eq!(f.code, Some(0), "gathering completes:\n{}", f.report());

    let candidates = f.all("candidate");
    assert_eq!(
        f.one("gathered")["count"].as_u64(),
        Some(candidates.len() as u64),
        "{}",
        f.report()
    );
    let of = |t: &str| {
        candidates
            .iter()
            .filter(|c| c["type"] == t)
            .copied()
            .collect::<Vec<_>>()
    };
    let host = of("host");
    assert!(
        host.iter().any(|c| c["address"] == "127.0.0.1"),
        "a host candidate on loopback: {}",
        f.report()
    );
    // ternd answered the Binding: the mapped address of a loopback socket.
    let srflx = of("srflx");
    assert!(!srflx.is_empty(), "a srflx candidate: {}", f.report());
    for c in &srflx {
        assert_eq!(c["address"], "127.0.0.1", "{c}");
        assert!(c["related_port"].as_u64().is_some_and(|p| p > 0), "{c}");
    }
    let relay = of("relay");
    assert_eq!(
        relay.len(),
        1,
        "one relay candidate for the one turn: URL: {}",
        f.report()
    );
    assert_relay(relay[0], relay_ip);

    let stats = server.shutdown().unwrap();
    assert!(stats.allocations_created >= 1, "{stats:?}");
}

#[test]
fn two_agents_connect_through_the_relays_and_exchange_messages() {
    // No peers.allow: only the rule for ternd's own relay addresses admits
    // the peers, as on a real deployment.
    let server = start(&turn_config(
        None,
        &[("http.listen", "127.0.0.1:0"), ("peers.allow", "")],
    ));
    let relay_ip = server.shared().relay_ipv4.expect("a relay address");
    let udp = udp4(&server);
    let signal = format!("ws://{}/ws", server.bound().http[0]);
    let connect = |user: &str| {
        let (u, p) = rest_credentials(user);
        strings(&[
            "connect",
            "--signal",
            &signal,
            "--room",
            "agents",
            "--url",
            &format!("turn:{udp}?transport=udp"),
            "--username",
            &u,
            "--credential",
            &p,
            "--relay-only",
            "--timeout",
            "20s",
            "--messages",
            "5",
            "--log",
            "info",
        ])
    };
    let a = spawn_agent(&connect("a"));
    // b joins second (it finds a in the room) and is the controlling side.
    std::thread::sleep(Duration::from_millis(300));
    let b = spawn_agent(&connect("b"));
    let (a, b) = (a.finish(Duration::from_secs(30)), b.finish(Duration::from_secs(30)));

    let mut relay_ports = Vec::new();
    for f in [&a, &b] {
        assert_eq!(f.code, Some(0), "{}", f.report());
        let result = f.one("result");
        assert_eq!(result["ok"], true, "{}", f.report());
        assert_eq!(result["sent"], 5, "{result}");
        assert_eq!(result["received"], 5, "{result}");
        assert_eq!(result["error"], Value::Null, "{result}");
        for c in f.all("candidate") {
            assert_relay(c, relay_ip);
        }
        let selected = f.one("selected");
        assert_relay(&selected["local"], relay_ip);
        assert_relay(&selected["remote"], relay_ip);
        relay_ports.push((selected["local"]["port"].clone(), selected["remote"]["port"].clone()));
    }
    assert_eq!(relay_ports[0].0, relay_ports[1].1, "a's local relay is b's remote");
    assert_eq!(relay_ports[0].1, relay_ports[1].0, "b's local relay is a's remote");
    assert!(a.stderr.contains("(controlled)"), "a joined first:\n{}", a.stderr);
    assert!(
        b.stderr.contains("(controlling)"),
        "b found a in the room:\n{}",
        b.stderr
    );

    // Both left the room on their way out (not just dropped the socket,
    // which would keep them listed for the resume grace): a third agent
    // finds it empty and waits in vain.
    let mut args = connect("c");
    *args.iter_mut().find(|a| *a == "20s").unwrap() = "2s".to_owned();
    let c = spawn_agent(&args).finish(Duration::from_secs(15));
    assert_eq!(c.code, Some(1), "{}", c.report());
    assert!(c.stderr.contains("(controlled)"), "the room is empty:\n{}", c.report());
    assert!(
        c.one("result")["error"].as_str().unwrap().contains("no peer completed"),
        "{}",
        c.report()
    );

    let stats = server.shutdown().unwrap();
    let t = stats.traffic;
    // Both sides' checks and 5 messages went out through one relay and came
    // in through the other.
    assert!(t.to_peer_packets >= 10 && t.to_client_packets >= 10, "{t:?}");
    assert!(t.to_peer_bytes > 0 && t.to_client_bytes > 0, "{t:?}");
}

#[test]
fn an_agent_alone_in_its_room_fails_within_its_timeout() {
    let server = start(&turn_config(None, &[("http.listen", "127.0.0.1:0")]));
    let signal = format!("ws://{}/ws", server.bound().http[0]);
    agent_bin(); // a build it may need does not count against the timeout
    let started = Instant::now();
    let f = spawn_agent(&strings(&[
        "connect",
        "--signal",
        &signal,
        "--room",
        "alone",
        "--url",
        &format!("stun:{}", udp4(&server)),
        "--include-loopback",
        "--timeout",
        "3s",
    ]))
    .finish(Duration::from_secs(15));
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(f.code, Some(1), "{}", f.report());
    let result = f.one("result");
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["received"], 0, "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no peer completed the offer/answer in room alone in 3s"),
        "{result}"
    );
    assert!(f.all("selected").is_empty(), "{}", f.report());
    server.shutdown().unwrap();
}
