//! The hub: the room core behind one std mutex (held only to feed one input
//! and hand its outputs to the connections' queues, never across `.await`),
//! plus one sweeper task that ends resume graces.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use super::budget::{DropCounts, Exhausted};
use super::bus::BusMessage;
use super::message::{ClientMessage, Refusal};
use super::rooms::{ConnId, Output, Rooms};
use super::SignalingLimits;
use crate::logging::WarnLimiter;

/// Messages queued for one connection's socket. A reader that falls this far
/// behind is dropped rather than slowing anyone else down.
pub const QUEUE_MESSAGES: usize = 256;

/// At most one warning per this interval says a queue budget was exhausted.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// One message for a socket: its text, and the bytes it was charged against
/// the queue budgets (credited back once written).
pub(super) struct Outgoing {
    pub text: String,
    pub charged: usize,
}

/// What `/metrics` shows of the hub.
#[derive(Debug, Clone)]
pub struct HubStats {
    pub drops: DropCounts,
    pub queued_bytes: usize,
    /// Sockets the hub still delivers to (not closed, not dropped).
    pub connections: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
}

/// How the hub reaches one connection's socket task.
pub(super) struct ConnHandle {
    /// Serialized messages to send. Dropping it asks the task to send what is
    /// queued and close.
    pub tx: mpsc::Sender<Outgoing>,
    /// Stops the task at once (its queue is full: it cannot even be told).
    pub kill: Arc<Notify>,
}

struct State {
    rooms: Rooms,
    conns: HashMap<ConnId, ConnHandle>,
    warn: WarnLimiter,
    /// To the other nodes of a cluster (the cluster task publishes it).
    bus: Option<mpsc::UnboundedSender<BusMessage>>,
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
                warn: WarnLimiter::new(WARN_INTERVAL),
                bus: None,
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

    /// A message charged `charged` bytes was written to `conn`'s socket.
    pub(super) fn sent(&self, conn: ConnId, charged: usize) {
        if charged > 0 {
            self.with_rooms(|rooms, _| rooms.handle_sent(conn, charged));
        }
    }

    /// `conn`'s socket task ended: its handle and its queue are gone.
    pub(super) fn ended(&self, conn: ConnId) {
        let mut s = self.lock();
        s.conns.remove(&conn);
        s.rooms.handle_queue_gone(conn);
    }

    /// Makes the rooms span the cluster: this node is `node`, and what the
    /// other nodes must hear goes to `bus`.
    pub fn join_cluster(&self, node: String, bus: mpsc::UnboundedSender<BusMessage>) {
        let mut s = self.lock();
        s.rooms.set_node(node);
        s.bus = Some(bus);
    }

    /// A message from another node.
    pub fn handle_bus(&self, msg: BusMessage) {
        self.with_rooms(|rooms, now| rooms.handle_bus(msg, now));
    }

    /// Announces every local peer to the cluster (after a `hello`).
    pub fn announce_all(&self) {
        self.with_rooms(|rooms, _| rooms.announce_all());
    }

    /// Forgets the peers of node `node` (None: of every other node).
    pub fn forget_remote(&self, node: Option<&str>) {
        self.with_rooms(|rooms, _| rooms.forget_remote(node));
    }

    pub fn stats(&self) -> HubStats {
        let s = self.lock();
        HubStats {
            drops: s.rooms.drops().clone(),
            queued_bytes: s.rooms.queued_bytes(),
            connections: s.conns.len(),
            rooms: s.rooms.room_count(),
        }
    }

    /// Feeds one input and delivers its outputs, under the lock.
    fn with_rooms(&self, input: impl FnOnce(&mut Rooms, Instant)) {
        let now = Instant::now();
        let mut guard = self.lock();
        let s = &mut *guard;
        let before = s.rooms.poll_timeout();
        let drops_before = s.rooms.drops().clone();
        input(&mut s.rooms, now);
        while let Some(out) = s.rooms.poll_output() {
            match out {
                Output::Deliver(conn, msg) => {
                    let charged = msg.charged_size();
                    let Some(h) = s.conns.get(&conn) else {
                        s.rooms.handle_sent(conn, charged);
                        continue;
                    };
                    match h.tx.try_send(Outgoing {
                        text: msg.into_json(),
                        charged,
                    }) {
                        Ok(()) => {}
                        Err(e) => {
                            s.rooms.handle_sent(conn, charged);
                            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                                tracing::debug!(conn = conn.0, "signaling: slow reader dropped");
                                s.rooms.count_drop(Exhausted::SlowReader);
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
                Output::Publish(msg) => {
                    if let Some(bus) = &s.bus {
                        let _ = bus.send(msg);
                    }
                }
            }
        }
        if s.rooms.poll_timeout() != before {
            self.wake.notify_one();
        }
        if let Some(why) = s.rooms.drops().grown_since(&drops_before) {
            if let Some(held_back) = s.warn.allow(now) {
                tracing::warn!(
                    reason = why.label(),
                    held_back,
                    queued_bytes = s.rooms.queued_bytes(),
                    "signaling: a queue budget is exhausted, messages refused (see ternd_signaling_dropped_total)"
                );
            }
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
