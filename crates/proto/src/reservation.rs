//! RESERVATION-TOKENs shared by every shard (RFC 8656 §7.2, §18.10): a client
//! whose second Allocate lands on another shard (SO_REUSEPORT hashes each
//! 5-tuple on its own) must still find the port reserved for it. Touched on
//! Allocate only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A port held on this shard for a later Allocate by RESERVATION-TOKEN
/// (RFC 8656 §7.2, §18.10).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reservation {
    pub addr: SocketAddr,
    pub expires: Instant,
}

/// RFC 8656 §7.2: "The server MUST hold this reservation for at least 30
/// seconds".
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// Every shard's RESERVATION-TOKENs.
#[derive(Debug, Default)]
pub struct SharedReservations(Mutex<HashMap<[u8; 8], (SocketAddr, Instant)>>);

impl SharedReservations {
    pub fn insert(&self, token: [u8; 8], addr: SocketAddr, expires: Instant) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, (addr, expires));
    }

    /// Takes the reservation if it exists and has not expired.
    pub fn take(&self, token: &[u8; 8], now: Instant) -> Option<SocketAddr> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match g.remove(token) {
            Some((addr, expires)) if now < expires => Some(addr),
            _ => None,
        }
    }

    pub fn remove(&self, token: &[u8; 8]) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(token);
    }
}
