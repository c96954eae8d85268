//! The startup banner: what a newcomer needs to point a client at ternd.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use crate::server::BoundAddrs;

/// Renders the banner for the bound listeners. Wildcard addresses are shown
/// as loopback plus a hint, since the right public address depends on where
/// clients are.
pub fn render(bound: &BoundAddrs, shards: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ternd {} is running ({shards} shard{})",
        env!("CARGO_PKG_VERSION"),
        if shards == 1 { "" } else { "s" }
    );
    let mut any_wildcard = false;
    let mut url = |scheme: &str, a: &SocketAddr, transport: Option<&str>| {
        any_wildcard |= a.ip().is_unspecified();
        let host = match a.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let t = transport.map(|t| format!("?transport={t}")).unwrap_or_default();
        format!("{scheme}:{host}:{}{t}", a.port())
    };
    let mut lines = Vec::new();
    for a in &bound.udp {
        lines.push((url("stun", a, None), "STUN over UDP"));
    }
    for a in &bound.tcp {
        lines.push((url("stun", a, Some("tcp")), "STUN over TCP"));
    }
    for a in &bound.tls {
        lines.push((url("stuns", a, None), "STUN over TLS"));
    }
    for (u, what) in lines {
        let _ = writeln!(s, "  {u:<40} {what}");
    }
    if any_wildcard {
        let _ = writeln!(
            s,
            "  (listening on all addresses: replace 127.0.0.1 / [::1] with this host's public address for remote clients)"
        );
    }
    let _ = writeln!(s, "Try it: turnutils_stunclient 127.0.0.1   (Ctrl-C stops the server)");
    s
}
