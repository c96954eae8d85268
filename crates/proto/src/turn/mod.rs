//! TURN (RFC 8656, RFC 6156): the request handlers, grouped by RFC section,
//! and the long-term authentication they share (RFC 8489 §9.2).

mod addresses;
mod allocate;
mod connect;
mod data;
mod icmp;
mod requests;

pub use icmp::{PeerIcmp, ICMP_INDICATION_LEN};

use std::time::Instant;

use crate::addr::FiveTuple;
use crate::auth::UserError;
use crate::auth_failure::AuthFailure;
use crate::nonce::NonceCheck;
use crate::output::{Command, Event, Output};
use crate::password_algorithm::{cookie_features, negotiated, BidDown, PasswordAlgorithm, FEATURE_PASSWORD_ALGORITHMS};
use crate::server::Server;
use crate::wire::{attr, ErrorCode, Key, Message};
use crate::DropReason;

/// How a request names its user (RFC 8489 §14.3, §14.4).
#[derive(Clone, Copy)]
enum UserId<'a> {
    Name(&'a [u8]),
    Hash(&'a [u8]),
}

impl<'a> UserId<'a> {
    /// The USERNAME for a refusal's log line; a USERHASH names no one.
    fn name(self) -> Option<&'a [u8]> {
        match self {
            UserId::Name(name) => Some(name),
            UserId::Hash(_) => None,
        }
    }
}

impl Server {
    /// RFC 8489 §9.2.4 "Receiving a Request" with long-term credentials.
    /// Returns the username and key, or the answer to send instead.
    pub(crate) fn authenticate(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message<'_>,
        out: &mut [u8],
    ) -> Result<(String, Key), Output> {
        self.charge_stranger(now, tuple, msg)?;
        // "If the message does not contain a MESSAGE-INTEGRITY or a
        // MESSAGE-INTEGRITY-SHA256 attribute, the server MUST generate an
        // error response with an error code of 401 (Unauthenticated)" with
        // REALM and NONCE.
        if !msg.has_integrity() {
            return Err(self.challenge(now, tuple, msg, ErrorCode::UNAUTHENTICATED, out));
        }
        // "If the message contains a MESSAGE-INTEGRITY ... but is missing
        // either the USERNAME or USERHASH, REALM, or NONCE attribute, the
        // server MUST generate an error response with an error code of 400".
        let user = msg.get(attr::USERNAME).map(UserId::Name);
        let user = user.or_else(|| msg.get(attr::USERHASH).map(UserId::Hash));
        let (Some(user), Some(_realm), Some(nonce)) = (user, msg.get(attr::REALM), msg.get(attr::NONCE)) else {
            self.auth_failed(now, tuple, msg.get(attr::USERNAME), AuthFailure::MissingAttributes);
            return Err(self.bare_error(msg, ErrorCode::BAD_REQUEST, out));
        };
        // "If the NONCE attribute starts with the "nonce cookie" with the STUN
        // Security Feature "Password algorithms" bit set to 1", the
        // PASSWORD-ALGORITHM(S) checks (the bid-down protection), else MD5.
        let Ok(algorithm) = self.password_algorithm(msg, nonce) else {
            return Err(self.bare_error(msg, ErrorCode::BAD_REQUEST, out));
        };
        // "If the NONCE is no longer valid, the server MUST generate an error
        // response with an error code of 438 (Stale Nonce)".
        let unix = self.unix(now);
        let features = self.config.credentials.offer.features();
        if self
            .config
            .nonce_key
            .check_with(nonce, tuple.client.0.ip(), unix, features)
            != NonceCheck::Valid
        {
            self.auth_failed(now, tuple, user.name(), AuthFailure::StaleNonce);
            return Err(self.challenge(now, tuple, msg, ErrorCode::STALE_NONCE, out));
        }
        // "If the value of the USERNAME or USERHASH attribute is not valid,
        // the server MUST generate an error response with an error code of 401".
        let Some(username) = self.username(user) else {
            let reason = match user {
                UserId::Name(_) => AuthFailure::MalformedUsername,
                UserId::Hash(_) => AuthFailure::UnknownUser,
            };
            self.auth_failed(now, tuple, user.name(), reason);
            return Err(self.challenge(now, tuple, msg, ErrorCode::UNAUTHENTICATED, out));
        };
        // "Using the password associated with the username in the request,
        // the server MUST compute the value for the message integrity ...
        // If the resulting value does not match ... 401". Every REST secret
        // in rotation is tried in turn.
        let found = match self.config.credentials.keys_for(username, unix, algorithm) {
            Ok(mut keys) => keys
                .find(|k| msg.verify_integrity(k.as_bytes()))
                .ok_or(AuthFailure::BadIntegrity),
            Err(UserError::Unknown) => Err(AuthFailure::UnknownUser),
            Err(UserError::Expired) => Err(AuthFailure::ExpiredRestUsername),
            Err(UserError::Revoked) => Err(AuthFailure::Revoked),
        };
        match (found, msg.integrity_mac()) {
            (Ok(k), Some(mac)) => {
                let username = username.to_string();
                self.stats.logins.count(algorithm, matches!(user, UserId::Hash(_)), mac);
                Ok((username, k.with_mac(mac)))
            }
            (found, _) => {
                let reason = found.err().unwrap_or(AuthFailure::BadIntegrity);
                let name = username.to_string();
                self.auth_failed(now, tuple, Some(name.as_bytes()), reason);
                Err(self.challenge(now, tuple, msg, ErrorCode::UNAUTHENTICATED, out))
            }
        }
    }

    /// Counts a failed authentication and, within the log limit, reports it
    /// as an event (the USERNAME only: never a key or MESSAGE-INTEGRITY).
    pub(crate) fn auth_failed(&mut self, now: Instant, tuple: FiveTuple, user: Option<&[u8]>, reason: AuthFailure) {
        self.stats.auth_failures.add(reason);
        if let Some(held_back) = self.auth_log.allow(reason, now) {
            let username = user.map(|u| String::from_utf8_lossy(u).chars().take(64).collect());
            self.commands.push_back(Command::Event(Event::AuthRefused {
                tuple,
                reason,
                username,
                held_back,
            }));
        }
    }

    /// The password algorithm of a request (RFC 8489 §9.2.4): MD5 unless
    /// its nonce's cookie announces "Password algorithms", then the one the
    /// client chose from this server's unaltered list.
    fn password_algorithm(&self, msg: &Message<'_>, nonce: &[u8]) -> Result<PasswordAlgorithm, BidDown> {
        let announced = cookie_features(nonce).is_some_and(|f| f & FEATURE_PASSWORD_ALGORITHMS != 0);
        if !announced {
            return Ok(PasswordAlgorithm::Md5);
        }
        let (offered, n) = self.config.credentials.offer.algorithms_value();
        negotiated(
            msg.get(attr::PASSWORD_ALGORITHMS),
            msg.get(attr::PASSWORD_ALGORITHM),
            &offered[..n],
        )
    }

    /// The username a request names: USERNAME as UTF-8, or the static user
    /// whose USERHASH it carries when this server offers username anonymity.
    fn username<'a>(&'a self, user: UserId<'a>) -> Option<&'a str> {
        match user {
            UserId::Name(name) => std::str::from_utf8(name).ok(),
            UserId::Hash(hash) if self.config.credentials.offer.userhash => self.config.credentials.user_by_hash(hash),
            UserId::Hash(_) => None,
        }
    }

    /// The unauthenticated budget (DESIGN.md §10), charged before any nonce
    /// or MAC work. A signed request on a 5-tuple holding an allocation is
    /// not charged (that tuple has authenticated already), so a flood of
    /// strangers cannot starve the Refreshes that keep allocations alive.
    pub(crate) fn charge_stranger(&mut self, now: Instant, tuple: FiveTuple, msg: &Message<'_>) -> Result<(), Output> {
        let known = msg.has_integrity() && self.allocations.by_tuple(&tuple).is_some();
        if !known && !self.budget.charge(tuple.client.0.ip(), now) {
            return Err(self.drop(DropReason::RateLimited));
        }
        Ok(())
    }

    /// Refuses, with a bare error response no larger than the request's
    /// header allows (no REALM, no NONCE), an unsigned request that could
    /// not succeed even once authenticated; a 401 to it would be the largest
    /// answer for the smallest request (DESIGN.md §10).
    pub(crate) fn refuse_stranger(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message<'_>,
        code: ErrorCode,
        out: &mut [u8],
    ) -> Output {
        match self.charge_stranger(now, tuple, msg) {
            Ok(()) => self.bare_error(msg, code, out),
            Err(o) => o,
        }
    }

    /// A 401 or 438 carrying REALM and a fresh NONCE (no MESSAGE-INTEGRITY:
    /// the client has not proven a key).
    fn challenge(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message<'_>,
        code: ErrorCode,
        out: &mut [u8],
    ) -> Output {
        let ip = tuple.client.0.ip();
        let unix = self.unix(now);
        let offer = &self.config.credentials.offer;
        let features = offer.features();
        let nonce = self
            .config
            .nonce_key
            .issue_with(unix, unix + self.config.nonce_lifetime.as_secs(), ip, features);
        // RFC 8489 §9.2.4: a nonce announcing "Password algorithms" comes
        // with the PASSWORD-ALGORITHMS the client must echo back.
        let (algorithms, n) = offer.algorithms_value();
        let n = if features & FEATURE_PASSWORD_ALGORITHMS != 0 {
            n
        } else {
            0
        };
        let realm = self.config.credentials.realm.clone();
        self.reply(msg, Some(code), None, out, |b| {
            b.add_bytes(attr::REALM, realm.as_bytes())?;
            b.add_bytes(attr::NONCE, nonce.as_bytes())?;
            if n > 0 {
                b.add_bytes(attr::PASSWORD_ALGORITHMS, &algorithms[..n])?;
            }
            Ok(())
        })
    }
}
