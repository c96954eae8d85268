//! The RFC 6062 check on a TCP or TLS URL: two TCP relay allocations A and
//! B, permissions both ways, A Connects to B's relay address, B hears of it
//! by ConnectionAttempt, both bind a new data connection (ConnectionBind),
//! and bytes go A → B and back through the two TCP relays. A server
//! without TCP relays (442) gets a warning, not a failure.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto::wire::{attr, Class, Message, Method};

use super::checks::{ms, open, prefix, Options, Target};
use super::report::{Check, Status};
use super::session::{random, ProbeError, Session};
use super::turn::TCP_PROTOCOL;

/// Bytes sent each way through the TCP relays.
const PAYLOAD: usize = 61;

pub fn check(t: &Target, opts: &Options) -> Check {
    let transport = t.url.transport.name();
    let base = |status, detail: String| {
        Check::new(status, "tcp-relay", format!("tcp relay {transport}"), detail)
            .with("transport", transport)
            .with("server", t.addr.to_string())
            .with("url", t.url.to_string())
    };
    let deadline = Instant::now() + opts.timeout;
    let mut a = match open(t, opts, t.creds.clone(), deadline) {
        Ok(s) => s,
        Err(e) => return base(Status::Fail, e.text),
    };
    let mut b = None;
    let result = both_ways(t, opts, &mut a, &mut b, deadline);
    // Best effort: the allocations expire anyway.
    for s in std::iter::once(&mut a).chain(b.as_mut()) {
        s.deadline = Instant::now() + opts.timeout;
        let _ = s.delete_allocation();
    }
    match result {
        Ok((relay_a, relay_b, rtt)) => base(
            Status::Pass,
            format!(
                "{PAYLOAD} B via TCP relays {relay_a} <-> {relay_b}  rtt {:.1} ms",
                ms(rtt)
            ),
        )
        .with("relay", relay_a.to_string())
        .with("peer_relay", relay_b.to_string())
        .with("rtt_ms", ms(rtt)),
        Err(e) if e.code() == Some(442) => base(
            Status::Warn,
            "the server offers no TCP relays (RFC 6062): 442 to REQUESTED-TRANSPORT TCP".into(),
        )
        .with("error_code", 442),
        Err(e) => {
            let c = base(Status::Fail, e.to_string());
            match e.code() {
                Some(code) => c.with("error_code", code),
                None => c,
            }
        }
    }
}

fn both_ways(
    t: &Target,
    opts: &Options,
    a: &mut Session,
    b_slot: &mut Option<Session>,
    deadline: Instant,
) -> Result<(SocketAddr, SocketAddr, Duration), ProbeError> {
    let step = |what: &'static str| move |e: ProbeError| prefix(what, e);
    let session =
        |what: &str| open(t, opts, t.creds.clone(), deadline).map_err(|e| ProbeError::Io(format!("{what}: {e}")));
    let relay_a = a.allocate_transport(TCP_PROTOCOL).map_err(step("Allocate TCP"))?.relay;
    let b = b_slot.insert(session("second connection")?);
    let relay_b = b
        .allocate_transport(TCP_PROTOCOL)
        .map_err(step("second Allocate TCP"))?
        .relay;
    a.create_permission(relay_b).map_err(step("CreatePermission A→B"))?;
    b.create_permission(relay_a).map_err(step("CreatePermission B→A"))?;
    let started = Instant::now();
    let r = a
        .request(Method::CONNECT, &|m| m.add_xor_address(attr::XOR_PEER_ADDRESS, relay_b))
        .map_err(step("Connect A→B"))?;
    let id_a = r.u32(attr::CONNECTION_ID).map_err(step("Connect A→B"))?;
    let id_b = connection_attempt(b, deadline).map_err(step("ConnectionAttempt at B"))?;
    let mut data_a = session("data connection A")?;
    data_a.share_auth(a);
    let mut data_b = session("data connection B")?;
    data_b.share_auth(b);
    for (s, id, what) in [
        (&mut data_a, id_a, "ConnectionBind A"),
        (&mut data_b, id_b, "ConnectionBind B"),
    ] {
        s.request(Method::CONNECTION_BIND, &|m| m.add_u32(attr::CONNECTION_ID, id))
            .map_err(step(what))?;
    }
    let mut payload: [u8; PAYLOAD] = random()?;
    relay_raw(&mut data_a, &mut data_b, &payload, deadline, "A→B")?;
    payload.reverse();
    relay_raw(&mut data_b, &mut data_a, &payload, deadline, "B→A")?;
    Ok((relay_a, relay_b, started.elapsed()))
}

/// Sends `payload` on data connection `from` and reads it back from `to`.
fn relay_raw(
    from: &mut Session,
    to: &mut Session,
    payload: &[u8],
    deadline: Instant,
    what: &str,
) -> Result<(), ProbeError> {
    let io = |e: std::io::Error| ProbeError::Io(format!("{what}: {e}"));
    from.conn.send(payload).map_err(io)?;
    if to.conn.read_raw(payload.len(), deadline).map_err(io)? != payload {
        return Err(ProbeError::Malformed(format!("{what}: other bytes came out")));
    }
    Ok(())
}

/// Waits for a ConnectionAttempt indication on `s` and returns its CONNECTION-ID.
fn connection_attempt(s: &mut Session, deadline: Instant) -> Result<u32, ProbeError> {
    loop {
        let bytes = match s.backlog.pop_front() {
            Some(b) => b,
            None => s
                .conn
                .recv(deadline)
                .map_err(|e| ProbeError::Io(e.to_string()))?
                .ok_or_else(|| ProbeError::Timeout(Duration::ZERO, String::new()))?,
        };
        let Ok(m) = Message::parse(&bytes) else { continue };
        let t = m.message_type();
        if t.method == Method::CONNECTION_ATTEMPT && t.class == Class::Indication {
            return match m.get(attr::CONNECTION_ID) {
                Some(v) if v.len() == 4 => Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
                _ => Err(ProbeError::Malformed(
                    "ConnectionAttempt without a CONNECTION-ID".into(),
                )),
            };
        }
    }
}
