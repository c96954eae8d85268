//! STUN transactions over one [`Conn`]: requests retransmitted on UDP (RFC
//! 8489 §6.2.1), responses matched by transaction ID, and the long-term
//! credential dance (RFC 8489 §9.2.3–§9.2.5: 401 → REALM/NONCE → retry,
//! 438 → one retry with the new nonce).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proto::password_algorithm::{cookie_features, PasswordAlgorithm, FEATURE_PASSWORD_ALGORITHMS};
use proto::wire::{
    attr, long_term_key, long_term_key_sha256, Class, ErrorCode, Key, Mac, Message, MessageBuilder, MessageType,
    Method, ParseError, TransactionId,
};

use super::conn::{remaining, Conn};
use super::untrusted::printable;

/// RFC 8489 §6.2.1: initial RTO 500 ms, doubled on each retransmission; Rc = 7.
const INITIAL_RTO: Duration = Duration::from_millis(500);
const MAX_SENDS: u32 = 7;
/// Relayed messages kept while waiting for a response; the probe expects one.
const MAX_BACKLOG: usize = 64;
/// Room for any request the probe builds (61-byte payloads plus attributes).
const REQUEST_BUF: usize = 1500;
const SOFTWARE: &str = concat!("ternd-probe/", env!("CARGO_PKG_VERSION"));

/// Why a request or a wait failed; `Display` is the detail of a FAIL line.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no response within {0:.1?}{1}")]
    Timeout(Duration, String),
    #[error("{0}")]
    Io(String),
    #[error("malformed reply: {0}")]
    Malformed(String),
    #[error("error {code} {reason}")]
    Refused { code: u16, reason: String },
    /// RFC 8489 §9.2.5: a response to an authenticated request whose
    /// MESSAGE-INTEGRITY is missing or does not verify.
    #[error("integrity check failed: {0}")]
    Integrity(String),
}

impl ProbeError {
    pub fn code(&self) -> Option<u16> {
        match self {
            ProbeError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Long-term credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// A success response, owned.
pub struct Response {
    pub bytes: Vec<u8>,
    pub rtt: Duration,
}

impl Response {
    fn message(&self) -> Message<'_> {
        // Parsed once already in `transact`; this cannot fail.
        Message::parse(&self.bytes).expect("validated in transact")
    }

    /// An XOR-* address attribute (XOR-MAPPED-ADDRESS, XOR-RELAYED-ADDRESS).
    pub fn xor_address(&self, typ: u16) -> Result<std::net::SocketAddr, ProbeError> {
        let m = self.message();
        let v = m
            .get(typ)
            .ok_or_else(|| ProbeError::Malformed(format!("no {} in the response", attr_name(typ))))?;
        attr::decode_address(v, Some(&m.transaction_id()))
            .map_err(|e| ProbeError::Malformed(format!("{}: {e}", attr_name(typ))))
    }

    /// A plain address attribute (RFC 5780 OTHER-ADDRESS, RESPONSE-ORIGIN), if present.
    pub fn address(&self, typ: u16) -> Option<std::net::SocketAddr> {
        attr::decode_address(self.message().get(typ)?, None).ok()
    }

    pub fn u32(&self, typ: u16) -> Result<u32, ProbeError> {
        match self.message().get(typ) {
            Some(v) if v.len() == 4 => Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            Some(_) => Err(ProbeError::Malformed(format!(
                "{} has the wrong length",
                attr_name(typ)
            ))),
            None => Err(ProbeError::Malformed(format!("no {} in the response", attr_name(typ)))),
        }
    }
}

pub fn attr_name(typ: u16) -> &'static str {
    match typ {
        attr::XOR_MAPPED_ADDRESS => "XOR-MAPPED-ADDRESS",
        attr::XOR_RELAYED_ADDRESS => "XOR-RELAYED-ADDRESS",
        attr::XOR_PEER_ADDRESS => "XOR-PEER-ADDRESS",
        attr::LIFETIME => "LIFETIME",
        attr::DATA => "DATA",
        _ => "attribute",
    }
}

/// `N` random bytes from the operating system; a failing generator is an
/// error, never a predictable fallback.
pub fn random<const N: usize>() -> Result<[u8; N], ProbeError> {
    crate::random::random_bytes().map_err(|e| ProbeError::Io(format!("{e:#}")))
}

type AddAttrs<'a> = &'a dyn Fn(&mut MessageBuilder) -> Result<(), proto::wire::BufferTooSmall>;

pub struct Session {
    pub conn: Conn,
    pub deadline: Instant,
    creds: Option<Credentials>,
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: Option<Key>,
    /// The PASSWORD-ALGORITHMS a server offered with its nonce cookie,
    /// echoed back with the PASSWORD-ALGORITHM chosen (RFC 8489 §9.2.4).
    algorithms: Vec<u8>,
    /// The password algorithm the session authenticates with, once challenged.
    pub password_algorithm: Option<PasswordAlgorithm>,
    /// An Allocate succeeded on this session (and no Refresh 0 deleted it).
    pub allocated: bool,
    /// Indications and ChannelData that arrived while waiting for a response.
    pub backlog: VecDeque<Vec<u8>>,
}

impl Session {
    pub fn new(conn: Conn, creds: Option<Credentials>, deadline: Instant) -> Session {
        Session {
            conn,
            deadline,
            creds,
            realm: Vec::new(),
            nonce: Vec::new(),
            key: None,
            algorithms: Vec::new(),
            password_algorithm: None,
            allocated: false,
            backlog: VecDeque::new(),
        }
    }

    /// Signs from the first request on with what `other` learnt (realm,
    /// nonce, key): an RFC 6062 data connection's ConnectionBind, which
    /// some servers (coturn) answer with a reset rather than a 401.
    pub fn share_auth(&mut self, other: &Session) {
        self.realm = other.realm.clone();
        self.nonce = other.nonce.clone();
        self.key = other.key;
    }

    /// Sends a request with `add` attributes, authenticating once challenged,
    /// and returns the success response; an error response is `Refused`.
    pub fn request(&mut self, method: Method, add: AddAttrs) -> Result<Response, ProbeError> {
        let mut stale_retried = false;
        let mut challenged = false;
        // At most: unauthenticated, after 401, after one 438.
        for _ in 0..3 {
            let tid: TransactionId = random()?;
            let mut buf = [0u8; REQUEST_BUF];
            let n = self
                .build(method, &tid, &mut buf, add)
                .map_err(|_| ProbeError::Io("request does not fit the buffer".into()))?;
            let resp = self.transact(&buf[..n], &tid)?;
            let m = Message::parse(&resp.bytes).map_err(|e| ProbeError::Malformed(e.to_string()))?;
            if m.message_type().method != method {
                return Err(ProbeError::Malformed(format!(
                    "response method {:#05x} to a {} request",
                    m.message_type().method.0,
                    method.name()
                )));
            }
            match m.message_type().class {
                // `transact` verified MESSAGE-INTEGRITY of authenticated responses.
                Class::Success => return Ok(resp),
                Class::Error => {}
                c => return Err(ProbeError::Malformed(format!("a {c:?} in answer to a request"))),
            }
            let (code, reason) = m
                .get(attr::ERROR_CODE)
                .and_then(ErrorCode::decode)
                .ok_or_else(|| ProbeError::Malformed("error response without a valid ERROR-CODE".into()))?;
            let refused = |extra: &str| ProbeError::Refused {
                code: code.0,
                reason: format!("{}{extra}", printable(&String::from_utf8_lossy(reason))),
            };
            let realm = m.get(attr::REALM).map(<[u8]>::to_vec);
            let nonce = m.get(attr::NONCE).map(<[u8]>::to_vec);
            match code.0 {
                // §9.2.4: the first 401 carries REALM and NONCE; retry with them.
                401 if self.key.is_none() && !challenged => {
                    let Some(creds) = self.creds.clone() else {
                        return Err(refused(
                            " (the server wants credentials: give --user/--password, --secret or --ice-servers)",
                        ));
                    };
                    let (Some(realm), Some(nonce)) = (realm, nonce) else {
                        return Err(ProbeError::Malformed("401 without REALM and NONCE".into()));
                    };
                    let realm_str =
                        std::str::from_utf8(&realm).map_err(|_| ProbeError::Malformed("REALM is not UTF-8".into()))?;
                    let offered = offered_algorithms(&nonce, m.get(attr::PASSWORD_ALGORITHMS));
                    let algorithm = if offered.is_some_and(|list| {
                        list.chunks_exact(4)
                            .any(|e| e[..2] == PasswordAlgorithm::Sha256.number().to_be_bytes())
                    }) {
                        PasswordAlgorithm::Sha256
                    } else {
                        PasswordAlgorithm::Md5
                    };
                    self.algorithms = offered.map(<[u8]>::to_vec).unwrap_or_default();
                    self.key = Some(match algorithm {
                        PasswordAlgorithm::Md5 => Key::md5(long_term_key(&creds.username, realm_str, &creds.password)),
                        PasswordAlgorithm::Sha256 => {
                            Key::sha256(long_term_key_sha256(&creds.username, realm_str, &creds.password))
                                .with_mac(Mac::Sha256)
                        }
                    });
                    self.password_algorithm = Some(algorithm);
                    self.realm = realm;
                    self.nonce = nonce;
                    challenged = true;
                }
                // §9.2.5 / RFC 8656 §7.4: a stale nonce; retry once with the new one.
                438 if self.key.is_some() && !stale_retried => {
                    let Some(nonce) = nonce else {
                        return Err(ProbeError::Malformed("438 without NONCE".into()));
                    };
                    self.nonce = nonce;
                    stale_retried = true;
                }
                401 if self.key.is_some() => return Err(refused(" (wrong username or password?)")),
                _ => return Err(refused("")),
            }
        }
        Err(ProbeError::Malformed("the server keeps challenging the request".into()))
    }

    /// A Send indication or any other message that expects no answer.
    pub fn indicate(&mut self, method: Method, add: AddAttrs) -> Result<(), ProbeError> {
        let tid: TransactionId = random()?;
        let mut buf = [0u8; REQUEST_BUF];
        let typ = MessageType::new(method, Class::Indication);
        let n = (|| {
            let mut b = MessageBuilder::new(&mut buf, typ, &tid)?;
            add(&mut b)?;
            b.add_fingerprint()?;
            Ok::<_, proto::wire::BufferTooSmall>(b.finish())
        })()
        .map_err(|_| ProbeError::Io("indication does not fit the buffer".into()))?;
        self.conn
            .send(&buf[..n])
            .map_err(|e| ProbeError::Io(format!("send: {e}")))
    }

    fn build(
        &self,
        method: Method,
        tid: &TransactionId,
        buf: &mut [u8],
        add: AddAttrs,
    ) -> Result<usize, proto::wire::BufferTooSmall> {
        let mut b = MessageBuilder::new(buf, MessageType::new(method, Class::Request), tid)?;
        b.add_bytes(attr::SOFTWARE, SOFTWARE.as_bytes())?;
        add(&mut b)?;
        if let (Some(key), Some(creds)) = (self.key, &self.creds) {
            b.add_bytes(attr::USERNAME, creds.username.as_bytes())?;
            b.add_bytes(attr::REALM, &self.realm)?;
            b.add_bytes(attr::NONCE, &self.nonce)?;
            if let (false, Some(a)) = (self.algorithms.is_empty(), self.password_algorithm) {
                b.add_bytes(attr::PASSWORD_ALGORITHMS, &self.algorithms)?;
                let mut chosen = [0u8; 4];
                chosen[..2].copy_from_slice(&a.number().to_be_bytes());
                b.add_bytes(attr::PASSWORD_ALGORITHM, &chosen)?;
            }
            b.add_integrity_with(&key)?;
        }
        b.add_fingerprint()?;
        Ok(b.finish())
    }

    /// Keeps relayed data for [`Session::recv_relayed`], at most
    /// [`MAX_BACKLOG`] messages (a flooding server cannot exhaust memory).
    fn keep(&mut self, bytes: Vec<u8>) {
        if self.backlog.len() < MAX_BACKLOG {
            self.backlog.push_back(bytes);
        }
    }

    /// Sends `req` and waits for the response with its transaction ID,
    /// retransmitting on UDP. Other messages go to the backlog.
    ///
    /// RFC 8489 §9.2.5: when the request carried credentials, a response
    /// whose MESSAGE-INTEGRITY is missing or wrong is a failure on a stream;
    /// on UDP it is discarded as if never received (retransmissions go on),
    /// and if nothing else came the timeout says the integrity check failed.
    fn transact(&mut self, req: &[u8], tid: &TransactionId) -> Result<Response, ProbeError> {
        let started = Instant::now();
        let mut rto = INITIAL_RTO;
        let mut sends = 0;
        let mut garbage: Option<String> = None;
        let mut integrity_failed: Option<&'static str> = None;
        // Set only together with `creds`: the request carried credentials.
        let key = self.key.filter(|_| self.creds.is_some());
        loop {
            if remaining(self.deadline).is_none() {
                if let Some(why) = integrity_failed {
                    return Err(ProbeError::Integrity(why.into()));
                }
                let mut why = garbage.map(|g| format!(" (unusable replies: {g})")).unwrap_or_default();
                if let Some(from) = self.conn.stray() {
                    why.push_str(&format!(" (a reply came from {from}, not from the address asked)"));
                }
                return Err(ProbeError::Timeout(started.elapsed(), why));
            }
            let sent_at = Instant::now();
            if sends == 0 || (!self.conn.is_stream() && sends < MAX_SENDS) {
                self.conn.send(req).map_err(|e| ProbeError::Io(format!("send: {e}")))?;
            }
            sends += 1;
            // Streams are reliable: one send, wait for the whole deadline.
            let wait_until = if self.conn.is_stream() || sends >= MAX_SENDS {
                self.deadline
            } else {
                (sent_at + rto).min(self.deadline)
            };
            rto *= 2;
            while let Some(bytes) = self
                .conn
                .recv(wait_until)
                .map_err(|e| ProbeError::Io(format!("receive: {e}")))?
            {
                match Message::parse(&bytes) {
                    Ok(m) if m.transaction_id() == *tid && m.message_type().class != Class::Indication => {
                        if !m.fingerprint_ok() {
                            return Err(ProbeError::Malformed("FINGERPRINT does not match".into()));
                        }
                        if let Some(why) = key.and_then(|k| integrity_problem(&m, &k)) {
                            if self.conn.is_stream() {
                                return Err(ProbeError::Integrity(why.into()));
                            }
                            integrity_failed = Some(why);
                            continue;
                        }
                        return Ok(Response {
                            bytes,
                            rtt: sent_at.elapsed(),
                        });
                    }
                    Ok(m) if m.message_type().class == Class::Indication => self.keep(bytes),
                    // A late answer to an earlier transaction.
                    Ok(_) => {}
                    Err(ParseError::Body {
                        transaction_id, error, ..
                    }) if transaction_id == *tid => {
                        return Err(ProbeError::Malformed(error.to_string()));
                    }
                    Err(_) if bytes.first().is_some_and(|b| b & 0xC0 == 0x40) => self.keep(bytes),
                    Err(e) => garbage = Some(e.to_string()),
                }
            }
        }
    }
}

/// The PASSWORD-ALGORITHMS a challenge offers, when its nonce cookie
/// announces "Password algorithms" (RFC 8489 §9.2.4); otherwise the
/// exchange is RFC 5389's, with MD5.
fn offered_algorithms<'a>(nonce: &[u8], list: Option<&'a [u8]>) -> Option<&'a [u8]> {
    let announced = cookie_features(nonce).is_some_and(|f| f & FEATURE_PASSWORD_ALGORITHMS != 0);
    list.filter(|_| announced)
}

/// Why a response to an authenticated request cannot be trusted, if it
/// cannot. A success must carry MESSAGE-INTEGRITY with the request's key.
/// An error response is accepted unsigned (401 and 438 cannot be signed with
/// a key the server rejects or a nonce it no longer knows; any other error
/// is a failure anyway), but not with a MESSAGE-INTEGRITY that does not verify.
fn integrity_problem(m: &Message, key: &Key) -> Option<&'static str> {
    let signed = m.has_integrity();
    match m.message_type().class {
        Class::Success if !signed => Some("the response has no MESSAGE-INTEGRITY"),
        Class::Success | Class::Error if signed && !m.verify_integrity(key.as_bytes()) => {
            Some("the response's MESSAGE-INTEGRITY does not verify (wrong password?)")
        }
        _ => None,
    }
}
