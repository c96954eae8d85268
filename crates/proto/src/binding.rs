//! The Binding method (RFC 8489 §3, §6.3.1): tell a client the transport
//! address its request came from.

use std::net::SocketAddr;

use crate::addr::ClientAddr;
use crate::amplification::within_bound;
use crate::wire::{attr, pad4, BufferTooSmall, Message, MessageBuilder};

/// RFC 8489 §6.3.1.1 "Forming a Success or Error Response": for Binding, the
/// server adds XOR-MAPPED-ADDRESS carrying the request's source transport
/// address. SOFTWARE is optional (§14.14): sent when configured and only if
/// the reply stays within the amplification bound (a bare 20-byte Binding
/// never gets it; an ICE check, with its own attributes, usually does).
/// FINGERPRINT is sent when the request carried one (§7.3: the usage, here
/// ICE and plain NAT discovery, relies on it to demultiplex).
///
/// With RFC 5780 configured, `discovery` holds (RESPONSE-ORIGIN,
/// OTHER-ADDRESS): §7.3 has the server add both; here OTHER-ADDRESS (which a
/// client needs to run the tests at all) comes first and each goes in only
/// while the reply stays within the amplification bound, as SOFTWARE does.
pub(crate) fn respond(
    request: &Message<'_>,
    client: ClientAddr,
    software: Option<&str>,
    discovery: Option<(SocketAddr, SocketAddr)>,
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let tid = request.transaction_id();
    let mut b = MessageBuilder::new(out, request.message_type().response(true), &tid)?;
    b.add_xor_address(attr::XOR_MAPPED_ADDRESS, client.0)?;
    let fingerprint = if request.has_fingerprint() { 8 } else { 0 };
    let mut len = 20 + 4 + attr::address_len(&client.0) + fingerprint;
    let request_len = request.as_bytes().len();
    let mut fits = |extra: usize| {
        let ok = within_bound(request_len, len + 4 + extra);
        if ok {
            len += 4 + extra;
        }
        ok
    };
    if let Some((origin, other)) = discovery {
        if fits(attr::address_len(&other)) {
            b.add_address(attr::OTHER_ADDRESS, other)?;
            if fits(attr::address_len(&origin)) {
                b.add_address(attr::RESPONSE_ORIGIN, origin)?;
            }
        }
    }
    let software = software.filter(|s| fits(pad4(s.len())));
    if let Some(s) = software {
        b.add_bytes(attr::SOFTWARE, s.as_bytes())?;
    }
    if request.has_fingerprint() {
        b.add_fingerprint()?;
    }
    Ok(b.finish())
}
