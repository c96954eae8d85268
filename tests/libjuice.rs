//! RFC 8489 §9.2 with an independent client: libjuice (the ICE library of
//! libdatachannel, run through npm's `node-datachannel`, whose prebuilt
//! binary ships inside the registry package @node-datachannel/linux-x64-gnu)
//! gathers a relay candidate through ternd from `tests/libjuice/gather.mjs`.
//! What libjuice chose is read back from ternd's
//! `ternd_authenticated_requests_total` labels: with ternd offering SHA-256
//! and username anonymity, libjuice hides the username behind USERHASH;
//! offered nothing, it sends USERNAME as RFC 5389 clients do.
//!
//! libjuice as a client keeps MD5 keys and MESSAGE-INTEGRITY even when
//! offered SHA-256 (its stun_read takes PASSWORD-ALGORITHMS only from
//! requests, never from a 401), which the test pins down so a libjuice that
//! starts choosing SHA-256 shows up here.
//!
//! Needs node and `tests/libjuice/node_modules` (tests/run.sh installs them).
//! Missing outside CI: SKIPPED; under CI: a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::http::metric;
use common::*;

/// gather.mjs gives up after 20 s; this is the backstop.
const RUN_LIMIT: Duration = Duration::from_secs(30);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/libjuice")
}

fn prerequisites() -> bool {
    let node = Command::new("node").arg("--version").output();
    if node.is_ok_and(|o| o.status.success()) && dir().join("node_modules/node-datachannel").exists() {
        return true;
    }
    missing("node and tests/libjuice/node_modules (npm ci --prefix tests/libjuice)");
    false
}

/// Gathers through `turn:alice@server` and returns the relay candidates.
fn gather(server: std::net::SocketAddr) -> Vec<serde_json::Value> {
    let url = format!("turn:alice:alice-password@{server}?transport=udp");
    let mut cmd = Command::new("node");
    cmd.current_dir(dir()).arg("gather.mjs").arg(&url);
    let out = common::process::spawn(&mut cmd).finish(RUN_LIMIT);
    let line = out.stdout.lines().rev().find(|l| l.starts_with('{'));
    let v: serde_json::Value = line.and_then(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| {
        panic!(
            "gather.mjs printed no JSON\nstdout:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        )
    });
    assert_eq!(v["ok"], true, "{v}\nstderr:\n{}", out.stderr);
    v["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "relay")
        .cloned()
        .collect()
}

fn logins(http: std::net::SocketAddr, algorithm: &str, identity: &str, integrity: &str) -> u64 {
    metric(
        http,
        &format!(
            "ternd_authenticated_requests_total{{password_algorithm=\"{algorithm}\",identity=\"{identity}\",integrity=\"{integrity}\"}}"
        ),
    )
}

/// RFC 8489 §9.2 and §14.4: the nonce cookie announces username anonymity,
/// libjuice answers with USERHASH, and ternd finds alice behind it.
#[test]
fn s9_2_libjuice_gathers_a_relay_with_userhash_from_the_nonce_cookie() {
    if !prerequisites() {
        return;
    }
    let server = start(&turn_config(
        None,
        &[
            ("http.listen", "127.0.0.1:0"),
            ("turn.password_algorithms", "sha256,md5"),
            ("turn.userhash", "true"),
        ],
    ));
    let relay_ip = server.shared().relay_ipv4.expect("a relay address");
    let relays = gather(server.bound().udp[0]);
    assert!(!relays.is_empty());
    assert_on_relay(&relays[0], relay_ip);
    let http = server.bound().http[0];
    assert!(logins(http, "md5", "hashed", "sha1") >= 1, "libjuice used USERHASH");
    assert_eq!(logins(http, "md5", "plain", "sha1"), 0, "and never USERNAME");
    assert_eq!(
        logins(http, "sha256", "hashed", "sha256") + logins(http, "sha256", "hashed", "sha1"),
        0,
        "libjuice keeps MD5 keys (see the module docs)"
    );
}

/// Without the cookie (the default), libjuice authenticates as RFC 5389 says.
#[test]
fn s9_2_libjuice_without_the_cookie_sends_username() {
    if !prerequisites() {
        return;
    }
    let server = start(&turn_config(None, &[("http.listen", "127.0.0.1:0")]));
    let relays = gather(server.bound().udp[0]);
    assert!(!relays.is_empty());
    let http = server.bound().http[0];
    assert!(logins(http, "md5", "plain", "sha1") >= 1);
    assert_eq!(logins(http, "md5", "hashed", "sha1"), 0);
}
