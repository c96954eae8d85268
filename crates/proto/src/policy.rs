//! Which peer addresses a client may relay to (DESIGN.md §5). Default deny
//! for special-purpose ranges; an explicit allow list overrides; the server's
//! own relay addresses are always allowed so two clients can talk.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::addr::PeerAddr;

/// An IP network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip.trim().parse().map_err(|_| format!("`{s}` is not an IP network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .map_err(|_| format!("`{s}`: bad prefix length"))?,
            None => max,
        };
        IpNet::new(addr, prefix).ok_or_else(|| format!("`{s}`: prefix longer than {max}"))
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Special-purpose ranges refused as peers unless allowed explicitly.
pub const DEFAULT_DENY: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/32",
    "2002::/16",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

#[derive(Debug, Clone)]
pub struct PeerPolicy {
    pub deny: Vec<IpNet>,
    pub allow: Vec<IpNet>,
    /// The server's own relay addresses (internal and external): allowed as
    /// peers on relay ports only, so two clients of this server can talk but
    /// nothing else listening on the host is reachable through it.
    pub own: Vec<IpAddr>,
    pub own_ports: std::ops::RangeInclusive<u16>,
}

impl Default for PeerPolicy {
    fn default() -> Self {
        PeerPolicy {
            deny: DEFAULT_DENY
                .iter()
                .map(|s| s.parse().expect("valid built-in range"))
                .collect(),
            allow: vec![],
            own: vec![],
            own_ports: 49152..=65535,
        }
    }
}

/// Reduces IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and
/// deprecated IPv4-compatible (::a.b.c.d, RFC 4291 §2.5.5.1) addresses to the
/// IPv4 address they reach, so the IPv4 rules apply. IPv4-compatible forms are
/// checked as their embedded address rather than denied outright: a host that
/// still routes them reaches that IPv4 address, so that is what policy judges
/// (:: and ::1 are not IPv4-compatible and stay IPv6).
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            let o = v6.octets();
            let embedded = IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return embedded;
            }
            if s[..6] == [0; 6] && u128::from(v6) > 1 {
                return embedded;
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

impl PeerPolicy {
    /// True if a client may relay to `peer`: one of the server's own relay
    /// addresses on a relay port, an explicitly allowed network, or anything
    /// outside the denied ranges. The own-address rule comes first: an allow
    /// list covering the server's address must not open the host's other
    /// ports (its own STUN listener, SSH, a local database).
    pub fn allows(&self, peer: PeerAddr) -> bool {
        let ip = peer.ip();
        let plain = unmap(ip);
        if self.is_own(ip) {
            return self.own_ports.contains(&peer.0.port());
        }
        let listed = |nets: &[IpNet]| nets.iter().any(|n| n.contains(ip) || n.contains(plain));
        if listed(&self.allow) {
            return true;
        }
        !(listed(&self.deny) || plain.is_unspecified() || plain == IpAddr::V6(Ipv6Addr::LOCALHOST))
    }

    /// One of the server's own addresses, also in IPv4-mapped or NAT64
    /// form. The per-packet check: only these can pass the permission (an
    /// IP) and still be refused (a port outside the relay range).
    pub fn is_own(&self, ip: IpAddr) -> bool {
        !self.own.is_empty() && (self.own.contains(&ip) || self.own.contains(&unmap(ip)))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn ip(s: &str) -> PeerAddr {
        PeerAddr(SocketAddr::new(s.parse().unwrap(), 3478))
    }

    #[test]
    fn default_denies_special_ranges() {
        let p = PeerPolicy::default();
        for bad in [
            "127.0.0.1",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(!p.allows(ip(bad)), "{bad} must be denied");
        }
        // Mapped and NAT64 forms are refused outright (DESIGN.md §5 lists their
        // prefixes), and their embedded IPv4 address is checked as well.
        assert!(!p.allows(ip("::ffff:8.8.8.8")));
        for good in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(p.allows(ip(good)), "{good} must be allowed");
        }
    }

    #[test]
    fn allow_list_and_own_addresses_override() {
        let mut p = PeerPolicy::default();
        p.allow.push("198.51.100.0/24".parse().unwrap());
        p.own.push("10.0.0.5".parse().unwrap());
        assert!(p.allows(ip("198.51.100.7")));
        assert!(p.allows(ip("::ffff:198.51.100.7")));
        assert!(
            p.allows(PeerAddr("10.0.0.5:50000".parse().unwrap())),
            "own relay address on a relay port"
        );
        assert!(!p.allows(ip("10.0.0.5")), "own address outside the relay range");
        assert!(!p.allows(ip("10.0.0.6")));
        // The per-packet check sees our address in every form the permission
        // check unmaps, so NAT64 cannot reach a port outside the relay range.
        for form in ["10.0.0.5", "::ffff:10.0.0.5", "64:ff9b::a00:5"] {
            assert!(p.is_own(form.parse().unwrap()), "{form}");
            assert!(!p.allows(ip(form)), "{form} outside the relay range");
        }
        assert!(!p.is_own("10.0.0.6".parse().unwrap()));
    }

    #[test]
    fn an_allow_list_covering_our_address_opens_relay_ports_only() {
        let mut p = PeerPolicy::default();
        p.allow.push("127.0.0.0/8".parse().unwrap());
        p.own.push("127.0.0.1".parse().unwrap());
        p.own_ports = 50000..=50010;
        assert!(p.allows(PeerAddr("127.0.0.1:50005".parse().unwrap())));
        assert!(
            !p.allows(PeerAddr("127.0.0.1:3478".parse().unwrap())),
            "our STUN listener"
        );
        assert!(!p.allows(PeerAddr("[::ffff:127.0.0.1]:22".parse().unwrap())));
        assert!(
            p.allows(PeerAddr("127.0.0.2:3478".parse().unwrap())),
            "another loopback host"
        );
    }

    #[test]
    fn denies_local_nat64_site_local_discard_and_ipv4_compatible() {
        let p = PeerPolicy::default();
        for bad in [
            "64:ff9b:1::1",
            "64:ff9b:1:ffff::808:808",
            "fec0::1",
            "feff::1",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "::127.0.0.1",
            "::10.0.0.1",
            "::192.168.1.1",
        ] {
            assert!(!p.allows(ip(bad)), "{bad} must be denied");
        }
        // IPv4-compatible is judged as the IPv4 address it embeds.
        assert_eq!(
            unmap("::8.8.8.8".parse().unwrap()),
            "8.8.8.8".parse::<IpAddr>().unwrap()
        );
        assert!(p.allows(ip("::8.8.8.8")));
        assert_eq!(unmap("::1".parse().unwrap()), "::1".parse::<IpAddr>().unwrap());
        assert_eq!(unmap("::".parse().unwrap()), "::".parse::<IpAddr>().unwrap());
        assert!(p.allows(ip("100:0:0:1::1")), "outside 100::/64");
    }

    #[test]
    fn parses_networks() {
        assert_eq!("10.0.0.0/8".parse::<IpNet>().unwrap().to_string(), "10.0.0.0/8");
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nope".parse::<IpNet>().is_err());
        assert!("0.0.0.0/0"
            .parse::<IpNet>()
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
    }
}
