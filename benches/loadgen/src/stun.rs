//! Minimal STUN header handling (RFC 8489 §5): just what the load needs.

pub const MAGIC_COOKIE: u32 = 0x2112_A442;
pub const BINDING_REQUEST: u16 = 0x0001;
pub const BINDING_SUCCESS: u16 = 0x0101;
pub const HEADER_LEN: usize = 20;

/// Write a 20-byte Binding request without attributes. The 96-bit
/// transaction id is `tag` (4 bytes, big endian) followed by `nonce`
/// (8 bytes), so a response can be matched to its window slot cheaply.
pub fn write_binding_request(buf: &mut [u8], tag: u32, nonce: u64) -> usize {
    buf[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    buf[2..4].copy_from_slice(&0u16.to_be_bytes());
    buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    buf[8..12].copy_from_slice(&tag.to_be_bytes());
    buf[12..20].copy_from_slice(&nonce.to_be_bytes());
    HEADER_LEN
}

/// If `msg` is a well-formed STUN header of type `msg_type` (magic cookie,
/// length field consistent with the datagram and a multiple of 4), return
/// the transaction id split as (tag, nonce).
pub fn parse_header(msg: &[u8], msg_type: u16) -> Option<(u32, u64)> {
    if msg.len() < HEADER_LEN {
        return None;
    }
    let ty = u16::from_be_bytes([msg[0], msg[1]]);
    let len = u16::from_be_bytes([msg[2], msg[3]]) as usize;
    let cookie = u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]);
    if ty != msg_type || cookie != MAGIC_COOKIE || !len.is_multiple_of(4) || len + HEADER_LEN != msg.len() {
        return None;
    }
    let tag = u32::from_be_bytes(msg[8..12].try_into().unwrap());
    let nonce = u64::from_be_bytes(msg[12..20].try_into().unwrap());
    Some((tag, nonce))
}

/// Turn the Binding request in `buf[..len]` into a Binding success response
/// with one XOR-MAPPED-ADDRESS for an IPv4 `ip`/`port` (host order) and
/// return its length; None if it is not a Binding request.
pub fn reflect_binding(buf: &mut [u8], len: usize, ip: u32, port: u16) -> Option<usize> {
    parse_header(&buf[..len], BINDING_REQUEST)?;
    if buf.len() < HEADER_LEN + 12 {
        return None;
    }
    buf[0..2].copy_from_slice(&BINDING_SUCCESS.to_be_bytes());
    buf[2..4].copy_from_slice(&12u16.to_be_bytes());
    let a = &mut buf[HEADER_LEN..HEADER_LEN + 12];
    a[0..2].copy_from_slice(&0x0020u16.to_be_bytes()); // XOR-MAPPED-ADDRESS
    a[2..4].copy_from_slice(&8u16.to_be_bytes());
    a[4] = 0;
    a[5] = 0x01; // IPv4
    a[6..8].copy_from_slice(&(port ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    a[8..12].copy_from_slice(&(ip ^ MAGIC_COOKIE).to_be_bytes());
    Some(HEADER_LEN + 12)
}
