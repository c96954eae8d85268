//! `turn.password_algorithms` and `turn.rest_hmac`: the hashes a client may
//! pick (RFC 8489 §9.2) and the HMAC REST passwords are made with, by name.

use proto::auth::RestHmac;
use proto::password_algorithm::PasswordAlgorithm;
use serde::Deserialize;

/// One entry of `turn.password_algorithms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigPasswordAlgorithm {
    Md5,
    #[serde(rename = "sha256", alias = "sha-256")]
    Sha256,
}

impl From<ConfigPasswordAlgorithm> for PasswordAlgorithm {
    fn from(a: ConfigPasswordAlgorithm) -> Self {
        match a {
            ConfigPasswordAlgorithm::Md5 => PasswordAlgorithm::Md5,
            ConfigPasswordAlgorithm::Sha256 => PasswordAlgorithm::Sha256,
        }
    }
}

/// `turn.rest_hmac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigRestHmac {
    Sha1,
    #[serde(rename = "sha256", alias = "sha-256")]
    Sha256,
}

impl From<ConfigRestHmac> for RestHmac {
    fn from(h: ConfigRestHmac) -> Self {
        match h {
            ConfigRestHmac::Sha1 => RestHmac::Sha1,
            ConfigRestHmac::Sha256 => RestHmac::Sha256,
        }
    }
}

/// Why a `turn.password_algorithms` list is refused, if it is.
pub fn check(list: &[ConfigPasswordAlgorithm]) -> Result<(), &'static str> {
    if !list.contains(&ConfigPasswordAlgorithm::Md5) {
        return Err(
            "must include \"md5\": browsers know no other, and RFC 8489 §9.2.4 treats a \
                    request without PASSWORD-ALGORITHM as MD5",
        );
    }
    if list.len() > 1 && list[0] == list[1] {
        return Err("lists an algorithm twice");
    }
    Ok(())
}
