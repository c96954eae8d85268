//! Per-source budget for requests that do not authenticate (DESIGN.md §10:
//! every resource a stranger can make the server spend is a budget).

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Per-source budget for requests that do not authenticate. Fixed memory
/// (hashed buckets, reset every second), so spoofed floods cannot grow it.
#[derive(Debug)]
pub struct SourceBudget {
    limit: u32,
    window: Option<Instant>,
    counts: Vec<u32>,
}

const BUDGET_BUCKETS: usize = 4096;

impl SourceBudget {
    pub fn new(limit: u32) -> Self {
        SourceBudget {
            limit,
            window: None,
            counts: if limit == 0 { vec![] } else { vec![0; BUDGET_BUCKETS] },
        }
    }

    /// Counts one unauthenticated request from `ip`; false when over budget.
    pub fn charge(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.limit == 0 {
            return true;
        }
        match self.window {
            Some(w) if now.saturating_duration_since(w) < Duration::from_secs(1) => {}
            _ => {
                self.window = Some(now);
                self.counts.fill(0);
            }
        }
        let h = match ip {
            IpAddr::V4(v4) => u32::from(v4) as u64,
            IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64 ^ u128::from(v6) as u64,
        };
        let i = (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize % BUDGET_BUCKETS;
        self.counts[i] += 1;
        self.counts[i] <= self.limit
    }
}
