//! The write side of a TCP/TLS client connection: anything for the client
//! is appended to one buffer and a writer task drains it, so relaying never
//! waits on a slow client.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Bytes a connection may have queued for a client that reads slowly; past
/// that, further relayed datagrams to it are dropped (as UDP would).
const MAX_QUEUED: usize = 256 * 1024;

/// The write side of one connection.
#[derive(Default)]
pub struct ConnOut {
    pending: RefCell<Vec<u8>>,
    notify: Notify,
    closed: Cell<bool>,
}

impl ConnOut {
    /// Queues `data`; false (dropped) if the connection is gone or backed up.
    pub fn push(&self, data: &[u8]) -> bool {
        let mut p = self.pending.borrow_mut();
        if self.closed.get() || p.len() + data.len() > MAX_QUEUED {
            return false;
        }
        p.extend_from_slice(data);
        self.notify.notify_one();
        true
    }

    /// The connection is gone: nothing more is queued.
    pub fn close(&self) {
        self.closed.set(true);
    }
}

/// Writes what is queued on `out` to `w` until a write fails.
pub async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, out: Rc<ConnOut>) {
    let mut batch = Vec::new();
    loop {
        out.notify.notified().await;
        loop {
            std::mem::swap(&mut *out.pending.borrow_mut(), &mut batch);
            if batch.is_empty() {
                break;
            }
            if w.write_all(&batch).await.is_err() {
                out.closed.set(true);
                return;
            }
            batch.clear();
        }
    }
}
