//! Relay sockets: batches of datagrams from peers, handed to the core and
//! queued to the client with the ChannelData or Data-indication header
//! written in place in front of the payload (zero-copy), then sent with one
//! sendmmsg (equal datagrams as one GSO message) before the task yields;
//! and the ICMP errors the socket queues about what it sent to peers.
//!
//! Every relay socket of a shard receives into one shared batch (the tasks
//! run one at a time and each flushes before it yields). Holding the batch
//! open across tasks until the end of the event-loop turn saved ~2 % CPU
//! at 100 000 msg/s but added ~20 µs to the median round trip, so each
//! task sends its own datagrams at once (see the closing note of issue 7).

use std::rc::Rc;
use std::time::Instant;

use proto::{DropReason, PeerAddr, PeerOutput, RelayId, Transport, ICMP_INDICATION_LEN, PEER_HEADROOM};

use super::errqueue;
use super::mmsg::Udp;
use super::recv_loop;
use super::shard::Shard;

pub async fn read_peers(shard: Rc<Shard>, relay: RelayId, socket: Rc<Udp>) {
    let drain = || drain_errors(&shard, relay, &socket);
    recv_loop::serve_with_errors(&socket, drain, || {
        let mut batch = shard.peer_batch.borrow_mut();
        let n = batch.recv(&socket, false)?;
        let now = Instant::now();
        for i in 0..batch.received().len() {
            let r = batch.received()[i];
            let out = shard.core.borrow_mut().handle_peer(
                now,
                relay,
                PeerAddr(r.from),
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
                Transport::Tcp | Transport::Tls | Transport::Dtls => {
                    shard.to_client(&tuple, &batch.slot_mut(r.slot)[start..start + len])
                }
            }
        }
        // The drive rule (shard.rs), once for the whole batch.
        shard.pump();
        batch.flush(|reason| shard.core.borrow_mut().count_drop(reason));
        Ok(n)
    })
    .await;
}

/// Reads up to [`errqueue::DRAIN_MAX`] ICMP errors about datagrams this
/// relay sent and hands each to the core (RFC 8656 §11.5), which may answer
/// with a Data indication for the client. True once the queue is empty.
fn drain_errors(shard: &Rc<Shard>, relay: RelayId, socket: &Udp) -> bool {
    let now = Instant::now();
    let mut emptied = false;
    let mut fed = false;
    for _ in 0..errqueue::DRAIN_MAX {
        let e = match errqueue::recv(socket.get_ref()) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    tracing::trace!("relay error queue: {e}");
                }
                emptied = true;
                break;
            }
        };
        fed = true;
        let mut out = [0u8; ICMP_INDICATION_LEN];
        let o = shard
            .core
            .borrow_mut()
            .handle_peer_icmp(now, relay, PeerAddr(e.peer), e.icmp, &mut out);
        if let PeerOutput::ToClient { tuple, start, len } = o {
            shard.to_client(&tuple, &out[start..start + len]);
        }
    }
    // The drive rule (shard.rs), when the core was given something.
    if fed {
        shard.pump();
    }
    emptied
}
