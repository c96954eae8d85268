//! TCP and TLS client connections: accept, frame (RFC 8489 §6.2.2), hand each
//! message to the shard's core, write replies and relayed data through a
//! per-connection buffer. Each connection is its own task, so one client's
//! garbage or slowness only ever costs that client.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::framing::next_frame;
use proto::{canonical, ClientAddr, DropReason, FiveTuple, Output, ServerAddr, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use super::shard::Shard;

/// Bytes a connection may have queued for a client that reads slowly; past
/// that, further relayed datagrams to it are dropped (as UDP would).
const MAX_QUEUED: usize = 256 * 1024;

/// Limits shared by every stream connection of the process.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_message: usize,
    pub max_connections: usize,
    /// Open TCP+TLS connections across all shards.
    pub open: Arc<AtomicUsize>,
}

/// Decrements the open-connection count when a connection ends.
struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlot {
    fn take(limits: &StreamLimits) -> Option<Self> {
        let prev = limits.open.fetch_add(1, Ordering::Relaxed);
        let slot = ConnectionSlot(limits.open.clone());
        (prev < limits.max_connections).then_some(slot)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The write side of a connection: anything for the client is appended here
/// and a writer task drains it, so relaying never waits on a slow client.
pub struct ConnOut {
    pending: RefCell<Vec<u8>>,
    notify: Notify,
    closed: Cell<bool>,
}

impl ConnOut {
    fn new() -> Self {
        ConnOut {
            pending: RefCell::new(Vec::new()),
            notify: Notify::new(),
            closed: Cell::new(false),
        }
    }

    /// Queues `data`; false (dropped) if the connection is gone or backed up.
    pub fn push(&self, data: &[u8]) -> bool {
        let mut p = self.pending.borrow_mut();
        if self.closed.get() || p.len() + data.len() > MAX_QUEUED {
            return false;
        }
        p.extend_from_slice(data);
        self.notify.notify_one();
        true
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, out: Rc<ConnOut>) {
    let mut batch = Vec::new();
    loop {
        out.notify.notified().await;
        loop {
            std::mem::swap(&mut *out.pending.borrow_mut(), &mut batch);
            if batch.is_empty() {
                break;
            }
            if w.write_all(&batch).await.is_err() {
                out.closed.set(true);
                return;
            }
            batch.clear();
        }
    }
}

/// Accepts connections on `listener` for as long as the shard runs.
pub async fn accept_loop(
    listener: TcpListener,
    local: ServerAddr,
    tls: Option<TlsAcceptor>,
    shard: Rc<Shard>,
    limits: Rc<StreamLimits>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%local, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = ConnectionSlot::take(&limits) else {
            tracing::debug!(%local, client = %peer, "connection limit reached, closing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (shard, limits, tls) = (shard.clone(), limits.clone(), tls.clone());
        tokio::task::spawn_local(async move {
            let _slot = slot;
            serve_accepted(tcp, peer, local, tls, shard, &limits).await;
        });
    }
}

async fn serve_accepted(
    tcp: TcpStream,
    peer: SocketAddr,
    local: ServerAddr,
    tls: Option<TlsAcceptor>,
    shard: Rc<Shard>,
    limits: &StreamLimits,
) {
    let client = ClientAddr(canonical(peer));
    match tls {
        None => {
            let tuple = FiveTuple {
                client,
                server: local,
                transport: Transport::Tcp,
            };
            serve_connection(tcp, tuple, shard, limits).await;
        }
        Some(acceptor) => match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => {
                let tuple = FiveTuple {
                    client,
                    server: local,
                    transport: Transport::Tls,
                };
                serve_connection(stream, tuple, shard, limits).await;
            }
            Ok(Err(e)) => tracing::debug!(%local, %client, "tls handshake failed: {e}"),
            Err(_) => tracing::debug!(%local, %client, "tls handshake timed out"),
        },
    }
}

/// Serves one framed connection until the client leaves, misbehaves or
/// idles; its allocation, if any, dies with it (RFC 8656 §3.1).
pub async fn serve_connection<S>(io: S, tuple: FiveTuple, shard: Rc<Shard>, limits: &StreamLimits)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (reader, writer) = tokio::io::split(io);
    let out = Rc::new(ConnOut::new());
    shard.conns.borrow_mut().insert(tuple, out.clone());
    let writer = tokio::task::spawn_local(write_loop(writer, out.clone()));
    let (client, transport) = (tuple.client, tuple.transport.name());
    match run_connection(reader, tuple, &shard, &out, limits).await {
        Close::Framing(e) => {
            shard.core.borrow_mut().count_drop(DropReason::StreamFraming);
            tracing::debug!(%client, transport, "closing connection: {e}");
        }
        Close::Io(e) => tracing::debug!(%client, transport, "connection error: {e}"),
        Close::Idle => tracing::debug!(%client, transport, "closing idle connection"),
        Close::PeerClosed => tracing::trace!(%client, transport, "connection closed by client"),
    }
    out.closed.set(true);
    writer.abort();
    shard.conns.borrow_mut().remove(&tuple);
    shard.core.borrow_mut().connection_closed(Instant::now(), tuple);
    shard.pump();
}

/// Why a connection ended.
enum Close {
    PeerClosed,
    Idle,
    Framing(proto::framing::FramingError),
    Io(std::io::Error),
}

async fn run_connection<R>(
    mut io: R,
    tuple: FiveTuple,
    shard: &Rc<Shard>,
    conn: &ConnOut,
    limits: &StreamLimits,
) -> Close
where
    R: AsyncRead + Unpin,
{
    // Starts small and grows to the largest frame seen (at most max_message),
    // so idle connections cost little memory.
    let mut buf = vec![0u8; 2048];
    let mut filled = 0;
    let mut out = vec![0u8; 2048];
    let mut deadline = tokio::time::Instant::now() + limits.idle_timeout;
    loop {
        // Handle every complete frame already buffered (one clock read for
        // all of them).
        let now = tokio::time::Instant::now();
        let mut start = 0;
        loop {
            match next_frame(&buf[start..filled], limits.max_message) {
                Err(e) => return Close::Framing(e),
                Ok(None) => break,
                Ok(Some(frame)) => {
                    let msg = &buf[start..start + frame.len()];
                    let base = start;
                    start += frame.len();
                    deadline = now + limits.idle_timeout;
                    let output = shard
                        .core
                        .borrow_mut()
                        .handle_client(now.into_std(), tuple, msg, &mut out);
                    match output {
                        Output::ToPeer {
                            relay,
                            peer,
                            start: s,
                            len,
                        } => shard.to_peer(relay, peer.0, &buf[base + s..base + s + len]),
                        Output::Reply(n) => {
                            if !conn.push(&out[..n]) {
                                shard.core.borrow_mut().count_drop(DropReason::ClientSendFailed);
                            }
                            shard.pump();
                        }
                        Output::Nothing => shard.pump(),
                        Output::Drop(_) => {}
                    }
                }
            }
        }
        // Keep the partial frame, grow the buffer if that frame needs it.
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == buf.len() {
            let want = (buf.len() * 2).min(limits.max_message.max(2048));
            if want <= buf.len() {
                // next_frame refuses frames over max_message, so a full
                // buffer of max_message bytes always holds a whole frame.
                return Close::Framing(proto::framing::FramingError::TooLong(filled));
            }
            buf.resize(want, 0);
        }
        match tokio::time::timeout_at(deadline, io.read(&mut buf[filled..])).await {
            Ok(Ok(0)) => return Close::PeerClosed,
            Ok(Ok(n)) => filled += n,
            Ok(Err(e)) => return Close::Io(e),
            // A connection carrying an allocation is kept: the allocation's
            // own lifetime (Refresh) governs it.
            Err(_) if filled == 0 && shard.core.borrow().has_allocation(&tuple) => {
                deadline = tokio::time::Instant::now() + limits.idle_timeout;
            }
            Err(_) => return Close::Idle,
        }
    }
}
