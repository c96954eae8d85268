//! Password algorithms and the nonce cookie (RFC 8489 §9.2, §14.11, §14.12,
//! §18.1, §18.5): which hash turns a password into a long-term key, how a
//! server offers more than MD5, and the checks that stop a man in the middle
//! from bidding the offer down.

/// A password algorithm (RFC 8489 §18.5): the hash of
/// `username:realm:password` that makes the long-term key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasswordAlgorithm {
    Md5,
    Sha256,
}

impl PasswordAlgorithm {
    /// The registered number (§18.5).
    pub const fn number(self) -> u16 {
        match self {
            PasswordAlgorithm::Md5 => 0x0001,
            PasswordAlgorithm::Sha256 => 0x0002,
        }
    }

    pub fn from_number(n: u16) -> Option<Self> {
        match n {
            0x0001 => Some(PasswordAlgorithm::Md5),
            0x0002 => Some(PasswordAlgorithm::Sha256),
            _ => None,
        }
    }

    /// A label for metrics and logs.
    pub const fn label(self) -> &'static str {
        match self {
            PasswordAlgorithm::Md5 => "md5",
            PasswordAlgorithm::Sha256 => "sha256",
        }
    }
}

/// §9.2: "obMatJos2", then the base64 of the 24 security feature bits.
pub const NONCE_COOKIE: &[u8; 9] = b"obMatJos2";
/// The cookie and its 4 characters of feature bits.
pub const COOKIE_LEN: usize = NONCE_COOKIE.len() + 4;
/// Security feature "Password algorithms" (§18.1). Bits count from the
/// least significant end (RFC 8489 erratum 6290, as libjuice reads them;
/// stun-rs 0.1 still reads the original numbering, from the left).
pub const FEATURE_PASSWORD_ALGORITHMS: u32 = 0x01;
/// Security feature "Username anonymity": USERHASH is accepted (§18.1).
pub const FEATURE_USERNAME_ANONYMITY: u32 = 0x02;

/// What a server offers beyond RFC 5389's MD5 and USERNAME. The default
/// offers nothing: no nonce cookie, exactly the RFC 5389 exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// PASSWORD-ALGORITHMS, in the server's order of preference. Empty or
    /// MD5 alone: no negotiation (§9.2.4 treats a request without
    /// PASSWORD-ALGORITHM as MD5 in any case).
    pub algorithms: Vec<PasswordAlgorithm>,
    /// Accept USERHASH in place of USERNAME (static users only: a REST
    /// username carries its expiry, so its hash names no one the server knows).
    pub userhash: bool,
}

/// The most algorithms an offer lists (there are two registered).
const MAX_ALGORITHMS: usize = 2;

impl Offer {
    /// The security feature bits this offer sets in its nonce cookie; 0
    /// means no cookie at all.
    pub fn features(&self) -> u32 {
        let negotiates = self.algorithms.iter().any(|a| *a != PasswordAlgorithm::Md5);
        (if negotiates { FEATURE_PASSWORD_ALGORITHMS } else { 0 })
            | (if self.userhash { FEATURE_USERNAME_ANONYMITY } else { 0 })
    }

    /// The PASSWORD-ALGORITHMS value (§14.11): per algorithm, its number and
    /// a zero parameter length. Returns the buffer and the bytes used.
    pub fn algorithms_value(&self) -> ([u8; 4 * MAX_ALGORITHMS], usize) {
        let mut out = [0u8; 4 * MAX_ALGORITHMS];
        let mut n = 0;
        for a in self.algorithms.iter().take(MAX_ALGORITHMS) {
            out[n..n + 2].copy_from_slice(&a.number().to_be_bytes());
            n += 4;
        }
        (out, n)
    }
}

/// The security feature bits a nonce's cookie claims, if it has one
/// (§9.2). The claim is checked by the nonce's MAC afterwards.
pub fn cookie_features(nonce: &[u8]) -> Option<u32> {
    let rest = nonce.strip_prefix(NONCE_COOKIE.as_slice())?;
    let text = rest.get(..4)?;
    let mut v = 0u32;
    for &c in text {
        v = v << 6 | crate::base64::ALPHABET.iter().position(|&a| a == c)? as u32;
    }
    Some(v)
}

/// The cookie announcing `features` (nonzero): "obMatJos2" and 4 base64 characters.
pub fn cookie(features: u32) -> [u8; COOKIE_LEN] {
    let mut out = [0u8; COOKIE_LEN];
    out[..NONCE_COOKIE.len()].copy_from_slice(NONCE_COOKIE);
    for (i, c) in out[NONCE_COOKIE.len()..].iter_mut().enumerate() {
        *c = crate::base64::ALPHABET[(features >> (18 - 6 * i) & 63) as usize];
    }
    out
}

/// Why a request's password algorithm cannot be accepted: 400 (§9.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BidDown;

/// RFC 8489 §9.2.4, for a request whose NONCE starts with the cookie and
/// has the "Password algorithms" bit set. `offered` is the
/// PASSWORD-ALGORITHMS value this server sends with such nonces.
///
/// "If the request contains neither the PASSWORD-ALGORITHMS nor the
/// PASSWORD-ALGORITHM algorithm, then the request is processed as though
/// PASSWORD-ALGORITHM were MD5. Otherwise, unless (1) PASSWORD-ALGORITHM and
/// PASSWORD-ALGORITHMS are both present, (2) PASSWORD-ALGORITHMS matches the
/// value sent in the response that sent this NONCE, and (3)
/// PASSWORD-ALGORITHM matches one of the entries in PASSWORD-ALGORITHMS, the
/// server MUST generate an error response with an error code of 400".
pub fn negotiated(
    algorithms: Option<&[u8]>,
    algorithm: Option<&[u8]>,
    offered: &[u8],
) -> Result<PasswordAlgorithm, BidDown> {
    match (algorithms, algorithm) {
        (None, None) => Ok(PasswordAlgorithm::Md5),
        // (1) and (2): the list the client echoes is the one we sent, so a
        // man in the middle who stripped SHA-256 from it is caught here.
        (Some(list), Some(chosen)) if list == offered => {
            // §14.12: algorithm (2 bytes), parameters length (2 bytes), parameters.
            let (Some(head), Some(params)) = (chosen.get(..2), chosen.get(2..4)) else {
                return Err(BidDown);
            };
            if u16::from_be_bytes([params[0], params[1]]) != 0 || chosen.len() != 4 {
                return Err(BidDown);
            }
            // (3): one of the offered entries, and one we implement.
            let in_list = list.chunks_exact(4).any(|entry| entry[..2] == *head);
            let known = PasswordAlgorithm::from_number(u16::from_be_bytes([head[0], head[1]]));
            match known {
                Some(a) if in_list => Ok(a),
                _ => Err(BidDown),
            }
        }
        _ => Err(BidDown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Offer = Offer {
        algorithms: Vec::new(),
        userhash: false,
    };

    fn offer(algorithms: &[PasswordAlgorithm], userhash: bool) -> Offer {
        Offer {
            algorithms: algorithms.to_vec(),
            userhash,
        }
    }

    #[test]
    fn features_and_cookie() {
        use PasswordAlgorithm::*;
        assert_eq!(BOTH.features(), 0, "the default offers nothing");
        assert_eq!(offer(&[Md5], false).features(), 0, "MD5 alone is RFC 5389");
        assert_eq!(offer(&[Sha256, Md5], false).features(), FEATURE_PASSWORD_ALGORITHMS);
        assert_eq!(offer(&[Md5], true).features(), FEATURE_USERNAME_ANONYMITY);
        // RFC 8489 Appendix B.1's nonce: "obMatJos2AAAC..." announces
        // username anonymity (bit 1, counted from the right).
        assert_eq!(
            cookie_features(b"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"),
            Some(FEATURE_USERNAME_ANONYMITY)
        );
        assert_eq!(&cookie(FEATURE_USERNAME_ANONYMITY), b"obMatJos2AAAC");
        assert_eq!(&cookie(3), b"obMatJos2AAAD");
        assert_eq!(cookie_features(&cookie(3)), Some(3));
        assert_eq!(cookie_features(b"obMatJos2AA"), None, "truncated");
        assert_eq!(cookie_features(b"obMatJos2AA\"A"), None, "not base64");
        assert_eq!(cookie_features(b"abcdefghijkl"), None, "no cookie");
    }

    #[test]
    fn algorithms_value_lists_numbers_with_empty_parameters() {
        use PasswordAlgorithm::*;
        let (v, n) = offer(&[Sha256, Md5], false).algorithms_value();
        assert_eq!(&v[..n], &[0, 2, 0, 0, 0, 1, 0, 0]);
    }

    /// RFC 8489 §9.2.4's three conditions, each broken in turn.
    #[test]
    fn bid_down_checks() {
        let offered = [0, 2, 0, 0, 0, 1, 0, 0];
        let sha = [0, 2, 0, 0];
        let md5 = [0, 1, 0, 0];
        assert_eq!(negotiated(None, None, &offered), Ok(PasswordAlgorithm::Md5));
        assert_eq!(
            negotiated(Some(&offered), Some(&sha), &offered),
            Ok(PasswordAlgorithm::Sha256)
        );
        assert_eq!(
            negotiated(Some(&offered), Some(&md5), &offered),
            Ok(PasswordAlgorithm::Md5)
        );
        // (1) both present.
        assert_eq!(negotiated(Some(&offered), None, &offered), Err(BidDown));
        assert_eq!(negotiated(None, Some(&sha), &offered), Err(BidDown));
        // (2) the list is the one sent: SHA-256 stripped, or reordered.
        assert_eq!(negotiated(Some(&md5), Some(&md5), &offered), Err(BidDown));
        assert_eq!(
            negotiated(Some(&[0, 1, 0, 0, 0, 2, 0, 0]), Some(&md5), &offered),
            Err(BidDown)
        );
        // (3) the choice is in the list.
        assert_eq!(negotiated(Some(&offered), Some(&[0, 3, 0, 0]), &offered), Err(BidDown));
        assert_eq!(negotiated(Some(&offered), Some(&[0, 2]), &offered), Err(BidDown));
        assert_eq!(
            negotiated(Some(&offered), Some(&[0, 2, 0, 4, 1, 2, 3, 4]), &offered),
            Err(BidDown)
        );
    }
}
