//! The admin view, for operators on the host itself: list allocations,
//! close one, revoke a REST username before it expires, change the log
//! level. Only connections from loopback without proxy headers may use it
//! (a reverse proxy on the same host would otherwise expose it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{ApiError, AppState};

/// Middleware on every /admin route: loopback connections without proxy headers only.
pub async fn local_only(ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    let headers: &HeaderMap = req.headers();
    let proxied = headers.contains_key("x-forwarded-for") || headers.contains_key("forwarded");
    if peer.ip().is_loopback() && !proxied {
        next.run(req).await
    } else {
        ApiError::new(StatusCode::FORBIDDEN, "the admin view is only for local connections").into_response()
    }
}

pub async fn allocations(State(app): State<Arc<AppState>>) -> Response {
    let list: Vec<serde_json::Value> = app
        .server
        .allocations()
        .await
        .into_iter()
        .map(|a| {
            serde_json::json!({
                "shard": a.shard,
                "client": a.tuple.client.to_string(),
                "transport": a.tuple.transport.name(),
                "server": a.tuple.server.to_string(),
                "user": a.username,
                "relays": a.relays.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                "age_s": a.age.as_secs(),
                "expires_in_s": a.expires_in.as_secs(),
                "to_peer_bytes": a.to_peer_bytes,
                "to_client_bytes": a.to_client_bytes,
            })
        })
        .collect();
    Json(serde_json::json!({ "allocations": list })).into_response()
}

/// `POST /admin/close?client=IP:PORT`: closes that client's allocations.
pub async fn close(State(app): State<Arc<AppState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(client) = q.get("client").and_then(|c| c.parse::<SocketAddr>().ok()) else {
        return ApiError::new(StatusCode::BAD_REQUEST, "client=IP:PORT is required").into_response();
    };
    let mut closed = 0;
    for a in app.server.allocations().await {
        if a.tuple.client.0 == client && app.server.close(a.tuple).await {
            closed += 1;
        }
    }
    Json(serde_json::json!({ "closed": closed })).into_response()
}

/// `POST /admin/revoke?username=EXPIRY:USER`: refused from now on.
pub async fn revoke(State(app): State<Arc<AppState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(user) = q.get("username").filter(|u| !u.is_empty()) else {
        return ApiError::new(StatusCode::BAD_REQUEST, "username=... is required").into_response();
    };
    app.server.revoke(user).await;
    Json(serde_json::json!({ "revoked": user })).into_response()
}

/// `POST /admin/log-level?level=debug`.
pub async fn log_level(State(app): State<Arc<AppState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(level) = q.get("level") else {
        return ApiError::new(StatusCode::BAD_REQUEST, "level=... is required").into_response();
    };
    match app.server.set_log_level(level) {
        Ok(()) => Json(serde_json::json!({ "level": level })).into_response(),
        Err(_) => ApiError::new(StatusCode::BAD_REQUEST, "not a valid log level or filter").into_response(),
    }
}
