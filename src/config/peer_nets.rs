//! `peers.allow` and `peers.deny`: lists of IP networks in CIDR form, read
//! into the core's [`IpNet`].

use proto::policy::IpNet;
use serde::Deserializer;

/// `deserialize_with` for a list of networks ("10.0.0.0/8", "2001:db8::1").
pub fn deserialize_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    super::one_or_many::one_or_many::<_, String>(d)?
        .iter()
        .map(|s| s.parse::<IpNet>())
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{load_error, load_with};

    #[test]
    fn reads_networks() {
        let c = load_with(&[
            ("peers.allow", "10.0.0.0/8, 2001:db8::1"),
            ("peers.deny", "198.51.100.0/24"),
        ])
        .unwrap();
        let shown: Vec<String> = c.peers.allow.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "2001:db8::1/128"]);
        assert_eq!(c.peers.deny.len(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        for key in ["peers.allow", "peers.deny"] {
            let e = load_error(key, "10.0.0.0/33");
            assert!(e.starts_with(&format!("config key `{key}")), "{e}");
            assert!(e.contains("prefix longer than 32"), "{e}");
            let e = load_error(key, "ten-slash-eight");
            assert!(e.contains("not an IP network"), "{e}");
        }
    }
}
