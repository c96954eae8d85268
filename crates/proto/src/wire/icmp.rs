//! The ICMP attribute (RFC 8656 §18.13): what a TURN server tells its
//! client about an ICMP error a peer's host or a router sent back.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Reserved                     |  ICMP Type  |  ICMP Code      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Error Data                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! The figure gives the type 7 bits and the code 9 (as stun-rs reads it,
//! which the end-to-end tests use as the independent decoder). Every type
//! the server relays (ICMPv4 3 and 11, ICMPv6 1 to 3) fits in 7 bits.

/// The value of an ICMP attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmp {
    /// "The field contains the value of the ICMP type. Its interpretation
    /// depends on whether the ICMP was received over IPv4 or IPv6."
    pub typ: u8,
    pub code: u16,
    /// The next-hop MTU for ICMPv4 3/4 and ICMPv6 2, else zero.
    pub error_data: u32,
}

/// The attribute value is 8 bytes.
pub const ICMP_LEN: usize = 8;

impl Icmp {
    /// The attribute value. "Reserved: This field MUST be sent as 0".
    pub fn encode(&self) -> [u8; ICMP_LEN] {
        let type_code = (u16::from(self.typ & 0x7F) << 9) | (self.code & 0x1FF);
        let mut v = [0u8; ICMP_LEN];
        v[2..4].copy_from_slice(&type_code.to_be_bytes());
        v[4..8].copy_from_slice(&self.error_data.to_be_bytes());
        v
    }

    /// Reads an attribute value; the reserved bits are "ignored when received".
    pub fn decode(value: &[u8]) -> Option<Icmp> {
        let v: &[u8; ICMP_LEN] = value.try_into().ok()?;
        let type_code = u16::from_be_bytes([v[2], v[3]]);
        Some(Icmp {
            typ: (type_code >> 9) as u8,
            code: type_code & 0x1FF,
            error_data: u32::from_be_bytes([v[4], v[5], v[6], v[7]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8656 §18.13, Figure 11, bit by bit: 16 reserved bits, the type in
    /// the next 7, the code in the last 9, then the error data.
    #[test]
    fn icmp_attribute_follows_rfc_8656_figure_11() {
        // ICMPv4 Destination Unreachable, fragmentation needed, MTU 1400.
        let frag = Icmp {
            typ: 3,
            code: 4,
            error_data: 1400,
        };
        assert_eq!(frag.encode(), [0, 0, 3 << 1, 4, 0, 0, 0x05, 0x78]);
        // ICMPv6 Destination Unreachable, port unreachable.
        let port = Icmp {
            typ: 1,
            code: 4,
            error_data: 0,
        };
        assert_eq!(port.encode(), [0, 0, 0b0000_0010, 4, 0, 0, 0, 0]);
        // A 9-bit code carries its top bit into the type's byte.
        let wide = Icmp {
            typ: 0x7F,
            code: 0x1FF,
            error_data: u32::MAX,
        };
        assert_eq!(wide.encode(), [0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        for i in [frag, port, wide] {
            assert_eq!(Icmp::decode(&i.encode()), Some(i));
        }
        // Reserved bits set by a sender are ignored; a wrong length is refused.
        assert_eq!(Icmp::decode(&[0xAB, 0xCD, 3 << 1, 4, 0, 0, 0x05, 0x78]), Some(frag));
        assert_eq!(Icmp::decode(&[0; 7]), None);
        assert_eq!(Icmp::decode(&[0; 12]), None);
    }
}
