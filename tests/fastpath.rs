//! Issue 14: the XDP fast path end to end, as root, in namespaces the tests
//! make: ChannelData relayed in the kernel both ways (IPv4 and IPv6, native
//! XDP on veth and generic on loopback) with padding, odd and maximum
//! lengths; the kernel's counters in /metrics and the close log; the
//! stateless Binding responder; everything else still served by userspace;
//! the kernel stopping when the core stops; the program gone after SIGTERM,
//! SIGKILL and a reload that turns it off.
//!
//! Skipped with a printed reason where BPF cannot load; under CI=true a
//! missing clang/libbpf at build time fails (tests/run.sh installs them).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::turn::{Io, Relayed, TurnClient};
use common::xdp_lab::{prerequisites, Lab, Ternd, Topology};

/// ternd started with the fast path in `mode`, or None when the test is
/// skipped (BPF cannot load here) or fails (not built, under CI).
fn start(lab: &Lab, mode: &str, extra: &str) -> Option<Ternd> {
    match Ternd::start(lab, &lab.config(mode, extra)) {
        Ok(t) => Some(t),
        Err(log) if log.contains("was not built") => {
            common::missing("the XDP fast path (clang and libbpf-dev when ternd was built)");
            None
        }
        Err(log) if log.contains("cannot attach") || log.contains("refused the XDP program") => {
            eprintln!("SKIPPED: BPF cannot load here: {log}");
            None
        }
        Err(log) => panic!("ternd did not start:\n{log}"),
    }
}

fn mode_of(topology: Topology) -> &'static str {
    match topology {
        Topology::Veth => "xdp",
        Topology::Loopback => "xdp-generic",
    }
}

/// Both directions' relayed bytes and the kernel's own packet counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counters {
    bytes_to_peer: u64,
    bytes_to_client: u64,
    kernel_to_peer: u64,
    kernel_to_client: u64,
}

fn counters(t: &Ternd) -> Counters {
    Counters {
        bytes_to_peer: t.metric("ternd_relayed_bytes_total{direction=\"to_peer\"}"),
        bytes_to_client: t.metric("ternd_relayed_bytes_total{direction=\"to_client\"}"),
        kernel_to_peer: t.metric("ternd_fastpath_relayed_packets_total{direction=\"to_peer\"}"),
        kernel_to_client: t.metric("ternd_fastpath_relayed_packets_total{direction=\"to_client\"}"),
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + len) as u8).collect()
}

fn set_timeout(c: &TurnClient, d: Duration) {
    if let Io::Udp(s, _) = &c.io {
        s.set_read_timeout(Some(d)).unwrap();
    }
}

/// ChannelData with `pad` bytes of (non-zero) padding to the peer, and the
/// same bytes back from the peer; asserts both arrive exactly.
fn exchange(c: &mut TurnClient, peer: &UdpSocket, relay: SocketAddr, channel: u16, data: &[u8], pad: usize) {
    let mut frame = channel.to_be_bytes().to_vec();
    frame.extend_from_slice(&(data.len() as u16).to_be_bytes());
    frame.extend_from_slice(data);
    frame.extend(std::iter::repeat_n(0xA5, pad));
    c.io.send(&frame);
    let mut buf = [0u8; 2048];
    let (n, from) = peer
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("the peer gets {} bytes (pad {pad}): {e}", data.len()));
    assert_eq!(from, relay, "from the relay address");
    assert_eq!(&buf[..n], data, "the payload, without header or padding");
    peer.send_to(data, relay).unwrap();
    let got = c.io.recv().expect("the client gets the peer's datagram");
    assert_eq!(&got[..4], &frame[..4], "ChannelData header");
    assert_eq!(&got[4..], data, "the payload, nothing after it");
}

/// True if nothing gets through the relay either way within a moment.
fn relay_stopped(c: &mut TurnClient, peer: &UdpSocket, relay: SocketAddr, channel: u16) -> bool {
    let mut frame = channel.to_be_bytes().to_vec();
    frame.extend_from_slice(&4u16.to_be_bytes());
    frame.extend_from_slice(b"gone");
    c.io.send(&frame);
    peer.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 64];
    let to_peer = peer.recv_from(&mut buf).is_ok();
    peer.send_to(b"gone", relay).unwrap();
    set_timeout(c, Duration::from_millis(500));
    let to_client = c.io.recv().is_some();
    !to_peer && !to_client
}

fn relay_round_trips(topology: Topology, v6: bool) {
    if !prerequisites() {
        return;
    }
    let lab = Lab::new(topology);
    let Some(ternd) = start(&lab, mode_of(topology), "") else {
        return;
    };
    assert_eq!(lab.attached(), lab.interfaces.len(), "one program per interface");
    let mut c = lab.client(v6);
    let relay = lab.allocate(&mut c, v6);
    let peer = lab.peer_socket(v6);
    c.channel_bind(0x4000, peer.local_addr().unwrap())
        .expect("channel bind");
    // The first exchange may go through userspace while the server learns
    // its neighbours' MAC addresses (the kernel passes until it knows them).
    exchange(&mut c, &peer, relay, 0x4000, b"warm-up", 0);
    let before = counters(&ternd);

    // Padding (RFC 8656 §12.5 allows it over UDP too), odd lengths, empty,
    // and the largest datagram the 1500-byte links carry.
    let max = if v6 { 1500 - 40 - 8 - 4 } else { 1500 - 20 - 8 - 4 };
    let cases = [
        (0, 0),
        (1, 3),
        (2, 2),
        (3, 1),
        (5, 0),
        (7, 1),
        (100, 0),
        (333, 3),
        (max - 3, 3),
        (max, 0),
    ];
    let mut sent = 0;
    for (len, pad) in cases {
        exchange(&mut c, &peer, relay, 0x4000, &payload(len), pad);
        sent += len as u64;
    }
    let after = counters(&ternd);
    let n = cases.len() as u64;
    assert_eq!(
        (
            after.kernel_to_peer - before.kernel_to_peer,
            after.kernel_to_client - before.kernel_to_client
        ),
        (n, n),
        "every datagram relayed in the kernel, both ways"
    );
    assert_eq!(
        (
            after.bytes_to_peer - before.bytes_to_peer,
            after.bytes_to_client - before.bytes_to_client
        ),
        (sent, sent),
        "the kernel's bytes reach /metrics exactly"
    );

    // Refresh(0) deletes the allocation: the kernel stops with the core.
    assert_eq!(c.refresh(0), Ok(0));
    assert!(relay_stopped(&mut c, &peer, relay, 0x4000), "relaying after Refresh(0)");
    let total = sent + b"warm-up".len() as u64;
    let line = format!(
        "to_peer_bytes={total} to_peer_packets={} to_client_bytes={total}",
        n + 1
    );
    assert!(
        common::wait_for(Duration::from_secs(5), || ternd.log_text().contains(&line)),
        "the close log counts the kernel's share ({line}):\n{}",
        ternd.log_text()
    );
}

#[test]
fn channel_data_is_relayed_in_native_xdp_over_ipv4() {
    relay_round_trips(Topology::Veth, false);
}

#[test]
fn channel_data_is_relayed_in_native_xdp_over_ipv6() {
    relay_round_trips(Topology::Veth, true);
}

#[test]
fn channel_data_is_relayed_in_generic_xdp_on_loopback_over_ipv4() {
    relay_round_trips(Topology::Loopback, false);
}

#[test]
fn channel_data_is_relayed_in_generic_xdp_on_loopback_over_ipv6() {
    relay_round_trips(Topology::Loopback, true);
}

/// Send/Data indications, peers without a channel and a second allocation
/// closed by an operator all go through (or stop in) userspace as before.
#[test]
fn indications_unbound_peers_and_closed_allocations_use_the_userspace_path() {
    if !prerequisites() {
        return;
    }
    let lab = Lab::new(Topology::Veth);
    let Some(ternd) = start(&lab, "xdp", "") else {
        return;
    };
    let mut c = lab.client(false);
    let relay = c.allocate().expect("allocate");
    let bound = lab.peer_socket(false);
    let unbound = lab.peer_socket(false);
    c.channel_bind(0x4001, bound.local_addr().unwrap()).unwrap();
    c.create_permission(&[unbound.local_addr().unwrap()]).unwrap();
    exchange(&mut c, &bound, relay, 0x4001, b"warm-up", 0);
    let before = counters(&ternd);
    let mut buf = [0u8; 256];
    for peer in [&bound, &unbound] {
        c.send_indication(peer.local_addr().unwrap(), b"by indication");
        let (n, from) = peer.recv_from(&mut buf).expect("a Send indication reaches the peer");
        assert_eq!((&buf[..n], from), (&b"by indication"[..], relay));
    }
    unbound.send_to(b"unbound peer", relay).unwrap();
    assert_eq!(
        c.recv_relayed(),
        Some(Relayed::Indication(
            unbound.local_addr().unwrap(),
            b"unbound peer".to_vec()
        )),
        "a peer without a channel comes back as a Data indication"
    );
    let after = counters(&ternd);
    assert_eq!(
        after.kernel_to_peer, before.kernel_to_peer,
        "indications are not kernel work"
    );
    assert_eq!(after.kernel_to_client, before.kernel_to_client);
    assert_eq!(
        after.bytes_to_peer - before.bytes_to_peer,
        2 * b"by indication".len() as u64
    );
    assert_eq!(
        after.bytes_to_client - before.bytes_to_client,
        b"unbound peer".len() as u64
    );
    // The channel still relays in the kernel next to all that.
    exchange(&mut c, &bound, relay, 0x4001, b"still fast", 1);
    assert_eq!(counters(&ternd).kernel_to_peer, before.kernel_to_peer + 1);

    // The admin view counts the kernel's share; an operator's close stops it.
    let client = c.io.local_addr().to_string();
    let admin = move |method: &'static str, path: String| {
        let headers: &[(&str, &str)] = &[("X-Ternd-Admin", "1")];
        common::http::http(common::xdp_lab::HTTP.parse().unwrap(), method, &path, headers).json()
    };
    let list = common::xdp_lab::in_ns(&lab.server, move || admin("GET", "/admin/allocations".into()));
    let mine = &list["allocations"][0];
    assert_eq!(mine["client"], client.as_str());
    let expected = b"warm-up".len() + 2 * b"by indication".len() + b"still fast".len();
    assert_eq!(mine["to_peer_bytes"], expected as u64, "{list}");
    let closed = common::xdp_lab::in_ns(&lab.server, move || {
        admin("POST", format!("/admin/close?client={client}"))
    });
    assert_eq!(closed["closed"], 1);
    assert!(
        relay_stopped(&mut c, &bound, relay, 0x4001),
        "relaying after an operator's close"
    );
}

/// An allocation with a bandwidth cap is enforced in userspace: the kernel
/// never relays for it, so the cap holds exactly as without the fast path.
#[test]
fn bandwidth_capped_allocations_stay_in_userspace() {
    if !prerequisites() {
        return;
    }
    let lab = Lab::new(Topology::Veth);
    let Some(ternd) = start(&lab, "xdp", "bandwidth_limit = \"10MB\"") else {
        return;
    };
    let mut c = lab.client(false);
    let relay = c.allocate().expect("allocate");
    let peer = lab.peer_socket(false);
    c.channel_bind(0x4000, peer.local_addr().unwrap()).unwrap();
    for len in [1, 10, 100] {
        exchange(&mut c, &peer, relay, 0x4000, &payload(len), 0);
    }
    let after = counters(&ternd);
    assert_eq!((after.kernel_to_peer, after.kernel_to_client), (0, 0));
    assert_eq!((after.bytes_to_peer, after.bytes_to_client), (111, 111));
}

/// A Binding request with no attributes but FINGERPRINT, and one without
/// even that, answered by the kernel (checked by the independent `stun`
/// crate), over IPv4 and IPv6.
#[test]
fn plain_binding_requests_are_answered_in_the_kernel() {
    use stun::message::{Getter, Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
    use stun::xoraddr::XorMappedAddress;

    if !prerequisites() {
        return;
    }
    let lab = Lab::new(Topology::Veth);
    let Some(ternd) = start(&lab, "xdp", "") else {
        return;
    };
    let mut answered = 0;
    for v6 in [false, true] {
        for fingerprint in [false, true] {
            let c = lab.client(v6);
            let Io::Udp(sock, server) = &c.io else { unreachable!() };
            let mut m = Message::new();
            m.build(&[Box::new(stun::agent::TransactionId::new()), Box::new(BINDING_REQUEST)])
                .unwrap();
            if fingerprint {
                stun::fingerprint::FINGERPRINT.add_to(&mut m).unwrap();
            }
            sock.send_to(&m.raw, server).unwrap();
            let mut buf = [0u8; 1500];
            let (n, from) = sock.recv_from(&mut buf).expect("a Binding response");
            assert_eq!(from, *server);
            let r = common::turn::decode(&buf[..n]);
            assert_eq!(r.typ, BINDING_SUCCESS);
            assert_eq!(r.transaction_id, m.transaction_id);
            let mut xma = XorMappedAddress::default();
            xma.get_from(&r).expect("XOR-MAPPED-ADDRESS");
            assert_eq!(SocketAddr::new(xma.ip, xma.port), sock.local_addr().unwrap());
            assert_eq!(r.contains(stun::attributes::ATTR_FINGERPRINT), fingerprint);
            if fingerprint {
                stun::fingerprint::FINGERPRINT.check(&r).expect("FINGERPRINT verifies");
            }
            answered += 1;
        }
    }
    // XDP_TX answers on the interface it came from: no next hop to learn.
    assert_eq!(ternd.metric("ternd_fastpath_binding_responses_total"), answered);
}

fn relay_works(lab: &Lab, ternd: &Ternd, kernel: bool) {
    let mut c = lab.client(false);
    let relay = c.allocate().expect("allocate");
    let peer = lab.peer_socket(false);
    c.channel_bind(0x4000, peer.local_addr().unwrap()).unwrap();
    for _ in 0..3 {
        exchange(&mut c, &peer, relay, 0x4000, b"ping", 0);
    }
    assert_eq!(ternd.metric("ternd_fastpath_attached"), u64::from(kernel));
}

/// bpf_link: the program goes with the process however it ends, and with
/// a reload that turns the fast path off (ternd keeps relaying in userspace).
#[test]
fn the_program_is_detached_after_sigterm_sigkill_and_a_reload_that_turns_it_off() {
    if !prerequisites() {
        return;
    }
    let lab = Lab::new(Topology::Veth);
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        let Some(mut ternd) = start(&lab, "xdp", "") else {
            return;
        };
        assert_eq!(lab.attached(), 2);
        ternd.signal(sig);
        ternd.wait_exit(Duration::from_secs(20));
        assert_eq!(lab.attached(), 0, "attached after signal {sig}");
    }
    let Some(ternd) = start(&lab, "xdp", "") else {
        return;
    };
    relay_works(&lab, &ternd, true);
    std::fs::write(&ternd.config, lab.config("off", "")).unwrap();
    ternd.signal(libc::SIGHUP);
    assert!(
        common::wait_for(Duration::from_secs(10), || lab.attached() == 0),
        "still attached after a reload to mode = \"off\":\n{}",
        ternd.log_text()
    );
    relay_works(&lab, &ternd, false);
}

/// RFC 8656 §8: an allocation that is not refreshed expires; the kernel
/// relays until then and stops with the userspace path (the core's timer
/// takes the channels back, and the kernel checks the same deadline).
/// Takes a minute: the shortest lifetime ternd accepts.
#[test]
fn an_expiring_allocation_stops_the_kernel_when_the_core_stops() {
    if !prerequisites() {
        return;
    }
    let lab = Lab::new(Topology::Veth);
    let Some(ternd) = start(&lab, "xdp", "default_lifetime = \"1m\"") else {
        return;
    };
    let t0 = std::time::Instant::now();
    let mut c = lab.client(false);
    let relay = lab.allocate(&mut c, false);
    let peer = lab.peer_socket(false);
    c.channel_bind(0x4000, peer.local_addr().unwrap()).unwrap();
    exchange(&mut c, &peer, relay, 0x4000, b"warm-up", 0);
    let before = counters(&ternd);
    std::thread::sleep(Duration::from_secs(55).saturating_sub(t0.elapsed()));
    exchange(&mut c, &peer, relay, 0x4000, b"at 55 s", 0);
    assert_eq!(
        counters(&ternd).kernel_to_peer,
        before.kernel_to_peer + 1,
        "in the kernel until the end"
    );
    std::thread::sleep(Duration::from_secs(61).saturating_sub(t0.elapsed()));
    assert!(relay_stopped(&mut c, &peer, relay, 0x4000), "relaying after expiry");
    let line = "reason=Expired";
    assert!(
        common::wait_for(Duration::from_secs(5), || ternd.log_text().contains(line)),
        "no expiry in the log:\n{}",
        ternd.log_text()
    );
    assert!(ternd
        .log_text()
        .contains("to_peer_bytes=14 to_peer_packets=2 to_client_bytes=14"));
}
