//! Is this request from the host itself? Decided per request, never from
//! the listener's address: a reverse proxy on the same host connects from
//! loopback too (it adds forwarding headers), and a DNS-rebinding page
//! reaches a loopback listener with its own host name in `Host`. A local
//! request comes from a loopback peer, carries no forwarding header, names
//! a loopback host, and, from a browser, comes from a loopback page.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap};

/// Headers a proxy adds; a request carrying one came through a proxy.
const PROXY_HEADERS: [&str; 4] = ["forwarded", "x-forwarded-for", "x-real-ip", "x-forwarded-host"];

/// Why a request is not local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLocal {
    Peer,
    Proxied,
    Host,
    CrossSite,
}

impl NotLocal {
    pub fn message(self) -> &'static str {
        match self {
            NotLocal::Peer => "only for connections from this host",
            NotLocal::Proxied => "not through a proxy (a forwarding header is present)",
            NotLocal::Host => "the Host header must name a loopback host (localhost, 127.0.0.1, [::1])",
            NotLocal::CrossSite => "not from a page of another site",
        }
    }
}

/// Ok if the request from `peer` with `headers` comes from this host.
pub fn check(peer: SocketAddr, headers: &HeaderMap) -> Result<(), NotLocal> {
    if !peer.ip().to_canonical().is_loopback() {
        return Err(NotLocal::Peer);
    }
    if PROXY_HEADERS.iter().any(|h| headers.contains_key(*h)) {
        return Err(NotLocal::Proxied);
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !host.is_some_and(is_loopback_host) {
        return Err(NotLocal::Host);
    }
    let origin = headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or(""));
    if origin.is_some_and(|o| !is_loopback_origin(o)) {
        return Err(NotLocal::CrossSite);
    }
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
        return Err(NotLocal::CrossSite);
    }
    Ok(())
}

/// `localhost`, a 127.x address or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, "")) => v6,
            Some((v6, port)) if port.strip_prefix(':').is_some_and(is_port) => v6,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn is_port(s: &str) -> bool {
    s.parse::<u16>().is_ok()
}

/// `http://` or `https://` and a loopback host, nothing after it.
pub fn is_loopback_origin(origin: &str) -> bool {
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    host.is_some_and(|h| !h.contains('/') && is_loopback_host(h))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// A header map from static pairs (also for the other HTTP tests).
    pub(in crate::http) fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const PEER: &str = "127.0.0.1:50000";

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "127.0.0.1",
            "127.9.8.7:80",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:80",
            "[::2]:80",
            "127.0.0.1:x",
            "[::1]x",
            "[::1]80",
            "",
            "::1",
        ] {
            assert!(!is_loopback_host(no), "{no}");
        }
        assert!(is_loopback_origin("http://localhost:8080"));
        assert!(is_loopback_origin("https://[::1]"));
        assert!(!is_loopback_origin("http://localhost:8080/x"));
        assert!(!is_loopback_origin("null"));
        assert!(!is_loopback_origin("https://evil.example"));
    }

    #[test]
    fn a_local_request_and_each_way_to_not_be_one() {
        let peer: SocketAddr = PEER.parse().unwrap();
        assert_eq!(check(peer, &headers(&[("host", "127.0.0.1:8080")])), Ok(()));
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5".parse().unwrap();
        assert_eq!(check(mapped, &headers(&[("host", "localhost")])), Ok(()));
        let same_page = headers(&[("host", "localhost:8080"), ("origin", "http://localhost:8080")]);
        assert_eq!(check(peer, &same_page), Ok(()));
        let far: SocketAddr = "192.0.2.1:5".parse().unwrap();
        assert_eq!(check(far, &headers(&[("host", "127.0.0.1")])), Err(NotLocal::Peer));
        for proxy in PROXY_HEADERS {
            let mut h = headers(&[("host", "127.0.0.1")]);
            h.insert(proxy, HeaderValue::from_static("203.0.113.9"));
            assert_eq!(check(peer, &h), Err(NotLocal::Proxied), "{proxy}");
        }
        assert_eq!(check(peer, &headers(&[])), Err(NotLocal::Host));
        assert_eq!(
            check(peer, &headers(&[("host", "rebound.evil.example:8080")])),
            Err(NotLocal::Host)
        );
        assert_eq!(
            check(
                peer,
                &headers(&[("host", "127.0.0.1"), ("origin", "https://evil.example")])
            ),
            Err(NotLocal::CrossSite)
        );
        assert_eq!(
            check(
                peer,
                &headers(&[("host", "127.0.0.1"), ("sec-fetch-site", "cross-site")])
            ),
            Err(NotLocal::CrossSite)
        );
    }
}
