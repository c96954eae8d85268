//! Relay sockets: datagrams from peers, handed to the core and forwarded to
//! the client with the ChannelData or Data-indication header written in
//! place in front of the payload (zero-copy).

use std::io;
use std::rc::Rc;
use std::time::Instant;

use proto::{PeerOutput, RelayId, PEER_HEADROOM, PEER_TAILROOM};
use tokio::net::UdpSocket;

use super::shard::Shard;

/// Datagrams handled per readiness event before yielding to other tasks.
const BATCH: usize = 64;

pub async fn read_peers(shard: Rc<Shard>, relay: RelayId, socket: Rc<UdpSocket>) {
    loop {
        if socket.readable().await.is_err() {
            return;
        }
        let now = Instant::now();
        for _ in 0..BATCH {
            let mut buf = shard.peer_buf.borrow_mut();
            let cap = buf.len() - PEER_TAILROOM;
            let (n, peer) = match socket.try_recv_from(&mut buf[PEER_HEADROOM..cap]) {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            };
            let out = shard
                .core
                .borrow_mut()
                .handle_peer(now, relay, peer, &mut buf, PEER_HEADROOM, n);
            if let PeerOutput::ToClient { tuple, start, len } = out {
                shard.to_client(&tuple, &buf[start..start + len]);
            }
        }
    }
}
