//! The DTLS server context for TURN over DTLS (RFC 7350), from the same PEM
//! files as `[tls]`, with a certificate that can be replaced while running:
//! new sessions take the new context, established ones keep theirs.
//!
//! Why OpenSSL (the `openssl` crate over the system libssl) and not a
//! sans-IO crate: it is what coturn and libwebrtc's DTLS TURN client use
//! underneath, so a cipher-suite or record-layer quirk of those clients
//! meets the same implementation; it serves an X.509 chain from PEM files
//! with every suite OpenSSL 1.1/3 clients offer; and the DTLS state
//! machine can still be driven sans-IO through an in-memory datagram BIO
//! (`Datagrams`), so the shard keeps owning the socket. The sans-IO crate
//! dimpl has no RSA (ECDHE-ECDSA suites only): the RSA certificate most
//! operators already have for `listen.tls` could not be served.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::RwLock;

use anyhow::Context;
use openssl::ssl::{AlpnError, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslOptions, SslVersion};

/// The context every new DTLS session is made from.
pub struct DtlsSetup {
    ctx: RwLock<SslContext>,
    /// `tls.alpn`, as the ALPN wire format (length-prefixed names).
    alpn: Vec<u8>,
}

impl DtlsSetup {
    /// Loads the PEM chain and key; `alpn` is `tls.alpn` (RFC 7443): a
    /// client offering none of them is refused with a fatal
    /// no_application_protocol alert, one offering no ALPN is accepted.
    pub fn load(cert_file: &Path, key_file: &Path, alpn: &[String]) -> anyhow::Result<DtlsSetup> {
        let mut wire = Vec::new();
        for p in alpn {
            // Checked by config validation: the two STUN names, short.
            wire.push(u8::try_from(p.len()).context("tls.alpn: a protocol name is too long")?);
            wire.extend_from_slice(p.as_bytes());
        }
        let ctx = build(cert_file, key_file, &wire)?;
        Ok(DtlsSetup {
            ctx: RwLock::new(ctx),
            alpn: wire,
        })
    }

    /// The context for a new session.
    pub fn context(&self) -> SslContext {
        self.ctx.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads the files again (SIGHUP, `tls.watch_interval`); sessions
    /// made from now on present the new certificate.
    pub fn reload(&self, cert_file: &Path, key_file: &Path) -> anyhow::Result<()> {
        let ctx = build(cert_file, key_file, &self.alpn)?;
        *self.ctx.write().unwrap_or_else(|e| e.into_inner()) = ctx;
        Ok(())
    }
}

/// Whole datagrams in and out of OpenSSL, so a DTLS state machine never
/// touches a socket: its BIO reads and writes one datagram per call. The
/// owner pushes what arrived into `inbound` (`push_inbound`) and sends
/// what is in `outbound`, handing each sent buffer back (`recycle`) (the
/// shard's sessions; tests that watch every datagram).
#[derive(Default)]
pub struct Datagrams {
    pub inbound: VecDeque<Vec<u8>>,
    pub outbound: Vec<Vec<u8>>,
}

thread_local! {
    /// Spent datagram buffers of this thread (a shard runs on one thread,
    /// so its sessions share them): relaying a record allocates nothing
    /// once the list has filled, and no lock is taken.
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}
/// Buffers kept in [`SPARE`]: enough for a batch of relayed records and a
/// handshake flight.
const MAX_SPARE: usize = 64;
/// A buffer grown past this (a jumbo record) is freed, not kept.
const MAX_SPARE_CAPACITY: usize = 18 * 1024;

impl Datagrams {
    /// Queues a copy of `datagram` for OpenSSL to read.
    pub fn push_inbound(&mut self, datagram: &[u8]) {
        let mut d = spare_buffer();
        d.extend_from_slice(datagram);
        self.inbound.push_back(d);
    }
}

/// Hands a datagram buffer (one taken from `outbound`) back for reuse.
pub fn recycle(mut d: Vec<u8>) {
    if d.capacity() > MAX_SPARE_CAPACITY {
        return;
    }
    d.clear();
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < MAX_SPARE {
            spare.push(d);
        }
    });
}

fn spare_buffer() -> Vec<u8> {
    SPARE.with_borrow_mut(Vec::pop).unwrap_or_default()
}

impl Read for Datagrams {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let d = self.inbound.pop_front().ok_or(io::ErrorKind::WouldBlock)?;
        // OpenSSL reads with a buffer larger than any record; a longer
        // datagram is cut and then fails its MAC.
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        recycle(d);
        Ok(n)
    }
}

impl Write for Datagrams {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut d = spare_buffer();
        d.extend_from_slice(buf);
        self.outbound.push(d);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `SSL_CTRL_SET_MAX_CERT_LIST` of OpenSSL's ssl.h (not in openssl-sys).
const SSL_CTRL_SET_MAX_CERT_LIST: std::ffi::c_int = 51;
/// The largest handshake message a DTLS client may send us.
const MAX_HANDSHAKE_MESSAGE: std::ffi::c_long = 4096;

fn build(cert_file: &Path, key_file: &Path, alpn: &[u8]) -> anyhow::Result<SslContext> {
    let mut b = SslContextBuilder::new(SslMethod::dtls()).context("dtls: cannot create an OpenSSL context")?;
    // DTLS 1.0 is TLS 1.1 era (RFC 6347 obsoletes it); every client that
    // speaks TURN over DTLS does 1.2.
    // The MTU is set per session (`server::dtls::session`): the custom BIO
    // cannot answer the kernel's path MTU.
    b.set_options(SslOptions::NO_QUERY_MTU);
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))
        .context("dtls: protocol versions")?;
    b.set_certificate_chain_file(cert_file)
        .with_context(|| format!("tls.cert_file: cannot load {} for DTLS", cert_file.display()))?;
    b.set_private_key_file(key_file, SslFiletype::PEM)
        .with_context(|| format!("tls.key_file: cannot load {} for DTLS", key_file.display()))?;
    b.check_private_key()
        .context("tls: the certificate and key do not form a valid pair")?;
    // The cookie exchange (RFC 6347 §4.2.1) is done before OpenSSL sees a
    // datagram (`server::dtls::cookie`): only a ClientHello whose cookie
    // the driver has verified reaches DTLSv1_listen, which needs these
    // callbacks set to move the session past HelloVerifyRequest.
    b.set_cookie_verify_cb(|_, _| true);
    // Before the handshake ends, OpenSSL buffers each handshake message up
    // to `max_cert_list` bytes (100 KB by default) as announced by its
    // fragments, so a client past the cookie could pin ~1 MB per session
    // with ~8 KB of fragments. We never ask for a client certificate, so
    // no message a client sends needs more than a few hundred bytes.
    // SAFETY: SSL_CTX_ctrl on the context this builder owns; the command
    // takes a length and no pointer. The openssl crate has no wrapper.
    unsafe {
        openssl_sys::SSL_CTX_ctrl(
            b.as_ptr(),
            SSL_CTRL_SET_MAX_CERT_LIST,
            MAX_HANDSHAKE_MESSAGE,
            std::ptr::null_mut(),
        );
    }
    // OpenSSL 3 refuses client renegotiation already; say so for 1.1.1.
    b.set_options(SslOptions::NO_RENEGOTIATION);
    b.set_cookie_generate_cb(|_, _| Err(openssl::error::ErrorStack::get()));
    if !alpn.is_empty() {
        let ours = alpn.to_vec();
        b.set_alpn_select_callback(move |_, offered| first_shared(&ours, offered).ok_or(AlpnError::ALERT_FATAL));
    }
    Ok(b.build())
}

/// The first of our protocols (`ours`, in our order of preference) that
/// the client offered, as a slice of the client's list (ALPN wire format).
fn first_shared<'a>(ours: &[u8], offered: &'a [u8]) -> Option<&'a [u8]> {
    names(ours).find_map(|want| names(offered).find(|&got| got == want))
}

/// The names of an ALPN list (each prefixed by its length); a truncated
/// entry ends it.
fn names(mut b: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&n, rest) = b.split_first()?;
        let name = rest.get(..n as usize)?;
        b = &rest[n as usize..];
        Some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_picks_our_first_protocol_the_client_offers() {
        let ours = b"\x09stun.turn\x12stun.nat-discovery";
        assert_eq!(
            first_shared(ours, b"\x02h2\x12stun.nat-discovery"),
            Some(&b"stun.nat-discovery"[..])
        );
        assert_eq!(
            first_shared(ours, b"\x12stun.nat-discovery\x09stun.turn"),
            Some(&b"stun.turn"[..])
        );
        assert_eq!(first_shared(ours, b"\x02h2"), None);
        // A truncated list from the client ends the search, no panic.
        assert_eq!(first_shared(ours, b"\x20stun"), None);
    }

    #[test]
    fn datagram_buffers_are_reused_through_the_spare_list() {
        // Each test runs on its own thread, so SPARE starts empty here.
        let mut io = Datagrams::default();
        io.push_inbound(b"first");
        let mut buf = [0u8; 16];
        assert_eq!(io.read(&mut buf).unwrap(), 5);
        assert_eq!(SPARE.with_borrow(Vec::len), 1, "the read buffer went back");
        let ptr = SPARE.with_borrow(|s| s[0].as_ptr());
        io.write_all(b"out").unwrap();
        assert_eq!((io.outbound[0].as_ptr(), &io.outbound[0][..]), (ptr, &b"out"[..]));
        recycle(io.outbound.pop().unwrap());
        io.push_inbound(b"again");
        assert_eq!(io.inbound[0].as_ptr(), ptr, "the same buffer, no allocation");
        assert_eq!(io.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"again");
        recycle(Vec::with_capacity(MAX_SPARE_CAPACITY + 1));
        assert_eq!(SPARE.with_borrow(Vec::len), 1, "an oversized buffer is freed");
    }
}
