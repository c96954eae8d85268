//! From config to the protocol core's settings: relay addresses resolved,
//! secrets and the nonce key in place, quotas shared by every shard.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use proto::auth::Credentials;
use proto::clock::Clock;
use proto::nonce::NonceKey;
use proto::password_algorithm::Offer;
use proto::policy::PeerPolicy;
use proto::quota::{QuotaLimits, Quotas};

use super::interfaces;
use crate::config::{Config, ExternalIp, RelayIp};
use crate::random::random_bytes;

/// What every shard shares; built once at start.
#[derive(Debug, Clone)]
pub struct Shared {
    pub credentials: Credentials,
    pub nonce_key: NonceKey,
    pub clock: Clock,
    pub quotas: Arc<Quotas>,
    pub reservations: Arc<proto::reservation::SharedReservations>,
    pub relay_ipv4: Option<IpAddr>,
    pub relay_ipv6: Option<IpAddr>,
    pub external_ips: Vec<(IpAddr, IpAddr)>,
    pub policy: PeerPolicy,
    /// True when no secret was configured and one was generated.
    pub generated_secret: bool,
}

/// The address relays of one family bind to; "auto" looks at this host's
/// interfaces (IPv4 falls back to loopback).
fn resolve_relay(relay: RelayIp, v4: bool) -> Option<IpAddr> {
    match relay {
        RelayIp::Off => None,
        RelayIp::Auto => interfaces::first_usable(v4).or(v4.then_some(IpAddr::V4(Ipv4Addr::LOCALHOST))),
        RelayIp::Addr(ip) => Some(ip),
    }
}

/// The configured REST secrets: `turn.secrets` plus one per file in
/// `turn.secret_files` (systemd LoadCredential, Kubernetes Secrets).
pub fn configured_secrets(config: &Config) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = config
        .turn
        .secrets
        .iter()
        .map(|s| s.expose().as_bytes().to_vec())
        .collect();
    for path in &config.turn.secret_files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("turn.secret_files: cannot read {}", path.display()))?;
        let secret = text.trim();
        if secret.len() < 16 {
            bail!(
                "turn.secret_files: the secret in {} is shorter than 16 characters",
                path.display()
            );
        }
        out.push(secret.as_bytes().to_vec());
    }
    Ok(out)
}

fn credentials(config: &Config, secrets: Vec<Vec<u8>>) -> Credentials {
    let mut c = Credentials {
        realm: config.turn.realm.clone(),
        rest_secrets: secrets,
        offer: Offer {
            algorithms: config.turn.password_algorithms.iter().map(|&a| a.into()).collect(),
            userhash: config.turn.userhash,
        },
        rest_hmac: config.turn.rest_hmac.into(),
        ..Credentials::default()
    };
    for (user, password) in &config.turn.users {
        c.add_static_user(user, password.expose());
    }
    c
}

/// The built-in special-purpose ranges plus `peers.deny`, the `peers.allow`
/// overrides, and our own relay addresses on the relay port range.
fn peer_policy(config: &Config, own: Vec<IpAddr>) -> PeerPolicy {
    let built_in = PeerPolicy::default().deny;
    PeerPolicy {
        deny: built_in.into_iter().chain(config.peers.deny.iter().copied()).collect(),
        allow: config.peers.allow.clone(),
        own,
        own_ports: config.relay.port_min..=config.relay.port_max,
    }
}

/// The allocation quotas `config` asks for.
pub fn quota_limits(config: &Config) -> QuotaLimits {
    QuotaLimits {
        total: config.turn.max_allocations,
        per_user: config.turn.max_allocations_per_user,
        per_source: config.turn.max_allocations_per_ip,
    }
}

impl Shared {
    /// A copy with what `new` changes live: secrets, users, realm, peer
    /// policy. `new` is a [`crate::config::ReloadPlan`]'s applied config, so
    /// its relay keys are the running ones: the relay addresses resolved at
    /// start, clock, nonce key and the shared registries stay; a secret
    /// generated at start stays if `new` configures none.
    pub fn reloaded(&self, new: &Config) -> anyhow::Result<Shared> {
        let mut secrets = configured_secrets(new)?;
        let generated_secret = secrets.is_empty() && self.generated_secret;
        if secrets.is_empty() {
            secrets = self.credentials.rest_secrets.clone();
        }
        let mut s = self.clone();
        s.credentials = credentials(new, secrets);
        s.policy = peer_policy(new, self.policy.own.clone());
        s.generated_secret = generated_secret;
        Ok(s)
    }

    pub fn new(config: &Config) -> anyhow::Result<Shared> {
        let mut secrets = configured_secrets(config)?;
        let generated_secret = secrets.is_empty();
        if generated_secret {
            let s: [u8; 24] = random_bytes()?;
            secrets.push(s.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes());
        }
        let credentials = credentials(config, secrets);
        let relay_ipv4 = resolve_relay(config.relay.ipv4, true);
        let relay_ipv6 = resolve_relay(config.relay.ipv6, false);
        let mut external_ips = Vec::new();
        for &ExternalIp { public, private } in &config.relay.external_ip {
            let private = match private {
                Some(p) => p,
                None => match if public.is_ipv4() { relay_ipv4 } else { relay_ipv6 } {
                    Some(p) => p,
                    None => bail!("relay.external_ip: {public} has no relay address of its family to map"),
                },
            };
            external_ips.push((private, public));
        }
        let own = relay_ipv4
            .into_iter()
            .chain(relay_ipv6)
            .chain(external_ips.iter().map(|(_, public)| *public))
            .collect();
        let policy = peer_policy(config, own);
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Shared {
            credentials,
            nonce_key: NonceKey::new(&random_bytes::<32>()?),
            clock: Clock {
                anchor: Some(Instant::now()),
                anchor_unix: unix,
            },
            quotas: Arc::new(Quotas::with_limits(quota_limits(config))),
            reservations: Arc::default(),
            relay_ipv4,
            relay_ipv6,
            external_ips,
            policy,
            generated_secret,
        })
    }

    /// The core settings for shard `index` of `count`.
    pub fn core_config(&self, config: &Config, index: usize, count: usize) -> anyhow::Result<proto::ServerConfig> {
        Ok(proto::ServerConfig {
            software: config.software().map(String::from),
            credentials: self.credentials.clone(),
            nonce_key: self.nonce_key.clone(),
            nonce_lifetime: config.turn.nonce_lifetime.0,
            clock: self.clock,
            default_lifetime: config.turn.default_lifetime.0,
            max_lifetime: config.turn.max_lifetime.0,
            permission_lifetime: config.turn.permission_lifetime.0,
            channel_lifetime: config.turn.channel_lifetime.0,
            relay_ipv4: self.relay_ipv4,
            relay_ipv6: self.relay_ipv6,
            external_ips: self.external_ips.clone(),
            port_min: config.relay.port_min,
            port_max: config.relay.port_max,
            shard_index: index,
            shard_count: count,
            policy: self.policy.clone(),
            quotas: self.quotas.clone(),
            reservations: self.reservations.clone(),
            bandwidth_limit: config.turn.bandwidth_limit.bytes(),
            legacy_channel_numbers: config.turn.legacy_channel_numbers,
            tcp_relay: config.turn.tcp_relay,
            relay_icmp: config.turn.relay_icmp,
            unauthenticated_rate: config.turn.unauthenticated_rate,
            unauthenticated_rate_total: config.turn.unauthenticated_rate_total,
            // On once the fast path is attached (server::start, reload).
            offload: false,
            nat_discovery: config.nat_discovery(),
            rng_seed: random_bytes()?,
        })
    }

    /// A REST credential (username, password) for `user`, valid for `ttl`.
    pub fn mint(&self, user: &str, ttl: std::time::Duration) -> Option<(String, String)> {
        let secret = self.credentials.rest_secrets.first()?;
        let expiry = self.clock.unix(Instant::now()) + ttl.as_secs();
        Some(proto::auth::rest_credentials(
            self.credentials.rest_hmac,
            secret,
            user,
            expiry,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_policy_adds_the_configured_lists_to_the_built_in_ranges() {
        let mut config = Config::default();
        config.peers.deny = vec!["198.51.100.0/24".parse().unwrap()];
        config.peers.allow = vec!["10.1.0.0/16".parse().unwrap()];
        let own: IpAddr = "192.0.2.1".parse().unwrap();
        let policy = peer_policy(&config, vec![own]);
        let allows = |peer: &str| policy.allows(proto::PeerAddr(peer.parse().unwrap()));
        assert!(!allows("10.2.0.1:9"), "built-in 10/8 stays denied");
        assert!(!allows("198.51.100.1:9"), "peers.deny added");
        assert!(allows("10.1.0.1:9"), "peers.allow overrides");
        assert!(allows("8.8.8.8:53"));
        assert!(allows(&format!("{own}:{}", config.relay.port_min)));
    }
}
