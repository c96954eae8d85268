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

/// Opens a session to `t`; the error is the detail of a FAIL line.
pub fn open(t: &Target, opts: &Options, creds: Option<Credentials>, deadline: Instant) -> Result<Session, String> {
    let tls = match t.url.transport {
        Transport::Tls => Some(TlsParams {
            config: opts.tls.clone(),
            name: rustls::pki_types::ServerName::try_from(t.url.host.clone())
                .map_err(|e| format!("`{}` is not a TLS server name: {e}", t.url.host))?,
        }),
        _ => None,
    };
    let conn = Conn::connect(t.url.transport, t.addr, opts.bind, tls.as_ref(), deadline).map_err(|e| {
        let text = e.to_string();
        if t.url.transport == Transport::Tls && (text.contains("certificate") || text.contains("Certificate")) {
            format!("TLS: {text} (give --ca FILE for a private CA or self-signed certificate, or --insecure)")
        } else if super::conn::is_timeout(&e) {
            "connect: timed out".to_string()
        } else {
            format!("connect: {text}")
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
        Err(e) => return base(Status::Fail, e),
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
            c
        }
        Err(e) => fail_fields(base(Status::Fail, e.to_string()), &e),
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
        .map_err(ProbeError::Io)
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
            out.push(fail_fields(base(Status::Fail, "allocate", what, e.to_string()), &e));
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
    .with("reflexive", alloc_a.reflexive.to_string());
    out.push(check);

    let what = format!("relay round trip {transport}");
    let deadline = Instant::now() + opts.timeout;
    a.deadline = deadline;
    let result = open(t, opts, t.creds.clone(), deadline)
        .map_err(|e| ProbeError::Io(format!("second allocation: {e}")))
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
        Err(e) => fail_fields(base(Status::Fail, "relay-round-trip", what, e.to_string()), &e),
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
) -> Result<(SocketAddr, Duration), ProbeError> {
    let step = |what: &'static str| move |e: ProbeError| prefix(what, e);
    let relay_b = b.allocate().map_err(step("second allocation"))?.relay;
    a.create_permission(relay_b).map_err(step("CreatePermission A→B"))?;
    b.create_permission(relay_a).map_err(step("CreatePermission B→A"))?;
    // Only B binds a channel, so every form is used once (RFC 8656 §11.3,
    // §12.6): A's Send indication reaches B as ChannelData, and B's
    // ChannelData reaches A as a Data indication.
    b.channel_bind(CHANNEL, relay_a).map_err(step("ChannelBind B→A"))?;
    let mut payload: [u8; PAYLOAD] = random()?;

    let started = Instant::now();
    a.send_indication(relay_b, &payload)
        .map_err(step("Send indication A→B"))?;
    match b.recv_relayed(deadline).map_err(step("A→B"))? {
        Relayed::Channel { channel, data } if channel == CHANNEL && data == payload => {}
        other => {
            return Err(ProbeError::Malformed(format!(
                "A→B: expected ChannelData of {PAYLOAD} B on channel {CHANNEL:#06x}, got {}",
                describe(&other)
            )))
        }
    }
    payload.reverse();
    b.send_channel(CHANNEL, &payload).map_err(step("ChannelData B→A"))?;
    match a.recv_relayed(deadline).map_err(step("B→A"))? {
        Relayed::Indication { peer, data } if peer == relay_b && data == payload => {}
        other => {
            return Err(ProbeError::Malformed(format!(
                "B→A: expected a Data indication of {PAYLOAD} B from {relay_b}, got {}",
                describe(&other)
            )))
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
