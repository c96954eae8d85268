//! TURN (RFC 8656, RFC 6156): the request handlers, grouped by RFC section,
//! and the long-term authentication they share (RFC 8489 §9.2).

mod addresses;
mod allocate;
mod connect;
mod data;
mod requests;

use std::time::Instant;

use crate::addr::FiveTuple;
use crate::auth::UserError;
use crate::nonce::NonceCheck;
use crate::output::Output;
use crate::server::Server;
use crate::wire::{attr, ErrorCode, Message};
use crate::DropReason;

impl Server {
    /// RFC 8489 §9.2.4 "Receiving a Request" with long-term credentials.
    /// Returns the username and key, or the answer to send instead.
    pub(crate) fn authenticate(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message<'_>,
        out: &mut [u8],
    ) -> Result<(String, [u8; 16]), Output> {
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
        let (Some(user), Some(_realm), Some(nonce)) =
            (msg.get(attr::USERNAME), msg.get(attr::REALM), msg.get(attr::NONCE))
        else {
            return Err(self.bare_error(msg, ErrorCode::BAD_REQUEST, out));
        };
        // "If the NONCE is no longer valid, the server MUST generate an error
        // response with an error code of 438 (Stale Nonce)".
        let unix = self.unix(now);
        if self.config.nonce_key.check(nonce, tuple.client.0.ip(), unix) != NonceCheck::Valid {
            return Err(self.challenge(now, tuple, msg, ErrorCode::STALE_NONCE, out));
        }
        // "If the value of the USERNAME ... attribute is not valid, the server
        // MUST generate an error response with an error code of 401".
        let Ok(username) = std::str::from_utf8(user) else {
            return Err(self.challenge(now, tuple, msg, ErrorCode::UNAUTHENTICATED, out));
        };
        // "Using the password associated with the username in the request,
        // the server MUST compute the value for the message integrity ...
        // If the resulting value does not match ... 401". Every REST secret
        // in rotation is tried in turn.
        let found = match self.config.credentials.keys(username, unix) {
            Ok(mut keys) => keys.find(|k| msg.verify_integrity(&k[..])),
            Err(UserError::Unknown | UserError::Expired) => None,
        };
        match found {
            Some(k) => Ok((username.to_string(), k)),
            None => Err(self.challenge(now, tuple, msg, ErrorCode::UNAUTHENTICATED, out)),
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
        let nonce = self
            .config
            .nonce_key
            .issue(unix, unix + self.config.nonce_lifetime.as_secs(), ip);
        let realm = self.config.credentials.realm.clone();
        self.reply(msg, Some(code), None, out, |b| {
            b.add_bytes(attr::REALM, realm.as_bytes())?;
            b.add_bytes(attr::NONCE, &nonce)
        })
    }
}
