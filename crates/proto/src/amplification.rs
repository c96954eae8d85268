//! The bound on replies to requests nobody has authenticated (DESIGN.md §5,
//! §10): a spoofed source must not turn this server into an amplifier. A
//! reply before authentication is at most 1.7 times its request, counting
//! the 28 bytes of IPv4 and UDP headers around each (the smallest headers,
//! so the strictest count). Challenges fit it by construction (no reason
//! phrase, no SOFTWARE, a 12-character nonce, a realm of at most
//! [`MAX_REALM_LEN`] bytes); optional extras such as SOFTWARE on a Binding
//! success are added only when [`within_bound`] says so.

/// IPv4 (20) and UDP (8) header bytes around every datagram.
pub const IP_UDP_HEADERS: usize = 28;

/// The longest realm whose 401 to a minimal Allocate (28 bytes) stays
/// within the bound: 20 (header) + 8 (ERROR-CODE) + 4 + 16 (REALM) +
/// 4 + 12 (NONCE) = 64 bytes, 92 on the wire against 56 = 1.64.
pub const MAX_REALM_LEN: usize = 16;

/// True if a reply of `reply_len` bytes to a request of `request_len`
/// bytes is at most 1.7 times as large, headers included.
pub fn within_bound(request_len: usize, reply_len: usize) -> bool {
    (reply_len + IP_UDP_HEADERS) * 10 <= (request_len + IP_UDP_HEADERS) * 17
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_counts_headers() {
        assert!(within_bound(28, 67), "95 bytes against 56 on the wire");
        assert!(!within_bound(28, 68));
        assert!(within_bound(20, 53));
        assert!(!within_bound(20, 54));
    }
}
