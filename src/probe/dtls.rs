//! The probe's DTLS client for `turns:HOST:PORT?transport=udp` (RFC 7350):
//! OpenSSL over a connected UDP socket, trusting the system's CA store plus
//! `--ca` (or nothing with `--insecure`), offering ALPN "stun.turn" (RFC
//! 7443). Each read is bounded by the caller's deadline; a lost handshake
//! flight is sent again (DTLSv1_handle_timeout) until then.

use std::io::{self, Read, Write};
use std::net::{IpAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::deadline::{is_timeout, remaining};
use foreign_types::ForeignTypeRef;
use openssl::ssl::{ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslStream, SslVerifyMode, SslVersion};

/// `DTLSv1_handle_timeout` is a macro over SSL_ctrl with this command.
const DTLS_CTRL_HANDLE_TIMEOUT: std::ffi::c_int = 74;
/// How long one read waits during the handshake before a retransmission.
const RETRANSMIT: Duration = Duration::from_millis(500);

/// A connected UDP socket as a stream of whole datagrams.
pub struct UdpIo(pub UdpSocket);

impl Read for UdpIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf)
    }
}

impl Write for UdpIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub type DtlsStream = SslStream<UdpIo>;

/// The DTLS client settings shared by every `turns:…?transport=udp` target.
pub fn client_context(ca: Option<&Path>, insecure: bool) -> anyhow::Result<SslContext> {
    let mut b = SslContextBuilder::new(SslMethod::dtls_client()).context("DTLS: cannot create an OpenSSL context")?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))
        .context("DTLS protocol versions")?;
    if insecure {
        b.set_verify(SslVerifyMode::NONE);
    } else {
        b.set_default_verify_paths().context("DTLS: the system CA store")?;
        if let Some(file) = ca {
            b.set_ca_file(file)
                .with_context(|| format!("--ca {}: cannot read PEM certificates", file.display()))?;
        }
        b.set_verify(SslVerifyMode::PEER);
    }
    b.set_alpn_protos(b"\x09stun.turn").context("DTLS: ALPN")?;
    Ok(b.build())
}

/// Handshakes over `sock` (connected to the server) with `host` as the name
/// to verify, by `deadline`.
pub fn connect(ctx: &SslContext, sock: UdpSocket, host: &str, deadline: Instant) -> io::Result<DtlsStream> {
    let mut ssl = Ssl::new(ctx).map_err(io::Error::other)?;
    match host.parse::<IpAddr>() {
        Ok(ip) => ssl.param_mut().set_ip(ip),
        Err(_) => ssl.param_mut().set_host(host),
    }
    .map_err(io::Error::other)?;
    let mut stream = SslStream::new(ssl, UdpIo(sock)).map_err(io::Error::other)?;
    loop {
        let left = remaining(deadline).ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "DTLS handshake"))?;
        stream.get_ref().0.set_read_timeout(Some(left.min(RETRANSMIT)))?;
        match stream.connect() {
            Ok(()) => return Ok(stream),
            Err(e) if e.code() == ErrorCode::WANT_READ => {
                // SAFETY: a plain SSL_ctrl on the live SSL of `stream`.
                unsafe {
                    openssl_sys::SSL_ctrl(stream.ssl().as_ptr(), DTLS_CTRL_HANDLE_TIMEOUT, 0, std::ptr::null_mut());
                }
            }
            Err(e) => {
                let text = match stream.ssl().verify_result() {
                    openssl::x509::X509VerifyResult::OK => e.to_string(),
                    v => format!("certificate verify failed: {v}"),
                };
                return Err(io::Error::other(format!("DTLS: {text}")));
            }
        }
    }
}

/// The next record from the server, or None at `deadline`.
pub fn recv(stream: &mut DtlsStream, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 65536];
    let Some(left) = remaining(deadline) else {
        return Ok(None);
    };
    stream.get_ref().0.set_read_timeout(Some(left))?;
    match stream.ssl_read(&mut buf) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(e) if e.code() == ErrorCode::WANT_READ => Ok(None),
        Err(e) => match e.into_io_error() {
            Ok(io) if is_timeout(&io) => Ok(None),
            Ok(io) => Err(io),
            Err(e) => Err(io::Error::other(e)),
        },
    }
}
