//! One shard's side of the fast path: carries out the core's
//! [`Offload`] commands on the shared maps, and reads the kernel's
//! per-relay counters back into the core ([`proto::Server::kernel_traffic`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use proto::allocation::Traffic;
use proto::{FiveTuple, KernelChannel, Offload, RelayId};

use super::maps::{ChannelKeys, Maps};
use super::syscall::monotonic_ns;

pub struct Mirror {
    maps: Arc<Maps>,
    shard: u32,
    /// The channels this shard installed, by relay.
    installed: HashMap<RelayId, Vec<(KernelChannel, ChannelKeys)>>,
    /// Each counted relay's kernel counter when last read.
    reported: HashMap<RelayId, Traffic>,
    /// The kernel's share of allocations just gone, until their close event.
    gone: HashMap<FiveTuple, Traffic>,
}

/// `now - before`, field by field.
fn since(now: &Traffic, before: &Traffic) -> Traffic {
    Traffic {
        to_peer_bytes: now.to_peer_bytes.saturating_sub(before.to_peer_bytes),
        to_peer_packets: now.to_peer_packets.saturating_sub(before.to_peer_packets),
        to_client_bytes: now.to_client_bytes.saturating_sub(before.to_client_bytes),
        to_client_packets: now.to_client_packets.saturating_sub(before.to_client_packets),
    }
}

impl Mirror {
    pub fn new(maps: Arc<Maps>, shard: usize) -> Mirror {
        Mirror {
            maps,
            shard: shard as u32,
            installed: HashMap::new(),
            reported: HashMap::new(),
            gone: HashMap::new(),
        }
    }

    /// The key of relay `relay`'s counter: unique across shards.
    fn counter(&self, relay: RelayId) -> u64 {
        (u64::from(self.shard) << 32) | u64::from(relay.0)
    }

    /// Carries out one command of the core.
    pub fn apply(&mut self, o: Offload, core: &mut proto::Server) {
        match o {
            Offload::ChannelBound { channel, until } => self.install(channel, until),
            Offload::ChannelExpired(c) | Offload::PermissionLapsed(c) => self.uninstall(&c),
            Offload::AllocationGone { tuple, relays } => {
                let mut total = Traffic::default();
                for relay in relays {
                    for (_, keys) in self.installed.remove(&relay).unwrap_or_default() {
                        self.remove(&keys);
                    }
                    if let Some(before) = self.reported.remove(&relay) {
                        let delta = self.read(relay).map(|now| since(&now, &before)).unwrap_or_default();
                        core.kernel_traffic(relay, delta);
                        total.add(&delta);
                        if let Err(e) = self.maps.drop_counter(self.counter(relay)) {
                            tracing::warn!("fastpath: cannot drop a counter: {e}");
                        }
                    }
                }
                // One family of a dual allocation may end before the other
                // (RFC 8656 §8.1): its kernel share waits here, added to
                // the rest, until the allocation's close event.
                if total != Traffic::default() {
                    self.gone.entry(tuple).or_default().add(&total);
                }
            }
        }
    }

    fn install(&mut self, channel: KernelChannel, until: Instant) {
        let Some(keys) = ChannelKeys::of(&channel) else {
            return;
        };
        let left = until.saturating_duration_since(Instant::now());
        let expires_ns = monotonic_ns().saturating_add(left.as_nanos() as u64);
        let counter = self.counter(channel.relay);
        if let Err(e) = self.maps.install(&keys, expires_ns, counter) {
            // The userspace path relays it instead.
            tracing::warn!(client = %channel.tuple.client, "fastpath: cannot install a channel: {e}");
            self.remove(&keys);
            return;
        }
        let list = self.installed.entry(channel.relay).or_default();
        list.retain(|(c, _)| !(c.number == channel.number && c.peer == channel.peer));
        list.push((channel, keys));
        self.reported.entry(channel.relay).or_default();
    }

    fn uninstall(&mut self, c: &KernelChannel) {
        let Some(list) = self.installed.get_mut(&c.relay) else {
            return;
        };
        let mut removed = Vec::new();
        list.retain(|(x, keys)| {
            let same = x.number == c.number && x.peer == c.peer;
            if same {
                removed.push(*keys);
            }
            !same
        });
        for keys in removed {
            self.remove(&keys);
        }
    }

    fn remove(&self, keys: &ChannelKeys) {
        if let Err(e) = self.maps.remove(keys) {
            tracing::warn!("fastpath: cannot remove a channel: {e}");
        }
    }

    fn read(&self, relay: RelayId) -> Option<Traffic> {
        self.maps
            .traffic(self.counter(relay))
            .inspect_err(|e| tracing::warn!("fastpath: cannot read a counter: {e}"))
            .ok()
    }

    /// The kernel's share of `tuple`'s relays already gone while its
    /// allocation lives on (a family of a dual allocation that ended first,
    /// RFC 8656 §8.1): not in the core's counts until the close event, so
    /// the admin view adds it.
    pub fn gone_share(&self, tuple: &FiveTuple) -> Traffic {
        self.gone.get(tuple).copied().unwrap_or_default()
    }

    /// Adds the kernel's share to the traffic of a closing allocation.
    pub fn closing(&mut self, tuple: &FiveTuple, traffic: &mut Traffic) {
        if let Some(t) = self.gone.remove(tuple) {
            traffic.add(&t);
        }
    }

    /// Reports to the core what the kernel relayed since the last read
    /// (before metrics or the admin view are read).
    pub fn flush(&mut self, core: &mut proto::Server) {
        let relays: Vec<RelayId> = self.reported.keys().copied().collect();
        for relay in relays {
            let Some(now) = self.read(relay) else { continue };
            let Some(before) = self.reported.insert(relay, now) else {
                continue;
            };
            let delta = since(&now, &before);
            if delta != Traffic::default() {
                core.kernel_traffic(relay, delta);
            }
        }
    }

    /// Takes back everything this shard installed (the fast path is being
    /// turned off), after a last read of the counters.
    pub fn clear(&mut self, core: &mut proto::Server) {
        self.flush(core);
        for (_, list) in std::mem::take(&mut self.installed) {
            for (_, keys) in list {
                self.remove(&keys);
            }
        }
        for relay in std::mem::take(&mut self.reported).into_keys() {
            let _ = self.maps.drop_counter(self.counter(relay));
        }
        // The share of families that ended first goes to their allocations
        // now: no close event will find it here.
        for (tuple, traffic) in self.gone.drain() {
            core.ended_relay_traffic(&tuple, traffic);
        }
    }
}
