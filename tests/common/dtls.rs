//! A DTLS 1.2 client (OpenSSL) for tests, driven datagram by datagram over
//! ternd's `Datagrams` shim, so a test sees (and may withhold or copy)
//! every datagram: the first ClientHello, a handshake left half-done.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use openssl::ssl::{ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslStream, SslVerifyMode};
use ternd::dtls::Datagrams;

/// A DTLS 1.2 client trusting only the test certificate, offering `alpn`.
pub fn client_context(cert: &super::TestCert, alpn: &[&str]) -> SslContext {
    let mut b = SslContextBuilder::new(SslMethod::dtls_client()).unwrap();
    b.set_ca_file(&cert.cert_file).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    b.set_options(SslOptions::NO_QUERY_MTU);
    if !alpn.is_empty() {
        let mut wire = Vec::new();
        for p in alpn {
            wire.push(p.len() as u8);
            wire.extend_from_slice(p.as_bytes());
        }
        b.set_alpn_protos(&wire).unwrap();
    }
    b.build()
}

pub struct Client {
    pub sock: UdpSocket,
    pub ssl: SslStream<Datagrams>,
}

impl Client {
    pub fn new(server: SocketAddr, ctx: &SslContext) -> Client {
        Client::over(UdpSocket::bind("127.0.0.1:0").unwrap(), server, ctx)
    }

    /// A new session over `sock` (a client that restarts on the same port).
    pub fn over(sock: UdpSocket, server: SocketAddr, ctx: &SslContext) -> Client {
        sock.connect(server).unwrap();
        let mut ssl = Ssl::new(ctx).unwrap();
        ssl.set_mtu(1200).unwrap();
        ssl.param_mut().set_ip(server.ip()).unwrap();
        let ssl = SslStream::new(ssl, Datagrams::default()).unwrap();
        Client { sock, ssl }
    }

    /// Sends what OpenSSL wrote; returns the datagrams' sizes.
    pub fn flush(&mut self) -> Vec<usize> {
        let out: Vec<Vec<u8>> = self.ssl.get_mut().outbound.drain(..).collect();
        for d in &out {
            self.sock.send(d).unwrap();
        }
        out.iter().map(Vec::len).collect()
    }

    /// Waits up to `limit` for one datagram from the server.
    pub fn receive(&mut self, limit: Duration) -> Option<Vec<u8>> {
        self.sock.set_read_timeout(Some(limit)).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(buf[..n].to_vec())
    }

    /// One step of the handshake: Ok(true) when complete, Ok(false) when
    /// OpenSSL waits for the server.
    pub fn step(&mut self) -> Result<bool, String> {
        let r = self.ssl.connect();
        self.flush();
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.code() == ErrorCode::WANT_READ => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Completes the handshake (bounded: 5 s without an answer fails).
    pub fn handshake(&mut self) -> Result<(), String> {
        for _ in 0..50 {
            if self.step()? {
                return Ok(());
            }
            let d = self
                .receive(Duration::from_secs(5))
                .ok_or("no answer from the server")?;
            self.ssl.get_mut().inbound.push_back(d);
        }
        Err("the handshake did not end".into())
    }

    pub fn send(&mut self, data: &[u8]) {
        self.ssl.ssl_write(data).unwrap();
        self.flush();
    }

    /// The next record from the server; None after 5 s without one.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        for _ in 0..50 {
            match self.ssl.ssl_read(&mut buf) {
                Ok(n) => return Some(buf[..n].to_vec()),
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    let d = self.receive(Duration::from_secs(5))?;
                    self.ssl.get_mut().inbound.push_back(d);
                }
                Err(e) => panic!("dtls read: {e}"),
            }
        }
        None
    }

    /// A Binding over the session; returns XOR-MAPPED-ADDRESS.
    pub fn binding(&mut self) -> SocketAddr {
        let request = super::binding_request();
        self.send(&request.raw);
        super::mapped_address(&request, &self.recv().expect("a Binding response"))
    }
}
