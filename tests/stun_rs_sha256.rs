//! RFC 8489 §9.2 with SHA-256 chosen, by an independent codec: the
//! `stun-rs` crate builds the Allocate (USERHASH, the echoed
//! PASSWORD-ALGORITHMS, PASSWORD-ALGORITHM SHA-256, MESSAGE-INTEGRITY-SHA256
//! under its own SHA-256 long-term key) and checks ternd's answer with the
//! same key, over real UDP to an in-process ternd; ternd's counters then say
//! it authenticated SHA-256 and USERHASH. (libjuice, the browser-grade
//! client of tests/libjuice.rs, takes USERHASH but keeps MD5.)

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use stun_rs::attributes::stun::{
    Fingerprint, MessageIntegritySha256, Nonce, PasswordAlgorithm, PasswordAlgorithms, Realm, UserHash,
};
use stun_rs::attributes::turn::RequestedTrasport;
use stun_rs::methods::ALLOCATE;
use stun_rs::protocols::UDP;
use stun_rs::{
    Algorithm, AlgorithmId, DecoderContextBuilder, HMACKey, MessageClass, MessageDecoderBuilder, MessageEncoderBuilder,
    StunMessage, StunMessageBuilder,
};

fn exchange(sock: &UdpSocket, msg: &StunMessage, key: Option<HMACKey>) -> StunMessage {
    let mut buf = [0u8; 1500];
    let n = MessageEncoderBuilder::default().build().encode(&mut buf, msg).unwrap();
    sock.send(&buf[..n]).unwrap();
    let n = sock.recv(&mut buf).expect("an answer");
    let mut ctx = DecoderContextBuilder::default();
    if let Some(k) = key {
        ctx = ctx.with_key(k).with_validation();
    }
    let decoder = MessageDecoderBuilder::default().with_context(ctx.build()).build();
    decoder
        .decode(&buf[..n])
        .expect("stun-rs decodes and validates ternd's answer")
        .0
}

#[test]
fn s9_2_stun_rs_allocates_with_sha256_and_userhash() {
    let server = start(&turn_config(
        None,
        &[("turn.password_algorithms", "sha256,md5"), ("turn.userhash", "true")],
    ));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.connect(server.bound().udp[0]).unwrap();

    // The challenge.
    let first = StunMessageBuilder::new(ALLOCATE, MessageClass::Request)
        .with_attribute(RequestedTrasport::new(UDP))
        .build();
    let challenge = exchange(&sock, &first, None);
    assert_eq!(challenge.class(), MessageClass::ErrorResponse);
    let nonce = challenge.get::<Nonce>().unwrap().expect_nonce().clone();
    assert!(nonce.is_nonce_cookie(), "{}", nonce.as_str());
    let realm = challenge.get::<Realm>().unwrap().expect_realm().clone();
    let offered = challenge
        .get::<PasswordAlgorithms>()
        .expect("PASSWORD-ALGORITHMS with the cookie")
        .expect_password_algorithms()
        .clone();
    let sha256 = Algorithm::from(AlgorithmId::SHA256);
    assert!(
        offered.iter().any(|a| a.algorithm() == AlgorithmId::SHA256),
        "SHA-256 offered"
    );

    // SHA-256 chosen, the user behind USERHASH.
    let key = HMACKey::new_long_term("alice", realm.as_str(), "alice-password", &sha256).unwrap();
    let request = StunMessageBuilder::new(ALLOCATE, MessageClass::Request)
        .with_attribute(RequestedTrasport::new(UDP))
        .with_attribute(UserHash::new("alice", realm.as_str()).unwrap())
        .with_attribute(realm.clone())
        .with_attribute(nonce.clone())
        .with_attribute(offered.clone())
        .with_attribute(PasswordAlgorithm::new(sha256.clone()))
        .with_attribute(MessageIntegritySha256::new(key.clone()))
        .with_attribute(Fingerprint::default())
        .build();
    let answer = exchange(&sock, &request, Some(key));
    assert_eq!(answer.class(), MessageClass::SuccessResponse, "{answer:?}");
    assert!(
        answer.get::<MessageIntegritySha256>().is_some(),
        "signed with MESSAGE-INTEGRITY-SHA256"
    );

    let stats = server.shutdown().unwrap();
    let counted: Vec<_> = stats.logins.iter().filter(|x| x.3 > 0).collect();
    assert_eq!(counted, [("sha256", "hashed", "sha256", 1)]);
}
