//! The NAT's mapping behaviour (RFC 4787 §4.1, tested as in RFC 5780 §4.3):
//! Binding requests from ONE local UDP socket to the primary address, to a
//! second server address and to a second port, and a comparison of the
//! XOR-MAPPED-ADDRESS each one reports.

use std::net::SocketAddr;
use std::time::Instant;

use proto::wire::{attr, Method};
use serde_json::json;

use super::checks::Options;
use super::conn::Conn;
use super::report::{Check, Status};
use super::session::Session;

const WHAT: &str = "nat mapping";

/// The servers to ask: primary, then the alternate address, then the
/// alternate port (each optional).
pub struct Probes {
    pub primary: SocketAddr,
    pub alt_server: Option<SocketAddr>,
    pub alt_port: Option<SocketAddr>,
}

pub fn nat_mapping(p: &Probes, opts: &Options) -> Check {
    if p.alt_server.is_none() && p.alt_port.is_none() {
        return Check::new(
            Status::Info,
            "nat-mapping",
            WHAT,
            "needs a second server address (--alt-server HOST[:PORT] or --alt-port PORT)",
        )
        .with("verdict", "unknown")
        .with("mappings", json!([]));
    }
    let sock = match Conn::udp_socket(opts.bind, p.primary) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot bind a UDP socket: {e}"), &[]),
    };
    let mut seen: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    for server in [Some(p.primary), p.alt_server, p.alt_port].into_iter().flatten() {
        let conn = match sock.try_clone() {
            Ok(sock) => Conn::udp(sock, server),
            Err(e) => return fail(format!("cannot share the UDP socket: {e}"), &seen),
        };
        // Each Binding gets the full timeout: a slow second address must not
        // eat the time of the third.
        let mut s = Session::new(conn, None, Instant::now() + opts.timeout);
        match s
            .request(Method::BINDING, &|_| Ok(()))
            .and_then(|r| r.xor_address(attr::XOR_MAPPED_ADDRESS))
        {
            Ok(reflexive) => seen.push((server, reflexive)),
            Err(e) => return fail(format!("binding to {server}: {e}"), &seen),
        }
    }
    let primary = seen[0].1;
    let by_server = p
        .alt_server
        .and_then(|a| seen.iter().find(|(s, _)| *s == a))
        .map(|m| m.1);
    let by_port = p.alt_port.and_then(|a| seen.iter().find(|(s, _)| *s == a)).map(|m| m.1);
    let (verdict, why) = verdict(primary, by_server, by_port);
    let list = seen.iter().map(|(s, _)| s.to_string()).collect::<Vec<_>>().join(", ");
    let detail = match verdict {
        "endpoint-independent" => format!("{verdict} (same reflexive {primary} from {list})"),
        _ => format!(
            "{verdict} ({why}: {})",
            seen.iter()
                .map(|(s, r)| format!("{r} from {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Check::new(Status::Info, "nat-mapping", WHAT, detail)
        .with("verdict", verdict)
        .with("mappings", mappings(&seen))
}

/// RFC 5780 §4.3 in RFC 4787 terms. `by_server`: the mapping seen by the
/// other IP address; `by_port`: the one seen by the other port of the
/// primary address.
fn verdict(
    primary: SocketAddr,
    by_server: Option<SocketAddr>,
    by_port: Option<SocketAddr>,
) -> (&'static str, &'static str) {
    match (by_server, by_port) {
        (Some(s), Some(_)) if s == primary => ("endpoint-independent", ""),
        (Some(_), Some(p)) if p == primary => ("address-dependent", "a new mapping per server address only"),
        (Some(_), Some(_)) => (
            "address-and-port-dependent",
            "a new mapping per server address and port",
        ),
        (Some(s), None) if s == primary => ("endpoint-independent", ""),
        // Without a second port, "address" and "address and port" look alike.
        (Some(_), None) => ("unknown", "not endpoint-independent; add --alt-port to tell which"),
        (None, Some(p)) if p != primary => ("address-and-port-dependent", "a new mapping per server port"),
        // Same mapping for two ports of one address: endpoint-independent or
        // address-dependent; only a second address tells.
        (None, _) => ("unknown", "same mapping for both ports; add --alt-server to tell more"),
    }
}

fn mappings(seen: &[(SocketAddr, SocketAddr)]) -> serde_json::Value {
    seen.iter()
        .map(|(s, r)| json!({"server": s.to_string(), "reflexive": r.to_string()}))
        .collect()
}

fn fail(detail: String, seen: &[(SocketAddr, SocketAddr)]) -> Check {
    Check::new(Status::Fail, "nat-mapping", WHAT, detail)
        .with("verdict", "unknown")
        .with("mappings", mappings(seen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5780_verdicts() {
        let a: SocketAddr = "198.51.100.11:40312".parse().unwrap();
        let b: SocketAddr = "198.51.100.11:40313".parse().unwrap();
        let c: SocketAddr = "198.51.100.11:40314".parse().unwrap();
        assert_eq!(verdict(a, Some(a), Some(a)).0, "endpoint-independent");
        assert_eq!(verdict(a, Some(a), None).0, "endpoint-independent");
        assert_eq!(verdict(a, Some(b), Some(a)).0, "address-dependent");
        assert_eq!(verdict(a, Some(b), Some(c)).0, "address-and-port-dependent");
        assert_eq!(verdict(a, None, Some(b)).0, "address-and-port-dependent");
        assert_eq!(verdict(a, Some(b), None).0, "unknown");
        assert_eq!(verdict(a, None, Some(a)).0, "unknown");
    }
}
