//! The PROXY protocol (haproxy's proxy-protocol.txt, versions 1 and 2) on
//! chosen TCP/TLS listeners (`listen.proxy_protocol`): an L4 load balancer
//! in front of ternd writes the client's real address before the first
//! byte of the client's own stream, and ternd takes that address as the
//! client's for everything (XOR-MAPPED-ADDRESS, nonces, permissions,
//! quotas, connection budgets, logs). Only sources in `listen.proxy_trusted`
//! may speak it; any other source is closed unread, since whoever may write
//! the header may claim any address.
//!
//! The header is parsed by the `ppp` crate from bytes peeked off the socket
//! and only its own bytes are consumed, so what follows it (a TLS
//! ClientHello, a STUN message) is read by the usual code.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{HeaderResult, PartialResult};
use proto::policy::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A v1 header is at most 107 bytes; a v2 one is 16 plus its addresses and
/// TLVs, which load balancers keep short. More than this is not a header.
const MAX_HEADER: usize = 1024;
/// How long to wait for the rest of a header that arrived in pieces.
const RETRY: Duration = Duration::from_millis(5);

/// Which listeners expect a header and whom they believe.
#[derive(Debug, Clone)]
pub struct ProxyRules {
    pub trusted: Vec<IpNet>,
    /// The whole header must arrive within this (`tls.handshake_timeout`).
    pub timeout: Duration,
}

/// Why a connection to a PROXY-protocol listener is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// The source is not in the trusted list.
    Untrusted,
    /// No valid header in time (garbage, too long, closed, timed out).
    Header,
}

impl ProxyRules {
    pub fn trusts(&self, source: SocketAddr) -> bool {
        let ip = proto::canonical(source).ip();
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// Reads the header from `tcp` (accepted from `peer`) and returns the
    /// client address it carries: the source address of a PROXY (v1 TCP4/
    /// TCP6, v2 PROXY over IPv4/IPv6) header, or `peer` itself for a v1
    /// UNKNOWN or v2 LOCAL header (the balancer's own health checks).
    pub async fn read(&self, tcp: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, ProxyError> {
        if !self.trusts(peer) {
            return Err(ProxyError::Untrusted);
        }
        tokio::time::timeout(self.timeout, read_header(tcp, peer))
            .await
            .unwrap_or(Err(ProxyError::Header))
    }
}

async fn read_header(tcp: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, ProxyError> {
    let mut buf = vec![0u8; MAX_HEADER];
    loop {
        let n = tcp.peek(&mut buf).await.map_err(|_| ProxyError::Header)?;
        if n == 0 {
            return Err(ProxyError::Header);
        }
        let (len, client) = match HeaderResult::parse(&buf[..n]) {
            r if r.is_incomplete() => {
                if n == MAX_HEADER {
                    return Err(ProxyError::Header);
                }
                // The caller's timeout bounds this loop.
                tokio::time::sleep(RETRY).await;
                continue;
            }
            HeaderResult::V1(Ok(h)) => (h.header.len(), v1_source(&h.addresses).unwrap_or(peer)),
            HeaderResult::V2(Ok(h)) => {
                let source = match h.command {
                    ppp::v2::Command::Proxy => v2_source(&h.addresses),
                    ppp::v2::Command::Local => None,
                };
                (h.len(), source.unwrap_or(peer))
            }
            _ => return Err(ProxyError::Header),
        };
        let mut header = vec![0u8; len];
        tcp.read_exact(&mut header).await.map_err(|_| ProxyError::Header)?;
        return Ok(client);
    }
}

fn v1_source(a: &ppp::v1::Addresses) -> Option<SocketAddr> {
    match a {
        ppp::v1::Addresses::Tcp4(a) => Some((a.source_address, a.source_port).into()),
        ppp::v1::Addresses::Tcp6(a) => Some((a.source_address, a.source_port).into()),
        ppp::v1::Addresses::Unknown => None,
    }
}

fn v2_source(a: &ppp::v2::Addresses) -> Option<SocketAddr> {
    match a {
        ppp::v2::Addresses::IPv4(a) => Some((a.source_address, a.source_port).into()),
        ppp::v2::Addresses::IPv6(a) => Some((a.source_address, a.source_port).into()),
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    }
}
