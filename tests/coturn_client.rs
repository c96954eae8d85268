//! coturn's `turnutils_stunclient` (Debian package `coturn`), an independent
//! STUN client, against the in-process server.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::*;

/// Parses "UDP reflexive addr: 127.0.0.1:58014" (IPv6 unbracketed:
/// "::1:43200") from the tool's output.
fn reflexive(stdout: &str) -> Option<SocketAddr> {
    let addr = stdout
        .lines()
        .find_map(|l| l.split_once("UDP reflexive addr: ").map(|(_, a)| a.trim()))?;
    let (ip, port) = addr.rsplit_once(':')?;
    Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
}

#[test]
fn turnutils_stunclient_gets_its_reflexive_address() {
    let Some(bin) = tool("turnutils_stunclient") else {
        return;
    };
    let server = start(&test_config(None, &[]));
    for &addr in &server.bound().udp {
        // -L pins the client's local address, so the expected answer is known.
        let local = if addr.is_ipv4() { "127.0.0.1" } else { "::1" };
        let out = Command::new(&bin)
            .args(["-p", &addr.port().to_string(), "-L", local, &addr.ip().to_string()])
            .output()
            .expect("run turnutils_stunclient");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "turnutils_stunclient failed: {stdout}");
        let mapped = reflexive(&stdout).unwrap_or_else(|| panic!("no reflexive address in: {stdout}"));
        assert_eq!(mapped.ip().to_string(), local, "{stdout}");
        assert_ne!(mapped.port(), 0);
    }
    let stats = server.shutdown().unwrap();
    assert!(stats.binding_success() >= 2, "ternd answered the tool");
}
