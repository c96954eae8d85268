//! RFC 6062 (TCP relay allocations) on the pure core with a fake driver,
//! grouped by section: §5.1 Allocate, §5.2 Connect, §5.3 incoming peer
//! connections and ConnectionAttempt, §5.4 ConnectionBind, §5.5 the end of
//! connections; the 30 s timers are run by advancing the simulated clock.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use proto::wire::{attr, Class, Message, MessageType, Method};
use proto::{ConnectionId, PeerAddr, Transport};

fn transport_tcp() -> A {
    A::Bytes(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])
}

fn connection_id(id: ConnectionId) -> A {
    A::Bytes(attr::CONNECTION_ID, id.0.to_be_bytes().to_vec())
}

fn tcp_client(addr: &str) -> Client {
    Client::new(addr, Transport::Tcp, ALICE)
}

/// A client holding a TCP allocation with a permission for PEER_A.
fn tcp_allocation(d: &mut Driver) -> Client {
    let mut c = tcp_client("198.51.100.1:40000");
    let r = d.request(&mut c, Method::ALLOCATE, &[transport_tcp()]).resp();
    r.assert_ok(Method::ALLOCATE, &c.key);
    d.create_permission(&mut c, &[addr(PEER_A)])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    c
}

fn connect(d: &mut Driver, c: &mut Client, p: SocketAddr) -> Out {
    d.request(c, Method::CONNECT, &[peer(p)])
}

fn id_of(r: &Resp) -> ConnectionId {
    let v = r.get(attr::CONNECTION_ID).expect("CONNECTION-ID");
    ConnectionId(u32::from_be_bytes(v.try_into().unwrap()))
}

/// A Connect to PEER_A that the driver reports connected; returns its id.
fn connected(d: &mut Driver, c: &mut Client) -> ConnectionId {
    connected_to(d, c, addr(PEER_A))
}

/// A Connect to `p` that the driver reports connected; returns its id.
fn connected_to(d: &mut Driver, c: &mut Client, p: SocketAddr) -> ConnectionId {
    assert_eq!(connect(d, c, p), Out::Nothing, "answered once connected");
    let (id, _, _, _) = *d.connects.last().unwrap();
    assert!(d.server.peer_connected(d.now, id, true));
    d.pump();
    let (to, bytes) = d.sent.last().unwrap().clone();
    assert_eq!(to, c.tuple);
    let r = Resp(bytes);
    r.assert_ok(Method::CONNECT, &c.key);
    assert_eq!(id_of(&r), id);
    id
}

/// A new client data connection from the same user.
fn data_client(c: &Client, addr: &str) -> Client {
    let mut dc = tcp_client(addr);
    dc.nonce = c.nonce.clone();
    dc
}

// §5.1 Receiving an Allocate Request

#[test]
fn s5_1_tcp_allocate_over_a_stream_binds_a_tcp_listener() {
    let mut d = Driver::default_setup();
    let c = tcp_allocation(&mut d);
    let relay = d.relay_of(&c.tuple);
    assert_eq!(d.bind_transports, vec![(relay, Transport::Tcp)]);
}

#[test]
fn s5_1_tcp_allocate_over_udp_is_400() {
    let mut d = Driver::default_setup();
    let mut c = Client::udp("198.51.100.1:40000");
    let r = d.request(&mut c, Method::ALLOCATE, &[transport_tcp()]).resp();
    r.assert_error(Method::ALLOCATE, 400);
    assert!(d.binds.is_empty());
}

#[test]
fn s5_1_dont_fragment_even_port_or_token_with_tcp_is_400() {
    for extra in [
        A::Bytes(attr::DONT_FRAGMENT, vec![]),
        A::Bytes(attr::EVEN_PORT, vec![0]),
        A::Bytes(attr::RESERVATION_TOKEN, vec![1; 8]),
    ] {
        let mut d = Driver::default_setup();
        let mut c = tcp_client("198.51.100.1:40000");
        let r = d
            .request(&mut c, Method::ALLOCATE, &[transport_tcp(), extra.clone()])
            .resp();
        r.assert_error(Method::ALLOCATE, 400);
        assert!(d.binds.is_empty(), "{extra:?}");
    }
}

#[test]
fn s5_1_tcp_relays_off_is_442() {
    let mut d = Driver::with(|c| c.tcp_relay = false);
    let mut c = tcp_client("198.51.100.1:40000");
    let r = d.request(&mut c, Method::ALLOCATE, &[transport_tcp()]).resp();
    r.assert_error(Method::ALLOCATE, 442);
}

#[test]
fn s5_1_tcp_allocations_take_no_channels_and_no_send_indications() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    d.channel_bind(&mut c, 0x4000, addr(PEER_A))
        .assert_error(Method::CHANNEL_BIND, 400);
    assert_eq!(
        d.send_indication(&c, addr(PEER_A), b"x"),
        Out::Drop(proto::DropReason::TcpAllocation)
    );
}

// §5.2 Receiving a Connect Request

#[test]
fn s5_2_connect_asks_the_driver_and_answers_with_a_connection_id() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    let id = connected(&mut d, &mut c);
    let (_, relay, from, to) = d.connects[0];
    assert_eq!(relay, d.relay_of(&c.tuple));
    assert_eq!(from, d.relays_of(&c.tuple)[0].1, "connects from the relay address");
    assert_eq!(to, addr(PEER_A));
    assert_ne!(id.0, 0);
}

#[test]
fn s5_2_a_failed_connection_is_447() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    connect(&mut d, &mut c, addr(PEER_A));
    let (id, ..) = d.connects[0];
    assert!(!d.server.peer_connected(d.now, id, false));
    d.pump();
    Resp(d.sent.last().unwrap().1.clone()).assert_error(Method::CONNECT, 447);
    assert_eq!(d.server.stats().tcp_relay.failed, 1);
    // The peer may be tried again.
    assert_eq!(connect(&mut d, &mut c, addr(PEER_A)), Out::Nothing);
}

#[test]
fn s5_2_a_connect_unanswered_for_30_s_is_447_and_the_attempt_closed() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    connect(&mut d, &mut c, addr(PEER_A));
    let (id, ..) = d.connects[0];
    let before = d.sent.len();
    d.advance(29);
    assert_eq!(d.sent.len(), before, "still connecting at 29 s");
    d.advance(1);
    Resp(d.sent.last().unwrap().1.clone()).assert_error(Method::CONNECT, 447);
    assert_eq!(d.closed_peers, vec![id]);
    // A late success is refused: the driver closes what it connected.
    assert!(!d.server.peer_connected(d.now, id, true));
}

#[test]
fn s5_2_a_second_connect_to_the_same_peer_is_446() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    connect(&mut d, &mut c, addr(PEER_A));
    connect(&mut d, &mut c, addr(PEER_A))
        .resp()
        .assert_error(Method::CONNECT, 446);
    let (id, ..) = d.connects[0];
    d.server.peer_connected(d.now, id, true);
    d.pump();
    connect(&mut d, &mut c, addr(PEER_A))
        .resp()
        .assert_error(Method::CONNECT, 446);
    assert_eq!(d.connects.len(), 1);
}

#[test]
fn s5_2_connect_without_peer_is_400_refused_peer_403_unpermitted_peer_403() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    d.request(&mut c, Method::CONNECT, &[])
        .resp()
        .assert_error(Method::CONNECT, 400);
    // Policy: a private address.
    connect(&mut d, &mut c, addr("10.0.0.1:80"))
        .resp()
        .assert_error(Method::CONNECT, 403);
    // Allowed by policy, but no permission installed.
    connect(&mut d, &mut c, addr(PEER_B))
        .resp()
        .assert_error(Method::CONNECT, 403);
    assert!(d.connects.is_empty());
}

#[test]
fn s5_2_connect_on_a_udp_allocation_or_without_allocation_fails() {
    let mut d = Driver::default_setup();
    let mut u = Client::udp("198.51.100.1:40000");
    d.allocate(&mut u);
    d.create_permission(&mut u, &[addr(PEER_A)]);
    connect(&mut d, &mut u, addr(PEER_A))
        .resp()
        .assert_error(Method::CONNECT, 400);
    let mut none = tcp_client("198.51.100.9:40000");
    connect(&mut d, &mut none, addr(PEER_A))
        .resp()
        .assert_error(Method::CONNECT, 437);
}

// §5.3 Receiving a TCP Connection on a Relayed Transport Address

#[test]
fn s5_3_a_permitted_peer_connection_sends_a_connection_attempt() {
    let mut d = Driver::default_setup();
    let c = tcp_allocation(&mut d);
    let relay = d.relay_of(&c.tuple);
    let id = d
        .server
        .peer_accepted(d.now, relay, PeerAddr(addr(PEER_A)))
        .expect("kept");
    d.pump();
    let (to, bytes) = d.sent.last().unwrap().clone();
    assert_eq!(to, c.tuple);
    let m = Message::parse(&bytes).unwrap();
    assert!(m.fingerprint_ok());
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::CONNECTION_ATTEMPT, Class::Indication)
    );
    let r = Resp(bytes.clone());
    assert_eq!(r.xor_addr(attr::XOR_PEER_ADDRESS), Some(addr(PEER_A)));
    assert_eq!(id_of(&r), id);
}

#[test]
fn s5_3_peers_without_permission_or_refused_by_policy_are_closed_silently() {
    let mut d = Driver::default_setup();
    let c = tcp_allocation(&mut d);
    let relay = d.relay_of(&c.tuple);
    let before = d.sent.len();
    assert_eq!(d.server.peer_accepted(d.now, relay, PeerAddr(addr(PEER_B))), None);
    d.server.reload({
        let mut live = d.server.config().live();
        live.policy
            .deny
            .push(proto::policy::IpNet::new(addr(PEER_A).ip(), 32).unwrap());
        live
    });
    assert_eq!(d.server.peer_accepted(d.now, relay, PeerAddr(addr(PEER_A))), None);
    d.pump();
    assert_eq!(d.sent.len(), before, "the client hears nothing");
}

#[test]
fn s5_3_an_unbound_connection_is_closed_after_30_s() {
    let mut d = Driver::default_setup();
    let c = tcp_allocation(&mut d);
    let relay = d.relay_of(&c.tuple);
    let id = d.server.peer_accepted(d.now, relay, PeerAddr(addr(PEER_A))).unwrap();
    d.advance(29);
    assert!(d.closed_peers.is_empty());
    d.advance(1);
    assert_eq!(d.closed_peers, vec![id]);
    let counters = d.server.stats().tcp_relay;
    assert_eq!((counters.accepted, counters.expired, counters.bound), (1, 1, 0));
    // Too late to bind it now.
    let mut dc = data_client(&c, "198.51.100.1:40001");
    d.request(&mut dc, Method::CONNECTION_BIND, &[connection_id(id)])
        .resp()
        .assert_error(Method::CONNECTION_BIND, 400);
}

#[test]
fn s5_3_an_allocation_holds_a_bounded_number_of_connections() {
    let mut d = Driver::default_setup();
    let c = tcp_allocation(&mut d);
    let relay = d.relay_of(&c.tuple);
    for i in 0..proto::connection::MAX_CONNECTIONS {
        let p = SocketAddr::new(addr(PEER_A).ip(), 1000 + i as u16);
        assert!(d.server.peer_accepted(d.now, relay, PeerAddr(p)).is_some(), "{i}");
    }
    assert_eq!(d.server.peer_accepted(d.now, relay, PeerAddr(addr(PEER_A))), None);
}

// §5.4 Receiving a ConnectionBind Request

#[test]
fn s5_4_connection_bind_on_a_new_connection_splices_it() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    let id = connected(&mut d, &mut c);
    let mut dc = data_client(&c, "198.51.100.1:40001");
    let r = d.request(&mut dc, Method::CONNECTION_BIND, &[connection_id(id)]).resp();
    r.assert_ok(Method::CONNECTION_BIND, &dc.key);
    assert_eq!(d.server.data_connection(&dc.tuple), Some(id));
    // Bound connections outlive the 30 s timer.
    d.advance(60);
    assert!(d.closed_peers.is_empty());
    // A second bind of the same id is refused.
    let mut dc2 = data_client(&c, "198.51.100.1:40002");
    d.request(&mut dc2, Method::CONNECTION_BIND, &[connection_id(id)])
        .resp()
        .assert_error(Method::CONNECTION_BIND, 400);
}

#[test]
fn s5_4_an_accepted_connection_binds_too() {
    let mut d = Driver::default_setup();
    let c = tcp_allocation(&mut d);
    let relay = d.relay_of(&c.tuple);
    let id = d.server.peer_accepted(d.now, relay, PeerAddr(addr(PEER_A))).unwrap();
    let mut dc = data_client(&c, "198.51.100.1:40001");
    d.request(&mut dc, Method::CONNECTION_BIND, &[connection_id(id)])
        .resp()
        .assert_ok(Method::CONNECTION_BIND, &dc.key);
    assert_eq!(d.server.data_connection(&dc.tuple), Some(id));
}

#[test]
fn s5_4_unknown_missing_or_connecting_ids_are_400() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    connect(&mut d, &mut c, addr(PEER_A));
    let (connecting, ..) = d.connects[0];
    let mut dc = data_client(&c, "198.51.100.1:40001");
    for attrs in [
        vec![],
        vec![connection_id(ConnectionId(12345))],
        vec![connection_id(connecting)],
    ] {
        d.request(&mut dc, Method::CONNECTION_BIND, &attrs)
            .resp()
            .assert_error(Method::CONNECTION_BIND, 400);
    }
    assert_eq!(d.server.data_connection(&dc.tuple), None);
}

#[test]
fn s5_4_connection_bind_over_udp_is_400_and_with_other_credentials_441() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    let id = connected(&mut d, &mut c);
    let mut u = Client::udp("198.51.100.1:40001");
    u.nonce = c.nonce.clone();
    d.request(&mut u, Method::CONNECTION_BIND, &[connection_id(id)])
        .resp()
        .assert_error(Method::CONNECTION_BIND, 400);
    let mut bob = Client::new("198.51.100.1:40002", Transport::Tcp, BOB);
    d.request(&mut bob, Method::CONNECTION_BIND, &[connection_id(id)])
        .resp()
        .assert_error(Method::CONNECTION_BIND, 441);
    // Still pending: the owner may bind it.
    let mut dc = data_client(&c, "198.51.100.1:40003");
    d.request(&mut dc, Method::CONNECTION_BIND, &[connection_id(id)])
        .resp()
        .assert_ok(Method::CONNECTION_BIND, &dc.key);
}

#[test]
fn s5_4_an_unsigned_connection_bind_is_challenged() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    let id = connected(&mut d, &mut c);
    let dc = tcp_client("198.51.100.1:40001");
    let bytes = build(
        MessageType::new(Method::CONNECTION_BIND, Class::Request),
        b"conn-bind-01",
        &[connection_id(id)],
        None,
    );
    d.input(dc.tuple, &bytes)
        .resp()
        .assert_error(Method::CONNECTION_BIND, 401);
    assert_eq!(d.server.data_connection(&dc.tuple), None);
}

// §5.5 Data connection maintenance and the end of connections

#[test]
fn s5_5_deleting_the_allocation_closes_every_connection() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    let bound = connected(&mut d, &mut c);
    let mut dc = data_client(&c, "198.51.100.1:40001");
    d.request(&mut dc, Method::CONNECTION_BIND, &[connection_id(bound)]);
    let relay = d.relay_of(&c.tuple);
    let pending = d
        .server
        .peer_accepted(d.now, relay, PeerAddr(SocketAddr::new(addr(PEER_A).ip(), 9)))
        .unwrap();
    d.pump();
    d.refresh(&mut c, Some(0)).assert_ok(Method::REFRESH, &c.key);
    let mut closed = d.closed_peers.clone();
    closed.sort();
    let mut want = vec![bound, pending];
    want.sort();
    assert_eq!(closed, want);
    assert_eq!(d.server.data_connection(&dc.tuple), None);
}

#[test]
fn s5_5_the_control_connection_closing_closes_the_data_connections() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    let id = connected(&mut d, &mut c);
    d.server.connection_closed(d.now, c.tuple);
    d.pump();
    assert_eq!(d.closed_peers, vec![id]);
}

#[test]
fn s5_5_a_data_connection_closing_frees_its_peer_for_a_new_connect() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    let id = connected(&mut d, &mut c);
    let mut dc = data_client(&c, "198.51.100.1:40001");
    d.request(&mut dc, Method::CONNECTION_BIND, &[connection_id(id)]);
    d.server.connection_closed(d.now, dc.tuple);
    d.pump();
    assert_eq!(d.closed_peers, vec![id]);
    assert!(d.server.has_allocation(&c.tuple), "the allocation lives on");
    assert_eq!(connect(&mut d, &mut c, addr(PEER_A)), Out::Nothing);
}

#[test]
fn connection_ids_name_the_shard_that_made_them() {
    for (index, count) in [(0, 1), (1, 3), (2, 3)] {
        let mut d = Driver::with(|c| {
            c.shard_index = index;
            c.shard_count = count;
        });
        let c = tcp_allocation(&mut d);
        let relay = d.relay_of(&c.tuple);
        for i in 0..20 {
            let p = SocketAddr::new(addr(PEER_A).ip(), 2000 + i);
            let id = d.server.peer_accepted(d.now, relay, PeerAddr(p)).unwrap();
            assert_eq!(id.shard(count), index);
            assert_ne!(id.0, 0);
        }
    }
}

#[test]
fn connection_timers_run_out_and_leave_nothing_behind() {
    let mut d = Driver::default_setup();
    let mut c = tcp_allocation(&mut d);
    let relay = d.relay_of(&c.tuple);
    for round in 0..50u16 {
        for i in 0..10 {
            let p = SocketAddr::new(addr(PEER_A).ip(), 3000 + round * 10 + i);
            d.server.peer_accepted(d.now, relay, PeerAddr(p)).unwrap();
        }
        d.advance_by(Duration::from_secs(31));
        d.refresh(&mut c, None);
        d.create_permission(&mut c, &[addr(PEER_A)]);
    }
    assert_eq!(d.closed_peers.len(), 500, "every unbound connection closed after 30 s");
    d.refresh(&mut c, Some(0)).assert_ok(Method::REFRESH, &c.key);
    d.advance(400);
    assert_eq!(d.server.poll_timeout(), None, "no timer left once all is gone");
}

#[test]
fn s5_5_deleting_one_family_of_a_dual_allocation_closes_only_its_connections() {
    // RFC 8656 §8.1: deleting one family "MUST NOT affect" the other's.
    let mut d = Driver::default_setup();
    let mut c = tcp_client("198.51.100.1:40000");
    let additional = A::Bytes(attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0]);
    d.request(&mut c, Method::ALLOCATE, &[transport_tcp(), additional])
        .resp()
        .assert_ok(Method::ALLOCATE, &c.key);
    d.create_permission(&mut c, &[addr(PEER_A), addr(PEER_V6)])
        .assert_ok(Method::CREATE_PERMISSION, &c.key);
    let v4 = connected_to(&mut d, &mut c, addr(PEER_A));
    let v6 = connected_to(&mut d, &mut c, addr(PEER_V6));
    assert_ne!(v4, v6);
    d.request(&mut c, Method::REFRESH, &[family(2), lifetime(0)])
        .resp()
        .assert_ok(Method::REFRESH, &c.key);
    assert_eq!(d.closed_peers, vec![v6]);
    assert_eq!(d.relays_of(&c.tuple).len(), 1);
    // A new IPv6 connection has no relay to come from.
    connect(&mut d, &mut c, addr(PEER_V6))
        .resp()
        .assert_error(Method::CONNECT, 443);
    // The IPv4 connection ends with the allocation.
    d.refresh(&mut c, Some(0)).assert_ok(Method::REFRESH, &c.key);
    assert_eq!(d.closed_peers, vec![v6, v4]);
}
