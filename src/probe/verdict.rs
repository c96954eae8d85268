//! The one-line verdict printed before everything else: what works, or
//! what does not and the likeliest reason (the first error diagnosis, else
//! the first failed check).

use super::diagnosis::{Diagnosis, Severity};
use super::report::{Check, Status};

/// Transports (udp, tcp, tls) with a `kind` check of `status`, in order, once each.
fn transports(checks: &[Check], kind: &str, status: Status) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in checks.iter().filter(|c| c.kind == kind && c.status == status) {
        if let Some(t) = c.fields.get("transport").and_then(|t| t.as_str()) {
            if !out.iter().any(|o| o == t) {
                out.push(t.to_string());
            }
        }
    }
    out
}

pub fn verdict(checks: &[Check], diagnoses: &[Diagnosis]) -> String {
    let relayed = transports(checks, "relay-round-trip", Status::Pass);
    let bound = transports(checks, "binding", Status::Pass);
    let failed = checks.iter().find(|c| c.status == Status::Fail);
    let Some(failed) = failed else {
        let mut v = if !relayed.is_empty() {
            format!("TURN works over {}; relay round trip OK", relayed.join(","))
        } else if !bound.is_empty() {
            format!("STUN works over {}", bound.join(","))
        } else {
            "nothing failed, nothing was probed".to_string()
        };
        let warnings: Vec<&str> = diagnoses
            .iter()
            .filter(|d| d.severity <= Severity::Warning)
            .map(|d| d.code)
            .collect();
        if !warnings.is_empty() {
            v.push_str(&format!("; but: {}", warnings.join(", ")));
        }
        return v;
    };
    let why = match diagnoses.iter().find(|d| d.severity == Severity::Error) {
        Some(d) => d.summary.clone(),
        None => format!("{}: {}", failed.what, failed.detail),
    };
    let turn_tried = checks.iter().any(|c| c.kind == "allocate");
    if !relayed.is_empty() {
        format!("TURN works over {} only; {why}", relayed.join(","))
    } else if turn_tried && !bound.is_empty() {
        format!("relay unusable: {why}")
    } else if !bound.is_empty() {
        format!("STUN works over {} only; {why}", bound.join(","))
    } else if checks.iter().any(|c| c.kind == "binding") {
        format!("server unreachable: {why}")
    } else {
        format!("probe failed: {why}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(status: Status, kind: &'static str, transport: &str) -> Check {
        Check::new(status, kind, kind, "detail").with("transport", transport)
    }

    #[test]
    fn says_what_works_or_why_not() {
        let ok = [
            c(Status::Pass, "binding", "udp"),
            c(Status::Pass, "allocate", "udp"),
            c(Status::Pass, "relay-round-trip", "udp"),
            c(Status::Pass, "binding", "tcp"),
            c(Status::Pass, "allocate", "tcp"),
            c(Status::Pass, "relay-round-trip", "tcp"),
        ];
        assert_eq!(verdict(&ok, &[]), "TURN works over udp,tcp; relay round trip OK");
        let stun = [c(Status::Pass, "binding", "udp")];
        assert_eq!(verdict(&stun, &[]), "STUN works over udp");
        let relay_fails = [
            c(Status::Pass, "binding", "udp"),
            c(Status::Pass, "allocate", "udp"),
            c(Status::Fail, "relay-round-trip", "udp"),
        ];
        assert_eq!(verdict(&relay_fails, &[]), "relay unusable: relay-round-trip: detail");
        let dead = [c(Status::Fail, "binding", "udp"), c(Status::Skip, "allocate", "udp")];
        assert!(verdict(&dead, &[]).starts_with("server unreachable: "));
    }
}
