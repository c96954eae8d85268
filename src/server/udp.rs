//! The UDP listener loop of one shard: receive a batch of datagrams per
//! system call, hand each to the shard's protocol core, queue what it asks
//! to send (replies from this socket, relayed data from relay sockets) and
//! send the queue with one sendmmsg per socket before receiving again.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use proto::{canonical, ClientAddr, DropReason, FiveTuple, Output, ServerAddr, Transport};

use super::mmsg::{self, Udp, UdpBatch};
use super::shard::Shard;

/// recvmmsg calls per readiness event before the task yields to the others
/// of the shard (relay sockets, streams, timers).
const ROUNDS: usize = 4;

pub async fn serve(socket: Rc<Udp>, local: ServerAddr, shard: Rc<Shard>) {
    // On a wildcard socket, learn which of our addresses each client wrote
    // to: that is the 5-tuple's server address and the source of every
    // answer (IP_PKTINFO).
    let wildcard = local.0.ip().is_unspecified();
    let mut batch = UdpBatch::new(0, 0, true);
    loop {
        let mut ready = match socket.readable().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(%local, "udp listener failed: {e}");
                return;
            }
        };
        for _ in 0..ROUNDS {
            let n = match batch.recv(&socket, wildcard) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready.clear_ready();
                    break;
                }
                // ICMP errors from earlier sends surface here (ECONNREFUSED
                // and the like); they say nothing about the next datagram.
                Err(e) => {
                    tracing::trace!(%local, "udp recv error: {e}");
                    continue;
                }
            };
            handle_batch(&shard, &socket, local, &mut batch);
            // Fewer datagrams than asked for: the socket is empty. Clearing
            // readiness here saves the recvmmsg that would only say EAGAIN;
            // a datagram that arrived since is a new readiness event, which
            // tokio keeps.
            if n < mmsg::BATCH {
                ready.clear_ready();
                break;
            }
        }
    }
}

fn handle_batch(shard: &Rc<Shard>, socket: &Rc<Udp>, local: ServerAddr, batch: &mut UdpBatch) {
    let now = Instant::now();
    for i in 0..batch.received().len() {
        let r = batch.received()[i];
        let server = match r.dst {
            Some(ip) => ServerAddr(canonical(SocketAddr::new(ip, local.0.port()))),
            None => local,
        };
        let tuple = FiveTuple {
            client: ClientAddr(canonical(r.from)),
            server,
            transport: Transport::Udp,
        };
        let (data, out) = batch.datagram_and_reply(&r);
        let output = shard.core.borrow_mut().handle_client(now, tuple, data, out);
        match output {
            Output::ToPeer {
                relay,
                peer,
                start,
                len,
            } => match shard.relay_socket(relay) {
                Some(relay_socket) => batch.queue_slot(
                    &relay_socket,
                    peer.0,
                    None,
                    (r.slot, start, len),
                    DropReason::RelaySendFailed,
                ),
                None => shard.core.borrow_mut().count_drop(DropReason::RelaySendFailed),
            },
            Output::Reply(len) => {
                batch.queue_reply(socket, r.from, r.dst, r.slot, len);
                shard.pump();
            }
            Output::Nothing => shard.pump(),
            Output::Drop(reason) => tracing::trace!(%local, client = %r.from, reason = reason.label(), "dropped"),
        }
    }
    batch.flush(|reason| shard.core.borrow_mut().count_drop(reason));
}
