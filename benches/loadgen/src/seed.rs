//! `seed`: the userspace half of the in-kernel Binding load
//! (benches/xdp/binding_reflector.c). Sends `window` Binding requests from
//! each of `sockets` connected UDP sockets, once, and then only listens:
//! while the reflector loops the answers back to the server in XDP nothing
//! arrives here; once the script stops it, the answers still in flight come
//! up and are counted (`drained`), so `seeded - drained` is what the closed
//! loop lost. Exits after `hold`, or as soon as every seeded request is back.

use std::fmt;
use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::binding::Rng;
use crate::net::{self, Batch};
use crate::stun;

pub struct Config {
    pub server: SocketAddrV4,
    pub sockets: usize,
    pub window: usize,
    pub hold: Duration,
}

pub struct Report {
    seeded: u64,
    drained: u64,
    bad: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seeded={} drained={} bad={}", self.seeded, self.drained, self.bad)
    }
}

const BATCH: usize = 32;

pub fn run(cfg: &Config) -> io::Result<Report> {
    let deadline = Instant::now() + cfg.hold;
    let socks =
        (0..cfg.sockets).map(|_| net::connected_socket(cfg.server, 4 << 20)).collect::<io::Result<Vec<UdpSocket>>>()?;
    let mut rng = Rng::seeded();
    let mut sb = Batch::new(BATCH, stun::HEADER_LEN, false);
    let mut r = Report { seeded: 0, drained: 0, bad: 0 };
    for s in &socks {
        let mut slot = 0;
        while slot < cfg.window && Instant::now() < deadline {
            let k = (cfg.window - slot).min(BATCH);
            for j in 0..k {
                let len = stun::write_binding_request(sb.buf_mut(j), (slot + j) as u32, rng.next());
                sb.set_len(j, len);
            }
            let sent = sb.send(s.as_raw_fd(), 0, k)?;
            slot += sent;
            r.seeded += sent as u64;
        }
    }
    let mut pfds: Vec<libc::pollfd> = socks.iter().map(|s| net::pollfd(s.as_raw_fd())).collect();
    let mut rb = Batch::new(BATCH, 2048, false);
    while Instant::now() < deadline && r.drained < r.seeded {
        let mut got = 0;
        for s in &socks {
            let n = rb.recv(s.as_raw_fd(), BATCH)?;
            for i in 0..n {
                match rb.msg(i).and_then(|m| stun::parse_header(m, stun::BINDING_SUCCESS)) {
                    Some(_) => r.drained += 1,
                    None => r.bad += 1,
                }
            }
            got += n;
        }
        if got == 0 {
            net::poll_in(&mut pfds, Duration::from_millis(10));
        }
    }
    Ok(r)
}
