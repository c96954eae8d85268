//! The error queue of a relay socket (Linux IP_RECVERR / IPV6_RECVERR, see
//! ip(7) and ipv6(7)): each ICMP error about a datagram the relay sent comes
//! with the datagram's original destination (the peer) in `msg_name` and a
//! `sock_extended_err` naming the ICMP type, code and, for "fragmentation
//! needed" and "packet too big", the next-hop MTU. The core turns it into a
//! Data indication (RFC 8656 §11.5).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use proto::PeerIcmp;

use super::sockets;

/// Error-queue entries read per wakeup at most, so a flood of ICMP errors
/// cannot hold the shard; the rest waits for the next turn.
pub const DRAIN_MAX: usize = 16;

/// One ICMP error: about a datagram to `peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerError {
    pub peer: SocketAddr,
    pub icmp: PeerIcmp,
}

/// Asks the kernel to queue ICMP errors about the socket's datagrams
/// (IP_RECVERR / IPV6_RECVERR). Without it an unconnected UDP socket never
/// hears of them.
pub fn enable(socket: &impl AsRawFd, v6: bool) -> io::Result<()> {
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    sockets::setsockopt_int(socket.as_raw_fd(), level, name, 1)
}

/// Reads one entry of the error queue: `Ok(Some)` for an ICMP error,
/// `Ok(None)` for anything else the queue holds (a local error), and
/// `WouldBlock` once it is empty. Reading the last ICMP entry also clears
/// the socket's pending error, so sends and receives stop reporting it.
pub fn recv(socket: &impl AsRawFd) -> io::Result<Option<PeerError>> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // The offending datagram itself is not wanted: a 1-byte buffer, truncated.
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr() as *mut libc::c_void,
        iov_len: byte.len(),
    };
    // sock_extended_err plus the offender's sockaddr_in6, in u64s for alignment.
    let mut control = [0u64; 16];
    // SAFETY: msghdr points at live buffers of the sizes declared.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut name as *mut libc::sockaddr_storage as *mut libc::c_void;
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: as above; the kernel writes at most the declared sizes.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let Some(peer) = sockets::from_storage(&name) else {
        return Ok(None);
    };
    // SAFETY: the kernel wrote msg_controllen bytes of control messages.
    let icmp = unsafe { extended_err(&msg) };
    Ok(icmp.map(|icmp| PeerError { peer, icmp }))
}

/// The ICMP error in a message's IP_RECVERR / IPV6_RECVERR control message.
///
/// # Safety
/// `msg.msg_control` must point at `msg.msg_controllen` bytes of control
/// messages written by the kernel.
unsafe fn extended_err(msg: &libc::msghdr) -> Option<PeerIcmp> {
    let mut c = libc::CMSG_FIRSTHDR(msg);
    while !c.is_null() {
        let h = &*c;
        let recverr = (h.cmsg_level == libc::IPPROTO_IP && h.cmsg_type == libc::IP_RECVERR)
            || (h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_RECVERR);
        if recverr {
            let ee = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::sock_extended_err);
            return icmp_of(&ee);
        }
        c = libc::CMSG_NXTHDR(msg, c);
    }
    None
}

/// The ICMP error an extended error describes; None for one of local origin
/// (a send refused by this host, e.g. EMSGSIZE with DF set).
fn icmp_of(ee: &libc::sock_extended_err) -> Option<PeerIcmp> {
    matches!(ee.ee_origin, libc::SO_EE_ORIGIN_ICMP | libc::SO_EE_ORIGIN_ICMP6).then_some(PeerIcmp {
        typ: ee.ee_type,
        code: ee.ee_code,
        mtu: ee.ee_info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ee(origin: u8, typ: u8, code: u8, info: u32) -> libc::sock_extended_err {
        libc::sock_extended_err {
            ee_errno: libc::EMSGSIZE as u32,
            ee_origin: origin,
            ee_type: typ,
            ee_code: code,
            ee_pad: 0,
            ee_info: info,
            ee_data: 0,
        }
    }

    #[test]
    fn only_errors_of_icmp_origin_are_peer_errors() {
        let frag = icmp_of(&ee(libc::SO_EE_ORIGIN_ICMP, 3, 4, 1400));
        assert_eq!(
            frag,
            Some(PeerIcmp {
                typ: 3,
                code: 4,
                mtu: 1400
            })
        );
        let too_big = icmp_of(&ee(libc::SO_EE_ORIGIN_ICMP6, 2, 0, 1280));
        assert_eq!(
            too_big,
            Some(PeerIcmp {
                typ: 2,
                code: 0,
                mtu: 1280
            })
        );
        assert_eq!(icmp_of(&ee(libc::SO_EE_ORIGIN_LOCAL, 0, 0, 1500)), None);
    }
}
