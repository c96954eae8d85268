//! The admin view, for operators on the host itself: list allocations,
//! close one, revoke a REST username before it expires, change the log
//! level. Only local requests may use it ([`super::local`]: a loopback peer,
//! no proxy header, a loopback Host against DNS rebinding, no page of
//! another site), and a request that changes something must carry
//! `X-Ternd-Admin: 1`, which a browser sends cross-site only after a CORS
//! preflight that ternd never grants.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{local, ApiError, AppState};

/// The header every state-changing admin request carries (value `1`).
pub const ADMIN_HEADER: &str = "x-ternd-admin";

/// Middleware on every /admin route: local requests only, and the custom
/// header on anything but GET and HEAD.
pub async fn local_only(ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    if let Err(why) = local::check(peer, req.headers()) {
        return ApiError::new(StatusCode::FORBIDDEN, why.message()).into_response();
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    if !safe && req.headers().get(ADMIN_HEADER).is_none_or(|v| v != "1") {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "an admin request that changes something needs the header `X-Ternd-Admin: 1`",
        )
        .into_response();
    }
    next.run(req).await
}

/// The admin endpoints as `GET /admin/` lists them: method, path, what it does.
const ENDPOINTS: [(&str, &str, &str); 5] = [
    ("GET", "/admin/", "this list"),
    (
        "GET",
        "/admin/allocations",
        "the live allocations with their users, relays and bytes",
    ),
    (
        "POST",
        "/admin/close?client=IP:PORT",
        "closes that client's allocations",
    ),
    (
        "POST",
        "/admin/revoke?username=EXPIRY:USER",
        "refuses that REST username from now on (on every node of a cluster) and closes its allocations",
    ),
    (
        "POST",
        "/admin/log-level?level=FILTER",
        "changes the log level (a log.level filter) now",
    ),
];

/// `GET /admin/`: the admin endpoints, so the README's pointer lands somewhere.
pub async fn index() -> Response {
    let list: Vec<serde_json::Value> = ENDPOINTS
        .iter()
        .map(|(method, path, what)| serde_json::json!({ "method": method, "path": path, "description": what }))
        .collect();
    Json(serde_json::json!({
        "endpoints": list,
        "note": "local requests only; a POST needs the header `X-Ternd-Admin: 1`",
    }))
    .into_response()
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

/// `POST /admin/revoke?username=EXPIRY:USER`: refused from now on, its
/// live allocations closed; in a cluster, on every node. The answer counts
/// the usernames revoked now on this node (expired ones are dropped).
pub async fn revoke(State(app): State<Arc<AppState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(user) = q.get("username").filter(|u| !u.is_empty()) else {
        return ApiError::new(StatusCode::BAD_REQUEST, "username=... is required").into_response();
    };
    let revocations = app.server.revoke(user).await;
    if let Some(c) = &app.cluster {
        c.revoke(user);
    }
    Json(serde_json::json!({ "revoked": user, "revocations": revocations })).into_response()
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
