//! RFC 8656 §11.5 "Receiving an ICMP Packet": an ICMP error about a
//! datagram a relay sent to a peer goes back to the client as a Data
//! indication with an ICMP attribute, so it learns that the peer's port is
//! closed, the host unreachable, or the path MTU smaller than its packets.
//! Cold path: a reply written into a small buffer of the driver's.

use std::time::Instant;

use crate::addr::{canonical, Family, PeerAddr};
use crate::allocation::RelayId;
use crate::output::PeerOutput;
use crate::server::Server;
use crate::wire::{attr, icmp::ICMP_LEN, Class, Icmp, MessageBuilder, MessageType, Method};
use crate::DropReason;

/// An ICMP error the driver's relay socket reported (Linux: IP_RECVERR /
/// IPV6_RECVERR), about a datagram it sent to the peer it names. ICMPv4
/// when the peer is IPv4, ICMPv6 when it is IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIcmp {
    pub typ: u8,
    pub code: u8,
    /// The next-hop MTU the error carries, for "fragmentation needed"
    /// (ICMPv4 3/4) and "packet too big" (ICMPv6 2); ignored otherwise.
    pub mtu: u32,
}

/// The longest Data indication this sends: header, XOR-PEER-ADDRESS of an
/// IPv6 peer, ICMP. A driver's buffer of this size always suffices.
pub const ICMP_INDICATION_LEN: usize = 20 + 4 + 20 + 4 + ICMP_LEN;

impl PeerIcmp {
    /// "the server verifies that the type is either 3 or 11 for an ICMPv4
    /// [RFC0792] packet or either 1, 2, or 3 for an ICMPv6 [RFC4443]
    /// packet" (Destination Unreachable, Time Exceeded; Packet Too Big).
    fn is_relayed(&self, family: Family) -> bool {
        match family {
            Family::V4 => matches!(self.typ, 3 | 11),
            Family::V6 => matches!(self.typ, 1..=3),
        }
    }

    /// RFC 8656 §18.13: "If the ICMPv6 type is 2 ("Packet too big" message)
    /// or ICMPv4 type is 3 (Destination Unreachable) and Code is 4
    /// (fragmentation needed and DF set), the Error Data field will be set
    /// to the Maximum Transmission Unit of the next-hop link ... For other
    /// ICMPv6 types and ICMPv4 types and codes, the Error Data field MUST be
    /// set to zero."
    fn attribute(&self, family: Family) -> Icmp {
        let mtu = match family {
            Family::V4 => self.typ == 3 && self.code == 4,
            Family::V6 => self.typ == 2,
        };
        Icmp {
            typ: self.typ,
            code: self.code.into(),
            error_data: if mtu { self.mtu } else { 0 },
        }
    }
}

impl Server {
    /// RFC 8656 §11.5: relay `relay` sent a datagram to `peer` and an ICMP
    /// error came back about it. The Data indication for the client is
    /// written to the start of `out` (at least [`ICMP_INDICATION_LEN`]
    /// bytes): send `out[start..start + len]` on `tuple`.
    pub fn handle_peer_icmp(
        &mut self,
        now: Instant,
        relay: RelayId,
        peer: PeerAddr,
        icmp: PeerIcmp,
        out: &mut [u8],
    ) -> PeerOutput {
        let peer = PeerAddr(canonical(peer.0));
        // Off by config: RFC 5766 clients expect DATA in every Data
        // indication (see `turn.relay_icmp` in config/ternd.toml).
        if !self.config.relay_icmp {
            self.stats.peer_icmp.disabled += 1;
            return self.drop_peer(DropReason::IcmpOff);
        }
        // "the server verifies that the type is either 3 or 11 for an ICMPv4
        // ... or either 1, 2, or 3 for an ICMPv6 packet. It also verifies
        // that the IP packet in the ICMP packet payload contains a UDP
        // header. If either of these conditions fail, then the ICMP packet
        // is silently dropped." (The kernel reports errors about the relay
        // socket's own UDP datagrams only.)
        if !icmp.is_relayed(peer.family()) {
            self.stats.peer_icmp.ignored_type += 1;
            return self.drop_peer(DropReason::IcmpType);
        }
        // "The server looks up the allocation whose relayed transport
        // address corresponds to the encapsulated packet's source IP address
        // and UDP port. If no such allocation exists, the packet is silently
        // dropped."
        let allocation = self.allocations.by_relay(relay).map(|s| self.allocations.live(s));
        let Some(a) = allocation.filter(|a| !a.is_expired(now)) else {
            self.stats.peer_icmp.no_allocation += 1;
            return self.drop_peer(DropReason::UnknownRelay);
        };
        // "For ICMP packets, the source IP address MUST NOT be checked
        // against the permissions list as it would be for UDP packets.
        // Instead, the server extracts the destination IP address from the
        // encapsulated IP header. ... If no match is found, relaying is not
        // permitted and the server silently discards the ICMP packet."
        if !a.permits(peer.ip(), now) {
            self.stats.peer_icmp.no_permission += 1;
            return self.drop_peer(DropReason::NoPermission);
        }
        let tuple = a.tuple;
        // "If relaying is permitted, then the server forms and sends a Data
        // indication. The Data indication MUST contain both an
        // XOR-PEER-ADDRESS and an ICMP attribute." A ChannelData message has
        // no room for it, so this holds with a channel bound too. The peer
        // address carries the destination port: the kernel reports it.
        let tid = self.rng.tid();
        let value = icmp.attribute(peer.family()).encode();
        let built = (|| {
            let mut b = MessageBuilder::new(out, MessageType::new(Method::DATA, Class::Indication), &tid)?;
            b.add_xor_address(attr::XOR_PEER_ADDRESS, peer.0)?;
            b.add_bytes(attr::ICMP, &value)?;
            Ok::<_, crate::wire::BufferTooSmall>(b.finish())
        })();
        match built {
            Ok(len) => {
                // "The Data indication is then sent on the 5-tuple
                // associated with the allocation."
                self.stats.peer_icmp.relayed += 1;
                PeerOutput::ToClient { tuple, start: 0, len }
            }
            Err(_) => self.drop_peer(DropReason::ReplyTooLarge),
        }
    }
}
