//! Hostile TURN-over-TCP clients (issue 12 items 3 and 9) against the
//! in-process server over real loopback sockets: clients that never read,
//! clients that never authenticate, and one source taking every slot. Each
//! is held to its budget (README: Hardening) and counted, and honest
//! clients keep being served meanwhile.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::http::metric;
use common::turn::{Io, TurnClient};
use common::*;
use ternd::budget::Budget;

/// The server's own allowance (conn_out.rs EMPTY_QUEUE_ALLOWANCE): a
/// client that has read everything may get one message past the total.
const EMPTY_QUEUE_ALLOWANCE: usize = 4096;

/// This process's resident memory (the server runs in it).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Memory of every TCP socket of the host (/proc/net/sockstat, pages):
/// kernel memory, which RSS does not show. Printed only, as other processes
/// share it.
fn tcp_kernel_bytes() -> usize {
    let stat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let pages = stat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "mem").nth(1))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A TCP connection to `server` from `source` (any port), with a receive
/// buffer of `rcvbuf` bytes when given (so a client that never reads fills
/// up after little data).
fn connect_from(source: &str, server: SocketAddr, rcvbuf: Option<usize>) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n)?;
    }
    s.bind(&format!("{source}:0").parse::<SocketAddr>().unwrap().into())?;
    s.connect_timeout(&server.into(), Duration::from_secs(5))?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// One Binding over `s`; its XOR-MAPPED-ADDRESS is `s`'s own address.
fn binding_on(s: &mut TcpStream) {
    let req = binding_request();
    s.write_all(&req.raw).unwrap();
    assert_eq!(mapped_address(&req, &read_stun(s)), s.local_addr().unwrap());
}

/// True once the server has closed `s` (EOF or reset); false if it is still
/// open after the read timeout. Anything the server sent is skipped.
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let until = Instant::now() + within;
    let mut b = [0u8; 4096];
    while Instant::now() < until {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// `n` clients (each on a connection from `connect`) that allocate and
/// permit one peer, then never read again; returns the peer's socket, the
/// clients (to keep their connections open) and their relay addresses.
fn allocations_that_never_read(n: usize, connect: impl Fn() -> Io) -> (UdpSocket, Vec<TurnClient>, Vec<SocketAddr>) {
    let peer = UdpSocket::bind("127.0.0.2:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut clients = Vec::with_capacity(n);
    let mut relays = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = TurnClient::new(connect(), "alice", "alice-password");
        relays.push(c.allocate().expect("allocate"));
        c.create_permission(&[peer_addr]).expect("permission");
        clients.push(c);
    }
    (peer, clients, relays)
}

/// Item 3: TCP allocations whose clients never read, with a peer flooding
/// every one of them. What the server queues for them stays within
/// stream.max_queued_bytes_total, its memory grows by no more than that
/// (plus a margin), every one is disconnected by the write-stall timeout,
/// and an honest client's Binding succeeds during the attack.
#[test]
fn clients_that_never_read_hold_only_the_queue_budget_and_are_cut_off() {
    const CLIENTS: usize = 1000;
    const TOTAL: usize = 4 << 20;
    const STALL: Duration = Duration::from_secs(2);
    let total = TOTAL.to_string();
    let server = start(&turn_config(
        None,
        &[
            ("server.shards", "2"),
            ("stream.max_connections_per_ip", "5000"),
            ("turn.max_allocations_per_user", "5000"),
            ("turn.max_allocations_per_ip", "5000"),
            ("turn.unauthenticated_rate", "0"),
            ("stream.max_queued_bytes", "32768"),
            ("stream.max_queued_bytes_total", &total),
            ("stream.write_stall_timeout", "2s"),
            ("stream.auth_timeout", "60s"),
        ],
    ));
    let addr = server.bound().tcp[0];
    let handle = server.handle();
    let (peer, clients, relays) = allocations_that_never_read(CLIENTS, || {
        Io::Tcp(connect_from("127.0.0.1", addr, Some(4096)).expect("connect"))
    });
    assert_eq!(handle.open_connections(), CLIENTS);
    let (rss_before, kernel_before) = (rss_bytes(), tcp_kernel_bytes());

    // The peer floods every relay round-robin until every client was cut
    // off for not reading (bounded in rounds and time).
    let datagram = [0x5a_u8; 1000];
    let started = Instant::now();
    let (mut max_queued, mut max_rss, mut max_kernel, mut honest_checked) = (0, 0, 0, false);
    for round in 0..2000 {
        for r in &relays {
            let _ = peer.send_to(&datagram, r);
        }
        max_queued = max_queued.max(handle.stream_queued_bytes());
        max_rss = max_rss.max(rss_bytes());
        max_kernel = max_kernel.max(tcp_kernel_bytes());
        if !honest_checked && max_queued >= TOTAL / 2 {
            // The queues are full: an honest client is still answered.
            let mut honest = connect_from("127.0.0.1", addr, None).unwrap();
            binding_on(&mut honest);
            honest_checked = true;
        }
        if handle.exhaustions().get(Budget::StreamWriteStall) >= CLIENTS as u64
            || started.elapsed() > Duration::from_secs(30)
        {
            eprintln!("flood: {round} rounds in {:?}", started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let growth = max_rss.saturating_sub(rss_before);
    eprintln!(
        "{CLIENTS} non-reading clients: max queued {max_queued} bytes (budget {TOTAL}), RSS {} MiB -> max {} MiB \
         (+{} MiB), host TCP socket memory {} MiB -> max {} MiB",
        rss_before >> 20,
        max_rss >> 20,
        growth >> 20,
        kernel_before >> 20,
        max_kernel >> 20,
    );
    assert!(honest_checked, "the flood filled the queues (max queued {max_queued})");
    assert!(
        max_queued <= TOTAL + CLIENTS * EMPTY_QUEUE_ALLOWANCE,
        "queued {max_queued} bytes, over the budget {TOTAL}"
    );
    assert!(
        growth <= TOTAL + CLIENTS * EMPTY_QUEUE_ALLOWANCE + (48 << 20),
        "memory grew by {} MiB",
        growth >> 20
    );
    // Every one was disconnected for not reading (the flood ended once the
    // last one was, or times out), and the budget counted each.
    assert!(
        wait_for(STALL + Duration::from_secs(3), || handle.open_connections() == 0),
        "{} stalled connections still open",
        handle.open_connections()
    );
    assert!(handle.exhaustions().get(Budget::StreamWriteStall) >= CLIENTS as u64);
    assert!(handle.exhaustions().get(Budget::StreamQueuedBytesTotal) > 0);
    assert!(
        wait_for(Duration::from_secs(5), || handle.stream_queued_bytes() == 0),
        "closed connections give their bytes back"
    );
    // Served as ever afterwards.
    binding_on(&mut connect_from("127.0.0.1", addr, None).unwrap());
    drop(clients);
    server.shutdown().unwrap();
}

/// Item 9: a connection that keeps sending Binding requests but never
/// authenticates is closed after stream.auth_timeout, while an allocation's
/// connection lives on past it.
#[test]
fn a_connection_that_never_authenticates_is_closed_after_the_auth_timeout() {
    let cert = TestCert::new();
    let server = start(&turn_config(
        Some(&cert),
        &[("stream.auth_timeout", "1s"), ("server.shards", "1")],
    ));
    let addr = server.bound().tcp[0];
    let mut turn = TurnClient::new(Io::tcp(addr), "alice", "alice-password");
    turn.allocate().expect("allocate");

    let mut tcp = connect_from("127.0.0.1", addr, None).unwrap();
    let lived = bindings_until_closed(&mut tcp);
    assert!(
        lived > Duration::from_millis(800) && lived < Duration::from_secs(3),
        "a busy unauthenticated TCP connection is closed after the auth timeout (lived {lived:?})"
    );
    // Over TLS the same, the handshake included.
    let mut tls = Io::tls(server.bound().tls[0], cert.client_config());
    let Io::Tls(tls) = &mut tls else {
        unreachable!("Io::tls")
    };
    let lived = bindings_until_closed(&mut **tls);
    assert!(
        lived > Duration::from_millis(800) && lived < Duration::from_secs(3),
        "a busy unauthenticated TLS connection is closed after the auth timeout (lived {lived:?})"
    );
    assert_eq!(server.handle().exhaustions().get(Budget::StreamPreAuthTime), 2);
    // The authenticated connection outlives the auth timeout (twice over).
    assert!(turn.refresh(600).is_ok(), "the allocation's connection is still served");
    server.shutdown().unwrap();
}

/// Sends a Binding every 100 ms on `s`, reading each answer, until the
/// server hangs up (at most 40 times); returns how long that took.
fn bindings_until_closed(s: &mut (impl Read + Write)) -> Duration {
    let started = Instant::now();
    for _ in 0..40 {
        let req = binding_request();
        let mut head = [0u8; 20];
        if s.write_all(&req.raw).and_then(|()| s.flush()).is_err() || s.read_exact(&mut head).is_err() {
            return started.elapsed();
        }
        let mut body = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
        if s.read_exact(&mut body).is_err() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not closed after 40 Bindings ({:?})", started.elapsed());
}

/// Item 9: the per-source cap (stream.max_connections_per_ip) with two
/// loopback sources: one is capped, the other still served, and the refusal
/// is counted.
#[test]
fn one_source_cannot_take_every_connection_slot() {
    let server = start(&test_config(
        None,
        &[
            ("stream.max_connections_per_ip", "3"),
            ("stream.max_connections", "100"),
            ("server.shards", "1"),
            ("http.listen", "127.0.0.1:0"),
        ],
    ));
    let addr = server.bound().tcp[0];
    let handle = server.handle();
    let metrics = server.bound().http[0];
    const PER_IP: &str = "ternd_budget_exhausted_total{budget=\"stream_connections_per_ip\"}";
    assert_eq!(metric(metrics, PER_IP), 0);
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| connect_from("127.0.0.2", addr, None).expect("127.0.0.2"))
        .collect();
    for s in held.iter_mut() {
        binding_on(s);
    }
    let mut refused = connect_from("127.0.0.2", addr, None).expect("connect");
    assert!(
        closed_by_server(&mut refused, Duration::from_secs(3)),
        "a fourth connection from 127.0.0.2 is closed"
    );
    assert_eq!(metric(metrics, PER_IP), 1, "the refusal is counted on /metrics");
    assert_eq!(handle.exhaustions().get(Budget::StreamConnections), 0);
    // Another source is served meanwhile.
    let mut other = connect_from("127.0.0.3", addr, None).expect("127.0.0.3");
    binding_on(&mut other);
    assert_eq!(handle.open_connections(), 4);
    assert_eq!(metric(metrics, "ternd_stream_connections"), 4);
    assert_eq!(metric(metrics, "ternd_stream_queued_bytes"), 0, "everything was read");
    server.shutdown().unwrap();
}

/// Item 3 over TLS: what rustls buffers is capped too, so TLS clients that
/// never read are held to the same budgets and cut off by the same timeout.
#[test]
fn tls_clients_that_never_read_are_cut_off_too() {
    const CLIENTS: usize = 20;
    let cert = TestCert::new();
    let server = start(&turn_config(
        Some(&cert),
        &[
            ("server.shards", "1"),
            ("stream.max_queued_bytes", "32768"),
            ("stream.write_stall_timeout", "2s"),
        ],
    ));
    let tls = server.bound().tls[0];
    let handle = server.handle();
    let (peer, clients, relays) = allocations_that_never_read(CLIENTS, || Io::tls(tls, cert.client_config()));
    let datagram = [0xa5_u8; 1000];
    let started = Instant::now();
    let mut max_queued = 0;
    while handle.exhaustions().get(Budget::StreamWriteStall) < CLIENTS as u64
        && started.elapsed() < Duration::from_secs(20)
    {
        for r in &relays {
            let _ = peer.send_to(&datagram, r);
        }
        max_queued = max_queued.max(handle.stream_queued_bytes());
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        max_queued <= CLIENTS * 32768,
        "queued {max_queued}, over {CLIENTS} x stream.max_queued_bytes"
    );
    assert_eq!(handle.exhaustions().get(Budget::StreamWriteStall), CLIENTS as u64);
    assert!(wait_for(Duration::from_secs(3), || handle.open_connections() == 0));
    drop(clients);
    server.shutdown().unwrap();
}

/// The write-stall timeout spares an honest client that reads slowly but
/// steadily: flooded far beyond what it reads (its queue stays full and the
/// excess is dropped), it keeps its connection for several timeouts.
#[test]
fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
    let server = start(&turn_config(
        None,
        &[
            ("server.shards", "1"),
            ("stream.max_queued_bytes", "32768"),
            ("stream.write_stall_timeout", "1s"),
        ],
    ));
    let addr = server.bound().tcp[0];
    let handle = server.handle();
    let (peer, mut clients, relays) = allocations_that_never_read(1, || {
        Io::Tcp(connect_from("127.0.0.1", addr, Some(4096)).expect("connect"))
    });
    let Io::Tcp(s) = &mut clients[0].io else {
        unreachable!("Io::Tcp")
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let datagram = [0x33_u8; 1000];
    let mut read = 0;
    let mut buf = [0u8; 2048];
    // 3.5 s (three and a half timeouts): 100 kB/s offered, 2 kB/100 ms read.
    for _ in 0..35 {
        for _ in 0..10 {
            let _ = peer.send_to(&datagram, relays[0]);
        }
        read += s.read(&mut buf).expect("still served");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(read >= 35 * 1000, "read {read} bytes");
    assert!(
        handle.exhaustions().get(Budget::StreamQueuedBytes) > 0,
        "the queue was full (what it could not take was dropped)"
    );
    assert_eq!(handle.exhaustions().get(Budget::StreamWriteStall), 0);
    assert_eq!(handle.open_connections(), 1);
    server.shutdown().unwrap();
}
