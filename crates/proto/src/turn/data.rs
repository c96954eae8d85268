//! The data path (RFC 8656 §11, §12): Send indications and ChannelData from
//! clients to peers, and peer datagrams back as ChannelData or Data
//! indications. Nothing here allocates: outputs are ranges of the caller's
//! buffer, with headers written in place in front of the payload.

use std::time::Instant;

use super::addresses::peer_address;
use crate::addr::{canonical, Family, FiveTuple, PeerAddr};
use crate::allocation::{ChannelNumber, RelayId};
use crate::output::{Output, PeerOutput};
use crate::server::Server;
use crate::wire::{attr, pad4, Class, Message, MessageBuilder, MessageType, Method};
use crate::DropReason;

impl Server {
    /// RFC 8656 §11.2 "Receiving a Send Indication".
    pub(crate) fn send_indication(&mut self, now: Instant, tuple: FiveTuple, msg: &Message<'_>, data: &[u8]) -> Output {
        let Some(slot) = self.allocations.by_tuple(&tuple) else {
            return self.drop(DropReason::NoAllocation);
        };
        if self.allocations.live(slot).tcp {
            return self.drop(DropReason::TcpAllocation);
        }
        // "If the indication does not contain both an XOR-PEER-ADDRESS
        // attribute and a DATA attribute, then the indication is discarded."
        let tid = msg.transaction_id();
        let (Some(peer), Some(value)) = (
            msg.get(attr::XOR_PEER_ADDRESS).and_then(|v| peer_address(v, &tid)),
            msg.get(attr::DATA),
        ) else {
            return self.drop(DropReason::BadIndication);
        };
        // "The Send indication may also contain the DONT-FRAGMENT attribute.
        // If the server is unable to set the DF bit on outgoing UDP
        // datagrams when this attribute is present, then the server acts as
        // if the DONT-FRAGMENT attribute is an unknown comprehension-required
        // attribute": the driver can, and drops the datagram when it cannot.
        // "The handling of the DONT-FRAGMENT attribute (if present), is
        // described in Sections 14 and 15."
        let dont_fragment = msg.get(attr::DONT_FRAGMENT).is_some() && honours_dont_fragment(&tuple, peer.family());
        let start = value.as_ptr() as usize - data.as_ptr() as usize;
        self.relay_to_peer(now, slot, peer, (start, value.len()), dont_fragment)
    }

    /// RFC 8656 §12.6 "Receiving a ChannelData Message" (from a client).
    pub(crate) fn channel_data(&mut self, now: Instant, tuple: FiveTuple, data: &[u8]) -> Output {
        if data.len() < 4 {
            return self.drop(DropReason::ChannelData);
        }
        let number = ChannelNumber(u16::from_be_bytes([data[0], data[1]]));
        let len = u16::from_be_bytes([data[2], data[3]]) as usize;
        // Over UDP the datagram may carry padding; it may not be shorter.
        if 4 + len > data.len() {
            return self.drop(DropReason::ChannelData);
        }
        let Some(slot) = self.allocations.by_tuple(&tuple) else {
            return self.drop(DropReason::NoAllocation);
        };
        let a = self.allocations.live(slot);
        // "If the channel number is not bound to a peer, the message is discarded."
        let Some(peer) = a.channel_by_number(number, now).map(|c| c.peer) else {
            return self.drop(DropReason::ChannelData);
        };
        self.relay_to_peer(now, slot, peer, (4, len), false)
    }

    /// Common tail of client->peer relaying: permission, bandwidth, counters.
    fn relay_to_peer(
        &mut self,
        now: Instant,
        slot: u32,
        peer: PeerAddr,
        (start, len): (usize, usize),
        dont_fragment: bool,
    ) -> Output {
        // Only our own addresses pay for the full policy check per packet.
        let own_blocked = self.config.policy.is_own(peer.ip()) && !self.config.policy.allows(peer);
        let a = self.allocations.live_mut(slot);
        if a.is_expired(now) {
            return self.drop(DropReason::NoAllocation);
        }
        // §11.2: "If there is no permission ... the indication is silently discarded."
        if !a.permits(peer.ip(), now) {
            return self.drop(DropReason::NoPermission);
        }
        let Some(relay) = a.relay_for(&peer).map(|r| r.id) else {
            return self.drop(DropReason::NoPermission);
        };
        // A permission for one of our own addresses covers relay ports only.
        if own_blocked {
            return self.drop(DropReason::NoPermission);
        }
        if !a.bucket.take(len, now) {
            return self.drop(DropReason::RateLimited);
        }
        a.traffic.count_to_peer(len);
        self.stats.traffic.count_to_peer(len);
        Output::ToPeer {
            relay,
            peer,
            start,
            len,
            dont_fragment,
        }
    }

    /// A datagram from `peer` arrived on relay `relay`, in
    /// `buf[start..start + len]`, with at least [`crate::PEER_HEADROOM`] bytes free
    /// before it and [`crate::PEER_TAILROOM`] after.
    ///
    /// RFC 8656 §11.3 / §12.5: with a channel bound to the peer it goes to the
    /// client as ChannelData (padded on streams), else as a Data indication;
    /// without a permission for the peer's IP it is dropped.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: RelayId,
        peer: PeerAddr,
        buf: &mut [u8],
        start: usize,
        len: usize,
    ) -> PeerOutput {
        let peer = PeerAddr(canonical(peer.0));
        let Some(slot) = self.allocations.by_relay(relay) else {
            return self.drop_peer(DropReason::UnknownRelay);
        };
        let a = self.allocations.live_mut(slot);
        if a.is_expired(now) {
            return self.drop_peer(DropReason::UnknownRelay);
        }
        if !a.permits(peer.ip(), now) {
            return self.drop_peer(DropReason::NoPermission);
        }
        let channel = a.channel_by_peer(&peer, now).map(|c| c.number);
        // Room for the header in front (ChannelData, or a Data indication
        // with XOR-PEER-ADDRESS and DATA) and for stream padding behind,
        // checked before the datagram is charged to the allocation.
        let header = match channel {
            Some(_) => 4,
            None => 20 + 4 + attr::address_len(&peer.0) + 4,
        };
        if start < header || start + pad4(len) > buf.len() {
            return self.drop_peer(DropReason::ReplyTooLarge);
        }
        let a = self.allocations.live_mut(slot);
        if !a.bucket_to_client.take(len, now) {
            return self.drop_peer(DropReason::RateLimited);
        }
        a.traffic.count_to_client(len);
        let tuple = a.tuple;
        self.stats.traffic.count_to_client(len);
        if let Some(number) = channel {
            // RFC 8656 §12.5: over TCP/TLS, ChannelData is padded to 4 bytes.
            let total = if tuple.transport.is_stream() {
                buf[start + len..start + pad4(len)].fill(0);
                4 + pad4(len)
            } else {
                4 + len
            };
            buf[start - 4..start - 2].copy_from_slice(&number.0.to_be_bytes());
            buf[start - 2..start].copy_from_slice(&(len as u16).to_be_bytes());
            return PeerOutput::ToClient {
                tuple,
                start: start - 4,
                len: total,
            };
        }
        // RFC 8656 §11.3: a Data indication with XOR-PEER-ADDRESS and DATA.
        let msg_start = start - header;
        let tid = self.rng.tid();
        let end = start + pad4(len);
        let built = (|| {
            let mut b = MessageBuilder::new(
                &mut buf[msg_start..end],
                MessageType::new(Method::DATA, Class::Indication),
                &tid,
            )?;
            b.add_xor_address(attr::XOR_PEER_ADDRESS, peer.0)?;
            b.add_in_place(attr::DATA, len)?;
            Ok::<_, crate::wire::BufferTooSmall>(b.finish())
        })();
        match built {
            Ok(n) => PeerOutput::ToClient {
                tuple,
                start: msg_start,
                len: n,
            },
            Err(_) => self.drop_peer(DropReason::ReplyTooLarge),
        }
    }
}

/// RFC 8656 §14: DONT-FRAGMENT is honoured relaying IPv4 to IPv4 (§14.1:
/// "When the server sends a packet to a peer in response to a Send
/// indication containing the DONT-FRAGMENT attribute, then set the outgoing
/// DF bit to 1"); across families and IPv6 to IPv6 "the DONT-FRAGMENT
/// attribute MUST be ignored" (§14.2-14.4). From TCP/TLS clients (§15) it
/// is honoured.
pub(crate) fn honours_dont_fragment(tuple: &FiveTuple, relay: Family) -> bool {
    let same_v4 = tuple.client.0.is_ipv4() && relay == Family::V4;
    same_v4 || tuple.transport.is_stream()
}
