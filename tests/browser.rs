//! The sample page (`GET /`) in headless Chromium: Debian's `chromium`,
//! driven by playwright-core from `tests/browser/run.mjs`, which prints one
//! JSON line that these tests check. The gatherer must list host and relay
//! candidates, the relay ones on ternd's relay address; two pages in one room
//! must call each other with `iceTransportPolicy: "relay"` through ternd's
//! relays (no `peers.allow`: the own-relay-address rule lets them talk),
//! survive a signaling drop and an ICE restart, and ternd must count the
//! relayed packets. The ICE server tester is checked through its DOM (the
//! per-URL rows, the editor, the results JSON), as are the call's live pair
//! statistics and its ICE-restart button. Screenshots land in
//! `target/tmp/screenshots/` (look at them after a layout change).
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
    cmd.env(
        "SCREENSHOTS",
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
    );
    chromium::run_json(&mut cmd, &format!("run.mjs {args:?}"), RUN_LIMIT)
}

/// ternd with an HTTP listener that wants the API key `KEY`.
fn start_with_key() -> ternd::Running {
    start(&turn_config(
        None,
        &[("http.listen", "127.0.0.1:0"), ("http.api_keys", KEY)],
    ))
}

fn candidates(v: &Value) -> &Vec<Value> {
    v["candidates"].as_array().expect("a candidates array")
}

#[test]
fn the_gatherer_lists_host_and_relay_candidates() {
    if !prerequisites() {
        return;
    }
    let server = start_with_key();
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

/// The tester's row for `url` (exactly one).
fn url_row<'a>(rows: &'a Value, url: &str) -> &'a Value {
    let matching: Vec<&Value> = rows
        .as_array()
        .expect("url rows")
        .iter()
        .filter(|r| r["url"] == url)
        .collect();
    assert_eq!(matching.len(), 1, "one row for {url}: {rows}");
    matching[0]
}

/// "123 ms" → 123.
fn millis(time: &Value) -> u64 {
    let text = time.as_str().unwrap_or_default();
    text.strip_suffix(" ms")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a time in ms: {time}"))
}

#[test]
fn the_tester_reports_each_url_explains_errors_and_exports_json() {
    if !prerequisites() {
        return;
    }
    let server = start_with_key();
    let udp = server.bound().udp[0];
    let url = format!("http://{}", server.bound().http[0]);
    // A loopback UDP port with nothing listening on it.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let r = run_page(&url, &["servers", KEY, &dead_port.to_string()]);

    // (a) The list is pre-filled from /api/ice-servers, one row per URL with
    // the REST credential on the TURN rows; gathering finds a relay per TURN URL.
    let turn_udp = format!("turn:127.0.0.1:{}?transport=udp", udp.port());
    let prefilled = r["prefilled"].as_array().unwrap();
    let stun = format!("stun:127.0.0.1:{}", udp.port());
    for want in [&stun, &turn_udp] {
        assert!(
            prefilled.iter().any(|e| e["url"] == **want),
            "{want} pre-filled: {prefilled:?}"
        );
    }
    for e in prefilled
        .iter()
        .filter(|e| e["url"].as_str().unwrap().starts_with("turn"))
    {
        assert!(
            e["username"].as_str().is_some_and(|u| u.contains(':')),
            "a REST username: {e}"
        );
        assert_eq!(e["hasCredential"], true, "{e}");
    }
    let first = &r["first"];
    assert_eq!(
        first.as_array().unwrap().len(),
        prefilled.len(),
        "a result row per URL: {first}"
    );
    for e in prefilled
        .iter()
        .filter(|e| e["url"].as_str().unwrap().starts_with("turn"))
    {
        let row = url_row(first, e["url"].as_str().unwrap());
        assert_eq!(row["result"], "relay found", "{row}");
        assert_eq!(row["cls"], "relay", "{row}");
        assert!(millis(&row["time"]) < 15_000, "{row}");
        assert!(row["explanation"].as_str().unwrap().contains("127.0.0.1:"), "{row}");
    }

    // (d) A pasted RTCConfiguration replaces the list and sets the pool size.
    let pasted = &r["pasted"];
    let urls: Vec<&str> = pasted["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["url"].as_str().unwrap())
        .collect();
    let dead_url = format!("turn:127.0.0.1:{dead_port}?transport=udp");
    assert_eq!(urls, [turn_udp.as_str(), dead_url.as_str()], "{pasted}");
    assert_eq!(pasted["rows"][1]["username"], "nobody", "{pasted}");
    assert_eq!(pasted["poolSize"], "2", "{pasted}");

    // (b) A wrong credential typed into the editor: 401, explained.
    let second = &r["second"];
    let wrong = url_row(second, &turn_udp);
    assert_eq!(wrong["result"], "error 401", "{wrong}");
    assert_eq!(wrong["cls"], "error", "{wrong}");
    let why = wrong["explanation"].as_str().unwrap();
    assert!(why.contains("Unauthorized") && why.contains("credential"), "{wrong}");
    // (c) Nobody at the port: an error 701 or the 4 s timeout, both explained as unreachable.
    let gone = url_row(second, &dead_url);
    assert_eq!(gone["cls"], "unreachable", "{gone}");
    assert!(gone["result"] == "error 701" || gone["result"] == "timed out", "{gone}");
    assert!(gone["explanation"].as_str().unwrap().contains("unreachable"), "{gone}");
    assert!(millis(&gone["time"]) <= 6_000, "the per-URL timeout bounds it: {gone}");

    // (f) The results JSON parses and names each URL's outcome.
    let json: Value = serde_json::from_str(r["json"].as_str().unwrap()).expect("results JSON");
    assert_eq!(json["iceCandidatePoolSize"], 2, "{json}");
    assert_eq!(json["timeoutMs"], 4000, "{json}");
    let servers = json["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{json}");
    let outcome = |url: &str| {
        servers
            .iter()
            .find(|s| s["url"] == url)
            .unwrap_or_else(|| panic!("{url} in {json}"))
    };
    assert_eq!(outcome(&turn_udp)["outcome"], "error 401");
    assert_eq!(outcome(&turn_udp)["code"], 401);
    assert!(outcome(&turn_udp)["errors"].as_array().is_some_and(|e| !e.is_empty()));
    assert_eq!(outcome(&dead_url)["outcome"], gone["result"]);
    assert!(
        !r["json"].as_str().unwrap().contains("wrong-credential"),
        "credentials stay out of the JSON"
    );
    assert_eq!(r["copied"], r["json"], "the copy button copies the shown JSON");

    // The page fits a phone-width screen.
    assert!(
        r["overflow"].as_i64().is_some_and(|o| o <= 0),
        "horizontal overflow at 390 px: {}",
        r["overflow"]
    );
    server.shutdown().unwrap();
}

#[test]
fn the_call_shows_live_pair_stats_and_restarts_ice_from_its_button() {
    if !prerequisites() {
        return;
    }
    let server = start(&turn_config(None, &[("http.listen", "127.0.0.1:0")]));
    let url = format!("http://{}", server.bound().http[0]);
    let r = run_page(&url, &["stats"]);
    let (early, later, restarted) = (&r["early"], &r["later"], &r["restarted"]);

    for s in [early, later, restarted] {
        let rtt: f64 = s["rttMs"].as_str().and_then(|v| v.parse().ok()).unwrap_or(-1.0);
        assert!((0.0..1000.0).contains(&rtt), "an RTT on loopback: {s}");
        assert!(s["rtt"].as_str().unwrap().ends_with(" ms"), "{s}");
        assert!(s["bitrate"].as_str().unwrap().contains("bit/s"), "{s}");
    }
    // Bytes on the selected pair grow between readings 2.5 s apart.
    for key in ["sent", "received"] {
        let (a, b) = (early[key].as_f64().unwrap(), later[key].as_f64().unwrap());
        assert!(a > 0.0 && b > a, "bytes {key} grow: {a} then {b}");
    }
    // The graph has a point per reading and shows traffic above the baseline (y = 85).
    for line in ["graphSend", "graphRecv"] {
        let points = later[line].as_array().unwrap();
        assert!(points.len() >= 4, "{line}: {points:?}");
        assert!(
            points.iter().any(|p| p[1].as_f64().is_some_and(|y| y < 84.0)),
            "{line} is not flat: {points:?}"
        );
    }
    // Relay-only with TURN over UDP and TCP: more pairs than the selected one.
    let others = later["others"].as_array().unwrap();
    assert!(!others.is_empty(), "the losing pairs are listed: {later}");
    for p in others {
        assert!(p[0].as_str().unwrap().starts_with("relay"), "{p}");
        assert!(!p[2].as_str().unwrap().is_empty(), "a pair state: {p}");
    }
    assert_eq!(early["restartEnabled"], true);
    // The button restarted ICE and the call is connected again.
    assert!(
        restarted["ice"].as_str().unwrap().starts_with("connected")
            || restarted["ice"].as_str().unwrap().starts_with("completed"),
        "{restarted}"
    );
    assert!(restarted["ice"].as_str().unwrap().contains("1 restarts"), "{restarted}");
    assert!(
        restarted["pc"].as_str().unwrap().starts_with("connected"),
        "{restarted}"
    );
    server.shutdown().unwrap();
}
