//! ternd: a STUN/TURN server. This crate is the driver around the sans-IO
//! core in `crates/proto`: configuration, command line, logging, sockets and
//! shards.

pub mod banner;
pub mod cli;
pub mod config;
pub mod http;
pub mod logging;
pub mod probe;
pub mod server;
pub mod signaling;
pub mod systemd;
