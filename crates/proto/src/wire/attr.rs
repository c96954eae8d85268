//! Attribute type numbers (RFC 8489 §18.3, RFC 8656 §18, RFC 8445 §16.1)
//! and the (XOR-)address value codec (RFC 8489 §14.1, §14.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{TransactionId, MAGIC_COOKIE};

// RFC 8489 comprehension-required.
pub const MAPPED_ADDRESS: u16 = 0x0001;
pub const USERNAME: u16 = 0x0006;
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ERROR_CODE: u16 = 0x0009;
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
pub const REALM: u16 = 0x0014;
pub const NONCE: u16 = 0x0015;
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
pub const PASSWORD_ALGORITHM: u16 = 0x001D;
pub const USERHASH: u16 = 0x001E;
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
// RFC 8656 comprehension-required.
pub const CHANNEL_NUMBER: u16 = 0x000C;
pub const LIFETIME: u16 = 0x000D;
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
pub const DATA: u16 = 0x0013;
pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
pub const EVEN_PORT: u16 = 0x0018;
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
pub const DONT_FRAGMENT: u16 = 0x001A;
pub const RESERVATION_TOKEN: u16 = 0x0022;
/// RFC 6062 §6.2: identifies a peer data connection (32 bits).
pub const CONNECTION_ID: u16 = 0x002A;
// RFC 8445 (ICE) comprehension-required, accepted and ignored by a server.
pub const PRIORITY: u16 = 0x0024;
// RFC 5780 §7: NAT behaviour discovery.
pub const CHANGE_REQUEST: u16 = 0x0003;
pub const RESPONSE_ORIGIN: u16 = 0x802B;
pub const OTHER_ADDRESS: u16 = 0x802C;
pub const USE_CANDIDATE: u16 = 0x0025;
// Comprehension-optional.
pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
pub const ALTERNATE_DOMAIN: u16 = 0x8003;
pub const SOFTWARE: u16 = 0x8022;
pub const ALTERNATE_SERVER: u16 = 0x8023;
pub const FINGERPRINT: u16 = 0x8028;
pub const ICE_CONTROLLED: u16 = 0x8029;
pub const ICE_CONTROLLING: u16 = 0x802A;
pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
pub const ICMP: u16 = 0x8004;

/// RFC 8489 §14.7.
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Comprehension-required attributes (0x0000–0x7FFF) that ternd understands.
/// Any other one in a request gets 420 (RFC 8489 §6.3.1). CHANGE-REQUEST
/// (0x0003) is absent: it is understood only in a Binding request on a
/// server configured for RFC 5780 (see `nat_discovery`), so that clients
/// probing elsewhere learn that it is not there.
pub fn is_comprehension_required_known(typ: u16) -> bool {
    matches!(
        typ,
        MAPPED_ADDRESS
            | USERNAME
            | MESSAGE_INTEGRITY
            | ERROR_CODE
            | UNKNOWN_ATTRIBUTES
            | REALM
            | NONCE
            | MESSAGE_INTEGRITY_SHA256
            | PASSWORD_ALGORITHM
            | USERHASH
            | XOR_MAPPED_ADDRESS
            | CHANNEL_NUMBER
            | LIFETIME
            | XOR_PEER_ADDRESS
            | DATA
            | XOR_RELAYED_ADDRESS
            | REQUESTED_ADDRESS_FAMILY
            | EVEN_PORT
            | REQUESTED_TRANSPORT
            | DONT_FRAGMENT
            | RESERVATION_TOKEN
            | CONNECTION_ID
            | PRIORITY
            | USE_CANDIDATE
    )
}

/// Why an attribute value could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttrError {
    #[error("attribute value has the wrong length")]
    BadLength,
    #[error("unknown address family")]
    BadFamily,
}

const FAMILY_V4: u8 = 0x01;
const FAMILY_V6: u8 = 0x02;

/// Length of an address attribute value for `addr`.
pub fn address_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

/// Encodes MAPPED-ADDRESS (`xor` = None) or an XOR-* address into `out`,
/// which must be exactly [`address_len`] bytes.
pub fn encode_address(addr: &SocketAddr, xor: Option<&TransactionId>, out: &mut [u8]) {
    let mut mask = [0u8; 16];
    if let Some(tid) = xor {
        mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        mask[4..].copy_from_slice(tid);
    }
    out[0] = 0;
    let port = addr.port() ^ u16::from_be_bytes([mask[0], mask[1]]);
    out[2..4].copy_from_slice(&port.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = FAMILY_V4;
            for (i, b) in ip.octets().iter().enumerate() {
                out[4 + i] = b ^ mask[i];
            }
        }
        IpAddr::V6(ip) => {
            out[1] = FAMILY_V6;
            for (i, b) in ip.octets().iter().enumerate() {
                out[4 + i] = b ^ mask[i];
            }
        }
    }
}

/// Decodes MAPPED-ADDRESS (`xor` = None) or an XOR-* address.
pub fn decode_address(value: &[u8], xor: Option<&TransactionId>) -> Result<SocketAddr, AttrError> {
    let mut mask = [0u8; 16];
    if let Some(tid) = xor {
        mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        mask[4..].copy_from_slice(tid);
    }
    if value.len() < 4 {
        return Err(AttrError::BadLength);
    }
    let port = u16::from_be_bytes([value[2], value[3]]) ^ u16::from_be_bytes([mask[0], mask[1]]);
    match value[1] {
        FAMILY_V4 => {
            if value.len() != 8 {
                return Err(AttrError::BadLength);
            }
            let mut o = [0u8; 4];
            for i in 0..4 {
                o[i] = value[4 + i] ^ mask[i];
            }
            Ok(SocketAddr::new(Ipv4Addr::from(o).into(), port))
        }
        FAMILY_V6 => {
            if value.len() != 20 {
                return Err(AttrError::BadLength);
            }
            let mut o = [0u8; 16];
            for i in 0..16 {
                o[i] = value[4 + i] ^ mask[i];
            }
            Ok(SocketAddr::new(Ipv6Addr::from(o).into(), port))
        }
        _ => Err(AttrError::BadFamily),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_address_round_trip() {
        let tid = [7u8; 12];
        for a in ["192.0.2.1:32853", "[2001:db8:1234:5678:11:2233:4455:6677]:32853"] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut buf = [0u8; 20];
            let n = address_len(&addr);
            encode_address(&addr, Some(&tid), &mut buf[..n]);
            assert_eq!(decode_address(&buf[..n], Some(&tid)).unwrap(), addr);
            encode_address(&addr, None, &mut buf[..n]);
            assert_eq!(decode_address(&buf[..n], None).unwrap(), addr);
        }
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(decode_address(&[0, 1, 0], None), Err(AttrError::BadLength));
        assert_eq!(
            decode_address(&[0, 3, 0, 0, 1, 2, 3, 4], None),
            Err(AttrError::BadFamily)
        );
        assert_eq!(
            decode_address(&[0, 2, 0, 0, 1, 2, 3, 4], None),
            Err(AttrError::BadLength)
        );
    }
}
