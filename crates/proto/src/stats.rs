//! Counters a shard keeps about its own traffic; the driver sums shards.

use crate::allocation::Traffic;
use crate::auth_failure::AuthFailureCounters;
use crate::drop_reason::DropCounters;
use crate::logins::LoginCounters;
use crate::metrics::{code_index, method_index, RequestCounters};
use crate::wire::Method;

/// Counters a shard keeps about its own traffic; the driver sums shards.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub drops: DropCounters,
    pub allocations_created: u64,
    pub allocations_closed: u64,
    pub traffic: Traffic,
    pub requests: RequestCounters,
    /// Signed requests refused by authentication, by reason.
    pub auth_failures: AuthFailureCounters,
    pub logins: LoginCounters,
}

impl Stats {
    /// Successful Binding responses (derived from the per-method counters).
    pub fn binding_success(&self) -> u64 {
        self.requests.responses[method_index(Method::BINDING)][code_index(None)]
    }

    /// Error responses of every method and code.
    pub fn error_responses(&self) -> u64 {
        self.requests.responses.iter().map(|r| r[1..].iter().sum::<u64>()).sum()
    }

    /// Adds another shard's counters to these.
    pub fn merge(&mut self, other: &Stats) {
        self.drops.merge(&other.drops);
        self.requests.merge(&other.requests);
        self.auth_failures.merge(&other.auth_failures);
        self.logins.merge(&other.logins);
        self.allocations_created += other.allocations_created;
        self.allocations_closed += other.allocations_closed;
        self.traffic.add(&other.traffic);
    }
}
