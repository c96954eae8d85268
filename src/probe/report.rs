//! The outcome of one check: a line (`PASS`/`FAIL`/`WARN`/`INFO`/`SKIP`,
//! what, detail) or a JSON object with the same facts.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    /// Something the user should know about that is not a failure.
    Warn,
    /// A finding, neither good nor bad (e.g. the NAT's behaviour).
    Info,
    /// Not tried, because an earlier check showed it cannot work.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Warn => "WARN",
            Status::Info => "INFO",
            Status::Skip => "SKIP",
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct Check {
    pub status: Status,
    /// The JSON `check` name: binding, fallback-binding, allocate,
    /// relay-round-trip, cleanup, nat-mapping, nat-filtering, ice-servers.
    pub kind: &'static str,
    /// The human label, e.g. "binding udp 127.0.0.1:3478".
    pub what: String,
    pub detail: String,
    /// Extra JSON fields (transport, server, reflexive, relay, ...).
    pub fields: Map<String, Value>,
}

impl Check {
    pub fn new(status: Status, kind: &'static str, what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            status,
            kind,
            what: what.into(),
            detail: detail.into(),
            fields: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Check {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    pub fn ok(&self) -> bool {
        self.status != Status::Fail
    }

    pub fn to_line(&self) -> String {
        format!("{:<4}  {:<36}  {}", self.status.label(), self.what, self.detail)
            .trim_end()
            .to_string()
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("check".into(), self.kind.into());
        m.insert("status".into(), self.status.label().to_ascii_lowercase().into());
        m.insert("ok".into(), self.ok().into());
        m.insert("what".into(), self.what.clone().into());
        m.insert("detail".into(), self.detail.clone().into());
        for (k, v) in &self.fields {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_json_carry_the_same_facts() {
        let c = Check::new(
            Status::Pass,
            "binding",
            "binding udp 127.0.0.1:3478",
            "reflexive 127.0.0.1:5",
        )
        .with("reflexive", "127.0.0.1:5");
        assert!(c.to_line().starts_with("PASS  binding udp 127.0.0.1:3478 "));
        let j = c.to_json();
        assert_eq!(j["check"], "binding");
        assert_eq!(j["ok"], true);
        assert_eq!(j["reflexive"], "127.0.0.1:5");
        assert!(!Check::new(Status::Fail, "allocate", "a", "b").ok());
        assert!(Check::new(Status::Warn, "allocate", "a", "b").ok());
        assert!(Check::new(Status::Skip, "allocate", "a", "b").ok());
    }
}
