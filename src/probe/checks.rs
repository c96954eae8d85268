//! The per-server checks: Binding (RFC 8489 §6) with the reflexive address,
//! Allocate (RFC 8656 §7) and a relay round trip between two allocations.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::wire::{attr, Method};

use super::conn::{Conn, TlsParams};
use super::report::{Check, Status};
use super::session::{random, Credentials, ProbeError, Session};
use super::turn::Relayed;
use super::url::{ServerUrl, Transport};

/// What every check needs from the command line.
pub struct Options {
    pub bind: Option<IpAddr>,
    pub timeout: Duration,
    pub tls: Arc<rustls::ClientConfig>,
    /// The DTLS client settings (same trust as `tls`).
    pub dtls: openssl::ssl::SslContext,
    /// `--ca` was given (named in TLS failures).
    pub extra_ca: bool,
}

/// One URL resolved to the address the checks use.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: ServerUrl,
    pub addr: SocketAddr,
    pub creds: Option<Credentials>,
}

/// Bytes relayed in the round trip: not a multiple of 4, so ChannelData over
/// TCP/TLS carries padding (RFC 8656 §12.5) both ways.
const PAYLOAD: usize = 61;
/// B's channel to A's relay (RFC 8656 §12: 0x4000–0x4FFF).
const CHANNEL: u16 = 0x4000;

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn fail_fields(c: Check, e: &ProbeError) -> Check {
    match e.code() {
        Some(code) => c.with("error_code", code),
        None => c,
    }
}

/// `config` offering ALPN "stun.turn" (RFC 7443 §4), as a TURN client
/// should: a server that speaks ALPN agrees to it, one that does not ignores it.
fn with_stun_alpn(config: &std::sync::Arc<rustls::ClientConfig>) -> std::sync::Arc<rustls::ClientConfig> {
    let mut c = (**config).clone();
    c.alpn_protocols = vec![b"stun.turn".to_vec()];
    std::sync::Arc::new(c)
}

/// Why [`open`] failed: the detail of a FAIL line, and whether the server
/// is unreachable (no connection at all) rather than answering wrongly.
#[derive(Debug)]
pub struct OpenError {
    pub text: String,
    pub unreachable: bool,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Opens a session to `t`.
pub fn open(t: &Target, opts: &Options, creds: Option<Credentials>, deadline: Instant) -> Result<Session, OpenError> {
    let tls = match t.url.transport {
        Transport::Tls | Transport::Dtls => Some(TlsParams {
            config: with_stun_alpn(&opts.tls),
            dtls: opts.dtls.clone(),
            host: t.url.host.clone(),
            name: rustls::pki_types::ServerName::try_from(t.url.host.clone()).map_err(|e| OpenError {
                text: format!("`{}` is not a TLS server name: {e}", t.url.host),
                unreachable: false,
            })?,
        }),
        _ => None,
    };
    let conn = Conn::connect(t.url.transport, t.addr, opts.bind, tls.as_ref(), deadline).map_err(|e| {
        let text = e.to_string();
        let secure = matches!(t.url.transport, Transport::Tls | Transport::Dtls);
        if secure && (text.contains("certificate") || text.contains("Certificate")) {
            OpenError {
                text: format!(
                    "TLS: {text} (system CA roots{}; give --ca FILE for a private CA or self-signed certificate, or --insecure)",
                    if opts.extra_ca { " and --ca" } else { "" }
                ),
                unreachable: false,
            }
        } else if super::conn::is_timeout(&e) {
            OpenError {
                text: "connect: timed out".to_string(),
                unreachable: true,
            }
        } else {
            OpenError {
                text: format!("connect: {text}"),
                // A refused or reset connection; a TLS error after connecting is an answer.
                unreachable: !matches!(e.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::Other),
            }
        }
    })?;
    Ok(Session::new(conn, creds, deadline))
}

/// RFC 8489 §6: one Binding request; PASS with XOR-MAPPED-ADDRESS.
pub fn binding(t: &Target, opts: &Options) -> Check {
    let transport = t.url.transport.name();
    let what = format!("binding {transport} {}", t.addr);
    let base = |status, detail: String| {
        Check::new(status, "binding", what.clone(), detail)
            .with("transport", transport)
            .with("server", t.addr.to_string())
            .with("url", t.url.to_string())
    };
    let deadline = Instant::now() + opts.timeout;
    let mut s = match open(t, opts, None, deadline) {
        Ok(s) => s,
        Err(e) => return base(Status::Fail, e.text).with("dead", e.unreachable),
    };
    match s
        .request(Method::BINDING, &|_| Ok(()))
        .and_then(|r| Ok((r.xor_address(attr::XOR_MAPPED_ADDRESS)?, r.rtt)))
    {
        Ok((reflexive, rtt)) => {
            // A reflexive address other than the local one means a NAT
            // (RFC 8489 §2) between here and the server.
            let local = s.conn.local_addr().ok();
            let nat = match local {
                Some(l) if l == reflexive => "  no NAT".to_string(),
                Some(l) => format!("  NAT (local {l})"),
                None => String::new(),
            };
            let mut c = base(
                Status::Pass,
                format!("reflexive {reflexive}  rtt {:.1} ms{nat}", ms(rtt)),
            )
            .with("reflexive", reflexive.to_string())
            .with("rtt_ms", ms(rtt));
            if let Some(l) = local {
                c = c.with("local", l.to_string()).with("nat", l != reflexive);
            }
            if let Some(p) = s.conn.alpn() {
                c.detail.push_str(&format!("  alpn {p}"));
                c = c.with("alpn", p);
            }
            c
        }
        // No STUN answer at all: the server is dead from here.
        Err(e) => fail_fields(base(Status::Fail, e.to_string()), &e)
            .with("dead", matches!(e, ProbeError::Timeout(..) | ProbeError::Io(_))),
    }
}

/// Allocate, then the relay round trip: two allocations A and B on the same
/// server and transport, permissions both ways, A → B by Send indication,
/// B → A by ChannelData (the payload reversed), then both allocations deleted (Refresh lifetime 0).
pub fn turn(t: &Target, opts: &Options) -> Vec<Check> {
    let transport = t.url.transport.name();
    let what = format!("allocate {transport} {}", t.addr);
    let base = |status, kind, what: String, detail: String| {
        Check::new(status, kind, what, detail)
            .with("transport", transport)
            .with("server", t.addr.to_string())
            .with("url", t.url.to_string())
    };
    let mut out = Vec::new();
    let deadline = Instant::now() + opts.timeout;
    let alloc = open(t, opts, t.creds.clone(), deadline)
        .map_err(|e| ProbeError::Io(e.text))
        .and_then(|mut s| match s.allocate() {
            Ok(a) => Ok((s, a)),
            Err(e) => {
                // An allocation whose success response was unusable still
                // exists on the server: delete it (best effort).
                s.deadline = Instant::now() + opts.timeout;
                let _ = s.delete_allocation();
                Err(e)
            }
        });
    let (mut a, alloc_a) = match alloc {
        Ok(x) => x,
        Err(e) => {
            out.push(
                fail_fields(base(Status::Fail, "allocate", what, e.to_string()), &e)
                    .with("credentials", t.creds.is_some()),
            );
            return out;
        }
    };
    let check = base(
        Status::Pass,
        "allocate",
        what,
        format!(
            "relay {}  lifetime {} s  rtt {:.1} ms",
            alloc_a.relay,
            alloc_a.lifetime,
            ms(alloc_a.rtt)
        ),
    )
    .with("relay", alloc_a.relay.to_string())
    .with("lifetime", alloc_a.lifetime)
    .with("rtt_ms", ms(alloc_a.rtt))
    .with("reflexive", alloc_a.reflexive.to_string())
    .with("credentials", t.creds.is_some());
    // RFC 8489 §9.2: the password algorithm the server let the probe use.
    let check = match a.password_algorithm {
        Some(p) => check.with("password_algorithm", p.label()),
        None => check,
    };
    out.push(check);

    let what = format!("relay round trip {transport}");
    let deadline = Instant::now() + opts.timeout;
    a.deadline = deadline;
    let result = open(t, opts, t.creds.clone(), deadline)
        .map_err(|e| ("second allocation", ProbeError::Io(format!("second allocation: {e}"))))
        .map(|mut b| {
            let r = round_trip(&mut a, &mut b, alloc_a.relay, deadline);
            b.deadline = Instant::now() + opts.timeout;
            (r, b.delete_allocation().err())
        });
    let (result, cleanup_b) = match result {
        Ok((r, c)) => (r, c),
        Err(e) => (Err(e), None),
    };
    out.push(match result {
        Ok((relay_b, rtt)) => base(
            Status::Pass,
            "relay-round-trip",
            what,
            format!("{PAYLOAD} B via {} <-> {relay_b}  rtt {:.1} ms", alloc_a.relay, ms(rtt)),
        )
        .with("relay", alloc_a.relay.to_string())
        .with("peer_relay", relay_b.to_string())
        .with("bytes", PAYLOAD)
        .with("rtt_ms", ms(rtt)),
        Err((step, e)) => fail_fields(base(Status::Fail, "relay-round-trip", what, e.to_string()), &e)
            .with("relay", alloc_a.relay.to_string())
            .with("step", step)
            .with("timeout", matches!(e, ProbeError::Timeout(..))),
    });
    // RFC 8656 §8: Refresh with lifetime 0 deletes the allocations. Best
    // effort (they expire anyway), so a failure is a warning.
    a.deadline = Instant::now() + opts.timeout;
    let cleanup_a = a.delete_allocation().err();
    if let Some(e) = cleanup_a.or(cleanup_b) {
        out.push(base(
            Status::Warn,
            "cleanup",
            format!("delete allocations {transport}"),
            format!("Refresh lifetime 0: {e}"),
        ));
    }
    out
}

fn round_trip(
    a: &mut Session,
    b: &mut Session,
    relay_a: SocketAddr,
    deadline: Instant,
) -> Result<(SocketAddr, Duration), (&'static str, ProbeError)> {
    let step = |what: &'static str| move |e: ProbeError| (what, prefix(what, e));
    let relay_b = b.allocate().map_err(step("second allocation"))?.relay;
    a.create_permission(relay_b).map_err(step("CreatePermission A→B"))?;
    b.create_permission(relay_a).map_err(step("CreatePermission B→A"))?;
    // Only B binds a channel, so every form is used once (RFC 8656 §11.3,
    // §12.6, §12.7): A's Send indication reaches B as ChannelData, and B's
    // ChannelData reaches A as a Data indication.
    b.channel_bind(CHANNEL, relay_a).map_err(step("ChannelBind B→A"))?;
    let mut payload: [u8; PAYLOAD] = random().map_err(step("payload"))?;

    let started = Instant::now();
    a.send_indication(relay_b, &payload)
        .map_err(step("Send indication A→B"))?;
    match b.recv_relayed(deadline).map_err(step("A→B"))? {
        Relayed::Channel { channel, data } if channel == CHANNEL && data == payload => {}
        other => {
            return Err((
                "A→B",
                ProbeError::Malformed(format!(
                    "A→B: expected ChannelData of {PAYLOAD} B on channel {CHANNEL:#06x}, got {}",
                    describe(&other)
                )),
            ))
        }
    }
    payload.reverse();
    b.send_channel(CHANNEL, &payload).map_err(step("ChannelData B→A"))?;
    match a.recv_relayed(deadline).map_err(step("B→A"))? {
        Relayed::Indication { peer, data } if peer == relay_b && data == payload => {}
        other => {
            return Err((
                "B→A",
                ProbeError::Malformed(format!(
                    "B→A: expected a Data indication of {PAYLOAD} B from {relay_b}, got {}",
                    describe(&other)
                )),
            ))
        }
    }
    Ok((relay_b, started.elapsed()))
}

pub fn prefix(what: &str, e: ProbeError) -> ProbeError {
    match e {
        ProbeError::Timeout(d, s) => ProbeError::Timeout(d, format!("{s} ({what})")),
        ProbeError::Io(s) => ProbeError::Io(format!("{what}: {s}")),
        ProbeError::Malformed(s) => ProbeError::Malformed(format!("{what}: {s}")),
        ProbeError::Integrity(s) => ProbeError::Integrity(format!("{s} ({what})")),
        ProbeError::Refused { code, reason } => ProbeError::Refused {
            code,
            reason: format!("{reason} ({what})"),
        },
    }
}

fn describe(r: &Relayed) -> String {
    match r {
        Relayed::Indication { peer, data } => format!("Data indication of {} B from {peer}", data.len()),
        Relayed::Channel { channel, data } => format!("ChannelData of {} B on channel {channel:#06x}", data.len()),
    }
}
