//! `GET /api/ice-servers?ttl=SECONDS&user=NAME&node=ID`: an
//! RTCConfiguration-shaped `{"iceServers":[...],"ttl":N}` with REST
//! credentials minted from the current secret, ready for `new
//! RTCPeerConnection(...)`. In a cluster the URLs are those of one node: the
//! least loaded live one (of `region=NAME` when that has one), or `node`
//! (404 when it is not live or drains);
//! every node accepts the credentials (the secrets are shared).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::ice_servers::IceHost;

const MAX_USER_LEN: usize = 64;

pub async fn ice_servers(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut extra = HeaderMap::new();
    app.access.cors(&headers, &mut extra);
    match mint(&app, peer, &headers, &q) {
        Ok(body) => {
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r.headers_mut().extend(extra);
            r
        }
        Err(e) => {
            let mut r = e.into_response();
            r.headers_mut().extend(extra);
            r
        }
    }
}

fn mint(
    app: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<String, ApiError> {
    app.access.check_api(peer, headers)?;
    let ttl = match q.get("ttl") {
        None => app.default_ttl,
        Some(v) => match v.parse::<u64>() {
            Ok(s) if s > 0 => Duration::from_secs(s).min(app.max_ttl),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "ttl must be a positive number of seconds",
                ))
            }
        },
    };
    let user = q.get("user").map(String::as_str).unwrap_or("anonymous");
    let valid = |c: char| c.is_ascii_alphanumeric() || "._-@+".contains(c);
    if user.is_empty() || user.len() > MAX_USER_LEN || !user.chars().all(valid) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "user must be 1-64 characters of A-Z a-z 0-9 . _ - @ +",
        ));
    }
    let (username, password) = app.server.shared().mint(user, ttl).ok_or(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no TURN secret configured",
    ))?;
    let wanted = crate::cluster::Wanted {
        node: q.get("node").map(String::as_str),
        region: q.get("region").map(String::as_str),
    };
    if let Some(node) = chosen_node(app, wanted)? {
        let ports = crate::ice_servers::IcePorts {
            udp: node.udp_port,
            tcp: node.tcp_port,
            tls: node.tls_port,
            dtls: node.dtls_port,
        };
        return Ok(crate::ice_servers::ice_servers_json(
            ports,
            &node.advertise,
            &username,
            &password,
            ttl.as_secs(),
        ));
    }
    let host = match &app.ice_host {
        IceHost::Fixed(host) => host.clone(),
        IceHost::FromRequest => request_host(headers).unwrap_or_else(|| "127.0.0.1".into()),
    };
    Ok(crate::ice_servers::ice_servers_json(
        app.ports,
        &host,
        &username,
        &password,
        ttl.as_secs(),
    ))
}

/// The node a caller goes to in a cluster (from the registry as of the last
/// heartbeat, so no wait for Redis); None means this node, as when alone or
/// while Redis is away.
fn chosen_node(app: &AppState, wanted: crate::cluster::Wanted) -> Result<Option<crate::cluster::NodeRecord>, ApiError> {
    let Some(status) = app.cluster.as_ref().map(|c| c.status()).filter(|s| s.enabled) else {
        return Ok(None);
    };
    let now_ms = crate::utc_time::unix_ms();
    match (status.choose(wanted, now_ms), wanted.node) {
        (Some(node), _) => Ok(Some(node)),
        (None, Some(id)) if id != status.node_id => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no live, non-draining node has that id",
        )),
        (None, _) => Ok(None),
    }
}

/// The host part of the Host header (without the port).
fn request_host(headers: &HeaderMap) -> Option<String> {
    let h = headers.get(header::HOST)?.to_str().ok()?;
    let host = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next()?
    } else {
        h.rsplit_once(':').map_or(h, |(host, _)| host)
    };
    let ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    ok.then(|| host.to_string())
}

/// `OPTIONS /api/ice-servers`: the CORS preflight.
pub async fn preflight(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let mut out = HeaderMap::new();
    app.access.cors(&headers, &mut out);
    if out.is_empty() {
        return ApiError::new(StatusCode::FORBIDDEN, "this origin is not allowed").into_response();
    }
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, OPTIONS"),
    );
    out.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization"),
    );
    out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    (StatusCode::NO_CONTENT, out).into_response()
}
