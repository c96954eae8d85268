//! The HTTP listener: the iceServers API, the signaling WebSocket, the sample
//! page and health, on one axum router served from its own thread.

mod access;
mod admin;
mod conn_io;
mod ice;
mod local;
mod metrics;
mod page;
mod process;
mod serve;

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
use tokio::sync::{mpsc, watch};

pub use access::AccessPolicy;

use crate::budget::{Budget, Budgets, ConnLimiter};
use crate::cluster::ClusterHandle;
use crate::config::Config;
use crate::server::ServerHandle;
use crate::signaling::Hub;

/// What every HTTP handler can see.
pub struct AppState {
    /// The running shards: live credentials, readiness, metrics, admin.
    pub server: ServerHandle,
    /// The ports clients reach STUN/TURN on (for the iceServers URLs).
    pub ports: crate::ice_servers::IcePorts,
    pub access: AccessPolicy,
    /// Where the host of the iceServers URLs comes from.
    pub ice_host: crate::ice_servers::IceHost,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub hub: Arc<Hub>,
    /// Open HTTP connections (WebSockets included), for /metrics.
    pub http_conns: Arc<ConnLimiter>,
    /// The cluster (registry, revocations), or usage records alone.
    pub cluster: Option<ClusterHandle>,
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
        .merge(page::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(
            Router::new()
                .route("/admin/", get(admin::index))
                .route("/admin/allocations", get(admin::allocations))
                .route("/admin/close", axum::routing::post(admin::close))
                .route("/admin/revoke", axum::routing::post(admin::revoke))
                .route("/admin/log-level", axum::routing::post(admin::log_level))
                .route_layer(axum::middleware::from_fn(admin::local_only)),
        )
        .route("/api/ice-servers", get(ice::ice_servers).options(ice::preflight))
        .route("/ws", get(ws))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this endpoint does not take that method",
            )
        })
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

/// How long a stop waits for requests in flight (each connection is told to
/// finish its request and close). Upgraded WebSockets are not waited for:
/// they end with the HTTP thread's runtime.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Binds `http.listen` and serves the router. None when HTTP is disabled.
/// Refusals by the HTTP budgets are counted in `exhaustions` (the one the
/// shards count in, so /metrics shows every budget).
pub fn start(
    config: &Config,
    handle: &ServerHandle,
    bound: &crate::server::BoundAddrs,
    tls: Option<tokio_rustls::TlsAcceptor>,
    budgets: &Budgets,
    hub: Arc<Hub>,
    cluster: Option<ClusterHandle>,
) -> anyhow::Result<Option<HttpServer>> {
    let exhaustions = budgets.exhaustions.clone();
    if config.http.listen.is_empty() {
        return Ok(None);
    }
    let h = &config.http;
    let limits = Arc::new(serve::ConnLimits {
        conns: ConnLimiter::new(
            (Budget::HttpConnections, budgets.http_connections),
            (Budget::HttpConnectionsPerIp, budgets.http_connections_per_ip),
            exhaustions.clone(),
        ),
        header_timeout: h.header_timeout.0,
        idle_timeout: h.idle_timeout.0,
        handshake_timeout: config.tls.handshake_timeout.0,
        exhaustions,
    });
    let access = AccessPolicy {
        api_keys: h.api_keys.clone(),
        allowed_origins: h.allowed_origins.clone(),
        // Open only where validation allows it: unprotected on loopback.
        open: h.unprotected() && h.loopback_only(),
    };
    let (ice_host, mismatch) =
        crate::ice_servers::choose_host(&h.public_host, &h.listen, bound, &handle.shared().external_ips);
    if let Some(warning) = mismatch {
        tracing::warn!("{warning}");
    }
    let state = Arc::new(AppState {
        ports: crate::ice_servers::IcePorts::from_bound(bound),
        server: handle.clone(),
        access,
        ice_host,
        default_ttl: h.default_ttl.0,
        max_ttl: h.max_ttl.0,
        hub,
        http_conns: limits.conns.clone(),
        cluster,
    });
    let mut listeners = Vec::new();
    for addr in &h.listen {
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
    let thread = crate::runtime_thread::spawn("ternd-http", move || async move {
        // Every connection holds a sender until its socket closes.
        let (open, mut all_closed) = mpsc::channel::<()>(1);
        for l in listeners {
            match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    let accept = serve::accept_loop(
                        l,
                        tls.clone(),
                        app.clone(),
                        limits.clone(),
                        stop_rx.clone(),
                        open.clone(),
                    );
                    tokio::spawn(accept);
                }
                Err(e) => tracing::error!("http listener: {e}"),
            }
        }
        drop(open);
        let mut stop = stop_rx;
        let _ = stop.wait_for(|s| *s).await;
        let _ = tokio::time::timeout(STOP_GRACE, all_closed.recv()).await;
    })
    .context("cannot start the HTTP thread")?;
    Ok(Some(HttpServer {
        bound,
        stop,
        thread: Some(thread),
    }))
}

/// `GET /readyz`: 200 while every shard runs and the server is not
/// draining; 503 otherwise (load balancers stop sending new clients). In a
/// cluster a second line says `cluster=ok` or `cluster=degraded` (Redis
/// away: the node still relays and stays ready, alone).
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let (status, state) = if app.server.is_ready() && app.server.ping().await {
        (StatusCode::OK, "ready")
    } else if app.server.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    };
    let cluster = app.cluster.as_ref().and_then(|c| c.status().health());
    match cluster {
        Some(health) => (status, format!("{state}\ncluster={health}\n")).into_response(),
        None => (status, format!("{state}\n")).into_response(),
    }
}
