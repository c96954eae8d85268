//! Who may use the HTTP API and the signaling socket: bearer API keys
//! (compared in constant time), an allow list of web origins (CORS), and the
//! open laptop default (no keys, no origins, loopback-only listeners), which
//! serves only requests from the host itself ([`super::local`]), decided per
//! request. CORS headers go only to listed origins, never to any origin
//! because the API is open.

use std::net::SocketAddr;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};

use super::{local, ApiError};
use crate::config::Secret;

#[derive(Debug, Clone)]
pub struct AccessPolicy {
    pub api_keys: Vec<Secret>,
    pub allowed_origins: Vec<String>,
    /// No keys, no origins, every listener on loopback: local requests may
    /// call without a key.
    pub open: bool,
}

impl AccessPolicy {
    fn origin_listed(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// The Origin header, if any.
    pub fn origin(headers: &HeaderMap) -> Option<&str> {
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
    }

    /// May this request, from `peer`, mint credentials?
    pub fn check_api(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), ApiError> {
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let key = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "the Authorization header must be `Bearer KEY`",
                ))?;
            return if self.api_keys.iter().any(|k| k.matches(key.trim().as_bytes())) {
                Ok(())
            } else {
                Err(ApiError::new(StatusCode::FORBIDDEN, "wrong API key"))
            };
        }
        if Self::origin(headers).is_some_and(|o| self.origin_listed(o)) {
            return Ok(());
        }
        if self.open {
            return local::check(peer, headers).map_err(|_| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "without an API key, only requests from this host (a loopback Host, no proxy) may call",
                )
            });
        }
        if self.api_keys.is_empty() {
            Err(ApiError::new(StatusCode::FORBIDDEN, "this origin is not allowed"))
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing API key (Authorization: Bearer KEY)",
            ))
        }
    }

    /// May this browser page open the signaling socket? Non-browser clients
    /// send no Origin; a page may if it is same-origin or listed.
    pub fn check_ws_origin(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = Self::origin(headers) else {
            return true;
        };
        if self.origin_listed(origin) {
            return true;
        }
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        same.is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host))
    }

    /// CORS headers for a response to `headers`' Origin, if it is listed
    /// (`*` lists every origin: the operator's explicit choice).
    pub fn cors(&self, headers: &HeaderMap, out: &mut HeaderMap) {
        let Some(origin) = Self::origin(headers) else { return };
        if !self.origin_listed(origin) {
            return;
        }
        if let Ok(v) = HeaderValue::from_str(origin) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            out.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::local::tests::headers;

    fn policy(origins: &[&str]) -> AccessPolicy {
        AccessPolicy {
            api_keys: vec![],
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            open: origins.is_empty(),
        }
    }

    const LOCAL: &str = "127.0.0.1:40000";

    #[test]
    fn open_mode_serves_local_requests_without_cors() {
        let p = policy(&[]);
        let peer = LOCAL.parse().unwrap();
        assert!(p.check_api(peer, &headers(&[("host", "localhost:8080")])).is_ok());
        let proxied = headers(&[("host", "localhost:8080"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(p.check_api(peer, &proxied).unwrap_err().status, StatusCode::FORBIDDEN);
        let far = "192.0.2.7:40000".parse().unwrap();
        assert!(p.check_api(far, &headers(&[("host", "localhost")])).is_err());
        let mut out = HeaderMap::new();
        p.cors(&headers(&[("origin", "https://evil.example")]), &mut out);
        assert!(out.is_empty(), "never reflected because the API is open");
    }

    #[test]
    fn cors_for_listed_origins_and_an_explicit_star() {
        let mut out = HeaderMap::new();
        let evil = headers(&[("origin", "https://evil.example")]);
        policy(&["https://app.example.org"]).cors(&evil, &mut out);
        assert!(out.is_empty());
        policy(&["*"]).cors(&evil, &mut out);
        assert_eq!(out[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://evil.example");
    }
}
