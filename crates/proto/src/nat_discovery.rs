//! RFC 5780 NAT behaviour discovery, server side: two IP addresses and two
//! ports, so four UDP transport addresses, and which of them answers a
//! Binding request.

use std::net::{IpAddr, SocketAddr};

/// The two addresses of an RFC 5780 server (§7): the primary one
/// (`listen.udp`) and the alternate one (`listen.alternate`), whose IP and
/// port both differ from the primary's. The driver binds all four
/// combinations (primary/alternate IP × primary/alternate port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatDiscovery {
    pub primary: SocketAddr,
    pub alternate: SocketAddr,
}

/// CHANGE-REQUEST flags (RFC 5780 §7.2): "A: This is the 'change IP' flag"
/// and "B: This is the 'change port' flag".
const CHANGE_IP: u32 = 0x4;
const CHANGE_PORT: u32 = 0x2;

/// What a CHANGE-REQUEST asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Change {
    pub ip: bool,
    pub port: bool,
}

impl Change {
    /// Decodes the 4-byte value; None if it is not 4 bytes (malformed).
    pub fn decode(value: &[u8]) -> Option<Change> {
        let v = u32::from_be_bytes(value.try_into().ok()?);
        Some(Change {
            ip: v & CHANGE_IP != 0,
            port: v & CHANGE_PORT != 0,
        })
    }
}

/// `b` for `a`, `a` for `b`, None for anything else.
fn swap<T: PartialEq>(x: T, a: T, b: T) -> Option<T> {
    if x == a {
        Some(b)
    } else if x == b {
        Some(a)
    } else {
        None
    }
}

impl NatDiscovery {
    fn other_ip(&self, ip: IpAddr) -> Option<IpAddr> {
        swap(ip, self.primary.ip(), self.alternate.ip())
    }

    fn other_port(&self, port: u16) -> Option<u16> {
        swap(port, self.primary.port(), self.alternate.port())
    }

    /// True if `local` is one of the four addresses.
    pub fn serves(&self, local: SocketAddr) -> bool {
        self.other_ip(local.ip()).is_some() && self.other_port(local.port()).is_some()
    }

    /// The four addresses the driver binds: primary, primary IP with the
    /// alternate port, alternate IP with the primary port, alternate.
    pub fn addresses(&self) -> [SocketAddr; 4] {
        let (p, a) = (self.primary, self.alternate);
        [
            p,
            SocketAddr::new(p.ip(), a.port()),
            SocketAddr::new(a.ip(), p.port()),
            a,
        ]
    }

    /// RFC 5780 §7.3: OTHER-ADDRESS "MUST be an IP address and port that
    /// differ from the source IP and port" of the request's destination: the
    /// other IP with the other port. None if `local` is not one of the four.
    pub fn other_address(&self, local: SocketAddr) -> Option<SocketAddr> {
        Some(SocketAddr::new(
            self.other_ip(local.ip())?,
            self.other_port(local.port())?,
        ))
    }

    /// RFC 5780 §7.3: the address a response to a request that reached
    /// `local` leaves from: with change IP, the alternate IP; with change
    /// port, the alternate port. None if `local` is not one of the four.
    pub fn source(&self, local: SocketAddr, change: Change) -> Option<SocketAddr> {
        let ip = if change.ip {
            self.other_ip(local.ip())?
        } else {
            local.ip()
        };
        let port = if change.port {
            self.other_port(local.port())?
        } else {
            local.port()
        };
        self.serves(local).then_some(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nd() -> NatDiscovery {
        NatDiscovery {
            primary: "127.0.0.1:3478".parse().unwrap(),
            alternate: "127.0.0.2:3479".parse().unwrap(),
        }
    }

    #[test]
    fn change_request_picks_the_asked_address_rfc5780_7_3() {
        let local: SocketAddr = "127.0.0.2:3478".parse().unwrap();
        let both = Change { ip: true, port: true };
        assert_eq!(nd().source(local, both), Some("127.0.0.1:3479".parse().unwrap()));
        let ip = Change { ip: true, port: false };
        assert_eq!(nd().source(local, ip), Some("127.0.0.1:3478".parse().unwrap()));
        assert_eq!(nd().source(local, Change::default()), Some(local));
        assert_eq!(nd().other_address(local), Some("127.0.0.1:3479".parse().unwrap()));
        assert_eq!(nd().source("127.0.0.3:3478".parse().unwrap(), both), None);
        assert_eq!(Change::decode(&[0, 0, 0, 6]), Some(both));
        assert_eq!(Change::decode(&[0, 0, 6]), None);
    }
}
