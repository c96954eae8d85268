//! Diagnoses: what the checks' results mean and what to change, each with a
//! stable code for scripts (`--json` → `diagnoses[].code`). They are derived
//! from the checks' fields after the run ([`diagnose`]), except the two the
//! probe knows before sending anything ([`url_without_scheme`],
//! [`rest_username_expired`]).

use std::net::{IpAddr, SocketAddr};

use serde_json::{json, Value};

use super::report::{Check, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Explains a failure (or predicts one).
    Error,
    /// Works from here, but will not work for others.
    Warning,
    /// Worth knowing; nothing is wrong.
    Hint,
}

impl Severity {
    fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Hint => "hint",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Severity::Error => "FIX",
            Severity::Warning => "WARN",
            Severity::Hint => "HINT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// Stable, kebab-case: scripts match on it.
    pub code: &'static str,
    pub severity: Severity,
    /// What is wrong, short enough for the verdict line.
    pub summary: String,
    /// What to do about it.
    pub advice: String,
}

impl Diagnosis {
    fn new(code: &'static str, severity: Severity, summary: String, advice: impl Into<String>) -> Diagnosis {
        Diagnosis {
            code,
            severity,
            summary,
            advice: advice.into(),
        }
    }

    pub fn to_line(&self) -> String {
        format!(
            "{:<4}  {:<36}  {}: {}",
            self.severity.label(),
            self.code,
            self.summary,
            self.advice
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "code": self.code,
            "severity": self.severity.name(),
            "summary": self.summary,
            "advice": self.advice,
        })
    }
}

/// A server named as `host:port`: probed as `stun:`, and said so.
pub fn url_without_scheme(written: &str, probed: &str) -> Diagnosis {
    let turn = probed.replacen("stun:", "turn:", 1);
    Diagnosis::new(
        "url-without-scheme",
        Severity::Hint,
        format!("`{written}` has no scheme; probed as {probed}"),
        format!("did you mean {probed} (STUN only) or {turn} (with --user/--secret, to test relaying)?"),
    )
}

/// A TURN REST username (`EXPIRY:NAME`, the scheme ternd and coturn share)
/// whose expiry is past, found before anything is sent: the server can only
/// answer 401.
pub fn rest_username_expired(username: &str, now: u64) -> Option<Diagnosis> {
    let (expiry, _) = username.split_once(':')?;
    // Unix times of REST usernames: at least 9 digits (after 1973).
    if expiry.len() < 9 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let expiry: u64 = expiry.parse().ok()?;
    if expiry > now {
        return None;
    }
    Some(Diagnosis::new(
        "rest-username-expired",
        Severity::Error,
        format!(
            "the REST username `{username}` expired at {} ({} ago)",
            crate::utc_time::rfc3339(expiry),
            crate::config::format_duration(std::time::Duration::from_secs(now - expiry))
        ),
        "the server will answer 401: mint fresh credentials (`ternd credentials`, or fetch /api/ice-servers again)",
    ))
}

/// Addresses nobody outside one network can send to: private (RFC 1918),
/// shared (RFC 6598 CGNAT), loopback, link-local, unspecified, "this
/// network" (0/8), IETF protocol assignments (192.0.0/24), benchmarking
/// (198.18/15), multicast and reserved (224/4, 240/4), IPv6 unique local,
/// link-local and multicast. Documentation ranges (192.0.2/24,
/// 198.51.100/24, 203.0.113/24, 2001:db8::/32) count as public: labs and
/// examples use them as such.
pub fn not_routable(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || a == 0
                || a >= 224
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80
                || first & 0xff00 == 0xff00
        }
    }
}

fn addr(c: &Check, key: &str) -> Option<SocketAddr> {
    c.fields.get(key)?.as_str()?.parse().ok()
}

fn field<'a>(c: &'a Check, key: &str) -> Option<&'a str> {
    c.fields.get(key)?.as_str()
}

fn flag(c: &Check, key: &str) -> bool {
    c.fields.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// A relay address that clients elsewhere cannot reach: not routable, and
/// either the server was reached at a routable address or at another one
/// (two loopback addresses count as one: it is all this machine).
fn private_relay(relay: SocketAddr, server: SocketAddr) -> bool {
    not_routable(relay.ip()) && (!not_routable(server.ip()) || !same_host(relay.ip(), server.ip()))
}

fn same_host(a: IpAddr, b: IpAddr) -> bool {
    let (a, b) = (a.to_canonical(), b.to_canonical());
    a == b || (a.is_loopback() && b.is_loopback())
}

/// Everything the checks' results say, in the order the checks ran.
pub fn diagnose(checks: &[Check]) -> Vec<Diagnosis> {
    let mut out: Vec<Diagnosis> = Vec::new();
    let mut push = |d: Diagnosis| {
        if !out.contains(&d) {
            out.push(d);
        }
    };
    for c in checks {
        let (Some(transport), Some(server)) = (field(c, "transport"), addr(c, "server")) else {
            continue;
        };
        match (c.kind, c.status) {
            ("binding", Status::Pass) => {
                if let (Some(reflexive), Some(local)) = (addr(c, "reflexive"), addr(c, "local")) {
                    if not_routable(reflexive.ip()) && reflexive.ip() != local.ip() {
                        push(Diagnosis::new(
                            "private-reflexive-address",
                            Severity::Warning,
                            format!("{server} sees you as {reflexive}, a private address"),
                            "a NAT or port forward in front of the server rewrites client addresses \
                             (a Docker bridge network does: run ternd with host networking); \
                             peers cannot reach clients through such an address",
                        ));
                    }
                }
            }
            ("binding", Status::Fail) if flag(c, "dead") => push(dead_binding(checks, transport, server)),
            ("binding", Status::Fail) if c.detail.starts_with("TLS: ") => push(Diagnosis::new(
                "tls-untrusted",
                Severity::Error,
                format!("the TLS certificate of {server} does not verify"),
                "it must chain to a CA of the system's store (or --ca FILE) and name the host of the URL; \
                 renew or fix the certificate (tls.cert_file), or give --ca for a private CA",
            )),
            ("allocate", Status::Pass) => {
                if let Some(relay) = addr(c, "relay").filter(|r| private_relay(*r, server)) {
                    let failed = round_trip_failed(checks, transport, server);
                    push(Diagnosis::new(
                        "private-relay-address",
                        if failed { Severity::Error } else { Severity::Warning },
                        format!("the relay address {relay} is private"),
                        "clients outside the server's network cannot send to it: set relay.external_ip \
                         to the server's public address (coturn: external-ip=PUBLIC/PRIVATE)",
                    ));
                }
            }
            ("allocate", Status::Fail) => match c.fields.get("error_code").and_then(Value::as_u64) {
                Some(401) if flag(c, "credentials") => push(Diagnosis::new(
                    "credentials-rejected",
                    Severity::Error,
                    format!("{server} rejects the credentials (401)"),
                    "wrong username or password, or the REST secret differs from the server's \
                     turn.secrets (coturn: static-auth-secret), or the realm's users do not include it",
                )),
                Some(401) => push(Diagnosis::new(
                    "credentials-missing",
                    Severity::Error,
                    format!("{server} wants credentials to allocate"),
                    "give --user/--password, --secret (REST) or --ice-servers URL",
                )),
                _ => {}
            },
            ("relay-round-trip", Status::Fail) => {
                if let Some(d) = round_trip(c, server) {
                    push(d);
                }
            }
            _ => {}
        }
    }
    out
}

fn round_trip_failed(checks: &[Check], transport: &str, server: SocketAddr) -> bool {
    checks.iter().any(|c| {
        c.kind == "relay-round-trip"
            && c.status == Status::Fail
            && field(c, "transport") == Some(transport)
            && addr(c, "server") == Some(server)
    })
}

/// A Binding with no answer at all: UDP blocked (TCP answers), or nothing answers.
fn dead_binding(checks: &[Check], transport: &str, server: SocketAddr) -> Diagnosis {
    let tcp_answers = checks.iter().any(|c| {
        matches!(c.kind, "binding" | "fallback-binding")
            && field(c, "transport") == Some("tcp")
            && addr(c, "server") == Some(server)
            && !flag(c, "dead")
            && c.fields.contains_key("reflexive")
    });
    if transport == "udp" && tcp_answers {
        let host = server.to_string();
        let tls_host = match server.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        return Diagnosis::new(
            "udp-blocked",
            Severity::Error,
            format!("UDP to {server} gets no answer, but TCP to the same port does"),
            format!(
                "a firewall on the way drops UDP: use turn:{host}?transport=tcp, or turns:{tls_host}:5349 \
                 (TLS gets through most firewalls)"
            ),
        );
    }
    let tried: Vec<&str> = checks
        .iter()
        .filter(|c| matches!(c.kind, "binding" | "fallback-binding") && addr(c, "server") == Some(server))
        .filter_map(|c| field(c, "transport"))
        .collect();
    Diagnosis::new(
        "no-answer",
        Severity::Error,
        format!("nothing answers on {server} ({})", tried.join(", ")),
        "the server is not running there, the address or port is wrong, or a firewall drops the \
         traffic (listen.udp / listen.tcp / listen.tls, and `ternd firewall` for the rules to open); \
         if only the network you are on blocks it, turns: on port 443 (listen.tls) gets through most",
    )
}

/// Why relaying between two allocations failed, when the checks tell.
fn round_trip(c: &Check, server: SocketAddr) -> Option<Diagnosis> {
    let step = field(c, "step").unwrap_or("");
    let relay = addr(c, "relay")?;
    let code = c.fields.get("error_code").and_then(Value::as_u64);
    if code == Some(403) && (step.starts_with("CreatePermission") || step.starts_with("ChannelBind")) {
        return Some(Diagnosis::new(
            "relay-peer-forbidden",
            Severity::Error,
            format!("the server refuses its own relay address {relay} as a peer (403)"),
            "its peer policy denies the relay's range: ternd allows its own relay addresses \
             (policy.allow); coturn needs allowed-peer-ip for them",
        ));
    }
    if !flag(c, "timeout") || !matches!(step, "A→B" | "B→A") {
        return None;
    }
    let relay_ip = relay.ip();
    let (summary, first) = if private_relay(relay, server) {
        (
            format!("relayed data lost: the relay address {relay} is private"),
            "relay.external_ip is unset: set it to the server's public address",
        )
    } else if !same_host(relay_ip, server.ip()) {
        (
            format!(
                "relayed data lost: the relay address {relay} is not the server's {}",
                server.ip()
            ),
            "the data went out to the relay address and back (hairpin): a NAT in front of the server \
             must loop packets to its own public address back in, or relay.external_ip is wrong",
        )
    } else {
        (
            format!("relayed data lost between two relay ports of {relay_ip}"),
            "a firewall drops UDP on the relay port range (relay.port_min..relay.port_max; coturn \
             min-port..max-port): open it (`ternd firewall` prints the rules)",
        )
    };
    Some(Diagnosis::new(
        "relay-data-lost",
        Severity::Error,
        summary,
        format!("{first}. Allocations and permissions worked, so auth and policy are fine"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routable_or_not() {
        for ip in [
            "10.0.0.5",
            "127.0.0.1",
            "172.17.0.1",
            "192.168.1.2",
            "100.64.1.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(not_routable(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "203.0.113.1",
            "198.51.100.7",
            "8.8.8.8",
            "100.128.0.1",
            "2001:db8::1",
            "2a00::1",
        ] {
            assert!(!not_routable(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn private_relay_addresses() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(private_relay(a("10.0.0.5:50000"), a("203.0.113.1:3478")));
        assert!(private_relay(a("10.0.0.5:50000"), a("127.0.0.1:3478")));
        // A server on a private network, reached there: fine for its clients.
        assert!(!private_relay(a("192.168.1.5:50000"), a("192.168.1.5:3478")));
        assert!(!private_relay(a("127.0.0.1:50000"), a("127.0.0.1:3478")));
        assert!(!private_relay(a("127.0.0.1:50000"), a("127.0.0.2:3478")));
        assert!(!private_relay(a("203.0.113.9:50000"), a("203.0.113.1:3478")));
    }

    #[test]
    fn rest_usernames_expire() {
        let now = 1_800_000_000;
        let d = rest_username_expired("1700000000:alice", now).unwrap();
        assert_eq!(d.code, "rest-username-expired");
        assert!(d.summary.contains("2023-11-14T22:13:20Z"), "{}", d.summary);
        assert!(rest_username_expired("1900000000:alice", now).is_none());
        assert!(rest_username_expired("alice", now).is_none());
        assert!(rest_username_expired("alice:1700000000", now).is_none());
        assert!(rest_username_expired("12:alice", now).is_none());
    }
}
