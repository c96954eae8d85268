//! `relay.external_ip` entries: the public address a 1:1 NAT maps to one of
//! our relay addresses, written "PUBLIC" or "PUBLIC/PRIVATE".

use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

/// One public address and the private (relay) address it stands for; with
/// no private address, the relay address of the same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ExternalIp {
    pub public: IpAddr,
    pub private: Option<IpAddr>,
}

impl FromStr for ExternalIp {
    type Err = String;
    fn from_str(s: &str) -> Result<ExternalIp, String> {
        let (public, private) = match s.split_once('/') {
            Some((p, q)) => (p, Some(q)),
            None => (s, None),
        };
        let public = public
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: bad public address"))?;
        let private = match private {
            Some(q) => Some(q.trim().parse().map_err(|_| format!("`{s}`: bad private address"))?),
            None => None,
        };
        Ok(ExternalIp { public, private })
    }
}

impl TryFrom<String> for ExternalIp {
    type Error = String;
    fn try_from(s: String) -> Result<ExternalIp, String> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load_error;

    #[test]
    fn parses_public_and_pair() {
        assert_eq!(
            "203.0.113.1".parse(),
            Ok(ExternalIp {
                public: "203.0.113.1".parse().unwrap(),
                private: None
            })
        );
        assert_eq!(
            "203.0.113.1/10.99.0.2".parse(),
            Ok(ExternalIp {
                public: "203.0.113.1".parse().unwrap(),
                private: Some("10.99.0.2".parse().unwrap())
            })
        );
        assert!(" 2001:db8::1 ".parse::<ExternalIp>().is_ok());
    }

    #[test]
    fn refuses_bad_addresses() {
        assert!("nat.example.org".parse::<ExternalIp>().unwrap_err().contains("public"));
        assert!("203.0.113.1/".parse::<ExternalIp>().unwrap_err().contains("private"));
        assert!("203.0.113.1/10.99.0.2/8".parse::<ExternalIp>().is_err());
    }

    #[test]
    fn errors_name_the_key() {
        let e = load_error("relay.external_ip", "203.0.113.1/nope");
        assert!(e.starts_with("config key `relay.external_ip"), "{e}");
        assert!(e.contains("bad private address"), "{e}");
    }
}
