//! The driver for one WebSocket: reads frames into the hub, writes what the
//! hub queued for it, pings, and notices silence. One task per socket; all
//! protocol decisions are the core's.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use tokio::sync::{mpsc, Notify};
use tokio::time::{Instant, MissedTickBehavior};

use super::hub::{ConnHandle, Hub, Outgoing, QUEUE_MESSAGES};
use super::message::{parse, Refusal};
use super::rooms::ConnId;

/// Pings a peer may leave unanswered (hearing nothing at all) before it is dropped.
const MISSED_PINGS: u32 = 3;

/// Longest wait for one frame to be written before the peer counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// After closing, how long incoming frames are still read (and discarded),
/// so the peer's kernel does not reset the connection before it has read
/// our last error.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Why the loop ended.
enum End {
    /// The hub asked for a close: flush, send a Close frame, linger.
    Close,
    /// The client sent a Close frame: reading on sends the library's reply.
    ClientClosed,
    /// The socket is gone, silent, or too slow: just drop it.
    Gone,
}

/// Serves one upgraded WebSocket until it closes.
pub async fn serve_socket(hub: Arc<Hub>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(QUEUE_MESSAGES);
    let kill = Arc::new(Notify::new());
    let conn = hub.connect(ConnHandle { tx, kill: kill.clone() });
    let limits = hub.limits().clone();
    let interval = limits.ping_interval.max(Duration::from_millis(10));
    let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    tracing::debug!(conn = conn.0, "signaling: connected");

    let end = loop {
        tokio::select! {
            biased;
            _ = kill.notified() => break End::Gone,
            out = rx.recv() => match out {
                Some(out) => {
                    if !send_queued(&hub, conn, &mut socket, out, &kill).await {
                        break End::Gone;
                    }
                }
                None => break End::Close,
            },
            frame = socket.recv() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => hub.handle(conn, parse(&text, limits.max_message_bytes)),
                    Some(Ok(Message::Binary(_))) => hub.handle(conn, Err(Refusal::binary())),
                    // Pongs only prove liveness; pings are answered by the library.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) => break End::ClientClosed,
                    None => break End::Gone,
                    Some(Err(e)) if is_too_large(&e) => {
                        // The reader is unusable now; send the core's answer
                        // (the error, then a close) before going.
                        hub.handle(conn, Err(Refusal::too_large(limits.max_message_bytes)));
                        break flush_then_close(&hub, conn, &mut socket, &mut rx, &kill).await;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(conn = conn.0, "signaling: read failed: {e}");
                        break End::Gone;
                    }
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= interval * MISSED_PINGS {
                    tracing::debug!(conn = conn.0, "signaling: silent peer dropped");
                    break End::Gone;
                }
                if !send(&mut socket, Message::Ping(Default::default()), &kill).await {
                    break End::Gone;
                }
            }
        }
    };

    // The peer's id is reserved before the client can see the close finish.
    hub.disconnect(conn);
    drop(rx);
    hub.ended(conn);
    let linger = match end {
        End::Close => send(&mut socket, Message::Close(None), &kill).await,
        End::ClientClosed => true,
        End::Gone => false,
    };
    if linger {
        let _ = tokio::time::timeout(CLOSE_LINGER, async { while let Some(Ok(_)) = socket.recv().await {} }).await;
    }
    tracing::debug!(conn = conn.0, "signaling: closed");
}

/// Sends what the hub queued (it has asked to close), then reports Close.
async fn flush_then_close(
    hub: &Hub,
    conn: ConnId,
    socket: &mut WebSocket,
    rx: &mut mpsc::Receiver<Outgoing>,
    kill: &Notify,
) -> End {
    while let Some(out) = rx.recv().await {
        if !send_queued(hub, conn, socket, out, kill).await {
            return End::Gone;
        }
    }
    End::Close
}

/// Sends one message the hub queued and credits its bytes back.
async fn send_queued(hub: &Hub, conn: ConnId, socket: &mut WebSocket, out: Outgoing, kill: &Notify) -> bool {
    let ok = send(socket, Message::Text(out.text.into()), kill).await;
    hub.sent(conn, out.charged);
    ok
}

/// One frame out, bounded in time; false when the socket is gone or killed.
async fn send(socket: &mut WebSocket, msg: Message, kill: &Notify) -> bool {
    tokio::select! {
        r = tokio::time::timeout(SEND_TIMEOUT, socket.send(msg)) => matches!(r, Ok(Ok(()))),
        _ = kill.notified() => false,
    }
}

/// tungstenite refuses a message over `max_message_size` (set from
/// `max_message_bytes` at the upgrade) before we see it; its error type is
/// not ours to name, so it is recognised by its text.
fn is_too_large(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("Message too long") || text.contains("Space limit exceeded")
}
