//! The HTTP accept loop, one for plain HTTP and HTTPS: every connection
//! first takes a slot of the HTTP connection budget (refused: closed at
//! once), then is served by hyper with a timer, so a request head that does
//! not arrive within `http.header_timeout` closes it, and through
//! [`ConnIo`], so a connection that moves no byte for `http.idle_timeout`
//! closes too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::conn_io::ConnIo;
use crate::budget::{Budget, ConnLimiter, Exhaustions};

/// What every HTTP connection of the process is held to.
pub struct ConnLimits {
    /// Open connections, in total and per source (WebSockets included).
    pub conns: Arc<ConnLimiter>,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// TLS handshake time (`tls.handshake_timeout`, as on TURN's listeners).
    pub handshake_timeout: Duration,
    pub exhaustions: Arc<Exhaustions>,
}

/// Accepts on `listener` until `stop` turns true. Each connection task holds
/// a clone of `open` until its socket is closed, so the caller can wait for
/// them (mini-redis's shutdown_complete).
pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: Arc<ConnLimits>,
    mut stop: watch::Receiver<bool>,
    open: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("http accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over budget: closed at once (counted and logged by the limiter).
        let Some(permit) = limits.conns.acquire(peer.ip()) else {
            continue;
        };
        let io = ConnIo::new(tcp, peer.ip(), permit, limits.idle_timeout, limits.exhaustions.clone());
        let (tls, app, limits, stop, open) = (tls.clone(), app.clone(), limits.clone(), stop.clone(), open.clone());
        tokio::spawn(async move {
            let _open = open;
            match tls {
                None => serve_connection(io, peer, app, &limits, stop).await,
                Some(acceptor) => match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(io)).await {
                    Ok(Ok(tls)) => serve_connection(tls, peer, app, &limits, stop).await,
                    _ => tracing::debug!(%peer, "https handshake failed"),
                },
            }
        });
    }
}

/// One HTTP/1.1 connection (with upgrades, for the WebSocket) until the
/// client leaves, a timeout closes it, or a graceful stop lets its
/// request in flight finish.
async fn serve_connection<S>(io: S, peer: SocketAddr, app: Router, limits: &ConnLimits, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let served = Arc::new(AtomicBool::new(false));
    let service = {
        let served = served.clone();
        let svc = hyper_util::service::TowerToHyperService::new(app);
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            served.store(true, Ordering::Relaxed);
            req.extensions_mut().insert(ConnectInfo(peer));
            svc.call(req)
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match result {
        Ok(()) => {}
        // The first request head never came: a slow or idle stranger. (An
        // idle keep-alive connection closed between requests is normal.)
        Err(e) if e.is_timeout() && !served.load(Ordering::Relaxed) => {
            limits.exhaustions.exhausted(Budget::HttpHeaderTimeout, Some(peer.ip()));
        }
        Err(e) => tracing::debug!(%peer, "http connection: {e}"),
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
