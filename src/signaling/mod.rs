//! WebSocket signaling (DESIGN.md §6): rooms relaying offer/answer/candidate.
//! Placeholder interface; the room logic and socket layer live in this folder.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;

/// Limits from `[signaling]`.
#[derive(Debug, Clone)]
pub struct SignalingLimits {
    pub max_message_bytes: usize,
    pub max_room_size: usize,
    pub max_messages_per_sec: u32,
    pub resume_grace: Duration,
    pub ping_interval: Duration,
}

/// Every room and peer of the process.
pub struct Hub {
    limits: SignalingLimits,
}

impl Hub {
    pub fn new(limits: SignalingLimits) -> Arc<Hub> {
        Arc::new(Hub { limits })
    }

    pub fn limits(&self) -> &SignalingLimits {
        &self.limits
    }
}

/// Serves one upgraded WebSocket until it closes.
pub async fn serve_socket(_hub: Arc<Hub>, _socket: WebSocket) {}
