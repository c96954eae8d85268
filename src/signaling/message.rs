//! The signaling wire format: client messages parsed from JSON text frames
//! into typed values, server messages written back as JSON.
//!
//! Only the top level of a client message is parsed. Every value below it is
//! scanned (checked to be JSON) but never built into a tree, and a relayed
//! body is carried as text: a hostile payload costs one linear scan and its
//! own size, not a `serde_json::Value` many times larger.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::json;
use serde_json::value::RawValue;

/// A room name: 1-64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Option<RoomName> {
        let ok = (1..=Self::MAX_LEN).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| RoomName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A peer's id, unique within its room and kept across a resume.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub String);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The secret that takes a peer id back after the socket dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResumeToken(pub String);

/// A message from a client, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Join {
        room: RoomName,
        resume: Option<ResumeToken>,
    },
    /// `offer`, `answer` or `candidate`: `body` is the whole message (with its
    /// `type`) minus `to` and any client-supplied `from`.
    Relay {
        to: PeerId,
        body: RelayBody,
    },
    Leave,
    Ping,
}

/// A relayed message's body as JSON text: an object whose first member is
/// `"type"`, without `to` or `from`. Built only by [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayBody(String);

impl RelayBody {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A relayed message as it goes out: the body with `"from"` put first.
/// Queues keep it in this form (serialized, never as a parsed tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed(String);

impl Relayed {
    pub fn new(from: &PeerId, body: &RelayBody) -> Relayed {
        let from = serde_json::to_string(&from.0).unwrap_or_else(|_| unreachable!("a string always serializes"));
        // `body` is `{"type":...}`: its members follow `from`.
        let members = &body.0[1..];
        let mut text = String::with_capacity(10 + from.len() + members.len());
        text.push_str("{\"from\":");
        text.push_str(&from);
        text.push(',');
        text.push_str(members);
        Relayed(text)
    }

    /// A relayed message as another node built it (from the cluster bus).
    pub fn from_text(text: String) -> Relayed {
        Relayed(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Bytes it holds, as counted against the queue budgets.
    pub fn size(&self) -> usize {
        self.0.len()
    }
}

/// Why a message was refused; the `code` of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, not an object, or a binary frame.
    BadJson,
    /// `type` missing or not one this server knows.
    UnknownType,
    /// A known type with a missing or mistyped field (`to`).
    BadMessage,
    NotJoined,
    AlreadyJoined,
    BadRoom,
    RoomFull,
    /// `to` names no other peer of the sender's room.
    UnknownPeer,
    TooLarge,
    RateLimited,
    /// The resume token is unknown, expired, or for another room.
    BadResume,
    /// The target peer has too many bytes queued (`max_queued_bytes_per_peer`).
    PeerBusy,
    /// The server holds too many queued bytes in total (`max_queued_bytes`).
    ServerBusy,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad-json",
            ErrorCode::UnknownType => "unknown-type",
            ErrorCode::BadMessage => "bad-message",
            ErrorCode::NotJoined => "not-joined",
            ErrorCode::AlreadyJoined => "already-joined",
            ErrorCode::BadRoom => "bad-room",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::UnknownPeer => "unknown-peer",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::BadResume => "bad-resume",
            ErrorCode::PeerBusy => "peer-busy",
            ErrorCode::ServerBusy => "server-busy",
        }
    }

    /// A client that is not speaking the protocol; enough of these close the
    /// connection. Refusals that a correct client can hit by racing other
    /// peers (room-full, unknown-peer, bad-resume) do not count.
    pub fn is_protocol_violation(self) -> bool {
        matches!(
            self,
            ErrorCode::BadJson
                | ErrorCode::UnknownType
                | ErrorCode::BadMessage
                | ErrorCode::NotJoined
                | ErrorCode::AlreadyJoined
                | ErrorCode::BadRoom
        )
    }
}

/// A refused message: the error sent back to its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    pub fn binary() -> Refusal {
        Refusal::new(ErrorCode::BadJson, "binary frames are not accepted; send JSON text")
    }

    pub fn too_large(max_bytes: usize) -> Refusal {
        Refusal::new(
            ErrorCode::TooLarge,
            format!("messages are limited to {max_bytes} bytes"),
        )
    }
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    Welcome {
        id: PeerId,
        peers: Vec<PeerId>,
        resume: ResumeToken,
    },
    PeerJoined(PeerId),
    PeerLeft(PeerId),
    /// A relayed `offer`/`answer`/`candidate`: the sender's body plus `from`.
    Relayed(Relayed),
    Pong,
    Error(Refusal),
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        let v = match self {
            ServerMessage::Welcome { id, peers, resume } => {
                let peers: Vec<&str> = peers.iter().map(|p| p.0.as_str()).collect();
                json!({"type": "welcome", "id": id.0, "peers": peers, "resume": resume.0})
            }
            ServerMessage::PeerJoined(id) => json!({"type": "peer-joined", "id": id.0}),
            ServerMessage::PeerLeft(id) => json!({"type": "peer-left", "id": id.0}),
            ServerMessage::Relayed(r) => return r.0.clone(),
            ServerMessage::Pong => json!({"type": "pong"}),
            ServerMessage::Error(r) => json!({"type": "error", "code": r.code.as_str(), "message": r.message}),
        };
        v.to_string()
    }

    /// The JSON text, without copying a relayed body.
    pub fn into_json(self) -> String {
        match self {
            ServerMessage::Relayed(r) => r.0,
            other => other.to_json(),
        }
    }

    /// Bytes this message counts against the queue budgets: a relayed
    /// message its size; the server's own messages (small, and bounded by
    /// the connection's message count) nothing.
    pub fn charged_size(&self) -> usize {
        match self {
            ServerMessage::Relayed(r) => r.size(),
            _ => 0,
        }
    }
}

/// The members of a client message this server reads, plus the ones a relay
/// passes through, found in one pass over the top level. Values are borrowed
/// as raw JSON text: serde_json checks them with an iterative, linear scan
/// and builds nothing, however deep or wide they are.
#[derive(Default)]
struct Envelope<'a> {
    kind: Option<&'a RawValue>,
    to: Option<&'a RawValue>,
    room: Option<&'a RawValue>,
    resume: Option<&'a RawValue>,
    /// Every member but `type`, `to` and `from`, as `,"key":value`.
    rest: String,
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Envelope<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                let mut e = Envelope::default();
                while let Some(key) = map.next_key::<String>()? {
                    let value: &'de RawValue = map.next_value()?;
                    match key.as_str() {
                        "type" => e.kind = Some(value),
                        "to" => e.to = Some(value),
                        "from" => {}
                        other => {
                            match other {
                                "room" => e.room = Some(value),
                                "resume" => e.resume = Some(value),
                                _ => {}
                            }
                            let key = serde_json::to_string(other).map_err(serde::de::Error::custom)?;
                            e.rest.push(',');
                            e.rest.push_str(&key);
                            e.rest.push(':');
                            e.rest.push_str(value.get());
                        }
                    }
                }
                Ok(e)
            }
        }
        d.deserialize_map(Members)
    }
}

/// At most 32 characters of a client's string, to quote it in an error: a
/// refusal is never larger than a few hundred bytes, whatever was sent.
pub fn excerpt(s: &str) -> String {
    s.chars().take(32).collect()
}

/// A raw value that is a JSON string, unescaped; None for anything else
/// (refused at its first byte, whatever its size).
fn string(raw: Option<&RawValue>) -> Option<String> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

/// Parses one text frame. Unknown fields of `join`, `leave` and `ping` are
/// ignored, so clients may add their own.
pub fn parse(text: &str, max_bytes: usize) -> Result<ClientMessage, Refusal> {
    if text.len() > max_bytes {
        return Err(Refusal::too_large(max_bytes));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let env = Envelope::deserialize(&mut de)
        .and_then(|env| de.end().map(|()| env))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => Refusal::new(ErrorCode::BadJson, "a message is a JSON object"),
            _ => Refusal::new(ErrorCode::BadJson, format!("not JSON: {e}")),
        })?;
    let Some(kind) = string(env.kind) else {
        return Err(Refusal::new(ErrorCode::UnknownType, "`type` must be a string"));
    };
    match kind.as_str() {
        "join" => {
            let room = string(env.room)
                .as_deref()
                .and_then(RoomName::parse)
                .ok_or_else(|| Refusal::new(ErrorCode::BadRoom, "`room` must be 1-64 characters of A-Z a-z 0-9 _ -"))?;
            let resume = match env.resume {
                None => None,
                Some(r) if r.get() == "null" => None,
                Some(r) => match string(Some(r)) {
                    Some(t) => Some(ResumeToken(t)),
                    None => return Err(Refusal::new(ErrorCode::BadResume, "`resume` must be a string")),
                },
            };
            Ok(ClientMessage::Join { room, resume })
        }
        "offer" | "answer" | "candidate" => {
            let Some(to) = string(env.to) else {
                return Err(Refusal::new(
                    ErrorCode::BadMessage,
                    "`to` must name a peer of your room",
                ));
            };
            // `kind` is one of three plain words: no escaping needed.
            let body = RelayBody(format!("{{\"type\":\"{kind}\"{}}}", env.rest));
            Ok(ClientMessage::Relay { to: PeerId(to), body })
        }
        "leave" => Ok(ClientMessage::Leave),
        "ping" => Ok(ClientMessage::Ping),
        other => Err(Refusal::new(
            ErrorCode::UnknownType,
            format!(
                "unknown message type `{}` (join, offer, answer, candidate, leave, ping)",
                excerpt(other)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn code(text: &str) -> ErrorCode {
        parse(text, 1024).unwrap_err().code
    }

    #[test]
    fn room_names() {
        assert!(RoomName::parse("a").is_some());
        assert!(RoomName::parse("Room_1-x").is_some());
        assert!(RoomName::parse(&"r".repeat(64)).is_some());
        assert!(RoomName::parse("").is_none());
        assert!(RoomName::parse(&"r".repeat(65)).is_none());
        assert!(RoomName::parse("a b").is_none());
        assert!(RoomName::parse("é").is_none());
        assert!(RoomName::parse("../x").is_none());
    }

    #[test]
    fn parses_every_client_type() {
        assert_eq!(
            parse(r#"{"type":"join","room":"r1"}"#, 1024).unwrap(),
            ClientMessage::Join {
                room: RoomName::parse("r1").unwrap(),
                resume: None
            }
        );
        assert_eq!(
            parse(r#"{"type":"join","room":"r1","resume":"t"}"#, 1024).unwrap(),
            ClientMessage::Join {
                room: RoomName::parse("r1").unwrap(),
                resume: Some(ResumeToken("t".into()))
            }
        );
        let ClientMessage::Relay { to, body } =
            parse(r#"{"type":"offer","to":"p","from":"forged","sdp":"v=0"}"#, 1024).unwrap()
        else {
            panic!("a relay");
        };
        assert_eq!(to, PeerId("p".into()));
        assert_eq!(body.as_str(), r#"{"type":"offer","sdp":"v=0"}"#);
        assert_eq!(parse(r#"{"type":"leave"}"#, 1024).unwrap(), ClientMessage::Leave);
        assert_eq!(parse(r#"{"type":"ping","x":1}"#, 1024).unwrap(), ClientMessage::Ping);
    }

    #[test]
    fn refusals() {
        assert_eq!(code("not json"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code("{}"), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadRoom);
        assert_eq!(code(r#"{"type":"join","room":"a/b"}"#), ErrorCode::BadRoom);
        assert_eq!(code(r#"{"type":"join","room":"a","resume":5}"#), ErrorCode::BadResume);
        assert_eq!(code(r#"{"type":"answer","sdp":""}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"candidate","to":1}"#), ErrorCode::BadMessage);
        let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(2000));
        assert_eq!(code(&big), ErrorCode::TooLarge);
    }

    #[test]
    fn relayed_members_pass_through_as_text() {
        // Values are copied verbatim (not re-encoded); the last `to` wins, a
        // forged `from` is dropped, `type` goes first.
        let text = r#"{"to":"x","sdp":{"a":[1, 2.50]},"from":"f","type":"answer","k\u0041":null,"to":"p"}"#;
        let ClientMessage::Relay { to, body } = parse(text, 1024).unwrap() else {
            panic!("a relay");
        };
        assert_eq!(to, PeerId("p".into()));
        assert_eq!(body.as_str(), r#"{"type":"answer","sdp":{"a":[1, 2.50]},"kA":null}"#);
        let relayed = Relayed::new(&PeerId("a".into()), &body);
        assert_eq!(
            relayed.as_str(),
            r#"{"from":"a","type":"answer","sdp":{"a":[1, 2.50]},"kA":null}"#
        );
        assert_eq!(ServerMessage::Relayed(relayed.clone()).charged_size(), relayed.size());
        assert_eq!(ServerMessage::Pong.charged_size(), 0);
    }

    #[test]
    fn hostile_shapes_cost_a_scan() {
        // Wide (the issue's `[{"":0},...]`) and far deeper than serde_json's
        // recursion limit for trees: both scanned, neither built.
        let wide = format!(
            r#"{{"type":"offer","to":"p","x":[{}]}}"#,
            vec![r#"{"":0}"#; 9000].join(",")
        );
        let deep = format!(
            r#"{{"type":"offer","to":"p","x":{}{}}}"#,
            "[".repeat(30_000),
            "]".repeat(30_000)
        );
        for text in [&wide, &deep] {
            let ClientMessage::Relay { body, .. } = parse(text, 1 << 20).unwrap() else {
                panic!("a relay");
            };
            assert!(body.as_str().len() < text.len());
        }
        let broken = format!(r#"{{"type":"offer","to":"p","x":{}"#, "[".repeat(1000));
        assert_eq!(parse(&broken, 1 << 20).unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"ping"} x"#), ErrorCode::BadJson, "trailing bytes");
        assert_eq!(code(r#"{"type":["offer"],"to":"p"}"#), ErrorCode::UnknownType);
    }

    #[test]
    fn unknown_type_is_not_echoed_at_length() {
        let text = format!(r#"{{"type":"{}"}}"#, "y".repeat(500));
        assert!(parse(&text, 1024).unwrap_err().message.len() < 150);
    }

    #[test]
    fn server_messages_as_json() {
        let parsed = |m: ServerMessage| serde_json::from_str::<Value>(&m.to_json()).unwrap();
        assert_eq!(
            parsed(ServerMessage::Welcome {
                id: PeerId("a".into()),
                peers: vec![PeerId("b".into())],
                resume: ResumeToken("t".into())
            }),
            json!({"type": "welcome", "id": "a", "peers": ["b"], "resume": "t"})
        );
        assert_eq!(
            parsed(ServerMessage::PeerJoined(PeerId("b".into()))),
            json!({"type": "peer-joined", "id": "b"})
        );
        assert_eq!(
            parsed(ServerMessage::PeerLeft(PeerId("b".into()))),
            json!({"type": "peer-left", "id": "b"})
        );
        let ClientMessage::Relay { body, .. } =
            parse(r#"{"type":"candidate","to":"b","candidate":{"sdpMid":"0"}}"#, 1024).unwrap()
        else {
            panic!("a relay");
        };
        assert_eq!(
            parsed(ServerMessage::Relayed(Relayed::new(&PeerId("a".into()), &body))),
            json!({"type": "candidate", "candidate": {"sdpMid": "0"}, "from": "a"})
        );
        assert_eq!(parsed(ServerMessage::Pong), json!({"type": "pong"}));
        assert_eq!(
            parsed(ServerMessage::Error(Refusal::new(ErrorCode::RoomFull, "full"))),
            json!({"type": "error", "code": "room-full", "message": "full"})
        );
    }
}
