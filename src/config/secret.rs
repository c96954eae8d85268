//! Secrets in config (`turn.secrets`, `http.api_keys`, `turn.users`
//! passwords): printed as `[hidden]` by `{:?}` and `{}`, so a config can be
//! logged whole; read only through [`Secret::expose`]; compared in constant
//! time.

use std::fmt;

use serde::Deserialize;

#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the few places that key a MAC with it or
    /// check its length. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this secret, in time that does not depend on
    /// where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        proto::wire::ct_eq(self.0.as_bytes(), candidate)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::new(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[hidden]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[hidden]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load_error;

    #[test]
    fn never_printed() {
        let s = Secret::new("correct-horse-battery-staple");
        assert_eq!(format!("{s:?}"), "[hidden]");
        assert_eq!(format!("{s}"), "[hidden]");
        assert_eq!(format!("{:?}", vec![s.clone()]), "[[hidden]]");
        assert_eq!(s.expose(), "correct-horse-battery-staple");
    }

    #[test]
    fn compares_by_value() {
        let s = Secret::new("correct-horse-battery-staple");
        assert!(s.matches(b"correct-horse-battery-staple"));
        assert!(!s.matches(b"correct-horse-battery-stapler"));
        assert!(!s.matches(b"correct-horse-battery-stable"));
        assert_eq!(s, Secret::from("correct-horse-battery-staple"));
        assert_ne!(s, Secret::from("wrong"));
    }

    #[test]
    fn short_secrets_name_the_key() {
        for key in ["turn.secrets", "http.api_keys"] {
            let e = load_error(key, "short");
            assert!(e.contains(&format!("config key `{key}`")), "{e}");
            assert!(!e.contains("short"), "the refused value is not echoed: {e}");
        }
    }
}
