//! What the kernel fast path may relay on its own (issue 14): the core
//! works out, after every change to an allocation, which of its channels a
//! kernel may relay without asking (bound, permitted, uncapped, UDP) and
//! tells the driver the difference as [`Offload`] commands. The driver's
//! counters come back through [`Server::kernel_traffic`], so usage, logs and
//! metrics stay exact.

use std::time::Instant;

use crate::addr::{FiveTuple, Transport};
use crate::allocation::{OffloadedChannel, RelayId, Traffic};
use crate::allocations::SlotId;
use crate::output::{Command, KernelChannel, Offload};
use crate::server::Server;

impl Server {
    /// Brings the driver's view of allocation `slot`'s offloaded channels up
    /// to date: called with the timer re-arm after every change.
    pub(crate) fn sync_offload(&mut self, slot: SlotId, now: Instant) {
        if !self.config.offload {
            return;
        }
        let policy = &self.config.policy;
        let Some(a) = self.allocations.get_mut(slot) else {
            return;
        };
        // A capped allocation never enters the kernel, so there is no
        // "bandwidth cap reached" command: the cap is a token bucket that
        // only userspace can drain exactly, and an allocation's cap is fixed
        // when it is created (a reload changing turn.bandwidth_limit applies
        // to new allocations only), so an offloaded one cannot become capped.
        let eligible =
            a.tuple.transport == Transport::Udp && a.bucket.is_unlimited() && a.bucket_to_client.is_unlimited();
        let wanted: Vec<OffloadedChannel> = if eligible {
            a.channels
                .iter()
                .filter(|c| now < c.expires && !policy.is_own(c.peer.ip()))
                .filter_map(|c| {
                    let permission = a.permissions.iter().find(|p| p.ip == c.peer.ip() && now < p.expires)?;
                    let relay = a.relay_for(&c.peer)?;
                    Some(OffloadedChannel {
                        number: c.number,
                        peer: c.peer,
                        until: c.expires.min(permission.expires).min(relay.expires),
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let kernel_channel = |c: &OffloadedChannel| {
            let relay = a.relay_for(&c.peer)?;
            Some(KernelChannel {
                tuple: a.tuple,
                relay: relay.id,
                relay_addr: relay.local,
                number: c.number,
                peer: c.peer,
            })
        };
        for old in &a.offloaded {
            if wanted.iter().any(|w| w.number == old.number && w.peer == old.peer) {
                continue;
            }
            let Some(k) = kernel_channel(old) else { continue };
            let bound = a.channels.iter().any(|c| c.number == old.number && now < c.expires);
            self.commands.push_back(Command::Offload(if bound {
                Offload::PermissionLapsed(k)
            } else {
                Offload::ChannelExpired(k)
            }));
        }
        for new in &wanted {
            if a.offloaded.contains(new) {
                continue;
            }
            if let Some(channel) = kernel_channel(new) {
                self.commands.push_back(Command::Offload(Offload::ChannelBound {
                    channel,
                    until: new.until,
                }));
            }
        }
        a.offloaded = wanted;
    }

    /// Tells the driver that `relays` of allocation `tuple` are gone (all of
    /// them, or one family's), before its close event, so the kernel's last
    /// counts reach that event.
    pub(crate) fn offload_gone(&mut self, tuple: FiveTuple, relays: impl IntoIterator<Item = RelayId>) {
        if self.config.offload {
            self.commands.push_back(Command::Offload(Offload::AllocationGone {
                tuple,
                relays: relays.into_iter().collect(),
            }));
        }
    }

    /// Traffic the kernel fast path relayed for relay `relay` since the
    /// driver last reported: counted in the totals and, while the allocation
    /// lives, in its own counters.
    pub fn kernel_traffic(&mut self, relay: RelayId, traffic: Traffic) {
        self.stats.traffic.add(&traffic);
        if let Some(slot) = self.allocations.by_relay(relay) {
            if let Some(a) = self.allocations.get_mut(slot) {
                a.traffic.add(&traffic);
            }
        }
    }

    /// Traffic the kernel relayed for a relay that is already gone while
    /// allocation `tuple` lives on (a family of a dual allocation that ended
    /// first, RFC 8656 §8.1), handed back by a driver that stops
    /// offloading: already in the totals through [`Server::kernel_traffic`],
    /// now in the allocation's own counters. False if `tuple` has none.
    pub fn ended_relay_traffic(&mut self, tuple: &FiveTuple, traffic: Traffic) -> bool {
        let Some(slot) = self.allocations.by_tuple(tuple) else {
            return false;
        };
        self.allocations.live_mut(slot).traffic.add(&traffic);
        true
    }

    /// Forgets what was offloaded when a reload turns the fast path off
    /// (the driver drops its maps); with it on again, each allocation is
    /// offloaded anew at its next change.
    pub(crate) fn reset_offload(&mut self) {
        for a in self.allocations.iter_mut() {
            a.offloaded.clear();
        }
    }
}
