//! Building a webrtc-ice `Agent` from the command line's `IceArgs`, with its
//! gathered candidates delivered on a channel.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;
use webrtc_ice::agent::agent_config::AgentConfig;
use webrtc_ice::agent::Agent;
use webrtc_ice::candidate::{Candidate, CandidateType};
use webrtc_ice::mdns::MulticastDnsMode;
use webrtc_ice::network_type::NetworkType;

use crate::cli::IceArgs;
use crate::urls;

/// A local candidate, or `None` once gathering has completed.
pub type Gathered = Option<Arc<dyn Candidate + Send + Sync>>;

/// Creates an agent for `ice` in the given role, and the receiving end of its
/// candidate stream. Gathering starts with `agent.gather_candidates()`.
pub async fn new_agent(
    ice: &IceArgs,
    controlling: bool,
) -> anyhow::Result<(Arc<Agent>, mpsc::UnboundedReceiver<Gathered>)> {
    let urls = urls::parse_all(&ice.urls, ice.username.as_deref(), ice.credential.as_deref())?;
    let candidate_types = if ice.relay_only {
        vec![CandidateType::Relay]
    } else {
        vec![
            CandidateType::Host,
            CandidateType::ServerReflexive,
            CandidateType::Relay,
        ]
    };
    // IPv4 unless asked: the NAT lab is IPv4, webrtc-ice allocates TURN
    // relays over IPv4 only, and udp6 would add link-local host candidates
    // that cannot be bound without a scope id.
    let mut network_types = vec![NetworkType::Udp4];
    if ice.ipv6 {
        network_types.push(NetworkType::Udp6);
    }
    let config = AgentConfig {
        urls,
        // No mDNS: the lab namespaces have no multicast route, and tests need
        // real host addresses, not `.local` names.
        multicast_dns_mode: MulticastDnsMode::Disabled,
        network_types,
        candidate_types,
        include_loopback: ice.include_loopback,
        is_controlling: controlling,
        ..AgentConfig::default()
    };
    let agent = Agent::new(config).await.context("creating the ICE agent")?;
    let (tx, rx) = mpsc::unbounded_channel();
    agent.on_candidate(Box::new(move |c: Gathered| {
        // The receiver only goes away when the command is finished with the agent.
        let _ = tx.send(c);
        Box::pin(async {})
    }));
    Ok((Arc::new(agent), rx))
}

/// Closes the agent (its sockets and TURN allocations), bounded in time so a
/// TURN server that stopped answering cannot hold the exit.
pub async fn close(agent: &Agent) {
    match tokio::time::timeout(std::time::Duration::from_secs(3), agent.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn!("closing the ICE agent: {e}"),
        Err(_) => log::warn!("closing the ICE agent took over 3 s; exiting anyway"),
    }
}
