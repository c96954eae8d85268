//! The command line: `gather` and `connect`, with the STUN/TURN servers given
//! as `--url` (several allowed) plus one username and credential for the
//! `turn:` ones.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration::parse_duration;

#[derive(Debug, Parser)]
#[command(name = "ternd-ice-agent", version, about = "A webrtc-ice agent for ternd's NAT lab")]
pub struct Cli {
    /// Log level on stderr: off, error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "warn")]
    pub log: log::LevelFilter,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gather every candidate (host, srflx, relay) and print one JSON line per candidate.
    Gather(GatherArgs),
    /// Meet a peer on ternd's signaling WebSocket, connect over ICE and exchange messages.
    Connect(ConnectArgs),
}

/// The servers and how the agent may use them; shared by both commands.
#[derive(Debug, Clone, Args)]
pub struct IceArgs {
    /// A STUN or TURN URL: stun:HOST:PORT or turn:HOST:PORT?transport=udp (repeatable).
    #[arg(long = "url")]
    pub urls: Vec<String>,
    /// Username for the turn: URLs.
    #[arg(long)]
    pub username: Option<String>,
    /// Password (credential) for the turn: URLs. Prefer the environment on
    /// shared machines: the command line is visible to every user.
    #[arg(long, env = "TERND_ICE_CREDENTIAL", hide_env_values = true)]
    pub credential: Option<String>,
    /// Gather only relay candidates (iceTransportPolicy "relay").
    #[arg(long)]
    pub relay_only: bool,
    /// Also gather host candidates on loopback interfaces; webrtc-ice skips
    /// them by default, and a test on one machine has nothing else.
    #[arg(long)]
    pub include_loopback: bool,
    /// Also gather IPv6 (udp6) host and srflx candidates; IPv4 only otherwise.
    #[arg(long)]
    pub ipv6: bool,
}

#[derive(Debug, Args)]
pub struct GatherArgs {
    #[command(flatten)]
    pub ice: IceArgs,
    /// Give up if gathering has not completed after this long (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub ice: IceArgs,
    /// ternd's signaling WebSocket, e.g. ws://127.0.0.1:8080/ws.
    #[arg(long)]
    pub signal: String,
    /// The room to meet the other agent in.
    #[arg(long)]
    pub room: String,
    /// The whole run (signaling, ICE, messages) must finish within this.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How many messages each side sends and expects from the other.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub messages: u32,
}
