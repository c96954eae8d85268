//! Role newtypes for transport addresses, so a peer address cannot be passed
//! where a client address belongs (RFC 8656 §2 terminology).

use std::fmt;
use std::net::SocketAddr;

/// The transport a client reached the server over (RFC 8656 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// TCP and TLS are byte streams: messages are framed (RFC 8489 §6.2.2)
    /// and ChannelData is padded (RFC 8656 §12.5).
    pub fn is_stream(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

macro_rules! role_addr {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub SocketAddr);

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
