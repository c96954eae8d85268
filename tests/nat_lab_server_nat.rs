//! ternd itself behind a 1:1 NAT (`ternd-lab up --server-nat`): it binds
//! 10.99.0.2 in node `srv`, router `r-srv` maps that to 203.0.113.1, and
//! `relay.external_ip = ["203.0.113.1/10.99.0.2"]`. Relay addresses handed
//! out must be the public one, and relaying must work from clients behind
//! other NATs: a TURN client (the webrtc-rs `stun` codec) behind a symmetric
//! NAT reaches a public UDP peer, and two browsers behind two NATs call each
//! other relay-only (their relays reach each other through the router's
//! hairpin). Needs root, ip and nft, and for the call Chromium, node,
//! playwright-core and certutil; otherwise SKIPPED, or a failure under CI=true.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use common::lab::{Lab, Nat};
use common::lab_chromium::{home_trusting, run};
use common::lab_ternd::{verified_lab_with_ternd, PASSWORD, PUBLIC, USER};
use common::turn::{Io, Relayed, TurnClient};

/// A UDP echo peer on 203.0.113.3 in the lab's internet, until dropped (or 30 s).
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Echo {
    fn start(lab: &Lab) -> Echo {
        let sock = lab.in_node("inet", || UdpSocket::bind("203.0.113.3:0").unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        Echo { addr, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn behind_a_one_to_one_nat_ternd_hands_out_public_relays_that_work() {
    if !common::lab::prerequisites() {
        return;
    }
    let (lab, ternd) = verified_lab_with_ternd(&[("alice", Nat::Symmetric), ("bob", Nat::PortRestrictedCone)], true);
    assert_eq!(ternd.bind, "10.99.0.2", "ternd binds its private address");

    // A TURN client behind alice's symmetric NAT, to ternd's public address.
    let server: SocketAddr = format!("{PUBLIC}:3478").parse().unwrap();
    let sock = lab.in_node("alice", || UdpSocket::bind("0.0.0.0:0").unwrap());
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut client = TurnClient::new(Io::Udp(sock, server), USER, PASSWORD);
    let relay = client
        .allocate()
        .unwrap_or_else(|code| panic!("Allocate refused ({code})\n{}", ternd.log_text()));
    assert_eq!(
        relay.ip().to_string(),
        PUBLIC,
        "XOR-RELAYED-ADDRESS carries the public address"
    );
    assert!((50000..=59999).contains(&relay.port()), "{relay}");

    let echo = Echo::start(&lab);
    let before = ternd.relayed_bytes(&lab);
    client.create_permission(&[echo.addr]).expect("CreatePermission");
    let mut answer = None;
    for _ in 0..3 {
        client.send_indication(echo.addr, b"through the server's NAT");
        if let Some(Relayed::Indication(from, data)) = client.recv_relayed() {
            answer = Some((from, data));
            break;
        }
    }
    let (from, data) = answer.unwrap_or_else(|| panic!("no echo through the relay\n{}", ternd.log_text()));
    assert_eq!(from, echo.addr, "the Data indication names the peer");
    assert_eq!(data, b"through the server's NAT");
    let after = ternd.assert_relayed_since(&lab, before, "the echo");

    if !common::lab_chromium::prerequisites() {
        return;
    }
    let home = home_trusting(&ternd, "call");
    let url = ternd.page_url("&room=srvnat&relay=1&autostart=1&media=generated");
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&lab, "alice", &home, &["call", &url, "alice"]));
        std::thread::sleep(Duration::from_millis(1500));
        let b = s.spawn(|| run(&lab, "bob", &home, &["call", &url, "bob"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a["received"], json!(["hello from bob"]), "{a}");
    assert_eq!(b["received"], json!(["hello from alice"]), "{b}");
    for r in [&a, &b] {
        for end in ["local", "remote"] {
            let c = &r["pair"][end];
            assert_eq!(c["type"], "relay", "{end}: {r}");
            assert_eq!(c["address"], PUBLIC, "relay candidates carry the public address: {r}");
        }
    }
    ternd.assert_relayed_since(&lab, after, "the call");
}
