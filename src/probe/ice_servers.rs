//! `--ice-servers URL`: fetch an RTCConfiguration-shaped
//! `{"iceServers":[{"urls":...,"username":...,"credential":...}]}` with a
//! plain HTTP/1.1 GET (RFC 9112) over http:// or https://, optionally with
//! `Authorization: Bearer KEY`, and list its URLs with their credentials.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::conn::{handshake, Bounded};
use super::session::Credentials;
use super::untrusted::printable;
use super::url::{split_host_port, ServerUrl};

/// A response larger than this is not an iceServers document.
const MAX_RESPONSE: usize = 1 << 20;

/// The most URLs probed from one document: each costs several checks, and
/// the document comes from the network.
pub const MAX_URLS: usize = 32;

/// One entry of the document: a URL (or why it does not parse) and the
/// credentials that came with it.
pub type Entry = (Result<ServerUrl, String>, Option<Credentials>);

pub fn fetch(
    url: &str,
    key: Option<&str>,
    timeout: Duration,
    tls: &std::sync::Arc<rustls::ClientConfig>,
) -> Result<Vec<Entry>, String> {
    let (secure, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err("not an http:// or https:// URL".into());
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let (host, port) = split_host_port(authority)?;
    let port = port.unwrap_or(if secure { 443 } else { 80 });
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let deadline = Instant::now() + timeout;
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect to {addr}: {e}"))?;
    let io = Bounded {
        sock: &stream,
        deadline,
    };
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\nAccept: application/json\r\nConnection: close\r\n");
    if let Some(k) = key {
        request.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    request.push_str("\r\n");
    let raw = if secure {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("`{host}` is not a TLS server name: {e}"))?;
        let mut conn = rustls::ClientConnection::new(tls.clone(), name).map_err(|e| e.to_string())?;
        handshake(&mut conn, &stream, deadline).map_err(|e| format!("TLS: {e}"))?;
        exchange(rustls::StreamOwned::new(conn, io), &request, deadline)?
    } else {
        exchange(io, &request, deadline)?
    };
    parse_response(&raw)
}

fn exchange<S: Read + Write>(mut s: S, request: &str, deadline: Instant) -> Result<Vec<u8>, String> {
    s.write_all(request.as_bytes())
        .and_then(|_| s.flush())
        .map_err(|e| format!("send the request: {e}"))?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if Instant::now() > deadline {
            return Err("timed out reading the response".into());
        }
        match s.read(&mut chunk) {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            // A TLS peer that closes without close_notify still sent it all.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(raw),
            Err(e) => return Err(format!("read the response: {e}")),
        }
        if raw.len() > MAX_RESPONSE {
            return Err(format!("response larger than {MAX_RESPONSE} bytes"));
        }
    }
}

fn parse_response(raw: &[u8]) -> Result<Vec<Entry>, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        let text = String::from_utf8_lossy(body);
        return Err(format!("{}: {}", printable(status), printable(&text)));
    }
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    parse_document(&body)
}

/// RFC 9112 §7.1 chunked transfer coding.
fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk")?;
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size `{}`", printable(size_text)))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or("truncated chunk")?);
        b = b.get(size + 2..).ok_or("truncated chunk")?;
    }
}

/// `{"iceServers":[{"urls":"..."|["..."],"username":"...","credential":"..."}]}`
/// (W3C WebRTC RTCIceServer).
pub fn parse_document(body: &[u8]) -> Result<Vec<Entry>, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the response is not JSON: {}", printable(&e.to_string())))?;
    let servers = doc
        .get("iceServers")
        .and_then(|v| v.as_array())
        .ok_or("the JSON has no \"iceServers\" array")?;
    let mut out = Vec::new();
    for s in servers {
        let creds = match (
            s.get("username").and_then(|v| v.as_str()),
            s.get("credential").and_then(|v| v.as_str()),
        ) {
            (Some(u), Some(p)) => Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => None,
        };
        let urls: Vec<&str> = match s.get("urls").or_else(|| s.get("url")) {
            Some(serde_json::Value::String(u)) => vec![u.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => return Err("an iceServers entry has no \"urls\"".into()),
        };
        for u in urls {
            out.push((u.parse::<ServerUrl>().map_err(|e| printable(&e)), creds.clone()));
        }
    }
    if out.is_empty() {
        return Err("the iceServers list is empty".into());
    }
    Ok(out)
}

/// The first [`MAX_URLS`] entries, and how many were left out.
pub fn cap(mut list: Vec<Entry>) -> (Vec<Entry>, usize) {
    let skipped = list.len().saturating_sub(MAX_URLS);
    list.truncate(MAX_URLS);
    (list, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_documents_and_chunked_bodies() {
        let doc = br#"{"iceServers":[{"urls":["stun:h:1"]},{"urls":"turn:h:2?transport=tcp","username":"u","credential":"p"},{"urls":["bogus"]}],"ttl":5}"#;
        let e = parse_document(doc).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].0.as_ref().unwrap().port, 1);
        assert_eq!(e[1].1.as_ref().unwrap().username, "u");
        assert!(e[2].0.is_err());
        assert!(parse_document(b"{}").unwrap_err().contains("iceServers"));
        assert!(parse_document(b"nope").unwrap_err().contains("not JSON"));
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n").unwrap(), b"abcde");
        assert!(dechunk(b"9\r\nab").is_err());
        let resp = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 3\r\n\r\nno!";
        assert!(parse_response(resp).unwrap_err().contains("403"));
        // A body from the network is printed without control characters, capped.
        let mut resp = b"HTTP/1.1 500 Oops\r\n\r\nline1\n\x1b[31mred".to_vec();
        resp.extend_from_slice(&[b'x'; 5000]);
        let e = parse_response(&resp).unwrap_err();
        assert!(e.starts_with("HTTP/1.1 500 Oops: line1 [31mred"), "{e}");
        assert!(!e.chars().any(char::is_control) && e.len() < 400, "{e}");
    }
}
