//! The write side of a TCP/TLS client connection: anything for the client
//! is appended to one buffer and a writer (run beside the connection's
//! reader) drains it, so relaying never waits on a slow client.
//!
//! What a client has not read yet is budgeted (DESIGN.md §10): the bytes
//! queued for it plus the batch being written count against its own limit
//! and against one total shared by every connection of the process; past
//! either, what is sent to it is dropped (as UDP would). A client that reads
//! nothing of it for the write-stall timeout is disconnected, and the
//! buffers shrink back after a burst so idle connections cost little.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::budget::{Budget, Exhaustions, SharedBytes};

/// Capacity a drained buffer keeps (more is given back after a burst).
const KEEP_CAPACITY: usize = 2048;

/// A message up to this size for a client that has read everything is
/// queued even when slow readers have filled the total, so clients that read
/// keep being answered (over TCP a dropped reply is never retransmitted).
/// The total can thus be exceeded by this much per connection at most.
pub const EMPTY_QUEUE_ALLOWANCE: usize = 4096;

/// What every connection's write side is held to.
#[derive(Debug)]
pub struct QueueLimits {
    /// `stream.max_queued_bytes`: unread bytes one connection may hold.
    pub per_conn: usize,
    /// `stream.max_queued_bytes_total`: unread bytes of every connection.
    pub total: Arc<SharedBytes>,
    /// `stream.write_stall_timeout`: how long queued bytes may make no progress.
    pub write_stall: Duration,
    pub exhaustions: Arc<Exhaustions>,
}

/// The write side of one connection.
pub struct ConnOut {
    limits: Arc<QueueLimits>,
    pending: RefCell<Vec<u8>>,
    /// Bytes queued or in the batch being written that the socket has not
    /// taken yet; reserved in `limits.total` too.
    held: Cell<usize>,
    notify: Notify,
    closed: Cell<bool>,
}

/// Why the writer stopped.
#[derive(Debug)]
pub enum WriteEnd {
    /// Queued bytes made no progress for the write-stall timeout.
    Stalled,
    Failed(std::io::Error),
}

impl ConnOut {
    pub fn new(limits: Arc<QueueLimits>) -> ConnOut {
        ConnOut {
            limits,
            pending: RefCell::default(),
            held: Cell::new(0),
            notify: Notify::new(),
            closed: Cell::new(false),
        }
    }

    /// Queues `data`; false (dropped) if the connection is gone or its or
    /// the total budget is exhausted (counted and logged).
    pub fn push(&self, data: &[u8]) -> bool {
        if self.closed.get() {
            return false;
        }
        let held = self.held.get() + data.len();
        if held > self.limits.per_conn {
            self.limits.exhaustions.exhausted(Budget::StreamQueuedBytes, None);
            return false;
        }
        if self.held.get() == 0 && data.len() <= EMPTY_QUEUE_ALLOWANCE {
            self.limits.total.reserve(data.len());
        } else if !self.limits.total.try_reserve(data.len()) {
            return false;
        }
        self.held.set(held);
        let mut p = self.pending.borrow_mut();
        if p.capacity() - p.len() < data.len() {
            // Grow as Vec would, but never past the connection's budget.
            let needed = p.len() + data.len();
            let want = (p.capacity() * 2).clamp(needed, self.limits.per_conn.max(needed));
            let more = want - p.len();
            p.reserve_exact(more);
        }
        p.extend_from_slice(data);
        self.notify.notify_one();
        true
    }

    /// Takes what is queued and not yet handed to the writer, giving its
    /// bytes back to the budgets (the connection is about to be written
    /// directly: an RFC 6062 data connection).
    pub fn take_pending(&self) -> Vec<u8> {
        let taken = std::mem::take(&mut *self.pending.borrow_mut());
        self.release(taken.len());
        taken
    }

    /// The connection is gone: nothing more is queued and what was held is
    /// given back.
    pub fn close(&self) {
        self.closed.set(true);
        self.release(self.held.get());
        *self.pending.borrow_mut() = Vec::new();
    }

    fn release(&self, n: usize) {
        let n = n.min(self.held.get());
        self.held.set(self.held.get() - n);
        self.limits.total.release(n);
    }
}

impl Drop for ConnOut {
    fn drop(&mut self) {
        self.release(self.held.get());
    }
}

/// Writes what is queued on `out` to `w` until a write fails or stalls.
/// Bytes are given back to the budgets as the socket takes them, so a batch
/// stuck in a write still counts.
pub async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, out: &ConnOut) -> WriteEnd {
    let stall = out.limits.write_stall;
    let mut batch = Vec::new();
    loop {
        out.notify.notified().await;
        loop {
            std::mem::swap(&mut *out.pending.borrow_mut(), &mut batch);
            if batch.is_empty() {
                break;
            }
            let mut written = 0;
            while written < batch.len() {
                match tokio::time::timeout(stall, w.write(&batch[written..])).await {
                    Err(_) => return WriteEnd::Stalled,
                    Ok(Ok(0)) => return WriteEnd::Failed(std::io::ErrorKind::WriteZero.into()),
                    Ok(Ok(n)) => {
                        written += n;
                        out.release(n);
                    }
                    Ok(Err(e)) => return WriteEnd::Failed(e),
                }
            }
            batch.clear();
        }
        // Caught up: give back what a burst took (both buffers are empty).
        batch.shrink_to(KEEP_CAPACITY);
        out.pending.borrow_mut().shrink_to(KEEP_CAPACITY);
        // TLS keeps records the socket would not take yet; push them out
        // before waiting for more.
        match tokio::time::timeout(stall, w.flush()).await {
            Err(_) => return WriteEnd::Stalled,
            Ok(Err(e)) => return WriteEnd::Failed(e),
            Ok(Ok(())) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn limits(per_conn: usize, total: usize, stall: Duration) -> (Arc<QueueLimits>, Arc<Exhaustions>) {
        let ex = Arc::new(Exhaustions::default());
        let l = Arc::new(QueueLimits {
            per_conn,
            total: SharedBytes::new(Budget::StreamQueuedBytesTotal, total, ex.clone()),
            write_stall: stall,
            exhaustions: ex.clone(),
        });
        (l, ex)
    }

    #[test]
    fn the_connection_and_the_total_budget_both_bound_what_is_queued() {
        let (l, ex) = limits(100, 150, Duration::from_secs(1));
        let a = ConnOut::new(l.clone());
        let b = ConnOut::new(l.clone());
        assert!(a.push(&[1; 60]));
        assert!(a.push(&[2; 40]));
        assert!(!a.push(&[3; 1]), "the connection's budget is full");
        assert_eq!(ex.get(Budget::StreamQueuedBytes), 1);
        assert!(
            a.pending.borrow().capacity() <= 100,
            "the buffer never outgrows the budget"
        );
        assert!(b.push(&[4; 50]));
        assert!(!b.push(&[5; 1]), "the total is full");
        assert_eq!(ex.get(Budget::StreamQueuedBytesTotal), 1);
        assert_eq!(l.total.used(), 150);
        // A client that has read everything still gets a reply.
        let c = ConnOut::new(l.clone());
        assert!(c.push(&[6; 40]), "an empty queue takes one message over the total");
        assert!(!c.push(&[6; 1]), "but only one");
        assert!(!ConnOut::new(l.clone()).push(&[6; EMPTY_QUEUE_ALLOWANCE + 1]));
        drop(c);
        // A closed connection gives its bytes back and takes no more.
        a.close();
        assert_eq!((a.held.get(), l.total.used()), (0, 50));
        assert!(!a.push(&[6; 1]));
        drop(b);
        assert_eq!(l.total.used(), 0, "a dropped connection gives its bytes back");
    }

    #[tokio::test]
    async fn written_bytes_are_given_back_and_the_buffers_shrink() {
        let (l, _) = limits(64 * 1024, 1 << 20, Duration::from_secs(5));
        let out = ConnOut::new(l.clone());
        // A pipe that holds 1 KiB: the writer blocks with most of a batch in hand.
        let (w, mut r) = tokio::io::duplex(1024);
        for _ in 0..40 {
            assert!(out.push(&[7; 1000]));
        }
        assert_eq!(l.total.used(), 40_000);
        let reader = async {
            let mut got = vec![0u8; 40_000];
            r.read_exact(&mut got).await.unwrap();
            // Everything read: nothing is held, and the buffers are small again.
            tokio::time::timeout(Duration::from_secs(5), async {
                while out.held.get() != 0 || out.pending.borrow().capacity() > KEEP_CAPACITY {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("bytes given back as they are written, buffers shrunk");
            assert_eq!(l.total.used(), 0);
        };
        tokio::select! {
            end = write_loop(w, &out) => panic!("the writer ended: {end:?}"),
            () = reader => {}
        }
    }

    #[tokio::test]
    async fn a_reader_that_takes_nothing_stalls_the_writer_but_a_slow_one_does_not() {
        let stall = Duration::from_millis(300);
        let (l, _) = limits(64 * 1024, 1 << 20, stall);
        // Slow but steady: 1 KiB every 100 ms through a 1 KiB pipe, for
        // longer than the stall timeout.
        let slow = ConnOut::new(l.clone());
        let (w, mut r) = tokio::io::duplex(1024);
        assert!(slow.push(&[1; 10 * 1024]));
        let reader = async {
            let mut buf = [0u8; 1024];
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                r.read_exact(&mut buf).await.unwrap();
            }
        };
        tokio::select! {
            end = write_loop(w, &slow) => panic!("a slow reader was cut off: {end:?}"),
            () = reader => {}
        }
        // Never reads: stalled after the timeout.
        let stuck = ConnOut::new(l.clone());
        let (w, _r) = tokio::io::duplex(1024);
        assert!(stuck.push(&[2; 4096]));
        let started = tokio::time::Instant::now();
        let end = tokio::time::timeout(Duration::from_secs(5), write_loop(w, &stuck)).await;
        assert!(matches!(end, Ok(WriteEnd::Stalled)), "{end:?}");
        assert!(started.elapsed() >= stall);
        assert_eq!(stuck.held.get(), 4096 - 1024, "the pipe took 1 KiB");
    }
}
