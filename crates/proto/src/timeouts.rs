//! Running the deadline queue: allocation expiry (RFC 8656 §8: an allocation
//! not refreshed before it expires is deleted; each family of a dual
//! allocation on its own, §8.1), permissions (§9) and channel bindings (§12)
//! running out, RESERVATION-TOKENs (§7.2) lapsing.

use std::time::{Duration, Instant};

use crate::allocations::SlotId;
use crate::output::CloseReason;
use crate::server::Server;
use crate::timers::Timer;

impl Server {
    /// Runs every timer due at `now`: expired allocations are deleted and
    /// their relay sockets released; stale permissions and channels pruned.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, t)) = self.timers.pop_due(now) {
            match t {
                Timer::Allocation { slot, gen } => {
                    if !self.allocations.is_current(slot, gen) {
                        continue;
                    }
                    let Some(a) = self.allocations.get_mut(slot) else {
                        continue;
                    };
                    // An entry superseded by an earlier one: that one is live.
                    if a.armed != Some(at) {
                        continue;
                    }
                    a.armed = None;
                    if self.expire(slot, now) {
                        self.allocations.live_mut(slot).prune(now);
                        self.arm(slot, now);
                    }
                }
                Timer::Connection { id } => self.connection_timeout(now, crate::ConnectionId(id)),
                Timer::Reservation { token } => {
                    if self.reservations.get(&token).is_some_and(|r| r.expires <= now) {
                        if let Some(r) = self.reservations.remove(&token) {
                            self.ports.release(r.addr.ip(), r.addr.port());
                        }
                        self.config.reservations.remove(&token);
                    }
                }
            }
        }
    }

    /// Ends what of allocation `slot` has run out at `now`: the whole
    /// allocation once its last family has, else each family past its
    /// lifetime (RFC 8656 §8.1). False if the allocation is gone.
    pub(crate) fn expire(&mut self, slot: SlotId, now: Instant) -> bool {
        if self.allocations.live(slot).is_expired(now) {
            self.delete_allocation(slot, now, CloseReason::Expired);
            return false;
        }
        // At most one relay per family, so this ends at most twice.
        while let Some(family) = self
            .allocations
            .live(slot)
            .relays
            .iter()
            .find(|r| r.expires <= now)
            .map(|r| r.family())
        {
            self.end_family(slot, family, now, CloseReason::Expired);
        }
        true
    }

    /// Queues allocation `slot`'s timer for its next deadline unless an entry
    /// at or before it is already queued, and tells the kernel fast path
    /// what changed. Deadlines only move earlier when a
    /// permission or channel is added, so the queue holds O(allocations)
    /// entries however often clients refresh.
    pub(crate) fn arm(&mut self, slot: SlotId, now: Instant) {
        let gen = self.allocations.generation(slot);
        let Some(a) = self.allocations.get_mut(slot) else {
            return;
        };
        let next = a.next_deadline(now).max(now + Duration::from_millis(1));
        if a.armed.is_none_or(|t| next < t) {
            a.armed = Some(next);
            self.timers.push(next, Timer::Allocation { slot, gen });
            self.compact_timers();
        }
        // Every change to an allocation's deadlines comes through here.
        self.sync_offload(slot, now);
    }

    /// Drops the entries that can no longer do anything (deleted
    /// allocations, superseded deadlines, used reservations) once they
    /// outnumber the live ones four to one, so the queue stays
    /// O(allocations + reservations) however fast allocations come and go.
    /// Each allocation keeps at most two entries, so this is amortised O(1).
    pub(crate) fn compact_timers(&mut self) {
        let live = self.allocations.len() + self.reservations.len() + self.connections.len();
        if self.timers.len() <= 4 * (live + 1) {
            return;
        }
        let (allocations, reservations, connections) = (&self.allocations, &self.reservations, &self.connections);
        self.timers.retain(|at, t| match *t {
            Timer::Allocation { slot, gen } => {
                allocations.is_current(slot, gen) && allocations.get(slot).is_some_and(|a| a.armed == Some(at))
            }
            Timer::Reservation { token } => reservations.contains_key(&token),
            Timer::Connection { id } => connections.contains(crate::ConnectionId(id)),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::time::{Duration, Instant};

    use crate::addr::{ClientAddr, FiveTuple, ServerAddr, Transport};
    use crate::allocation::{Allocation, Bucket, CachedResponse, Relay, Traffic};
    use crate::allocations::SlotId;
    use crate::output::CloseReason;
    use crate::rng::Rng;
    use crate::{Server, ServerConfig};

    use crate::clock::test_start as start;

    fn tuple(i: u16) -> FiveTuple {
        FiveTuple {
            client: ClientAddr(SocketAddr::from(([198, 51, 100, 1], 1024 + i))),
            server: ServerAddr(SocketAddr::from(([192, 0, 2, 1], 3478))),
            transport: Transport::Udp,
        }
    }

    /// What the Allocate handler does once the relays are bound, minus the wire.
    fn create(s: &mut Server, i: u16, now: Instant, lifetime: Duration) -> SlotId {
        let local = SocketAddr::from(([192, 0, 2, 1], 50000 + i));
        let relay = Relay {
            id: s.allocations.new_relay_id(),
            local,
            public: local,
            expires: now + lifetime,
        };
        let slot = s.allocations.insert(Allocation {
            tuple: tuple(i),
            username: "u".into(),
            relays: vec![relay],
            ended_relays: Vec::new(),
            created: now,
            permissions: vec![],
            channels: vec![],
            allocate_response: CachedResponse {
                tid: [0; 12],
                bytes: vec![],
            },
            last_response: None,
            traffic: Traffic::default(),
            bucket: Bucket::new(0, now),
            bucket_to_client: Bucket::new(0, now),
            armed: None,
            offloaded: Vec::new(),
            tcp: false,
        });
        s.arm(slot, now);
        slot
    }

    /// What Refresh does.
    fn refresh(s: &mut Server, slot: SlotId, now: Instant, lifetime: Duration) {
        for r in &mut s.allocations.live_mut(slot).relays {
            r.expires = now + lifetime;
        }
        s.arm(slot, now);
    }

    /// What CreatePermission does.
    fn permit(s: &mut Server, slot: SlotId, now: Instant, ip: IpAddr) {
        s.allocations
            .live_mut(slot)
            .permit(ip, now, crate::allocation::PERMISSION_LIFETIME);
        s.arm(slot, now);
    }

    #[test]
    fn many_refreshes_keep_the_timer_queue_small() {
        let mut s = Server::new(ServerConfig::default());
        let mut now = start();
        let slot = create(&mut s, 0, now, Duration::from_secs(600));
        for i in 0..10_000u64 {
            refresh(
                &mut s,
                slot,
                now,
                Duration::from_secs([600, 3600, 1200, 600][i as usize % 4]),
            );
            if i % 100 == 0 {
                permit(&mut s, slot, now, IpAddr::from([203, 0, 113, 1]));
            }
            if i % 10 == 0 {
                now += Duration::from_secs(1);
                s.handle_timeout(now);
            }
            assert!(s.timers.len() < 10, "{} entries after {i} refreshes", s.timers.len());
        }
        assert_eq!(s.allocations.len(), 1);
    }

    /// RFC 8656 §8.1: each family of a dual allocation refreshed on its
    /// own, with different lifetimes, many times over: still a handful of
    /// queue entries, and one family ending leaves the other's timer armed.
    #[test]
    fn per_family_refreshes_of_a_dual_allocation_keep_the_timer_queue_small() {
        let mut s = Server::new(ServerConfig::default());
        let mut now = start();
        let slot = create(&mut s, 0, now, Duration::from_secs(600));
        let local = SocketAddr::from((IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), 50000));
        let relay = Relay {
            id: s.allocations.new_relay_id(),
            local,
            public: local,
            expires: now + Duration::from_secs(600),
        };
        s.allocations.activate(relay.id, slot);
        s.allocations.live_mut(slot).relays.push(relay);
        for i in 0..10_000u64 {
            let a = s.allocations.live_mut(slot);
            let r = &mut a.relays[(i % 2) as usize];
            r.expires = now + Duration::from_secs([600, 3600, 1200][i as usize % 3]);
            s.arm(slot, now);
            if i % 10 == 0 {
                now += Duration::from_secs(1);
                s.handle_timeout(now);
            }
            assert!(s.timers.len() < 10, "{} entries after {i} refreshes", s.timers.len());
        }
        assert_eq!(s.allocations.live(slot).relays.len(), 2);
        // The IPv6 family lapses; the IPv4 one carries on to its own end.
        s.allocations.live_mut(slot).relays[1].expires = now + Duration::from_secs(10);
        s.allocations.live_mut(slot).relays[0].expires = now + Duration::from_secs(100);
        s.arm(slot, now);
        s.handle_timeout(now + Duration::from_secs(10));
        assert_eq!(s.allocations.live(slot).relays.len(), 1);
        assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(100)));
        s.handle_timeout(now + Duration::from_secs(100));
        assert_eq!(s.allocations.len(), 0);
        // Superseded entries go when they come due (or at compaction).
        s.handle_timeout(now + Duration::from_secs(3600));
        assert_eq!((s.timers.len(), s.poll_timeout()), (0, None));
    }

    #[test]
    fn allocation_churn_keeps_the_timer_queue_bounded() {
        let mut s = Server::new(ServerConfig::default());
        let now = start();
        create(&mut s, 0, now, Duration::from_secs(600));
        for i in 0..5_000 {
            let slot = create(&mut s, 1, now, Duration::from_secs(3600));
            s.delete_allocation(slot, now, CloseReason::Deleted);
            let (n, live) = (s.timers.len(), s.allocations.len());
            assert!(
                n <= 4 * (live + 1),
                "{n} timer entries for {live} allocations after {i} cycles"
            );
        }
    }

    /// Random creates, refreshes, permissions, deletes and time jumps: the
    /// queue stays O(live allocations), and empties once everything expired.
    #[test]
    fn random_operations_keep_the_timer_queue_bounded() {
        for seed in [1, 2, 0xDEAD_BEEF] {
            let mut rng = Rng::new(crate::rng::seed_from_u64(seed));
            let mut s = Server::new(ServerConfig::default());
            let mut now = start();
            for step in 0..20_000 {
                let i = rng.below(16) as u16;
                let slot = s.allocations.by_tuple(&tuple(i));
                let secs = Duration::from_secs(1 + rng.below(900));
                match (rng.below(10), slot) {
                    (0..=2, None) => drop(create(&mut s, i, now, secs)),
                    (3..=4, Some(slot)) => refresh(&mut s, slot, now, secs),
                    (5..=6, Some(slot)) => permit(&mut s, slot, now, IpAddr::from([203, 0, 113, i as u8])),
                    (7, Some(slot)) => s.delete_allocation(slot, now, CloseReason::Deleted),
                    _ => {
                        now += Duration::from_secs(rng.below(400));
                        s.handle_timeout(now);
                    }
                }
                let (n, live) = (s.timers.len(), s.allocations.len());
                assert!(
                    n <= 4 * (live + 2),
                    "seed {seed:#x}, step {step}: {n} entries for {live} allocations"
                );
            }
            now += Duration::from_secs(4000);
            s.handle_timeout(now);
            assert_eq!(s.allocations.len(), 0);
            assert_eq!(s.timers.len(), 0);
            assert_eq!(s.poll_timeout(), None);
        }
    }
}
