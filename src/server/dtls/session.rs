//! One DTLS session (RFC 7350) as the shard holds it: an OpenSSL `Ssl`
//! driven through an in-memory datagram stream, so the state machine never
//! touches a socket. The driver pushes each received datagram in, takes the
//! plaintext records out (each one STUN message or ChannelData), and every
//! datagram OpenSSL produced (handshake flights, alerts, records) leaves at
//! once from the listener socket: nothing waits in a queue, so the only
//! bytes a session holds are one flight while it is being written.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use foreign_types::ForeignTypeRef;
use openssl::ssl::{ErrorCode, Ssl, SslContext, SslStream};

use super::super::mmsg::Udp;
use super::super::sockets;
use crate::budget::ConnPermit;
use crate::dtls::Datagrams;

/// The path MTU assumed for handshake flights (a certificate chain is
/// fragmented to fit): the IPv6 minimum less IP and UDP headers, so it
/// passes every path. Records of relayed data are sent whole.
const MTU: u32 = 1232;
/// Datagrams waiting to be read by OpenSSL. Each is pushed and read at once,
/// so more than one means OpenSSL stopped reading: a bound, not a buffer.
const MAX_INBOUND: usize = 4;
/// The largest plaintext record taken (RFC 6347 §4.1: 2^14).
const MAX_RECORD: usize = 16384;

extern "C" {
    // Exported by libssl (ssl.h) but not bound by openssl-sys.
    fn DTLSv1_listen(s: *mut openssl_sys::SSL, client: *mut std::ffi::c_void) -> std::ffi::c_int;
    fn BIO_ADDR_new() -> *mut std::ffi::c_void;
    fn BIO_ADDR_free(a: *mut std::ffi::c_void);
}
/// `DTLSv1_handle_timeout` is a macro over SSL_ctrl with this command.
const DTLS_CTRL_HANDLE_TIMEOUT: std::ffi::c_int = 74;

/// Plaintext records taken from a session, back to back in one buffer
/// that is kept and reused, so taking records allocates nothing once it
/// has grown. The buffer only grows (zeroed once): `bytes[..used]` holds
/// the records, the rest is room for the next read.
#[derive(Default)]
pub struct Records {
    bytes: Vec<u8>,
    used: usize,
    ends: Vec<usize>,
}

impl Records {
    pub fn clear(&mut self) {
        self.used = 0;
        self.ends.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter()).map(|(a, &b)| &self.bytes[a..b])
    }

    /// Room for one more record of at most `MAX_RECORD` bytes.
    fn room(&mut self) -> &mut [u8] {
        let end = self.used + MAX_RECORD;
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        &mut self.bytes[self.used..end]
    }

    /// Keeps the `n` bytes just read into `room()` as one record.
    fn push(&mut self, n: usize) {
        self.used += n;
        self.ends.push(self.used);
    }
}

/// Why a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The client sent close_notify (or a fatal alert).
    Closed,
    /// The handshake failed (no shared cipher or ALPN protocol, ...).
    HandshakeFailed,
    /// A fatal error after the handshake, or a time budget.
    Failed,
    /// The client proved its address with a new ClientHello (RFC 6347 §4.2.8).
    Replaced,
}

/// Where a session's datagrams go: the listener socket it came in on, the
/// client, and the source address to send from on a wildcard listener.
pub struct Route {
    pub socket: Rc<Udp>,
    pub client: SocketAddr,
    pub src: Option<IpAddr>,
}

impl Route {
    /// Sends one datagram to the client, at once.
    pub fn send(&self, datagram: &[u8]) -> std::io::Result<()> {
        match self.src {
            Some(ip) => sockets::send_from(self.socket.get_ref(), datagram, self.client, ip),
            None => sockets::send_now(self.socket.get_ref(), datagram, self.client),
        }
        .map(drop)
    }
}

pub struct DtlsSession {
    stream: SslStream<Datagrams>,
    route: Route,
    /// The handshake is complete.
    pub open: bool,
    pub started: Instant,
    /// When a record from the client last decrypted (or the handshake
    /// completed): what `stream.idle_timeout` counts from. A datagram
    /// that fails the MAC proves nothing (anyone who knows the 5-tuple can
    /// send one), so it does not count.
    pub last_seen: Instant,
    /// The client random of the ClientHello that started it.
    pub hello_random: [u8; 32],
    /// It has held an allocation (seen by the sweep).
    pub authenticated: bool,
    /// Counted against the session budgets while it lives.
    _permit: ConnPermit,
}

impl DtlsSession {
    /// Starts a session from a ClientHello whose cookie the driver verified
    /// (`cookie::Hello::Verified`) and answers it (ServerHello flight).
    pub fn start(
        ctx: &SslContext,
        hello: &[u8],
        route: Route,
        permit: ConnPermit,
        now: Instant,
    ) -> Result<DtlsSession, End> {
        let mut ssl = Ssl::new(ctx).map_err(|_| End::HandshakeFailed)?;
        ssl.set_mtu(MTU).map_err(|_| End::HandshakeFailed)?;
        let mut io = Datagrams::default();
        io.push_inbound(hello);
        let stream = SslStream::new(ssl, io).map_err(|_| End::HandshakeFailed)?;
        // DTLSv1_listen takes the verified hello (its cookie callback says
        // yes), and sets the handshake and record sequence numbers a
        // session needs after a HelloVerifyRequest (RFC 6347 §4.2.2) that
        // a fresh SSL_accept would not expect.
        // SAFETY: the SSL pointer is live for the call (owned by `stream`);
        // the BIO_ADDR is allocated here, only written by OpenSSL, freed here.
        let listened = unsafe {
            let addr = BIO_ADDR_new();
            if addr.is_null() {
                return Err(End::HandshakeFailed);
            }
            let rc = DTLSv1_listen(stream.ssl().as_ptr(), addr);
            BIO_ADDR_free(addr);
            rc
        };
        let mut s = DtlsSession {
            stream,
            route,
            open: false,
            started: now,
            last_seen: now,
            hello_random: super::cookie::client_random(hello).unwrap_or_default(),
            authenticated: false,
            _permit: permit,
        };
        if listened != 1 {
            return Err(End::HandshakeFailed);
        }
        s.advance(&mut Records::default())?;
        Ok(s)
    }

    /// Takes one datagram from the client; complete plaintext records are
    /// appended to `records`. Garbage (a bad MAC, a replay) is dropped by
    /// OpenSSL without an error, and leaves `last_seen` as it was.
    pub fn receive(&mut self, datagram: &[u8], now: Instant, records: &mut Records) -> Result<(), End> {
        let io = self.stream.get_mut();
        if io.inbound.len() < MAX_INBOUND {
            io.push_inbound(datagram);
        }
        let (before, was_open) = (records.ends.len(), self.open);
        let result = self.advance(records);
        // Only the idle rule reads it, and only once the handshake is done
        // (`tls.handshake_timeout` bounds the handshake from `started`).
        if records.ends.len() > before || self.open != was_open {
            self.last_seen = now;
        }
        result
    }

    fn advance(&mut self, records: &mut Records) -> Result<(), End> {
        let result = self.step(records);
        self.flush();
        result
    }

    fn step(&mut self, records: &mut Records) -> Result<(), End> {
        if !self.open {
            match self.stream.accept() {
                Ok(()) => self.open = true,
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) => {
                    tracing::debug!(client = %self.route.client, "dtls handshake failed: {e}");
                    return Err(End::HandshakeFailed);
                }
            }
        }
        loop {
            match self.stream.ssl_read(records.room()) {
                Ok(n) => records.push(n),
                Err(e) if e.code() == ErrorCode::WANT_READ => return Ok(()),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Err(End::Closed),
                Err(e) => {
                    tracing::debug!(client = %self.route.client, "dtls session failed: {e}");
                    return Err(End::Failed);
                }
            }
        }
    }

    /// Sends one STUN message or ChannelData to the client as one record;
    /// false if it could not leave (no session yet, full socket buffer).
    pub fn send(&mut self, data: &[u8]) -> bool {
        if !self.open {
            return false;
        }
        let written = self.stream.ssl_write(data).is_ok();
        self.flush() && written
    }

    /// Retransmits the last handshake flight if OpenSSL's timer says so
    /// (RFC 6347 §4.2.4); called by the driver's sweep.
    pub fn handle_timeout(&mut self) {
        if self.open {
            return;
        }
        // SAFETY: a plain SSL_ctrl on the live SSL of `stream`.
        unsafe {
            openssl_sys::SSL_ctrl(
                self.stream.ssl().as_ptr(),
                DTLS_CTRL_HANDLE_TIMEOUT,
                0,
                std::ptr::null_mut(),
            );
        }
        self.flush();
    }

    /// Sends close_notify (an open session being closed by the server).
    pub fn close(&mut self) {
        if self.open {
            let _ = self.stream.shutdown();
            self.flush();
        }
    }

    /// Sends what OpenSSL wrote; false if any datagram could not leave.
    fn flush(&mut self) -> bool {
        let mut ok = true;
        for d in self.stream.get_mut().outbound.drain(..) {
            ok &= self.route.send(&d).is_ok();
            crate::dtls::recycle(d);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_out_as_they_went_in_and_the_buffer_is_reused() {
        let mut r = Records::default();
        for (i, rec) in [&b"stun"[..], b"", b"channel data"].iter().enumerate() {
            r.room()[..rec.len()].copy_from_slice(rec);
            r.push(rec.len());
            assert_eq!(r.iter().count(), i + 1);
        }
        let got: Vec<&[u8]> = r.iter().collect();
        assert_eq!(got, [&b"stun"[..], b"", b"channel data"]);
        let (len, ptr) = (r.bytes.len(), r.bytes.as_ptr());
        // Room for one record past the last read: grown by what records
        // took, not by MAX_RECORD per read.
        assert_eq!(len, 4 + MAX_RECORD);
        r.clear();
        assert_eq!(r.iter().count(), 0);
        // The next datagram's records reuse the buffer as it is.
        r.room()[..4].copy_from_slice(b"next");
        r.push(4);
        assert_eq!((r.bytes.len(), r.bytes.as_ptr()), (len, ptr));
        assert_eq!(r.iter().collect::<Vec<_>>(), [&b"next"[..]]);
    }
}
