//! `GET /metrics`: Prometheus text. The shards are asked for their counters
//! at scrape time (nothing extra on the packet path), and every label set is
//! fixed (methods, codes, drop reasons, directions, shard numbers): the
//! number of series never grows with users or clients.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use proto::metrics::{CODES, METHODS};

use super::AppState;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP ternd_{name} {help}\n# TYPE ternd_{name} {kind}");
}

/// The cluster's and usage records' series (README "Running a cluster").
fn cluster_metrics(o: &mut String, s: &crate::cluster::Status) {
    use std::sync::atomic::Ordering::Relaxed;
    if s.enabled {
        family(
            o,
            "cluster_up",
            "gauge",
            "1 while Redis answers; 0 when degraded to this node alone.",
        );
        let _ = writeln!(o, "ternd_cluster_up {}", u8::from(s.is_up()));
        let now_ms = crate::utc_time::unix_ms();
        family(
            o,
            "cluster_nodes",
            "gauge",
            "Nodes with a live heartbeat, as of the last one read.",
        );
        let _ = writeln!(o, "ternd_cluster_nodes {}", s.live_nodes(now_ms));
        family(
            o,
            "cluster_redis_errors_total",
            "counter",
            "Redis commands that failed or timed out.",
        );
        let _ = writeln!(o, "ternd_cluster_redis_errors_total {}", s.redis_errors.load(Relaxed));
        family(
            o,
            "cluster_revocations_applied_total",
            "counter",
            "Revocations made on another node and put in force here.",
        );
        let _ = writeln!(
            o,
            "ternd_cluster_revocations_applied_total {}",
            s.revocations_applied.load(Relaxed)
        );
        family(
            o,
            "cluster_signaling_lost_total",
            "counter",
            "Signaling messages for other nodes lost because Redis was away.",
        );
        let _ = writeln!(
            o,
            "ternd_cluster_signaling_lost_total {}",
            s.signal_dropped.load(Relaxed)
        );
    }
    family(o, "usage_records_total", "counter", "Usage records written, by sink.");
    let _ = writeln!(
        o,
        "ternd_usage_records_total{{sink=\"file\"}} {}",
        s.usage_file_records.load(Relaxed)
    );
    let _ = writeln!(
        o,
        "ternd_usage_records_total{{sink=\"stream\"}} {}",
        s.usage_stream_records.load(Relaxed)
    );
    family(
        o,
        "usage_records_dropped_total",
        "counter",
        "Usage records lost (file error, or backlog full while Redis was away).",
    );
    let _ = writeln!(o, "ternd_usage_records_dropped_total {}", s.usage_dropped.load(Relaxed));
}

pub async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let shards = app.server.snapshots().await;
    let mut total = proto::Stats::default();
    for s in &shards {
        total.merge(&s.stats);
    }
    let sum = |f: fn(&crate::server::ShardSnapshot) -> usize| shards.iter().map(f).sum::<usize>();
    let mut o = String::with_capacity(16 * 1024);

    family(&mut o, "allocations", "gauge", "Live TURN allocations.");
    let _ = writeln!(o, "ternd_allocations {}", sum(|s| s.allocations));
    family(
        &mut o,
        "shard_allocations",
        "gauge",
        "Live TURN allocations per shard (load balance).",
    );
    for s in &shards {
        let _ = writeln!(o, "ternd_shard_allocations{{shard=\"{}\"}} {}", s.index, s.allocations);
    }
    family(
        &mut o,
        "relay_ports_free",
        "gauge",
        "Relay ports in relay.port_min..=port_max not held by an allocation, by family (another process may hold some).",
    );
    for (family_label, pick) in [
        (
            "ipv4",
            (|s| s.free_relay_ports.0) as fn(&crate::server::ShardSnapshot) -> Option<usize>,
        ),
        ("ipv6", |s| s.free_relay_ports.1),
    ] {
        let free: Vec<usize> = shards.iter().filter_map(pick).collect();
        if !free.is_empty() {
            let _ = writeln!(
                o,
                "ternd_relay_ports_free{{family=\"{family_label}\"}} {}",
                free.iter().sum::<usize>()
            );
        }
    }
    family(&mut o, "permissions", "gauge", "Live permissions.");
    let _ = writeln!(o, "ternd_permissions {}", sum(|s| s.permissions));
    family(&mut o, "channels", "gauge", "Live channel bindings.");
    let _ = writeln!(o, "ternd_channels {}", sum(|s| s.channels));
    family(&mut o, "allocations_created_total", "counter", "Allocations created.");
    let _ = writeln!(o, "ternd_allocations_created_total {}", total.allocations_created);
    family(
        &mut o,
        "allocations_closed_total",
        "counter",
        "Allocations closed (expired, deleted, connection closed).",
    );
    let _ = writeln!(o, "ternd_allocations_closed_total {}", total.allocations_closed);
    family(
        &mut o,
        "tcp_relay_connections_total",
        "counter",
        "RFC 6062 peer data connections: connected (Connect), accepted (ConnectionAttempt), bound (ConnectionBind), failed (447), expired (unbound for 30 s).",
    );
    for (event, n) in total.tcp_relay.labelled() {
        let _ = writeln!(o, "ternd_tcp_relay_connections_total{{event=\"{event}\"}} {n}");
    }

    family(
        &mut o,
        "peer_icmp_total",
        "counter",
        "ICMP errors about datagrams relayed to peers (RFC 8656 §11.5): relayed to the client in a Data indication, or dropped (disabled: turn.relay_icmp off; ignored_type, no_allocation, no_permission).",
    );
    for (outcome, n) in total.peer_icmp.labelled() {
        let _ = writeln!(o, "ternd_peer_icmp_total{{outcome=\"{outcome}\"}} {n}");
    }

    let t = &total.traffic;
    family(&mut o, "relayed_bytes_total", "counter", "Payload bytes relayed.");
    let _ = writeln!(
        o,
        "ternd_relayed_bytes_total{{direction=\"to_peer\"}} {}",
        t.to_peer_bytes
    );
    let _ = writeln!(
        o,
        "ternd_relayed_bytes_total{{direction=\"to_client\"}} {}",
        t.to_client_bytes
    );
    family(&mut o, "relayed_packets_total", "counter", "Datagrams relayed.");
    let _ = writeln!(
        o,
        "ternd_relayed_packets_total{{direction=\"to_peer\"}} {}",
        t.to_peer_packets
    );
    let _ = writeln!(
        o,
        "ternd_relayed_packets_total{{direction=\"to_client\"}} {}",
        t.to_client_packets
    );

    // The kernel's part: its relayed traffic is in the totals above already
    // (read back by each shard before answering); these are its own counts.
    let fastpath = app.server.fastpath_counters();
    family(
        &mut o,
        "fastpath_attached",
        "gauge",
        "1 while the XDP fast path is attached.",
    );
    let _ = writeln!(o, "ternd_fastpath_attached {}", u8::from(fastpath.is_some()));
    let f = fastpath.unwrap_or_default();
    family(
        &mut o,
        "fastpath_binding_responses_total",
        "counter",
        "Binding requests answered by the XDP fast path.",
    );
    let _ = writeln!(o, "ternd_fastpath_binding_responses_total {}", f.bindings);
    family(
        &mut o,
        "fastpath_relayed_packets_total",
        "counter",
        "Datagrams the XDP fast path relayed (also counted in relayed_packets_total).",
    );
    let _ = writeln!(
        o,
        "ternd_fastpath_relayed_packets_total{{direction=\"to_peer\"}} {}",
        f.to_peer
    );
    let _ = writeln!(
        o,
        "ternd_fastpath_relayed_packets_total{{direction=\"to_client\"}} {}",
        f.to_client
    );
    family(
        &mut o,
        "fastpath_passed_total",
        "counter",
        "UDP datagrams the XDP fast path looked at and passed to userspace.",
    );
    let _ = writeln!(o, "ternd_fastpath_passed_total {}", f.passed);

    family(
        &mut o,
        "requests_total",
        "counter",
        "STUN/TURN requests received, by method.",
    );
    for (i, m) in METHODS.iter().enumerate() {
        let _ = writeln!(
            o,
            "ternd_requests_total{{method=\"{m}\"}} {}",
            total.requests.requests[i]
        );
    }
    family(
        &mut o,
        "responses_total",
        "counter",
        "Responses sent, by method and code (200 = success).",
    );
    for (i, m) in METHODS.iter().enumerate() {
        for (j, c) in CODES.iter().enumerate() {
            let _ = writeln!(
                o,
                "ternd_responses_total{{method=\"{m}\",code=\"{c}\"}} {}",
                total.requests.responses[i][j]
            );
        }
    }
    family(
        &mut o,
        "auth_failures_total",
        "counter",
        "Signed requests refused by authentication, by reason (the 401 challenge to a request without credentials is not one).",
    );
    for (reason, n) in total.auth_failures.iter() {
        let _ = writeln!(o, "ternd_auth_failures_total{{reason=\"{}\"}} {n}", reason.label());
    }
    family(
        &mut o,
        "drops_total",
        "counter",
        "Input dropped without an answer, by reason.",
    );
    for (reason, n) in total.drops.iter() {
        let _ = writeln!(o, "ternd_drops_total{{reason=\"{}\"}} {n}", reason.label());
    }
    family(
        &mut o,
        "authenticated_requests_total",
        "counter",
        "Requests that passed long-term authentication (RFC 8489 §9.2), by password algorithm, \
         USERNAME or USERHASH, and integrity HMAC.",
    );
    for (alg, user, mac, n) in total.logins.iter() {
        let _ = writeln!(
            o,
            "ternd_authenticated_requests_total{{password_algorithm=\"{alg}\",identity=\"{user}\",integrity=\"{mac}\"}} {n}"
        );
    }
    family(
        &mut o,
        "stream_connections",
        "gauge",
        "Open TCP and TLS client connections.",
    );
    let _ = writeln!(o, "ternd_stream_connections {}", app.server.open_connections());
    family(
        &mut o,
        "dtls_sessions",
        "gauge",
        "Open TURN over DTLS sessions (handshaking or established).",
    );
    let _ = writeln!(o, "ternd_dtls_sessions {}", app.server.dtls_sessions());
    family(
        &mut o,
        "stream_queued_bytes",
        "gauge",
        "Bytes queued towards TCP and TLS clients that they have not read yet.",
    );
    let _ = writeln!(o, "ternd_stream_queued_bytes {}", app.server.stream_queued_bytes());
    family(
        &mut o,
        "http_connections",
        "gauge",
        "Open HTTP and HTTPS connections, WebSockets included.",
    );
    let _ = writeln!(o, "ternd_http_connections {}", app.http_conns.open());
    family(
        &mut o,
        "budget_exhausted_total",
        "counter",
        "Requests for a resource refused because its budget was exhausted (README: Hardening).",
    );
    for b in crate::budget::Budget::ALL {
        let _ = writeln!(
            o,
            "ternd_budget_exhausted_total{{budget=\"{}\"}} {}",
            b.label(),
            app.server.exhaustions().get(b)
        );
    }
    let sig = app.hub.stats();
    family(
        &mut o,
        "signaling_dropped_total",
        "counter",
        "Signaling messages refused or dropped because a queue budget was exhausted, by reason.",
    );
    for why in crate::signaling::budget::Exhausted::ALL {
        let _ = writeln!(
            o,
            "ternd_signaling_dropped_total{{reason=\"{}\"}} {}",
            why.label(),
            sig.drops.get(why)
        );
    }
    family(
        &mut o,
        "signaling_queued_bytes",
        "gauge",
        "Relayed signaling bytes waiting in queues (sockets and resume graces).",
    );
    let _ = writeln!(o, "ternd_signaling_queued_bytes {}", sig.queued_bytes);
    family(&mut o, "signaling_connections", "gauge", "Open signaling WebSockets.");
    let _ = writeln!(o, "ternd_signaling_connections {}", sig.connections);
    family(
        &mut o,
        "signaling_rooms",
        "gauge",
        "Signaling rooms with at least one member.",
    );
    let _ = writeln!(o, "ternd_signaling_rooms {}", sig.rooms);
    family(&mut o, "shards", "gauge", "Shards configured.");
    let _ = writeln!(o, "ternd_shards {}", app.server.shard_count());
    family(
        &mut o,
        "shards_answering",
        "gauge",
        "Shards whose event loop answered this scrape.",
    );
    let _ = writeln!(o, "ternd_shards_answering {}", shards.len());
    if let Some(c) = &app.cluster {
        cluster_metrics(&mut o, c.status());
    }
    family(&mut o, "draining", "gauge", "1 while draining for a shutdown.");
    let _ = writeln!(o, "ternd_draining {}", u8::from(app.server.is_draining()));
    super::process::render(&mut o);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], o)
}
