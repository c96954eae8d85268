//! The address attributes the TURN handlers read: REQUESTED-/ADDITIONAL-
//! ADDRESS-FAMILY (RFC 8656 §18.6, §18.11) and XOR-PEER-ADDRESS (§18.3).

use crate::addr::{Family, PeerAddr};
use crate::wire::{attr, TransactionId};

/// Address family codes of REQUESTED-/ADDITIONAL-ADDRESS-FAMILY and
/// ADDRESS-ERROR-CODE (RFC 8656 §18.6, §18.11, §18.12).
pub(crate) const FAMILY_IPV4: u8 = 0x01;
pub(crate) const FAMILY_IPV6: u8 = 0x02;

/// A REQUESTED-/ADDITIONAL-ADDRESS-FAMILY value (RFC 8656 §18.6: one family
/// byte and three reserved ones); None for an unknown family.
pub(crate) fn address_family(value: &[u8]) -> Option<Family> {
    match value {
        [FAMILY_IPV4, _, _, _] => Some(Family::V4),
        [FAMILY_IPV6, _, _, _] => Some(Family::V6),
        _ => None,
    }
}

/// The code of `family` in ADDRESS-ERROR-CODE.
pub(crate) fn family_code(family: Family) -> u8 {
    match family {
        Family::V4 => FAMILY_IPV4,
        Family::V6 => FAMILY_IPV6,
    }
}

/// Reads an XOR-PEER-ADDRESS value.
pub(crate) fn peer_address(value: &[u8], tid: &TransactionId) -> Option<PeerAddr> {
    attr::decode_address(value, Some(tid)).ok().map(PeerAddr)
}
