//! Listener sockets: SO_REUSEPORT so every shard binds its own socket on the
//! same address and the kernel spreads clients over them; IPv6 wildcards are
//! bound IPv6-only so "0.0.0.0:P" and "[::]:P" coexist.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Resolves port 0 to a concrete free port. Binding port 0 with SO_REUSEPORT
/// may hand out a port that another SO_REUSEPORT socket of the same user
/// already holds (two servers would then share it), so the port is picked by
/// a plain bind first and the shards' sockets then bind to it.
pub fn resolve_port(addr: SocketAddr, ty: Type) -> io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let s = Socket::new(Domain::for_address(addr), ty, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&SockAddr::from(addr))?;
    s.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound address is not an IP address"))
}

/// Fails with a clear error if `addr` is already taken by another process.
/// SO_REUSEPORT would otherwise let a second server (same user) silently share
/// the port with a first one. A socket bound without SO_REUSEPORT conflicts
/// with any existing binding, so binding one and closing it is the probe.
pub fn ensure_free(addr: SocketAddr, ty: Type) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let s = Socket::new(Domain::for_address(addr), ty, None)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if ty == Type::STREAM {
        // Let the real listener take the port right after this probe closes.
        s.set_reuse_address(true)?;
    }
    s.bind(&SockAddr::from(addr)).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(e.kind(), format!("{addr} is already in use by another process"))
        } else {
            e
        }
    })
}

fn base_socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Socket buffer sizes from the config; 0 keeps the kernel default.
fn set_buffers(s: &Socket, recv: usize, send: usize) -> io::Result<()> {
    if recv > 0 {
        s.set_recv_buffer_size(recv)?;
    }
    if send > 0 {
        s.set_send_buffer_size(send)?;
    }
    Ok(())
}

/// A non-blocking UDP socket bound to `addr` with SO_REUSEPORT.
pub fn udp(addr: SocketAddr, recv_buffer: usize, send_buffer: usize) -> io::Result<std::net::UdpSocket> {
    let s = base_socket(addr, Type::DGRAM, Protocol::UDP)?;
    set_buffers(&s, recv_buffer, send_buffer)?;
    s.bind(&SockAddr::from(addr))?;
    let s: std::net::UdpSocket = s.into();
    if addr.ip().is_unspecified() {
        enable_pktinfo(&s, addr.is_ipv6())?;
    }
    Ok(s)
}

/// A non-blocking TCP listener bound to `addr` with SO_REUSEPORT.
pub fn tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = base_socket(addr, Type::STREAM, Protocol::TCP)?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(1024)?;
    Ok(s.into())
}

/// A non-blocking TCP relay listener (RFC 6062) bound to exactly `addr`.
/// SO_REUSEADDR and SO_REUSEPORT let the connections the relay opens to
/// peers bind to this same address while it listens; the core hands each
/// relay port to one allocation only.
pub fn tcp_relay(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = base_socket(addr, Type::STREAM, Protocol::TCP)?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(128)?;
    Ok(s.into())
}

/// A non-blocking TCP socket bound to relay address `from`, ready to
/// connect to a peer (RFC 6062 §5.2: "The local endpoint is the relayed
/// transport address associated with the allocation").
pub fn tcp_from_relay(from: SocketAddr) -> io::Result<tokio::net::TcpSocket> {
    let s = base_socket(from, Type::STREAM, Protocol::TCP)?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(from))?;
    let std: std::net::TcpStream = s.into();
    Ok(tokio::net::TcpSocket::from_std_stream(std))
}

/// A non-blocking UDP relay socket bound to exactly `addr` (no
/// SO_REUSEPORT: a relay port belongs to one allocation). With
/// `dont_fragment`, datagrams leave with DF set (RFC 8656 DONT-FRAGMENT).
pub fn relay(
    addr: SocketAddr,
    dont_fragment: bool,
    recv_buffer: usize,
    send_buffer: usize,
) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    set_buffers(&s, recv_buffer, send_buffer)?;
    if dont_fragment {
        set_dont_fragment(&s, addr.is_ipv6(), true)?;
    }
    s.bind(&SockAddr::from(addr))?;
    Ok(s.into())
}

/// Turns DF on for a relay socket's datagrams (IPv4: IP_PMTUDISC_DO, the
/// kernel refuses to fragment; IPv6: IPV6_DONTFRAG) or back to the kernel's
/// default (IP_PMTUDISC_WANT: fragment a datagram larger than the path MTU).
pub fn set_dont_fragment(s: &impl AsRawFd, v6: bool, on: bool) -> io::Result<()> {
    let (level, name, value) = match (v6, on) {
        (true, on) => (libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, libc::c_int::from(on)),
        (false, true) => (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO),
        (false, false) => (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_WANT),
    };
    setsockopt_int(s.as_raw_fd(), level, name, value)
}

/// Sends one datagram straight away (no readiness check: a UDP send never
/// needs one; a full buffer fails with WouldBlock and the datagram is lost,
/// as on any UDP path). A failure that may be an earlier ICMP error the
/// socket was holding ([`is_pending_icmp`]) is tried once more.
pub fn send_now(socket: &std::net::UdpSocket, data: &[u8], to: SocketAddr) -> io::Result<usize> {
    let to = SockAddr::from(to);
    let s = socket2::SockRef::from(socket);
    match s.send_to(data, &to) {
        Err(e) if is_pending_icmp(&e) => s.send_to(data, &to),
        sent => sent,
    }
}

/// True for the errors a UDP socket with IP_RECVERR reports once, on
/// whatever send or receive comes next, for an ICMP error that arrived
/// earlier (its pending error: port or host unreachable, fragmentation
/// needed, ...). They say nothing of the datagram at hand, so a send that
/// failed so is tried once more (the report cleared the pending error); a
/// failure of that datagram's own fails again and is dropped.
pub fn is_pending_icmp(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EMSGSIZE
                | libc::EPROTO
                | libc::EACCES
                | libc::ENOPROTOOPT
        )
    )
}

/// For a listener bound to a wildcard address: ask the kernel for each
/// datagram's destination address (IP_PKTINFO / IPV6_RECVPKTINFO), so the
/// answer can leave from the address the client wrote to. Without it the
/// kernel picks the source by route, and on a multi-homed host a client
/// behind an address-restricted NAT never sees the reply.
pub fn enable_pktinfo(socket: &std::net::UdpSocket, v6: bool) -> io::Result<()> {
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    setsockopt_int(socket.as_raw_fd(), level, name, 1)
}

use std::os::fd::AsRawFd;

/// Asks the kernel to take no more from the application while `bytes` of a
/// TCP socket's queue are not sent yet (TCP_NOTSENT_LOWAT). Without it a
/// client that never reads leaves the kernel holding up to tcp_wmem's
/// maximum (4 MiB by default) per connection, outside any budget; with it
/// what waits stays in the budgeted queue. Throughput is not limited (the
/// bytes in flight are not counted).
pub fn limit_unsent(socket: &impl AsRawFd, bytes: usize) -> io::Result<()> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    setsockopt_int(socket.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, bytes)
}

pub(super) fn setsockopt_int(fd: i32, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a plain setsockopt on a socket we own, with an int value.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            Some(SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            Some(SocketAddr::from((a.sin6_addr.s6_addr, u16::from_be(a.sin6_port))))
        }
        _ => None,
    }
}

/// The destination address in a received message's IP_PKTINFO /
/// IPV6_PKTINFO control message, if there is one.
///
/// # Safety
/// `msg.msg_control` must point at `msg.msg_controllen` bytes of control
/// messages written by the kernel (or be null with length 0).
pub unsafe fn pktinfo_dst(msg: &libc::msghdr) -> Option<IpAddr> {
    let mut c = libc::CMSG_FIRSTHDR(msg);
    while !c.is_null() {
        let h = &*c;
        if h.cmsg_level == libc::IPPROTO_IP && h.cmsg_type == libc::IP_PKTINFO {
            let info = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in_pktinfo);
            return Some(IpAddr::from(u32::from_be(info.ipi_addr.s_addr).to_be_bytes()));
        }
        if h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_PKTINFO {
            let info = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::in6_pktinfo);
            return Some(IpAddr::from(info.ipi6_addr.s6_addr));
        }
        c = libc::CMSG_NXTHDR(msg, c);
    }
    None
}

/// Writes one IP_PKTINFO / IPV6_PKTINFO control message asking the kernel to
/// send from `src`; returns its length for `msg_controllen`.
///
/// # Safety
/// `control` must point at 64 writable bytes aligned for `cmsghdr`.
pub unsafe fn write_pktinfo(control: *mut libc::c_void, src: IpAddr) -> usize {
    // A msghdr only to let the CMSG_* macros find the first header.
    let mut msg: libc::msghdr = std::mem::zeroed();
    msg.msg_control = control;
    let (level, ty, size) = match src {
        IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            std::mem::size_of::<libc::in_pktinfo>(),
        ),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            std::mem::size_of::<libc::in6_pktinfo>(),
        ),
    };
    msg.msg_controllen = libc::CMSG_SPACE(size as u32) as _;
    let c = libc::CMSG_FIRSTHDR(&msg);
    (*c).cmsg_level = level;
    (*c).cmsg_type = ty;
    (*c).cmsg_len = libc::CMSG_LEN(size as u32) as _;
    match src {
        IpAddr::V4(v4) => std::ptr::write_unaligned(
            libc::CMSG_DATA(c) as *mut libc::in_pktinfo,
            libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            },
        ),
        IpAddr::V6(v6) => std::ptr::write_unaligned(
            libc::CMSG_DATA(c) as *mut libc::in6_pktinfo,
            libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr { s6_addr: v6.octets() },
                ipi6_ifindex: 0,
            },
        ),
    }
    msg.msg_controllen as usize
}

/// Sends one datagram from source address `src` (IP_PKTINFO /
/// IPV6_PKTINFO), for answers on a wildcard-bound socket.
pub fn send_from(socket: &std::net::UdpSocket, data: &[u8], to: SocketAddr, src: IpAddr) -> io::Result<usize> {
    let dest = SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr points at live buffers sized as declared; the control
    // buffer is 64 aligned bytes, enough for one pktinfo message.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = dest.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = dest.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = write_pktinfo(msg.msg_control, src) as _;
        let n = libc::sendmsg(socket.as_raw_fd(), &msg, 0);
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}
