//! The signaling WebSocket end to end: an in-process server on port 0 and
//! independent clients (tokio-tungstenite), exercising the protocol
//! documented in `src/signaling/mod.rs`.

mod common;

use std::time::Duration;

use common::ws::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::{self, Message};

#[tokio::test(flavor = "current_thread")]
async fn join_relay_leave() {
    let (server, addr) = server(&[]);
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    let (ida, peers, _) = join(&mut a, "call-1").await;
    assert!(peers.is_empty());
    let (idb, peers, _) = join(&mut b, "call-1").await;
    assert_eq!(peers, vec![ida.clone()]);
    assert_eq!(recv(&mut a).await, json!({"type": "peer-joined", "id": idb}));

    let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n";
    send(
        &mut a,
        json!({"type": "offer", "to": idb, "sdp": sdp, "extra": [1, {"x": null}]}),
    )
    .await;
    assert_eq!(
        recv(&mut b).await,
        json!({"type": "offer", "from": ida, "sdp": sdp, "extra": [1, {"x": null}]}),
        "`from` added, `to` removed, the rest untouched"
    );
    send(&mut b, json!({"type": "answer", "to": ida, "sdp": "v=0"})).await;
    assert_eq!(recv(&mut a).await, json!({"type": "answer", "from": idb, "sdp": "v=0"}));
    let cand = json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"});
    send(&mut b, json!({"type": "candidate", "to": ida, "candidate": cand})).await;
    assert_eq!(
        recv(&mut a).await,
        json!({"type": "candidate", "from": idb, "candidate": cand})
    );

    send(&mut a, json!({"type": "leave"})).await;
    assert_eq!(recv(&mut b).await, json!({"type": "peer-left", "id": ida}));
    // A stays connected and may join again, with a new id.
    let (ida2, peers, _) = join(&mut a, "call-1").await;
    assert_ne!(ida2, ida);
    assert_eq!(peers, vec![idb]);
    drop((a, b));
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn rooms_are_isolated() {
    let (server, addr) = server(&[]);
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    let mut c = connect(addr).await;
    let (ida, _, _) = join(&mut a, "one").await;
    let (idb, peers, _) = join(&mut b, "two").await;
    assert!(peers.is_empty(), "room `two` does not list room `one`");
    let (idc, peers, _) = join(&mut c, "one").await;
    assert_eq!(peers, vec![ida.clone()]);
    assert_eq!(recv(&mut a).await, json!({"type": "peer-joined", "id": idc}));

    send(&mut b, json!({"type": "offer", "to": ida, "sdp": "x"})).await;
    expect_error(&mut b, "unknown-peer").await;
    send(&mut a, json!({"type": "offer", "to": idb, "sdp": "x"})).await;
    expect_error(&mut a, "unknown-peer").await;
    send(&mut b, json!({"type": "leave"})).await;
    expect_nothing_pending(&mut a).await;
    expect_nothing_pending(&mut c).await;
    drop((a, b, c));
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn resume_keeps_the_id() {
    let (server, addr) = server(&[]);
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    let (ida, _, token) = join(&mut a, "r").await;
    let (idb, _, _) = join(&mut b, "r").await;
    recv(&mut a).await; // peer-joined

    // A's socket goes away without `leave`. Once the close handshake is
    // done, the server has reserved A's id.
    a.close(None).await.unwrap();
    read_until_closed(&mut a).await;
    // An offer sent during the grace is kept for A.
    send(&mut b, json!({"type": "offer", "to": ida, "sdp": "kept"})).await;

    // A wrong token is refused, and the socket may still join.
    let mut x = connect(addr).await;
    send(
        &mut x,
        json!({"type": "join", "room": "r", "resume": "0123456789abcdef"}),
    )
    .await;
    expect_error(&mut x, "bad-resume").await;
    // The right token in the wrong room too.
    send(&mut x, json!({"type": "join", "room": "other", "resume": token})).await;
    expect_error(&mut x, "bad-resume").await;

    let mut a2 = connect(addr).await;
    send(&mut a2, json!({"type": "join", "room": "r", "resume": token})).await;
    let (id, peers, token2) = welcome(&mut a2).await;
    assert_eq!(id, ida, "the same id again");
    assert_eq!(peers, vec![idb.clone()]);
    assert_ne!(token2, token, "a fresh token");
    assert_eq!(
        recv(&mut a2).await,
        json!({"type": "offer", "from": idb, "sdp": "kept"})
    );
    // B was told nothing: A never left.
    expect_nothing_pending(&mut b).await;
    // Messages reach the resumed socket.
    send(&mut b, json!({"type": "candidate", "to": ida, "candidate": "c"})).await;
    assert_eq!(
        recv(&mut a2).await,
        json!({"type": "candidate", "from": idb, "candidate": "c"})
    );
    // The used token is dead.
    send(&mut x, json!({"type": "join", "room": "r", "resume": token})).await;
    expect_error(&mut x, "bad-resume").await;
    drop((a2, b, x));
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn every_refusal() {
    let (server, addr) = server(&[
        ("signaling.max_room_size", "2"),
        ("signaling.max_message_bytes", "1024"),
    ]);
    let mut a = connect(addr).await;
    a.send(Message::text("{not json")).await.unwrap();
    expect_error(&mut a, "bad-json").await;
    a.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    expect_error(&mut a, "bad-json").await;
    send(&mut a, json!({"type": "dance"})).await;
    expect_error(&mut a, "unknown-type").await;
    send(&mut a, json!({"type": "offer", "to": "someone", "sdp": ""})).await;
    expect_error(&mut a, "not-joined").await;
    send(&mut a, json!({"type": "join", "room": "no spaces"})).await;
    expect_error(&mut a, "bad-room").await;
    send(&mut a, json!({"type": "join", "room": "x".repeat(65)})).await;
    expect_error(&mut a, "bad-room").await;
    join(&mut a, "small").await;
    send(&mut a, json!({"type": "join", "room": "small"})).await;
    expect_error(&mut a, "already-joined").await;
    send(&mut a, json!({"type": "offer", "to": "nobody", "sdp": ""})).await;
    expect_error(&mut a, "unknown-peer").await;

    // Room full: refused, but the socket stays and may join elsewhere.
    let mut b = connect(addr).await;
    join(&mut b, "small").await;
    let mut c = connect(addr).await;
    send(&mut c, json!({"type": "join", "room": "small"})).await;
    expect_error(&mut c, "room-full").await;
    join(&mut c, "elsewhere").await;

    // Too large: refused, then closed.
    let mut d = connect(addr).await;
    send(&mut d, json!({"type": "ping", "pad": "x".repeat(2000)})).await;
    let seen = read_until_closed(&mut d).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["code"], "too-large");

    // None of this disturbed the others.
    expect_nothing_pending(&mut c).await;
    drop((a, b, c, d));
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn origin_check_happens_before_the_upgrade() {
    let (server, addr) = server(&[("http.allowed_origins", "https://app.example")]);
    match open(addr, Some("https://evil.example")).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected HTTP 403, got {:?}", other.map(|_| "an open socket")),
    }
    for origin in [
        None,
        Some(format!("http://{addr}")),
        Some("https://app.example".to_owned()),
    ] {
        let mut ws = open(addr, origin.as_deref())
            .await
            .unwrap_or_else(|e| panic!("origin {origin:?} may connect: {e}"));
        expect_nothing_pending(&mut ws).await;
    }
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_flooder_is_cut_off_and_the_room_keeps_working() {
    let (server, addr) = server(&[]);
    let (mut a, mut b, mut c) = (connect(addr).await, connect(addr).await, connect(addr).await);
    join(&mut a, "busy").await;
    let (idb, _, _) = join(&mut b, "busy").await;
    let (idc, _, _) = join(&mut c, "busy").await;
    recv(&mut a).await;
    recv(&mut a).await;
    recv(&mut b).await;

    // 500 candidates at once from A to B; the default allows 50/s, burst 100.
    for i in 0..500 {
        let m = json!({"type": "candidate", "to": idb, "candidate": format!("c{i}")});
        if a.feed(Message::text(m.to_string())).await.is_err() {
            break;
        }
    }
    let _ = a.flush().await;
    let seen = read_until_closed(&mut a).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["code"], "rate-limited");

    // B and C still talk (B first reads what A got through).
    send(&mut b, json!({"type": "offer", "to": idc, "sdp": "after"})).await;
    assert_eq!(
        recv(&mut c).await,
        json!({"type": "offer", "from": idb, "sdp": "after"})
    );
    send(&mut c, json!({"type": "answer", "to": idb, "sdp": "ok"})).await;
    let mut relayed = 0;
    loop {
        let m = recv(&mut b).await;
        if m["type"] == "answer" {
            assert_eq!(m, json!({"type": "answer", "from": idc, "sdp": "ok"}));
            break;
        }
        assert_eq!(m["type"], "candidate", "{m}");
        relayed += 1;
    }
    assert!(
        (90..250).contains(&relayed),
        "about one burst got through, then A was cut off: {relayed}"
    );
    drop((a, b, c));
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn garbage_is_cut_off_and_the_room_keeps_working() {
    let (server, addr) = server(&[]);
    let (mut a, mut b, mut c) = (connect(addr).await, connect(addr).await, connect(addr).await);
    join(&mut a, "noisy").await;
    let (idb, _, _) = join(&mut b, "noisy").await;
    let (idc, _, _) = join(&mut c, "noisy").await;
    recv(&mut a).await;
    recv(&mut a).await;
    recv(&mut b).await;

    for i in 0..15 {
        let frame = if i % 2 == 0 {
            Message::text(format!("garbage {i}"))
        } else {
            Message::binary(vec![0xff; i])
        };
        if a.send(frame).await.is_err() {
            break;
        }
    }
    let seen = read_until_closed(&mut a).await;
    assert_eq!(seen.len(), 10, "ten errors, then closed: {seen:?}");
    assert!(seen.iter().all(|m| m["code"] == "bad-json"), "{seen:?}");

    send(&mut c, json!({"type": "offer", "to": idb, "sdp": "still here"})).await;
    assert_eq!(
        recv(&mut b).await,
        json!({"type": "offer", "from": idc, "sdp": "still here"})
    );
    drop((a, b, c));
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn keepalive() {
    let (server, addr) = server(&[
        ("signaling.ping_interval", "200ms"),
        ("signaling.resume_grace", "200ms"),
    ]);
    let mut a = connect(addr).await;
    send(&mut a, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut a).await, json!({"type": "pong"}));

    // B stops reading, so it answers no WebSocket ping: after three intervals
    // it is dropped, and after the grace A hears it left. A keeps reading
    // (the library answers the pings), so A stays.
    let mut b = connect(addr).await;
    join(&mut a, "k").await;
    let (idb, _, _) = join(&mut b, "k").await;
    assert_eq!(recv(&mut a).await, json!({"type": "peer-joined", "id": idb}));
    let started = std::time::Instant::now();
    assert_eq!(recv(&mut a).await, json!({"type": "peer-left", "id": idb}));
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "not before three intervals"
    );
    expect_nothing_pending(&mut a).await;
    drop((a, b));
    server.shutdown().unwrap();
}
