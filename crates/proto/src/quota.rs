//! Allocation quotas shared by every shard (DESIGN.md §3: touched on
//! Allocate and on deletion only, never per packet).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaError {
    /// RFC 8656 486 Allocation Quota Reached.
    User,
    /// RFC 8656 508 Insufficient Capacity.
    Total,
}

#[derive(Debug, Default)]
pub struct Quotas {
    max_total: AtomicUsize,
    max_per_user: AtomicUsize,
    state: Mutex<(usize, HashMap<String, usize>)>,
}

impl Quotas {
    pub fn new(max_total: usize, max_per_user: usize) -> Self {
        Quotas {
            max_total: AtomicUsize::new(max_total),
            max_per_user: AtomicUsize::new(max_per_user),
            state: Mutex::default(),
        }
    }

    pub fn try_acquire(&self, user: &str) -> Result<(), QuotaError> {
        // A poisoned lock only means another shard panicked mid-update of
        // two counters; the counts are still usable.
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *g;
        let mine = users.get(user).copied().unwrap_or(0);
        if mine >= self.max_per_user.load(Ordering::Relaxed) {
            return Err(QuotaError::User);
        }
        if *total >= self.max_total.load(Ordering::Relaxed) {
            return Err(QuotaError::Total);
        }
        *total += 1;
        users.insert(user.to_string(), mine + 1);
        Ok(())
    }

    /// New limits (config reload); allocations over them are not cut off.
    pub fn set_limits(&self, max_total: usize, max_per_user: usize) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_user.store(max_per_user, Ordering::Relaxed);
    }

    pub fn release(&self, user: &str) {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *g;
        *total = total.saturating_sub(1);
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
        }
    }

    pub fn total(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}
