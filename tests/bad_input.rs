//! Garbage from one client over real sockets: dropped or answered with the
//! RFC error, never a panic, never an amplified reply, and the server (and
//! every other client) keeps working.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::*;

fn header(typ: u16, len: u16, cookie: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&typ.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&cookie.to_be_bytes());
    h.extend_from_slice(&[0x42; 12]);
    h
}

const COOKIE: u32 = 0x2112_A442;

/// (name, datagram, expect a 400 reply)
fn bad_datagrams() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut v = vec![
        ("empty", vec![], false),
        ("truncated header", header(0x0001, 0, COOKIE)[..13].to_vec(), false),
        ("wrong magic cookie", header(0x0001, 0, 0xDEAD_BEEF), false),
        ("top bits set", header(0xC001, 0, COOKIE), false),
        (
            "length not a multiple of 4",
            [header(0x0001, 2, COOKIE), vec![0, 0]].concat(),
            false,
        ),
        ("length beyond datagram", header(0x0001, 8, COOKIE), false),
    ];
    // An attribute whose length overruns the message: recognisably STUN -> 400.
    let mut overrun = header(0x0001, 8, COOKIE);
    overrun.extend_from_slice(&[0x80, 0x22, 0x00, 0x40, b'a', b'b', b'c', b'd']);
    v.push(("attribute overrun", overrun, true));
    // Thousands of attributes.
    let n = 4000u16;
    let mut many = header(0x0001, n * 4, COOKIE);
    for _ in 0..n {
        many.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
    }
    v.push(("thousands of attributes", many, true));
    // A bad FINGERPRINT.
    let mut req = binding_request().raw;
    let last = req.len() - 1;
    req[last] ^= 0xFF;
    v.push(("bad fingerprint", req, false));
    // Random bytes (deterministic).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in [1usize, 20, 21, 64, 548, 1400] {
        let bytes = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        v.push(("random bytes", bytes, false));
    }
    v
}

#[test]
fn udp_garbage_is_dropped_or_refused_and_a_valid_binding_still_works() {
    let server = start(&test_config(None, &[("server.shards", "1")]));
    let addr = server.bound().udp[0];
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut expected_drops = 0;
    let mut expected_errors = 0;
    for (name, bytes, want_400) in bad_datagrams() {
        sock.send_to(&bytes, addr).unwrap();
        let mut buf = [0u8; 2048];
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                assert!(want_400, "{name}: unexpected reply");
                assert!(n <= bytes.len(), "{name}: reply of {n} bytes to {} bytes", bytes.len());
                let mut m = stun::message::Message::new();
                m.raw = buf[..n].to_vec();
                m.decode().unwrap();
                let mut code = stun::error_code::ErrorCodeAttribute::default();
                stun::message::Getter::get_from(&mut code, &m).unwrap();
                assert_eq!(code.code.0, 400, "{name}");
                expected_errors += 1;
            }
            Err(_) => {
                assert!(!want_400, "{name}: expected a 400");
                expected_drops += 1;
            }
        }
        // The next valid request on the same socket still succeeds.
        let req = binding_request();
        sock.send_to(&req.raw, addr).unwrap();
        let (n, _) = sock.recv_from(&mut buf).expect("valid Binding after garbage");
        assert_eq!(mapped_address(&req, &buf[..n]), sock.local_addr().unwrap(), "{name}");
    }
    let stats = server.shutdown().unwrap();
    assert_eq!(stats.drops.total(), expected_drops);
    assert_eq!(stats.error_responses(), expected_errors);
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn tcp_binding_works(addr: SocketAddr) {
    let mut s = connect(addr);
    let req = binding_request();
    s.write_all(&req.raw).unwrap();
    assert_eq!(mapped_address(&req, &read_stun(&mut s)), s.local_addr().unwrap());
}

/// True if the server closed the connection (EOF or reset) before the read timeout.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(n) => n == 0,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[test]
fn tcp_garbage_closes_only_that_connection() {
    let server = start(&test_config(None, &[("stream.max_message_bytes", "2048")]));
    let addr = server.bound().tcp[0];
    // A well-behaved client connected the whole time.
    let mut good = connect(addr);

    // Non-STUN bytes: the stream cannot be resynchronised, so it is closed.
    let mut bad = connect(addr);
    bad.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello, this is not STUN")
        .unwrap();
    assert!(closed_by_server(&mut bad), "garbage closes the connection");

    // An oversize frame (length over stream.max_message_bytes) is refused at
    // once, without waiting for its body.
    let mut big = connect(addr);
    big.write_all(&header(0x0001, 0xFFFC, COOKIE)).unwrap();
    assert!(closed_by_server(&mut big), "oversize frame closes the connection");

    // A malformed but framed request gets 400 and the connection stays usable.
    let mut s = connect(addr);
    let mut overrun = header(0x0001, 8, COOKIE);
    overrun.extend_from_slice(&[0x80, 0x22, 0x00, 0x40, b'a', b'b', b'c', b'd']);
    s.write_all(&overrun).unwrap();
    let resp = read_stun(&mut s);
    assert_eq!(resp[0..2], [0x01, 0x11], "Binding error response");
    let req = binding_request();
    s.write_all(&req.raw).unwrap();
    assert_eq!(mapped_address(&req, &read_stun(&mut s)), s.local_addr().unwrap());

    // The good client never noticed.
    let req = binding_request();
    good.write_all(&req.raw).unwrap();
    assert_eq!(mapped_address(&req, &read_stun(&mut good)), good.local_addr().unwrap());
    tcp_binding_works(addr);
    server.shutdown().unwrap();
}

#[test]
fn half_sent_frames_time_out_without_blocking_others() {
    let server = start(&test_config(None, &[("stream.idle_timeout", "1s")]));
    let addr = server.bound().tcp[0];
    // Many clients that send half a message and stall.
    let mut stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(&binding_request().raw[..10]).unwrap();
            s
        })
        .collect();
    // Others are served meanwhile.
    for _ in 0..5 {
        tcp_binding_works(addr);
    }
    // Every stalled one is closed after the idle timeout.
    for s in stalled.iter_mut() {
        assert!(closed_by_server(s), "stalled connection closed by the idle timeout");
    }
    server.shutdown().unwrap();
}

#[test]
fn connection_limit_is_enforced() {
    let server = start(&test_config(
        None,
        &[("stream.max_connections", "3"), ("server.shards", "1")],
    ));
    let addr = server.bound().tcp[0];
    let held: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    // Make sure the three are accepted before the fourth arrives.
    for s in &held {
        let mut s = s.try_clone().unwrap();
        let req = binding_request();
        s.write_all(&req.raw).unwrap();
        read_stun(&mut s);
    }
    let mut extra = connect(addr);
    assert!(closed_by_server(&mut extra), "a fourth connection is closed");
    drop(held);
    // Slots free up again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect(addr);
        let req = binding_request();
        if s.write_all(&req.raw).is_ok() {
            let mut head = [0u8; 20];
            if s.read_exact(&mut head).is_ok() {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "slots are released");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.shutdown().unwrap();
}
