//! The UDP listener loop of one shard: drain the socket on each readiness
//! event, hand every datagram to the shard's protocol core, act on the answer.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use proto::{canonical, ClientAddr, FiveTuple, Output, ServerAddr, Transport};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::shard::Shard;
use super::sockets;

/// Datagrams handled per readiness event before yielding to other tasks.
const BATCH: usize = 64;
/// Replies are STUN responses; 2 KiB holds any of them.
const OUT_LEN: usize = 2048;

pub async fn serve(socket: Rc<UdpSocket>, local: ServerAddr, shard: Rc<Shard>) {
    let wildcard = local.0.ip().is_unspecified();
    let mut buf = vec![0u8; 65536];
    let mut out = vec![0u8; OUT_LEN];
    loop {
        if let Err(e) = socket.readable().await {
            tracing::error!(%local, "udp listener failed: {e}");
            return;
        }
        let now = Instant::now();
        for _ in 0..BATCH {
            // On a wildcard socket, learn which of our addresses the client
            // wrote to: that is the 5-tuple's server address and the source
            // of every answer.
            let received = if wildcard {
                socket.try_io(Interest::READABLE, || sockets::recv_with_dst(&socket, &mut buf))
            } else {
                socket.try_recv_from(&mut buf).map(|(n, from)| (n, from, None))
            };
            let (n, from, dst) = match received {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors from earlier sends surface here (ECONNREFUSED and
                // the like); they say nothing about the next datagram.
                Err(e) => {
                    tracing::trace!(%local, "udp recv error: {e}");
                    continue;
                }
            };
            let server = match dst {
                Some(ip) => ServerAddr(canonical(SocketAddr::new(ip, local.0.port()))),
                None => local,
            };
            let tuple = FiveTuple {
                client: ClientAddr(canonical(from)),
                server,
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
                    let sent = match dst {
                        Some(ip) => sockets::send_from(&socket, &out[..len], from, ip),
                        None => sockets::send_now(&socket, &out[..len], from),
                    };
                    if let Err(e) = sent {
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
