//! Issue 13: several ternd nodes as one through a real redis-server (started
//! here on a free loopback port) and real `ternd` processes, each on its own
//! 127.0.0.N address: cluster-wide revocation, per-user quotas, iceServers
//! choosing the least-loaded live node, degradation while Redis is away, and
//! usage records.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{node, Node, CLUSTER_SECRET, HEARTBEAT};
use common::http::metric;
use common::redis_server::RedisServer;
use common::turn::{Io, Relayed, TurnClient};
use common::{rest_credentials_from, wait_for, EchoPeer};

/// Joins `room` on `on` once its welcome lists exactly `peers` (the other
/// nodes' seats arrive by pub/sub): leaves and tries again until `within`.
async fn join_seeing(on: &Node, room: &str, peers: &[String], within: Duration) -> (common::ws::Ws, String, String) {
    use common::ws::{connect, join, send};
    let deadline = Instant::now() + within;
    loop {
        let mut ws = connect(on.http()).await;
        let (id, seen, token) = join(&mut ws, room).await;
        if seen == peers {
            return (ws, id, token);
        }
        assert!(
            Instant::now() < deadline,
            "node {} lists {peers:?} in `{room}` within {within:?} (saw {seen:?})",
            on.id
        );
        send(&mut ws, serde_json::json!({"type": "leave"})).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `ws` until `peer-joined` for `id` (presence across nodes), passing
/// over the joins and leaves of [`join_seeing`]'s earlier tries.
async fn hears_joined(ws: &mut common::ws::Ws, id: &str) {
    loop {
        let m = common::ws::recv(ws).await;
        if m == serde_json::json!({"type": "peer-joined", "id": id}) {
            return;
        }
        assert!(
            m["type"] == "peer-joined" || m["type"] == "peer-left",
            "only presence before {id}'s peer-joined: {m}"
        );
    }
}

/// Waits until every node sees Redis and all of `nodes` in the registry.
fn wait_for_cluster(nodes: &[&Node]) {
    let n = nodes.len() as u64;
    let joined = wait_for(Duration::from_secs(10), || {
        nodes
            .iter()
            .all(|x| x.cluster_health() == "cluster=ok" && metric(x.http(), "ternd_cluster_nodes") == n)
    });
    assert!(joined, "{n} nodes see each other through Redis within 10 s");
}

fn allocate(on: &Node, user: &str) -> (TurnClient, Result<std::net::SocketAddr, u16>) {
    let (u, p) = rest_credentials_from(CLUSTER_SECRET, user);
    let mut c = TurnClient::new(Io::udp(on.udp()), &u, &p);
    let r = c.allocate();
    (c, r)
}

#[test]
fn a_revocation_on_one_node_is_in_force_on_every_node_within_a_second() {
    let redis = RedisServer::start();
    let a = node("a", 11, &redis.url(), &[]);
    let b = node("b", 12, &redis.url(), &[]);
    let c = node("c", 13, &redis.url(), &[]);
    wait_for_cluster(&[&a, &b, &c]);
    let (u, p) = rest_credentials_from(CLUSTER_SECRET, "mallory");
    let mut on_b = TurnClient::new(Io::udp(b.udp()), &u, &p);
    let mut on_c = TurnClient::new(Io::udp(c.udp()), &u, &p);
    on_b.allocate().expect("allocates on B");
    on_c.allocate().expect("allocates on C");
    assert_eq!(b.allocation_users(), std::slice::from_ref(&u));

    let t = Instant::now();
    assert_eq!(a.revoke(&u).status, 200, "revoked on A");
    let refused_everywhere = wait_for(Duration::from_secs(1), || {
        [&b, &c].iter().all(|n| {
            let mut fresh = TurnClient::new(Io::udp(n.udp()), &u, &p);
            n.allocation_users().is_empty() && fresh.allocate() == Err(401)
        })
    });
    let took = t.elapsed();
    assert!(
        refused_everywhere && took <= Duration::from_secs(1),
        "B and C refuse the username and closed its allocations within 1 s (took {took:?})"
    );
    eprintln!("revocation propagation (revoke on A until B and C refuse): {took:?}");
    for (name, client) in [("B", &mut on_b), ("C", &mut on_c)] {
        let r = client.refresh(600);
        assert!(matches!(r, Err(401) | Err(437)), "Refresh refused on {name}: {r:?}");
    }
    assert_eq!(
        metric(b.http(), "ternd_cluster_revocations_applied_total"),
        1,
        "B heard it from the cluster"
    );
    // The key expires with the credential.
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("ternd:revoked:{u}"))
        .query(&mut redis.client().get_connection().unwrap())
        .unwrap();
    assert!(
        (3000..=3600).contains(&ttl),
        "the revocation key expires with the credential: {ttl}"
    );
}

#[test]
fn the_per_user_quota_holds_across_nodes_and_a_killed_nodes_share_comes_back() {
    let redis = RedisServer::start();
    let quota = [("turn.max_allocations_per_user", "3")];
    let a = node("a", 21, &redis.url(), &quota);
    let b = node("b", 22, &redis.url(), &quota);
    let mut c = node("c", 23, &redis.url(), &quota);
    wait_for_cluster(&[&a, &b, &c]);
    let mut held = Vec::new();
    for n in [&a, &b, &c] {
        let (client, r) = allocate(n, "quota-user");
        r.unwrap_or_else(|e| panic!("allocation on {} refused with {e}", n.id));
        held.push(client);
    }
    // The counts travel by pub/sub: one round trip, well within a heartbeat.
    std::thread::sleep(HEARTBEAT * 2);
    for n in [&a, &b, &c] {
        assert_eq!(
            allocate(n, "quota-user").1,
            Err(486),
            "the 4th allocation on {} gets 486",
            n.id
        );
    }
    assert!(allocate(&a, "someone-else").1.is_ok(), "other users are not affected");

    // C dies holding one: its share comes back when its counts expire.
    let t = Instant::now();
    c.kill9();
    let mut again = None;
    let back = wait_for(Duration::from_secs(3), || {
        let (client, r) = allocate(&a, "quota-user");
        if r.is_ok() {
            again = Some(client);
        }
        r.is_ok()
    });
    let took = t.elapsed();
    assert!(back, "the killed node's share is back within 3 s");
    assert!(
        took <= HEARTBEAT * 3 + HEARTBEAT * 3,
        "within the TTL (3 heartbeats) and a heartbeat's read: {took:?}"
    );
    eprintln!(
        "quota share of a kill -9'd node back after {took:?} (TTL {:?})",
        HEARTBEAT * 3
    );
    std::thread::sleep(HEARTBEAT * 2);
    assert_eq!(allocate(&b, "quota-user").1, Err(486), "full again: A 2, B 1");
}

#[test]
fn ice_servers_send_callers_to_the_least_loaded_live_node() {
    let redis = RedisServer::start();
    let eu = [("cluster.region", "eu")];
    let a = node("a", 31, &redis.url(), &eu);
    let b = node("b", 32, &redis.url(), &eu);
    let mut c = node("c", 33, &redis.url(), &[("cluster.region", "us")]);
    wait_for_cluster(&[&a, &b, &c]);
    let _load: Vec<TurnClient> = [&a, &a, &b]
        .iter()
        .map(|n| {
            let (client, r) = allocate(n, "loader");
            r.unwrap();
            client
        })
        .collect();
    let c_ip = c.ip.to_string();
    let b_ip = b.ip.to_string();
    // Settled once every node has read every heartbeat carrying the new
    // loads: C (0) overall, and B (1) rather than A (2) within region eu.
    let settled = wait_for(Duration::from_secs(3), || {
        [&a, &b, &c].iter().all(|n| {
            n.chosen("").as_deref() == Ok(c_ip.as_str()) && n.chosen("?region=eu").as_deref() == Ok(b_ip.as_str())
        })
    });
    assert!(
        settled,
        "every node sends callers to C (0 allocations; A has 2, B 1), and eu callers to B"
    );
    let r = a.get("/api/ice-servers");
    let turn_urls = r.json()["iceServers"][1]["urls"].clone();
    assert_eq!(
        turn_urls[0].as_str().unwrap(),
        format!("turn:{}?transport=udp", c.udp()),
        "C's own URLs and ports"
    );
    // The credentials minted on A work on C.
    let ice = r.json();
    let (u, p) = (
        ice["iceServers"][1]["username"].as_str().unwrap(),
        ice["iceServers"][1]["credential"].as_str().unwrap(),
    );
    TurnClient::new(Io::udp(c.udp()), u, p)
        .allocate()
        .expect("credentials from A's API work on C");
    assert_eq!(a.chosen("?node=b"), Ok(b.ip.to_string()), "?node= picks one");
    assert_eq!(a.chosen("?node=nope"), Err(404));
    assert_eq!(a.chosen("?region=eu"), Ok(b.ip.to_string()), "the least loaded of eu");
    assert_eq!(a.chosen("?region=mars"), Ok(c_ip.clone()), "no such region: any node");

    // B drains (it holds an allocation, so it stays up, draining): never chosen.
    b.ternd.signal(libc::SIGTERM);
    assert!(
        wait_for(Duration::from_secs(2), || a.chosen("?node=b") == Err(404)),
        "a draining node is not returned"
    );
    // C dies: gone within three heartbeats (and one to read it).
    c.kill9();
    let t = Instant::now();
    let a_ip = a.ip.to_string();
    assert!(
        wait_for(HEARTBEAT * 5, || a.chosen("").as_deref() == Ok(a_ip.as_str())),
        "a dead node is not returned after 3 heartbeats"
    );
    eprintln!("dead node left the choice after {:?}", t.elapsed());
    for _ in 0..20 {
        assert_eq!(
            a.chosen("").as_deref(),
            Ok(a_ip.as_str()),
            "never the dead or the draining node"
        );
    }
    assert_eq!(a.chosen("?node=c"), Err(404));
    b.ternd.signal(libc::SIGKILL);
}

/// Sends `data` to the echo peer through `client`'s allocation and returns the echo.
fn echo(client: &mut TurnClient, peer: std::net::SocketAddr, data: &[u8]) -> Vec<u8> {
    client.send_indication(peer, data);
    match client.recv_relayed() {
        Some(Relayed::Indication(from, got)) => {
            assert_eq!(from, peer);
            got
        }
        other => panic!("no echo through the relay: {other:?}"),
    }
}

#[test]
fn with_redis_gone_nodes_relay_alone_and_resynchronise_when_it_returns() {
    let mut redis = RedisServer::start();
    let a = node("a", 41, &redis.url(), &[]);
    let b = node("b", 42, &redis.url(), &[]);
    wait_for_cluster(&[&a, &b]);
    let peer = EchoPeer::start(false);
    let (mut call, r) = allocate(&a, "caller");
    r.unwrap();
    call.create_permission(&[peer.addr]).unwrap();
    assert_eq!(echo(&mut call, peer.addr, b"before"), b"before");

    redis.stop();
    assert!(
        wait_for(Duration::from_secs(3), || [&a, &b]
            .iter()
            .all(|n| n.cluster_health() == "cluster=degraded")),
        "/readyz says cluster=degraded"
    );
    assert_eq!(a.get("/readyz").status, 200, "still ready: it relays alone");
    assert_eq!(metric(a.http(), "ternd_cluster_up"), 0);
    for i in 0..5 {
        let msg = format!("during {i}");
        assert_eq!(
            echo(&mut call, peer.addr, msg.as_bytes()),
            msg.as_bytes(),
            "the call flows"
        );
    }
    let (_new, r) = allocate(&b, "newcomer");
    r.expect("new allocations succeed while Redis is away");

    redis.restart();
    wait_for_cluster(&[&a, &b]);
    assert_eq!(metric(a.http(), "ternd_cluster_up"), 1);
    // Revocation works again, without restarting a node.
    let (u, p) = rest_credentials_from(CLUSTER_SECRET, "after-outage");
    let mut on_b = TurnClient::new(Io::udp(b.udp()), &u, &p);
    on_b.allocate().unwrap();
    assert_eq!(a.revoke(&u).status, 200);
    assert!(
        wait_for(Duration::from_secs(1), || b.allocation_users().iter().all(|x| x != &u)),
        "B puts A's revocation in force within 1 s after the outage"
    );
    assert_eq!(echo(&mut call, peer.addr, b"after"), b"after");

    // Rooms span the nodes again.
    use common::ws::{connect, join, recv, send};
    common::block_on(async {
        let mut pa = connect(a.http()).await;
        let (ia, _, _) = join(&mut pa, "after-outage").await;
        let (mut pb, ib, _) = join_seeing(&b, "after-outage", std::slice::from_ref(&ia), Duration::from_secs(3)).await;
        send(&mut pb, serde_json::json!({"type": "offer", "to": ia, "sdp": "x"})).await;
        loop {
            let m = recv(&mut pa).await;
            if m["type"] == "offer" {
                assert_eq!(m["from"], ib.as_str());
                break;
            }
        }
    });
}

#[test]
fn usage_records_match_the_bytes_relayed() {
    let redis = RedisServer::start();
    let dir = common::fresh_dir("ternd-usage-test");
    let file = dir.join("usage.jsonl");
    let file_set = file.display().to_string();
    let a = node("a", 51, &redis.url(), &[("usage.file", &file_set)]);
    wait_for_cluster(&[&a]);
    let peer = EchoPeer::start(false);
    let before = redis.commands_processed();
    let (mut client, r) = allocate(&a, "billed");
    let relay = r.unwrap();
    client.create_permission(&[peer.addr]).unwrap();
    let (mut up, mut down) = (0u64, 0u64);
    for i in 0..10 {
        let data = vec![i as u8; 100 + i];
        up += data.len() as u64;
        down += echo(&mut client, peer.addr, &data).len() as u64;
    }
    client.refresh(0).expect("deleted");
    let written = wait_for(Duration::from_secs(3), || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.lines().count() == 1)
    });
    assert!(written, "one JSON line in usage.file");
    let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&file).unwrap().trim()).unwrap();
    assert_eq!(line["node"], "a");
    assert_eq!(line["user"], client.username.as_str());
    assert_eq!(line["client"], client.io.local_addr().to_string());
    assert_eq!(line["relay"], relay.to_string());
    assert_eq!(line["to_peer_bytes"], up);
    assert_eq!(line["to_peer_packets"], 10);
    assert_eq!(line["to_client_bytes"], down);
    assert_eq!(line["to_client_packets"], 10);
    assert_eq!(line["reason"], "deleted");

    let mut conn = redis.client().get_connection().unwrap();
    let in_stream = wait_for(Duration::from_secs(3), || {
        redis::cmd("XLEN").arg("ternd:usage").query::<u64>(&mut conn).unwrap() == 1
    });
    assert!(in_stream, "one entry in the ternd:usage stream");
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("ternd:usage")
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    let fields: std::collections::HashMap<_, _> = entries[0].1.iter().cloned().collect();
    assert_eq!(fields["to_peer_bytes"], up.to_string());
    assert_eq!(fields["to_client_bytes"], down.to_string());
    assert_eq!(fields["to_peer_packets"], "10");
    assert_eq!(fields["relay"], relay.to_string());
    eprintln!(
        "Redis commands during one allocation's life (with heartbeats): {}",
        redis.commands_processed() - before
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_single_node_writes_usage_records_to_its_file_without_redis() {
    let dir = common::fresh_dir("ternd-usage-single");
    let file = dir.join("usage.jsonl");
    let file_set = file.display().to_string();
    let a = node("alone", 61, "", &[("usage.file", &file_set)]);
    // Ready once its shards answer (a moment after HTTP), and then with no
    // cluster line.
    assert!(
        wait_for(Duration::from_secs(3), || a.get("/readyz").body != "not ready\n"),
        "the node gets ready"
    );
    assert_eq!(a.get("/readyz").body, "ready\n", "no cluster line when alone");
    let (mut client, r) = allocate(&a, "solo");
    r.unwrap();
    client.refresh(0).unwrap();
    assert!(wait_for(Duration::from_secs(3), || std::fs::read_to_string(&file)
        .is_ok_and(|t| t.lines().count() == 1)));
    let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&file).unwrap().trim()).unwrap();
    assert_eq!(line["node"], "alone");
    assert_eq!(line["to_peer_bytes"], 0);
    // Counted just after the line is written.
    assert!(wait_for(Duration::from_secs(2), || metric(
        a.http(),
        "ternd_usage_records_total{sink=\"file\"}"
    ) == 1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// p50 and p99 of `samples`.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// Round trips of a relayed message between `x` and `y` (ids `ix`, `iy`).
async fn round_trips(x: &mut common::ws::Ws, y: &mut common::ws::Ws, ix: &str, iy: &str, n: usize) -> Vec<Duration> {
    use common::ws::{recv, send};
    let mut out = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        send(x, serde_json::json!({"type": "candidate", "to": iy, "n": i})).await;
        assert_eq!(recv(y).await["n"], i);
        send(y, serde_json::json!({"type": "candidate", "to": ix, "n": i})).await;
        assert_eq!(recv(x).await["n"], i);
        out.push(t.elapsed() / 2);
    }
    out
}

#[test]
fn signaling_rooms_span_nodes_with_presence_resume_order_and_limits() {
    use common::ws::{connect, expect_error, expect_nothing_pending, join, recv, send, welcome};
    use serde_json::json;
    let redis = RedisServer::start();
    // Room of 3; a rate that lets the latency rounds through.
    let room_size = [
        ("signaling.max_room_size", "3"),
        ("signaling.max_messages_per_sec", "5000"),
    ];
    let a = node("a", 71, &redis.url(), &room_size);
    let b = node("b", 72, &redis.url(), &room_size);
    let c = node("c", 73, &redis.url(), &room_size);
    wait_for_cluster(&[&a, &b, &c]);
    common::block_on(async {
        let mut pa = connect(a.http()).await;
        let (ia, peers, _) = join(&mut pa, "spanning").await;
        assert!(peers.is_empty());
        // B's welcome lists the peer on A (its join reaches B by pub/sub).
        let (mut pb, ib, token_b) =
            join_seeing(&b, "spanning", std::slice::from_ref(&ia), Duration::from_secs(3)).await;
        hears_joined(&mut pa, &ib).await;

        // offer/answer, then candidates in the order sent.
        send(&mut pa, json!({"type": "offer", "to": ib, "sdp": "v=0 offer"})).await;
        assert_eq!(
            recv(&mut pb).await,
            json!({"type": "offer", "from": ia, "sdp": "v=0 offer"})
        );
        send(&mut pb, json!({"type": "answer", "to": ia, "sdp": "v=0 answer"})).await;
        assert_eq!(
            recv(&mut pa).await,
            json!({"type": "answer", "from": ib, "sdp": "v=0 answer"})
        );
        for i in 0..30 {
            send(&mut pa, json!({"type": "candidate", "to": ib, "n": i})).await;
        }
        for i in 0..30 {
            assert_eq!(recv(&mut pb).await["n"], i, "order per sender kept");
        }

        // Latency: across nodes vs on one node.
        let (p50, p99) = percentiles(round_trips(&mut pa, &mut pb, &ia, &ib, 200).await);
        let mut qa = connect(a.http()).await;
        let (iq, _, _) = join(&mut qa, "same-node").await;
        let mut ra = connect(a.http()).await;
        let (ir, _, _) = join(&mut ra, "same-node").await;
        assert_eq!(recv(&mut qa).await["type"], "peer-joined");
        let (s50, s99) = percentiles(round_trips(&mut qa, &mut ra, &iq, &ir, 200).await);
        eprintln!("signaling one-way latency: across nodes p50 {p50:?} p99 {p99:?}; same node p50 {s50:?} p99 {s99:?}");

        // The room's size holds across nodes: 3 with one on C.
        let mut expected = vec![ia.clone(), ib.clone()];
        expected.sort();
        let (mut pc, ic, _) = join_seeing(&c, "spanning", &expected, Duration::from_secs(3)).await;
        hears_joined(&mut pa, &ic).await;
        hears_joined(&mut pb, &ic).await;
        // A heard C's seat (the peer-joined above): the room is full on A.
        let mut full = connect(a.http()).await;
        send(&mut full, json!({"type": "join", "room": "spanning"})).await;
        expect_error(&mut full, "room-full").await;

        // B's peer drops and resumes on C: same id, nobody hears it leave.
        drop(pb);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut pb2 = connect(c.http()).await;
        send(&mut pb2, json!({"type": "join", "room": "spanning", "resume": token_b})).await;
        let (again, peers, _) = welcome(&mut pb2).await;
        assert_eq!(again, ib, "the id resumes on another node");
        let mut expected = vec![ia.clone(), ic.clone()];
        expected.sort();
        assert_eq!(peers, expected);
        tokio::time::sleep(Duration::from_millis(100)).await;
        send(&mut pa, json!({"type": "candidate", "to": ib, "n": "after-resume"})).await;
        assert_eq!(recv(&mut pb2).await["n"], "after-resume", "relayed to its new node");
        expect_nothing_pending(&mut pa).await;
        expect_nothing_pending(&mut pc).await;

        // A leave on C is heard on A.
        send(&mut pc, json!({"type": "leave"})).await;
        assert_eq!(recv(&mut pa).await, json!({"type": "peer-left", "id": ic}));
        assert_eq!(recv(&mut pb2).await, json!({"type": "peer-left", "id": ic}));
    });
}

#[test]
fn a_caller_on_one_node_calls_a_callee_on_another_relay_only_in_chromium() {
    if !common::chromium::prerequisites(false) {
        return;
    }
    let redis = RedisServer::start();
    let a = node("a", 81, &redis.url(), &[]);
    let b = node("b", 82, &redis.url(), &[]);
    let c = node("c", 83, &redis.url(), &[]);
    wait_for_cluster(&[&a, &b, &c]);
    let relayed_before: u64 = [&a, &b, &c]
        .iter()
        .map(|n| metric(n.http(), "ternd_relayed_packets_total{direction=\"to_peer\"}"))
        .sum();
    let mut cmd = std::process::Command::new("node");
    cmd.arg(common::chromium::browser_dir().join("run.mjs"))
        .arg(format!("http://{}", a.http()))
        .arg("cluster-call")
        .arg(format!("http://{}", b.http()));
    let r = common::chromium::run_json(&mut cmd, "run.mjs cluster-call", Duration::from_secs(55));

    // Each page signals through its own node, yet they met in one room.
    assert_eq!(r["state"]["a"]["peer"], r["state"]["b"]["id"], "{}", r["state"]);
    assert_eq!(r["state"]["b"]["peer"], r["state"]["a"]["id"], "{}", r["state"]);
    let relay_ips: Vec<String> = [&a, &b, &c].iter().map(|n| n.ip.to_string()).collect();
    for side in ["a", "b"] {
        let pair = &r["pairs"][side];
        for end in ["local", "remote"] {
            assert_eq!(pair[end]["type"], "relay", "{side}: {pair}");
            let ip = pair[end]["address"].as_str().unwrap_or_default().to_string();
            assert!(relay_ips.contains(&ip), "{side}.{end} on a node's relay: {pair}");
        }
    }
    let texts = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["text"].as_str().map(String::from))
            .collect()
    };
    assert!(
        texts(&r["chatB"]).contains(&"hello from node a".to_string()),
        "{}",
        r["chatB"]
    );
    assert!(
        texts(&r["chatA"]).contains(&"hello from node b".to_string()),
        "{}",
        r["chatA"]
    );
    let relayed_after: u64 = [&a, &b, &c]
        .iter()
        .map(|n| metric(n.http(), "ternd_relayed_packets_total{direction=\"to_peer\"}"))
        .sum();
    assert!(
        relayed_after > relayed_before,
        "the call went through the cluster's relays"
    );
}
