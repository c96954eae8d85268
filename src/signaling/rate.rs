//! A token bucket per connection: `rate` messages a second with a burst of
//! twice that. Time is an input.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket: `2 × rate` messages may arrive at once.
    pub fn new(rate_per_sec: u32, now: Instant) -> TokenBucket {
        let rate = f64::from(rate_per_sec.max(1));
        TokenBucket {
            tokens: 2.0 * rate,
            rate,
            burst: 2.0 * rate,
            last: now,
        }
    }

    /// Takes one token; false when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        assert!((0..20).all(|_| b.take(t0)), "a burst of twice the rate");
        assert!(!b.take(t0), "then empty");
        assert!(b.take(t0 + Duration::from_millis(100)), "one token per 1/rate s");
        assert!(!b.take(t0 + Duration::from_millis(100)));
        let later = t0 + Duration::from_secs(60);
        assert!((0..20).all(|_| b.take(later)), "refills to the burst, no further");
        assert!(!b.take(later));
    }

    #[test]
    fn clock_going_backwards_does_not_refill() {
        let t0 = Instant::now() + Duration::from_secs(5);
        let mut b = TokenBucket::new(1, t0);
        assert!(b.take(t0) && b.take(t0) && !b.take(t0));
        assert!(!b.take(t0 - Duration::from_secs(1)));
    }
}
