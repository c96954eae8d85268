//! A small blocking TURN client for tests, whose messages are encoded and
//! decoded by the webrtc-rs `stun` crate (not by ternd's codec), over UDP,
//! TCP, TLS or DTLS.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::{
    Getter, Message, MessageClass, MessageType, Method, Setter, CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST,
};
use stun::message::{
    METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_DATA, METHOD_REFRESH, METHOD_SEND,
};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;

pub enum Io {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    /// An established DTLS session (RFC 7350): one record per message.
    Dtls(Box<super::dtls::Client>),
}

impl Io {
    pub fn udp(server: SocketAddr) -> Io {
        let bind: IpAddr = if server.is_ipv4() { "127.0.0.1" } else { "::1" }.parse().unwrap();
        Io::udp_from(bind, server)
    }

    /// A UDP client on `source` (any 127.0.0.0/8 address works on loopback),
    /// to act as several hosts.
    pub fn udp_from(source: IpAddr, server: SocketAddr) -> Io {
        let s = UdpSocket::bind((source, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Io::Udp(s, server)
    }

    pub fn tcp(server: SocketAddr) -> Io {
        let s = TcpStream::connect(server).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        Io::Tcp(s)
    }

    pub fn tls(server: SocketAddr, config: Arc<rustls::ClientConfig>) -> Io {
        let s = TcpStream::connect(server).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
        let conn = rustls::ClientConnection::new(config, name).unwrap();
        Io::Tls(Box::new(rustls::StreamOwned::new(conn, s)))
    }

    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Io::Udp(s, _) => s.local_addr().unwrap(),
            Io::Tcp(s) => s.local_addr().unwrap(),
            Io::Tls(s) => s.sock.local_addr().unwrap(),
            Io::Dtls(c) => c.sock.local_addr().unwrap(),
        }
    }

    pub fn is_stream(&self) -> bool {
        matches!(self, Io::Tcp(..) | Io::Tls(..))
    }

    pub fn send(&mut self, b: &[u8]) {
        match self {
            Io::Udp(s, to) => {
                s.send_to(b, *to).unwrap();
            }
            Io::Tcp(s) => s.write_all(b).unwrap(),
            Io::Tls(s) => {
                s.write_all(b).unwrap();
                s.flush().unwrap();
            }
            Io::Dtls(c) => c.send(b),
        }
    }

    /// One message: a datagram, or one STUN / ChannelData frame of a stream
    /// (ChannelData padding consumed). None on timeout.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        fn frame<R: Read>(r: &mut R) -> Option<Vec<u8>> {
            let mut head = [0u8; 4];
            r.read_exact(&mut head).ok()?;
            let len = u16::from_be_bytes([head[2], head[3]]) as usize;
            let (body, keep) = if head[0] & 0xC0 == 0x40 {
                ((len + 3) & !3, len)
            } else {
                (16 + len, 16 + len)
            };
            let mut rest = vec![0u8; body];
            r.read_exact(&mut rest).ok()?;
            rest.truncate(keep);
            Some([head.to_vec(), rest].concat())
        }
        match self {
            Io::Udp(s, server) => {
                let mut buf = [0u8; 65536];
                let (n, from) = s.recv_from(&mut buf).ok()?;
                // Everything must come from the address the client wrote to
                // (a NAT in between would drop anything else).
                assert_eq!(from, *server, "datagram from the server address the client used");
                Some(buf[..n].to_vec())
            }
            Io::Tcp(s) => frame(s),
            Io::Tls(s) => frame(s),
            Io::Dtls(c) => c.recv(),
        }
    }
}

/// Data received through the relay.
#[derive(Debug, PartialEq, Eq)]
pub enum Relayed {
    /// A Data indication from this peer.
    Indication(SocketAddr, Vec<u8>),
    /// ChannelData on this channel.
    Channel(u16, Vec<u8>),
}

pub struct TurnClient {
    pub io: Io,
    pub username: String,
    pub password: String,
    pub realm: String,
    pub nonce: String,
    pub relayed: Option<SocketAddr>,
    pub mapped: Option<SocketAddr>,
    /// Data that arrived while waiting for a response.
    pub backlog: Vec<Vec<u8>>,
}

fn error_code(m: &Message) -> Option<u16> {
    if m.typ.class != CLASS_ERROR_RESPONSE {
        return None;
    }
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok()?;
    Some(e.code.0)
}

pub fn decode(bytes: &[u8]) -> Message {
    let mut m = Message::new();
    m.raw = bytes.to_vec();
    m.decode().expect("the stun crate decodes ternd's message");
    m
}

pub fn xor_addr(m: &Message, t: AttrType) -> Option<SocketAddr> {
    let mut a = XorMappedAddress::default();
    a.get_from_as(m, t).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

/// Every XOR address attribute of type `t`, in order (a dual allocation has
/// two XOR-RELAYED-ADDRESS), each decoded by the `stun` crate.
pub fn xor_addrs(m: &Message, t: AttrType) -> Vec<SocketAddr> {
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ == t)
        .filter_map(|a| {
            let mut one = m.clone();
            one.attributes = Attributes(vec![a.clone()]);
            xor_addr(&one, t)
        })
        .collect()
}

/// What a dual Allocate got.
#[derive(Debug)]
pub struct Dual {
    /// One relayed address per family (two unless one failed).
    pub relays: Vec<SocketAddr>,
    /// ADDRESS-ERROR-CODE, as (family, code), for a family that failed.
    pub address_error: Option<(u8, u16)>,
}

/// ADDITIONAL-ADDRESS-FAMILY and ADDRESS-ERROR-CODE (RFC 8656 §18.11,
/// §18.12), which the `stun` crate does not name.
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY: AttrType = AttrType(0x8000);
pub const ATTR_ADDRESS_ERROR_CODE: AttrType = AttrType(0x8001);
/// Address family values of those attributes and REQUESTED-ADDRESS-FAMILY.
pub const FAMILY_IPV4: u8 = 1;
pub const FAMILY_IPV6: u8 = 2;

impl TurnClient {
    pub fn new(io: Io, username: &str, password: &str) -> TurnClient {
        TurnClient {
            io,
            username: username.into(),
            password: password.into(),
            realm: String::new(),
            nonce: String::new(),
            relayed: None,
            mapped: None,
            backlog: Vec::new(),
        }
    }

    /// Sends a request with long-term credentials (after a 401/438 challenge
    /// when there is no nonce yet) and returns the response.
    pub fn request(&mut self, method: Method, attrs: &dyn Fn(&mut Message)) -> Message {
        for _ in 0..3 {
            let mut m = Message::new();
            m.build(&[
                Box::new(TransactionId::new()),
                Box::new(MessageType::new(method, CLASS_REQUEST)),
            ])
            .unwrap();
            attrs(&mut m);
            if !self.nonce.is_empty() {
                TextAttribute::new(ATTR_USERNAME, self.username.clone())
                    .add_to(&mut m)
                    .unwrap();
                TextAttribute::new(ATTR_REALM, self.realm.clone())
                    .add_to(&mut m)
                    .unwrap();
                TextAttribute::new(ATTR_NONCE, self.nonce.clone())
                    .add_to(&mut m)
                    .unwrap();
                MessageIntegrity::new_long_term_integrity(
                    self.username.clone(),
                    self.realm.clone(),
                    self.password.clone(),
                )
                .add_to(&mut m)
                .unwrap();
            }
            stun::fingerprint::FINGERPRINT.add_to(&mut m).unwrap();
            let resp = self.roundtrip(&m);
            match error_code(&resp) {
                Some(401) if self.nonce.is_empty() => self.take_challenge(&resp),
                Some(438) => self.take_challenge(&resp),
                _ => return resp,
            }
        }
        panic!("no answer after three challenges");
    }

    fn take_challenge(&mut self, resp: &Message) {
        self.realm = TextAttribute::get_from_as(resp, ATTR_REALM).expect("REALM").text;
        self.nonce = TextAttribute::get_from_as(resp, ATTR_NONCE).expect("NONCE").text;
    }

    /// Sends `m` and waits for the response with its transaction id.
    pub fn roundtrip(&mut self, m: &Message) -> Message {
        self.io.send(&m.raw);
        for _ in 0..100 {
            let bytes = self.io.recv().expect("a response within 5 s");
            if bytes[0] & 0xC0 == 0 {
                let r = decode(&bytes);
                if r.transaction_id == m.transaction_id {
                    stun::fingerprint::FINGERPRINT.check(&r).expect("FINGERPRINT verifies");
                    return r;
                }
                if r.typ.class == CLASS_INDICATION {
                    self.backlog.push(bytes);
                }
            } else {
                self.backlog.push(bytes);
            }
        }
        panic!("no response");
    }

    fn check_integrity(&self, r: &Message) {
        let mi =
            MessageIntegrity::new_long_term_integrity(self.username.clone(), self.realm.clone(), self.password.clone());
        mi.check(&mut r.clone()).expect("ternd's MESSAGE-INTEGRITY verifies");
    }

    /// Allocate a UDP relay; Ok(relayed address) or Err(error code).
    pub fn allocate_with(&mut self, extra: &dyn Fn(&mut Message)) -> Result<SocketAddr, u16> {
        let r = self.request(METHOD_ALLOCATE, &|m| {
            m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            extra(m);
        });
        if let Some(code) = error_code(&r) {
            return Err(code);
        }
        self.check_integrity(&r);
        self.relayed = xor_addr(&r, ATTR_XOR_RELAYED_ADDRESS);
        self.mapped = xor_addr(&r, stun::attributes::ATTR_XORMAPPED_ADDRESS);
        Ok(self.relayed.expect("XOR-RELAYED-ADDRESS"))
    }

    pub fn allocate(&mut self) -> Result<SocketAddr, u16> {
        self.allocate_with(&|_| {})
    }

    /// A dual allocation (ADDITIONAL-ADDRESS-FAMILY IPv6, RFC 8656 §7.2), or
    /// Err(error code).
    pub fn allocate_dual(&mut self) -> Result<Dual, u16> {
        let r = self.request(METHOD_ALLOCATE, &|m| {
            m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            m.add(ATTR_ADDITIONAL_ADDRESS_FAMILY, &[FAMILY_IPV6, 0, 0, 0]);
        });
        if let Some(code) = error_code(&r) {
            return Err(code);
        }
        self.check_integrity(&r);
        let relays = xor_addrs(&r, ATTR_XOR_RELAYED_ADDRESS);
        self.relayed = relays.first().copied();
        self.mapped = xor_addr(&r, stun::attributes::ATTR_XORMAPPED_ADDRESS);
        // Family, reserved, class, number, reason.
        let address_error = r
            .get(ATTR_ADDRESS_ERROR_CODE)
            .ok()
            .map(|v| (v[0], u16::from(v[2] & 7) * 100 + u16::from(v[3])));
        Ok(Dual { relays, address_error })
    }

    pub fn create_permission(&mut self, peers: &[SocketAddr]) -> Result<(), u16> {
        let peers = peers.to_vec();
        let r = self.request(METHOD_CREATE_PERMISSION, &|m| {
            for p in &peers {
                XorMappedAddress {
                    ip: p.ip(),
                    port: p.port(),
                }
                .add_to_as(m, ATTR_XOR_PEER_ADDRESS)
                .unwrap();
            }
        });
        match error_code(&r) {
            Some(c) => Err(c),
            None => {
                self.check_integrity(&r);
                Ok(())
            }
        }
    }

    pub fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Result<(), u16> {
        let r = self.request(METHOD_CHANNEL_BIND, &|m| {
            m.add(ATTR_CHANNEL_NUMBER, &[(channel >> 8) as u8, channel as u8, 0, 0]);
            XorMappedAddress {
                ip: peer.ip(),
                port: peer.port(),
            }
            .add_to_as(m, ATTR_XOR_PEER_ADDRESS)
            .unwrap();
        });
        match error_code(&r) {
            Some(c) => Err(c),
            None => Ok(()),
        }
    }

    pub fn refresh(&mut self, lifetime: u32) -> Result<u32, u16> {
        self.refresh_family(lifetime, None)
    }

    /// A Refresh naming one family of a dual allocation with
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656 §8.1), or all without.
    pub fn refresh_family(&mut self, lifetime: u32, family: Option<u8>) -> Result<u32, u16> {
        let r = self.request(METHOD_REFRESH, &|m| {
            m.add(ATTR_LIFETIME, &lifetime.to_be_bytes());
            if let Some(f) = family {
                m.add(ATTR_REQUESTED_ADDRESS_FAMILY, &[f, 0, 0, 0]);
            }
        });
        if let Some(c) = error_code(&r) {
            return Err(c);
        }
        let v = r.get(ATTR_LIFETIME).unwrap();
        Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }

    pub fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        self.send_indication_with(peer, data, &|_| {});
    }

    /// A Send indication with attributes `extra` adds after XOR-PEER-ADDRESS and DATA.
    pub fn send_indication_with(&mut self, peer: SocketAddr, data: &[u8], extra: &dyn Fn(&mut Message)) {
        let mut m = Message::new();
        m.build(&[
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
        ])
        .unwrap();
        XorMappedAddress {
            ip: peer.ip(),
            port: peer.port(),
        }
        .add_to_as(&mut m, ATTR_XOR_PEER_ADDRESS)
        .unwrap();
        m.add(ATTR_DATA, data);
        extra(&mut m);
        self.io.send(&m.raw);
    }

    pub fn send_channel(&mut self, channel: u16, data: &[u8]) {
        let mut f = Vec::with_capacity(4 + data.len() + 3);
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&(data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        if self.io.is_stream() {
            while f.len() % 4 != 0 {
                f.push(0);
            }
        }
        self.io.send(&f);
    }

    /// The connection, for raw bytes once it is a data connection (RFC 6062).
    pub fn into_io(self) -> Io {
        self.io
    }

    /// The next message that is not an answer to a request (an indication,
    /// ChannelData), held back ones first.
    pub fn next_unsolicited(&mut self) -> Option<Vec<u8>> {
        if self.backlog.is_empty() {
            self.io.recv()
        } else {
            Some(self.backlog.remove(0))
        }
    }

    /// The next relayed datagram (Data indication or ChannelData).
    pub fn recv_relayed(&mut self) -> Option<Relayed> {
        let bytes = if self.backlog.is_empty() {
            self.io.recv()?
        } else {
            self.backlog.remove(0)
        };
        if bytes[0] & 0xC0 == 0x40 {
            let ch = u16::from_be_bytes([bytes[0], bytes[1]]);
            let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
            return Some(Relayed::Channel(ch, bytes[4..4 + len].to_vec()));
        }
        let m = decode(&bytes);
        assert_eq!(
            m.typ,
            MessageType::new(METHOD_DATA, CLASS_INDICATION),
            "a Data indication"
        );
        let peer = xor_addr(&m, ATTR_XOR_PEER_ADDRESS).expect("XOR-PEER-ADDRESS");
        Some(Relayed::Indication(peer, m.get(ATTR_DATA).expect("DATA")))
    }
}

pub fn class_of(m: &Message) -> MessageClass {
    m.typ.class
}
