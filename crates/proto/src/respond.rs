//! Writing STUN responses (RFC 8489 §6.3.1, §14.8): success and error
//! responses, with SOFTWARE, MESSAGE-INTEGRITY and FINGERPRINT as the
//! request calls for. Every response is counted by method and code.

use crate::answering::Answering;
use crate::drop_reason::DropReason;
use crate::output::Output;
use crate::server::Server;
use crate::wire::{attr, BufferTooSmall, Class, ErrorCode, Key, Message, MessageBuilder, MessageType, TransactionId};

impl Server {
    /// Writes a response to `request`: success when `code` is None, else an
    /// error with ERROR-CODE; `attrs` adds the other attributes, then
    /// MESSAGE-INTEGRITY with `key` if given, then FINGERPRINT if the request
    /// had one. Every response is counted by method and code. Without `key`
    /// (a challenge, before authentication) the reply is no larger than
    /// needed (DESIGN.md §10): no reason phrase (optional, RFC 8489 §14.8)
    /// and no SOFTWARE (optional, §14.14).
    pub(crate) fn respond(
        &mut self,
        request: &Message<'_>,
        code: Option<ErrorCode>,
        key: Option<&Key>,
        out: &mut [u8],
        attrs: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BufferTooSmall>,
    ) -> Result<usize, BufferTooSmall> {
        let to = Answering {
            method: request.message_type().method,
            tid: request.transaction_id(),
            fingerprint: request.has_fingerprint(),
        };
        self.write_response(to, code, key, out, attrs)
    }

    /// [`Server::respond`] for a request that is no longer at hand (an
    /// Allocate answered once its relay sockets are bound).
    pub(crate) fn write_response(
        &mut self,
        to: Answering,
        code: Option<ErrorCode>,
        key: Option<&Key>,
        out: &mut [u8],
        attrs: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BufferTooSmall>,
    ) -> Result<usize, BufferTooSmall> {
        let class = if code.is_none() { Class::Success } else { Class::Error };
        let mut b = MessageBuilder::new(out, MessageType::new(to.method, class), &to.tid)?;
        if let Some(c) = code {
            let reason = if key.is_none() {
                ""
            } else if c == ErrorCode::INSUFFICIENT_CAPACITY && self.draining {
                "Server Draining"
            } else {
                c.reason()
            };
            b.add_error_code(c, reason)?;
        }
        attrs(&mut b)?;
        if let (Some(s), Some(_)) = (&self.config.software, key) {
            b.add_bytes(attr::SOFTWARE, s.as_bytes())?;
        }
        if let Some(k) = key {
            b.add_integrity_with(k)?;
        }
        if to.fingerprint {
            b.add_fingerprint()?;
        }
        self.stats.requests.response(to.method, code);
        Ok(b.finish())
    }

    /// `respond` mapped to an [`Output`].
    pub(crate) fn reply(
        &mut self,
        request: &Message<'_>,
        code: Option<ErrorCode>,
        key: Option<&Key>,
        out: &mut [u8],
        attrs: impl FnOnce(&mut MessageBuilder<'_>) -> Result<(), BufferTooSmall>,
    ) -> Output {
        match self.respond(request, code, key, out, attrs) {
            Ok(n) => Output::Reply(n),
            Err(_) => self.drop(DropReason::ReplyTooLarge),
        }
    }

    /// An error response with MESSAGE-INTEGRITY (for authenticated requests).
    pub(crate) fn error_with_key(
        &mut self,
        request: &Message<'_>,
        code: ErrorCode,
        key: &Key,
        out: &mut [u8],
    ) -> Output {
        self.reply(request, Some(code), Some(key), out, |_| Ok(()))
    }

    /// [`Server::error`] answering a parsed request, with no attribute but
    /// ERROR-CODE (and FINGERPRINT if the request had one).
    pub(crate) fn bare_error(&mut self, request: &Message<'_>, code: ErrorCode, out: &mut [u8]) -> Output {
        let (t, tid) = (request.message_type(), request.transaction_id());
        self.error(
            t,
            &tid,
            code,
            &[],
            request.has_fingerprint(),
            request.as_bytes().len(),
            out,
        )
    }

    /// An error response kept as small as the RFC allows: the reason phrase is
    /// optional, so it is left out when it would make the reply larger than
    /// the request. A bare error reply is 28 bytes, so requests shorter than
    /// that still get a slightly larger answer, as every Binding does.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn error(
        &mut self,
        request: MessageType,
        tid: &TransactionId,
        code: ErrorCode,
        unknown: &[u16],
        fingerprint: bool,
        request_len: usize,
        out: &mut [u8],
    ) -> Output {
        let bare = 20
            + 8
            + if unknown.is_empty() {
                0
            } else {
                4 + crate::wire::pad4(2 * unknown.len())
            }
            + if fingerprint { 8 } else { 0 };
        let reason = code.reason();
        let reason = if bare + crate::wire::pad4(reason.len()) <= request_len {
            reason
        } else {
            ""
        };
        let built = (|| {
            let mut b = MessageBuilder::new(out, request.response(false), tid)?;
            b.add_error_code(code, reason)?;
            if !unknown.is_empty() {
                b.add_unknown_attributes(unknown)?;
            }
            if fingerprint {
                b.add_fingerprint()?;
            }
            Ok::<_, BufferTooSmall>(b.finish())
        })();
        match built {
            Ok(n) => {
                self.stats.requests.response(request.method, Some(code));
                Output::Reply(n)
            }
            Err(_) => self.drop(DropReason::ReplyTooLarge),
        }
    }
}
