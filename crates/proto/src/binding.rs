//! The Binding method (RFC 8489 §3, §6.3.1): tell a client the transport
//! address its request came from.

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
pub(crate) fn respond(
    request: &Message<'_>,
    client: ClientAddr,
    software: Option<&str>,
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let tid = request.transaction_id();
    let mut b = MessageBuilder::new(out, request.message_type().response(true), &tid)?;
    b.add_xor_address(attr::XOR_MAPPED_ADDRESS, client.0)?;
    let fingerprint = if request.has_fingerprint() { 8 } else { 0 };
    let software = software.filter(|s| {
        let with_software = 20 + 4 + attr::address_len(&client.0) + 4 + pad4(s.len()) + fingerprint;
        within_bound(request.as_bytes().len(), with_software)
    });
    if let Some(s) = software {
        b.add_bytes(attr::SOFTWARE, s.as_bytes())?;
    }
    if request.has_fingerprint() {
        b.add_fingerprint()?;
    }
    Ok(b.finish())
}
