//! Listener sockets: SO_REUSEPORT so every shard binds its own socket on the
//! same address and the kernel spreads clients over them; IPv6 wildcards are
//! bound IPv6-only so "0.0.0.0:P" and "[::]:P" coexist.

use std::io;
use std::net::SocketAddr;

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

/// A non-blocking UDP socket bound to `addr` with SO_REUSEPORT.
pub fn udp(addr: SocketAddr, recv_buffer: usize, send_buffer: usize) -> io::Result<std::net::UdpSocket> {
    let s = base_socket(addr, Type::DGRAM, Protocol::UDP)?;
    if recv_buffer > 0 {
        s.set_recv_buffer_size(recv_buffer)?;
    }
    if send_buffer > 0 {
        s.set_send_buffer_size(send_buffer)?;
    }
    s.bind(&SockAddr::from(addr))?;
    Ok(s.into())
}

/// A non-blocking TCP listener bound to `addr` with SO_REUSEPORT.
pub fn tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = base_socket(addr, Type::STREAM, Protocol::TCP)?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(1024)?;
    Ok(s.into())
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
    if recv_buffer > 0 {
        s.set_recv_buffer_size(recv_buffer)?;
    }
    if send_buffer > 0 {
        s.set_send_buffer_size(send_buffer)?;
    }
    if dont_fragment {
        set_dont_fragment(&s, addr.is_ipv6())?;
    }
    s.bind(&SockAddr::from(addr))?;
    Ok(s.into())
}

fn set_dont_fragment(s: &Socket, v6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name, value) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)
    } else {
        (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO)
    };
    // SAFETY: a plain setsockopt on a socket we own, with an int value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
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

/// Sends one datagram straight away. tokio's `try_send_to` waits for the
/// reactor to have seen the socket writable, which a fresh relay socket has
/// not; a UDP send never needs that, so this calls sendto(2) directly.
pub fn send_now(socket: &tokio::net::UdpSocket, data: &[u8], to: SocketAddr) -> io::Result<usize> {
    socket2::SockRef::from(socket).send_to(data, &SockAddr::from(to))
}
