//! The server core: one per shard. It takes bytes from clients with the time
//! they arrived and says what to send back; it never touches a socket.

use std::time::Instant;

use crate::addr::FiveTuple;
use crate::binding;
use crate::drop_reason::{DropCounters, DropReason};
use crate::wire::{attr, Class, ErrorCode, Message, MessageBuilder, MessageType, Method, ParseError, TransactionId};

/// At most this many types are listed in UNKNOWN-ATTRIBUTES; a request naming
/// more still gets 420, with the first ones listed.
const MAX_UNKNOWN_LISTED: usize = 16;

/// Settings of the protocol core (the driver maps its config onto this).
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// SOFTWARE attribute for responses; `None` sends none (smaller replies).
    pub software: Option<String>,
}

/// What to do with one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Send the first `n` bytes of the output buffer back to the client.
    Reply(usize),
    /// Valid input that needs no answer (e.g. a Binding indication keepalive).
    Nothing,
    /// Invalid input, dropped silently and counted.
    Drop(DropReason),
}

/// Counters a shard keeps about its own traffic; the driver sums shards.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub drops: DropCounters,
    pub binding_success: u64,
    pub error_responses: u64,
}

impl Stats {
    /// Adds another shard's counters to these.
    pub fn merge(&mut self, other: &Stats) {
        self.drops.merge(&other.drops);
        self.binding_success += other.binding_success;
        self.error_responses += other.error_responses;
    }
}

/// The sans-IO STUN/TURN server state of one shard.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    stats: Stats,
}

impl Server {
    pub fn new(config: ServerConfig) -> Self {
        Server {
            config,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Handles one STUN message (a UDP datagram or one framed stream message)
    /// from a client. A reply is written to the start of `out`.
    ///
    /// RFC 8489 §6.3 "Receiving a STUN Message".
    pub fn handle_client(&mut self, _now: Instant, tuple: FiveTuple, data: &[u8], out: &mut [u8]) -> Output {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(ParseError::Header(e)) => return self.drop(e.into()),
            Err(ParseError::Body {
                message_type,
                transaction_id,
                ..
            }) => {
                // Recognisably STUN but malformed: a request gets 400, anything
                // else is dropped (nothing may answer an indication or response).
                if message_type.class != Class::Request {
                    return self.drop(DropReason::MalformedNonRequest);
                }
                return self.error(
                    message_type,
                    &transaction_id,
                    ErrorCode::BAD_REQUEST,
                    &[],
                    false,
                    data.len(),
                    out,
                );
            }
        };
        // §6.3: "If the FINGERPRINT extension is being used, the agent checks
        // that the FINGERPRINT attribute is present and contains the correct
        // value" ... "If any errors are detected, the message is silently discarded."
        if !msg.fingerprint_ok() {
            return self.drop(DropReason::BadFingerprint);
        }
        let message_type = msg.message_type();
        let mut unknown = [0u16; MAX_UNKNOWN_LISTED];
        let n_unknown = unknown_comprehension_required(&msg, &mut unknown);
        match message_type.class {
            Class::Request => {
                let tid = msg.transaction_id();
                // §6.3.1: "If the request contains one or more unknown
                // comprehension-required attributes, the server replies with
                // an error response with an error code of 420 (Unknown
                // Attribute) and includes an UNKNOWN-ATTRIBUTES attribute".
                if n_unknown > 0 {
                    return self.error(
                        message_type,
                        &tid,
                        ErrorCode::UNKNOWN_ATTRIBUTE,
                        &unknown[..n_unknown],
                        msg.has_fingerprint(),
                        data.len(),
                        out,
                    );
                }
                match message_type.method {
                    Method::BINDING => match binding::respond(&msg, tuple.client, self.config.software.as_deref(), out)
                    {
                        Ok(n) => {
                            self.stats.binding_success += 1;
                            Output::Reply(n)
                        }
                        Err(_) => self.drop(DropReason::ReplyTooLarge),
                    },
                    // A method this server does not implement.
                    _ => self.error(
                        message_type,
                        &tid,
                        ErrorCode::BAD_REQUEST,
                        &[],
                        msg.has_fingerprint(),
                        data.len(),
                        out,
                    ),
                }
            }
            Class::Indication => {
                // §6.3.2: unknown comprehension-required attributes in an
                // indication: "the message is discarded and processing ceases".
                if n_unknown > 0 {
                    return self.drop(DropReason::UnknownIndication);
                }
                match message_type.method {
                    // A Binding indication is a keepalive (§3): no answer.
                    Method::BINDING => Output::Nothing,
                    _ => self.drop(DropReason::UnexpectedClass),
                }
            }
            Class::Success | Class::Error => self.drop(DropReason::UnexpectedClass),
        }
    }

    /// Counts a drop the driver decided on (e.g. a stream that lost framing).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.stats.drops.add(reason);
    }

    fn drop(&mut self, reason: DropReason) -> Output {
        self.stats.drops.add(reason);
        Output::Drop(reason)
    }

    /// An error response that is not larger than the request it answers: the
    /// reason phrase is optional, so it is left out when it would make the
    /// reply larger (no amplification before authentication).
    #[allow(clippy::too_many_arguments)]
    fn error(
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
            Ok::<_, crate::wire::BufferTooSmall>(b.finish())
        })();
        match built {
            Ok(n) => {
                self.stats.error_responses += 1;
                Output::Reply(n)
            }
            Err(_) => self.drop(DropReason::ReplyTooLarge),
        }
    }
}

/// Collects the distinct unknown comprehension-required attribute types into
/// `out` and returns how many there are (at most `out.len()`).
fn unknown_comprehension_required(msg: &Message<'_>, out: &mut [u16]) -> usize {
    let mut n = 0;
    for a in msg.attributes() {
        if a.typ < 0x8000 && !attr::is_comprehension_required_known(a.typ) && !out[..n].contains(&a.typ) {
            out[n] = a.typ;
            n += 1;
            if n == out.len() {
                break;
            }
        }
    }
    n
}
