//! The message exchange over a connected ICE conn: each side sends
//! `ping 0` .. `ping N-1` and expects the same N from the other side.
//!
//! Datagrams can be lost (the other side may not have selected its pair yet
//! when the first ones arrive), so the pings are re-sent every round until the
//! other side says `got-all`; a side that holds all N answers every ping it
//! still receives with `got-all`, and lingers a moment before closing so its
//! last `got-all` can be re-asked for. The caller bounds the whole exchange
//! with its deadline; `MAX_ROUNDS` bounds the re-sends on their own.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use webrtc_util::Conn;

const ROUND: Duration = Duration::from_millis(250);
const MAX_ROUNDS: u32 = 240;
const LINGER: Duration = Duration::from_secs(1);
const GOT_ALL: &[u8] = b"got-all";

/// Counters the caller reads even when it gave up on the exchange.
#[derive(Default)]
pub struct Counts {
    /// Distinct pings sent at least once.
    pub sent: AtomicU32,
    /// Distinct pings received from the other side.
    pub received: AtomicU32,
}

/// Runs the exchange; returns when both sides hold all `n` messages, or with
/// an error naming how far it got.
pub async fn run(conn: Arc<dyn Conn + Send + Sync>, n: u32, counts: &Counts) -> anyhow::Result<()> {
    let mut got = BTreeSet::new();
    let mut sent = BTreeSet::new();
    let mut peer_has_all = false;
    let mut buf = vec![0u8; 1500];
    for _ in 0..MAX_ROUNDS {
        if !peer_has_all {
            for i in 0..n {
                match conn.send(format!("ping {i}").as_bytes()).await {
                    Ok(_) => {
                        if sent.insert(i) {
                            counts.sent.store(sent.len() as u32, Ordering::Relaxed);
                        }
                    }
                    Err(e) => log::debug!("sending ping {i}: {e}"),
                }
            }
        }
        let round_end = Instant::now() + ROUND;
        while let Ok(r) = tokio::time::timeout_at(round_end, conn.recv(&mut buf)).await {
            let len = r.map_err(|e| anyhow::anyhow!("ice: the connection failed while receiving: {e}"))?;
            let msg = &buf[..len];
            if msg == GOT_ALL {
                peer_has_all = true;
            } else if let Some(i) = parse_ping(msg).filter(|i| *i < n) {
                got.insert(i);
                counts.received.store(got.len() as u32, Ordering::Relaxed);
                if got.len() as u32 == n {
                    // Re-sent on every ping that still arrives: the other side asks again.
                    let _ = conn.send(GOT_ALL).await;
                }
            } else {
                log::warn!("ignoring an unexpected message: {:?}", String::from_utf8_lossy(msg));
            }
        }
        if peer_has_all && got.len() as u32 == n {
            linger(&conn, &mut buf).await;
            return Ok(());
        }
    }
    anyhow::bail!(
        "messages: received {} of {n} after {MAX_ROUNDS} rounds of re-sending",
        got.len()
    )
}

/// Answers the other side's re-sent pings with `got-all` for a moment.
async fn linger(conn: &Arc<dyn Conn + Send + Sync>, buf: &mut [u8]) {
    let end = Instant::now() + LINGER;
    while let Ok(Ok(len)) = tokio::time::timeout_at(end, conn.recv(buf)).await {
        if parse_ping(&buf[..len]).is_some() {
            let _ = conn.send(GOT_ALL).await;
        }
    }
}

fn parse_ping(msg: &[u8]) -> Option<u32> {
    std::str::from_utf8(msg).ok()?.strip_prefix("ping ")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_ping;

    #[test]
    fn pings() {
        assert_eq!(parse_ping(b"ping 3"), Some(3));
        assert_eq!(parse_ping(b"ping x"), None);
        assert_eq!(parse_ping(b"got-all"), None);
    }
}
