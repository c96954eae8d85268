//! The cluster's ears: one Redis pub/sub connection, remade whenever it
//! drops, that hands what it hears to the cluster task. Pub/sub is
//! at-most-once: a message sent while this node is cut off is lost, so the
//! task resynchronises (revocations, quotas) on every [`Heard::Connected`].

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedSender;

use super::keys;
use super::store::TIMEOUT;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Subscribed (again): whatever was said meanwhile is lost.
    Connected,
    /// The subscription dropped: Redis is away.
    Lost,
    /// An operator revoked this username on some node.
    Revoked(String),
    /// This node's per-user allocation counts changed.
    QuotaChanged(String),
    /// A signaling message from a node (JSON `Envelope`).
    Signal(String),
}

/// Listens until `tx` is closed, reconnecting `retry` after each failure.
pub async fn listen(client: redis::Client, tx: UnboundedSender<Heard>, retry: Duration) {
    loop {
        if let Ok(Ok(mut pubsub)) = tokio::time::timeout(TIMEOUT, client.get_async_pubsub()).await {
            let subscribed = tokio::time::timeout(
                TIMEOUT,
                pubsub.subscribe(&[keys::REVOKE_CHANNEL, keys::QUOTA_CHANNEL, keys::SIGNAL_CHANNEL]),
            )
            .await;
            if matches!(subscribed, Ok(Ok(()))) {
                if tx.send(Heard::Connected).is_err() {
                    return;
                }
                let mut messages = pubsub.on_message();
                while let Some(m) = messages.next().await {
                    let Ok(payload) = m.get_payload::<String>() else {
                        continue;
                    };
                    let heard = match m.get_channel_name() {
                        keys::REVOKE_CHANNEL => Heard::Revoked(payload),
                        keys::SIGNAL_CHANNEL => Heard::Signal(payload),
                        _ => Heard::QuotaChanged(payload),
                    };
                    if tx.send(heard).is_err() {
                        return;
                    }
                }
            }
            if tx.send(Heard::Lost).is_err() {
                return;
            }
        } else if tx.is_closed() {
            return;
        }
        tokio::time::sleep(retry).await;
    }
}
