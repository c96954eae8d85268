//! The hub: the room core behind one std mutex (held only to feed one input
//! and hand its outputs to the connections' queues, never across `.await`),
//! plus one sweeper task that ends resume graces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::{mpsc, Notify};

use super::message::{ClientMessage, Refusal};
use super::rooms::{ConnId, Output, Rooms};
use super::SignalingLimits;

/// Messages queued for one connection's socket. A reader that falls this far
/// behind is dropped rather than slowing anyone else down.
pub const QUEUE_MESSAGES: usize = 256;

/// How the hub reaches one connection's socket task.
pub(super) struct ConnHandle {
    /// Serialized messages to send. Dropping it asks the task to send what is
    /// queued and close.
    pub tx: mpsc::Sender<String>,
    /// Stops the task at once (its queue is full: it cannot even be told).
    pub kill: Arc<Notify>,
}

struct State {
    rooms: Rooms,
    conns: HashMap<ConnId, ConnHandle>,
}

/// Every room and peer of the process.
pub struct Hub {
    limits: SignalingLimits,
    state: Mutex<State>,
    /// Wakes the sweeper when the earliest grace deadline moved.
    wake: Notify,
    sweeper: std::sync::Once,
}

impl Hub {
    pub fn new(limits: SignalingLimits) -> Arc<Hub> {
        // The server drew its TURN secret and seeds from the same OS source
        // moments before; if it fails now the host has no entropy at all.
        let secret = crate::random::random_bytes::<32>().expect("the OS random generator works");
        Arc::new(Hub {
            state: Mutex::new(State {
                rooms: Rooms::new(limits.clone(), secret),
                conns: HashMap::new(),
            }),
            limits,
            wake: Notify::new(),
            sweeper: std::sync::Once::new(),
        })
    }

    pub fn limits(&self) -> &SignalingLimits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between inputs, so a panic elsewhere
        // while holding the lock does not make it unusable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new socket.
    pub(super) fn connect(self: &Arc<Self>, handle: ConnHandle) -> ConnId {
        self.start_sweeper();
        let mut s = self.lock();
        let conn = s.rooms.connect(Instant::now());
        s.conns.insert(conn, handle);
        conn
    }

    /// One frame from `conn`.
    pub(super) fn handle(&self, conn: ConnId, frame: Result<ClientMessage, Refusal>) {
        self.with_rooms(|rooms, now| rooms.handle(conn, frame, now));
    }

    /// `conn`'s socket is gone.
    pub(super) fn disconnect(&self, conn: ConnId) {
        self.with_rooms(|rooms, now| rooms.handle_disconnect(conn, now));
    }

    /// Feeds one input and delivers its outputs, under the lock.
    fn with_rooms(&self, input: impl FnOnce(&mut Rooms, Instant)) {
        let now = Instant::now();
        let mut guard = self.lock();
        let s = &mut *guard;
        let before = s.rooms.poll_timeout();
        input(&mut s.rooms, now);
        while let Some(out) = s.rooms.poll_output() {
            match out {
                Output::Deliver(conn, msg) => {
                    let Some(h) = s.conns.get(&conn) else { continue };
                    match h.tx.try_send(msg.to_json()) {
                        Ok(()) => {}
                        Err(e) => {
                            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                                tracing::debug!(conn = conn.0, "signaling: slow reader dropped");
                            }
                            if let Some(h) = s.conns.remove(&conn) {
                                h.kill.notify_one();
                            }
                            s.rooms.handle_disconnect(conn, now);
                        }
                    }
                }
                Output::Close(conn) => {
                    s.conns.remove(&conn);
                }
            }
        }
        if s.rooms.poll_timeout() != before {
            self.wake.notify_one();
        }
    }

    /// Starts, once, the task that ends resume graces on time.
    fn start_sweeper(self: &Arc<Self>) {
        self.sweeper.call_once(|| {
            let hub = self.clone();
            tokio::spawn(async move {
                loop {
                    let next = hub.lock().rooms.poll_timeout();
                    match next {
                        Some(at) => {
                            tokio::select! {
                                _ = tokio::time::sleep_until(at.into()) => {}
                                _ = hub.wake.notified() => {}
                            }
                        }
                        None => hub.wake.notified().await,
                    }
                    hub.with_rooms(|rooms, now| rooms.handle_timeout(now));
                }
            });
        });
    }
}
