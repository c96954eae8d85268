//! coturn's `turnserver` as a reference server for side-by-side tests.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `turnserver` on 127.0.0.1 (UDP and TCP, no TLS), killed by
/// PID and reaped when dropped.
pub struct Coturn {
    child: Child,
    pub addr: SocketAddr,
    /// The relay ports it was given.
    pub relay_ports: std::ops::RangeInclusive<u16>,
}

impl Coturn {
    /// Starts `bin` with realm `realm`, loopback peers allowed, and `auth`
    /// (e.g. `--lt-cred-mech --user=...`); waits until it answers.
    pub fn start(bin: &str, realm: &str, auth: &[&str]) -> Coturn {
        let port = free_port();
        // Relay ports from a range that depends on the listening port, so
        // parallel runs do not share one.
        let min = 40000 + (port % 200) * 100;
        let mut args: Vec<String> = [
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            "--allow-loopback-peers",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--log-file=stdout",
            "--simple-log",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--realm={realm}"));
        args.push(format!("--listening-port={port}"));
        args.push(format!("--min-port={min}"));
        args.push(format!("--max-port={}", min + 99));
        args.extend(auth.iter().map(|s| s.to_string()));
        let child = Command::new(bin)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver");
        let coturn = Coturn {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            relay_ports: min..=min + 99,
        };
        wait_for_stun(coturn.addr);
        coturn
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// Waits (bounded) until something answers a STUN Binding on `addr`.
fn wait_for_stun(addr: SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let req = super::binding_request();
    let mut buf = [0u8; 1500];
    for _ in 0..50 {
        sock.send_to(&req.raw, addr).unwrap();
        if sock.recv_from(&mut buf).is_ok() {
            return;
        }
    }
    panic!("turnserver does not answer on {addr}");
}
