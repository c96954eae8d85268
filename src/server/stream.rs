//! TCP and TLS client connections: accept, frame (RFC 8489 §6.2.2), hand each
//! message to the shard's core, write replies and relayed data through a
//! per-connection buffer. Each connection is its own task, so one client's
//! garbage or slowness only ever costs that client.
//!
//! A connection is budgeted in time (DESIGN.md §10): one that holds no
//! allocation `auth_timeout` after it was accepted (TLS handshake included)
//! is closed however busy it is, so a STUN-only connection (Binding) lives
//! that long at most; afterwards a connection that completes no message for
//! `idle_timeout` and holds no allocation is closed. What is queued to the
//! client is budgeted in `conn_out`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::framing::next_frame;
use proto::{canonical, ClientAddr, DropReason, FiveTuple, ServerAddr, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::budget::{Budget, ConnLimiter};

use super::conn_out::{write_loop, ConnOut, QueueLimits, WriteEnd};
use super::proxy_protocol::{ProxyError, ProxyRules};
use super::shard::Shard;
use super::sockets;
use super::tcp_relay;

/// Bytes the kernel (and rustls, for TLS) may hold unsent per connection;
/// beyond them what waits is in the connection's budgeted queue (see
/// sockets::limit_unsent).
const KERNEL_UNSENT: usize = 16 * 1024;

/// Limits shared by every stream connection of the process.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    pub idle_timeout: Duration,
    /// How long a connection may hold no allocation after it was accepted.
    pub auth_timeout: Duration,
    pub handshake_timeout: Duration,
    pub max_message: usize,
    /// Open TCP+TLS connections across all shards, in total and per source.
    pub conns: Arc<ConnLimiter>,
    /// What is queued to clients, per connection and in total.
    pub queue: Arc<QueueLimits>,
}

/// What one stream listener does with what it accepts.
#[derive(Clone)]
pub struct Accepting {
    pub local: ServerAddr,
    pub tls: Option<TlsAcceptor>,
    /// Read a PROXY protocol header first, from trusted sources only.
    pub proxy: Option<Arc<ProxyRules>>,
}

/// Accepts connections on `listener` for as long as the shard runs.
pub async fn accept_loop(listener: TcpListener, accepting: Accepting, shard: Rc<Shard>, limits: Rc<StreamLimits>) {
    let local = accepting.local;
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
        // Over budget: closed at once (counted and logged by the limiter).
        // Behind a PROXY-protocol balancer the budget is the real client's,
        // charged once its header is read.
        let slot = match accepting.proxy {
            None => match limits.conns.acquire(peer.ip()) {
                Some(slot) => Some(slot),
                None => continue,
            },
            Some(_) => None,
        };
        let _ = tcp.set_nodelay(true);
        // Every close is abortive (RST): a client that stopped reading would
        // otherwise leave an orphaned socket behind, holding its unsent
        // bytes in the kernel until TCP gives up minutes later. The server
        // never closes with a last message in flight that a client needs.
        if let Err(e) = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO)) {
            tracing::debug!(%peer, "SO_LINGER: {e}");
        }
        if let Err(e) = sockets::limit_unsent(&tcp, KERNEL_UNSENT) {
            tracing::debug!(%peer, "TCP_NOTSENT_LOWAT: {e}");
        }
        let (shard, limits, accepting) = (shard.clone(), limits.clone(), accepting.clone());
        tokio::task::spawn_local(async move {
            let mut tcp = tcp;
            let (_slot, client) = match (&accepting.proxy, slot) {
                (None, slot) => (slot, peer),
                (Some(rules), _) => {
                    let client = match rules.read(&mut tcp, peer).await {
                        Ok(client) => client,
                        Err(e) => {
                            let reason = match e {
                                ProxyError::Untrusted => DropReason::ProxyUntrusted,
                                ProxyError::Header => DropReason::ProxyHeader,
                            };
                            tracing::debug!(%local, %peer, "PROXY protocol: {}", reason.label());
                            shard.core.borrow_mut().count_drop(reason);
                            return;
                        }
                    };
                    match limits.conns.acquire(client.ip()) {
                        Some(slot) => (Some(slot), client),
                        None => return,
                    }
                }
            };
            serve_accepted(tcp, client, local, accepting.tls, shard, &limits).await;
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
    let accepted = tokio::time::Instant::now();
    match tls {
        None => {
            let tuple = FiveTuple {
                client,
                server: local,
                transport: Transport::Tcp,
            };
            serve_connection(tcp, tuple, shard, limits, accepted).await;
        }
        Some(acceptor) => match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(mut stream)) => {
                // rustls keeps up to 64 KiB of records by default; what
                // waits beyond this belongs in the budgeted queue.
                stream.get_mut().1.set_buffer_limit(Some(KERNEL_UNSENT));
                let tuple = FiveTuple {
                    client,
                    server: local,
                    transport: Transport::Tls,
                };
                serve_connection(stream, tuple, shard, limits, accepted).await;
            }
            Ok(Err(e)) => tracing::debug!(%local, %client, "tls handshake failed: {e}"),
            Err(_) => tracing::debug!(%local, %client, "tls handshake timed out"),
        },
    }
}

/// Serves one framed connection (accepted at `accepted`) until the client
/// leaves, misbehaves, idles, does not authenticate in time or stops
/// reading; its allocation, if any, dies with it (RFC 8656 §3.1).
pub async fn serve_connection<S>(
    io: S,
    tuple: FiveTuple,
    shard: Rc<Shard>,
    limits: &StreamLimits,
    accepted: tokio::time::Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let out = Rc::new(ConnOut::new(limits.queue.clone()));
    shard.conns.borrow_mut().insert(tuple, out.clone());
    let (client, transport) = (tuple.client, tuple.transport.name());
    // Reader and writer run in this one task: whichever ends first ends both.
    let mut close = tokio::select! {
        close = run_connection(&mut reader, tuple, &shard, &out, limits, accepted) => close,
        end = write_loop(&mut writer, &out) => match end {
            WriteEnd::Stalled => Close::WriteStall,
            WriteEnd::Failed(e) => Close::Io(e),
        },
    };
    // RFC 6062 §5.4: a client data connection carries raw bytes from now on.
    if let Close::Spliced(splice, early) = close {
        let io = reader.unsplit(writer);
        close = match tcp_relay::run_data_connection(&shard, tuple, io, out.take_pending(), *splice, &early).await {
            Ok(()) => Close::PeerClosed,
            Err(e) => Close::Io(e),
        };
    }
    let budget = match close {
        Close::WriteStall => Some(Budget::StreamWriteStall),
        Close::AuthTimeout => Some(Budget::StreamPreAuthTime),
        _ => None,
    };
    if let Some(b) = budget {
        limits.queue.exhaustions.exhausted(b, Some(client.0.ip()));
    }
    match close {
        Close::Framing(e) => {
            shard.core.borrow_mut().count_drop(DropReason::StreamFraming);
            tracing::debug!(%client, transport, "closing connection: {e}");
        }
        Close::Io(e) => tracing::debug!(%client, transport, "connection error: {e}"),
        Close::Idle => tracing::debug!(%client, transport, "closing idle connection"),
        Close::PeerClosed => tracing::trace!(%client, transport, "connection closed by client"),
        Close::WriteStall => tracing::debug!(%client, transport, "closing connection: the client stopped reading"),
        Close::AuthTimeout => tracing::debug!(%client, transport, "closing connection: no allocation in time"),
        Close::Spliced(..) => {}
    }
    out.close();
    shard.conns.borrow_mut().remove(&tuple);
    shard.core.borrow_mut().connection_closed(Instant::now(), tuple);
    shard.pump();
}

/// Why a connection ended.
enum Close {
    PeerClosed,
    Idle,
    /// No allocation within `auth_timeout` of the accept.
    AuthTimeout,
    /// The client read nothing of what was queued for `write_stall_timeout`.
    WriteStall,
    Framing(proto::framing::FramingError),
    Io(std::io::Error),
    /// A ConnectionBind made this a client data connection (RFC 6062 §5.4),
    /// with these bytes after the request.
    Spliced(Box<tcp_relay::Splice>, Vec<u8>),
}

async fn run_connection<R>(
    mut io: R,
    tuple: FiveTuple,
    shard: &Rc<Shard>,
    conn: &ConnOut,
    limits: &StreamLimits,
    accepted: tokio::time::Instant,
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
    let auth_deadline = accepted + limits.auth_timeout;
    let mut authenticated = false;
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
                    // RFC 6062 ConnectionBind (type 0x000B): answered by the
                    // shard that owns the connection; on success this
                    // connection is spliced to the peer from here on.
                    if msg.len() >= 20 && msg[..2] == [0x00, 0x0B] {
                        match tcp_relay::connection_bind(shard, tuple, msg).await {
                            tcp_relay::BindResult::Spliced(s) => {
                                return Close::Spliced(s, buf[start..filled].to_vec());
                            }
                            tcp_relay::BindResult::Reply(r) => {
                                if !r.is_empty() && !conn.push(&r) {
                                    shard.core.borrow_mut().count_drop(DropReason::ClientSendFailed);
                                }
                                continue;
                            }
                        }
                    }
                    let output = shard
                        .core
                        .borrow_mut()
                        .handle_client(now.into_std(), tuple, msg, &mut out);
                    shard.carry_out(output, &buf[base..start], &out, |reply| conn.push(reply));
                }
            }
        }
        // The drive rule (shard.rs), once for the frames of this read.
        shard.pump();
        // However busy it is, a connection must hold an allocation by the
        // auth deadline; from then on only the idle rule applies.
        if !authenticated && now >= auth_deadline {
            if !shard.core.borrow().has_allocation(&tuple) {
                return Close::AuthTimeout;
            }
            authenticated = true;
        }
        // Keep the partial frame, grow the buffer if that frame needs it.
        buf.copy_within(start..filled, 0);
        filled -= start;
        if filled == 0 && buf.len() > 2048 {
            // A large frame has been handled: give its room back.
            buf.truncate(2048);
            buf.shrink_to_fit();
        } else if filled == buf.len() {
            let want = (buf.len() * 2).min(limits.max_message.max(2048));
            if want <= buf.len() {
                // next_frame refuses frames over max_message, so a full
                // buffer of max_message bytes always holds a whole frame.
                return Close::Framing(proto::framing::FramingError::TooLong(filled));
            }
            buf.resize(want, 0);
        }
        let wake = if authenticated {
            deadline
        } else {
            deadline.min(auth_deadline)
        };
        match tokio::time::timeout_at(wake, io.read(&mut buf[filled..])).await {
            Ok(Ok(0)) => return Close::PeerClosed,
            Ok(Ok(n)) => filled += n,
            Ok(Err(e)) => return Close::Io(e),
            // The auth deadline: checked once the buffered frames are handled.
            Err(_) if wake < deadline => {}
            // A connection carrying an allocation is kept: the allocation's
            // own lifetime (Refresh) governs it.
            Err(_) if filled == 0 && shard.core.borrow().has_allocation(&tuple) => {
                deadline = tokio::time::Instant::now() + limits.idle_timeout;
            }
            Err(_) => return Close::Idle,
        }
    }
}
