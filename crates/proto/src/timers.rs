//! One deadline queue for every expiry (STYLE.md: no timer per allocation,
//! permission or channel). Entries are re-checked when popped: an entry made
//! stale by a refresh is simply re-armed at the allocation's new deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Look at allocation `slot` (of generation `gen`).
    Allocation { slot: u32, gen: u32 },
    /// A RESERVATION-TOKEN may have run out.
    Reservation { token: [u8; 8] },
    /// An RFC 6062 Connect may have timed out, or a peer data connection
    /// may have waited too long for its ConnectionBind.
    Connection { id: u32 },
}

#[derive(Debug, Default)]
pub struct Deadlines(BinaryHeap<Reverse<(Instant, Timer)>>);

impl Deadlines {
    pub fn push(&mut self, at: Instant, t: Timer) {
        self.0.push(Reverse((at, t)));
    }

    pub fn next(&self) -> Option<Instant> {
        self.0.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops one entry due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        match self.0.peek() {
            Some(Reverse((at, _))) if *at <= now => self.0.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Keeps only the entries for which `live(at, timer)` is true.
    pub fn retain(&mut self, mut live: impl FnMut(Instant, &Timer) -> bool) {
        self.0.retain(|Reverse((at, t))| live(*at, t));
    }

    /// Entries queued (stale ones included): bounded, see `Server::arm`.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}
