//! WebSocket clients for the signaling tests: an in-process server with
//! HTTP on port 0 and independent tokio-tungstenite clients speaking the
//! protocol of `src/signaling/mod.rs`, every wait bounded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use ternd::Running;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{start, test_config};

/// Every wait is bounded by this.
pub const WAIT: Duration = Duration::from_secs(3);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn server(extra: &[(&str, &str)]) -> (Running, SocketAddr) {
    let mut all = vec![("http.listen", "127.0.0.1:0")];
    all.extend_from_slice(extra);
    let server = start(&test_config(None, &all));
    let addr = server.bound().http[0];
    (server, addr)
}

pub async fn open(addr: SocketAddr, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("the handshake finishes in time")?;
    Ok(ws)
}

pub async fn connect(addr: SocketAddr) -> Ws {
    open(addr, None).await.expect("the upgrade succeeds")
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next JSON message (WebSocket pings are answered by the library).
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a good frame");
        match frame {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("the server sends JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next message, which must be an error with `code`.
pub async fn expect_error(ws: &mut Ws, code: &str) {
    let m = recv(ws).await;
    assert_eq!(
        (m["type"].as_str(), m["code"].as_str()),
        (Some("error"), Some(code)),
        "{m}"
    );
    assert!(
        m["message"].as_str().is_some_and(|s| !s.is_empty()),
        "a human message: {m}"
    );
}

/// Proves nothing else is queued for `ws`: a ping's pong is the next message.
pub async fn expect_nothing_pending(ws: &mut Ws) {
    send(ws, json!({"type": "ping"})).await;
    assert_eq!(recv(ws).await, json!({"type": "pong"}));
}

/// Reads until the server closes; returns the JSON messages seen on the way.
pub async fn read_until_closed(ws: &mut Ws) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("closed in time") {
            Some(Ok(Message::Text(t))) => seen.push(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return seen,
            Some(Ok(_)) => {}
        }
    }
}

/// Joins `room`: (id, peers, resume token).
pub async fn join(ws: &mut Ws, room: &str) -> (String, Vec<String>, String) {
    send(ws, json!({"type": "join", "room": room})).await;
    welcome(ws).await
}

pub async fn welcome(ws: &mut Ws) -> (String, Vec<String>, String) {
    let w = recv(ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    let peers = w["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    (
        w["id"].as_str().unwrap().to_owned(),
        peers,
        w["resume"].as_str().unwrap().to_owned(),
    )
}
