//! The few bpf(2) commands the driver issues itself on file descriptors it
//! holds: map element updates, deletes and lookups from every shard thread
//! (aya's typed maps want one owner), and BPF_LINK_CREATE, so the XDP
//! program is always attached through a bpf_link that dies with the process
//! (aya falls back to a netlink attach, which would outlive a SIGKILL).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_LINK_CREATE: libc::c_long = 28;
/// `enum bpf_attach_type`: BPF_XDP.
const BPF_XDP: u32 = 37;
/// Map update flag: create only.
pub const BPF_NOEXIST: u64 = 1;

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 4],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised bpf_attr prefix of the size
    // passed; the kernel reads (and for lookups writes through) the
    // pointers inside it, which the callers keep valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Inserts or replaces `map[key] = value` (`value` may be one per CPU).
pub fn update<K, V: ?Sized>(map: BorrowedFd<'_>, key: &K, value: &V, flags: u64) -> io::Result<()> {
    let mut a = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: value as *const V as *const u8 as u64,
        flags,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
}

/// Deletes `map[key]`; a missing key is not an error.
pub fn delete<K>(map: BorrowedFd<'_>, key: &K) -> io::Result<()> {
    let mut a = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const K as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_DELETE_ELEM, &mut a) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r.map(drop),
    }
}

/// Reads `map[key]` into `out` (for a per-CPU map, one value per possible
/// CPU, each padded to 8 bytes); false if the key is missing.
pub fn lookup<K, V>(map: BorrowedFd<'_>, key: &K, out: &mut [V]) -> io::Result<bool> {
    let mut a = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const K as u64,
        value: out.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut a) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Attaches XDP program `prog` to interface `ifindex` through a bpf_link;
/// closing the returned descriptor (or the process ending) detaches it. The
/// kernel refuses (EBUSY) if another program is attached there already, so
/// ternd never replaces a program it does not own.
pub fn attach_xdp(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut a = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
        ..Default::default()
    };
    let fd = bpf(BPF_LINK_CREATE, &mut a)?;
    // SAFETY: BPF_LINK_CREATE returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// How many CPUs per-CPU maps hold a value for (the "possible" CPUs).
pub fn possible_cpus() -> io::Result<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut n = 0;
    for part in s.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let bad = |_| io::Error::new(io::ErrorKind::InvalidData, format!("possible CPUs: `{s}`"));
        let (a, b): (usize, usize) = (a.parse().map_err(bad)?, b.parse().map_err(bad)?);
        n = n.max(b + 1).max(a + 1);
    }
    Ok(n)
}

/// CLOCK_MONOTONIC now, in nanoseconds: what bpf_ktime_get_ns() reads,
/// and what std's `Instant` is built on, on Linux.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
