//! The sockets of TCP relay allocations (RFC 6062): a listener per relay
//! address whose connections the core accepts or refuses, connections to
//! peers opened from the relay address, and the splice that joins a peer
//! data connection to its client data connection once bound. Peer
//! connections are not read before they are spliced, so what a peer sends
//! early waits in the kernel (and TCP flow control holds the rest back).

use std::rc::Rc;
use std::time::{Duration, Instant};

use proto::{canonical, ConnectionId, PeerAddr, RelayId};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::shard::{PeerConn, Shard};
use super::sockets;

/// Bytes buffered per direction of a splice: the copy waits for the slower
/// side (backpressure) instead of queueing more.
const SPLICE_BUFFER: usize = 16 * 1024;

/// RFC 6062 §5.2: "The timeout value MUST be at least 30 seconds." The core
/// times the Connect out at 30 s too; this bounds the task.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(31);

/// Accepts peers' connections on TCP relay `relay` (RFC 6062 §5.3) for as
/// long as the relay lives (the task is aborted when it is released).
pub async fn accept_peers(shard: Rc<Shard>, relay: RelayId, listener: TcpListener) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(relay = relay.0, "relay accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = PeerAddr(canonical(from));
        let id = shard.core.borrow_mut().peer_accepted(Instant::now(), relay, peer);
        match id {
            Some(id) => {
                let _ = stream.set_nodelay(true);
                shard.peer_conns.borrow_mut().insert(id, PeerConn::Waiting(stream));
            }
            None => tracing::debug!(%peer, "peer connection refused"),
        }
        shard.pump();
    }
}

/// Opens peer data connection `id` from relay address `from` to `peer`
/// (RFC 6062 §5.2) and reports to the core.
pub async fn connect_peer(shard: Rc<Shard>, id: ConnectionId, from: std::net::SocketAddr, peer: PeerAddr) {
    let connected = async {
        let socket = sockets::tcp_from_relay(from)?;
        socket.connect(peer.0).await
    };
    let result = match tokio::time::timeout(CONNECT_TIMEOUT, connected).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    };
    if let Err(e) = &result {
        tracing::debug!(%peer, %from, "connect to peer failed: {e}");
    }
    let keep = shard
        .core
        .borrow_mut()
        .peer_connected(Instant::now(), id, result.is_ok());
    let mut conns = shard.peer_conns.borrow_mut();
    match result {
        Ok(stream) if keep => {
            let _ = stream.set_nodelay(true);
            conns.insert(id, PeerConn::Waiting(stream));
        }
        _ => drop(conns.remove(&id)),
    }
    drop(conns);
    shard.pump();
}

/// Splices the client data connection `client` to peer data connection
/// `id` (RFC 6062 §5.4: "Data received on it MUST be sent as-is to the
/// associated peer data connection" and back): first `early` (bytes the
/// client sent after its ConnectionBind), then both ways until either side
/// closes or the core closes the connection. Returns the bytes relayed
/// (to the peer, to the client).
pub async fn splice<C>(shard: &Rc<Shard>, id: ConnectionId, client: &mut C, early: &[u8]) -> (u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let taken = shard.peer_conns.borrow_mut().remove(&id);
    let Some(PeerConn::Waiting(mut peer)) = taken else {
        return (0, 0);
    };
    let close = Rc::new(Notify::new());
    shard
        .peer_conns
        .borrow_mut()
        .insert(id, PeerConn::Spliced(close.clone()));
    let copied = async {
        peer.write_all(early).await?;
        let (up, down) =
            tokio::io::copy_bidirectional_with_sizes(client, &mut peer, SPLICE_BUFFER, SPLICE_BUFFER).await?;
        Ok::<_, std::io::Error>((up + early.len() as u64, down))
    };
    let result = tokio::select! {
        r = copied => r,
        () = close.notified() => Ok((0, 0)),
    };
    shard.peer_conns.borrow_mut().remove(&id);
    match result {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(conn = id.0, "splice ended: {e}");
            (0, 0)
        }
    }
}
