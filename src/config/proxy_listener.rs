//! `listen.proxy_protocol` entries: a stream listener, written "tcp:ADDR" or
//! "tls:ADDR" exactly as it appears in `listen.tcp` / `listen.tls`, that
//! expects a PROXY protocol header before each connection's own bytes.

use std::net::SocketAddr;
use std::str::FromStr;

use serde::Deserialize;

/// One listener that speaks the PROXY protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ProxyListener {
    pub tls: bool,
    pub addr: SocketAddr,
}

impl FromStr for ProxyListener {
    type Err = String;
    fn from_str(s: &str) -> Result<ProxyListener, String> {
        let (kind, addr) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}`: write tcp:ADDR or tls:ADDR"))?;
        let tls = match kind.trim() {
            "tcp" => false,
            "tls" => true,
            _ => return Err(format!("`{s}`: write tcp:ADDR or tls:ADDR")),
        };
        let addr = addr.trim().parse().map_err(|_| format!("`{s}`: bad address"))?;
        Ok(ProxyListener { tls, addr })
    }
}

impl TryFrom<String> for ProxyListener {
    type Error = String;
    fn try_from(s: String) -> Result<ProxyListener, String> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kind_and_address() {
        let p: ProxyListener = "tls:[::1]:5349".parse().unwrap();
        assert!(p.tls);
        assert_eq!(p.addr, "[::1]:5349".parse().unwrap());
        assert!(!"tcp:0.0.0.0:3478".parse::<ProxyListener>().unwrap().tls);
        assert!("udp:0.0.0.0:3478".parse::<ProxyListener>().is_err());
        assert!("0.0.0.0:3478".parse::<ProxyListener>().is_err());
    }
}
