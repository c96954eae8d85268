//! One client connection to a STUN/TURN server over UDP, TCP, TLS or DTLS, with
//! blocking sockets whose every read is bounded by a deadline. Stream
//! transports are cut into messages with the core's framing (RFC 8489
//! §6.2.2, RFC 8656 §12.5).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::framing::{next_frame, Frame};

pub use super::deadline::{is_timeout, remaining};
use super::url::Transport;

/// The largest message the probe accepts on a stream (a full ChannelData frame).
const MAX_FRAME: usize = 4 + 65536;

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

pub enum Conn {
    Udp {
        sock: UdpSocket,
        server: SocketAddr,
        /// The last address a datagram came from that was not `server`
        /// (a multihomed server answering from another IP, a NAT rewriting it).
        stray: Option<SocketAddr>,
    },
    Tcp {
        stream: TcpStream,
        buf: Vec<u8>,
    },
    Tls {
        stream: Box<TlsStream>,
        buf: Vec<u8>,
    },
    /// DTLS (RFC 7350): one record per message, like a datagram.
    Dtls {
        stream: Box<super::dtls::DtlsStream>,
    },
}

/// What TLS and DTLS need: the client configs and the name to verify.
pub struct TlsParams {
    pub config: Arc<rustls::ClientConfig>,
    pub name: rustls::pki_types::ServerName<'static>,
    pub dtls: openssl::ssl::SslContext,
    pub host: String,
}

/// The unspecified address of `server`'s family, or `bind` if given.
pub fn local_ip(bind: Option<IpAddr>, server: SocketAddr) -> IpAddr {
    bind.unwrap_or(if server.is_ipv4() {
        IpAddr::from([0u8; 4])
    } else {
        IpAddr::from([0u16; 8])
    })
}

impl Conn {
    /// A UDP socket bound to `bind` (or the unspecified address) for `server`.
    pub fn udp_socket(bind: Option<IpAddr>, server: SocketAddr) -> io::Result<UdpSocket> {
        UdpSocket::bind(SocketAddr::new(local_ip(bind, server), 0))
    }

    pub fn connect(
        transport: Transport,
        server: SocketAddr,
        bind: Option<IpAddr>,
        tls: Option<&TlsParams>,
        deadline: Instant,
    ) -> io::Result<Conn> {
        if transport == Transport::Udp {
            return Ok(Conn::udp(Self::udp_socket(bind, server)?, server));
        }
        if transport == Transport::Dtls {
            let tls = tls.ok_or_else(|| io::Error::other("no DTLS configuration"))?;
            let sock = Self::udp_socket(bind, server)?;
            sock.connect(server)?;
            let stream = super::dtls::connect(&tls.dtls, sock, &tls.host, deadline)?;
            return Ok(Conn::Dtls {
                stream: Box::new(stream),
            });
        }
        let stream = tcp_connect(server, bind, deadline)?;
        stream.set_nodelay(true)?;
        match transport {
            Transport::Tcp => Ok(Conn::Tcp {
                stream,
                buf: Vec::new(),
            }),
            _ => {
                let tls = tls.ok_or_else(|| io::Error::other("no TLS configuration"))?;
                let mut conn =
                    rustls::ClientConnection::new(tls.config.clone(), tls.name.clone()).map_err(io::Error::other)?;
                // Handshake now, so a certificate problem is reported as such.
                handshake(&mut conn, &stream, deadline)?;
                Ok(Conn::Tls {
                    stream: Box::new(rustls::StreamOwned::new(conn, stream)),
                    buf: Vec::new(),
                })
            }
        }
    }

    /// A UDP connection to `server` over an existing socket (the mapping
    /// test shares one socket between several servers).
    pub fn udp(sock: UdpSocket, server: SocketAddr) -> Conn {
        Conn::Udp {
            sock,
            server,
            stray: None,
        }
    }

    /// Where unexpected UDP replies came from, if any did.
    pub fn stray(&self) -> Option<SocketAddr> {
        match self {
            Conn::Udp { stray, .. } => *stray,
            _ => None,
        }
    }

    /// The ALPN protocol a TLS server agreed to (RFC 7443), if any.
    pub fn alpn(&self) -> Option<String> {
        match self {
            Conn::Tls { stream, .. } => stream
                .conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            Conn::Dtls { stream } => stream
                .ssl()
                .selected_alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            _ => None,
        }
    }

    pub fn is_stream(&self) -> bool {
        matches!(self, Conn::Tcp { .. } | Conn::Tls { .. })
    }

    /// The local transport address packets to the server leave from. For a
    /// UDP socket bound to the unspecified address the IP is the one the
    /// kernel's route to the server picks (learnt from a connected socket,
    /// which sends nothing).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Conn::Udp { sock, server, .. } => {
                let local = sock.local_addr()?;
                if !local.ip().is_unspecified() {
                    return Ok(local);
                }
                let route = UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
                route.connect(server)?;
                Ok(SocketAddr::new(route.local_addr()?.ip(), local.port()))
            }
            Conn::Tcp { stream, .. } => stream.local_addr(),
            Conn::Tls { stream, .. } => stream.sock.local_addr(),
            Conn::Dtls { stream } => stream.get_ref().0.local_addr(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp { sock, server, .. } => sock.send_to(bytes, *server).map(|_| ()),
            Conn::Tcp { stream, .. } => stream.write_all(bytes),
            Conn::Tls { stream, .. } => {
                stream.write_all(bytes)?;
                stream.flush()
            }
            Conn::Dtls { stream } => stream.ssl_write(bytes).map(|_| ()).map_err(io::Error::other),
        }
    }

    /// ChannelData (RFC 8656 §12.4), padded to a multiple of 4 on streams (§12.5).
    pub fn send_channel_data(&mut self, channel: u16, payload: &[u8]) -> io::Result<()> {
        let mut m = Vec::with_capacity(payload.len() + 7);
        m.extend_from_slice(&channel.to_be_bytes());
        m.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        m.extend_from_slice(payload);
        if self.is_stream() {
            m.resize(proto::wire::pad4(m.len()), 0);
        }
        self.send(&m)
    }

    /// The next message from the server (a datagram, or one STUN or
    /// ChannelData frame with its padding removed), or `None` at `deadline`.
    /// UDP datagrams from other addresses are ignored.
    pub fn recv(&mut self, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
        match self {
            Conn::Udp { sock, server, stray } => {
                let mut buf = vec![0u8; 65536];
                loop {
                    let Some(left) = remaining(deadline) else {
                        return Ok(None);
                    };
                    sock.set_read_timeout(Some(left))?;
                    match sock.recv_from(&mut buf) {
                        Ok((n, from)) if from == *server => return Ok(Some(buf[..n].to_vec())),
                        Ok((_, from)) => *stray = Some(from),
                        Err(e) if is_timeout(&e) => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
            }
            Conn::Tcp { stream, buf } => read_frame(stream, |s| s, buf, deadline),
            Conn::Tls { stream, buf } => read_frame(stream.as_mut(), |s| &s.sock, buf, deadline),
            Conn::Dtls { stream } => super::dtls::recv(stream, deadline),
        }
    }
}

impl Conn {
    /// Exactly `n` raw bytes: an RFC 6062 data connection carries no
    /// framing once bound. Times out at `deadline`.
    pub fn read_raw(&mut self, n: usize, deadline: Instant) -> io::Result<Vec<u8>> {
        match self {
            Conn::Udp { .. } | Conn::Dtls { .. } => Err(io::Error::other("UDP carries no data connections")),
            Conn::Tcp { stream, buf } => read_exact(stream, |s| s, buf, n, deadline),
            Conn::Tls { stream, buf } => read_exact(stream.as_mut(), |s| &s.sock, buf, n, deadline),
        }
    }
}

fn read_exact<S: Read>(
    stream: &mut S,
    sock: impl Fn(&S) -> &TcpStream,
    buf: &mut Vec<u8>,
    n: usize,
    deadline: Instant,
) -> io::Result<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    while buf.len() < n {
        if remaining(deadline).is_none() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        set_timeouts(sock(stream), deadline)?;
        match stream.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            k => buf.extend_from_slice(&chunk[..k]),
        }
    }
    Ok(buf.drain(..n).collect())
}

fn read_frame<S: Read>(
    stream: &mut S,
    sock: impl Fn(&S) -> &TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<Option<Vec<u8>>> {
    let mut chunk = [0u8; 8192];
    loop {
        match next_frame(buf, MAX_FRAME) {
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            Ok(Some(frame)) => {
                let keep = match frame {
                    Frame::Stun(n) => n,
                    Frame::ChannelData { payload, .. } => 4 + payload,
                };
                let msg = buf[..keep].to_vec();
                buf.drain(..frame.len());
                return Ok(Some(msg));
            }
            Ok(None) => {}
        }
        if remaining(deadline).is_none() {
            return Ok(None);
        }
        set_timeouts(sock(stream), deadline)?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

fn tcp_connect(server: SocketAddr, bind: Option<IpAddr>, deadline: Instant) -> io::Result<TcpStream> {
    let left = remaining(deadline).ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?;
    let Some(ip) = bind else {
        return TcpStream::connect_timeout(&server, left);
    };
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(server),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    sock.bind(&SocketAddr::new(ip, 0).into())?;
    sock.connect_timeout(&server.into(), left)?;
    Ok(sock.into())
}

/// Completes the TLS handshake of `tls` over `sock` by `deadline`, however
/// slowly the server sends its flight.
pub fn handshake(tls: &mut rustls::ClientConnection, sock: &TcpStream, deadline: Instant) -> io::Result<()> {
    let mut io = Bounded { sock, deadline };
    while tls.is_handshaking() {
        tls.complete_io(&mut io)?;
    }
    Ok(())
}

/// A TCP stream whose every read and write is bounded by the time left
/// before `deadline`. `complete_io` reads as often as the handshake needs,
/// so timeouts set once would give each read a fresh full timeout.
pub struct Bounded<'a> {
    pub sock: &'a TcpStream,
    pub deadline: Instant,
}

impl Bounded<'_> {
    fn left(&self) -> io::Result<Duration> {
        remaining(self.deadline).ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    }
}

impl Read for Bounded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.set_read_timeout(Some(self.left()?))?;
        self.sock.read(buf)
    }
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.set_write_timeout(Some(self.left()?))?;
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn set_timeouts(s: &TcpStream, deadline: Instant) -> io::Result<()> {
    // A zero timeout means "block forever" to std, so never pass one.
    let left = remaining(deadline).unwrap_or(Duration::from_millis(1));
    s.set_read_timeout(Some(left))?;
    s.set_write_timeout(Some(left))
}
