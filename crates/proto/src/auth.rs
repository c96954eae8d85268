//! Long-term credentials (RFC 8489 §9.2): users from the TURN REST
//! shared-secret scheme and from a static table, and the keys they imply.

use std::collections::HashMap;

use ring::hmac;

use crate::wire::long_term_key;

/// Where long-term keys come from. Secrets are kept here only to derive
/// keys; nothing in the core ever formats them.
#[derive(Clone, Default)]
pub struct Credentials {
    pub realm: String,
    /// REST shared secrets, all accepted (rotation: add the new one, later drop the old).
    pub rest_secrets: Vec<Vec<u8>>,
    /// Static users: username -> long-term key MD5(username:realm:password).
    pub static_keys: HashMap<String, [u8; 16]>,
    /// Usernames an operator revoked before they expire.
    pub revoked: std::collections::HashSet<String>,
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

    /// Adds a static user (the password is not kept, only the key).
    pub fn add_static_user(&mut self, username: &str, password: &str) {
        let key = long_term_key(username, &self.realm, password);
        self.static_keys.insert(username.to_string(), key);
    }

    /// The candidate keys for `username` at `unix_now`: the static user's
    /// key, or one per REST secret, derived lazily and in configured order so
    /// the caller stops at the first that verifies. Every secret is tried,
    /// however many are configured.
    pub fn keys<'a>(&'a self, username: &'a str, unix_now: u64) -> Result<Keys<'a>, UserError> {
        if self.revoked.contains(username) {
            return Err(UserError::Revoked);
        }
        if let Some(k) = self.static_keys.get(username) {
            return Ok(Keys::Static(Some(*k)));
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
    Static(Option<[u8; 16]>),
    Rest {
        username: &'a str,
        realm: &'a str,
        secrets: std::slice::Iter<'a, Vec<u8>>,
    },
}

impl Iterator for Keys<'_> {
    type Item = [u8; 16];

    fn next(&mut self) -> Option<[u8; 16]> {
        match self {
            Keys::Static(k) => k.take(),
            Keys::Rest {
                username,
                realm,
                secrets,
            } => {
                let secret = secrets.next()?;
                Some(long_term_key(username, realm, &rest_password(secret, username)))
            }
        }
    }
}

/// The REST password for `username`: base64(HMAC-SHA1(secret, username)).
pub fn rest_password(secret: &[u8], username: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    base64(hmac::sign(&key, username.as_bytes()).as_ref())
}

/// A TURN REST credential (draft-uberti-behave-turn-rest §2.2) for `user`
/// valid until `expiry_unix` (seconds since the Unix epoch; the caller reads
/// the clock): username `EXPIRY:USER`, password [`rest_password`] of it.
pub fn rest_credentials(secret: &[u8], user: &str, expiry_unix: u64) -> (String, String) {
    let username = format!("{expiry_unix}:{user}");
    let password = rest_password(secret, &username);
    (username, password)
}

/// The standard base64 alphabet (RFC 4648 §4).
pub(crate) const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = BASE64_ALPHABET;
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
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
    fn base64_vectors() {
        // RFC 4648 §10.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn rest_credentials_put_the_expiry_first() {
        let (u, p) = rest_credentials(b"s", "alice", 1700000000);
        assert_eq!(u, "1700000000:alice");
        assert_eq!(p, rest_password(b"s", "1700000000:alice"));
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
        assert_eq!(keys("alice", 0), Ok(vec![long_term_key("alice", "r", "pw")]));
        let bob = keys("1000:bob", 999).unwrap();
        assert_eq!(bob.len(), 2);
        assert_eq!(
            bob[1],
            long_term_key("1000:bob", "r", &rest_password(b"old", "1000:bob"))
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
        let last = long_term_key("1000:bob", "r", &rest_password(&secrets[8], "1000:bob"));
        assert!(c.keys("1000:bob", 0).unwrap().any(|k| k == last), "the ninth secret");
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
