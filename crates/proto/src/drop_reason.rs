//! Why the core dropped input without answering: one variant per reason,
//! surfaced by the driver as a metric label (STYLE.md "errors by fault").

use crate::wire::{BodyError, HeaderError};

macro_rules! drop_reasons {
    ($($variant:ident => $label:literal, $doc:literal;)*) => {
        /// Why bytes from a client were dropped silently.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason {
            $(#[doc = $doc] $variant,)*
        }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// A stable snake_case label for metrics and logs.
            pub fn label(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $label,)*
                }
            }
        }
    };
}

drop_reasons! {
    TooShort => "too_short", "Shorter than a STUN header.";
    NotStun => "not_stun", "The first two bits say this is neither STUN nor ChannelData.";
    BadMagicCookie => "bad_magic_cookie", "No magic cookie (RFC 3489 and non-STUN traffic).";
    BadLength => "bad_length", "The header length is not a multiple of 4 or does not match the datagram.";
    BadFingerprint => "bad_fingerprint", "FINGERPRINT present but wrong.";
    MalformedNonRequest => "malformed_non_request", "A malformed indication or response: nothing may be sent back.";
    UnexpectedClass => "unexpected_class", "A response, or an indication the server does not take.";
    UnknownIndication => "unknown_indication", "An indication with an unknown comprehension-required attribute (RFC 8489 §6.3.2).";
    ChannelData => "channel_data", "ChannelData that is malformed or names no bound channel.";
    ReplyTooLarge => "reply_too_large", "The answer did not fit in the output buffer.";
    NoAllocation => "no_allocation", "A Send indication or ChannelData from a client without an allocation.";
    NoPermission => "no_permission", "Data to or from a peer with no permission installed (RFC 8656 §9).";
    BadIndication => "bad_indication", "A Send indication without a valid XOR-PEER-ADDRESS or DATA.";
    UnknownRelay => "unknown_relay", "A peer datagram on a relay that no longer serves an allocation.";
    IcmpOff => "icmp_off", "An ICMP error about a relayed datagram while `turn.relay_icmp` is off.";
    IcmpType => "icmp_type", "An ICMP error from a peer's path of a type RFC 8656 §11.5 does not relay to clients.";
    RelaySendFailed => "relay_send_failed", "The kernel refused to send a relayed datagram (unreachable, EPERM, full buffer); the allocation lives on.";
    ClientSendFailed => "client_send_failed", "A reply or relayed datagram to a client could not be sent or queued (full buffer, slow reader).";
    RateLimited => "rate_limited", "Over the per-allocation bandwidth cap or the unauthenticated budget (per source or in total).";
    TcpAllocation => "tcp_allocation", "A Send indication on a TCP relay allocation (RFC 6062: data goes over data connections).";
    StreamFraming => "stream_framing", "A TCP/TLS stream carried bytes that are neither STUN nor ChannelData; the connection is closed.";
    ProxyUntrusted => "proxy_untrusted", "A connection to a PROXY-protocol listener from a source outside `listen.proxy_trusted`; closed unread.";
    DtlsRecord => "dtls_record", "A datagram from an address without a DTLS session that is not an unfragmented ClientHello; dropped. (Records OpenSSL discards inside a session, such as a bad MAC or a replay, are not counted.)";
    DtlsHandshake => "dtls_handshake", "A DTLS handshake failed (no common cipher or ALPN protocol, a bad certificate answer); the session is gone.";
    ProxyHeader => "proxy_header", "A PROXY-protocol listener got no valid v1/v2 header in time; the connection is closed.";
}

impl From<HeaderError> for DropReason {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::TooShort => DropReason::TooShort,
            HeaderError::NotStun => DropReason::NotStun,
            HeaderError::BadMagicCookie => DropReason::BadMagicCookie,
            HeaderError::LengthNotMultipleOf4 | HeaderError::LengthMismatch => DropReason::BadLength,
        }
    }
}

impl From<BodyError> for DropReason {
    fn from(_: BodyError) -> Self {
        DropReason::MalformedNonRequest
    }
}

/// Counts of dropped input, one counter per [`DropReason`].
#[derive(Debug, Clone, Default)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl DropCounters {
    pub fn add(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    /// Adds another shard's counts to these.
    pub fn merge(&mut self, other: &DropCounters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Every reason with its count, zeros included (for a stable metric set).
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.0[*r as usize]))
    }
}
