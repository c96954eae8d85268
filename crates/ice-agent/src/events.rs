//! The JSON lines this program prints on stdout, one event per line:
//! `candidate`, `gathered`, `selected` and `result` (crates/ice-agent/README.md).

use std::io::Write;

use serde_json::{json, Value};
use webrtc_ice::candidate::{Candidate, CandidateType};

/// Prints one event line and flushes, so a reader sees it at once.
pub fn emit(event: Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout leaves nobody to tell; the exit code still says it.
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

pub fn type_name(t: CandidateType) -> &'static str {
    match t {
        CandidateType::Host => "host",
        CandidateType::ServerReflexive => "srflx",
        CandidateType::PeerReflexive => "prflx",
        CandidateType::Relay => "relay",
        CandidateType::Unspecified => "unspecified",
    }
}

/// A candidate's fields: type, protocol, address, port and the related address.
pub fn candidate_fields(c: &(dyn Candidate + Send + Sync)) -> Value {
    // A peer-reflexive candidate learnt from a check carries an empty related address.
    let related = c.related_address().filter(|r| !r.address.is_empty());
    json!({
        "type": type_name(c.candidate_type()),
        "protocol": c.network_type().network_short(),
        "address": c.address(),
        "port": c.port(),
        "related_address": related.as_ref().map(|r| r.address.clone()),
        "related_port": related.as_ref().map(|r| r.port),
    })
}

/// `{"event":"candidate", ...candidate_fields}`.
pub fn candidate(c: &(dyn Candidate + Send + Sync)) -> Value {
    let mut v = candidate_fields(c);
    v["event"] = json!("candidate");
    v
}
