//! The UDP listeners of one shard: each received batch of datagrams is
//! handed to the shard's protocol core, what it asks to send (replies from
//! this socket, relayed data from relay sockets) is queued, and the queue
//! leaves with one sendmmsg per socket before receiving again.

use std::rc::Rc;
use std::time::Instant;

use proto::{DropReason, Output, ServerAddr, Transport};

use super::mmsg::{Udp, UdpBatch};
use super::recv_loop;
use super::shard::Shard;

pub async fn serve(socket: Rc<Udp>, local: ServerAddr, shard: Rc<Shard>) {
    // On a wildcard socket, learn which of our addresses each client wrote
    // to: that is the 5-tuple's server address and the source of every
    // answer (IP_PKTINFO).
    let wildcard = local.0.ip().is_unspecified();
    let mut batch = UdpBatch::new(0, 0, true);
    let e = recv_loop::serve(&socket, || {
        let n = batch.recv(&socket, wildcard)?;
        handle_batch(&shard, &socket, local, &mut batch);
        Ok(n)
    })
    .await;
    tracing::error!(%local, "udp listener failed: {e}");
}

fn handle_batch(shard: &Rc<Shard>, socket: &Rc<Udp>, local: ServerAddr, batch: &mut UdpBatch) {
    let now = Instant::now();
    for i in 0..batch.received().len() {
        let r = batch.received()[i];
        let tuple = r.tuple(local, Transport::Udp);
        let (data, out) = batch.datagram_and_reply(&r);
        let output = shard.core.borrow_mut().handle_client(now, tuple, data, out);
        match output {
            Output::ToPeer {
                relay,
                peer,
                start,
                len,
                dont_fragment,
            } => match shard.relay_socket(relay, dont_fragment, || {
                batch.flush(|reason| shard.core.borrow_mut().count_drop(reason))
            }) {
                Some(relay_socket) => batch.queue_slot(
                    &relay_socket,
                    peer.0,
                    None,
                    (r.slot, start, len),
                    DropReason::RelaySendFailed,
                ),
                None => shard.core.borrow_mut().count_drop(DropReason::RelaySendFailed),
            },
            Output::Reply(len) => batch.queue_reply(socket, r.from, r.dst, r.slot, len),
            // RFC 5780 CHANGE-REQUEST: from the listener of another of our addresses.
            Output::ReplyFrom { len, from } => match shard.listener_for(from) {
                Some((other, src)) => batch.queue_reply(&other, r.from, src, r.slot, len),
                None => shard.core.borrow_mut().count_drop(DropReason::ClientSendFailed),
            },
            Output::Nothing => {}
            Output::Drop(reason) => tracing::trace!(%local, client = %r.from, reason = reason.label(), "dropped"),
        }
    }
    // The drive rule (shard.rs), once for the whole batch.
    shard.pump();
    batch.flush(|reason| shard.core.borrow_mut().count_drop(reason));
}
