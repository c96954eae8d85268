//! `Server::handle_client` on arbitrary bytes: no panic, and every output
//! passes the checks the property test applies (`server_checks`): a counted
//! drop, a Binding indication's silence, or a well-formed response to the
//! request it answers, no larger than the request when it carries a reason
//! phrase (no amplification).

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use proto::{ClientAddr, FiveTuple, Server, ServerAddr, ServerConfig, Transport};

#[path = "../../crates/proto/tests/server_checks/mod.rs"]
mod server_checks;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let tuple = FiveTuple {
        client: ClientAddr("198.51.100.7:40000".parse().unwrap()),
        server: ServerAddr("192.0.2.10:3478".parse().unwrap()),
        transport: Transport::Udp,
    };
    let mut server = Server::new(ServerConfig {
        software: Some("ternd".into()),
        ..ServerConfig::default()
    });
    let mut out = [0u8; 1500];
    // A full buffer, then one too small for most replies.
    for out_len in [out.len(), data.len() % 48] {
        server_checks::check_server(&mut server, now, tuple, data, &mut out[..out_len]);
    }
});
