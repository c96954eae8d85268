//! The signaling parser (`ternd::signaling::message::parse`) on arbitrary
//! text: no panic, no quadratic work (run with `-timeout=2`), and whatever it
//! returns writes back out as valid JSON of the documented shape: a relayed
//! body is an object whose first member is `type` and that has no `to` or
//! `from`; the relayed message puts `from` first; a refusal is a small
//! `error` message.
//!
//! The WebSocket layer hands `parse` only UTF-8 text; other bytes are parsed
//! lossily so they still reach it.

#![no_main]

use std::fmt;

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use ternd::signaling::message::{parse, ClientMessage, PeerId, Relayed, ResumeToken, ServerMessage};

/// `signaling.max_message_bytes` as shipped.
const MAX_BYTES: usize = 65536;

/// A JSON object's top-level keys, in order (duplicates kept); values are
/// only scanned, however deep.
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let _: &'de RawValue = map.next_value()?;
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// The top-level keys of `text`, which must be one JSON object.
fn keys(text: &str) -> Vec<String> {
    match serde_json::from_str::<Keys>(text) {
        Ok(k) => k.0,
        Err(e) => panic!("not a JSON object ({e}): {text:?}"),
    }
}

/// A server message as sent: valid JSON, an object with a string `type`.
fn check_server_message(m: ServerMessage) -> String {
    let text = m.to_json();
    assert_eq!(text, m.clone().into_json());
    let k = keys(&text);
    assert!(k.iter().any(|k| k == "type"), "no type: {text}");
    text
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse(&text, MAX_BYTES) {
        Ok(ClientMessage::Join { room, resume }) => {
            let r = room.as_str();
            assert!((1..=64).contains(&r.len()));
            assert!(r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            check_server_message(ServerMessage::Welcome {
                id: PeerId(r.to_owned()),
                peers: vec![PeerId(r.to_owned())],
                resume: resume.unwrap_or(ResumeToken(String::new())),
            });
        }
        Ok(ClientMessage::Relay { to, body }) => {
            let body_keys = keys(body.as_str());
            assert_eq!(body_keys.first().map(String::as_str), Some("type"));
            assert!(
                !body_keys
                    .iter()
                    .skip(1)
                    .any(|k| k == "type" || k == "to" || k == "from"),
                "body keeps type/to/from: {}",
                body.as_str()
            );
            assert!(body.as_str().len() <= text.len() + 16, "body larger than the message");
            // The sender's id is server-made, but the peer named in `to` is
            // any string: both must serialize.
            for from in [PeerId("p1".into()), to.clone()] {
                let relayed = Relayed::new(&from, &body);
                let k = keys(relayed.as_str());
                assert_eq!(k.len(), body_keys.len() + 1);
                assert_eq!(k[0], "from");
                assert_eq!(k[1], "type");
                assert_eq!(relayed.size(), relayed.as_str().len());
                let m = ServerMessage::Relayed(relayed.clone());
                assert_eq!(m.charged_size(), relayed.size());
                assert_eq!(check_server_message(m), relayed.as_str());
            }
            check_server_message(ServerMessage::PeerJoined(to.clone()));
            check_server_message(ServerMessage::PeerLeft(to));
        }
        Ok(ClientMessage::Leave | ClientMessage::Ping) => {}
        Err(refusal) => {
            assert!(
                refusal.message.len() < 300,
                "refusal of {} bytes",
                refusal.message.len()
            );
            let text = check_server_message(ServerMessage::Error(refusal));
            assert!(text.len() < 400);
        }
    }
});
