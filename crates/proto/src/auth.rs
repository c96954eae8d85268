//! Long-term credentials (RFC 8489 §9.2): users from the TURN REST
//! shared-secret scheme and from a static table, and the keys they imply.

use std::collections::HashMap;

use ring::hmac;

pub use crate::base64::base64;
use crate::password_algorithm::{Offer, PasswordAlgorithm};
use crate::wire::{long_term_key, long_term_key_sha256, userhash, Key};

/// Where long-term keys come from. Secrets are kept here only to derive
/// keys; nothing in the core ever formats them.
#[derive(Clone, Default)]
pub struct Credentials {
    pub realm: String,
    /// REST shared secrets, all accepted (rotation: add the new one, later drop the old).
    pub rest_secrets: Vec<Vec<u8>>,
    /// Static users: username -> their long-term keys.
    pub static_keys: HashMap<String, StaticKeys>,
    /// Static users by USERHASH (RFC 8489 §14.4), for [`Offer::userhash`].
    pub userhashes: HashMap<[u8; 32], String>,
    /// Usernames an operator revoked before they expire.
    pub revoked: std::collections::HashSet<String>,
    /// What the server offers beyond MD5 and USERNAME (RFC 8489 §9.2).
    pub offer: Offer,
    /// The HMAC REST passwords are made with.
    pub rest_hmac: RestHmac,
}

/// A static user's long-term keys (RFC 8489 §9.2.2), one per password
/// algorithm; the password itself is not kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StaticKeys {
    pub md5: [u8; 16],
    pub sha256: [u8; 32],
}

/// The HMAC of the TURN REST scheme: base64(HMAC(secret, username)) is the
/// password. SHA-1 is what every deployment and browser helper expects;
/// SHA-256 is what coturn issue 2062 asks for, for operators who mint both
/// ends themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestHmac {
    #[default]
    Sha1,
    Sha256,
}

impl RestHmac {
    /// The REST password for `username`: base64(HMAC(secret, username)).
    pub fn password(self, secret: &[u8], username: &str) -> String {
        let alg = match self {
            RestHmac::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            RestHmac::Sha256 => hmac::HMAC_SHA256,
        };
        base64(hmac::sign(&hmac::Key::new(alg, secret), username.as_bytes()).as_ref())
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("realm", &self.realm)
            .field("rest_secrets", &self.rest_secrets.len())
            .field("static_users", &self.static_keys.len())
            .finish()
    }
}

/// Why a username has no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserError {
    Unknown,
    /// A REST username whose expiry timestamp has passed.
    Expired,
    /// A username an operator revoked.
    Revoked,
}

impl Credentials {
    /// Forgets revoked REST usernames whose expiry has passed: they can never
    /// authenticate again, so keeping them only grows the set. Static users
    /// and other names stay.
    pub fn prune_revoked(&mut self, unix_now: u64) {
        let static_keys = &self.static_keys;
        self.revoked
            .retain(|u| static_keys.contains_key(u) || !revocation_lapsed(u, unix_now));
    }

    /// Adds a static user (the password is not kept, only the keys and the
    /// USERHASH, all under the current realm).
    pub fn add_static_user(&mut self, username: &str, password: &str) {
        let keys = StaticKeys {
            md5: long_term_key(username, &self.realm, password),
            sha256: long_term_key_sha256(username, &self.realm, password),
        };
        self.static_keys.insert(username.to_string(), keys);
        self.userhashes
            .insert(userhash(username, &self.realm), username.to_string());
    }

    /// The static user whose USERHASH (RFC 8489 §14.4) is `hash`.
    pub fn user_by_hash(&self, hash: &[u8]) -> Option<&str> {
        let hash: [u8; 32] = hash.try_into().ok()?;
        self.userhashes.get(&hash).map(String::as_str)
    }

    /// [`Credentials::keys_for`] with MD5, the RFC 5389 key.
    pub fn keys<'a>(&'a self, username: &'a str, unix_now: u64) -> Result<Keys<'a>, UserError> {
        self.keys_for(username, unix_now, PasswordAlgorithm::Md5)
    }

    /// The candidate keys for `username` at `unix_now` under `algorithm`:
    /// the static user's key, or one per REST secret, derived lazily and in
    /// configured order so the caller stops at the first that verifies.
    /// Every secret is tried, however many are configured.
    pub fn keys_for<'a>(
        &'a self,
        username: &'a str,
        unix_now: u64,
        algorithm: PasswordAlgorithm,
    ) -> Result<Keys<'a>, UserError> {
        if self.revoked.contains(username) {
            return Err(UserError::Revoked);
        }
        if let Some(k) = self.static_keys.get(username) {
            let key = match algorithm {
                PasswordAlgorithm::Md5 => Key::md5(k.md5),
                PasswordAlgorithm::Sha256 => Key::sha256(k.sha256),
            };
            return Ok(Keys::Static(Some(key)));
        }
        // REST scheme: "expiry:user" (or just "expiry"), expiry in Unix seconds.
        let Some(expiry) = rest_expiry(username) else {
            return Err(UserError::Unknown);
        };
        if self.rest_secrets.is_empty() {
            return Err(UserError::Unknown);
        }
        if expiry <= unix_now {
            return Err(UserError::Expired);
        }
        Ok(Keys::Rest {
            username,
            realm: &self.realm,
            secrets: self.rest_secrets.iter(),
            algorithm,
            hmac: self.rest_hmac,
        })
    }
}

/// A revoked REST username whose expiry has passed: it can never
/// authenticate again, so a revocation set need not keep it.
pub fn revocation_lapsed(username: &str, unix_now: u64) -> bool {
    rest_expiry(username).is_some_and(|e| e <= unix_now)
}

/// The expiry of a REST username ("expiry:user" or "expiry"), if it is one.
pub fn rest_expiry(username: &str) -> Option<u64> {
    username.split(':').next().and_then(|e| e.parse::<u64>().ok())
}

/// Whom an allocation is charged to for `max_allocations_per_user`: the user
/// part of a REST username (after the first ':' when the part before it is
/// a number), so each freshly minted credential is not a new user; a static
/// user, or a bare "expiry" REST name, is its own name (the driver refuses
/// static names shaped like REST ones).
pub fn quota_user(username: &str) -> &str {
    match username.split_once(':') {
        Some((expiry, user)) if expiry.parse::<u64>().is_ok() => user,
        _ => username,
    }
}

/// The candidate long-term keys of one username ([`Credentials::keys`]).
#[derive(Debug, Clone)]
pub enum Keys<'a> {
    Static(Option<Key>),
    Rest {
        username: &'a str,
        realm: &'a str,
        secrets: std::slice::Iter<'a, Vec<u8>>,
        algorithm: PasswordAlgorithm,
        hmac: RestHmac,
    },
}

impl Iterator for Keys<'_> {
    type Item = Key;

    fn next(&mut self) -> Option<Key> {
        match self {
            Keys::Static(k) => k.take(),
            Keys::Rest {
                username,
                realm,
                secrets,
                algorithm,
                hmac,
            } => {
                let password = hmac.password(secrets.next()?, username);
                Some(match algorithm {
                    PasswordAlgorithm::Md5 => Key::md5(long_term_key(username, realm, &password)),
                    PasswordAlgorithm::Sha256 => Key::sha256(long_term_key_sha256(username, realm, &password)),
                })
            }
        }
    }
}

/// The REST password for `username`: base64(HMAC-SHA1(secret, username)).
pub fn rest_password(secret: &[u8], username: &str) -> String {
    RestHmac::Sha1.password(secret, username)
}

/// A TURN REST credential (draft-uberti-behave-turn-rest §2.2) for `user`
/// valid until `expiry_unix` (seconds since the Unix epoch; the caller reads
/// the clock): username `EXPIRY:USER`, password `hmac`'s
/// [`RestHmac::password`] of it.
pub fn rest_credentials(hmac: RestHmac, secret: &[u8], user: &str, expiry_unix: u64) -> (String, String) {
    let username = format!("{expiry_unix}:{user}");
    let password = hmac.password(secret, &username);
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_rest_names_leave_the_revoked_set_static_users_stay() {
        let mut c = Credentials::default();
        c.add_static_user("alice", "pw");
        for u in ["100:gone", "300:live", "alice", "not-rest"] {
            c.revoked.insert(u.to_string());
        }
        c.prune_revoked(200);
        let mut left: Vec<&str> = c.revoked.iter().map(String::as_str).collect();
        left.sort();
        assert_eq!(left, ["300:live", "alice", "not-rest"]);
        // A name still revoked is still refused.
        assert_eq!(c.keys("300:live", 200).err(), Some(UserError::Revoked));
    }

    #[test]
    fn rest_credentials_put_the_expiry_first() {
        let (u, p) = rest_credentials(RestHmac::Sha1, b"s", "alice", 1700000000);
        assert_eq!(u, "1700000000:alice");
        assert_eq!(p, rest_password(b"s", "1700000000:alice"));
        let (_, p256) = rest_credentials(RestHmac::Sha256, b"s", "alice", 1700000000);
        assert_eq!(p256.len(), 44, "base64 of 32 bytes");
        assert_ne!(p256, p);
    }

    #[test]
    fn rest_password_matches_the_published_scheme() {
        // HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog") =
        // de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9 (RFC 2104 example used widely).
        assert_eq!(
            rest_password(b"key", "The quick brown fox jumps over the lazy dog"),
            base64(&[
                0xde, 0x7c, 0x9b, 0x85, 0xb8, 0xb7, 0x8a, 0xa6, 0xbc, 0x8a, 0x7a, 0x36, 0xf7, 0x0a, 0x90, 0x70, 0x1c,
                0x9d, 0xb4, 0xd9
            ])
        );
    }

    #[test]
    fn rest_users_expire_and_rotate() {
        let mut c = Credentials {
            realm: "r".into(),
            rest_secrets: vec![b"new".to_vec(), b"old".to_vec()],
            ..Default::default()
        };
        c.add_static_user("alice", "pw");
        let keys = |u, t| c.keys(u, t).map(|k| k.collect::<Vec<_>>());
        assert_eq!(keys("alice", 0), Ok(vec![Key::md5(long_term_key("alice", "r", "pw"))]));
        let bob = keys("1000:bob", 999).unwrap();
        assert_eq!(bob.len(), 2);
        assert_eq!(
            bob[1],
            Key::md5(long_term_key("1000:bob", "r", &rest_password(b"old", "1000:bob")))
        );
        assert_eq!(keys("1000:bob", 1000), Err(UserError::Expired));
        assert_eq!(keys("bob", 0), Err(UserError::Unknown));
    }

    #[test]
    fn every_rest_secret_is_tried() {
        let secrets: Vec<Vec<u8>> = (0..9).map(|i| format!("secret-{i}").into_bytes()).collect();
        let c = Credentials {
            realm: "r".into(),
            rest_secrets: secrets.clone(),
            ..Default::default()
        };
        let last = Key::md5(long_term_key("1000:bob", "r", &rest_password(&secrets[8], "1000:bob")));
        assert!(c.keys("1000:bob", 0).unwrap().any(|k| k == last), "the ninth secret");
    }

    #[test]
    fn sha256_keys_and_userhash_of_static_and_rest_users() {
        let mut c = Credentials {
            realm: "r".into(),
            rest_secrets: vec![b"s".to_vec()],
            rest_hmac: RestHmac::Sha256,
            ..Default::default()
        };
        c.add_static_user("alice", "pw");
        let sha = |u, a| c.keys_for(u, 0, a).unwrap().next().unwrap();
        assert_eq!(
            sha("alice", PasswordAlgorithm::Sha256),
            Key::sha256(long_term_key_sha256("alice", "r", "pw"))
        );
        let rest_pw = RestHmac::Sha256.password(b"s", "1000:bob");
        assert_eq!(
            sha("1000:bob", PasswordAlgorithm::Sha256),
            Key::sha256(long_term_key_sha256("1000:bob", "r", &rest_pw))
        );
        assert_eq!(
            sha("1000:bob", PasswordAlgorithm::Md5),
            Key::md5(long_term_key("1000:bob", "r", &rest_pw))
        );
        assert_eq!(c.user_by_hash(&userhash("alice", "r")), Some("alice"));
        assert_eq!(c.user_by_hash(&userhash("alice", "other")), None);
        assert_eq!(c.user_by_hash(b"short"), None);
    }

    #[test]
    fn the_quota_user_of_a_rest_name_is_its_user_part() {
        assert_eq!(quota_user("1700000000:alice"), "alice");
        assert_eq!(quota_user("1800000000:alice"), "alice");
        assert_eq!(quota_user("1700000000:a:b"), "a:b");
        assert_eq!(quota_user("1700000000"), "1700000000");
        assert_eq!(quota_user("alice"), "alice");
        assert_eq!(quota_user("team:alice"), "team:alice", "a static name with a colon");
    }
}
