//! Reads bounded by a deadline: what is left of it, and whether an error
//! is a socket timeout.

use std::io;
use std::time::{Duration, Instant};

/// Time left before `deadline`, or `None` once it has passed (never less
/// than 1 ms: std reads a zero timeout as "block forever").
pub fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| *d >= Duration::from_millis(1))
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}
