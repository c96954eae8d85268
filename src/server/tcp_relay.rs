//! The sockets of TCP relay allocations (RFC 6062): a listener per relay
//! address whose connections the core accepts or refuses, connections to
//! peers opened from the relay address, and the splice that joins a peer
//! data connection to its client data connection once bound. Peer
//! connections are not read before they are spliced, so what a peer sends
//! early waits in the kernel (and TCP flow control holds the rest back).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{canonical, ConnectionId, FiveTuple, Output, PeerAddr, RelayId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};

use super::shard::{BindAnswer, ForeignBind, PeerConn, Shard};
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

/// Splices client data connection `client` to `peer` (RFC 6062 §5.4:
/// "Data received on it MUST be sent as-is to the associated peer data
/// connection" and back): first `early` (bytes the client sent after its
/// ConnectionBind), then both ways until either side closes or `close` is
/// notified (the core closed the connection). Each way is held to `rate`
/// bytes per second (`turn.bandwidth_limit`; 0: no limit). Returns the
/// bytes relayed (to the peer, to the client), however it ended.
pub async fn splice<C>(client: &mut C, mut peer: TcpStream, close: &Notify, early: &[u8], rate: u64) -> (u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (up, down) = (Cell::new(0u64), Cell::new(0u64));
    let copied = async {
        peer.write_all(early).await?;
        up.set(early.len() as u64);
        let (mut client_rx, mut client_tx) = tokio::io::split(client);
        let (mut peer_rx, mut peer_tx) = peer.split();
        tokio::try_join!(
            copy_counted(&mut client_rx, &mut peer_tx, &up, rate),
            copy_counted(&mut peer_rx, &mut client_tx, &down, rate),
        )
        .map(|_| ())
    };
    let result = tokio::select! {
        r = copied => r,
        () = close.notified() => Ok(()),
    };
    if let Err(e) = result {
        tracing::debug!("splice ended: {e}");
    }
    (up.get(), down.get())
}

/// Copies `from` to `to` until `from` ends (then shuts `to` down for
/// writing), counting into `count`. One buffer of SPLICE_BUFFER bytes: a
/// slow `to` holds `from` back (backpressure), nothing queues. With a
/// `rate`, reading pauses while more than one second's worth beyond it has
/// gone through (the burst UDP relays allow too), and TCP flow control
/// slows the sender.
async fn copy_counted<R, W>(from: &mut R, to: &mut W, count: &Cell<u64>, rate: u64) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let started = tokio::time::Instant::now();
    let mut buf = vec![0u8; SPLICE_BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        if rate > 0 {
            let after = count.get() + n as u64;
            let due = Duration::from_secs_f64(after.saturating_sub(rate) as f64 / rate as f64);
            tokio::time::sleep_until(started + due).await;
        }
        to.write_all(&buf[..n]).await?;
        count.set(count.get() + n as u64);
    }
}

/// Serves the ConnectionBinds other shards forward to this one (the owner
/// of their CONNECTION-IDs), for as long as the shard runs.
pub async fn serve_foreign_binds(shard: Rc<Shard>, mut inbox: mpsc::UnboundedReceiver<ForeignBind>) {
    let mut out = vec![0u8; 1024];
    while let Some(msg) = inbox.recv().await {
        let now = Instant::now();
        match msg {
            ForeignBind::Bind { tuple, frame, answer } => {
                let output = shard.core.borrow_mut().handle_client(now, tuple, &frame, &mut out);
                let reply = match output {
                    Output::Reply(n) => out[..n].to_vec(),
                    _ => Vec::new(),
                };
                let bound = shard.core.borrow().data_connection(&tuple);
                let peer = bound
                    .and_then(|id| shard.take_for_splice(id))
                    .and_then(|(stream, close)| Some((stream.into_std().ok()?, close)));
                if bound.is_some() && peer.is_none() {
                    shard.core.borrow_mut().connection_closed(now, tuple);
                }
                let _ = answer.send(BindAnswer { reply, peer });
            }
            ForeignBind::Closed {
                tuple,
                to_peer,
                to_client,
            } => {
                let mut core = shard.core.borrow_mut();
                core.count_spliced(&tuple, to_peer, to_client);
                core.connection_closed(now, tuple);
            }
        }
        shard.pump();
    }
}

/// How long a shard waits for the owner of a CONNECTION-ID to answer a
/// forwarded ConnectionBind (it answers between two packets).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// A client data connection about to be spliced.
pub struct Splice {
    /// The ConnectionBind success response, sent before any peer byte.
    reply: Vec<u8>,
    peer: TcpStream,
    close: Arc<Notify>,
    /// The shard whose core holds the connection, if not this one.
    owner: Option<usize>,
}

/// What a ConnectionBind on a client connection led to.
pub enum BindResult {
    /// Send this (empty: nothing) and carry on framing.
    Reply(Vec<u8>),
    /// Splice the connection from here on.
    Spliced(Box<Splice>),
}

/// Handles ConnectionBind `frame` from the client connection on `tuple`
/// (RFC 6062 §5.4): on this shard's core, or forwarded to the shard whose
/// core made the CONNECTION-ID it names.
pub async fn connection_bind(shard: &Rc<Shard>, tuple: FiveTuple, frame: &[u8]) -> BindResult {
    let shards = shard.foreign_binds.len();
    let owner = proto::connection::bind_target(frame)
        .map(|id| id.shard(shards))
        .filter(|&owner| owner != shard.index && owner < shards);
    let Some(owner) = owner else {
        let mut out = vec![0u8; 1024];
        let output = shard
            .core
            .borrow_mut()
            .handle_client(Instant::now(), tuple, frame, &mut out);
        let reply = match output {
            Output::Reply(n) => out[..n].to_vec(),
            _ => Vec::new(),
        };
        let bound = shard.core.borrow().data_connection(&tuple);
        let result = match bound.and_then(|id| shard.take_for_splice(id)) {
            Some((peer, close)) => BindResult::Spliced(Box::new(Splice {
                reply,
                peer,
                close,
                owner: None,
            })),
            None => BindResult::Reply(reply),
        };
        shard.pump();
        return result;
    };
    let (answer, answered) = oneshot::channel();
    let sent = shard.foreign_binds[owner].send(ForeignBind::Bind {
        tuple,
        frame: frame.to_vec(),
        answer,
    });
    if sent.is_err() {
        return BindResult::Reply(Vec::new());
    }
    let Ok(Ok(BindAnswer { reply, peer })) = tokio::time::timeout(FORWARD_TIMEOUT, answered).await else {
        return BindResult::Reply(Vec::new());
    };
    match peer.and_then(|(std, close)| Some((TcpStream::from_std(std).ok()?, close))) {
        Some((peer, close)) => BindResult::Spliced(Box::new(Splice {
            reply,
            peer,
            close,
            owner: Some(owner),
        })),
        None => BindResult::Reply(reply),
    }
}

/// Runs a client data connection once its ConnectionBind succeeded: sends
/// what was queued for it and the success response, then splices it to the
/// peer, and finally tells the owning core the data connection ended.
pub async fn run_data_connection<C>(
    shard: &Rc<Shard>,
    tuple: FiveTuple,
    mut client: C,
    mut queued: Vec<u8>,
    splice_to: Splice,
    early: &[u8],
) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let Splice {
        reply,
        peer,
        close,
        owner,
    } = splice_to;
    queued.extend_from_slice(&reply);
    let written = client.write_all(&queued).await;
    let (mut to_peer, mut to_client) = (0, 0);
    if written.is_ok() {
        let rate = shard.core.borrow().config().bandwidth_limit;
        (to_peer, to_client) = splice(&mut client, peer, &close, early, rate).await;
        tracing::debug!(client = %tuple.client, to_peer_bytes = to_peer, to_client_bytes = to_client, "data connection closed");
    }
    // The core holding the connection counts what went through; this
    // shard's core learns of the end from the caller (connection_closed),
    // an owner elsewhere is told here.
    match owner {
        None => shard.core.borrow_mut().count_spliced(&tuple, to_peer, to_client),
        Some(owner) => {
            let _ = shard.foreign_binds[owner].send(ForeignBind::Closed {
                tuple,
                to_peer,
                to_client,
            });
        }
    }
    written
}
