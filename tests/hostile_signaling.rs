//! Signaling under hostile load (issue 12, items 2 and 14): a stranger with
//! no API key must not be able to make the server hold memory beyond its
//! queue budgets, and honest clients stay served meanwhile. Real sockets
//! against an in-process server on 127.0.0.1; every loop is bounded in
//! count and time.

mod common;

use std::time::{Duration, Instant};

use common::http::metric;
use common::ws::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// The default `signaling.max_message_bytes`.
const MAX_MESSAGE: usize = 65536;
/// The default `signaling.max_queued_bytes_per_peer`.
const PER_PEER: usize = 256 * 1024;
/// What the process may grow by beyond the budget under attack: buffers,
/// allocator slack, the test's own clients. The unfixed server grew by
/// about 170 MiB here.
const MARGIN: usize = 24 << 20;

/// This process's resident set (the server runs in it), in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kib * 1024
}

/// An offer to `to` just under `MAX_MESSAGE`, shaped to be as costly as
/// possible as a parsed tree: thousands of one-member objects.
fn hostile_offer(to: &str) -> String {
    let head = format!(r#"{{"type":"offer","to":"{to}","x":["#);
    let n = (MAX_MESSAGE - head.len() - 2) / 7;
    let mut text = head;
    text.push_str(&vec![r#"{"":0}"#; n].join(","));
    text.push_str("]}");
    assert!(text.len() <= MAX_MESSAGE);
    text
}

/// Item 2: 40 messages of 64 KiB `[{"":0},…]` for a peer in its resume
/// grace. The server keeps at most `max_queued_bytes_per_peer` for it,
/// refuses the rest with `peer-busy`, stays within its budget in memory,
/// frees what it kept when the grace ends, and serves an honest pair
/// throughout.
#[tokio::test(flavor = "current_thread")]
async fn grace_queue_flood_stays_within_budget() {
    let (server, addr) = server(&[("signaling.resume_grace", "3s")]);
    let mut h1 = connect(addr).await;
    let mut h2 = connect(addr).await;
    let (id1, _, _) = join(&mut h1, "honest").await;
    let (id2, _, _) = join(&mut h2, "honest").await;
    recv(&mut h1).await; // peer-joined

    let mut victim = connect(addr).await;
    let (idv, _, _) = join(&mut victim, "victim").await;
    let mut attacker = connect(addr).await;
    join(&mut attacker, "victim").await;
    recv(&mut victim).await; // peer-joined
    victim.close(None).await.unwrap();
    read_until_closed(&mut victim).await;

    let hostile = hostile_offer(&idv);
    // Warm up the paths (first allocations of buffers) before measuring.
    send(&mut attacker, json!({"type": "ping"})).await;
    recv(&mut attacker).await;
    let before = rss();
    let started = Instant::now();
    for _ in 0..40 {
        attacker.send(Message::text(hostile.clone())).await.expect("send");
    }
    send(&mut attacker, json!({"type": "ping"})).await;
    let mut busy = 0;
    for _ in 0..41 {
        let m = recv(&mut attacker).await;
        if m["type"] == "pong" {
            break;
        }
        assert_eq!(m["code"], "peer-busy", "{m}");
        busy += 1;
    }
    let took = started.elapsed();
    let growth = rss().saturating_sub(before);
    eprintln!(
        "attack: RSS grew by {} KiB in {took:?}; {busy} of 40 refused",
        growth / 1024
    );
    let kept = 40 - busy;
    assert!(kept >= 1 && kept * MAX_MESSAGE <= PER_PEER + MAX_MESSAGE, "kept {kept}");
    assert!(
        growth <= PER_PEER + MARGIN,
        "RSS grew by {growth} bytes under attack (budget {PER_PEER} + margin {MARGIN})"
    );
    let dropped = r#"ternd_signaling_dropped_total{reason="peer_queue_full"}"#;
    assert_eq!(metric(addr, dropped), busy as u64);
    assert!(metric(addr, "ternd_signaling_queued_bytes") >= (kept * (MAX_MESSAGE - 100)) as u64);

    // The honest pair completes an offer/answer meanwhile.
    send(&mut h1, json!({"type": "offer", "to": id2, "sdp": "o"})).await;
    assert_eq!(recv(&mut h2).await, json!({"type": "offer", "from": id1, "sdp": "o"}));
    send(&mut h2, json!({"type": "answer", "to": id1, "sdp": "a"})).await;
    assert_eq!(recv(&mut h1).await, json!({"type": "answer", "from": id2, "sdp": "a"}));

    // When the grace ends, what was kept is freed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if metric(addr, "ternd_signaling_queued_bytes") == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "kept bytes freed after the grace");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        recv(&mut attacker).await,
        json!({"type": "peer-left", "id": idv}),
        "the grace ended"
    );
    // Every socket closed: the hub forgets them all.
    drop((h1, h2, attacker));
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(addr, "ternd_signaling_connections") != 0 {
        assert!(Instant::now() < deadline, "closed sockets forgotten");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().unwrap();
}

/// Item 14: a frame whose header announces more than `max_message_bytes` is
/// refused from the header alone (`too-large`, then the close), without the
/// server waiting for, or buffering, its payload; a fresh client is served.
#[tokio::test(flavor = "current_thread")]
async fn oversized_frame_is_refused_by_its_header() {
    let (server, addr) = server(&[]);
    let mut ws = connect(addr).await;
    // A masked text frame announcing 8 MiB, of which only 16 KiB follow.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(8u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[b'x'; 16 * 1024]);
    let MaybeTlsStream::Plain(tcp) = ws.get_mut() else {
        panic!("plain TCP");
    };
    tcp.write_all(&frame).await.expect("write the frame");
    let seen = read_until_closed(&mut ws).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["code"], "too-large");

    let mut fresh = connect(addr).await;
    send(&mut fresh, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut fresh).await, json!({"type": "pong"}));
    drop(fresh);
    server.shutdown().unwrap();
}
