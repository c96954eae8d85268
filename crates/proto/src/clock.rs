//! Wall-clock time without reading the clock: the driver gives the core one
//! (monotonic, unix) pair at start, and wall time is derived from `now`.
//! REST usernames and nonces need seconds since the epoch; everything else
//! runs on the monotonic `now` every input carries.

use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// The instant at which the wall clock read `anchor_unix`. `None` keeps
    /// wall time fixed at `anchor_unix` (STUN-only tests).
    pub anchor: Option<Instant>,
    pub anchor_unix: u64,
}

impl Clock {
    /// Seconds since the Unix epoch at `now`.
    pub fn unix(&self, now: Instant) -> u64 {
        match self.anchor {
            Some(a) => self.anchor_unix + now.saturating_duration_since(a).as_secs(),
            None => self.anchor_unix,
        }
    }
}

/// The instant a unit test starts at. Any instant will do: the tests only
/// move forward from it.
#[cfg(test)]
pub(crate) fn test_start() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}
