//! Hand-made IP/UDP datagrams and a capture of what an interface sees, for
//! checking IP header fields the socket API hides (tests/fastpath.rs: the
//! IPv4 identification and the IPv6 flow label of relayed datagrams).
//! Sockets are made inside a namespace and keep to it.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::netns::in_ns;

/// The header fields a sender picks and a relay must not copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// IPv4 identification.
    pub id: u16,
    /// IPv4 Don't Fragment.
    pub df: bool,
    /// IPv6 flow label (20 bits).
    pub flow_label: u32,
}

/// A UDP datagram as captured: its addresses, marks and payload.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub marks: Marks,
    pub payload: Vec<u8>,
}

fn checked(fd: i32, what: &str) -> OwnedFd {
    assert!(fd >= 0, "{what}: {}", std::io::Error::last_os_error());
    // SAFETY: a descriptor just returned by the kernel, owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The UDP header with a full checksum (RFC 768, RFC 8200 §8.1).
fn udp(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = Vec::with_capacity(len as usize);
    u.extend_from_slice(&from.port().to_be_bytes());
    u.extend_from_slice(&to.port().to_be_bytes());
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let addrs = |a: IpAddr| match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let pseudo = sum16(&addrs(from.ip())) + sum16(&addrs(to.ip())) + 17 + u32::from(len);
    let c = !fold(pseudo + sum16(&u));
    u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    u
}

/// A raw socket in namespace `ns` that sends whole IP datagrams of the
/// family of `v6` (IPPROTO_RAW: the header is ours; IPv4 fills in its
/// checksum and length only).
pub struct RawSender(OwnedFd);

impl RawSender {
    pub fn new(ns: &str, v6: bool) -> RawSender {
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: socket(2) with constant arguments.
        in_ns(ns, move || {
            RawSender(checked(
                unsafe { libc::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW) },
                "raw socket",
            ))
        })
    }

    /// Sends `payload` from `from` to `to` over UDP with the IP header
    /// fields of `marks`.
    pub fn send(&self, from: SocketAddr, to: SocketAddr, marks: Marks, payload: &[u8]) {
        let u = udp(from, to, payload);
        let mut p = Vec::new();
        let rc = match (from.ip(), to.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                p.extend_from_slice(&[0x45, 0]);
                p.extend_from_slice(&((20 + u.len()) as u16).to_be_bytes());
                p.extend_from_slice(&marks.id.to_be_bytes());
                p.extend_from_slice(&(if marks.df { 0x4000u16 } else { 0 }).to_be_bytes());
                p.extend_from_slice(&[64, 17, 0, 0]);
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&u);
                // SAFETY: an all-zero sockaddr_in is valid; fields set below.
                let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes(d.octets());
                // SAFETY: `p` and `sa` live across the call, lengths match.
                unsafe {
                    libc::sendto(
                        self.0.as_raw_fd(),
                        p.as_ptr().cast(),
                        p.len(),
                        0,
                        (&sa as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as u32,
                    )
                }
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let first = (6u32 << 28) | (marks.flow_label & 0xfffff);
                p.extend_from_slice(&first.to_be_bytes());
                p.extend_from_slice(&(u.len() as u16).to_be_bytes());
                p.extend_from_slice(&[17, 64]);
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&u);
                // SAFETY: an all-zero sockaddr_in6 is valid; fields set below.
                let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr = d.octets();
                // SAFETY: `p` and `sa` live across the call, lengths match.
                unsafe {
                    libc::sendto(
                        self.0.as_raw_fd(),
                        p.as_ptr().cast(),
                        p.len(),
                        0,
                        (&sa as *const libc::sockaddr_in6).cast(),
                        std::mem::size_of::<libc::sockaddr_in6>() as u32,
                    )
                }
            }
            _ => panic!("{from} and {to} are of different families"),
        };
        assert_eq!(rc, p.len() as isize, "raw send: {}", std::io::Error::last_os_error());
    }
}

/// Every IP packet interface `iface` of namespace `ns` receives or sends
/// (an AF_PACKET socket: it sees frames after XDP passed them up).
pub struct Capture(OwnedFd);

impl Capture {
    pub fn new(ns: &str, iface: &str) -> Capture {
        let iface = std::ffi::CString::new(iface).unwrap();
        in_ns(ns, move || {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: socket(2) with constant arguments.
            let fd = checked(
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(proto)) },
                "packet socket",
            );
            // SAFETY: a valid NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(iface.as_ptr()) };
            assert!(ifindex > 0, "no interface {iface:?}");
            // SAFETY: an all-zero sockaddr_ll is valid; fields set below.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = proto;
            sa.sll_ifindex = ifindex as i32;
            // SAFETY: `sa` lives across the call, the length matches.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(rc, 0, "bind to {iface:?}: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            // SAFETY: a timeval option of the right size.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            };
            assert_eq!(rc, 0);
            Capture(fd)
        })
    }

    /// The UDP datagrams to `to` seen within `within` (until `want` of them).
    pub fn datagrams_to(&self, to: SocketAddr, want: usize, within: Duration) -> Vec<Datagram> {
        let until = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while out.len() < want && Instant::now() < until {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            if let Some(d) = parse(&buf[..n as usize]).filter(|d| d.to == to) {
                out.push(d);
            }
        }
        out
    }
}

/// An IPv4 (no options) or IPv6 (no extension headers) UDP datagram.
fn parse(p: &[u8]) -> Option<Datagram> {
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    match p.first()? >> 4 {
        4 if p.len() >= 28 && p[0] == 0x45 && p[9] == 17 => {
            let ip = |b: &[u8]| IpAddr::from(<[u8; 4]>::try_from(b).unwrap());
            let u = &p[20..];
            Some(Datagram {
                from: SocketAddr::new(ip(&p[12..16]), port(&u[0..2])),
                to: SocketAddr::new(ip(&p[16..20]), port(&u[2..4])),
                marks: Marks {
                    id: u16::from_be_bytes([p[4], p[5]]),
                    df: p[6] & 0x40 != 0,
                    flow_label: 0,
                },
                payload: u[8..].to_vec(),
            })
        }
        6 if p.len() >= 48 && p[6] == 17 => {
            let ip = |b: &[u8]| IpAddr::from(<[u8; 16]>::try_from(b).unwrap());
            let u = &p[40..];
            Some(Datagram {
                from: SocketAddr::new(ip(&p[8..24]), port(&u[0..2])),
                to: SocketAddr::new(ip(&p[24..40]), port(&u[2..4])),
                marks: Marks {
                    id: 0,
                    df: false,
                    flow_label: u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0xfffff,
                },
                payload: u[8..].to_vec(),
            })
        }
        _ => None,
    }
}
