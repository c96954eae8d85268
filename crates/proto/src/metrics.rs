//! Counters with fixed label sets, so a metrics scrape has the same series
//! however many users and clients there are (no usernames or addresses).

use crate::wire::{ErrorCode, Method};

/// Methods counted, in label order; anything else is "other".
pub const METHODS: [&str; 9] = [
    "binding",
    "allocate",
    "refresh",
    "create_permission",
    "channel_bind",
    "send",
    "connect",
    "connection_bind",
    "other",
];
/// Response codes counted ("200" = success), in label order; others are "other".
pub const CODES: [&str; 18] = [
    "200", "300", "400", "401", "403", "420", "437", "438", "440", "441", "442", "443", "446", "447", "486", "500",
    "508", "other",
];

pub fn method_index(m: Method) -> usize {
    match m {
        Method::BINDING => 0,
        Method::ALLOCATE => 1,
        Method::REFRESH => 2,
        Method::CREATE_PERMISSION => 3,
        Method::CHANNEL_BIND => 4,
        Method::SEND => 5,
        Method::CONNECT => 6,
        Method::CONNECTION_BIND => 7,
        _ => 8,
    }
}

pub fn code_index(code: Option<ErrorCode>) -> usize {
    let Some(c) = code else { return 0 };
    let label = c.0.to_string();
    CODES[1..CODES.len() - 1]
        .iter()
        .position(|l| *l == label)
        .map_or(CODES.len() - 1, |i| i + 1)
}

/// Requests by method and responses by method and code.
#[derive(Debug, Clone)]
pub struct RequestCounters {
    pub requests: [u64; METHODS.len()],
    pub responses: [[u64; CODES.len()]; METHODS.len()],
}

impl Default for RequestCounters {
    fn default() -> Self {
        RequestCounters {
            requests: [0; METHODS.len()],
            responses: [[0; CODES.len()]; METHODS.len()],
        }
    }
}

impl RequestCounters {
    pub fn request(&mut self, m: Method) {
        self.requests[method_index(m)] += 1;
    }

    pub fn response(&mut self, m: Method, code: Option<ErrorCode>) {
        self.responses[method_index(m)][code_index(code)] += 1;
    }

    pub fn merge(&mut self, o: &RequestCounters) {
        for (a, b) in self.requests.iter_mut().zip(o.requests.iter()) {
            *a += b;
        }
        for (ra, rb) in self.responses.iter_mut().zip(o.responses.iter()) {
            for (a, b) in ra.iter_mut().zip(rb.iter()) {
                *a += b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes() {
        assert_eq!(code_index(None), 0);
        assert_eq!(CODES[code_index(Some(ErrorCode(438)))], "438");
        assert_eq!(CODES[code_index(Some(ErrorCode(599)))], "other");
        assert_eq!(METHODS[method_index(Method::CHANNEL_BIND)], "channel_bind");
        assert_eq!(METHODS[method_index(Method(0x0ABC))], "other");
    }
}
