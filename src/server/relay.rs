//! Relay sockets: datagrams from peers, handed to the core and queued to the
//! client with the ChannelData or Data-indication header written in place in
//! front of the payload (zero-copy).
//!
//! Every relay socket of a shard receives into one shared batch, and the
//! batch is sent by a separate task ([`flush_peer_batch`]) that runs after
//! the relay tasks woken in the same turn of the event loop: datagrams from
//! many allocations (each with its own relay socket, one datagram per
//! wakeup at moderate load) leave for their clients in one sendmmsg per
//! listener socket instead of one sendto each.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use proto::{DropReason, PeerOutput, RelayId, Transport, PEER_HEADROOM};

use super::mmsg::Udp;
use super::shard::Shard;

/// recvmmsg calls per readiness event before the task yields.
const ROUNDS: usize = 4;

pub async fn read_peers(shard: Rc<Shard>, relay: RelayId, socket: Rc<Udp>) {
    loop {
        let Ok(mut ready) = socket.readable().await else {
            return;
        };
        for _ in 0..ROUNDS {
            let mut batch = shard.peer_batch.borrow_mut();
            if batch.free() == 0 {
                batch.flush(|reason| shard.core.borrow_mut().count_drop(reason));
            }
            let first = batch.received().len();
            let want = batch.free();
            let n = match batch.recv(&socket, false) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready.clear_ready();
                    break;
                }
                Err(_) => continue,
            };
            let now = Instant::now();
            for i in first..batch.received().len() {
                let r = batch.received()[i];
                let out = shard.core.borrow_mut().handle_peer(
                    now,
                    relay,
                    r.from,
                    batch.slot_mut(r.slot),
                    PEER_HEADROOM,
                    r.len,
                );
                let PeerOutput::ToClient { tuple, start, len } = out else {
                    continue;
                };
                match tuple.transport {
                    Transport::Udp => match shard.listener_for(tuple.server.0) {
                        Some((listener, src)) => batch.queue_slot(
                            &listener,
                            tuple.client.0,
                            src,
                            (r.slot, start, len),
                            DropReason::ClientSendFailed,
                        ),
                        None => shard.core.borrow_mut().count_drop(DropReason::ClientSendFailed),
                    },
                    Transport::Tcp | Transport::Tls => {
                        shard.to_client(&tuple, &batch.slot_mut(r.slot)[start..start + len])
                    }
                }
            }
            // The flush task runs after the tasks already woken this turn.
            shard.peer_flush.notify_one();
            // Fewer datagrams than there was room for: the socket is empty
            // (see udp::serve).
            if n < want {
                ready.clear_ready();
                break;
            }
        }
    }
}

/// Sends what the relay tasks queued, once per turn of the event loop.
pub async fn flush_peer_batch(shard: Rc<Shard>) {
    loop {
        shard.peer_flush.notified().await;
        shard
            .peer_batch
            .borrow_mut()
            .flush(|reason| shard.core.borrow_mut().count_drop(reason));
    }
}
