//! The HTTP listener: the iceServers API, the signaling WebSocket, the sample
//! page and health, on one axum router served from its own thread.

mod access;
mod admin;
mod ice;
mod metrics;
mod page;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

pub use access::AccessPolicy;

use crate::config::Config;
use crate::server::ServerHandle;
use crate::signaling::{Hub, SignalingLimits};

/// What every HTTP handler can see.
pub struct AppState {
    /// The running shards: live credentials, readiness, metrics, admin.
    pub server: ServerHandle,
    /// The ports clients reach STUN/TURN on (for the iceServers URLs).
    pub ports: crate::ice_servers::IcePorts,
    pub access: AccessPolicy,
    pub public_host: String,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub hub: Arc<Hub>,
}

/// A refusal, as `{"error":{"code":N,"message":"..."}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: &'static str,
}

impl ApiError {
    pub fn new(status: StatusCode, message: &'static str) -> Self {
        ApiError { status, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.status.as_u16(), "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/style.css", get(page::style))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(
            Router::new()
                .route("/admin/allocations", get(admin::allocations))
                .route("/admin/close", axum::routing::post(admin::close))
                .route("/admin/revoke", axum::routing::post(admin::revoke))
                .route("/admin/log-level", axum::routing::post(admin::log_level))
                .route_layer(axum::middleware::from_fn(admin::local_only)),
        )
        .route("/api/ice-servers", get(ice::ice_servers).options(ice::preflight))
        .route("/ws", get(ws))
        .with_state(state)
}

/// `GET /ws`: the Origin is checked before the upgrade (403), then the
/// socket belongs to the signaling hub.
async fn ws(State(app): State<Arc<AppState>>, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    if !app.access.check_ws_origin(&headers) {
        return ApiError::new(StatusCode::FORBIDDEN, "this origin may not open the signaling socket").into_response();
    }
    let hub = app.hub.clone();
    upgrade
        .max_message_size(hub.limits().max_message_bytes)
        .max_frame_size(hub.limits().max_message_bytes)
        .on_upgrade(move |socket| crate::signaling::serve_socket(hub, socket))
}

/// The HTTP listeners, bound; serving on their own thread until stopped.
pub struct HttpServer {
    pub bound: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `http.listen` and serves the router. None when HTTP is disabled.
pub fn start(
    config: &Config,
    handle: &ServerHandle,
    bound: &crate::server::BoundAddrs,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<Option<HttpServer>> {
    if config.http.listen.is_empty() {
        return Ok(None);
    }
    let access = AccessPolicy {
        api_keys: config.http.api_keys.clone(),
        allowed_origins: config.http.allowed_origins.clone(),
        // Open only where validation allows it: unprotected on loopback.
        open: config.http.unprotected() && config.http.loopback_only(),
    };
    let s = &config.signaling;
    let hub = Hub::new(SignalingLimits {
        max_message_bytes: s.max_message_bytes.usize(),
        max_room_size: s.max_room_size,
        max_messages_per_sec: s.max_messages_per_sec,
        resume_grace: s.resume_grace.0,
        ping_interval: s.ping_interval.0,
        max_queued_bytes_per_peer: s.max_queued_bytes_per_peer.usize(),
        max_queued_bytes: s.max_queued_bytes.usize(),
    });
    let state = Arc::new(AppState {
        ports: crate::ice_servers::IcePorts::from_bound(bound),
        server: handle.clone(),
        access,
        public_host: config.http.public_host.clone(),
        default_ttl: config.http.default_ttl.0,
        max_ttl: config.http.max_ttl.0,
        hub,
    });
    let mut listeners = Vec::new();
    for addr in &config.http.listen {
        let l = std::net::TcpListener::bind(addr).with_context(|| format!("http.listen: cannot bind {addr}"))?;
        l.set_nonblocking(true)?;
        listeners.push(l);
    }
    let bound = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<Vec<_>, _>>()?;
    let (stop, stop_rx) = watch::channel(false);
    let app = router(state);
    let handshake_timeout = config.tls.handshake_timeout.0;
    let thread = std::thread::Builder::new()
        .name("ternd-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("cannot start the HTTP runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for l in listeners {
                    let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                        continue;
                    };
                    let mut stop = stop_rx.clone();
                    let app = app.clone();
                    let tls = tls.clone();
                    tasks.push(tokio::spawn(async move {
                        let shutdown = async move {
                            let _ = stop.wait_for(|s| *s).await;
                        };
                        match tls {
                            None => {
                                let service = app.into_make_service_with_connect_info::<SocketAddr>();
                                if let Err(e) = axum::serve(l, service).with_graceful_shutdown(shutdown).await {
                                    tracing::error!("http listener failed: {e}");
                                }
                            }
                            Some(acceptor) => {
                                tokio::select! {
                                    _ = serve_tls(l, acceptor, app, handshake_timeout) => {}
                                    _ = shutdown => {}
                                }
                            }
                        }
                    }));
                }
                let mut stop = stop_rx;
                let _ = stop.wait_for(|s| *s).await;
                // Open WebSockets would hold graceful shutdown: give them a moment.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    for t in tasks {
                        let _ = t.await;
                    }
                })
                .await;
            });
        })
        .context("cannot start the HTTP thread")?;
    Ok(Some(HttpServer {
        bound,
        stop,
        thread: Some(thread),
    }))
}

/// HTTPS: accept, TLS handshake (bounded by `tls.handshake_timeout`, as on
/// the TURN listeners), then one HTTP/1.1 connection with
/// upgrades (for the WebSocket) per client.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    handshake_timeout: Duration,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("https accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                _ => {
                    tracing::debug!(%peer, "https handshake failed");
                    return;
                }
            };
            let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "https connection: {e}");
            }
        });
    }
}

/// `GET /readyz`: 200 while every shard runs and the server is not
/// draining; 503 otherwise (load balancers stop sending new clients).
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if app.server.is_ready() && app.server.ping().await {
        (StatusCode::OK, "ready\n").into_response()
    } else if app.server.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}
