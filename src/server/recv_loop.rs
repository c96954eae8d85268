//! The receive loop every UDP socket of a shard runs (listeners and relay
//! sockets alike): wait for readiness, then up to [`ROUNDS`] batches of
//! recvmmsg before yielding to the shard's other tasks.

use std::io;

use super::mmsg::{self, Udp};

/// recvmmsg calls per readiness event before the task yields to the others
/// of the shard (relay sockets, streams, timers).
const ROUNDS: usize = 4;

/// Runs `round` (receive one batch, handle it, say how many datagrams came)
/// whenever `socket` is readable. Returns only when waiting for readiness
/// fails (the socket is gone).
pub async fn serve(socket: &Udp, mut round: impl FnMut() -> io::Result<usize>) -> io::Error {
    loop {
        let mut ready = match socket.readable().await {
            Ok(r) => r,
            Err(e) => return e,
        };
        for _ in 0..ROUNDS {
            match round() {
                // Fewer datagrams than asked for: the socket is empty.
                // Clearing readiness here saves the recvmmsg that would only
                // say EAGAIN; a datagram that arrived since is a new
                // readiness event, which tokio keeps.
                Ok(n) if n < mmsg::BATCH => {
                    ready.clear_ready();
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready.clear_ready();
                    break;
                }
                // ICMP errors from earlier sends surface here (ECONNREFUSED
                // and the like); they say nothing about the next datagram.
                Err(e) => tracing::trace!("udp recv error: {e}"),
            }
        }
    }
}
