//! Peer ids and resume tokens: HMAC-SHA256 of a counter under a secret key
//! the driver draws from the OS once. Unguessable without the key, yet the
//! room logic stays deterministic (tests pass a fixed key).

use ring::hmac;

use super::message::{PeerId, ResumeToken};

pub struct IdSource {
    key: hmac::Key,
    counter: u64,
}

impl IdSource {
    pub fn new(secret: [u8; 32]) -> IdSource {
        IdSource {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            counter: 0,
        }
    }

    fn next_hex(&mut self, label: &[u8], bytes: usize) -> String {
        self.counter += 1;
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(label);
        ctx.update(&self.counter.to_be_bytes());
        let tag = ctx.sign();
        tag.as_ref()[..bytes].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// 64 bits, as 16 hex digits.
    pub fn peer_id(&mut self) -> PeerId {
        PeerId(self.next_hex(b"peer", 8))
    }

    /// 128 bits, as 32 hex digits.
    pub fn resume_token(&mut self) -> ResumeToken {
        ResumeToken(self.next_hex(b"resume", 16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_and_deterministic() {
        let mut a = IdSource::new([7; 32]);
        let mut b = IdSource::new([7; 32]);
        let mut c = IdSource::new([8; 32]);
        let (p, t) = (a.peer_id(), a.resume_token());
        assert_eq!(p.0.len(), 16);
        assert_eq!(t.0.len(), 32);
        assert_ne!(p, a.peer_id());
        assert_eq!(p, b.peer_id());
        assert_ne!(p, c.peer_id());
    }
}
