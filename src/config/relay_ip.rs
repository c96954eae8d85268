//! `relay.ipv4` and `relay.ipv6`: the address relay sockets of one family
//! bind to, checked for its family where it is read.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer};

/// Where relays of one address family live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayIp {
    /// `""`: no relays of this family.
    Off,
    /// `"auto"`: the first usable address of this host (found at start).
    Auto,
    /// A specific address of the family.
    Addr(IpAddr),
}

impl RelayIp {
    /// Parses `""`, `"auto"` or a specific (not unspecified) address of
    /// the IPv4 family when `v4`, else IPv6.
    pub fn parse(s: &str, v4: bool) -> Result<RelayIp, String> {
        match s.trim() {
            "" => Ok(RelayIp::Off),
            "auto" => Ok(RelayIp::Auto),
            s => match s.parse::<IpAddr>() {
                Ok(ip) if ip.is_ipv4() == v4 && !ip.is_unspecified() => Ok(RelayIp::Addr(ip)),
                _ => Err(format!(
                    "`{s}` is not \"auto\", \"\" or a specific {} address",
                    if v4 { "IPv4" } else { "IPv6" }
                )),
            },
        }
    }

    /// `deserialize_with` for `relay.ipv4`.
    pub fn v4<'de, D: Deserializer<'de>>(d: D) -> Result<RelayIp, D::Error> {
        Self::deserialize_family(d, true)
    }

    /// `deserialize_with` for `relay.ipv6`.
    pub fn v6<'de, D: Deserializer<'de>>(d: D) -> Result<RelayIp, D::Error> {
        Self::deserialize_family(d, false)
    }

    fn deserialize_family<'de, D: Deserializer<'de>>(d: D, v4: bool) -> Result<RelayIp, D::Error> {
        RelayIp::parse(&String::deserialize(d)?, v4).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load_error;

    #[test]
    fn parses_off_auto_and_addresses() {
        assert_eq!(RelayIp::parse("", true), Ok(RelayIp::Off));
        assert_eq!(RelayIp::parse("auto", false), Ok(RelayIp::Auto));
        assert_eq!(
            RelayIp::parse("192.0.2.7", true),
            Ok(RelayIp::Addr("192.0.2.7".parse().unwrap()))
        );
        assert_eq!(
            RelayIp::parse("2001:db8::7", false),
            Ok(RelayIp::Addr("2001:db8::7".parse().unwrap()))
        );
    }

    #[test]
    fn refuses_wrong_family_unspecified_and_garbage() {
        assert!(RelayIp::parse("2001:db8::7", true).is_err());
        assert!(RelayIp::parse("192.0.2.7", false).is_err());
        assert!(RelayIp::parse("0.0.0.0", true).is_err());
        assert!(RelayIp::parse("::", false).is_err());
        assert!(RelayIp::parse("Auto-ish", true).is_err());
    }

    #[test]
    fn errors_name_the_key() {
        let e = load_error("relay.ipv4", "::1");
        assert!(e.starts_with("config key `relay.ipv4`: "), "{e}");
        assert!(e.contains("IPv4"), "{e}");
        let e = load_error("relay.ipv6", "127.0.0.1");
        assert!(e.starts_with("config key `relay.ipv6`: "), "{e}");
    }
}
