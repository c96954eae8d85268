//! ternd: a STUN/TURN server. This crate is the driver around the sans-IO
//! core in `crates/proto`: configuration, command line, logging, sockets and
//! shards, HTTP and signaling, composed by [`start`] (see `root`).

pub mod banner;
pub mod budget;
mod cert_watch;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dtls;
pub mod fastpath;
pub mod fd_limit;
pub mod firewall;
pub mod http;
pub mod ice_servers;
pub mod logging;
pub mod probe;
pub mod random;
mod root;
pub mod runtime_thread;
pub mod server;
pub mod signaling;
pub mod systemd;
pub mod tls;
pub mod utc_time;

pub use root::{run, start, Running};
