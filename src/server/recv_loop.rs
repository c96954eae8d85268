//! The receive loop every UDP socket of a shard runs (listeners and relay
//! sockets alike): wait for readiness, then up to [`ROUNDS`] batches of
//! recvmmsg before yielding to the shard's other tasks.

use std::io;

use tokio::io::{Interest, Ready};

use super::mmsg::{self, Udp};

/// recvmmsg calls per readiness event before the task yields to the others
/// of the shard (relay sockets, streams, timers).
const ROUNDS: usize = 4;

/// Runs `round` (receive one batch, handle it, say how many datagrams came)
/// whenever `socket` is readable. Returns only when waiting for readiness
/// fails (the socket is gone).
pub async fn serve(socket: &Udp, round: impl FnMut() -> io::Result<usize>) -> io::Error {
    serve_with_errors(socket, || true, round).await
}

/// [`serve`] for a socket that also queues errors (IP_RECVERR): when it
/// reports one (EPOLLERR), or a receive fails with its pending error,
/// `drain` reads the error queue, a bounded number of entries at a time,
/// and says whether it emptied it (if not, it runs again next turn).
pub async fn serve_with_errors(
    socket: &Udp,
    mut drain: impl FnMut() -> bool,
    mut round: impl FnMut() -> io::Result<usize>,
) -> io::Error {
    loop {
        let mut ready = match socket.ready(Interest::READABLE | Interest::ERROR).await {
            Ok(r) => r,
            Err(e) => return e,
        };
        if ready.ready().is_error() {
            if drain() {
                ready.clear_ready_matching(Ready::ERROR);
            } else {
                // More errors than one turn reads: let the shard's other
                // tasks run first (readiness stays set, so this comes back).
                drop(ready);
                tokio::task::yield_now().await;
                continue;
            }
        }
        if !ready.ready().is_readable() {
            continue;
        }
        for _ in 0..ROUNDS {
            match round() {
                // Fewer datagrams than asked for: the socket is empty.
                // Clearing readiness here saves the recvmmsg that would only
                // say EAGAIN; a datagram that arrived since is a new
                // readiness event, which tokio keeps.
                Ok(n) if n < mmsg::BATCH => {
                    ready.clear_ready_matching(Ready::READABLE);
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready.clear_ready_matching(Ready::READABLE);
                    break;
                }
                // An ICMP error about an earlier send surfaces here once
                // (ECONNREFUSED and the like): it says nothing about the
                // next datagram. A relay socket queued it: read it now.
                Err(e) => {
                    tracing::trace!("udp recv error: {e}");
                    drain();
                }
            }
        }
    }
}
