//! The sample page (`GET /`) in headless Chromium: Debian's `chromium`,
//! driven by playwright-core from `tests/browser/run.mjs`, which prints one
//! JSON line that these tests check. The gatherer must list host and relay
//! candidates, the relay ones on ternd's relay address; two pages in one room
//! must call each other with `iceTransportPolicy: "relay"` through ternd's
//! relays (no `peers.allow`: the own-relay-address rule lets them talk),
//! survive a signaling drop and an ICE restart, and ternd must count the
//! relayed packets.
//!
//! Needs /usr/bin/chromium, node and `tests/browser/node_modules` (tests/run.sh
//! installs them). Missing outside CI: SKIPPED; under CI: a failure.

mod common;

use std::process::Command;
use std::time::Duration;

use common::chromium;
use common::*;
use serde_json::Value;

/// run.mjs gives up after 50 s; this is the backstop.
const RUN_LIMIT: Duration = Duration::from_secs(55);
const KEY: &str = "browser-test-key-0123456789";

fn prerequisites() -> bool {
    chromium::prerequisites(false)
}

/// Runs `node run.mjs <url> <args..>` and returns its JSON line (`"ok":true`).
fn run_page(url: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(chromium::browser_dir().join("run.mjs")).arg(url).args(args);
    chromium::run_json(&mut cmd, &format!("run.mjs {args:?}"), RUN_LIMIT)
}

fn candidates(v: &Value) -> &Vec<Value> {
    v["candidates"].as_array().expect("a candidates array")
}

#[test]
fn the_gatherer_lists_host_and_relay_candidates() {
    if !prerequisites() {
        return;
    }
    let server = start(&turn_config(
        None,
        &[("http.listen", "127.0.0.1:0"), ("http.api_keys", KEY)],
    ));
    let relay_ip = server.shared().relay_ipv4.expect("a relay address");
    let url = format!("http://{}", server.bound().http[0]);
    let r = run_page(&url, &["gather", KEY]);

    let all = &r["all"];
    assert_eq!(all["timedOut"], false, "gathering completes: {all}");
    assert!(all["ms"].as_u64().is_some(), "the gathering time is reported");
    assert_eq!(all["errors"], serde_json::json!([]), "no icecandidateerror");
    let list = candidates(all);
    assert!(list.iter().any(|c| c["type"] == "host"), "a host candidate: {list:?}");
    let relays: Vec<&Value> = list.iter().filter(|c| c["type"] == "relay").collect();
    for c in &relays {
        assert_on_relay(c, relay_ip);
        assert!(c["priority"].as_u64().is_some_and(|p| p > 0), "{c}");
        assert_eq!(c["protocol"], "udp", "a TURN relay is UDP on the peer side: {c}");
    }
    for transport in ["udp", "tcp"] {
        assert!(
            relays.iter().any(|c| c["relayProtocol"] == transport),
            "a relay candidate allocated over TURN/{transport}: {relays:?}"
        );
    }

    let relay_only = candidates(&r["relayOnly"]);
    assert!(!relay_only.is_empty(), "relay-only gathering finds candidates");
    for c in relay_only {
        assert_eq!(
            c["type"], "relay",
            "iceTransportPolicy relay yields only relay candidates: {c}"
        );
        assert_on_relay(c, relay_ip);
    }

    let refused = r["withoutKey"].as_str().unwrap();
    assert!(refused.contains("401"), "without ?key= the API refuses: {refused}");
    server.shutdown().unwrap();
}

#[test]
fn two_pages_call_through_the_relays_and_reconnect() {
    if !prerequisites() {
        return;
    }
    // No peers.allow: only the rule for ternd's own relay addresses admits the peers.
    let server = start(&turn_config(
        None,
        &[("http.listen", "127.0.0.1:0"), ("peers.allow", "")],
    ));
    let relay_ip = server.shared().relay_ipv4.expect("a relay address");
    let url = format!("http://{}", server.bound().http[0]);
    let r = run_page(&url, &["call"]);

    // The selected pair is relay/relay on both pages, before and after the ICE restart.
    for (when, side) in [("pairs", "a"), ("pairs", "b"), ("pairsAfter", "a"), ("pairsAfter", "b")] {
        let pair = &r[when][side];
        assert_eq!(pair["local"]["type"], "relay", "{when}.{side}: {pair}");
        assert_eq!(pair["remote"]["type"], "relay", "{when}.{side}: {pair}");
        assert_on_relay(&pair["local"], relay_ip);
        assert_on_relay(&pair["remote"], relay_ip);
    }
    assert!(
        r["pairs"]["a"]["bytesSent"].as_u64().is_some_and(|b| b > 0),
        "{}",
        r["pairs"]
    );
    let (before, after) = (&r["before"], &r["after"]);
    assert_ne!(before["a"]["id"], before["b"]["id"]);
    assert_eq!(before["a"]["peer"], before["b"]["id"]);
    assert_eq!(after["a"]["id"], before["a"]["id"], "the resume token kept a's id");
    assert!(after["a"]["restarts"].as_u64().unwrap() >= 1, "{after}");
    assert_ne!(
        after["a"]["ufrag"], before["a"]["ufrag"],
        "ICE restarted with new credentials"
    );
    let chat_b: Vec<&str> = r["chatB"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(
        chat_b.contains(&"hello from a") && chat_b.contains(&"after the restart"),
        "{chat_b:?}"
    );

    let stats = server.shutdown().unwrap();
    assert!(
        stats.traffic.to_peer_packets > 0,
        "ternd relayed to peers: {:?}",
        stats.traffic
    );
    assert!(
        stats.traffic.to_client_packets > 0,
        "ternd relayed to clients: {:?}",
        stats.traffic
    );
}
