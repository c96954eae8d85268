//! Batched UDP I/O for a shard: recvmmsg(2) fills up to [`BATCH`]
//! datagrams in one system call and sendmmsg(2) sends every queued datagram
//! of one socket in one call. At load this divides the system calls per
//! relayed packet by the batch size; at low load a batch of one costs what
//! recvfrom/sendto cost.
//!
//! One [`UdpBatch`] holds the receive slots, an arena for STUN replies and
//! the queue of datagrams to send. Queued datagrams point into the batch's
//! own buffers (a received datagram forwarded as is, or with its ChannelData
//! or Data-indication header written in place in front of it), so nothing
//! is copied between receiving and sending. The queue is flushed before the
//! next receive reuses the slots.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;

use proto::{canonical, ClientAddr, DropReason, FiveTuple, ServerAddr, Transport};
use socket2::SockAddr;
use tokio::io::unix::AsyncFd;

use super::sockets;

/// A UDP socket registered with the shard's reactor. `AsyncFd` rather than
/// tokio's `UdpSocket` because a short recvmmsg proves the socket empty:
/// the driver then clears readiness itself instead of paying for one more
/// system call that fails with EAGAIN.
pub type Udp = AsyncFd<std::net::UdpSocket>;

/// Registers a UDP socket with the current shard's reactor, for reading
/// (sends never wait for readiness).
pub fn register(socket: std::net::UdpSocket) -> io::Result<Udp> {
    // SAFETY: the UdpSocket owns its descriptor and the AsyncFd owns the
    // UdpSocket, so the descriptor stays open and the same until the AsyncFd
    // is dropped.
    Ok(unsafe { AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE)? })
}

/// UDP_SEGMENT (include/uapi/linux/udp.h): the GSO segment size of a send.
const UDP_SEGMENT: libc::c_int = 103;
/// At most this many segments in one GSO send (UDP_MAX_SEGMENTS).
const GSO_MAX_SEGMENTS: usize = 64;
/// Datagrams merged only up to this size, so a segment fits a 1500-byte MTU
/// with IPv6 and UDP headers (a larger one would make the kernel refuse the
/// whole message with EINVAL on such a path).
const GSO_MAX_SIZE: usize = 1452;
/// And only up to this many bytes in all (one IP packet's worth).
const GSO_MAX_TOTAL: usize = 65_000;

/// Datagrams per recvmmsg/sendmmsg call.
pub const BATCH: usize = 32;
/// The largest UDP payload (IPv4: 65 535 − 20 − 8; IPv6 without jumbograms
/// fits too). A slot holds any datagram, so none is ever truncated.
const MAX_DATAGRAM: usize = 65_536;
/// Room for one STUN reply: every reply ternd builds fits in 2 KiB.
pub const REPLY_LEN: usize = 2048;
/// Room for one IP_PKTINFO / IPV6_PKTINFO control message (u64s keep it
/// aligned for cmsghdr).
const CONTROL_WORDS: usize = 8;

/// What the kernel told about one received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// The receive slot holding it.
    pub slot: usize,
    pub len: usize,
    pub from: SocketAddr,
    /// The local address the datagram was sent to (wildcard sockets only).
    pub dst: Option<IpAddr>,
}

impl Received {
    /// The 5-tuple of this datagram on listener `local` (the address the
    /// client wrote to, for a wildcard listener).
    pub fn tuple(&self, local: ServerAddr, transport: Transport) -> FiveTuple {
        let server = match self.dst {
            Some(ip) => ServerAddr(canonical(SocketAddr::new(ip, local.0.port()))),
            None => local,
        };
        FiveTuple {
            client: ClientAddr(canonical(self.from)),
            server,
            transport,
        }
    }
}

/// Where the bytes of a queued datagram are.
#[derive(Debug, Clone, Copy)]
enum Bytes {
    /// `slot[start..start + len]` of receive slot `slot`.
    Slot { slot: usize, start: usize, len: usize },
    /// The first `len` bytes of reply buffer `slot`.
    Reply { slot: usize, len: usize },
}

struct Queued {
    socket: Rc<Udp>,
    to: SocketAddr,
    /// Source address for a wildcard socket (IP_PKTINFO).
    src: Option<IpAddr>,
    bytes: Bytes,
    /// Counted when the kernel refuses the datagram; `None` for replies
    /// (a lost reply is retransmitted by the client).
    on_failure: Option<DropReason>,
}

pub struct UdpBatch {
    slots: Vec<u8>,
    /// Distance between slot starts.
    stride: usize,
    /// Bytes kept free before each received datagram (for headers written in place).
    headroom: usize,
    replies: Vec<u8>,
    received: Vec<Received>,
    queue: Vec<Queued>,
    /// Whether to merge equal datagrams into GSO sends (off after the kernel
    /// refused one with EIO: no segmentation offload on that path).
    gso: bool,
    /// The queue's indices grouped by socket, for flush.
    order: Vec<(RawFd, usize)>,
    /// Scratch for the system calls, rebuilt before each call.
    names: Vec<libc::sockaddr_storage>,
    controls: Vec<[u64; CONTROL_WORDS]>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl UdpBatch {
    /// A batch whose received datagrams start `headroom` bytes into their
    /// slot with `tailroom` bytes free after the largest one; `replies`
    /// reserves a reply buffer per slot (listeners answer STUN requests).
    pub fn new(headroom: usize, tailroom: usize, replies: bool) -> UdpBatch {
        // Not a power of two, so the slot starts do not all land in the same
        // cache sets.
        let stride = (headroom + MAX_DATAGRAM + tailroom).next_multiple_of(64) + 64;
        UdpBatch {
            // vec![0; n] comes from calloc: pages are only touched (and
            // resident) once datagrams that large arrive.
            slots: vec![0; stride * BATCH],
            stride,
            headroom,
            replies: if replies {
                vec![0; REPLY_LEN * BATCH]
            } else {
                Vec::new()
            },
            received: Vec::with_capacity(BATCH),
            queue: Vec::with_capacity(BATCH),
            order: Vec::with_capacity(BATCH),
            gso: true,
            // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr
            // (null pointers, zero lengths); each is filled before use.
            names: vec![unsafe { std::mem::zeroed() }; BATCH],
            controls: vec![[0; CONTROL_WORDS]; BATCH],
            iovecs: vec![unsafe { std::mem::zeroed() }; BATCH],
            headers: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }

    /// One recvmmsg on `socket`: the number of datagrams received (at
    /// least one; WouldBlock when there were none), listed by
    /// [`UdpBatch::received`]. `pktinfo`: also read each datagram's
    /// destination address. Flush before receiving again: the slots are
    /// reused.
    pub fn recv(&mut self, socket: &Udp, pktinfo: bool) -> io::Result<usize> {
        debug_assert!(self.queue.is_empty(), "flush before receiving into the slots again");
        self.received.clear();
        let base = self.slots.as_mut_ptr();
        for k in 0..BATCH {
            self.iovecs[k] = libc::iovec {
                // SAFETY: slot k lies inside `slots` (BATCH strides long).
                iov_base: unsafe { base.add(k * self.stride + self.headroom) } as *mut libc::c_void,
                iov_len: MAX_DATAGRAM,
            };
            let h = &mut self.headers[k].msg_hdr;
            h.msg_name = &mut self.names[k] as *mut libc::sockaddr_storage as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovecs[k];
            h.msg_iovlen = 1;
            if pktinfo {
                h.msg_control = self.controls[k].as_mut_ptr() as *mut libc::c_void;
                h.msg_controllen = std::mem::size_of::<[u64; CONTROL_WORDS]>() as _;
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
            h.msg_flags = 0;
        }
        // SAFETY: every header points at live buffers of the sizes declared
        // above; the kernel writes at most those sizes.
        let n = unsafe {
            libc::recvmmsg(
                socket.get_ref().as_raw_fd(),
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for k in 0..n as usize {
            let h = &self.headers[k];
            // A datagram from a non-IP sender cannot reach an AF_INET(6)
            // socket; skip it rather than trust a garbage address.
            let Some(from) = sockets::from_storage(&self.names[k]) else {
                continue;
            };
            let dst = if pktinfo {
                // SAFETY: the kernel wrote msg_controllen bytes of control
                // messages into controls[k].
                unsafe { sockets::pktinfo_dst(&h.msg_hdr) }
            } else {
                None
            };
            self.received.push(Received {
                slot: k,
                len: h.msg_len as usize,
                from,
                dst,
            });
        }
        Ok(n as usize)
    }

    /// The datagrams of the last receive, in arrival order.
    pub fn received(&self) -> &[Received] {
        &self.received
    }

    /// Receive slot `i`: a datagram is at `[headroom..headroom + len]`.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.slots[i * self.stride..(i + 1) * self.stride]
    }

    /// The datagram `r` and the reply buffer of its slot, borrowed together.
    pub fn datagram_and_reply(&mut self, r: &Received) -> (&[u8], &mut [u8]) {
        let start = r.slot * self.stride + self.headroom;
        let data = &self.slots[start..start + r.len];
        (data, &mut self.replies[r.slot * REPLY_LEN..(r.slot + 1) * REPLY_LEN])
    }

    /// Queues `slot_mut(slot)[start..start + len]` to be sent from `socket`
    /// (`start` counts from the slot's beginning, headroom included).
    pub fn queue_slot(
        &mut self,
        socket: &Rc<Udp>,
        to: SocketAddr,
        src: Option<IpAddr>,
        (slot, start, len): (usize, usize, usize),
        on_failure: DropReason,
    ) {
        self.queue.push(Queued {
            socket: socket.clone(),
            to,
            src,
            bytes: Bytes::Slot { slot, start, len },
            on_failure: Some(on_failure),
        });
    }

    /// Queues the first `len` bytes of reply buffer `slot`.
    pub fn queue_reply(&mut self, socket: &Rc<Udp>, to: SocketAddr, src: Option<IpAddr>, slot: usize, len: usize) {
        self.queue.push(Queued {
            socket: socket.clone(),
            to,
            src,
            bytes: Bytes::Reply { slot, len },
            on_failure: None,
        });
    }

    /// Sends everything queued: one sendmmsg per socket (per run of
    /// datagrams for one socket, order kept within a socket). A datagram the
    /// kernel refuses (unreachable network, EPERM from a firewall, a full
    /// buffer) is skipped and reported to `failed`; the rest still go.
    pub fn flush(&mut self, mut failed: impl FnMut(DropReason)) {
        if self.queue.is_empty() {
            return;
        }
        // Group by socket, keeping queue order inside a group (the index is
        // the tie-break, so an unstable sort, which does not allocate, is
        // enough).
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend(
            self.queue
                .iter()
                .enumerate()
                .map(|(i, q)| (q.socket.get_ref().as_raw_fd(), i)),
        );
        order.sort_unstable();
        for run in order.chunk_by(|a, b| a.0 == b.0) {
            for part in run.chunks(BATCH) {
                self.send_run(part, &mut failed);
            }
        }
        self.order = order;
        self.queue.clear();
    }

    /// One sendmmsg for queued datagrams `run` (at most BATCH indices into
    /// the queue, all for one socket). Consecutive datagrams to the same
    /// destination with the same length (the last may be shorter) go as one
    /// UDP GSO message (UDP_SEGMENT): the kernel's send path runs once for
    /// all of them and the segments are cut at the end. That is what a burst
    /// of one allocation looks like (video frames are cut into equal
    /// packets), and the benchmark's one-allocation load.
    fn send_run(&mut self, run: &[(RawFd, usize)], failed: &mut impl FnMut(DropReason)) {
        let fd = run[0].0;
        for (k, &(_, qi)) in run.iter().enumerate() {
            let (ptr, len) = {
                let d = self.data(self.queue[qi].bytes);
                (d.as_ptr(), d.len())
            };
            self.iovecs[k] = libc::iovec {
                iov_base: ptr as *mut libc::c_void,
                iov_len: len,
            };
        }
        // Messages as (first datagram, datagrams) spans of the run.
        let mut spans = [(0usize, 0usize); BATCH];
        let mut msgs = 0;
        let mut i = 0;
        while i < run.len() {
            let n = if self.gso { self.gso_span(run, i) } else { 1 };
            spans[msgs] = (i, n);
            msgs += 1;
            i += n;
        }
        for (m, &(first, n)) in spans[..msgs].iter().enumerate() {
            let q = &self.queue[run[first].1];
            let name = SockAddr::from(q.to);
            // SAFETY: SockAddr's storage is a sockaddr_storage of `len()` valid bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    name.as_ptr() as *const u8,
                    &mut self.names[m] as *mut libc::sockaddr_storage as *mut u8,
                    name.len() as usize,
                );
            }
            let segment = (n > 1).then_some(self.iovecs[first].iov_len as u16);
            let controllen = write_controls(&mut self.controls[m], q.src, segment);
            let h = &mut self.headers[m].msg_hdr;
            h.msg_name = &mut self.names[m] as *mut libc::sockaddr_storage as *mut libc::c_void;
            h.msg_namelen = name.len();
            h.msg_iov = &mut self.iovecs[first];
            h.msg_iovlen = n as _;
            h.msg_flags = 0;
            h.msg_control = if controllen == 0 {
                std::ptr::null_mut()
            } else {
                self.controls[m].as_mut_ptr() as *mut libc::c_void
            };
            h.msg_controllen = controllen as _;
        }
        let mut at = 0;
        // The message last tried again after an earlier ICMP error
        // surfaced on it (once each).
        let mut retried = usize::MAX;
        while at < msgs {
            // SAFETY: headers[at..msgs] were filled above and point at
            // buffers that stay alive and unmodified for the call.
            let sent = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers[at..].as_mut_ptr(),
                    (msgs - at) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent > 0 {
                at += sent as usize;
                continue;
            }
            // sendmmsg reports an error only for the first message of the
            // call: that one is tried once more if the error may be an
            // earlier ICMP error the socket held (IP_RECVERR), else dropped
            // (or, for a GSO message the kernel refused as such, sent
            // datagram by datagram); the next call starts after it.
            let err = io::Error::last_os_error();
            let (first, n) = spans[at];
            let gso_refused = matches!(
                err.raw_os_error(),
                Some(libc::EINVAL | libc::EIO | libc::EOPNOTSUPP | libc::EMSGSIZE)
            );
            if n > 1 && gso_refused {
                // EIO: the device cannot checksum segments; EINVAL: a
                // segment does not fit the path MTU; EMSGSIZE: nor with DF
                // set (DONT-FRAGMENT), which drops only that datagram. Stop
                // merging on this batch after EIO; the others depend on the
                // route or the datagram only.
                if err.raw_os_error() == Some(libc::EIO) {
                    self.gso = false;
                }
                for &(_, qi) in &run[first..first + n] {
                    self.send_one(qi, failed);
                }
            } else if retried != at && sockets::is_pending_icmp(&err) {
                retried = at;
                continue;
            } else {
                for &(_, qi) in &run[first..first + n] {
                    let q = &self.queue[qi];
                    tracing::trace!(to = %q.to, "udp send failed: {err}");
                    if let Some(reason) = q.on_failure {
                        failed(reason);
                    }
                }
            }
            at += 1;
        }
    }

    /// How many datagrams from `run[i]` on can go as one GSO message.
    fn gso_span(&self, run: &[(RawFd, usize)], i: usize) -> usize {
        let first = &self.queue[run[i].1];
        let size = self.iovecs[i].iov_len;
        if size == 0 || size > GSO_MAX_SIZE {
            return 1;
        }
        let mut n = 1;
        let mut total = size;
        while i + n < run.len() && n < GSO_MAX_SEGMENTS {
            let q = &self.queue[run[i + n].1];
            let len = self.iovecs[i + n].iov_len;
            if q.to != first.to || q.src != first.src || len == 0 || len > size || total + len > GSO_MAX_TOTAL {
                break;
            }
            n += 1;
            total += len;
            if len < size {
                break; // only the last segment may be shorter
            }
        }
        n
    }

    /// Sends queued datagram `qi` on its own (after a refused GSO message).
    fn send_one(&self, qi: usize, failed: &mut impl FnMut(DropReason)) {
        let q = &self.queue[qi];
        let data = self.data(q.bytes);
        let sent = match q.src {
            Some(src) => sockets::send_from(q.socket.get_ref(), data, q.to, src),
            None => sockets::send_now(q.socket.get_ref(), data, q.to),
        };
        if let Err(e) = sent {
            tracing::trace!(to = %q.to, "udp send failed: {e}");
            if let Some(reason) = q.on_failure {
                failed(reason);
            }
        }
    }

    /// The bytes of a queued datagram.
    fn data(&self, bytes: Bytes) -> &[u8] {
        match bytes {
            Bytes::Slot { slot, start, len } => &self.slots[slot * self.stride + start..][..len],
            Bytes::Reply { slot, len } => &self.replies[slot * REPLY_LEN..][..len],
        }
    }
}

/// Writes the control messages of one outgoing message into `buf`: the
/// source address for a wildcard socket (IP_PKTINFO) and the GSO segment
/// size (UDP_SEGMENT); returns their length (0: none).
fn write_controls(buf: &mut [u64; CONTROL_WORDS], src: Option<IpAddr>, segment: Option<u16>) -> usize {
    let base = buf.as_mut_ptr() as *mut libc::c_void;
    let mut len = 0;
    if let Some(src) = src {
        // SAFETY: buf is 64 aligned bytes; one pktinfo message takes at most 40.
        len = unsafe { sockets::write_pktinfo(base, src) };
    }
    if let Some(size) = segment {
        // SAFETY: CMSG_SPACE(2) = 24 more bytes fit after at most 40 (IPv6
        // pktinfo), 64 in all; `len` is a CMSG_SPACE, so the second header
        // starts aligned.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_control = (base as *mut u8).add(len) as *mut libc::c_void;
            msg.msg_controllen = libc::CMSG_SPACE(2) as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(2) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, size);
            len += libc::CMSG_SPACE(2) as usize;
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The control messages as the kernel reads them: (level, type, data).
    fn parse(buf: &mut [u64; CONTROL_WORDS], len: usize) -> Vec<(i32, i32, Vec<u8>)> {
        let mut out = Vec::new();
        // SAFETY: walks `len` bytes of `buf` with the CMSG_* macros.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_control = buf.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = len as _;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let n = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = std::slice::from_raw_parts(libc::CMSG_DATA(c), n).to_vec();
                out.push(((*c).cmsg_level, (*c).cmsg_type, data));
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        out
    }

    #[test]
    fn pktinfo_and_segment_size_fit_together_for_both_families() {
        for src in ["192.0.2.7".parse::<IpAddr>().unwrap(), "2001:db8::7".parse().unwrap()] {
            let mut buf = [0u64; CONTROL_WORDS];
            let len = write_controls(&mut buf, Some(src), Some(1200));
            assert!(len <= std::mem::size_of_val(&buf), "{src}: {len} bytes");
            let msgs = parse(&mut buf, len);
            assert_eq!(msgs.len(), 2, "{src}: {msgs:?}");
            assert_eq!((msgs[1].0, msgs[1].1), (libc::SOL_UDP, UDP_SEGMENT));
            assert_eq!(msgs[1].2, 1200u16.to_ne_bytes());
            let (level, ty) = if src.is_ipv4() {
                (libc::IPPROTO_IP, libc::IP_PKTINFO)
            } else {
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
            };
            assert_eq!((msgs[0].0, msgs[0].1), (level, ty), "{src}");
            let octets = match src {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            assert!(
                msgs[0].2.windows(octets.len()).any(|w| w == octets),
                "{src}: address in {:?}",
                msgs[0].2
            );
        }
        // Neither: no control messages at all.
        let mut buf = [0u64; CONTROL_WORDS];
        assert_eq!(write_controls(&mut buf, None, None), 0);
        assert_eq!(
            write_controls(&mut buf, None, Some(100)),
            unsafe { libc::CMSG_SPACE(2) } as usize
        );
    }
}
