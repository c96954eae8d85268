//! Text that came from the network (an ERROR-CODE reason phrase, an HTTP
//! error body, a URL or parse error from an iceServers document) is printed
//! only through [`printable`]: control characters could move the cursor or
//! forge extra output lines, and a hostile server could send megabytes.
//! URLs given for `--ice-servers` are printed through [`redact_url`], as
//! their userinfo and query may carry secrets.

/// The longest network-sourced text printed, in characters.
const MAX_CHARS: usize = 200;

/// `s` with control characters removed (line breaks and tabs become one
/// space), trimmed and cut to [`MAX_CHARS`] characters (marked with `…`).
pub fn printable(s: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for c in s.trim().chars() {
        let c = match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => continue,
            c => c,
        };
        if chars == MAX_CHARS {
            out.push('…');
            break;
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// `scheme://host[:port]/path` of `url`, without userinfo, query and
/// fragment, made [`printable`].
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let rest = &rest[..end];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    printable(&match scheme {
        Some(s) => format!("{s}://{host}{path}"),
        None => format!("{host}{path}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_drops_controls_and_caps_the_length() {
        assert_eq!(printable(" Unauthorized\r\n\x1b[2Jok\x07 "), "Unauthorized  [2Jok");
        let long = "x".repeat(500);
        let p = printable(&long);
        assert_eq!(p.chars().count(), MAX_CHARS + 1);
        assert!(p.ends_with('…'));
        assert_eq!(printable(&"y".repeat(MAX_CHARS)), "y".repeat(MAX_CHARS));
    }

    #[test]
    fn urls_lose_userinfo_query_and_fragment() {
        assert_eq!(
            redact_url("https://u:pw@h.example:8443/api/ice-servers?key=K#f"),
            "https://h.example:8443/api/ice-servers"
        );
        assert_eq!(redact_url("http://h/?key=K"), "http://h/");
        assert_eq!(redact_url("http://[::1]:80"), "http://[::1]:80");
        assert_eq!(redact_url("nonsense?k=v"), "nonsense");
    }
}
