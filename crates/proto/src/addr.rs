//! Role newtypes for transport addresses, so a peer address cannot be passed
//! where a client address belongs (RFC 8656 §2 terminology).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The transport a client reached the server over (RFC 8656 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// DTLS over UDP (RFC 7350): TLS-like security with datagram framing,
    /// so it is handled like UDP (no framing, no ChannelData padding, UDP
    /// relays) and answered through the client's DTLS session.
    Dtls,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Dtls => "dtls",
        }
    }

    /// TCP and TLS are byte streams: messages are framed (RFC 8489 §6.2.2)
    /// and ChannelData is padded (RFC 8656 §12.5).
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }
}

macro_rules! role_addr {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub SocketAddr);

        impl $name {
            pub fn ip(&self) -> IpAddr {
                self.0.ip()
            }

            pub fn family(&self) -> Family {
                Family::of(self.0.ip())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

role_addr!(
    /// A client's transport address as the server sees it (its server-reflexive address).
    ClientAddr
);
role_addr!(
    /// The server's own listening transport address that a client sent to.
    ServerAddr
);
role_addr!(
    /// A peer's transport address: where relayed data goes and comes from
    /// (RFC 8656 §2, XOR-PEER-ADDRESS).
    PeerAddr
);

/// An IP address family (RFC 8656 §18.6 REQUESTED-ADDRESS-FAMILY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of `ip` as written (an IPv4-mapped IPv6 address is IPv6).
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// The 5-tuple that identifies a client's connection (RFC 8656 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub client: ClientAddr,
    pub server: ServerAddr,
    pub transport: Transport,
}

/// Unmaps `::ffff:a.b.c.d` to `a.b.c.d`, so a dual-stack socket reports the
/// address the client really has.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The part of a source address that counts as one source: the address for
/// IPv4, its /64 for IPv6 (one host or subscriber usually holds a whole
/// /64), IPv4-mapped IPv6 read as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey(u128);

impl SourceKey {
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(v4) => SourceKey(u32::from(v4) as u128),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey(u32::from(v4) as u128),
                // Tagged above the IPv4 space so the two never collide.
                None => SourceKey((u128::from(v6) >> 64) << 64 | 1 << 32),
            },
        }
    }
}

impl SourceKey {
    /// The key as a number (to hash it into a budget bucket).
    pub fn value(self) -> u128 {
        self.0
    }
}
