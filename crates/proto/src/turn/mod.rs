//! TURN (RFC 8656, RFC 6156): the request handlers, grouped by RFC section,
//! and the long-term authentication they share (RFC 8489 §9.2).

mod addresses;
mod allocate;
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
            if !self.budget.charge(tuple.client.0.ip(), now) {
                return Err(self.drop(DropReason::RateLimited));
            }
            let (t, tid, fp, len) = (
                msg.message_type(),
                msg.transaction_id(),
                msg.has_fingerprint(),
                msg.as_bytes().len(),
            );
            return Err(self.error(t, &tid, ErrorCode::BAD_REQUEST, &[], fp, len, out));
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
        let mut keys = [[0u8; 16]; 4];
        let n = match self.config.credentials.keys(username, unix, &mut keys) {
            Ok(n) => n,
            Err(UserError::Unknown | UserError::Expired) => {
                return Err(self.challenge(now, tuple, msg, ErrorCode::UNAUTHENTICATED, out));
            }
        };
        // "Using the password associated with the username in the request,
        // the server MUST compute the value for the message integrity ...
        // If the resulting value does not match ... 401".
        match keys[..n].iter().find(|k| msg.verify_integrity(&k[..])) {
            Some(k) => Ok((username.to_string(), *k)),
            None => Err(self.challenge(now, tuple, msg, ErrorCode::UNAUTHENTICATED, out)),
        }
    }

    /// A 401 or 438 carrying REALM and a fresh NONCE (no MESSAGE-INTEGRITY:
    /// the client has not proven a key). Counted against the source's budget.
    fn challenge(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message<'_>,
        code: ErrorCode,
        out: &mut [u8],
    ) -> Output {
        let ip = tuple.client.0.ip();
        if !self.budget.charge(ip, now) {
            return self.drop(DropReason::RateLimited);
        }
        let expiry = self.unix(now) + self.config.nonce_lifetime.as_secs();
        let nonce = self.config.nonce_key.issue(expiry, ip);
        let realm = self.config.credentials.realm.clone();
        self.reply(msg, Some(code), None, out, |b| {
            b.add_bytes(attr::REALM, realm.as_bytes())?;
            b.add_bytes(attr::NONCE, &nonce)
        })
    }
}
