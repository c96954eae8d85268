//! TURN over DTLS (RFC 7350): the DTLS listeners of one shard. Each
//! listener socket (SO_REUSEPORT, one per shard, like the UDP listeners)
//! answers a ClientHello without a valid cookie statelessly (`cookie`);
//! only a verified hello makes a session (`session`), keyed by the client's
//! 5-tuple in the shard. Each application record is one STUN message or
//! ChannelData, handed to the core like a datagram with `Transport::Dtls`;
//! what the core sends back goes through the session.
//!
//! Sessions are budgeted like TLS connections: their number in total and
//! per source (`stream.max_connections`, `stream.max_connections_per_ip`,
//! counted apart from the streams), `tls.handshake_timeout` for the
//! handshake, `stream.auth_timeout` to hold an allocation,
//! `stream.idle_timeout` without one. A sweep per shard enforces the times
//! and the cookie key rotation, so there is no timer per session.

pub mod cookie;
pub mod session;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{DropReason, FiveTuple, ServerAddr, Transport};

use super::mmsg::{Udp, UdpBatch};
use super::recv_loop;
use super::shard::Shard;
use crate::budget::{Budget, ConnLimiter, Exhaustions};
use crate::dtls::DtlsSetup;
use cookie::{CookieKeys, Hello};
use session::{DtlsSession, End, Records, Route};

/// How often the sweep looks at the sessions still in their handshake
/// (flight retransmits, `tls.handshake_timeout`).
const SWEEP: Duration = Duration::from_millis(100);
/// Every this many sweeps it also looks at the open ones (`stream.auth_timeout`,
/// `stream.idle_timeout`: an allocation lookup each), once a second.
const OPEN_SWEEP_EVERY: u32 = 10;

/// What the DTLS listeners of one shard share.
pub struct DtlsShard {
    pub setup: Arc<DtlsSetup>,
    /// Sessions of every shard, in total and per source.
    pub sessions: Arc<ConnLimiter>,
    pub handshake_timeout: Duration,
    pub auth_timeout: Duration,
    pub idle_timeout: Duration,
    pub keys: RefCell<CookieKeys>,
    /// Where exhausted time budgets are counted.
    pub exhaustions: Arc<Exhaustions>,
    /// The records of the datagram being handled (reused).
    pub records: RefCell<Records>,
}

/// Serves one DTLS listener socket for as long as the shard runs.
pub async fn serve(socket: Rc<Udp>, local: ServerAddr, shard: Rc<Shard>, dtls: Rc<DtlsShard>) {
    let wildcard = local.0.ip().is_unspecified();
    let mut batch = UdpBatch::new(0, 0, true);
    let e = recv_loop::serve(&socket, || {
        let n = batch.recv(&socket, wildcard)?;
        let now = Instant::now();
        for i in 0..batch.received().len() {
            let r = batch.received()[i];
            let tuple = r.tuple(local, Transport::Dtls);
            let route = Route {
                socket: socket.clone(),
                client: r.from,
                src: r.dst,
            };
            let (data, out) = batch.datagram_and_reply(&r);
            let d = Incoming {
                tuple,
                route,
                data,
                out,
                now,
            };
            handle_datagram(&shard, &dtls, d);
        }
        // The drive rule (shard.rs), once for the whole batch.
        shard.pump();
        Ok(n)
    })
    .await;
    tracing::error!(%local, "dtls listener failed: {e}");
}

/// One received datagram, where it came from, and a reply buffer.
struct Incoming<'a> {
    tuple: FiveTuple,
    route: Route,
    data: &'a [u8],
    out: &'a mut [u8],
    now: Instant,
}

fn handle_datagram(shard: &Rc<Shard>, dtls: &DtlsShard, d: Incoming<'_>) {
    let Incoming { tuple, data, now, .. } = d;
    // RFC 6347 §4.2.8: a ClientHello in epoch 0 for an established
    // association (a client that restarted behind the same address and
    // port) starts a new handshake, but "MUST NOT destroy the existing
    // association until the client has demonstrated reachability": the
    // cookie exchange, done like a stranger's. A late copy of the hello
    // that made the session (same client random) is no new handshake.
    // The same for a handshake still under way: a client that gave up on
    // it and starts over is answered at once (a cookie-less hello only
    // gets a HelloVerifyRequest; a verified one replaces it) instead of
    // waiting out `tls.handshake_timeout`. One map lookup either way.
    let mut sessions = shard.dtls.borrow_mut();
    let session = sessions
        .get_mut(&tuple)
        .filter(|s| cookie::client_random(data).is_none_or(|r| r == s.hello_random));
    let Some(session) = session else {
        drop(sessions);
        return handle_hello(shard, dtls, d);
    };
    let mut records = dtls.records.borrow_mut();
    records.clear();
    let result = session.receive(data, now, &mut records);
    drop(sessions);
    for record in records.iter() {
        let output = shard.core.borrow_mut().handle_client(now, tuple, record, d.out);
        shard.carry_out(output, record, d.out, |reply| shard.deliver(&tuple, reply));
    }
    if let Err(end) = result {
        end_session(shard, tuple, end, now);
    }
}

/// A datagram that may start a session: the stateless cookie exchange,
/// then a session for a verified ClientHello (replacing an older one of
/// the same 5-tuple).
fn handle_hello(shard: &Rc<Shard>, dtls: &DtlsShard, d: Incoming<'_>) {
    let Incoming {
        tuple,
        route,
        data,
        out,
        now,
    } = d;
    let hello = dtls.keys.borrow().check(route.client, data, out);
    match hello {
        Hello::Garbage => shard.core.borrow_mut().count_drop(DropReason::DtlsRecord),
        // RFC 6347 §4.2.1: answered and forgotten.
        Hello::Challenge(n) => send_plain(shard, &route, &out[..n]),
        Hello::Verified => {
            if shard.dtls.borrow().contains_key(&tuple) {
                end_session(shard, tuple, End::Replaced, now);
            }
            // Over budget: refused (counted and logged by the limiter) and
            // told so, once per hello.
            let Some(permit) = dtls.sessions.acquire(tuple.client.ip()) else {
                if let Some(n) = cookie::refusal(data, out) {
                    send_plain(shard, &route, &out[..n]);
                }
                return;
            };
            match DtlsSession::start(&dtls.setup.context(), data, route, permit, now) {
                Ok(s) => {
                    shard.dtls.borrow_mut().insert(tuple, s);
                }
                Err(_) => shard.core.borrow_mut().count_drop(DropReason::DtlsHandshake),
            }
        }
    }
}

/// Sends a datagram made outside any session (a HelloVerifyRequest, a
/// refusal) back where `route` says.
fn send_plain(shard: &Shard, route: &Route, bytes: &[u8]) {
    if route.send(bytes).is_err() {
        shard.core.borrow_mut().count_drop(DropReason::ClientSendFailed);
    }
}

/// Removes a session and closes what it carried (its allocation dies with
/// it, as with a TLS connection).
fn end_session(shard: &Rc<Shard>, tuple: FiveTuple, end: End, now: Instant) {
    let gone = shard.dtls.borrow_mut().remove(&tuple);
    if let Some(mut s) = gone {
        if end != End::Closed {
            s.close();
        }
    }
    if end == End::HandshakeFailed {
        shard.core.borrow_mut().count_drop(DropReason::DtlsHandshake);
    }
    tracing::debug!(client = %tuple.client, reason = ?end, "dtls session ended");
    shard.core.borrow_mut().connection_closed(now, tuple);
}

/// Every [`SWEEP`]: rotates the cookie key, retransmits handshake flights
/// that are due, and ends the sessions over a time budget (the open ones
/// every [`OPEN_SWEEP_EVERY`] sweeps).
pub async fn sweep(shard: Rc<Shard>, dtls: Rc<DtlsShard>) {
    let mut tick = tokio::time::interval(SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in (0..OPEN_SWEEP_EVERY).cycle() {
        tick.tick().await;
        let open_too = round == 0;
        let now = Instant::now();
        dtls.keys.borrow_mut().rotate(now);
        let mut over = Vec::new();
        {
            let core = shard.core.borrow();
            let mut sessions = shard.dtls.borrow_mut();
            for (tuple, s) in sessions.iter_mut() {
                if s.open && !open_too {
                    continue;
                }
                s.handle_timeout();
                let age = now.saturating_duration_since(s.started);
                // Like a stream connection: no allocation by auth_timeout
                // closes it; once one was held, only the idle rule applies.
                let budget = if !s.open {
                    (age >= dtls.handshake_timeout).then_some(Budget::DtlsHandshakeTime)
                } else if core.has_allocation(tuple) {
                    s.authenticated = true;
                    None
                } else if !s.authenticated && age >= dtls.auth_timeout {
                    Some(Budget::DtlsPreAuthTime)
                } else {
                    let idle = now.saturating_duration_since(s.last_seen);
                    (idle >= dtls.idle_timeout).then_some(Budget::DtlsIdleTime)
                };
                if let Some(b) = budget {
                    over.push((*tuple, b));
                }
            }
        }
        for (tuple, budget) in over {
            dtls.exhaustions.exhausted(budget, Some(tuple.client.ip()));
            end_session(&shard, tuple, End::Failed, now);
        }
        shard.pump();
    }
}
