//! The iceServers JSON (`{"iceServers":[...],"ttl":N}`) that the HTTP API
//! hands out and `ternd credentials --json` prints, and the ports it names.

use std::net::{IpAddr, SocketAddr};

use crate::config::Config;
use crate::server::BoundAddrs;

/// The ports clients reach each transport on.
#[derive(Debug, Clone, Copy, Default)]
pub struct IcePorts {
    pub udp: Option<u16>,
    pub tcp: Option<u16>,
    pub tls: Option<u16>,
    /// TURN over DTLS (RFC 7350); None without a `listen.dtls`.
    pub dtls: Option<u16>,
}

impl IcePorts {
    /// The first address of each transport's list.
    fn first_of(udp: &[SocketAddr], tcp: &[SocketAddr], tls: &[SocketAddr], dtls: &[SocketAddr]) -> Self {
        let port = |v: &[SocketAddr]| v.first().map(|a| a.port());
        IcePorts {
            udp: port(udp),
            tcp: port(tcp),
            tls: port(tls),
            dtls: port(dtls),
        }
    }

    /// The configured ports (for `ternd credentials`, which binds nothing).
    pub fn from_config(config: &Config) -> Self {
        Self::first_of(
            &config.listen.udp,
            &config.listen.tcp,
            &config.listen.tls,
            &config.listen.dtls,
        )
    }

    /// The ports actually bound (port 0 resolved).
    pub fn from_bound(bound: &BoundAddrs) -> Self {
        Self::first_of(&bound.udp, &bound.tcp, &bound.tls, &bound.dtls)
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
    // Only with a DTLS listener: Chromium (156) turns any `turns:` URL into
    // TLS over TCP whatever its transport says, so this form is for the
    // clients that do speak DTLS (libwebrtc since 2026, coturn's tools).
    if let Some(p) = ports.dtls {
        turn.push(format!("turns:{host}:{p}?transport=udp"));
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

/// Where the host of the handed-out URLs comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceHost {
    /// Always this name or address: `http.public_host`, or where STUN/TURN
    /// listen when HTTP listens elsewhere.
    Fixed(String),
    /// The Host header of each request: STUN/TURN listen wherever HTTP does.
    FromRequest,
}

/// Chooses [`IceHost`]: `http.public_host` when set; else the Host header,
/// unless STUN/TURN listen only on specific addresses and HTTP on others
/// (HTTP on 127.0.0.1 with TURN on 127.0.0.2, HTTP on all addresses with
/// TURN on one): then the Host header names a place with no STUN/TURN, so
/// the first TURN listener's address is used instead (its public address
/// when `relay.external_ip` maps it), and the second value is a warning for
/// the start log.
pub fn choose_host(
    public_host: &str,
    http: &[SocketAddr],
    turn: &BoundAddrs,
    external_ips: &[(IpAddr, IpAddr)],
) -> (IceHost, Option<String>) {
    if !public_host.is_empty() {
        return (IceHost::Fixed(public_host.to_string()), None);
    }
    let turn_ips: Vec<IpAddr> = turn
        .udp
        .iter()
        .chain(&turn.tcp)
        .chain(&turn.tls)
        .chain(&turn.dtls)
        .map(|a| a.ip())
        .collect();
    let Some(&first) = turn_ips.first() else {
        return (IceHost::FromRequest, None);
    };
    let elsewhere = |h: &SocketAddr| !turn_ips.contains(&h.ip());
    if turn_ips.iter().any(|ip| ip.is_unspecified()) || !http.iter().any(elsewhere) {
        return (IceHost::FromRequest, None);
    }
    let host = external_ips
        .iter()
        .find(|(private, _)| *private == first)
        .map_or(first, |(_, public)| *public)
        .to_string();
    let http_list: Vec<String> = http.iter().map(|a| a.ip().to_string()).collect();
    let turn_list: Vec<String> = turn_ips.iter().map(IpAddr::to_string).collect();
    let warning = format!(
        "HTTP listens on {} but STUN/TURN only on {}: the iceServers URLs name {host}, not the Host of the request; set http.public_host to name another",
        http_list.join(", "),
        turn_list.join(", ")
    );
    (IceHost::Fixed(host), Some(warning))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    fn turn(list: &[&str]) -> BoundAddrs {
        BoundAddrs {
            udp: addrs(list),
            tcp: addrs(list),
            ..Default::default()
        }
    }

    #[test]
    fn rfc7350_turns_over_udp_is_handed_out_only_with_a_dtls_listener() {
        let mut ports = IcePorts {
            udp: Some(3478),
            tls: Some(5349),
            ..Default::default()
        };
        let without = ice_servers_json(ports, "h", "u", "p", 60);
        assert!(without.contains("turns:h:5349?transport=tcp"), "{without}");
        assert!(!without.contains("turns:h:5349?transport=udp"), "{without}");
        ports.dtls = Some(5349);
        let with = ice_servers_json(ports, "h", "u", "p", 60);
        assert!(with.contains("turns:h:5349?transport=tcp"), "{with}");
        assert!(with.contains("turns:h:5349?transport=udp"), "{with}");
    }

    #[test]
    fn the_host_header_serves_only_where_turn_listens_too() {
        let http = addrs(&["127.0.0.1:8080"]);
        let fixed = |h: &str| IceHost::Fixed(h.to_string());
        // The laptop default: TURN on all addresses.
        let wild = turn(&["0.0.0.0:3478", "[::]:3478"]);
        assert_eq!(choose_host("", &http, &wild, &[]), (IceHost::FromRequest, None));
        // Same address.
        let same = turn(&["127.0.0.1:3478"]);
        assert_eq!(choose_host("", &http, &same, &[]), (IceHost::FromRequest, None));
        // public_host wins.
        let other = turn(&["127.0.0.2:3478"]);
        assert_eq!(
            choose_host("turn.example.org", &http, &other, &[]),
            (fixed("turn.example.org"), None)
        );
        // Elsewhere: the TURN address, with a warning.
        let (host, warning) = choose_host("", &http, &other, &[]);
        assert_eq!(host, fixed("127.0.0.2"));
        assert!(warning.unwrap().contains("http.public_host"));
        // HTTP on all addresses, TURN on one: its public address if mapped.
        let private: IpAddr = "10.0.0.5".parse().unwrap();
        let public: IpAddr = "203.0.113.7".parse().unwrap();
        let (host, _) = choose_host(
            "",
            &addrs(&["0.0.0.0:8080"]),
            &turn(&["10.0.0.5:3478"]),
            &[(private, public)],
        );
        assert_eq!(host, fixed("203.0.113.7"));
        // No TURN listener: nothing better than the Host header.
        assert_eq!(
            choose_host("", &http, &BoundAddrs::default(), &[]),
            (IceHost::FromRequest, None)
        );
    }
}
