//! Thin libc wrappers: batched UDP I/O with recvmmsg/sendmmsg, poll, socket options, CPU time.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::RawFd;
use std::time::Duration;

/// A fixed set of `n` message slots of `cap` bytes each, usable for both
/// recvmmsg and sendmmsg. Buffers and headers are allocated once; the
/// pointers inside the headers stay valid because the Vecs are never resized.
pub struct Batch {
    bufs: Vec<u8>,
    cap: usize,
    // Referenced by raw pointers from `hdrs`; must never be resized.
    _iov: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_in>,
    hdrs: Vec<libc::mmsghdr>,
    with_addr: bool,
}

impl Batch {
    /// `with_addr`: carry a peer address per message (unconnected sockets).
    pub fn new(n: usize, cap: usize, with_addr: bool) -> Batch {
        let mut bufs = vec![0u8; n * cap];
        let mut iov: Vec<libc::iovec> = (0..n)
            .map(|i| libc::iovec {
                iov_base: unsafe { bufs.as_mut_ptr().add(i * cap) } as *mut libc::c_void,
                iov_len: cap,
            })
            .collect();
        let mut addrs: Vec<libc::sockaddr_in> = vec![unsafe { mem::zeroed() }; n];
        let hdrs = (0..n)
            .map(|i| {
                let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
                h.msg_hdr.msg_iov = &mut iov[i];
                h.msg_hdr.msg_iovlen = 1;
                if with_addr {
                    h.msg_hdr.msg_name = &mut addrs[i] as *mut _ as *mut libc::c_void;
                    h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as u32;
                }
                h
            })
            .collect();
        Batch { bufs, cap, _iov: iov, addrs, hdrs, with_addr }
    }

    /// Receive up to `n` datagrams without blocking. Returns 0 on EAGAIN.
    pub fn recv(&mut self, fd: RawFd, n: usize) -> io::Result<usize> {
        let n = n.min(self.hdrs.len());
        for i in 0..n {
            let h = &mut self.hdrs[i];
            unsafe { (*h.msg_hdr.msg_iov).iov_len = self.cap };
            h.msg_len = 0;
            h.msg_hdr.msg_flags = 0;
            if self.with_addr {
                h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as u32;
            }
        }
        let r = unsafe {
            libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), n as _, libc::MSG_DONTWAIT as _, std::ptr::null_mut())
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                // ICMP port unreachable surfaces here on connected sockets; treat as "nothing".
                Some(libc::ECONNREFUSED) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }

    /// Received datagram `i` (after `recv`), or None if it was truncated.
    pub fn msg(&self, i: usize) -> Option<&[u8]> {
        let h = &self.hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (h.msg_len as usize).min(self.cap);
        Some(&self.bufs[i * self.cap..i * self.cap + len])
    }

    pub fn msg_len(&self, i: usize) -> usize {
        self.hdrs[i].msg_len as usize
    }

    /// Peer address of received datagram `i` (only with `with_addr`).
    pub fn addr(&self, i: usize) -> &libc::sockaddr_in {
        &self.addrs[i]
    }

    /// Whole buffer of slot `i`, for building an outgoing datagram.
    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * self.cap..(i + 1) * self.cap]
    }

    /// Set the length of outgoing datagram `i`.
    pub fn set_len(&mut self, i: usize, len: usize) {
        unsafe { (*self.hdrs[i].msg_hdr.msg_iov).iov_len = len.min(self.cap) };
    }

    /// Send slots `from..from+n` (one sendmmsg call). Returns how many were
    /// sent; 0 on EAGAIN/ENOBUFS.
    pub fn send(&mut self, fd: RawFd, from: usize, n: usize) -> io::Result<usize> {
        let n = n.min(self.hdrs.len() - from);
        if n == 0 {
            return Ok(0);
        }
        let r = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr().add(from), n as _, libc::MSG_DONTWAIT as _) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ENOBUFS) | Some(libc::ECONNREFUSED) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }
}

impl Batch {
    /// Sends slots `0..n`, all of `segment` bytes, as one UDP GSO message
    /// (UDP_SEGMENT: the kernel runs its send path once and cuts the
    /// datagrams at the end) on a connected socket. All or nothing: returns
    /// n, or 0 when the socket buffer is full.
    pub fn send_gso(&mut self, fd: RawFd, n: usize, segment: u16) -> io::Result<usize> {
        let n = n.min(self.hdrs.len()).min(64);
        if n == 0 {
            return Ok(0);
        }
        // u64s keep the control buffer aligned for cmsghdr.
        let mut control = [0u64; 4];
        let h = &mut self.hdrs[0].msg_hdr;
        h.msg_iovlen = n as _; // the iovecs of the slots are contiguous
        h.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        h.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
        unsafe {
            let c = libc::CMSG_FIRSTHDR(h);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = 103; // UDP_SEGMENT
            (*c).cmsg_len = libc::CMSG_LEN(2) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, segment);
        }
        let r = unsafe { libc::sendmsg(fd, h, libc::MSG_DONTWAIT) };
        h.msg_iovlen = 1;
        h.msg_control = std::ptr::null_mut();
        h.msg_controllen = 0;
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ENOBUFS) | Some(libc::ECONNREFUSED) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n)
    }
}

/// Non-blocking UDP socket connected to `server` (source address chosen by
/// the route: 127.0.0.1 towards loopback, the veth address in a namespace
/// lab), with enlarged kernel buffers.
pub fn connected_socket(server: SocketAddrV4, bufsize: i32) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    s.connect(server)?;
    s.set_nonblocking(true)?;
    set_bufs(std::os::fd::AsRawFd::as_raw_fd(&s), bufsize);
    Ok(s)
}

pub fn set_bufs(fd: RawFd, bytes: i32) {
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &bytes as *const i32 as *const libc::c_void,
                mem::size_of::<i32>() as u32,
            );
        }
    }
}

/// Wait until one of `fds` is readable or `timeout` passes.
pub fn poll_in(fds: &mut [libc::pollfd], timeout: Duration) {
    for p in fds.iter_mut() {
        p.revents = 0;
    }
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, ms) };
}

pub fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

/// User + system CPU time of this process.
pub fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe { mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Whole-machine (busy, softirq, total) jiffies from /proc/stat's `cpu` line
/// (all CPUs, all processes; softirq is where XDP and the network stack's
/// receive work land, charged to no process of ours). Zero if unreadable.
pub fn machine_jiffies() -> (u64, u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else { return (0, 0, 0) };
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else { return (0, 0, 0) };
    let v: Vec<u64> = line.split_ascii_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
    if v.len() < 7 {
        return (0, 0, 0);
    }
    let total: u64 = v.iter().take(8).sum();
    (total - v[3] - v[4], v[6], total)
}

/// Per-CPU (busy, total) jiffies from /proc/stat, index = CPU number.
/// Busy is everything but idle and iowait. Empty if unreadable.
pub fn cpu_jiffies() -> Vec<(u64, u64)> {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else { return Vec::new() };
    let mut out = Vec::new();
    for line in s.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some(name) = f.next() else { continue };
        let Some(idx) = name.strip_prefix("cpu").and_then(|n| n.parse::<usize>().ok()) else { continue };
        let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
        if v.len() < 5 {
            continue;
        }
        let total: u64 = v.iter().take(8).sum();
        let idle = v[3] + v[4];
        if out.len() <= idx {
            out.resize(idx + 1, (0, 0));
        }
        out[idx] = (total - idle, total);
    }
    out
}

/// System-wide UDP RcvbufErrors (datagrams dropped because a socket's
/// receive buffer was full), from /proc/net/snmp.
pub fn udp_rcvbuf_errors() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/net/snmp") else { return 0 };
    let mut udp = s.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(h), Some(v)) = (udp.next(), udp.next()) else { return 0 };
    h.split_ascii_whitespace()
        .zip(v.split_ascii_whitespace())
        .find(|(k, _)| *k == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU time of process `pid` (all threads) from /proc, if readable.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    process_cpu_split(pid).map(|(user, system)| user + system)
}

/// CPU time of a process: (user, system), from /proc/PID/stat.
pub fn process_cpu_split(pid: u32) -> Option<(Duration, Duration)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that closes the command name; utime and stime are fields 14 and 15.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let user: u64 = f.get(11)?.parse().ok()?;
    let system: u64 = f.get(12)?.parse().ok()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    let d = |ticks: u64| Duration::from_nanos(ticks * 1_000_000_000 / hz);
    Some((d(user), d(system)))
}

/// A level-triggered epoll set; each fd carries a caller-chosen u64.
pub struct Epoll {
    fd: RawFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(max_events: usize) -> io::Result<Epoll> {
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll { fd, events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)] })
    }

    pub fn add(&self, fd: RawFd, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: data };
        if unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `timeout` (zero: do not block); returns the data of the ready fds.
    pub fn wait(&mut self, timeout: Duration, out: &mut Vec<u64>) -> io::Result<()> {
        out.clear();
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let n = unsafe { libc::epoll_wait(self.fd, self.events.as_mut_ptr(), self.events.len() as i32, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) { Ok(()) } else { Err(e) };
        }
        out.extend(self.events[..n as usize].iter().map(|e| e.u64));
        Ok(())
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        unsafe { libc::close(self.fd) };
    }
}

/// Where the echo peers live by default: a loopback address other than the
/// relay's (127.0.0.1), as peers are other hosts; a TURN server refuses its
/// own relay address on any port outside its relay range (ternd does,
/// whatever `peers.allow` says). `relay --peer-ip` picks another (the peer
/// namespace's address in the veth lab).
pub const PEER_HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Non-blocking UDP socket bound to `host`:0 (not connected).
pub fn bound_socket(host: Ipv4Addr, bufsize: i32) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(SocketAddrV4::new(host, 0))?;
    s.set_nonblocking(true)?;
    set_bufs(std::os::fd::AsRawFd::as_raw_fd(&s), bufsize);
    Ok(s)
}

/// Runs `f` with this thread in network namespace `ns` (a name under
/// /run/netns), then moves the thread back; sockets `f` creates stay in
/// `ns`. `None`: runs `f` where we are.
pub fn in_netns<T>(ns: Option<&str>, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let Some(ns) = ns else { return f() };
    let home = std::fs::File::open("/proc/thread-self/ns/net")?;
    let there = std::fs::File::open(format!("/run/netns/{ns}"))
        .map_err(|e| io::Error::other(format!("namespace {ns}: {e}")))?;
    let enter = |file: &std::fs::File| {
        // SAFETY: setns(2) on an open namespace fd; changes only this thread.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(file), libc::CLONE_NEWNET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    enter(&there)?;
    let r = f();
    enter(&home)?;
    r
}

/// Per-CPU busy share between two `cpu_jiffies` readings.
pub fn busy_pcts(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    after
        .iter()
        .zip(before.iter())
        .map(|(&(b1, t1), &(b0, t0))| 100.0 * b1.saturating_sub(b0) as f64 / (t1.saturating_sub(t0).max(1)) as f64)
        .collect()
}

/// CPU accounting over a measured interval: this process, the server
/// process (if a PID is given), every CPU, and UDP receive-buffer drops.
pub struct Usage {
    at: std::time::Instant,
    cpu: Duration,
    jiffies: Vec<(u64, u64)>,
    machine: (u64, u64, u64),
    rcvbuf_errors: u64,
    /// Server CPU time: (user, system).
    server_cpu: Option<(Duration, Duration)>,
}

impl Usage {
    pub fn take(server_pid: Option<u32>) -> Usage {
        Usage {
            server_cpu: server_pid.and_then(process_cpu_split),
            at: std::time::Instant::now(),
            cpu: cpu_time(),
            jiffies: cpu_jiffies(),
            machine: machine_jiffies(),
            rcvbuf_errors: udp_rcvbuf_errors(),
        }
    }

    /// The usual trailing fields: elapsed, gen_cpu_pct, udp_rcvbuf_errors,
    /// server_cpu_pct and server_sys_pct (the part spent in the kernel) if
    /// known, and cpuN_busy_pct, as `key=value` pairs.
    pub fn fields(&self, end: &Usage) -> String {
        let secs = end.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let mut s = format!(
            "elapsed={:.3} gen_cpu_pct={:.1} udp_rcvbuf_errors={}",
            secs,
            100.0 * end.cpu.saturating_sub(self.cpu).as_secs_f64() / secs,
            end.rcvbuf_errors.saturating_sub(self.rcvbuf_errors)
        );
        if let (Some((u0, s0)), Some((u1, s1))) = (self.server_cpu, end.server_cpu) {
            let (user, system) = (u1.saturating_sub(u0), s1.saturating_sub(s0));
            s += &format!(
                " server_cpu_pct={:.1} server_sys_pct={:.1}",
                100.0 * (user + system).as_secs_f64() / secs,
                100.0 * system.as_secs_f64() / secs
            );
        }
        for (i, b) in busy_pcts(&self.jiffies, &end.jiffies).iter().enumerate() {
            s += &format!(" cpu{i}_busy_pct={b:.1}");
        }
        // Whole machine, in percent of one core: every CPU's busy time and
        // its softirq part (jiffies over the interval's jiffies per CPU).
        let ncpu = self.jiffies.len().max(1) as f64;
        let per_cpu = (end.machine.2.saturating_sub(self.machine.2) as f64 / ncpu).max(1.0);
        s += &format!(
            " machine_busy_pct={:.1} machine_softirq_pct={:.1}",
            100.0 * end.machine.0.saturating_sub(self.machine.0) as f64 / per_cpu,
            100.0 * end.machine.1.saturating_sub(self.machine.1) as f64 / per_cpu
        );
        s
    }

    pub fn secs_until(&self, end: &Usage) -> f64 {
        end.at.duration_since(self.at).as_secs_f64().max(1e-9)
    }
}
