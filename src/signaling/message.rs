//! The signaling wire format: client messages parsed from JSON text frames
//! into typed values, server messages written back as JSON.

use std::fmt;

use serde_json::{json, Map, Value};

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
        body: Map<String, Value>,
    },
    Leave,
    Ping,
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
    Relayed {
        from: PeerId,
        body: Map<String, Value>,
    },
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
            ServerMessage::Relayed { from, body } => {
                // `body` never holds `from` (parse removes it): no duplicate key.
                #[derive(serde::Serialize)]
                struct Relayed<'a> {
                    from: &'a str,
                    #[serde(flatten)]
                    body: &'a Map<String, Value>,
                }
                return serde_json::to_string(&Relayed { from: &from.0, body })
                    .unwrap_or_else(|_| unreachable!("a JSON map always serializes"));
            }
            ServerMessage::Pong => json!({"type": "pong"}),
            ServerMessage::Error(r) => json!({"type": "error", "code": r.code.as_str(), "message": r.message}),
        };
        v.to_string()
    }
}

/// Parses one text frame. Unknown fields of `join`, `leave` and `ping` are
/// ignored, so clients may add their own.
pub fn parse(text: &str, max_bytes: usize) -> Result<ClientMessage, Refusal> {
    if text.len() > max_bytes {
        return Err(Refusal::too_large(max_bytes));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| Refusal::new(ErrorCode::BadJson, format!("not JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(Refusal::new(ErrorCode::BadJson, "a message is a JSON object"));
    };
    let kind = match obj.get("type") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(Refusal::new(ErrorCode::UnknownType, "`type` must be a string")),
    };
    match kind.as_str() {
        "join" => {
            let room = obj
                .get("room")
                .and_then(Value::as_str)
                .and_then(RoomName::parse)
                .ok_or_else(|| Refusal::new(ErrorCode::BadRoom, "`room` must be 1-64 characters of A-Z a-z 0-9 _ -"))?;
            let resume = match obj.get("resume") {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) => Some(ResumeToken(t.clone())),
                Some(_) => return Err(Refusal::new(ErrorCode::BadResume, "`resume` must be a string")),
            };
            Ok(ClientMessage::Join { room, resume })
        }
        "offer" | "answer" | "candidate" => {
            let to = match obj.remove("to") {
                Some(Value::String(to)) => PeerId(to),
                _ => {
                    return Err(Refusal::new(
                        ErrorCode::BadMessage,
                        "`to` must name a peer of your room",
                    ))
                }
            };
            obj.remove("from");
            Ok(ClientMessage::Relay { to, body: obj })
        }
        "leave" => Ok(ClientMessage::Leave),
        "ping" => Ok(ClientMessage::Ping),
        other => {
            let shown: String = other.chars().take(32).collect();
            Err(Refusal::new(
                ErrorCode::UnknownType,
                format!("unknown message type `{shown}` (join, offer, answer, candidate, leave, ping)"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(Value::Object(body), json!({"type": "offer", "sdp": "v=0"}));
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
        let mut body = Map::new();
        body.insert("type".into(), json!("candidate"));
        body.insert("candidate".into(), json!({"sdpMid": "0"}));
        assert_eq!(
            parsed(ServerMessage::Relayed {
                from: PeerId("a".into()),
                body
            }),
            json!({"type": "candidate", "candidate": {"sdpMid": "0"}, "from": "a"})
        );
        assert_eq!(parsed(ServerMessage::Pong), json!({"type": "pong"}));
        assert_eq!(
            parsed(ServerMessage::Error(Refusal::new(ErrorCode::RoomFull, "full"))),
            json!({"type": "error", "code": "room-full", "message": "full"})
        );
    }
}
