//! STUN and TURN server URIs: `stun:`/`stuns:` (RFC 7064 §3.1) and
//! `turn:`/`turns:` with an optional `?transport=udp|tcp` (RFC 7065 §3.1).

use std::fmt;

/// How the probe talks to a server: the core's own transport names.
pub use proto::Transport;

/// One parsed server URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `stun`, `stuns`, `turn` or `turns`, as written.
    pub scheme: &'static str,
    /// A host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    /// A TURN URI (allocate and relay), not just STUN (binding only).
    pub turn: bool,
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{}:{host}:{}", self.scheme, self.port)?;
        if self.turn {
            let t = if matches!(self.transport, Transport::Udp | Transport::Dtls) {
                "udp"
            } else {
                "tcp"
            };
            write!(f, "?transport={t}")?;
        }
        Ok(())
    }
}

/// RFC 7064 §3.1 / RFC 7065 §3.1 default ports.
const PLAIN_PORT: u16 = 3478;
const TLS_PORT: u16 = 5349;

impl std::str::FromStr for ServerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not a STUN/TURN URI: expected stun:HOST[:PORT] or turn:HOST[:PORT]"))?;
        let (scheme, secure, turn): (&'static str, bool, bool) = match scheme.to_ascii_lowercase().as_str() {
            "stun" => ("stun", false, false),
            "stuns" => ("stuns", true, false),
            "turn" => ("turn", false, true),
            "turns" => ("turns", true, true),
            other => {
                return Err(format!(
                    "`{s}`: unknown scheme `{other}` (expected stun, stuns, turn or turns)"
                ))
            }
        };
        if rest.starts_with("//") {
            return Err(format!(
                "`{s}`: STUN/TURN URIs have no `//` (RFC 7064 §3.1): write {scheme}:HOST[:PORT]"
            ));
        }
        let (hostport, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let mut transport = if secure { Transport::Tls } else { Transport::Udp };
        if let Some(q) = query {
            if !turn {
                return Err(format!("`{s}`: only turn:/turns: URIs take a query (RFC 7064 §3.1)"));
            }
            match q.to_ascii_lowercase().as_str() {
                // RFC 7350: TURN over DTLS.
                "transport=udp" if secure => transport = Transport::Dtls,
                "transport=udp" => transport = Transport::Udp,
                "transport=tcp" if secure => transport = Transport::Tls,
                "transport=tcp" => transport = Transport::Tcp,
                _ => {
                    return Err(format!(
                        "`{s}`: unknown query `{q}` (RFC 7065 §3.1 allows transport=udp or transport=tcp)"
                    ))
                }
            }
        }
        let (host, port) = split_host_port(hostport).map_err(|e| format!("`{s}`: {e}"))?;
        let port = port.unwrap_or(if secure { TLS_PORT } else { PLAIN_PORT });
        Ok(ServerUrl {
            scheme,
            host,
            port,
            transport,
            turn,
        })
    }
}

/// A server named on the command line: a URI, or a bare `HOST[:PORT]`
/// probed as `stun:HOST[:PORT]` with a "did you mean" hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlArg {
    pub url: ServerUrl,
    /// The text as written, when it had no scheme.
    pub bare: Option<String>,
}

impl std::str::FromStr for UrlArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let strict = s.parse::<ServerUrl>();
        let known_scheme = s
            .split_once(':')
            .is_some_and(|(p, _)| ["stun", "stuns", "turn", "turns"].contains(&p.to_ascii_lowercase().as_str()));
        match strict {
            Ok(url) => Ok(UrlArg { url, bare: None }),
            // `host:port`, `[v6]:port` or `host`: what people paste from a
            // config file. Anything else keeps the URI parser's reason.
            Err(e) if known_scheme || s.contains('/') => Err(e),
            Err(e) => match format!("stun:{s}").parse::<ServerUrl>() {
                Ok(url) => Ok(UrlArg {
                    url,
                    bare: Some(s.to_string()),
                }),
                Err(_) => Err(e),
            },
        }
    }
}

/// Splits `HOST[:PORT]` where HOST may be `[v6]`. An unbracketed IPv6
/// literal is refused: its last group would read as a port.
pub fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("port `{p}` is not a number from 1 to 65535"))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: missing `]` after the IPv6 address"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{host}` is not an IPv6 address"));
        }
        return match after {
            "" => Ok((host.to_string(), None)),
            p => match p.strip_prefix(':') {
                Some(p) => Ok((host.to_string(), Some(parse_port(p)?))),
                None => Err(format!("unexpected `{p}` after `]`")),
            },
        };
    }
    let (host, port) = match s.matches(':').count() {
        0 => (s, None),
        1 => {
            let (h, p) = s.split_once(':').unwrap_or((s, ""));
            (h, Some(parse_port(p)?))
        }
        _ => return Err(format!("`{s}`: write IPv6 addresses in brackets, e.g. [::1]:3478")),
    };
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || "-._".contains(c);
    if !host.chars().all(valid) {
        return Err(format!("`{host}` is not a host name or IP address"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<ServerUrl, String> {
        s.parse()
    }

    #[test]
    fn parses_rfc_7064_and_7065_forms() {
        let u = p("stun:example.org").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.transport, u.turn),
            ("example.org", 3478, Transport::Udp, false)
        );
        let u = p("turn:192.0.2.1:3479?transport=tcp").unwrap();
        assert_eq!((u.port, u.transport, u.turn), (3479, Transport::Tcp, true));
        let u = p("turns:[2001:db8::1]").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.transport),
            ("2001:db8::1", 5349, Transport::Tls)
        );
        assert_eq!(p("turns:h?transport=tcp").unwrap().transport, Transport::Tls);
        // RFC 7350: turns: over UDP is DTLS, and prints back as written.
        let dtls = p("turns:h:5349?transport=udp").unwrap();
        assert_eq!(
            (dtls.transport, dtls.to_string().as_str()),
            (Transport::Dtls, "turns:h:5349?transport=udp")
        );
        assert_eq!(p("TURN:h?transport=UDP").unwrap().transport, Transport::Udp);
        assert_eq!(p("stuns:h").unwrap().transport, Transport::Tls);
        assert_eq!(
            p("turn:[::1]:9?transport=tcp").unwrap().to_string(),
            "turn:[::1]:9?transport=tcp"
        );
    }

    #[test]
    fn rejects_bad_uris_with_a_reason() {
        for (s, why) in [
            ("example.org", "not a STUN/TURN URI"),
            ("stun:a b", "not a host"),
            ("http://x", "unknown scheme"),
            ("turn://x", "no `//`"),
            ("stun:x?transport=udp", "only turn:"),
            ("turn:x?transport=sctp", "unknown query"),
            ("turn:::1", "brackets"),
            ("turn:x:0", "1 to 65535"),
            ("turn:x:99999", "1 to 65535"),
            ("turn:", "empty"),
            ("turn:[::1", "missing `]`"),
            ("turn:a b", "not a host"),
        ] {
            let e = p(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn a_bare_host_and_port_is_probed_as_stun() {
        for (s, want) in [
            ("127.0.0.1:3479", "stun:127.0.0.1:3479"),
            ("example.org", "stun:example.org:3478"),
            ("[::1]:9", "stun:[::1]:9"),
        ] {
            let a: UrlArg = s.parse().unwrap();
            assert_eq!((a.url.to_string(), a.bare.as_deref()), (want.to_string(), Some(s)));
        }
        let a: UrlArg = "turn:h".parse().unwrap();
        assert_eq!(a.bare, None);
        for (s, why) in [
            ("http://x", "unknown scheme"),
            ("turn:x?transport=sctp", "unknown query"),
            ("a b:1", "unknown scheme"),
        ] {
            let e = s.parse::<UrlArg>().unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
