//! The kernel's maps as the driver sees them: `#[repr(C)]` mirrors of
//! bpf/maps.h, field for field, and the handles every shard shares.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

use proto::allocation::Traffic;

use super::syscall;

/// An address as the maps hold it: 16 bytes (IPv4 in the first 4) and 4 or 6.
fn ip_bytes(ip: IpAddr) -> ([u8; 16], u8) {
    let mut b = [0u8; 16];
    match proto::canonical(SocketAddr::new(ip, 0)).ip() {
        IpAddr::V4(v4) => {
            b[..4].copy_from_slice(&v4.octets());
            (b, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 6),
    }
}

/// A port as on the wire (network order in memory).
fn port_be(addr: &SocketAddr) -> u16 {
    addr.port().to_be()
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CdKey {
    client: [u8; 16],
    server: [u8; 16],
    client_port: u16,
    server_port: u16,
    channel: u16,
    family: u8,
    pad: u8,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ToPeerVal {
    relay: [u8; 16],
    peer: [u8; 16],
    relay_port: u16,
    peer_port: u16,
    pad: u32,
    expires_ns: u64,
    counter: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PeerKey {
    peer: [u8; 16],
    relay: [u8; 16],
    peer_port: u16,
    relay_port: u16,
    family: u8,
    pad: [u8; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ToClientVal {
    client: [u8; 16],
    server: [u8; 16],
    client_port: u16,
    server_port: u16,
    channel: u16,
    pad: u16,
    expires_ns: u64,
    counter: u64,
}

/// `struct traffic`: what one CPU relayed for one relay.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelTraffic {
    to_peer_bytes: u64,
    to_peer_packets: u64,
    to_client_bytes: u64,
    to_client_packets: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct ListenerKey {
    addr: [u8; 16],
    port: u16,
    family: u8,
    pad: u8,
}

/// Indexes of the per-CPU `stats` array (`enum stat`).
#[derive(Debug, Clone, Copy)]
pub enum Stat {
    /// Binding requests answered in the kernel.
    Binding = 0,
    /// ChannelData relayed to peers.
    ToPeer = 1,
    /// Peer datagrams relayed to clients.
    ToClient = 2,
    /// Packets handed up to the stack after a look.
    Pass = 3,
}

/// The two map entries of one channel, both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelKeys {
    pub to_peer: CdKey,
    pub to_client: PeerKey,
}

impl ChannelKeys {
    /// The keys of `c`, or None if the kernel cannot relay it: a relay
    /// bound to a wildcard, or a client and a peer of different families
    /// (RFC 6156 lets an IPv6 client reach IPv4 peers; the XDP program
    /// rewrites headers in place and leaves that to userspace).
    pub fn of(c: &proto::KernelChannel) -> Option<ChannelKeys> {
        let (client, family) = ip_bytes(c.tuple.client.0.ip());
        let (server, server_family) = ip_bytes(c.tuple.server.0.ip());
        let (peer, peer_family) = ip_bytes(c.peer.0.ip());
        let (relay, relay_family) = ip_bytes(c.relay_addr.ip());
        let same = family == server_family && family == peer_family && family == relay_family;
        if !same || c.relay_addr.ip().is_unspecified() {
            return None;
        }
        Some(ChannelKeys {
            to_peer: CdKey {
                client,
                server,
                client_port: port_be(&c.tuple.client.0),
                server_port: port_be(&c.tuple.server.0),
                channel: c.number.0.to_be(),
                family,
                pad: 0,
            },
            to_client: PeerKey {
                peer,
                relay,
                peer_port: port_be(&c.peer.0),
                relay_port: port_be(&c.relay_addr),
                family: peer_family,
                pad: [0; 3],
            },
        })
    }
}

/// Handles on the program's maps, shared by every shard (each bpf(2) call
/// is atomic; nothing here takes a lock).
#[derive(Debug)]
pub struct Maps {
    pub(super) to_peer: OwnedFd,
    pub(super) to_client: OwnedFd,
    pub(super) traffic: OwnedFd,
    pub(super) listeners: OwnedFd,
    pub(super) stats: OwnedFd,
    pub(super) cpus: usize,
}

impl Maps {
    /// Relays channel `c` in the kernel until `expires_ns` (CLOCK_MONOTONIC),
    /// counting into `counter`.
    pub fn install(&self, keys: &ChannelKeys, expires_ns: u64, counter: u64) -> io::Result<()> {
        let zero = vec![KernelTraffic::default(); self.cpus];
        match syscall::update(self.traffic.as_fd(), &counter, &zero[..], syscall::BPF_NOEXIST) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
            _ => {}
        }
        let to_client = ToClientVal {
            client: keys.to_peer.client,
            server: keys.to_peer.server,
            client_port: keys.to_peer.client_port,
            server_port: keys.to_peer.server_port,
            channel: keys.to_peer.channel,
            pad: 0,
            expires_ns,
            counter,
        };
        let to_peer = ToPeerVal {
            relay: keys.to_client.relay,
            peer: keys.to_client.peer,
            relay_port: keys.to_client.relay_port,
            peer_port: keys.to_client.peer_port,
            pad: 0,
            expires_ns,
            counter,
        };
        syscall::update(self.to_peer.as_fd(), &keys.to_peer, &to_peer, 0)?;
        syscall::update(self.to_client.as_fd(), &keys.to_client, &to_client, 0)
    }

    /// Stops relaying one channel.
    pub fn remove(&self, keys: &ChannelKeys) -> io::Result<()> {
        syscall::delete(self.to_peer.as_fd(), &keys.to_peer)?;
        syscall::delete(self.to_client.as_fd(), &keys.to_client)
    }

    /// What the kernel relayed into `counter` so far, all CPUs.
    pub fn traffic(&self, counter: u64) -> io::Result<Traffic> {
        let mut per_cpu = vec![KernelTraffic::default(); self.cpus];
        let mut t = Traffic::default();
        if syscall::lookup(self.traffic.as_fd(), &counter, &mut per_cpu)? {
            for c in &per_cpu {
                t.to_peer_bytes += c.to_peer_bytes;
                t.to_peer_packets += c.to_peer_packets;
                t.to_client_bytes += c.to_client_bytes;
                t.to_client_packets += c.to_client_packets;
            }
        }
        Ok(t)
    }

    /// Forgets counter `counter` (its allocation is gone).
    pub fn drop_counter(&self, counter: u64) -> io::Result<()> {
        syscall::delete(self.traffic.as_fd(), &counter)
    }

    /// Lets the kernel answer Binding requests to this UDP listener (a
    /// wildcard address answers for every address of its family, and `[::]`
    /// for IPv4 too, as a dual-stack socket does).
    pub fn add_listener(&self, addr: SocketAddr) -> io::Result<()> {
        let mut families = vec![ip_bytes(addr.ip())];
        if addr.ip().is_unspecified() {
            families = vec![([0; 16], if addr.is_ipv4() { 4 } else { 6 })];
            if addr.is_ipv6() {
                families.push(([0; 16], 4));
            }
        }
        for (ip, family) in families {
            let key = ListenerKey {
                addr: ip,
                port: port_be(&addr),
                family,
                pad: 0,
            };
            syscall::update(self.listeners.as_fd(), &key, &1u8, 0)?;
        }
        Ok(())
    }

    /// A kernel-wide counter, all CPUs.
    pub fn stat(&self, which: Stat) -> u64 {
        let mut per_cpu = vec![0u64; self.cpus];
        match syscall::lookup(self.stats.as_fd(), &(which as u32), &mut per_cpu) {
            Ok(true) => per_cpu.iter().sum(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use proto::{ChannelNumber, ClientAddr, FiveTuple, KernelChannel, PeerAddr, RelayId, ServerAddr, Transport};

    use super::ChannelKeys;

    fn channel(client: &str, peer: &str, relay: &str) -> KernelChannel {
        let client: std::net::SocketAddr = client.parse().unwrap();
        let server = if client.is_ipv4() {
            "192.0.2.1:3478"
        } else {
            "[2001:db8::1]:3478"
        };
        KernelChannel {
            tuple: FiveTuple {
                client: ClientAddr(client),
                server: ServerAddr(server.parse().unwrap()),
                transport: Transport::Udp,
            },
            relay: RelayId(7),
            relay_addr: relay.parse().unwrap(),
            number: ChannelNumber(0x4001),
            peer: PeerAddr(peer.parse().unwrap()),
        }
    }

    #[test]
    fn keys_are_in_wire_order_and_mixed_families_stay_in_userspace() {
        let k = ChannelKeys::of(&channel("198.51.100.7:4000", "203.0.113.9:5000", "192.0.2.1:50000")).unwrap();
        assert_eq!(k.to_peer.client[..4], [198, 51, 100, 7]);
        assert_eq!(k.to_peer.client[4..], [0; 12]);
        assert_eq!(k.to_peer.client_port.to_ne_bytes(), 4000u16.to_be_bytes());
        assert_eq!(k.to_peer.channel.to_ne_bytes(), [0x40, 0x01]);
        assert_eq!(k.to_client.relay_port.to_ne_bytes(), 50000u16.to_be_bytes());
        assert_eq!((k.to_peer.family, k.to_client.family), (4, 4));
        let v6 = ChannelKeys::of(&channel(
            "[2001:db8::7]:4000",
            "[2001:db8::9]:5000",
            "[2001:db8::1]:50000",
        ))
        .unwrap();
        assert_eq!(v6.to_client.family, 6);
        // RFC 6156: an IPv6 client with an IPv4 relay, and a wildcard relay.
        assert!(ChannelKeys::of(&channel("[2001:db8::7]:4000", "203.0.113.9:5000", "192.0.2.1:50000")).is_none());
        assert!(ChannelKeys::of(&channel("198.51.100.7:4000", "203.0.113.9:5000", "0.0.0.0:50000")).is_none());
    }
}
