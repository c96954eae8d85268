//! TURN over DTLS (RFC 7350) on `listen.dtls`, with independent clients:
//! coturn's `turnutils_uclient -S` relaying through ternd to
//! `turnutils_peer`, an OpenSSL DTLS client driven here datagram by
//! datagram (Binding, ALPN, a handshake left half-done), raw ClientHellos
//! from many source ports (the cookie exchange of RFC 6347 §4.2.1), the
//! iceServers document and `ternd probe`.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dtls::{client_context, Client};
use common::http::{http, metric};
use common::turn::{Io, TurnClient};
use common::*;
use openssl::ssl::ErrorCode;
use ternd::budget::Budget;

/// A TURN test server with one DTLS listener (and HTTP when `http` is set).
fn server(cert: &TestCert, http: bool, extra: &[(&str, &str)]) -> ternd::Running {
    let mut all = vec![
        ("listen.dtls", "127.0.0.1:0"),
        // coturn's tools pick channel numbers from RFC 5766's range.
        ("turn.legacy_channel_numbers", "true"),
    ];
    if http {
        all.push(("http.listen", "127.0.0.1:0"));
    }
    all.extend_from_slice(extra);
    start(&turn_config(Some(cert), &all))
}

/// `turnutils_peer` (a UDP echo peer) on 127.0.0.2, stopped by pid on drop.
struct Peer {
    child: Child,
    port: u16,
}

impl Peer {
    fn start(bin: &str) -> Peer {
        let port = UdpSocket::bind("127.0.0.2:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(bin)
            .args(["-L", "127.0.0.2", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Peer { child, port }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        common::process::stop(&mut self.child);
    }
}

/// Runs `turnutils_uclient -S` (DTLS) through `dtls` to `peer`: 3 clients,
/// 40 messages each, ChannelData; returns (sent, received, lost, output).
fn uclient_over_dtls(dtls: SocketAddr, peer: &Peer) -> (u64, u64, u64, String) {
    let bin = tool("turnutils_uclient").expect("checked by the caller");
    let args = [
        "-S",
        "-e",
        "127.0.0.2",
        "-r",
        &peer.port.to_string(),
        "-n",
        "40",
        "-m",
        "3",
        "-l",
        "300",
        "-u",
        "alice",
        "-w",
        "alice-password",
        "-p",
        &dtls.port().to_string(),
        "127.0.0.1",
    ];
    let f = common::process::spawn(Command::new(bin).args(args)).finish(Duration::from_secs(60));
    let text = f.stdout + &f.stderr;
    let n = |key: &str| number_after(&text, key);
    (
        n("tot_send_msgs=").unwrap_or(0),
        n("tot_recv_msgs=").unwrap_or(0),
        n("Total lost packets").unwrap_or(u64::MAX),
        text,
    )
}

/// RFC 7350 §4.3-4.5 (TURN over DTLS): an independent client allocates,
/// binds channels and relays through ternd's DTLS listener with no loss.
/// (uclient picks DTLS 1.0 for some connections; ternd refuses it, RFC
/// 8996, and uclient tries again: that shows as "protocol version".)
#[test]
fn rfc7350_uclient_allocates_and_relays_over_dtls_with_no_loss() {
    let Some(peer_bin) = tool("turnutils_peer") else { return };
    if tool("turnutils_uclient").is_none() {
        return;
    }
    let cert = TestCert::new();
    let server = server(&cert, false, &[]);
    let peer = Peer::start(&peer_bin);
    let (sent, recv, lost, text) = uclient_over_dtls(server.bound().dtls[0], &peer);
    assert!(sent >= 120, "uclient sent its messages\n{text}");
    eprintln!("uclient -S: sent {sent}, received {recv}, lost {lost}");
    assert_eq!(recv, sent, "every message relayed back\n{text}");
    assert_eq!(lost, 0, "{text}");
    let stats = server.shutdown().unwrap();
    assert!(stats.allocations_created >= 3, "{stats:?}");
}

/// RFC 7350 §4 with RFC 8489 Binding: a STUN request over DTLS is answered
/// over the same session with the client's address.
#[test]
fn rfc7350_binding_over_dtls_from_an_openssl_client() {
    let cert = TestCert::new();
    let server = server(&cert, false, &[]);
    let mut c = Client::new(server.bound().dtls[0], &client_context(&cert, &[]));
    c.handshake().expect("handshake");
    let local = c.sock.local_addr().unwrap();
    assert_eq!(c.binding(), local);
    // Twice over one session.
    assert_eq!(c.binding(), local);
    assert_eq!(server.handle().dtls_sessions(), 1);
    server.shutdown().unwrap();
}

/// A close_notify alert ends the session at once, and the allocation made
/// over it goes with it (as with a TLS connection); a datagram that is no
/// DTLS at all from a stranger is dropped and counted.
#[test]
fn rfc6347_close_notify_ends_the_session_and_its_allocation() {
    let cert = TestCert::new();
    let server = server(&cert, false, &[]);
    let dtls = server.bound().dtls[0];
    let mut c = Client::new(dtls, &client_context(&cert, &[]));
    c.handshake().expect("handshake");
    let mut turn = TurnClient::new(Io::Dtls(Box::new(c)), "alice", "alice-password");
    let relay = turn.allocate().expect("Allocate over DTLS");
    assert_eq!(relay.ip().to_string(), "127.0.0.1");
    let handle = server.handle();
    assert_eq!(block_on(handle.allocations()).len(), 1);
    assert_eq!(handle.dtls_sessions(), 1);
    let Io::Dtls(mut c) = turn.into_io() else {
        unreachable!()
    };
    let _ = c.ssl.shutdown();
    assert_eq!(c.flush().len(), 1, "one close_notify datagram");
    assert!(
        wait_for(Duration::from_secs(2), || handle.dtls_sessions() == 0),
        "the session ends with close_notify"
    );
    assert!(block_on(handle.allocations()).is_empty(), "its allocation is gone");
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.send_to(&binding_request().raw, dtls).unwrap();
    stranger.send_to(&[0x17; 3], dtls).unwrap();
    let counted = || -> u64 {
        let snapshots = block_on(handle.snapshots());
        snapshots
            .iter()
            .map(|s| s.stats.drops.get(proto::DropReason::DtlsRecord))
            .sum()
    };
    assert!(wait_for(Duration::from_secs(2), || counted() == 2), "{}", counted());
    server.shutdown().unwrap();
}

/// RFC 6347 §4.2.8: a client that starts over on the same address and
/// port gets a new session once it has passed the cookie exchange; the old
/// session (and the allocation on it) ends then, not before.
#[test]
fn rfc6347_4_2_8_a_new_handshake_on_the_same_port_replaces_the_session() {
    let cert = TestCert::new();
    let server = server(&cert, false, &[]);
    let dtls = server.bound().dtls[0];
    let handle = server.handle();
    let mut old = Client::new(dtls, &client_context(&cert, &[]));
    old.handshake().expect("handshake");
    let port = old.sock.local_addr().unwrap();
    let mut turn = TurnClient::new(Io::Dtls(Box::new(old)), "alice", "alice-password");
    turn.allocate().expect("Allocate over DTLS");
    let Io::Dtls(old) = turn.into_io() else { unreachable!() };
    // The new first ClientHello is only challenged: the old session and
    // its allocation stay until the client proves its address.
    let mut again = Client::over(old.sock.try_clone().unwrap(), dtls, &client_context(&cert, &[]));
    assert!(!again.step().unwrap());
    let verify = again
        .receive(Duration::from_secs(5))
        .expect("HelloVerifyRequest, the old session untouched");
    assert_eq!((verify[0], verify[13]), (22, 3));
    assert_eq!(block_on(handle.allocations()).len(), 1);
    again.ssl.get_mut().inbound.push_back(verify);
    again.handshake().expect("the new handshake completes");
    assert_eq!(again.sock.local_addr().unwrap(), port);
    assert_eq!(again.binding(), port);
    assert_eq!(handle.dtls_sessions(), 1);
    assert!(
        block_on(handle.allocations()).is_empty(),
        "the old session's allocation ended with it"
    );
    server.shutdown().unwrap();
}

/// A client left mid-handshake: ClientHello -> HelloVerifyRequest ->
/// ClientHello with the cookie -> the server's flight, which the client
/// never answers.
fn half_open(dtls: SocketAddr, cert: &TestCert) -> Client {
    let mut c = Client::new(dtls, &client_context(cert, &[]));
    assert!(!c.step().unwrap());
    let verify = c.receive(Duration::from_secs(5)).expect("HelloVerifyRequest");
    c.ssl.get_mut().inbound.push_back(verify);
    assert!(!c.step().unwrap());
    assert!(c.receive(Duration::from_secs(5)).is_some(), "the server's flight");
    c
}

/// RFC 6347 §4.2.1: the second ClientHello repeats the first one's random,
/// and the cookie is bound to it. An exact late copy of a client's verified
/// hello leaves its session alone; the same hello with another random (an
/// on-path attacker reusing the cookie from the client's address) gets no
/// new handshake, so it cannot end the client's session and allocation.
#[test]
fn rfc6347_4_2_1_a_cookie_reused_with_another_random_does_not_replace_the_session() {
    let cert = TestCert::new();
    let server = server(&cert, false, &[]);
    let dtls = server.bound().dtls[0];
    let handle = server.handle();
    let mut c = Client::new(dtls, &client_context(&cert, &[]));
    assert!(!c.step().unwrap());
    let verify = c.receive(Duration::from_secs(5)).expect("HelloVerifyRequest");
    c.ssl.get_mut().inbound.push_back(verify);
    let _ = c.ssl.connect();
    let hello = c.ssl.get_mut().outbound[0].clone();
    c.flush();
    let flight = c.receive(Duration::from_secs(5)).expect("the server's flight");
    c.ssl.get_mut().inbound.push_back(flight);
    c.handshake().expect("handshake");
    let sock = c.sock.try_clone().unwrap();
    let mut turn = TurnClient::new(Io::Dtls(Box::new(c)), "alice", "alice-password");
    turn.allocate().expect("Allocate over DTLS");
    assert_eq!(block_on(handle.allocations()).len(), 1);

    sock.send(&hello).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        block_on(handle.allocations()).len(),
        1,
        "a late copy is no new handshake"
    );

    // Record header 13, handshake header 12, client_version 2: the random.
    let mut forged = hello.clone();
    for b in &mut forged[27..27 + 32] {
        *b ^= 0x5a;
    }
    sock.send(&forged).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(handle.dtls_sessions(), 1);
    assert_eq!(
        block_on(handle.allocations()).len(),
        1,
        "a reused cookie with a new random replaced the session"
    );
    turn.refresh(600).expect("the session still carries the allocation");
    server.shutdown().unwrap();
}

/// A client past the cookie exchange sends handshake fragments announcing
/// ~96 KB messages. OpenSSL would reserve each announced message in full
/// (up to its 100 KB default limit) and hold it until the handshake times
/// out; ternd caps handshake messages at 4 KB, so such a session ends at
/// once instead of pinning memory.
#[test]
fn handshake_fragments_announcing_huge_messages_end_the_session() {
    let cert = TestCert::new();
    let server = server(&cert, false, &[("tls.handshake_timeout", "60s")]);
    let dtls = server.bound().dtls[0];
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(half_open(dtls, &cert));
    }
    assert_eq!(server.handle().dtls_sessions(), 10);
    for c in &clients {
        for i in 0..20u64 {
            // A ClientKeyExchange fragment: msg_len 98304, msg_seq 2..11,
            // 16 bytes at offset 0, in an epoch-0 handshake record.
            let mut h = vec![16u8, 0x01, 0x80, 0x00];
            h.extend_from_slice(&(2 + (i % 10) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 0, 0, 16]);
            h.extend_from_slice(&[0xaa; 16]);
            let mut d = vec![22, 0xfe, 0xfd, 0, 0];
            d.extend_from_slice(&(1000 + i).to_be_bytes()[2..]);
            d.extend_from_slice(&(h.len() as u16).to_be_bytes());
            d.extend_from_slice(&h);
            c.sock.send(&d).unwrap();
        }
    }
    assert!(
        wait_for(Duration::from_secs(5), || server.handle().dtls_sessions() == 0),
        "sessions announcing oversized handshake messages still open: {}",
        server.handle().dtls_sessions()
    );
    server.shutdown().unwrap();
}

/// The session budgets of TLS apply: `stream.max_connections_per_ip`
/// refuses a second session from one source (counted as
/// `dtls_sessions_per_ip`, and told with a fatal alert), and
/// `stream.auth_timeout` closes a session that holds no allocation
/// (counted as `dtls_pre_auth_time`).
#[test]
fn dtls_sessions_are_budgeted_like_tls_connections() {
    let cert = TestCert::new();
    let server = server(
        &cert,
        false,
        &[("stream.max_connections_per_ip", "1"), ("stream.auth_timeout", "1s")],
    );
    let dtls = server.bound().dtls[0];
    let handle = server.handle();
    let mut first = Client::new(dtls, &client_context(&cert, &[]));
    first.handshake().expect("handshake");
    assert_eq!(first.binding(), first.sock.local_addr().unwrap());
    // Refused past the cookie exchange with a fatal internal_error alert in
    // epoch 0 (15 bytes), so the client stops at once instead of
    // retransmitting until its own timeout.
    let mut second = Client::new(dtls, &client_context(&cert, &[]));
    assert!(!second.step().unwrap());
    let verify = second.receive(Duration::from_secs(5)).expect("HelloVerifyRequest");
    second.ssl.get_mut().inbound.push_back(verify);
    assert!(!second.step().unwrap());
    let alert = second
        .receive(Duration::from_secs(2))
        .expect("an alert refusing the second session from 127.0.0.1");
    assert_eq!(alert.len(), 15, "{alert:?}");
    assert_eq!(
        (alert[0], &alert[3..5], &alert[11..]),
        (21, &[0, 0][..], &[0, 2, 2, 80][..]),
        "alert record, epoch 0, fatal internal_error: {alert:?}"
    );
    second.ssl.get_mut().inbound.push_back(alert);
    let e = second.step().expect_err("the client gives up on the alert");
    assert!(e.contains("internal error"), "{e}");
    assert_eq!(handle.exhaustions().get(Budget::DtlsSessionsPerIp), 1);
    assert!(
        wait_for(Duration::from_secs(3), || handle.dtls_sessions() == 0),
        "closed: no allocation within stream.auth_timeout"
    );
    assert_eq!(handle.exhaustions().get(Budget::DtlsPreAuthTime), 1);
    server.shutdown().unwrap();
}

/// A server with `stream.auth_timeout` = 1s and `stream.idle_timeout` =
/// 2s, and a session on it that held an allocation (now deleted) past
/// `stream.auth_timeout`.
fn session_that_held_an_allocation(cert: &TestCert) -> (ternd::Running, Client) {
    let server = server(
        cert,
        false,
        &[("stream.auth_timeout", "1s"), ("stream.idle_timeout", "2s")],
    );
    let handle = server.handle();
    let mut c = Client::new(server.bound().dtls[0], &client_context(cert, &[]));
    c.handshake().expect("handshake");
    let mut turn = TurnClient::new(Io::Dtls(Box::new(c)), "alice", "alice-password");
    turn.allocate().expect("Allocate over DTLS");
    // Held past stream.auth_timeout, so the sweep has seen it.
    std::thread::sleep(Duration::from_millis(1500));
    turn.refresh(0).expect("the allocation deleted");
    assert!(block_on(handle.allocations()).is_empty());
    let Io::Dtls(c) = turn.into_io() else { unreachable!() };
    (server, *c)
}

/// `stream.idle_timeout` for DTLS: a session that has held an allocation
/// is no longer under `stream.auth_timeout` (its Bindings keep it open past
/// that), and closes once it sends nothing for `stream.idle_timeout`,
/// counted as `dtls_idle_time`.
#[test]
fn a_dtls_session_that_held_an_allocation_lives_until_idle() {
    let cert = TestCert::new();
    let (server, mut c) = session_that_held_an_allocation(&cert);
    let handle = server.handle();
    for _ in 0..8 {
        assert_eq!(c.binding(), c.sock.local_addr().unwrap());
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(handle.dtls_sessions(), 1, "open while it talks, past auth_timeout");
    let quiet = Instant::now();
    assert!(
        wait_for(Duration::from_secs(5), || handle.dtls_sessions() == 0),
        "closed when idle"
    );
    assert!(quiet.elapsed() >= Duration::from_millis(1500), "{:?}", quiet.elapsed());
    assert_eq!(handle.exhaustions().get(Budget::DtlsIdleTime), 1);
    assert_eq!(handle.exhaustions().get(Budget::DtlsPreAuthTime), 0);
    server.shutdown().unwrap();
}

/// An off-path spoofer who knows the 5-tuple sends records that fail the
/// MAC: they do not keep an idle session open past `stream.idle_timeout`
/// (sent here from the client's own socket, as a spoofer would appear).
#[test]
fn records_that_fail_the_mac_do_not_keep_a_dtls_session_alive() {
    let cert = TestCert::new();
    let (server, c) = session_that_held_an_allocation(&cert);
    let handle = server.handle();
    let quiet = Instant::now();
    // Application data records in epoch 1 with garbage for ciphertext,
    // every 100 ms for at most 6 s.
    let mut closed = false;
    for i in 0..60u64 {
        let mut d = vec![23, 0xfe, 0xfd, 0, 1];
        d.extend_from_slice(&(1000 + i).to_be_bytes()[2..]);
        d.extend_from_slice(&48u16.to_be_bytes());
        d.extend_from_slice(&[0x5a; 48]);
        c.sock.send(&d).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        if handle.dtls_sessions() == 0 {
            closed = true;
            break;
        }
    }
    assert!(closed, "junk records kept the session open for {:?}", quiet.elapsed());
    assert!(quiet.elapsed() >= Duration::from_millis(1500), "{:?}", quiet.elapsed());
    assert_eq!(handle.exhaustions().get(Budget::DtlsIdleTime), 1);
    server.shutdown().unwrap();
}

/// A reloaded certificate (SIGHUP) is presented by the sessions that start
/// afterwards; an established session keeps working.
#[test]
fn a_reloaded_certificate_serves_new_dtls_sessions() {
    let (cert1, cert2) = (TestCert::new(), TestCert::new());
    let server = server(&cert1, false, &[]);
    let dtls = server.bound().dtls[0];
    let handle = server.handle();
    let mut old = Client::new(dtls, &client_context(&cert1, &[]));
    old.handshake().expect("handshake with the first certificate");
    let mut config = handle.config();
    config.tls.cert_file = cert2.cert_file.clone();
    config.tls.key_file = cert2.key_file.clone();
    block_on(handle.reload(&config)).expect("reload");
    let mut new = Client::new(dtls, &client_context(&cert2, &[]));
    new.handshake().expect("a new session presents the new certificate");
    let mut stale = Client::new(dtls, &client_context(&cert1, &[]));
    assert!(stale.handshake().is_err(), "the first certificate is no longer served");
    assert_eq!(
        old.binding(),
        old.sock.local_addr().unwrap(),
        "the old session lives on"
    );
    server.shutdown().unwrap();
}

/// RFC 7443 §4 on DTLS: "stun.turn" and "stun.nat-discovery" are
/// negotiated, an offer of only unknown protocols is refused in the
/// handshake (RFC 7301 §3.2), no offer at all is accepted.
#[test]
fn rfc7443_alpn_on_dtls_listeners() {
    let cert = TestCert::new();
    let server = server(&cert, false, &[]);
    let dtls = server.bound().dtls[0];
    for p in ["stun.turn", "stun.nat-discovery"] {
        let mut c = Client::new(dtls, &client_context(&cert, &["h2", p]));
        c.handshake().unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(c.ssl.ssl().selected_alpn_protocol(), Some(p.as_bytes()));
        assert_eq!(c.binding(), c.sock.local_addr().unwrap(), "{p}");
    }
    let mut unknown = Client::new(dtls, &client_context(&cert, &["h2", "webrtc"]));
    let e = unknown.handshake().expect_err("an unknown protocol is refused");
    assert!(e.contains("no application protocol"), "{e}");
    let mut none = Client::new(dtls, &client_context(&cert, &[]));
    none.handshake().expect("no ALPN is accepted");
    assert_eq!(none.ssl.ssl().selected_alpn_protocol(), None);
    assert_eq!(none.binding(), none.sock.local_addr().unwrap());
    let stats = server.shutdown().unwrap();
    assert_eq!(
        stats.drops.get(proto::DropReason::DtlsHandshake),
        1,
        "the refused handshake is counted"
    );
}

/// A real first ClientHello (no cookie) from OpenSSL.
fn first_client_hello(cert: &TestCert, server: SocketAddr) -> Vec<u8> {
    let mut c = Client::new(server, &client_context(cert, &["stun.turn"]));
    assert_eq!(c.ssl.connect().unwrap_err().code(), ErrorCode::WANT_READ);
    c.ssl.get_mut().outbound.remove(0)
}

/// Sends `hello` from each of `socks` and reads what comes back: the
/// sizes of the answers (one each expected).
fn flood(socks: &[UdpSocket], server: SocketAddr, hello: &[u8]) -> Vec<usize> {
    for s in socks {
        s.send_to(hello, server).unwrap();
    }
    let mut sizes = Vec::new();
    let mut buf = [0u8; 2048];
    for s in socks {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            // A HelloVerifyRequest: handshake record, message type 3.
            assert_eq!((buf[0], buf[13]), (22, 3), "a HelloVerifyRequest");
            sizes.push(n);
        }
    }
    sizes
}

/// RFC 6347 §4.2.1: ClientHellos without a cookie (as from spoofed
/// sources: many source ports that never answer) get a HelloVerifyRequest
/// no larger than themselves and leave no session behind; an honest client
/// relays through the same listener meanwhile with no loss.
#[test]
fn rfc6347_4_2_1_a_hello_flood_leaves_no_sessions_and_no_amplification() {
    let cert = TestCert::new();
    let server = server(&cert, true, &[]);
    let dtls = server.bound().dtls[0];
    let hello = first_client_hello(&cert, dtls);
    let socks: Vec<UdpSocket> = (0..200).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let sizes = flood(&socks, dtls, &hello);
    assert_eq!(sizes.len(), socks.len(), "every hello answered");
    let largest = sizes.iter().max().copied().unwrap_or(0);
    assert!(
        largest <= hello.len(),
        "HelloVerifyRequest {largest} B > ClientHello {} B",
        hello.len()
    );
    eprintln!(
        "{} ClientHellos of {} B answered by HelloVerifyRequests of at most {largest} B",
        sizes.len(),
        hello.len()
    );
    assert_eq!(server.handle().dtls_sessions(), 0);
    assert_eq!(metric(server.bound().http[0], "ternd_dtls_sessions"), 0);

    let (Some(peer_bin), Some(_)) = (tool("turnutils_peer"), tool("turnutils_uclient")) else {
        return;
    };
    let peer = Peer::start(&peer_bin);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // The flood goes on while uclient runs (bounded: 100 rounds).
        s.spawn(|| {
            for _ in 0..100 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                for sock in &socks {
                    let _ = sock.send_to(&hello, dtls);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let (sent, recv, lost, text) = uclient_over_dtls(dtls, &peer);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(sent >= 120, "uclient sent its messages\n{text}");
        assert_eq!((recv, lost), (sent, 0), "{text}");
    });
    // Only uclient's sessions were made (3 clients, a few tries each).
    assert!(
        server.handle().dtls_sessions() <= 12,
        "{}",
        server.handle().dtls_sessions()
    );
    server.shutdown().unwrap();
}

/// RFC 6347 §4.2.1 then `tls.handshake_timeout`: a client that proves its
/// address and then stops mid-handshake holds a session only until the
/// timeout; the drop is counted as an exhausted budget.
#[test]
fn rfc6347_a_client_that_stops_mid_handshake_is_dropped_after_the_timeout() {
    let cert = TestCert::new();
    let server = server(&cert, false, &[("tls.handshake_timeout", "300ms")]);
    let _c = half_open(server.bound().dtls[0], &cert);
    assert_eq!(server.handle().dtls_sessions(), 1);
    let started = Instant::now();
    assert!(
        wait_for(Duration::from_secs(5), || server.handle().dtls_sessions() == 0),
        "the half-open session is dropped"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(server.handle().exhaustions().get(Budget::DtlsHandshakeTime), 1);
    server.shutdown().unwrap();
}

/// The iceServers document hands out `turns:…?transport=udp` only when a
/// DTLS listener exists; the TLS URL stays as it was (Chromium takes any
/// `turns:` URL as TLS over TCP).
#[test]
fn rfc7350_ice_servers_offer_turns_over_udp_only_with_a_dtls_listener() {
    let cert = TestCert::new();
    let urls = |server: &ternd::Running| {
        let r = http(server.bound().http[0], "GET", "/api/ice-servers", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["iceServers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["urls"].as_array().unwrap().clone())
            .map(|u| u.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let with = server(&cert, true, &[]);
    let got = urls(&with);
    let (tls, dtls) = (with.bound().tls[0].port(), with.bound().dtls[0].port());
    assert!(
        got.iter()
            .any(|u| u.ends_with(&format!(":{tls}?transport=tcp")) && u.starts_with("turns:")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|u| u.ends_with(&format!(":{dtls}?transport=udp")) && u.starts_with("turns:")),
        "{got:?}"
    );
    with.shutdown().unwrap();
    let without = start(&turn_config(Some(&cert), &[("http.listen", "127.0.0.1:0")]));
    let got = urls(&without);
    assert!(got.iter().any(|u| u.starts_with("turns:")), "{got:?}");
    assert!(
        !got.iter()
            .any(|u| u.starts_with("turns:") && u.ends_with("?transport=udp")),
        "{got:?}"
    );
    without.shutdown().unwrap();
}

/// TLS (TCP) and DTLS (UDP) on one port number, as coturn's 5349: a
/// browser that takes `turns:…?transport=udp` as TLS over TCP (Chromium)
/// reaches the TLS listener on the port the DTLS URL names.
#[test]
fn rfc7350_tls_and_dtls_share_one_port_number() {
    let cert = TestCert::new();
    let port = common::coturn::free_port();
    let addr = format!("127.0.0.1:{port}");
    let server = start(&turn_config(
        Some(&cert),
        &[("listen.tls", addr.as_str()), ("listen.dtls", addr.as_str())],
    ));
    assert_eq!(server.bound().tls[0].port(), port);
    assert_eq!(server.bound().dtls[0].port(), port);
    let mut dtls = Client::new(server.bound().dtls[0], &client_context(&cert, &[]));
    dtls.handshake().expect("DTLS on the shared port");
    assert_eq!(dtls.binding(), dtls.sock.local_addr().unwrap());
    let mut tls = TurnClient::new(
        Io::tls(server.bound().tls[0], cert.client_config()),
        "alice",
        "alice-password",
    );
    tls.allocate().expect("TLS on the shared port");
    server.shutdown().unwrap();
}

/// `ternd probe turns:…?transport=udp`: Binding, Allocate and the relay
/// round trip over DTLS, the certificate verified with --ca.
#[test]
fn rfc7350_probe_checks_a_dtls_listener() {
    let cert = TestCert::new();
    let server = server(&cert, false, &[]);
    let url = format!("turns:127.0.0.1:{}?transport=udp", server.bound().dtls[0].port());
    let out = common::process::output(
        Command::new(env!("CARGO_BIN_EXE_ternd")).args([
            "probe",
            "--ca",
            &cert.cert_file.display().to_string(),
            "--user",
            "alice",
            "--password",
            "alice-password",
            &url,
        ]),
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "PASS  binding dtls",
        "PASS  allocate dtls",
        "PASS  relay round trip dtls",
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(line)), "`{line}`\n{stdout}");
    }
    assert!(stdout.contains("alpn stun.turn"), "{stdout}");
    server.shutdown().unwrap();
}
