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
    pub tcp_relay: TcpRelayCounters,
    pub peer_icmp: IcmpCounters,
}

/// What became of ICMP errors about datagrams relayed to peers (RFC 8656 §11.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IcmpCounters {
    /// Sent to the client in a Data indication with an ICMP attribute.
    pub relayed: u64,
    /// Not sent: `turn.relay_icmp` is off.
    pub disabled: u64,
    /// A type the server does not relay (not ICMPv4 3 or 11, ICMPv6 1 to 3).
    pub ignored_type: u64,
    /// On a relay that serves no allocation any more.
    pub no_allocation: u64,
    /// About a peer IP the allocation holds no permission for.
    pub no_permission: u64,
}

impl IcmpCounters {
    /// (label, value) pairs for a metric.
    pub fn labelled(&self) -> [(&'static str, u64); 5] {
        [
            ("relayed", self.relayed),
            ("disabled", self.disabled),
            ("ignored_type", self.ignored_type),
            ("no_allocation", self.no_allocation),
            ("no_permission", self.no_permission),
        ]
    }

    fn add(&mut self, o: &IcmpCounters) {
        self.relayed += o.relayed;
        self.disabled += o.disabled;
        self.ignored_type += o.ignored_type;
        self.no_allocation += o.no_allocation;
        self.no_permission += o.no_permission;
    }
}

/// What became of RFC 6062 peer data connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpRelayCounters {
    /// Opened to a peer on a Connect.
    pub connected: u64,
    /// Accepted from a peer and announced by ConnectionAttempt.
    pub accepted: u64,
    /// Joined to a client data connection by ConnectionBind.
    pub bound: u64,
    /// Connects that failed or timed out (447).
    pub failed: u64,
    /// Closed unbound after 30 s.
    pub expired: u64,
}

impl TcpRelayCounters {
    /// (label, value) pairs for a metric.
    pub fn labelled(&self) -> [(&'static str, u64); 5] {
        [
            ("connected", self.connected),
            ("accepted", self.accepted),
            ("bound", self.bound),
            ("failed", self.failed),
            ("expired", self.expired),
        ]
    }

    fn add(&mut self, o: &TcpRelayCounters) {
        self.connected += o.connected;
        self.accepted += o.accepted;
        self.bound += o.bound;
        self.failed += o.failed;
        self.expired += o.expired;
    }
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
        self.tcp_relay.add(&other.tcp_relay);
        self.peer_icmp.add(&other.peer_icmp);
    }
}
