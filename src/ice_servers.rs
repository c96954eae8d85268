//! The iceServers JSON (`{"iceServers":[...],"ttl":N}`) that the HTTP API
//! hands out and `ternd credentials --json` prints, and the ports it names.

use std::net::SocketAddr;

use crate::config::Config;
use crate::server::BoundAddrs;

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
