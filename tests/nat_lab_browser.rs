//! Headless Chromium inside NAT lab clients (deploy/lab/ternd-lab), against
//! the real ternd binary serving in the lab's "internet":
//! - the sample page's gatherer behind each NAT type reports host = the
//!   client's private address, srflx = its router's public address, relay =
//!   ternd's relay address (behind the UDP-blocked firewall: relays over TCP
//!   and TLS only);
//! - two browsers behind two NATs complete the sample call through ternd's
//!   signaling endpoint, relay-only, and exchange data-channel messages;
//! - behind the UDP-blocked firewall, Chromium connects through TURN over TCP
//!   and over TLS (the lab CA trusted through NSS), and completes the sample
//!   call with a browser behind a symmetric NAT;
//! - given `turns:…:443?transport=udp` (ternd serves TLS and DTLS on port
//!   443), Chromium 156 speaks TLS over TCP to it and connects, unfirewalled
//!   and behind the firewall (issue 15).
//!
//! Every test checks the routers first and reads ternd's relayed-bytes
//! counters. Needs root, ip, nft, Chromium, node, playwright-core and
//! certutil (tests/run.sh installs them); otherwise SKIPPED, or a failure
//! under CI=true.

mod common;

use serde_json::{json, Value};

use common::lab::Nat;
use common::lab_chromium::{home_trusting, run};
use common::lab_ternd::{verified_lab_with_ternd, PASSWORD, PUBLIC, USER};

fn prerequisites() -> bool {
    common::lab::prerequisites() && common::lab_chromium::prerequisites()
}

fn candidates(v: &Value) -> Vec<Value> {
    v["all"]["candidates"].as_array().cloned().unwrap_or_default()
}

fn of_type<'a>(list: &'a [Value], t: &str) -> Vec<&'a Value> {
    list.iter().filter(|c| c["type"] == t).collect()
}

/// A relay candidate on ternd's public relay address and a lab relay port.
fn assert_relay(c: &Value) {
    assert_eq!(c["address"], PUBLIC, "relay on ternd's public address: {c}");
    let port = c["port"].as_u64().unwrap_or(0);
    assert!(
        (50000..=59999).contains(&port),
        "a port from relay.port_min..=port_max: {c}"
    );
}

#[test]
fn chromium_behind_each_nat_gathers_host_srflx_and_relay_candidates() {
    if !prerequisites() {
        return;
    }
    let (lab, ternd) = verified_lab_with_ternd(
        &[
            ("full", Nat::FullCone),
            ("restricted", Nat::RestrictedCone),
            ("port", Nat::PortRestrictedCone),
            ("symmetric", Nat::Symmetric),
            ("blocked", Nat::UdpBlocked),
        ],
        false,
    );
    let home = home_trusting(&ternd, "gather");
    // Two browsers at a time: five at once starve two cores.
    let results: Vec<(common::lab::Client, Value)> = lab
        .clients
        .chunks(2)
        .flat_map(|chunk| {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|c| {
                        // The UDP-blocked firewall passes TCP 443 only: ternd serves HTTP there
                        // too. Gathering there never completes (STUN over UDP is retried for
                        // long); the relays over TCP and TLS come within a second.
                        let (url, ms) = if c.nat == Nat::UdpBlocked {
                            (
                                format!("http://203.0.113.2:443/?key={}", common::lab_ternd::API_KEY),
                                "6000",
                            )
                        } else {
                            (ternd.page_url(""), "20000")
                        };
                        let (lab, home) = (&lab, &home);
                        (
                            c.clone(),
                            s.spawn(move || run(lab, &c.name, home, &["gather", &url, ms])),
                        )
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|(c, h)| (c, h.join().unwrap()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();

    for (client, r) in &results {
        let list = candidates(r);
        let name = &client.name;
        let host = of_type(&list, "host");
        assert!(
            host.iter().any(|c| c["address"] == client.host.to_string()),
            "{name}: a host candidate on the private address {}: {list:?}",
            client.host
        );
        let srflx = of_type(&list, "srflx");
        let relay = of_type(&list, "relay");
        for c in &relay {
            assert_relay(c);
        }
        if client.nat == Nat::UdpBlocked {
            assert!(srflx.is_empty(), "{name}: no srflx without UDP: {list:?}");
            for via in ["tcp", "tls"] {
                assert!(
                    relay.iter().any(|c| c["relayProtocol"] == via),
                    "{name}: a relay candidate allocated over TURN/{via}: {list:?}"
                );
            }
            assert!(
                !relay.iter().any(|c| c["relayProtocol"] == "udp"),
                "{name}: no TURN/UDP allocation gets through: {list:?}"
            );
        } else {
            assert_eq!(r["all"]["timedOut"], false, "{name}: gathering completes: {r}");
            assert!(
                !srflx.is_empty() && srflx.iter().all(|c| c["address"] == client.public.to_string()),
                "{name}: srflx candidates on the router's public address {}: {list:?}",
                client.public
            );
            assert!(
                relay.iter().any(|c| c["relayProtocol"] == "udp"),
                "{name}: a relay candidate over TURN/UDP: {list:?}"
            );
        }
    }
}

#[test]
fn two_browsers_behind_nats_call_relay_only_through_ternd_signaling() {
    if !prerequisites() {
        return;
    }
    let (lab, ternd) = verified_lab_with_ternd(&[("alice", Nat::Symmetric), ("bob", Nat::PortRestrictedCone)], false);
    let home = home_trusting(&ternd, "call");
    let before = ternd.relayed_bytes(&lab);
    let url = ternd.page_url("&room=lab&relay=1&autostart=1&media=generated");
    let (alice, bob) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&lab, "alice", &home, &["call", &url, "alice"]));
        // Alice joins first; Bob's arrival starts the call.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let b = s.spawn(|| run(&lab, "bob", &home, &["call", &url, "bob"]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(alice["received"], json!(["hello from bob"]), "{alice}");
    assert_eq!(bob["received"], json!(["hello from alice"]), "{bob}");
    for r in [&alice, &bob] {
        let pair = &r["pair"];
        assert_eq!(pair["local"]["type"], "relay", "relay-only: {pair}");
        assert_eq!(pair["remote"]["type"], "relay", "relay-only: {pair}");
        assert_relay(&pair["local"]);
        assert_relay(&pair["remote"]);
    }
    ternd.assert_relayed_since(&lab, before, "the call");
}

#[test]
fn chromium_behind_a_udp_blocking_firewall_connects_over_turn_tcp_and_tls() {
    if !prerequisites() {
        return;
    }
    let (lab, ternd) = verified_lab_with_ternd(&[("blocked", Nat::UdpBlocked), ("sym", Nat::Symmetric)], false);
    let home = home_trusting(&ternd, "tls");
    let config = |url: &str| {
        json!({"iceServers": [{"urls": [url], "username": USER, "credential": PASSWORD}], "iceTransportPolicy": "relay"})
            .to_string()
    };
    let before = ternd.relayed_bytes(&lab);
    let r = run(
        &lab,
        "blocked",
        &home,
        &[
            "pair",
            &config(&format!("turn:{PUBLIC}:3478?transport=tcp")),
            &config(&format!("turns:{PUBLIC}:443?transport=tcp")),
        ],
    );
    assert_eq!(r["message"], "hello through the lab", "{r}");
    for (side, via) in [("a", "tcp"), ("b", "tls")] {
        let pair = &r[side];
        assert_eq!(pair["local"]["type"], "relay", "{side}: {pair}");
        assert_eq!(
            pair["local"]["relayProtocol"], via,
            "{side} allocated over TURN/{via}: {pair}"
        );
        assert_eq!(pair["remote"]["type"], "relay", "{side}: {pair}");
        assert_relay(&pair["local"]);
    }
    let after = ternd.assert_relayed_since(&lab, before, "the data");

    // The sample call from behind the firewall (page and signaling on
    // 203.0.113.2:443, the one HTTP port it lets out) to a browser behind a
    // symmetric NAT: the blocked side's relay is allocated over TCP or TLS.
    let blocked_url = format!(
        "http://203.0.113.2:443/?key={}&room=fw&relay=1&autostart=1&media=generated",
        common::lab_ternd::API_KEY
    );
    let sym_url = ternd.page_url("&room=fw&relay=1&autostart=1&media=generated");
    let (blocked, sym) = std::thread::scope(|s| {
        let b = s.spawn(|| run(&lab, "blocked", &home, &["call", &blocked_url, "blocked"]));
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let y = s.spawn(|| run(&lab, "sym", &home, &["call", &sym_url, "sym"]));
        (b.join().unwrap(), y.join().unwrap())
    });
    assert_eq!(blocked["received"], json!(["hello from sym"]), "{blocked}");
    assert_eq!(sym["received"], json!(["hello from blocked"]), "{sym}");
    let local = &blocked["pair"]["local"];
    assert_eq!(local["type"], "relay", "{blocked}");
    assert!(
        local["relayProtocol"] == "tcp" || local["relayProtocol"] == "tls",
        "behind the firewall the relay is reached over TCP or TLS: {local}"
    );
    assert_eq!(sym["pair"]["local"]["type"], "relay", "{sym}");
    ternd.assert_relayed_since(&lab, after, "the call");
}

/// Issue 15: ternd serves TLS and DTLS on port 443 (TCP and UDP), and
/// /api/ice-servers hands out `turns:…:443?transport=udp`. Chromium (Debian's
/// 156) given that URL, unfirewalled (where it could use DTLS) and behind the
/// UDP-blocking firewall, speaks TLS over TCP to the TLS listener (its
/// `relayProtocol` says "tls", and ternd logged each allocation as "tls"),
/// gets its relay candidates and connects, while `ternd probe` given the
/// same URL allocates over DTLS on UDP 443. Should a later Chromium speak
/// DTLS, this test fails at the relayProtocol check and is to be updated.
#[test]
fn chromium_given_turns_transport_udp_relays_through_the_shared_port() {
    if !prerequisites() {
        return;
    }
    let (lab, ternd) = verified_lab_with_ternd(&[("open", Nat::FullCone), ("blocked", Nat::UdpBlocked)], false);
    let dtls_url = format!("turns:{PUBLIC}:443?transport=udp");
    let urls = ternd.ice_server_urls(&lab);
    assert!(urls.contains(&dtls_url), "/api/ice-servers offers {dtls_url}: {urls:?}");
    assert!(
        urls.contains(&format!("turns:{PUBLIC}:443?transport=tcp")),
        "and TLS on the same port number: {urls:?}"
    );
    let home = home_trusting(&ternd, "dtls");
    for node in ["open", "blocked"] {
        let before = ternd.relayed_bytes(&lab);
        let config = json!({"iceServers": [{"urls": [&dtls_url], "username": USER, "credential": PASSWORD}], "iceTransportPolicy": "relay"}).to_string();
        let r = run(&lab, node, &home, &["pair", &config, &config]);
        assert_eq!(r["message"], "hello through the lab", "{node}: {r}");
        for side in ["a", "b"] {
            let pair = &r[side];
            assert_eq!(pair["local"]["type"], "relay", "{node} {side}: {pair}");
            assert_eq!(pair["remote"]["type"], "relay", "{node} {side}: {pair}");
            assert_relay(&pair["local"]);
            assert_eq!(
                pair["local"]["relayProtocol"], "tls",
                "{node} {side}: Chromium's transport to ternd for {dtls_url}: {pair}"
            );
            // ternd's side: the allocation behind that relay address came over TLS.
            let relay = format!(
                "{}:{}",
                pair["local"]["address"].as_str().unwrap(),
                pair["local"]["port"]
            );
            assert_eq!(
                ternd.allocation_transports(&relay),
                ["tls"],
                "{node} {side}: ternd's log of the allocation on {relay}:\n{}",
                ternd.log_text()
            );
        }
        ternd.assert_relayed_since(&lab, before, &format!("{node}'s data"));
    }
    assert!(
        !ternd.log_text().contains("transport=\"dtls\""),
        "Chromium 156 opened no DTLS allocation:\n{}",
        ternd.log_text()
    );

    // The same URL does reach the DTLS listener on UDP 443 for a client that
    // speaks DTLS: `ternd probe` from the unfirewalled node allocates over it.
    let ca = ternd.cert.ca_file.display().to_string();
    let args = common::lab_agent::strings(&[
        "probe",
        "--json",
        "--timeout",
        "3s",
        "--ca",
        &ca,
        "--user",
        USER,
        "--password",
        PASSWORD,
        &dtls_url,
    ]);
    let probe = common::lab_agent::spawn(&lab, "open", env!("CARGO_BIN_EXE_ternd"), &args)
        .finish(std::time::Duration::from_secs(20));
    let checks = common::lab_agent::probe_checks(&probe);
    let passed = |check: &str| {
        checks
            .iter()
            .find(|c| c["check"] == check && c["transport"] == "dtls" && c["status"] == "pass")
            .unwrap_or_else(|| panic!("probe's {check} over DTLS on UDP 443 passes: {}", probe.report()))
    };
    passed("relay-round-trip");
    let relay = passed("allocate")["relay"].as_str().unwrap().to_string();
    assert_eq!(
        ternd.allocation_transports(&relay),
        ["dtls"],
        "ternd logged the probe's allocation on {relay} as DTLS:\n{}",
        ternd.log_text()
    );
}
