//! The kernel fast path (issue 14, DESIGN.md §11): an XDP program
//! (bpf/xdp_relay.c, compiled by build.rs with clang) relays ChannelData for
//! bound channels both ways and answers plain Binding requests, and passes
//! everything else up to the userspace path, which stays complete. The core
//! says which channels the kernel may relay ([`proto::Offload`]); each shard
//! mirrors that into the maps ([`Mirror`]) and reads the kernel's counters
//! back into the core, so metrics, usage and close logs stay exact.
//!
//! Loaded with aya; attached with our own BPF_LINK_CREATE so the program
//! leaves with the process however it ends, and is never put over a
//! program someone else attached.

mod maps;
mod mirror;
mod syscall;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use anyhow::Context;

use crate::config::{FastpathMode, FastpathSection};

pub use maps::{Maps, Stat};
pub use mirror::Mirror;

/// The compiled program, or None when build.rs found no clang.
#[cfg(not(ternd_no_xdp))]
static PROGRAM: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_relay.o")));
#[cfg(ternd_no_xdp)]
static PROGRAM: Option<&[u8]> = None;

/// The message when the program was not built (tests look for it).
pub const NOT_BUILT: &str = "the XDP fast path was not built (clang or libbpf-dev was missing at build time)";

/// XDP attach flags (linux/if_link.h).
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// The loaded program, attached to its interfaces while this lives.
pub struct FastPath {
    /// Keeps the program and its maps loaded.
    _ebpf: aya::Ebpf,
    /// One bpf_link per interface: dropping them detaches.
    links: Vec<(String, OwnedFd)>,
    maps: Arc<Maps>,
    generic: bool,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("interfaces", &self.interfaces())
            .field("generic", &self.generic)
            .finish()
    }
}

impl FastPath {
    /// Attaches as `config` asks, answering Binding requests on the UDP
    /// listeners `udp`. `Ok(None)` when off, or when `auto` could not
    /// attach (after a warning); an error naming the key otherwise.
    pub fn start(config: &FastpathSection, udp: &[std::net::SocketAddr]) -> anyhow::Result<Option<FastPath>> {
        let f = match config.mode {
            FastpathMode::Off => return Ok(None),
            FastpathMode::Xdp => FastPath::attach(&config.interfaces, false),
            FastpathMode::XdpGeneric => FastPath::attach(&config.interfaces, true),
            FastpathMode::Auto => match FastPath::attach(&config.interfaces, false) {
                Ok(f) => Ok(f),
                Err(native) => FastPath::attach(&config.interfaces, true).map_err(|generic| {
                    tracing::warn!(
                        "fastpath.mode = \"auto\": running without the kernel fast path (native: {native:#}; generic: {generic:#})"
                    );
                    generic
                }),
            },
        };
        let f = match (f, config.mode) {
            (Ok(f), _) => f,
            (Err(_), FastpathMode::Auto) => return Ok(None),
            (Err(e), _) => return Err(e.context("fastpath.mode")),
        };
        for &addr in udp {
            f.maps
                .add_listener(addr)
                .with_context(|| format!("fastpath: listener {addr}"))?;
        }
        for iface in f.interfaces() {
            warn_without_forwarding(iface);
        }
        tracing::info!(
            interfaces = ?f.interfaces(),
            mode = if f.generic { "generic" } else { "native" },
            "XDP fast path attached"
        );
        Ok(Some(f))
    }

    fn attach(interfaces: &[String], generic: bool) -> anyhow::Result<FastPath> {
        let program = PROGRAM.context(NOT_BUILT)?;
        let mut ebpf = aya::Ebpf::load(program).context("loading the XDP program")?;
        let xdp: &mut aya::programs::Xdp = ebpf
            .program_mut("ternd_xdp")
            .context("the XDP object has no ternd_xdp program")?
            .try_into()
            .context("ternd_xdp is not an XDP program")?;
        xdp.load().context("the kernel refused the XDP program")?;
        let prog = xdp
            .fd()
            .context("the XDP program has no descriptor")?
            .as_fd()
            .try_clone_to_owned()?;
        let flags = if generic {
            XDP_FLAGS_SKB_MODE
        } else {
            XDP_FLAGS_DRV_MODE
        };
        let mut links = Vec::new();
        for name in interfaces {
            let c = std::ffi::CString::new(name.as_str()).context("fastpath.interfaces: a name with a NUL byte")?;
            // SAFETY: `c` is a valid NUL-terminated string for the call.
            let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
            if ifindex == 0 {
                anyhow::bail!("fastpath.interfaces: no interface `{name}`");
            }
            let link = syscall::attach_xdp(prog.as_fd(), ifindex, flags).with_context(|| {
                format!(
                    "fastpath.interfaces: cannot attach {} XDP to `{name}`",
                    if generic { "generic" } else { "native" }
                )
            })?;
            links.push((name.clone(), link));
        }
        let fd = |name: &str| -> anyhow::Result<OwnedFd> {
            use aya::maps::Map;
            let data = match ebpf.map(name) {
                Some(Map::HashMap(d) | Map::PerCpuHashMap(d) | Map::PerCpuArray(d)) => d,
                _ => anyhow::bail!("the XDP object has no map {name}"),
            };
            Ok(data.fd().as_fd().try_clone_to_owned()?)
        };
        let maps = Maps {
            to_peer: fd("to_peer")?,
            to_client: fd("to_client")?,
            traffic: fd("traffic")?,
            listeners: fd("listeners")?,
            stats: fd("stats")?,
            cpus: syscall::possible_cpus().context("counting CPUs")?,
        };
        Ok(FastPath {
            _ebpf: ebpf,
            links,
            maps: Arc::new(maps),
            generic,
        })
    }

    pub fn maps(&self) -> Arc<Maps> {
        self.maps.clone()
    }

    pub fn interfaces(&self) -> Vec<&str> {
        self.links.iter().map(|(n, _)| n.as_str()).collect()
    }
}

impl Drop for FastPath {
    fn drop(&mut self) {
        tracing::info!(interfaces = ?self.interfaces(), "XDP fast path detached");
    }
}

/// bpf_fib_lookup only finds next hops on interfaces that forward; without
/// forwarding every relayed datagram goes up to userspace. Say so.
fn warn_without_forwarding(iface: &str) {
    for family in ["ipv4", "ipv6"] {
        let path = format!("/proc/sys/net/{family}/conf/{iface}/forwarding");
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
            tracing::warn!(
                interface = iface,
                "{family} forwarding is off ({path}): the XDP fast path cannot find next hops there and passes those datagrams to userspace"
            );
        }
    }
}
