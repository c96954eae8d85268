//! Settings of the protocol core (the driver maps its config onto this), and
//! the part of them that may change while the server runs.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Credentials;
use crate::clock::Clock;
use crate::nat_discovery::NatDiscovery;
use crate::nonce::NonceKey;
use crate::policy::PeerPolicy;
use crate::quota::Quotas;
use crate::reservation::SharedReservations;

/// Settings of the protocol core (the driver maps its config onto this).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// SOFTWARE attribute for responses; `None` sends none (smaller replies).
    pub software: Option<String>,
    pub credentials: Credentials,
    pub nonce_key: NonceKey,
    pub nonce_lifetime: Duration,
    /// Where wall time comes from (REST expiry, nonces).
    pub clock: Clock,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    /// How long a permission lasts from its last CreatePermission or
    /// ChannelBind (RFC 8656 §9: "MUST be 300 seconds"; shorter only for
    /// tests and labs).
    pub permission_lifetime: Duration,
    /// How long a channel binding lasts from its last ChannelBind (RFC 8656
    /// §12: "10 minutes unless refreshed"; shorter only for tests and labs).
    pub channel_lifetime: Duration,
    /// Relay addresses per family; `None` disables that family.
    pub relay_ipv4: Option<IpAddr>,
    pub relay_ipv6: Option<IpAddr>,
    /// 1:1 NAT mappings: (relay address bound here, address peers see).
    pub external_ips: Vec<(IpAddr, IpAddr)>,
    pub port_min: u16,
    pub port_max: u16,
    /// This shard's index and the number of shards: each takes its own block of ports.
    pub shard_index: usize,
    pub shard_count: usize,
    pub policy: PeerPolicy,
    pub quotas: Arc<Quotas>,
    /// RESERVATION-TOKENs, shared by every shard.
    pub reservations: Arc<SharedReservations>,
    /// Per-allocation relay bandwidth cap, bytes per second each way; 0 = none.
    pub bandwidth_limit: u64,
    /// Accept channel numbers up to 0x7FFF as RFC 5766 did (RFC 8656 allows
    /// 0x4000-0x4FFF only); for older clients such as coturn's own tools.
    pub legacy_channel_numbers: bool,
    /// RFC 6062 TCP relay allocations (REQUESTED-TRANSPORT TCP, Connect,
    /// ConnectionBind); off: such an Allocate gets 442.
    pub tcp_relay: bool,
    /// RFC 8656 §11.5: ICMP errors about relayed datagrams reach the client
    /// as Data indications ([`crate::Server::handle_peer_icmp`]); off: dropped.
    pub relay_icmp: bool,
    /// Requests per second one source prefix (IPv4 /32, IPv6 /64) may make
    /// without authenticating; 0 = no limit.
    pub unauthenticated_rate: u32,
    /// Requests per second all sources together may make without
    /// authenticating, shared out evenly among the shards; 0 = no limit.
    pub unauthenticated_rate_total: u32,
    /// Tell the driver which channels its kernel fast path may relay
    /// ([`crate::Command::Offload`]).
    pub offload: bool,
    /// RFC 5780 NAT behaviour discovery: the primary and alternate UDP
    /// addresses; None answers Binding as plain RFC 8489 (CHANGE-REQUEST
    /// gets 420). Needs a restart.
    pub nat_discovery: Option<NatDiscovery>,
    /// Seeds the core's CSPRNG (relay ports, tokens, transaction ids, the
    /// budget's hash key): 32 bytes from the OS in production, fixed in tests.
    pub rng_seed: [u8; 32],
}

impl Default for ServerConfig {
    /// A STUN-only setup for tests: no relay addresses, a fixed nonce key,
    /// and wall time stuck at `anchor_unix`.
    fn default() -> Self {
        ServerConfig {
            software: None,
            credentials: Credentials::default(),
            nonce_key: NonceKey::new(&[0; 32]),
            nonce_lifetime: Duration::from_secs(3600),
            clock: Clock {
                anchor: None,
                anchor_unix: 1_700_000_000,
            },
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: crate::allocation::PERMISSION_LIFETIME,
            channel_lifetime: crate::allocation::CHANNEL_LIFETIME,
            relay_ipv4: None,
            relay_ipv6: None,
            external_ips: vec![],
            port_min: 49152,
            port_max: 65535,
            shard_index: 0,
            shard_count: 1,
            policy: PeerPolicy::default(),
            quotas: Arc::new(Quotas::new(usize::MAX, usize::MAX)),
            reservations: Arc::default(),
            bandwidth_limit: 0,
            legacy_channel_numbers: false,
            tcp_relay: true,
            relay_icmp: false,
            unauthenticated_rate: 0,
            unauthenticated_rate_total: 0,
            offload: false,
            nat_discovery: None,
            rng_seed: [0; 32],
        }
    }
}

/// The settings that may change while the server runs ([`crate::Server::reload`]).
/// Everything else in [`ServerConfig`] (relay addresses and ports, shard
/// layout, clock, nonce key, the shared quota and reservation registries,
/// the random seed) needs a restart.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub software: Option<String>,
    pub credentials: Credentials,
    pub nonce_lifetime: Duration,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    /// Applies to permissions and channels installed or refreshed after the
    /// reload; the ones running keep their deadlines.
    pub permission_lifetime: Duration,
    pub channel_lifetime: Duration,
    pub policy: PeerPolicy,
    pub bandwidth_limit: u64,
    pub legacy_channel_numbers: bool,
    pub tcp_relay: bool,
    pub relay_icmp: bool,
    pub unauthenticated_rate: u32,
    pub unauthenticated_rate_total: u32,
    pub offload: bool,
}

impl ServerConfig {
    /// The part of this config a running server can take over.
    pub fn live(&self) -> LiveConfig {
        LiveConfig {
            software: self.software.clone(),
            credentials: self.credentials.clone(),
            nonce_lifetime: self.nonce_lifetime,
            default_lifetime: self.default_lifetime,
            max_lifetime: self.max_lifetime,
            permission_lifetime: self.permission_lifetime,
            channel_lifetime: self.channel_lifetime,
            policy: self.policy.clone(),
            bandwidth_limit: self.bandwidth_limit,
            legacy_channel_numbers: self.legacy_channel_numbers,
            tcp_relay: self.tcp_relay,
            relay_icmp: self.relay_icmp,
            unauthenticated_rate: self.unauthenticated_rate,
            unauthenticated_rate_total: self.unauthenticated_rate_total,
            offload: self.offload,
        }
    }

    /// Takes over `live`, keeping everything else.
    pub(crate) fn apply(&mut self, live: LiveConfig) {
        let LiveConfig {
            software,
            credentials,
            nonce_lifetime,
            default_lifetime,
            max_lifetime,
            permission_lifetime,
            channel_lifetime,
            policy,
            bandwidth_limit,
            legacy_channel_numbers,
            tcp_relay,
            relay_icmp,
            unauthenticated_rate,
            unauthenticated_rate_total,
            offload,
        } = live;
        self.software = software;
        self.credentials = credentials;
        self.nonce_lifetime = nonce_lifetime;
        self.default_lifetime = default_lifetime;
        self.max_lifetime = max_lifetime;
        self.permission_lifetime = permission_lifetime;
        self.channel_lifetime = channel_lifetime;
        self.policy = policy;
        self.bandwidth_limit = bandwidth_limit;
        self.legacy_channel_numbers = legacy_channel_numbers;
        self.tcp_relay = tcp_relay;
        self.relay_icmp = relay_icmp;
        self.unauthenticated_rate = unauthenticated_rate;
        self.unauthenticated_rate_total = unauthenticated_rate_total;
        self.offload = offload;
    }

    /// This shard's share of `unauthenticated_rate_total` (0 = no limit).
    pub(crate) fn unauthenticated_rate_per_shard(&self) -> u32 {
        self.unauthenticated_rate_total.div_ceil(self.shard_count.max(1) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applying_live_settings_keeps_what_needs_a_restart() {
        let mut running = ServerConfig {
            relay_ipv4: Some([192, 0, 2, 1].into()),
            port_min: 50000,
            shard_count: 2,
            rng_seed: [7; 32],
            ..Default::default()
        };
        let new = ServerConfig {
            software: Some("ternd".into()),
            max_lifetime: Duration::from_secs(60),
            permission_lifetime: Duration::from_secs(30),
            channel_lifetime: Duration::from_secs(40),
            bandwidth_limit: 1000,
            legacy_channel_numbers: true,
            tcp_relay: false,
            relay_icmp: true,
            unauthenticated_rate: 5,
            unauthenticated_rate_total: 50,
            relay_ipv4: Some([192, 0, 2, 9].into()),
            port_min: 40000,
            shard_count: 8,
            rng_seed: [9; 32],
            ..Default::default()
        };
        running.apply(new.live());
        assert_eq!(running.software.as_deref(), Some("ternd"));
        assert_eq!(running.max_lifetime, Duration::from_secs(60));
        assert_eq!(
            (running.permission_lifetime, running.channel_lifetime),
            (Duration::from_secs(30), Duration::from_secs(40))
        );
        assert!(!running.tcp_relay, "turn.tcp_relay changes on reload");
        assert!(running.relay_icmp, "turn.relay_icmp changes on reload");
        assert_eq!(
            (
                running.bandwidth_limit,
                running.legacy_channel_numbers,
                running.unauthenticated_rate,
                running.unauthenticated_rate_total
            ),
            (1000, true, 5, 50)
        );
        assert_eq!(running.relay_ipv4, Some([192, 0, 2, 1].into()));
        assert_eq!(
            (running.port_min, running.shard_count, running.rng_seed),
            (50000, 2, [7; 32])
        );
    }
}
