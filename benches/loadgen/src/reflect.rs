//! `reflect`: the smallest possible Binding responder (one thread, one
//! socket, recvmmsg/sendmmsg, answers with XOR-MAPPED-ADDRESS only). Run on
//! the server core it gives the "bare ceiling": what the kernel plus this
//! load generator allow on one core, against which real servers compare.

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::net::{self, Batch};
use crate::stun;

const BATCH: usize = 64;

pub fn run(listen: SocketAddrV4, duration: Duration) -> io::Result<()> {
    let sock = UdpSocket::bind(listen)?;
    sock.set_nonblocking(true)?;
    let fd = sock.as_raw_fd();
    net::set_bufs(fd, 4 << 20);
    let mut pfd = [net::pollfd(fd)];
    let mut batch = Batch::new(BATCH, 2048, true);
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let n = batch.recv(fd, BATCH)?;
        if n == 0 {
            net::poll_in(&mut pfd, Duration::from_millis(100));
            continue;
        }
        // Build responses in place, compacting valid ones to the front.
        let mut out = 0;
        for i in 0..n {
            let a = *batch.addr(i);
            let len = batch.msg_len(i);
            let ip = u32::from_be(a.sin_addr.s_addr);
            let port = u16::from_be(a.sin_port);
            if batch.msg(i).is_none() {
                continue;
            }
            if let Some(rlen) = stun::reflect_binding(batch.buf_mut(i), len, ip, port) {
                batch.set_len(i, rlen);
                if i != out {
                    // Rare (only with junk traffic): just answer it separately.
                    let _ = batch.send(fd, i, 1);
                } else {
                    out += 1;
                }
            }
        }
        let mut done = 0;
        let mut tries = 0;
        while done < out && tries < 8 {
            let s = batch.send(fd, done, out - done)?;
            done += s;
            tries += 1;
        }
    }
    Ok(())
}
