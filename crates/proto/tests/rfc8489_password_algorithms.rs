//! RFC 8489 §9.2 beyond RFC 5389: the nonce cookie and its security feature
//! bits, PASSWORD-ALGORITHMS / PASSWORD-ALGORITHM negotiation with its
//! bid-down checks (§9.2.4), SHA-256 keys (§9.2.2), MESSAGE-INTEGRITY-SHA256
//! (§14.6) and USERHASH (§14.4), plus the Appendix B.1 vector.

mod common;

use common::*;
use proto::auth::RestHmac;
use proto::password_algorithm::{Offer, PasswordAlgorithm};
use proto::wire::{attr, long_term_key, long_term_key_sha256, userhash, Class, MessageBuilder, MessageType, Method};
use proto::Transport;

const SHA256_FIRST: [u8; 8] = [0, 2, 0, 0, 0, 1, 0, 0];
const SHA256: [u8; 4] = [0, 2, 0, 0];
const MD5: [u8; 4] = [0, 1, 0, 0];

fn negotiating(userhash: bool) -> Driver {
    Driver::with(|c| {
        c.credentials.offer = Offer {
            algorithms: vec![PasswordAlgorithm::Sha256, PasswordAlgorithm::Md5],
            userhash,
        }
    })
}

/// How a test request names its user and signs.
struct Signed<'a> {
    user: User<'a>,
    nonce: &'a [u8],
    algorithms: Option<&'a [u8]>,
    algorithm: Option<&'a [u8]>,
    key: &'a [u8],
    sha256_mac: bool,
}

enum User<'a> {
    Name(&'a str),
    Hash([u8; 32]),
}

fn allocate(tid: &[u8; 12], s: &Signed<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut b = MessageBuilder::new(&mut buf, MessageType::new(Method::ALLOCATE, Class::Request), tid).unwrap();
    b.add_bytes(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    match &s.user {
        User::Name(n) => b.add_bytes(attr::USERNAME, n.as_bytes()).unwrap(),
        User::Hash(h) => b.add_bytes(attr::USERHASH, h).unwrap(),
    }
    b.add_bytes(attr::REALM, REALM.as_bytes()).unwrap();
    b.add_bytes(attr::NONCE, s.nonce).unwrap();
    if let Some(v) = s.algorithms {
        b.add_bytes(attr::PASSWORD_ALGORITHMS, v).unwrap();
    }
    if let Some(v) = s.algorithm {
        b.add_bytes(attr::PASSWORD_ALGORITHM, v).unwrap();
    }
    if s.sha256_mac {
        b.add_message_integrity_sha256(s.key).unwrap();
    } else {
        b.add_message_integrity(s.key).unwrap();
    }
    b.add_fingerprint().unwrap();
    let n = b.finish();
    buf.truncate(n);
    buf
}

/// Alice choosing SHA-256 from the usual offer and signing with
/// MESSAGE-INTEGRITY-SHA256 under `key`.
fn sha256_alice<'a>(nonce: &'a [u8], key: &'a [u8]) -> Signed<'a> {
    Signed {
        user: User::Name(ALICE.0),
        nonce,
        algorithms: Some(&SHA256_FIRST),
        algorithm: Some(&SHA256),
        key,
        sha256_mac: true,
    }
}

/// Sends `s` as an Allocate from `c` and returns the answer.
fn send(d: &mut Driver, c: &mut Client, s: &Signed<'_>) -> Resp {
    let tid = c.tid();
    d.input(c.tuple, &allocate(&tid, s)).resp()
}

/// The first, unsigned Allocate and its 401.
fn challenge(d: &mut Driver, c: &mut Client) -> Resp {
    let tid = c.tid();
    let req = build(
        MessageType::new(Method::ALLOCATE, Class::Request),
        &tid,
        &[transport_udp()],
        None,
    );
    let r = d.input(c.tuple, &req).resp();
    r.assert_error(Method::ALLOCATE, 401);
    r
}

fn alice_sha256() -> [u8; 32] {
    long_term_key_sha256(ALICE.0, REALM, ALICE.1)
}

/// §9.2 / §9.2.4: a server that offers SHA-256 starts every nonce with the
/// cookie and its "Password algorithms" bit, and sends PASSWORD-ALGORITHMS
/// with it, in its order of preference.
#[test]
fn s9_2_challenge_carries_cookie_and_password_algorithms() {
    let mut d = negotiating(false);
    let mut c = Client::udp("198.51.100.1:40000");
    let r = challenge(&mut d, &mut c);
    let nonce = r.nonce().unwrap();
    assert!(
        nonce.starts_with(b"obMatJos2AAAB"),
        "{}",
        String::from_utf8_lossy(&nonce)
    );
    assert_eq!(r.get(attr::PASSWORD_ALGORITHMS).as_deref(), Some(&SHA256_FIRST[..]));
    // With USERHASH on, the "Username anonymity" bit too.
    let mut d = negotiating(true);
    let nonce = challenge(&mut d, &mut c).nonce().unwrap();
    assert!(nonce.starts_with(b"obMatJos2AAAD"));
    // The default offers nothing beyond RFC 5389: no cookie, no list.
    let mut d = Driver::default_setup();
    let r = challenge(&mut d, &mut c);
    assert_eq!(r.nonce().unwrap().len(), proto::nonce::NONCE_LEN);
    assert_eq!(r.get(attr::PASSWORD_ALGORITHMS), None);
}

/// §9.2.2 and §14.6: SHA-256 chosen, the key is SHA-256(user:realm:pass);
/// the request signed with MESSAGE-INTEGRITY-SHA256 gets a success signed
/// the same way, and the login is counted under sha256.
#[test]
fn s9_2_2_sha256_key_and_message_integrity_sha256() {
    let mut d = negotiating(false);
    let mut c = Client::udp("198.51.100.1:40000");
    let nonce = challenge(&mut d, &mut c).nonce().unwrap();
    let key = alice_sha256();
    let r = send(&mut d, &mut c, &sha256_alice(&nonce, &key));
    assert_eq!(r.code(), None, "{:?}", r.code());
    assert!(r.msg().get(attr::MESSAGE_INTEGRITY).is_none());
    assert_eq!(r.msg().integrity_mac(), Some(proto::wire::Mac::Sha256));
    assert!(r.verifies(&key));
    let counted: Vec<_> = d.server.stats().logins.iter().filter(|x| x.3 > 0).collect();
    assert_eq!(counted, [("sha256", "plain", "sha256", 1)]);
}

/// §9.2.4: PASSWORD-ALGORITHM MD5 from the offered list, with
/// MESSAGE-INTEGRITY (SHA-1), works; the MD5 key signs the answer.
#[test]
fn s9_2_4_md5_may_be_chosen_from_the_list() {
    let mut d = negotiating(false);
    let mut c = Client::udp("198.51.100.1:40000");
    let nonce = challenge(&mut d, &mut c).nonce().unwrap();
    let key = long_term_key(ALICE.0, REALM, ALICE.1);
    let r = send(
        &mut d,
        &mut c,
        &Signed {
            algorithm: Some(&MD5),
            sha256_mac: false,
            ..sha256_alice(&nonce, &key)
        },
    );
    r.assert_ok(Method::ALLOCATE, &key);
    assert_eq!(r.msg().integrity_mac(), Some(proto::wire::Mac::Sha1));
}

/// §9.2.4: "If the request contains neither the PASSWORD-ALGORITHMS nor the
/// PASSWORD-ALGORITHM algorithm, then the request is processed as though
/// PASSWORD-ALGORITHM were MD5": a browser that ignores the cookie still
/// authenticates.
#[test]
fn s9_2_4_a_client_ignoring_the_cookie_gets_md5() {
    let mut d = negotiating(true);
    let mut c = Client::udp("198.51.100.1:40000");
    let nonce = challenge(&mut d, &mut c).nonce().unwrap();
    c.nonce = Some(nonce);
    let tid = c.tid();
    let req = build(
        MessageType::new(Method::ALLOCATE, Class::Request),
        &tid,
        &[transport_udp()],
        Some(&c.auth()),
    );
    d.input(c.tuple, &req).resp().assert_ok(Method::ALLOCATE, &c.key);
}

/// §9.2.4's three conditions (the bid-down protection), each broken:
/// 400, and nothing allocated.
#[test]
fn s9_2_4_bid_down_attempts_get_400() {
    let mut d = negotiating(false);
    let mut c = Client::udp("198.51.100.1:40000");
    let nonce = challenge(&mut d, &mut c).nonce().unwrap();
    let key = alice_sha256();
    let stripped: [u8; 4] = MD5;
    let reordered = [0, 1, 0, 0, 0, 2, 0, 0];
    type Case<'a> = (&'a str, Option<&'a [u8]>, Option<&'a [u8]>);
    let cases: [Case<'_>; 5] = [
        ("list without choice", Some(&SHA256_FIRST), None),
        ("choice without list", None, Some(&SHA256)),
        ("SHA-256 stripped from the list", Some(&stripped), Some(&MD5)),
        ("list reordered", Some(&reordered), Some(&MD5)),
        ("choice not offered", Some(&SHA256_FIRST), Some(&[0, 9, 0, 0])),
    ];
    for (what, algorithms, algorithm) in cases {
        let r = send(
            &mut d,
            &mut c,
            &Signed {
                algorithms,
                algorithm,
                ..sha256_alice(&nonce, &key)
            },
        );
        assert_eq!(r.code(), Some(400), "{what}");
    }
    assert_eq!(d.server.allocation_count(), 0);
}

/// §9.2: the feature bits ride under the nonce's MAC. A nonce whose bits a
/// man in the middle cleared (to hide the negotiation), or a nonce cut
/// from its cookie, is stale: 438 with a fresh, intact nonce.
#[test]
fn s9_2_edited_cookie_bits_make_the_nonce_stale() {
    let mut d = negotiating(false);
    let mut c = Client::udp("198.51.100.1:40000");
    let nonce = challenge(&mut d, &mut c).nonce().unwrap();
    let md5 = long_term_key(ALICE.0, REALM, ALICE.1);
    let mut cleared = nonce.clone();
    cleared[12] = b'A'; // "AAAB" -> "AAAA": no "Password algorithms" bit
    for edited in [cleared, nonce[13..].to_vec()] {
        let r = send(
            &mut d,
            &mut c,
            &Signed {
                algorithms: None,
                algorithm: None,
                sha256_mac: false,
                ..sha256_alice(&edited, &md5)
            },
        );
        assert_eq!(r.code(), Some(438));
        assert!(r.nonce().unwrap().starts_with(b"obMatJos2AAAB"));
        assert!(r.get(attr::PASSWORD_ALGORITHMS).is_some(), "438 carries the list too");
    }
}

/// §14.4 USERHASH: SHA-256(username ":" realm) stands for a static user
/// when the server offers username anonymity; otherwise, or for a hash of
/// no known user, 401.
#[test]
fn s14_4_userhash_names_static_users_only_when_offered() {
    let key = alice_sha256();
    let hash = userhash(ALICE.0, REALM);
    for (userhash_on, user, want) in [
        (true, User::Hash(hash), None),
        (false, User::Hash(hash), Some(401)),
        (true, User::Hash(userhash("1999999999:rest", REALM)), Some(401)),
    ] {
        let mut d = negotiating(userhash_on);
        let mut c = Client::udp("198.51.100.1:40000");
        let nonce = challenge(&mut d, &mut c).nonce().unwrap();
        let r = send(
            &mut d,
            &mut c,
            &Signed {
                user,
                ..sha256_alice(&nonce, &key)
            },
        );
        assert_eq!(r.code(), want);
        if want.is_none() {
            assert!(r.verifies(&key));
            let a = d.server.allocations().next().unwrap();
            assert_eq!(a.username, ALICE.0, "the allocation belongs to the user the hash names");
            let counted: Vec<_> = d.server.stats().logins.iter().filter(|x| x.3 > 0).collect();
            assert_eq!(counted, [("sha256", "hashed", "sha256", 1)]);
        }
    }
}

/// REST users under SHA-256 keys, with passwords minted by HMAC-SHA-256
/// (`turn.rest_hmac = "sha256"`, coturn issue 2062).
#[test]
fn s9_2_2_rest_users_with_sha256_keys_and_hmac_sha256_passwords() {
    let mut d = Driver::with(|c| {
        c.credentials.offer.algorithms = vec![PasswordAlgorithm::Sha256, PasswordAlgorithm::Md5];
        c.credentials.rest_hmac = RestHmac::Sha256;
    });
    let mut c = Client::udp("198.51.100.1:40000");
    let nonce = challenge(&mut d, &mut c).nonce().unwrap();
    let (user, password) = proto::auth::rest_credentials(RestHmac::Sha256, REST_SECRET, "carol", ANCHOR_UNIX + 600);
    let key = long_term_key_sha256(&user, REALM, &password);
    let r = send(
        &mut d,
        &mut c,
        &Signed {
            user: User::Name(&user),
            ..sha256_alice(&nonce, &key)
        },
    );
    assert_eq!(r.code(), None);
    assert!(r.verifies(&key));
    // A SHA-1 REST password does not open a server minting with SHA-256.
    let (user, sha1_pw) = proto::auth::rest_credentials(RestHmac::Sha1, REST_SECRET, "dave", ANCHOR_UNIX + 600);
    let key = long_term_key_sha256(&user, REALM, &sha1_pw);
    let mut c = Client::new("198.51.100.2:40000", Transport::Udp, ALICE);
    let tid = c.tid();
    let req = allocate(
        &tid,
        &Signed {
            user: User::Name(&user),
            nonce: &d.server_nonce_for(&mut c),
            algorithms: Some(&SHA256_FIRST),
            algorithm: Some(&SHA256),
            key: &key,
            sha256_mac: true,
        },
    );
    assert_eq!(d.input(c.tuple, &req).resp().code(), Some(401));
}

/// Appendix B.1: the SHA-256 + USERHASH request. As printed, its header
/// says 156 bytes of attributes but 136 follow (PASSWORD-ALGORITHM and
/// PASSWORD-ALGORITHMS, 20 bytes, were lost from the listing); its MAC was
/// computed over the printed bytes with the printed header. So the USERHASH,
/// the SHA-256 key and that MAC are checked here, and the cookie's bits.
#[test]
fn appendix_b_1_sha256_and_userhash_vector() {
    let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
    let vector: [u8; 156] = hex(concat!(
        "0001009c2112a44278ad3433c6ad72c029da412e",
        "001e00204a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704",
        "001500296f624d61744a6f733241414143662f2f3439396b39353464364f4c33346f4c39465354767936347341000000",
        "0014000b6578616d706c652e6f726700",
        "001c0020e4686c8f0edeb59013e07090010a93efccbccc544c0a45d9f830aa6d6f735a01",
    ));
    assert_eq!(&vector[24..56], &userhash(username, "example.org"));
    let key = long_term_key_sha256(username, "example.org", "TheMatrIX");
    let mac = ring_hmac_sha256(&key, &vector[..120]);
    assert_eq!(&vector[124..156], &mac);
    let nonce = &vector[60..60 + 0x29];
    assert_eq!(
        proto::password_algorithm::cookie_features(nonce),
        Some(proto::password_algorithm::FEATURE_USERNAME_ANONYMITY)
    );
}

fn hex<const N: usize>(s: &str) -> [u8; N] {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let v: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// HMAC-SHA256 the way RFC 2104 defines it, independent of the codec.
fn ring_hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data);
    tag.as_ref().try_into().unwrap()
}

trait NonceFor {
    fn server_nonce_for(&mut self, c: &mut Client) -> Vec<u8>;
}

impl NonceFor for Driver {
    fn server_nonce_for(&mut self, c: &mut Client) -> Vec<u8> {
        challenge(self, c).nonce().unwrap()
    }
}
