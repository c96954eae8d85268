//! The UDP listener loop of one shard: drain the socket on each readiness
//! event, hand every datagram to the shard's protocol core, act on the answer.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use proto::{canonical, ClientAddr, FiveTuple, Output, ServerAddr, Transport};
use tokio::net::UdpSocket;

use super::shard::Shard;

/// Datagrams handled per readiness event before yielding to other tasks.
const BATCH: usize = 64;
/// Replies are STUN responses; 2 KiB holds any of them.
const OUT_LEN: usize = 2048;

pub async fn serve(socket: Rc<UdpSocket>, local: ServerAddr, shard: Rc<Shard>) {
    let mut buf = vec![0u8; 65536];
    let mut out = vec![0u8; OUT_LEN];
    loop {
        if let Err(e) = socket.readable().await {
            tracing::error!(%local, "udp listener failed: {e}");
            return;
        }
        let now = Instant::now();
        for _ in 0..BATCH {
            let (n, from) = match socket.try_recv_from(&mut buf) {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends surface here (ECONNREFUSED and
                // the like); they say nothing about the next datagram.
                Err(e) => {
                    tracing::trace!(%local, "udp recv error: {e}");
                    continue;
                }
            };
            let tuple = FiveTuple {
                client: ClientAddr(canonical(from)),
                server: local,
                transport: Transport::Udp,
            };
            let output = shard.core.borrow_mut().handle_client(now, tuple, &buf[..n], &mut out);
            match output {
                Output::ToPeer {
                    relay,
                    peer,
                    start,
                    len,
                } => shard.to_peer(relay, peer, &buf[start..start + len]),
                Output::Reply(len) => {
                    if let Err(e) = super::sockets::send_now(&socket, &out[..len], from) {
                        tracing::trace!(%local, client = %from, "udp reply not sent: {e}");
                    }
                    shard.pump();
                }
                Output::Nothing => shard.pump(),
                Output::Drop(reason) => tracing::trace!(%local, client = %from, reason = reason.label(), "dropped"),
            }
        }
    }
}
