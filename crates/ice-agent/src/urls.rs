//! `--url` values turned into webrtc-ice `Url`s, refusing what webrtc-ice
//! 0.17 would silently skip.
//!
//! webrtc-ice 0.17 allocates relays only for `turn:` over UDP:
//! `Agent::gather_candidates_relay` handles `url.proto == Udp && scheme ==
//! Turn` and logs "Unable to handle URL" for everything else (TURN over TCP,
//! `turns:` over TLS or DTLS are a TODO there). Its srflx gatherer sends STUN
//! over UDP to any URL's host and port. So `turn:...?transport=tcp`,
//! `turns:` and `stuns:` are refused here with an error that says so, rather
//! than gathering nothing for them.

use anyhow::{bail, Context};
use webrtc_ice::url::{ProtoType, SchemeType, Url};

/// Parses every `--url`; `turn:` URLs take `username` and `credential`.
pub fn parse_all(raw: &[String], username: Option<&str>, credential: Option<&str>) -> anyhow::Result<Vec<Url>> {
    raw.iter().map(|r| parse_one(r, username, credential)).collect()
}

fn parse_one(raw: &str, username: Option<&str>, credential: Option<&str>) -> anyhow::Result<Url> {
    let mut url = Url::parse_url(raw).with_context(|| {
        format!("--url {raw}: not a STUN/TURN URL (write stun:HOST:PORT or turn:HOST:PORT?transport=udp)")
    })?;
    match (url.scheme, url.proto) {
        (SchemeType::Stun, _) => {}
        (SchemeType::Turn, ProtoType::Udp) => {
            let (Some(u), Some(p)) = (username, credential) else {
                bail!("--url {raw}: a turn: URL needs --username and --credential");
            };
            if u.is_empty() || p.is_empty() {
                bail!("--url {raw}: --username and --credential must not be empty");
            }
            url.username = u.to_owned();
            url.password = p.to_owned();
        }
        (SchemeType::Turn, _) => {
            bail!("--url {raw}: webrtc-ice 0.17 allocates relays over UDP only (turn:...?transport=udp); TURN over TCP is not supported")
        }
        (SchemeType::Turns, _) | (SchemeType::Stuns, _) => {
            bail!("--url {raw}: webrtc-ice 0.17 has no TLS/DTLS transport for STUN or TURN; use stun: or turn:...?transport=udp")
        }
        (SchemeType::Unknown, _) => bail!("--url {raw}: unknown scheme (stun: or turn:)"),
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(raw: &str) -> String {
        format!("{:#}", parse_one(raw, Some("u"), Some("p")).unwrap_err())
    }

    #[test]
    fn stun_and_turn_udp_are_accepted() {
        let stun = parse_one("stun:10.0.0.1:3478", None, None).unwrap();
        assert_eq!((stun.host.as_str(), stun.port), ("10.0.0.1", 3478));
        let turn = parse_one("turn:10.0.0.1:3479?transport=udp", Some("u"), Some("p")).unwrap();
        assert_eq!((turn.username.as_str(), turn.password.as_str()), ("u", "p"));
        let plain = parse_one("turn:10.0.0.1:3478", Some("u"), Some("p")).unwrap();
        assert_eq!(plain.proto, ProtoType::Udp);
    }

    #[test]
    fn unsupported_transports_are_refused_by_name() {
        assert!(err("turn:10.0.0.1:3478?transport=tcp").contains("TCP is not supported"));
        assert!(err("turns:10.0.0.1:5349?transport=tcp").contains("no TLS"));
        assert!(err("stuns:10.0.0.1:5349").contains("no TLS"));
        assert!(err("http://x").contains("not a STUN/TURN URL"));
    }

    #[test]
    fn turn_needs_credentials() {
        let e = parse_one("turn:10.0.0.1:3478", None, None).unwrap_err();
        assert!(format!("{e:#}").contains("--username and --credential"));
    }
}
