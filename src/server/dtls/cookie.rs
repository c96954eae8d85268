//! The stateless cookie exchange of DTLS (RFC 6347 §4.2.1), done before
//! any per-client state exists: a ClientHello without a valid cookie is
//! answered with a HelloVerifyRequest and forgotten, so a spoofed source
//! costs one HMAC and one datagram no larger than its own.
//!
//! "Cookie = HMAC(Secret, Client-IP, Client-Parameters)": here the client's
//! address and port, under a key from the CSPRNG that is replaced every
//! [`ROTATE`] (the previous key is still accepted, so a cookie lives one to
//! two periods). Keys are per shard: SO_REUSEPORT hashes a client's address
//! and port to the same shard socket each time, so both hellos of a client
//! reach the same shard.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ring::hmac;

/// How often the cookie key is replaced.
pub const ROTATE: Duration = Duration::from_secs(30);
/// Cookie bytes (a truncated HMAC-SHA256: 128 bits against forgery).
const COOKIE_LEN: usize = 16;
/// DTLS record header: type, version, epoch, sequence number, length.
const RECORD_HEADER: usize = 13;
/// DTLS handshake header: type, length, message_seq, fragment offset and length.
const HANDSHAKE_HEADER: usize = 12;
/// The HelloVerifyRequest this module sends, in bytes.
pub const HELLO_VERIFY_LEN: usize = RECORD_HEADER + HANDSHAKE_HEADER + 3 + COOKIE_LEN;

const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const HELLO_VERIFY_REQUEST: u8 = 3;
/// DTLS 1.0 on the wire: RFC 6347 §4.2.1 "DTLS 1.2 server implementations
/// SHOULD use DTLS version 1.0 regardless of the version of TLS that is
/// expected to be negotiated" in HelloVerifyRequest.
const DTLS1_0: [u8; 2] = [0xfe, 0xff];

/// What a datagram from an address without a session is.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello carrying a cookie this server made for this address:
    /// the session may start.
    Verified,
    /// A ClientHello without a valid cookie: send this HelloVerifyRequest
    /// (`len` bytes of the buffer given) and keep nothing.
    Challenge(usize),
    /// Not an unfragmented ClientHello in epoch 0, or too short to be
    /// answered without amplification: drop it.
    Garbage,
}

/// The HMAC keys of one shard.
pub struct CookieKeys {
    current: hmac::Key,
    previous: hmac::Key,
    rotated: Instant,
}

impl CookieKeys {
    pub fn new(now: Instant) -> anyhow::Result<CookieKeys> {
        Ok(CookieKeys {
            current: fresh()?,
            previous: fresh()?,
            rotated: now,
        })
    }

    /// Replaces the key when [`ROTATE`] has passed (the driver's sweep).
    pub fn rotate(&mut self, now: Instant) {
        if now.saturating_duration_since(self.rotated) < ROTATE {
            return;
        }
        // A failing system generator keeps the old key rather than a weak one.
        if let Ok(k) = fresh() {
            self.previous = std::mem::replace(&mut self.current, k);
            self.rotated = now;
        }
    }

    /// Classifies `datagram` from `client`, writing a HelloVerifyRequest
    /// into `out` (at least [`HELLO_VERIFY_LEN`] bytes) when one is due.
    pub fn check(&self, client: SocketAddr, datagram: &[u8], out: &mut [u8]) -> Hello {
        let Some(hello) = parse_client_hello(datagram) else {
            return Hello::Garbage;
        };
        if hello.cookie.len() == COOKIE_LEN {
            for key in [&self.current, &self.previous] {
                if proto::wire::ct_eq(&cookie(key, client, &hello.random), hello.cookie) {
                    return Hello::Verified;
                }
            }
        }
        // No answer larger than the hello (amplification).
        if datagram.len() < HELLO_VERIFY_LEN || out.len() < HELLO_VERIFY_LEN {
            return Hello::Garbage;
        }
        let c = cookie(&self.current, client, &hello.random);
        let out = &mut out[..HELLO_VERIFY_LEN];
        out[0] = CONTENT_HANDSHAKE;
        out[1..3].copy_from_slice(&DTLS1_0);
        // Epoch 0, and "the server MUST use the record sequence number in
        // the ClientHello as the record sequence number in the
        // HelloVerifyRequest".
        out[3..5].copy_from_slice(&[0, 0]);
        out[5..11].copy_from_slice(&hello.record_seq);
        let body = HANDSHAKE_HEADER + 3 + COOKIE_LEN;
        out[11..13].copy_from_slice(&(body as u16).to_be_bytes());
        let h = &mut out[RECORD_HEADER..];
        let msg_len = (3 + COOKIE_LEN) as u32;
        h[0] = HELLO_VERIFY_REQUEST;
        h[1..4].copy_from_slice(&msg_len.to_be_bytes()[1..]);
        // message_seq 0: "The first message each side transmits in each
        // handshake always has message_seq = 0" (§4.2.2).
        h[4..6].copy_from_slice(&[0, 0]);
        h[6..9].copy_from_slice(&[0, 0, 0]);
        h[9..12].copy_from_slice(&msg_len.to_be_bytes()[1..]);
        h[12..14].copy_from_slice(&DTLS1_0);
        h[14] = COOKIE_LEN as u8;
        h[15..15 + COOKIE_LEN].copy_from_slice(&c);
        Hello::Challenge(HELLO_VERIFY_LEN)
    }
}

/// The alert [`refusal`] writes, in bytes: a record header and an alert.
pub const REFUSAL_LEN: usize = RECORD_HEADER + 2;
const CONTENT_ALERT: u8 = 21;
/// RFC 5246 §7.2: AlertLevel fatal, AlertDescription internal_error(80).
/// internal_error ("an internal error unrelated to the peer or the
/// correctness of the protocol ... makes it impossible to continue") is
/// what a full server is; user_canceled is a warning that expects the
/// handshake to be ended by close_notify, which a client past its hello
/// cannot get in plaintext.
const FATAL_INTERNAL_ERROR: [u8; 2] = [2, 80];

/// Writes into `out` a plaintext fatal alert answering the verified
/// ClientHello `hello` when no session can be made for it (a session
/// budget): epoch 0, the hello's record version and sequence number (as
/// for a HelloVerifyRequest), so the client stops at once instead of
/// retransmitting until its own timeout. None if either is shorter than
/// the alert: no answer larger than the hello.
pub fn refusal(hello: &[u8], out: &mut [u8]) -> Option<usize> {
    if hello.len() < REFUSAL_LEN || out.len() < REFUSAL_LEN {
        return None;
    }
    out[0] = CONTENT_ALERT;
    out[1..3].copy_from_slice(&hello[1..3]);
    out[3..5].copy_from_slice(&[0, 0]);
    out[5..11].copy_from_slice(&hello[5..11]);
    out[11..13].copy_from_slice(&2u16.to_be_bytes());
    out[13..15].copy_from_slice(&FATAL_INTERNAL_ERROR);
    Some(REFUSAL_LEN)
}

/// The client random of `datagram` if it is an unfragmented ClientHello in
/// epoch 0: a retransmitted hello repeats it, a new handshake does not.
pub fn client_random(datagram: &[u8]) -> Option<[u8; 32]> {
    parse_client_hello(datagram).map(|h| h.random)
}

fn fresh() -> anyhow::Result<hmac::Key> {
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &crate::random::random_bytes::<32>()?))
}

/// RFC 6347 §4.2.1: the second ClientHello repeats the first one's
/// random, so binding the cookie to it costs honest clients nothing, while a
/// cookie copied from another client's hello cannot open a handshake with a
/// random of the copier's choosing (and so cannot replace that client's
/// session under §4.2.8).
fn cookie(key: &hmac::Key, client: SocketAddr, random: &[u8; 32]) -> [u8; COOKIE_LEN] {
    let mut ctx = hmac::Context::with_key(key);
    match client.ip() {
        std::net::IpAddr::V4(v4) => ctx.update(&v4.octets()),
        std::net::IpAddr::V6(v6) => ctx.update(&v6.octets()),
    }
    ctx.update(&client.port().to_be_bytes());
    ctx.update(random);
    let tag = ctx.sign();
    let mut c = [0u8; COOKIE_LEN];
    c.copy_from_slice(&tag.as_ref()[..COOKIE_LEN]);
    c
}

struct ClientHello<'a> {
    record_seq: [u8; 6],
    random: [u8; 32],
    cookie: &'a [u8],
}

/// The fields of an unfragmented DTLS ClientHello in epoch 0 (RFC 6347
/// §4.1 record, §4.2.2 handshake header, §4.2.1 ClientHello with cookie).
fn parse_client_hello(d: &[u8]) -> Option<ClientHello<'_>> {
    if d.len() < RECORD_HEADER + HANDSHAKE_HEADER || d[0] != CONTENT_HANDSHAKE || d[1] != 0xfe || d[3..5] != [0, 0] {
        return None;
    }
    let record_len = u16::from_be_bytes([d[11], d[12]]) as usize;
    let record = d.get(RECORD_HEADER..RECORD_HEADER + record_len)?;
    let u24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
    if record.len() < HANDSHAKE_HEADER || record[0] != CLIENT_HELLO {
        return None;
    }
    let (msg_len, frag_off, frag_len) = (u24(&record[1..4]), u24(&record[6..9]), u24(&record[9..12]));
    if frag_off != 0 || frag_len != msg_len {
        return None;
    }
    let body = record.get(HANDSHAKE_HEADER..HANDSHAKE_HEADER + msg_len)?;
    // client_version(2) random(32) session_id<0..32> cookie<0..255>
    let sid_len = *body.get(34)? as usize;
    if sid_len > 32 {
        return None;
    }
    let cookie_at = 35 + sid_len;
    let cookie_len = *body.get(cookie_at)? as usize;
    let cookie = body.get(cookie_at + 1..cookie_at + 1 + cookie_len)?;
    let mut record_seq = [0u8; 6];
    record_seq.copy_from_slice(&d[5..11]);
    let mut random = [0u8; 32];
    random.copy_from_slice(&body[2..34]);
    Some(ClientHello {
        record_seq,
        random,
        cookie,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal DTLS 1.2 ClientHello (one cipher suite, null compression).
    fn hello(cookie: &[u8], seq: u8) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.push(cookie.len() as u8);
        body.extend_from_slice(cookie);
        body.extend_from_slice(&[0, 2, 0xc0, 0x2b, 1, 0]);
        let mut hs = vec![CLIENT_HELLO];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&[0, 0, 0, 0, 0]);
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut d = vec![CONTENT_HANDSHAKE, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, seq];
        d.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        d.extend_from_slice(&hs);
        d
    }

    #[test]
    fn rfc6347_4_2_1_a_hello_without_cookie_is_challenged_with_no_larger_answer() {
        let now = Instant::now();
        let keys = CookieKeys::new(now).unwrap();
        let client: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let mut out = [0u8; 64];
        let d = hello(&[], 9);
        let Hello::Challenge(n) = keys.check(client, &d, &mut out) else {
            panic!("no challenge")
        };
        assert!(n <= d.len(), "{n} > {}", d.len());
        // The record sequence number is the hello's.
        assert_eq!(out[10], 9);
        let c = out[n - COOKIE_LEN..n].to_vec();
        assert_eq!(keys.check(client, &hello(&c, 10), &mut out), Hello::Verified);
        // Bound to the address and port.
        let other: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        assert!(matches!(
            keys.check(other, &hello(&c, 10), &mut out),
            Hello::Challenge(_)
        ));
    }

    #[test]
    fn rfc6347_4_2_1_cookies_survive_one_rotation_not_two() {
        let t0 = Instant::now();
        let mut keys = CookieKeys::new(t0).unwrap();
        let client: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let mut out = [0u8; 64];
        let Hello::Challenge(n) = keys.check(client, &hello(&[], 0), &mut out) else {
            panic!("no challenge")
        };
        let c = out[n - COOKIE_LEN..n].to_vec();
        keys.rotate(t0 + ROTATE);
        assert_eq!(keys.check(client, &hello(&c, 1), &mut out), Hello::Verified);
        keys.rotate(t0 + ROTATE * 2);
        assert!(matches!(
            keys.check(client, &hello(&c, 1), &mut out),
            Hello::Challenge(_)
        ));
    }

    #[test]
    fn anything_but_an_unfragmented_client_hello_is_garbage() {
        let keys = CookieKeys::new(Instant::now()).unwrap();
        let client: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let mut out = [0u8; 64];
        let good = hello(&[], 0);
        for len in 0..good.len() {
            assert_eq!(
                keys.check(client, &good[..len], &mut out),
                Hello::Garbage,
                "prefix {len}"
            );
        }
        let mut fragmented = good.clone();
        fragmented[RECORD_HEADER + 11] -= 1;
        assert_eq!(keys.check(client, &fragmented, &mut out), Hello::Garbage);
        let mut epoch1 = good.clone();
        epoch1[4] = 1;
        assert_eq!(keys.check(client, &epoch1, &mut out), Hello::Garbage);
        let mut application = good;
        application[0] = 23;
        assert_eq!(keys.check(client, &application, &mut out), Hello::Garbage);
    }

    #[test]
    fn a_refused_hello_gets_a_fatal_alert_no_larger_than_itself() {
        let h = hello(&[7; COOKIE_LEN], 9);
        let mut out = [0u8; 64];
        let n = refusal(&h, &mut out).expect("an alert");
        assert_eq!(n, 15);
        // Alert record, the hello's version, epoch 0, its sequence number,
        // length 2, fatal internal_error.
        assert_eq!(out[..3], [21, h[1], h[2]]);
        assert_eq!(out[3..11], [0, 0, h[5], h[6], h[7], h[8], h[9], h[10]]);
        assert_eq!(out[11..15], [0, 2, 2, 80]);
        assert_eq!(refusal(&h[..14], &mut out), None, "no answer larger than the hello");
        assert_eq!(refusal(&h, &mut out[..14]), None);
    }
}
