//! The webrtc-rs `turn` crate's client, an independent TURN implementation,
//! allocates on ternd and relays to a UDP echo peer, with a static user and
//! with REST credentials.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ::turn::client::{Client, ClientConfig};
use common::*;
use webrtc_util::Conn;

async fn relay_round_trip(server: std::net::SocketAddr, user: &str, pass: &str, peer: std::net::SocketAddr) {
    let conn = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let client = Client::new(ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username: user.into(),
        password: pass.into(),
        realm: "ternd".into(),
        software: String::new(),
        rto_in_ms: 0,
        conn,
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();

    let mapped = tokio::time::timeout(Duration::from_secs(5), client.send_binding_request())
        .await
        .expect("Binding answered")
        .unwrap();
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");

    let relay = tokio::time::timeout(Duration::from_secs(5), client.allocate())
        .await
        .expect("Allocate answered")
        .expect("allocation succeeds");
    let relayed = relay.local_addr().unwrap();
    assert_eq!(relayed.ip().to_string(), "127.0.0.1");
    assert!(relayed.port() >= 61000);

    let mut buf = vec![0u8; 1500];
    // The client creates the permission, then binds a channel after the
    // first packets; both paths carry data here.
    for i in 0..20u8 {
        let msg = vec![i; 64 + i as usize];
        relay.send_to(&msg, peer).await.unwrap();
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), relay.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("echo {i} relayed back"))
            .unwrap();
        assert_eq!(from, peer);
        assert_eq!(&buf[..n], &msg[..], "echo {i} intact");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.close().await.unwrap();
    client.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn webrtc_rs_turn_client_relays_through_ternd() {
    let server = start(&turn_config(None, &[("listen.udp", "127.0.0.1:0")]));
    let peer = EchoPeer::start(false);
    let udp = server.bound().udp[0];
    relay_round_trip(udp, "alice", "alice-password", peer.addr).await;
    let (user, pass) = rest_credentials("webrtc-rs");
    relay_round_trip(udp, &user, &pass, peer.addr).await;
    let stats = tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
    assert_eq!(stats.allocations_created, 2);
    assert!(stats.traffic.to_client_packets >= 40);
}
