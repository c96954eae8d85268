//! Issue 12, item 1 as first seen: under `ulimit -n 400`, 420 idle TCP
//! connections to the HTTP port made Allocate answer 508, TURN/TCP Binding
//! time out and /healthz time out. HTTP and TURN share one fd table, so the
//! connection budgets must fit it (src/fd_limit.rs): the real binary runs
//! with a hard limit of 400 descriptors while strangers hold idle
//! connections to its HTTP and TURN/TCP ports. An honest client allocates
//! at once (the descriptors a relay needs are kept free), and binds over TCP
//! and reads /healthz as soon as the timeouts have closed the idle
//! strangers' connections (with so few descriptors the lowered connection
//! caps are small enough for many sources to fill).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::binary::Ternd;
use common::turn::{Io, TurnClient};
use common::*;

const FD_LIMIT: u64 = 400;
const ATTACK: usize = 420;

/// The binary with `FD_LIMIT` descriptors (soft and hard, so it cannot raise
/// them), on port 0 everywhere; the ports come from its banner.
fn spawn() -> Ternd {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ternd"));
    for set in [
        "listen.udp=127.0.0.1:0",
        "listen.tcp=127.0.0.1:0",
        "http.listen=127.0.0.1:0",
        "server.shards=1",
        "relay.ipv4=127.0.0.1",
        "relay.port_min=61000",
        "turn.users.alice=alice-password",
        "log.level=error",
        // Short, so the test sees idle strangers go within seconds.
        "http.header_timeout=2s",
        "stream.auth_timeout=2s",
    ] {
        cmd.args(["--set", set]);
    }
    // SAFETY: setrlimit is async-signal-safe and touches only this child.
    unsafe {
        cmd.pre_exec(|| {
            let l = libc::rlimit {
                rlim_cur: FD_LIMIT,
                rlim_max: FD_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    common::binary::spawn(&mut cmd)
}

/// Opens up to `n` connections to `to` from `n` different loopback sources
/// (127.4.x.y) that never send a byte. Connections the server refuses may
/// still complete in the kernel; what counts is what the server holds.
fn idle_from_many(to: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|i| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            let src: SocketAddr = format!("127.4.{}.{}:0", i / 250, i % 250 + 1).parse().unwrap();
            s.bind(&src.into()).ok()?;
            s.connect_timeout(&to.into(), Duration::from_millis(500)).ok()?;
            Some(s.into())
        })
        .collect()
}

fn healthz(http: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&http, Duration::from_secs(2)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.starts_with("HTTP/1.1 200")
}

/// Retries `check` for a few seconds. Strangers from many addresses can
/// hold every slot of a budget lowered to the fd limit, but only until the
/// header or pre-authentication timeout (2 s here) closes them.
fn eventually(check: impl FnMut() -> bool) -> bool {
    wait_for(Duration::from_secs(8), check)
}

#[test]
fn strangers_connections_fit_the_fd_limit_and_leave_room_for_honest_clients() {
    let t = spawn();
    let http_attack = idle_from_many(t.http, ATTACK);
    let tcp = t.tcp.expect("a TCP listener");
    let tcp_attack = idle_from_many(tcp, ATTACK);
    assert!(
        http_attack.len() + tcp_attack.len() >= ATTACK,
        "the attack connects ({} + {})",
        http_attack.len(),
        tcp_attack.len()
    );
    std::thread::sleep(Duration::from_millis(500));
    let fds = t.fds();
    assert!(
        fds + 32 < FD_LIMIT as usize,
        "ternd keeps descriptors free: {fds} of {FD_LIMIT}"
    );

    // The honest client: a UDP allocation (a relay socket is a descriptor),
    // STUN over TCP, and /healthz from its own address.
    let mut turn = TurnClient::new(Io::udp(t.udp), "alice", "alice-password");
    let relay = turn.allocate().expect("an honest Allocate succeeds under the attack");
    assert_eq!(relay.ip(), "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
    assert!(eventually(|| tcp_binding(tcp).is_some()), "TURN/TCP Binding answers");
    assert!(eventually(|| healthz(t.http)), "/healthz answers");
    assert!(t.fds() < FD_LIMIT as usize);
    drop(http_attack);
    drop(tcp_attack);
}
