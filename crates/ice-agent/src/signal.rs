//! A client of ternd's signaling WebSocket (src/signaling/message.rs):
//! `join` → `welcome{id, peers}`, `peer-joined`, and `offer`/`answer`/
//! `candidate` sent with `to` and received with `from`.

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct Signal {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What `join` answered.
pub struct Welcome {
    pub id: String,
    pub peers: Vec<String>,
}

impl Signal {
    pub async fn connect(url: &str) -> anyhow::Result<Signal> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("signaling: cannot open the WebSocket {url}"))?;
        Ok(Signal { ws })
    }

    pub async fn send(&mut self, msg: Value) -> anyhow::Result<()> {
        log::debug!("signal out: {msg}");
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .context("signaling: the WebSocket closed while sending")
    }

    /// The next JSON message from the server (pongs and non-text frames
    /// skipped); an `error` message from the server is an error here.
    pub async fn recv(&mut self) -> anyhow::Result<Value> {
        loop {
            let frame = self
                .ws
                .next()
                .await
                .ok_or_else(|| anyhow!("signaling: the server closed the WebSocket"))?
                .context("signaling: reading the WebSocket")?;
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(text.as_str())
                .with_context(|| format!("signaling: the server sent something that is not JSON: {text}"))?;
            log::debug!("signal in: {v}");
            match v["type"].as_str() {
                Some("pong") => continue,
                Some("error") => bail!(
                    "signaling: the server refused a message: {} ({})",
                    v["message"],
                    v["code"]
                ),
                _ => return Ok(v),
            }
        }
    }

    pub async fn join(&mut self, room: &str) -> anyhow::Result<Welcome> {
        self.send(json!({"type": "join", "room": room})).await?;
        let v = self.recv().await?;
        if v["type"] != "welcome" {
            bail!("signaling: expected `welcome` after `join`, got {v}");
        }
        let id = v["id"]
            .as_str()
            .ok_or_else(|| anyhow!("signaling: `welcome` without an id: {v}"))?;
        let peers = v["peers"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        Ok(Welcome {
            id: id.to_owned(),
            peers,
        })
    }

    /// Leaves the room, then closes the socket. Without the `leave`, ternd
    /// keeps this peer listed in the room for its resume grace, and the next
    /// agent to join would take it for a partner.
    pub async fn close(mut self) {
        let _ = self.send(json!({"type": "leave"})).await;
        let _ = self.ws.close(None).await;
    }
}
