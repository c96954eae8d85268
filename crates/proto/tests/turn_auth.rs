//! Long-term credentials on TURN requests (RFC 8656 §5, RFC 8489 §9.2):
//! challenges, nonces, static and REST users, the unauthenticated budget.

mod common;

use std::net::SocketAddr;

use common::*;
use proto::auth::rest_password;
use proto::wire::{attr, long_term_key, Class, MessageBuilder, MessageType, Method};
use proto::{AuthFailure, DropReason, Event, Transport};

fn allocate_type() -> MessageType {
    MessageType::new(Method::ALLOCATE, Class::Request)
}

/// An Allocate with the given attributes and MESSAGE-INTEGRITY under `key`,
/// however incomplete the credentials are.
fn signed(attrs: &[(u16, &[u8])], key: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut b = MessageBuilder::new(&mut buf, allocate_type(), b"auth-test-01").unwrap();
    b.add_bytes(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]).unwrap();
    for (t, v) in attrs {
        b.add_bytes(*t, v).unwrap();
    }
    b.add_message_integrity(key).unwrap();
    let n = b.finish();
    buf.truncate(n);
    buf
}

/// Asserts a challenge: `code`, REALM, a short NONCE, no reason phrase, no
/// SOFTWARE, no MESSAGE-INTEGRITY.
#[track_caller]
fn assert_challenge(r: &Resp, code: u16) -> Vec<u8> {
    assert_eq!(r.class(), Class::Error);
    assert_eq!(r.code(), Some(code));
    assert_eq!(r.get(attr::REALM).as_deref(), Some(REALM.as_bytes()));
    assert!(!r.has_integrity(), "a challenge cannot be signed");
    let nonce = r.nonce().expect("NONCE");
    assert_eq!(nonce.len(), proto::nonce::NONCE_LEN);
    let code_attr = r.get(attr::ERROR_CODE).unwrap();
    assert_eq!(code_attr.len(), 4, "no reason phrase");
    assert_eq!(r.get(attr::SOFTWARE), None);
    nonce
}

fn rest_client(client: &str, username: &str, secret: &[u8]) -> Client {
    let key = long_term_key(username, REALM, &rest_password(secret, username));
    Client::with_key(client, Transport::Udp, username, key)
}

#[test]
fn no_integrity_is_401_with_realm_and_nonce_and_creates_nothing() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let tid = c.tid();
    let req = build(allocate_type(), &tid, &[transport_udp()], None);
    let r = d.input(c.tuple, &req).resp();
    assert_eq!((r.method(), r.tid()), (Method::ALLOCATE, tid));
    assert_challenge(&r, 401);
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(d.commands, 0);
    assert_eq!(d.server.poll_timeout(), None);
}

/// Unsigned requests that would fail even once authenticated get the bare
/// error they would get then, not a 401 several times their size: an
/// Allocate without REQUESTED-TRANSPORT (400), a request on a 5-tuple with
/// no allocation (437). Once the tuple holds an allocation, 401 as usual.
#[test]
fn unsigned_requests_that_cannot_succeed_get_a_bare_error() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let mut unsigned = |c: &mut Client, method, attrs: &[A]| {
        let tid = c.tid();
        let req = build(MessageType::new(method, Class::Request), &tid, attrs, None);
        d.input(c.tuple, &req).resp()
    };
    let bare = |r: &Resp, method, code| {
        r.assert_error(method, code);
        assert_eq!(r.get(attr::REALM), None);
        assert_eq!(r.get(attr::NONCE), None);
    };
    bare(&unsigned(&mut c, Method::ALLOCATE, &[]), Method::ALLOCATE, 400);
    for method in [Method::REFRESH, Method::CREATE_PERMISSION, Method::CHANNEL_BIND] {
        bare(&unsigned(&mut c, method, &[]), method, 437);
    }
    d.allocate(&mut c);
    for method in [Method::REFRESH, Method::CREATE_PERMISSION, Method::CHANNEL_BIND] {
        let tid = c.tid();
        let req = build(MessageType::new(method, Class::Request), &tid, &[], None);
        assert_challenge(&d.input(c.tuple, &req).resp(), 401);
    }
}

#[test]
fn integrity_without_username_realm_or_nonce_is_400() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.fetch_nonce(&mut c);
    let nonce = c.nonce.clone().unwrap();
    let user: (u16, &[u8]) = (attr::USERNAME, ALICE.0.as_bytes());
    let realm: (u16, &[u8]) = (attr::REALM, REALM.as_bytes());
    let nonce: (u16, &[u8]) = (attr::NONCE, &nonce);
    for attrs in [vec![realm, nonce], vec![user, nonce], vec![user, realm], vec![]] {
        let r = d.input(c.tuple, &signed(&attrs, &c.key)).resp();
        assert_eq!(r.code(), Some(400), "with {} of 3 attributes", attrs.len());
        assert!(!r.has_integrity());
    }
    // All three: accepted.
    d.input(c.tuple, &signed(&[user, realm, nonce], &c.key))
        .resp()
        .assert_ok(Method::ALLOCATE, &c.key);
}

#[test]
fn wrong_password_is_401() {
    let mut d = Driver::default_setup();
    let mut c = Client::new("198.51.100.1:40000", Transport::Udp, (ALICE.0, "not-the-password"));
    let r = d.allocate_with(&mut c, &[]);
    assert_challenge(&r, 401);
    assert!(d.binds.is_empty());
    assert_eq!(d.server.allocation_count(), 0);
}

#[test]
fn unknown_user_is_401() {
    let mut d = Driver::default_setup();
    for user in ["mallory", "", "1x:mallory"] {
        let mut c = Client::new("198.51.100.1:40000", Transport::Udp, (user, "pw"));
        assert_challenge(&d.allocate_with(&mut c, &[]), 401);
    }
    assert!(d.binds.is_empty());
}

#[test]
fn stale_nonce_is_438_with_a_fresh_nonce_that_works() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    d.fetch_nonce(&mut c);
    let old = c.nonce.clone().unwrap();
    // Still valid just before the nonce lifetime (3600 s) runs out.
    d.advance(3599);
    let mut early = Client::udp("198.51.100.1:40001");
    early.nonce = Some(old.clone());
    d.allocate(&mut early);
    // Expiries are whole minutes, rounded up: stale within the next minute.
    d.advance(60);
    let r = d.allocate_with(&mut c, &[]);
    let fresh = assert_challenge(&r, 438);
    assert_ne!(fresh, old);
    assert!(d.binds.len() == 1, "no bind for a stale request");
    c.nonce = Some(fresh);
    d.allocate(&mut c);
}

#[test]
fn nonce_of_another_client_ip_is_438() {
    let mut d = Driver::default_setup();
    let mut a = Client::udp("198.51.100.1:40000");
    d.fetch_nonce(&mut a);
    let mut b = Client::udp("198.51.100.2:40000");
    b.nonce = a.nonce.clone();
    assert_challenge(&d.allocate_with(&mut b, &[]), 438);
    // The nonce is bound to the IP address, not the port.
    let mut a2 = Client::udp("198.51.100.1:40001");
    a2.nonce = a.nonce.clone();
    d.allocate(&mut a2);
    // A forged nonce is stale too.
    let mut f = Client::udp("198.51.100.3:40000");
    f.nonce = Some(b"ffffffff0123456789abcdef".to_vec());
    assert_challenge(&d.allocate_with(&mut f, &[]), 438);
}

#[test]
fn rest_credentials_work_until_they_expire() {
    let mut d = Driver::default_setup();
    let valid = format!("{}:carol", ANCHOR_UNIX + 86_400);
    let mut c = rest_client("198.51.100.1:40000", &valid, REST_SECRET);
    d.allocate(&mut c);
    // Plain "expiry" usernames work too.
    let bare = format!("{}", ANCHOR_UNIX + 100);
    let mut b = rest_client("198.51.100.1:40001", &bare, REST_SECRET);
    d.allocate(&mut b);
    // Expired already.
    let expired = format!("{}:carol", ANCHOR_UNIX - 1);
    let mut e = rest_client("198.51.100.1:40002", &expired, REST_SECRET);
    assert_challenge(&d.allocate_with(&mut e, &[]), 401);
    // Expires as the wall clock moves on.
    let soon = format!("{}:dave", ANCHOR_UNIX + 100);
    let mut s = rest_client("198.51.100.1:40003", &soon, REST_SECRET);
    d.fetch_nonce(&mut s);
    d.advance(100);
    assert_challenge(&d.allocate_with(&mut s, &[]), 401);
    // Signed with another secret: refused.
    let mut w = rest_client("198.51.100.1:40004", &valid, b"wrong-secret");
    assert_challenge(&d.allocate_with(&mut w, &[]), 401);
}

#[test]
fn rest_secret_rotation_accepts_both_secrets() {
    let mut d = Driver::with(|c| c.credentials.rest_secrets = vec![b"new".to_vec(), b"old".to_vec()]);
    let user = format!("{}:erin", ANCHOR_UNIX + 3600);
    let mut n = rest_client("198.51.100.1:40000", &user, b"new");
    let mut o = rest_client("198.51.100.1:40001", &user, b"old");
    d.allocate(&mut n);
    let r = d.allocate(&mut o);
    assert!(r.verifies(&o.key), "the answer is signed with the key that matched");
    assert!(!r.verifies(&n.key));
}

#[test]
fn every_configured_rest_secret_is_tried() {
    let secrets: Vec<Vec<u8>> = (0..6).map(|i| format!("secret-{i}").into_bytes()).collect();
    let mut d = Driver::with(|c| c.credentials.rest_secrets = secrets.clone());
    let user = format!("{}:erin", ANCHOR_UNIX + 3600);
    for (i, secret) in secrets.iter().enumerate() {
        let mut c = rest_client(&format!("198.51.100.1:{}", 40000 + i), &user, secret);
        d.allocate(&mut c);
    }
}

#[test]
fn static_users_authenticate() {
    let mut d = Driver::default_setup();
    let mut a = Client::new("198.51.100.1:40000", Transport::Udp, ALICE);
    let mut b = Client::new("198.51.100.1:40001", Transport::Udp, BOB);
    d.allocate(&mut a);
    d.allocate(&mut b);
    // Bob's password is not Alice's.
    let mut x = Client::new("198.51.100.1:40002", Transport::Udp, (ALICE.0, BOB.1));
    assert_challenge(&d.allocate_with(&mut x, &[]), 401);
}

#[test]
fn other_credentials_on_an_allocation_are_441() {
    let mut d = Driver::default_setup();
    let mut a = Client::udp("198.51.100.1:40000");
    d.allocate(&mut a);
    let mut b = Client::new("198.51.100.1:40000", Transport::Udp, BOB);
    b.nonce = a.nonce.clone();
    let peer = addr(PEER_A);
    for r in [
        d.refresh(&mut b, Some(600)),
        d.create_permission(&mut b, &[peer]),
        d.channel_bind(&mut b, 0x4000, peer),
    ] {
        assert_eq!(r.code(), Some(441));
        assert!(r.verifies(&b.key));
    }
    // Nothing changed for Alice's allocation.
    assert_eq!(d.send_indication(&a, peer, b"x"), Out::Drop(DropReason::NoPermission));
    d.refresh(&mut a, Some(600)).assert_ok(Method::REFRESH, &a.key);
}

#[test]
fn unauthenticated_budget_drops_past_the_rate_then_recovers() {
    let mut d = Driver::with(|c| c.unauthenticated_rate = 5);
    let mut c = Client::udp("198.51.100.1:40000");
    d.fetch_nonce(&mut c);
    let unsigned = |c: &mut Client| {
        let tid = c.tid();
        build(allocate_type(), &tid, &[transport_udp()], None)
    };
    for _ in 0..4 {
        let req = unsigned(&mut c);
        assert_challenge(&d.input(c.tuple, &req).resp(), 401);
    }
    // Over budget: dropped without an answer, from any port of that IP.
    for port in [40000, 40001, 40002] {
        let mut p = Client::udp(&format!("198.51.100.1:{port}"));
        let req = unsigned(&mut p);
        assert_eq!(d.input(p.tuple, &req), Out::Drop(DropReason::RateLimited));
    }
    // The 400 for incomplete credentials counts against the same budget.
    assert_eq!(
        d.input(c.tuple, &signed(&[], &c.key)),
        Out::Drop(DropReason::RateLimited)
    );
    // So does a signed request: the budget is charged before any nonce or
    // MAC work, which a stranger's request must not get for free.
    assert_eq!(
        d.request(&mut c, Method::ALLOCATE, &[transport_udp()]),
        Out::Drop(DropReason::RateLimited)
    );
    assert_eq!(d.server.stats().drops.get(DropReason::RateLimited), 5);
    // Another source has its own budget.
    let mut o = Client::udp("203.0.113.9:40000");
    let req = unsigned(&mut o);
    assert_challenge(&d.input(o.tuple, &req).resp(), 401);
    // A second later the budget is back.
    d.advance(1);
    d.allocate(&mut c);
    let mut p = Client::udp("198.51.100.1:40005");
    for _ in 0..4 {
        let req = unsigned(&mut p);
        assert_challenge(&d.input(p.tuple, &req).resp(), 401);
    }
    let req = unsigned(&mut p);
    assert_eq!(d.input(p.tuple, &req), Out::Drop(DropReason::RateLimited));
    // Requests on an allocation are not charged: strangers cannot starve them.
    for _ in 0..10 {
        d.refresh(&mut c, Some(600)).assert_ok(Method::REFRESH, &c.key);
    }
}

#[test]
fn the_total_budget_caps_every_source_together() {
    let mut d = Driver::with(|c| {
        c.unauthenticated_rate = 5;
        c.unauthenticated_rate_total = 20;
    });
    let mut answered = 0;
    for i in 0..100u32 {
        let mut c = Client::udp(&format!("198.51.100.{}:40000", i + 1));
        let tid = c.tid();
        let req = build(allocate_type(), &tid, &[transport_udp()], None);
        match d.input(c.tuple, &req) {
            Out::Reply(r) => {
                assert_challenge(&r, 401);
                answered += 1;
            }
            other => assert_eq!(other, Out::Drop(DropReason::RateLimited)),
        }
    }
    assert_eq!(answered, 20);
}

/// A flood does not silence a victim's challenges: each source prefix has
/// its own bucket, placed by a keyed hash the flooder cannot aim. The aimed
/// addresses share 198.51.100.5's bucket under the old unkeyed hash
/// (`u32(ip) * 0x9E3779B97F4A7C15 >> 52`), and 198.51.100.4 is a neighbour.
#[test]
fn a_flood_from_neighbours_or_aimed_addresses_does_not_silence_a_victim() {
    let flooders = [
        "198.51.100.4",
        "198.51.4.105",
        "198.51.14.129",
        "198.51.30.214",
        "198.51.40.238",
        "198.51.57.67",
    ];
    for seed in 0..8 {
        let mut d = Driver::with(|c| {
            c.unauthenticated_rate = 5;
            c.rng_seed = proto::seed_from_u64(seed);
        });
        for ip in flooders {
            let mut f = Client::udp(&format!("{ip}:40000"));
            for _ in 0..50 {
                let tid = f.tid();
                d.input(f.tuple, &build(allocate_type(), &tid, &[transport_udp()], None));
            }
        }
        let mut v = Client::udp("198.51.100.5:40000");
        let tid = v.tid();
        let req = build(allocate_type(), &tid, &[transport_udp()], None);
        assert_challenge(&d.input(v.tuple, &req).resp(), 401);
    }
}

#[test]
fn spoofed_flood_of_unauthenticated_allocates_keeps_no_state() {
    let mut d = Driver::default_setup();
    let req = build(allocate_type(), b"flood-flood!", &[transport_udp()], None);
    let mut out = vec![0u8; 1500];
    for i in 0u32..100_000 {
        let ip = std::net::Ipv4Addr::from(0x0B00_0000 + i);
        let t = tuple(
            &SocketAddr::from((ip, 1024 + (i % 60000) as u16)).to_string(),
            Transport::Udp,
        );
        match d.server.handle_client(d.now, t, &req, &mut out) {
            proto::Output::Reply(_) => {}
            other => panic!("expected a 401, got {other:?}"),
        }
    }
    assert_eq!(d.server.allocation_count(), 0);
    assert_eq!(d.server.poll_command(), None);
    assert_eq!(d.server.poll_timeout(), None);
    assert_eq!(d.server.stats().error_responses(), 100_000);
}

/// Refusals reported as events: (reason, USERNAME).
type Reported = Vec<(AuthFailure, Option<String>)>;

/// The refusals of the last step: those reported as events, and every
/// reason's count.
fn refusals(d: &mut Driver) -> (Reported, Vec<(AuthFailure, u64)>) {
    let events = d
        .events
        .drain(..)
        .filter_map(|e| match e {
            Event::AuthRefused { reason, username, .. } => Some((reason, username)),
            _ => None,
        })
        .collect();
    let counts = d.server.stats().auth_failures.iter().filter(|(_, n)| *n > 0).collect();
    (events, counts)
}

/// Asserts that `r` was refused with `code`, reported as one event naming
/// `reason` and `user`, and counted under `reason` (`counts`, the expected
/// counts so far, is updated).
#[track_caller]
fn assert_refused(
    d: &mut Driver,
    counts: &mut Vec<(AuthFailure, u64)>,
    (reason, user): (AuthFailure, Option<&str>),
    code: u16,
    r: Resp,
) {
    assert_eq!(r.code(), Some(code), "{reason:?}");
    match counts.iter_mut().find(|(e, _)| *e == reason) {
        Some((_, n)) => *n += 1,
        None => counts.push((reason, 1)),
    }
    counts.sort_by_key(|(e, _)| *e as usize);
    assert_eq!(refusals(d), (vec![(reason, user.map(String::from))], counts.clone()));
}

/// Every refused signed request is counted under its reason and reported
/// as an event naming it (with the USERNAME, never a key), at most once a
/// second per reason; the 401 challenge to a request without credentials is
/// neither.
#[test]
fn each_refusal_is_counted_and_reported_by_reason_but_not_the_challenge() {
    let mut d = Driver::default_setup();
    let mut counts = Vec::new();

    // The challenge: a 401, but no failure.
    let mut c = Client::udp("198.51.100.1:40000");
    d.fetch_nonce(&mut c);
    assert_eq!(refusals(&mut d), (vec![], vec![]));

    let mut x = Client::new("198.51.100.1:40001", Transport::Udp, ("mallory", "pw"));
    let r = d.allocate_with(&mut x, &[]);
    assert_refused(&mut d, &mut counts, (AuthFailure::UnknownUser, Some("mallory")), 401, r);

    let mut x = Client::new("198.51.100.1:40002", Transport::Udp, (ALICE.0, "wrong"));
    let r = d.allocate_with(&mut x, &[]);
    assert_refused(&mut d, &mut counts, (AuthFailure::BadIntegrity, Some(ALICE.0)), 401, r);
    // More of a reason within a second are counted, not reported; the next
    // event says how many were held back.
    assert_eq!(d.allocate_with(&mut x, &[]).code(), Some(401));
    assert_eq!(refusals(&mut d).0, vec![]);
    assert_eq!(d.server.stats().auth_failures.get(AuthFailure::BadIntegrity), 2);
    counts[1].1 += 1;
    d.advance(1);
    let valid = format!("{}:dave", ANCHOR_UNIX + 600);
    let mut x = rest_client("198.51.100.1:40003", &valid, b"not-the-secret");
    let r = d.allocate_with(&mut x, &[]);
    assert!(matches!(d.events.last(), Some(Event::AuthRefused { held_back: 1, .. })));
    assert_refused(&mut d, &mut counts, (AuthFailure::BadIntegrity, Some(&valid)), 401, r);

    let expired = format!("{}:erin", ANCHOR_UNIX - 1);
    let mut x = rest_client("198.51.100.1:40004", &expired, REST_SECRET);
    let r = d.allocate_with(&mut x, &[]);
    let reason = (AuthFailure::ExpiredRestUsername, Some(expired.as_str()));
    assert_refused(&mut d, &mut counts, reason, 401, r);

    d.server.revoke(d.now, &valid);
    let mut x = rest_client("198.51.100.1:40005", &valid, REST_SECRET);
    let r = d.allocate_with(&mut x, &[]);
    assert_refused(&mut d, &mut counts, (AuthFailure::Revoked, Some(&valid)), 401, r);

    let nonce = c.nonce.clone().unwrap();
    let realm: (u16, &[u8]) = (attr::REALM, REALM.as_bytes());
    let r = d
        .input(c.tuple, &signed(&[realm, (attr::NONCE, &nonce)], &c.key))
        .resp();
    assert_refused(&mut d, &mut counts, (AuthFailure::MissingAttributes, None), 400, r);

    let bad_utf8: &[u8] = &[b'a', 0xff, b'b'];
    let req = signed(&[(attr::USERNAME, bad_utf8), realm, (attr::NONCE, &nonce)], &c.key);
    let r = d.input(c.tuple, &req).resp();
    let reason = (AuthFailure::MalformedUsername, Some("a\u{fffd}b"));
    assert_refused(&mut d, &mut counts, reason, 401, r);

    let mut stale = Client::udp("198.51.100.1:40006");
    stale.nonce = Some(b"AAAAAAAAAAAA".to_vec());
    let r = d.allocate_with(&mut stale, &[]);
    assert_refused(&mut d, &mut counts, (AuthFailure::StaleNonce, Some(ALICE.0)), 438, r);

    d.allocate(&mut c);
    d.events.clear();
    let mut b = Client::new("198.51.100.1:40000", Transport::Udp, BOB);
    b.nonce = c.nonce.clone();
    let r = d.refresh(&mut b, Some(600));
    assert_refused(&mut d, &mut counts, (AuthFailure::WrongUser, Some(BOB.0)), 441, r);
}
