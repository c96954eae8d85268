//! Why a signed request failed long-term authentication (RFC 8489 §9.2.4,
//! RFC 8656 §5): one variant per reason, counted for the
//! `ternd_auth_failures_total{reason}` metric and reported as a rate-limited
//! [`crate::Event::AuthRefused`] for the log. The first 401 to a request
//! without MESSAGE-INTEGRITY is the normal challenge, not a failure.

use std::time::{Duration, Instant};

/// Why a request carrying MESSAGE-INTEGRITY was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    /// MESSAGE-INTEGRITY without USERNAME, REALM or NONCE (400).
    MissingAttributes,
    /// A NONCE that expired, was forged, or was issued to another address (438).
    StaleNonce,
    /// A USERNAME that is not UTF-8 (401).
    MalformedUsername,
    /// Neither a static user nor a REST username the secrets can check (401).
    UnknownUser,
    /// A REST username whose expiry timestamp has passed (401).
    ExpiredRestUsername,
    /// A username an operator revoked (401).
    Revoked,
    /// A known user whose MESSAGE-INTEGRITY does not verify: wrong password
    /// or REST secret (401).
    BadIntegrity,
    /// Valid credentials of another user than the allocation's (441).
    WrongUser,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 8] = [
        AuthFailure::MissingAttributes,
        AuthFailure::StaleNonce,
        AuthFailure::MalformedUsername,
        AuthFailure::UnknownUser,
        AuthFailure::ExpiredRestUsername,
        AuthFailure::Revoked,
        AuthFailure::BadIntegrity,
        AuthFailure::WrongUser,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// A stable snake_case label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::MissingAttributes => "missing_attributes",
            AuthFailure::StaleNonce => "stale_nonce",
            AuthFailure::MalformedUsername => "malformed_username",
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::ExpiredRestUsername => "expired_rest_username",
            AuthFailure::Revoked => "revoked",
            AuthFailure::BadIntegrity => "bad_integrity",
            AuthFailure::WrongUser => "wrong_user",
        }
    }
}

/// Counts of failed authentications, one counter per [`AuthFailure`].
#[derive(Debug, Clone, Default)]
pub struct AuthFailureCounters([u64; AuthFailure::COUNT]);

impl AuthFailureCounters {
    pub fn add(&mut self, reason: AuthFailure) {
        self.0[reason as usize] += 1;
    }

    pub fn get(&self, reason: AuthFailure) -> u64 {
        self.0[reason as usize]
    }

    /// Adds another shard's counts to these.
    pub fn merge(&mut self, other: &AuthFailureCounters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// Every reason with its count, zeros included (for a stable metric set).
    pub fn iter(&self) -> impl Iterator<Item = (AuthFailure, u64)> + '_ {
        AuthFailure::ALL.iter().map(|r| (*r, self.0[*r as usize]))
    }
}

/// At most one logged refusal per reason per this interval and shard, so a
/// flood of bad credentials cannot fill the log; the ones held back are
/// counted into the next event of that reason.
pub const AUTH_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The per-reason log limit ([`AUTH_LOG_INTERVAL`]).
#[derive(Debug, Default)]
pub(crate) struct AuthLogLimit {
    last: [Option<Instant>; AuthFailure::COUNT],
    held_back: [u64; AuthFailure::COUNT],
}

impl AuthLogLimit {
    /// Some(refusals held back since the last event) when one of `reason`
    /// may be reported at `now`.
    pub(crate) fn allow(&mut self, reason: AuthFailure, now: Instant) -> Option<u64> {
        let i = reason as usize;
        match self.last[i] {
            Some(last) if now.saturating_duration_since(last) < AUTH_LOG_INTERVAL => {
                self.held_back[i] += 1;
                None
            }
            _ => {
                self.last[i] = Some(now);
                Some(std::mem::take(&mut self.held_back[i]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct() {
        let mut labels: Vec<&str> = AuthFailure::ALL.iter().map(|r| r.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), AuthFailure::COUNT);
    }

    #[test]
    fn one_event_per_reason_and_interval_counting_the_rest() {
        let t0 = crate::clock::test_start();
        let mut l = AuthLogLimit::default();
        assert_eq!(l.allow(AuthFailure::BadIntegrity, t0), Some(0));
        assert_eq!(l.allow(AuthFailure::BadIntegrity, t0), None);
        assert_eq!(
            l.allow(AuthFailure::UnknownUser, t0),
            Some(0),
            "reasons are limited apart"
        );
        assert_eq!(
            l.allow(AuthFailure::BadIntegrity, t0 + Duration::from_millis(999)),
            None
        );
        assert_eq!(l.allow(AuthFailure::BadIntegrity, t0 + AUTH_LOG_INTERVAL), Some(2));
    }
}
