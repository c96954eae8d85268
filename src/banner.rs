//! The startup banner: what a newcomer needs to point a client at ternd.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

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
        .chain(&bound.dtls)
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
    for a in &bound.dtls {
        lines.push((
            format!("turns:{}:{}?transport=udp", host_of(a), a.port()),
            "TURN over DTLS",
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
    let bound_relays: Vec<IpAddr> = shared.relay_ipv4.iter().chain(&shared.relay_ipv6).copied().collect();
    let _ = writeln!(
        s,
        "Relay addresses: {}",
        relay_addresses(&bound_relays, &shared.external_ips)
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
            // coturn's uclient needs a peer: `-y` makes two clients each
            // other's peer through their relay addresses (the server's own,
            // which the peer policy allows). `-s` sends Send indications
            // instead of binding channels: the Debian 4.6 uclient picks
            // channel numbers above RFC 8656's 0x4000-0x4FFF, which the
            // default config refuses with 400.
            let _ = writeln!(
                s,
                "Try it: turnutils_uclient -y -s -u '{user}' -w '{pass}' -p {} {}",
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

/// The relay addresses as peers see them: the advertised public address of
/// each bound one (`relay.external_ip`), with the bound address in
/// parentheses when they differ.
fn relay_addresses(bound: &[IpAddr], external_ips: &[(IpAddr, IpAddr)]) -> String {
    if bound.is_empty() {
        return "none (TURN disabled)".into();
    }
    let mut shown = Vec::new();
    for &local in bound {
        let publics: Vec<IpAddr> = external_ips
            .iter()
            .filter(|(private, _)| *private == local)
            .map(|(_, public)| *public)
            .collect();
        if publics.is_empty() {
            shown.push(local.to_string());
        }
        for public in publics {
            shown.push(if public == local {
                local.to_string()
            } else {
                format!("{public} (bound to {local})")
            });
        }
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn relay_line_shows_the_advertised_address_first() {
        let v4 = ip("10.0.0.5");
        let v6 = ip("2001:db8::5");
        assert_eq!(
            relay_addresses(&[v4, v6], &[(v4, ip("203.0.113.7"))]),
            "203.0.113.7 (bound to 10.0.0.5), 2001:db8::5"
        );
        assert_eq!(relay_addresses(&[v4], &[(v4, v4)]), "10.0.0.5");
        assert_eq!(relay_addresses(&[v4], &[]), "10.0.0.5");
        assert_eq!(relay_addresses(&[], &[]), "none (TURN disabled)");
    }
}
