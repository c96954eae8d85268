//! The startup banner: what a newcomer needs to point a client at ternd,
//! and the iceServers JSON that `ternd credentials --json` prints.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::config::Config;
use crate::server::setup::Shared;
use crate::server::BoundAddrs;

fn host_of(a: &SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// Renders the banner for the bound listeners. Wildcard addresses are shown
/// as loopback plus a hint, since the right public address depends on where
/// clients are. Secrets are never printed; a sample credential derived from
/// them is.
pub fn render(bound: &BoundAddrs, shards: usize, shared: &Shared) -> String {
    let mut s = String::new();
    let plural = if shards == 1 { "" } else { "s" };
    let _ = writeln!(
        s,
        "ternd {} is running ({shards} shard{plural})",
        env!("CARGO_PKG_VERSION")
    );
    let any_wildcard = bound
        .udp
        .iter()
        .chain(&bound.tcp)
        .chain(&bound.tls)
        .any(|a| a.ip().is_unspecified());
    let mut lines = Vec::new();
    for a in &bound.udp {
        lines.push((format!("stun:{}:{}", host_of(a), a.port()), "STUN over UDP"));
        lines.push((
            format!("turn:{}:{}?transport=udp", host_of(a), a.port()),
            "TURN over UDP",
        ));
    }
    for a in &bound.tcp {
        lines.push((
            format!("turn:{}:{}?transport=tcp", host_of(a), a.port()),
            "TURN over TCP",
        ));
    }
    for a in &bound.tls {
        lines.push((
            format!("turns:{}:{}?transport=tcp", host_of(a), a.port()),
            "TURN over TLS",
        ));
    }
    for (u, what) in lines {
        let _ = writeln!(s, "  {u:<44} {what}");
    }
    if any_wildcard {
        let _ = writeln!(
            s,
            "  (listening on all addresses: use this host's public address instead of 127.0.0.1 / [::1] for remote clients)"
        );
    }
    let relays: Vec<String> = shared
        .relay_ipv4
        .iter()
        .chain(&shared.relay_ipv6)
        .map(|ip| ip.to_string())
        .collect();
    let _ = writeln!(
        s,
        "Relay addresses: {}",
        if relays.is_empty() {
            "none (TURN disabled)".into()
        } else {
            relays.join(", ")
        }
    );
    if let Some((user, pass)) = shared.mint("demo", Duration::from_secs(24 * 3600)) {
        let origin = if shared.generated_secret {
            "random secret made at start"
        } else {
            "turn.secrets"
        };
        let _ = writeln!(s, "Sample TURN credential (24 h, from the {origin}):");
        let _ = writeln!(s, "  username: {user}");
        let _ = writeln!(s, "  password: {pass}");
        if let Some(a) = bound.udp.first() {
            let _ = writeln!(
                s,
                "Try it: turnutils_uclient -u '{user}' -w '{pass}' -p {} {}",
                a.port(),
                host_of(a).trim_matches(|c| c == '[' || c == ']')
            );
        }
    }
    for a in &bound.http {
        let base = format!("http://{}:{}", host_of(a), a.port());
        let _ = writeln!(s, "Sample peers (open in a browser): {base}/");
        let _ = writeln!(s, "iceServers for RTCPeerConnection: {base}/api/ice-servers");
    }
    let _ = writeln!(s, "Ctrl-C stops the server.");
    s
}

/// The ports clients reach each transport on.
#[derive(Debug, Clone, Copy, Default)]
pub struct IcePorts {
    pub udp: Option<u16>,
    pub tcp: Option<u16>,
    pub tls: Option<u16>,
}

impl IcePorts {
    /// The first address of each transport's list.
    fn first_of(udp: &[SocketAddr], tcp: &[SocketAddr], tls: &[SocketAddr]) -> Self {
        let port = |v: &[SocketAddr]| v.first().map(|a| a.port());
        IcePorts {
            udp: port(udp),
            tcp: port(tcp),
            tls: port(tls),
        }
    }

    /// The configured ports (for `ternd credentials`, which binds nothing).
    pub fn from_config(config: &Config) -> Self {
        Self::first_of(&config.listen.udp, &config.listen.tcp, &config.listen.tls)
    }

    /// The ports actually bound (port 0 resolved).
    pub fn from_bound(bound: &BoundAddrs) -> Self {
        Self::first_of(&bound.udp, &bound.tcp, &bound.tls)
    }
}

/// `{"iceServers":[...],"ttl":N}` for these ports, ready to paste into
/// `new RTCPeerConnection(...)`.
pub fn ice_servers_json(ports: IcePorts, host: &str, username: &str, password: &str, ttl: u64) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let mut stun = Vec::new();
    let mut turn = Vec::new();
    if let Some(p) = ports.udp {
        stun.push(format!("stun:{host}:{p}"));
        turn.push(format!("turn:{host}:{p}?transport=udp"));
    }
    if let Some(p) = ports.tcp {
        turn.push(format!("turn:{host}:{p}?transport=tcp"));
    }
    if let Some(p) = ports.tls {
        turn.push(format!("turns:{host}:{p}?transport=tcp"));
    }
    let mut servers = Vec::new();
    if !stun.is_empty() {
        servers.push(serde_json::json!({ "urls": stun }));
    }
    if !turn.is_empty() {
        servers.push(serde_json::json!({ "urls": turn, "username": username, "credential": password }));
    }
    serde_json::json!({ "iceServers": servers, "ttl": ttl }).to_string()
}
