//! Ending allocations: Refresh with LIFETIME 0 (RFC 8656 §8.2), expiry
//! (§8), the client's TCP/TLS connection closing (§3.1), an operator's
//! close; ending one family of a dual allocation (§8.1); and giving relay
//! sockets back.

use std::net::SocketAddr;
use std::time::Instant;

use crate::addr::{Family, FiveTuple};
use crate::allocation::RelayId;
use crate::allocations::SlotId;
use crate::output::{CloseReason, Command, Event};
use crate::server::Server;

impl Server {
    /// Closes the allocation on `tuple` (admin action). True if there was one.
    pub fn close_allocation(&mut self, now: Instant, tuple: &FiveTuple) -> bool {
        match self.allocations.by_tuple(tuple) {
            Some(slot) => {
                self.delete_allocation(slot, now, CloseReason::Closed);
                true
            }
            None => false,
        }
    }

    /// The client's TCP/TLS connection closed: its allocation dies with it
    /// (RFC 8656 §3.1).
    pub fn connection_closed(&mut self, now: Instant, tuple: FiveTuple) {
        // An Allocate still waiting for its relay is abandoned when the bind is answered.
        self.pending_tuples.remove(&tuple);
        // RFC 6062 §5.5: when one side of a data connection pair closes,
        // the other is closed too.
        if let Some(id) = self.connections.by_data(&tuple) {
            self.connections.remove(id);
            self.commands.push_back(Command::ClosePeer { id });
        }
        if let Some(slot) = self.allocations.by_tuple(&tuple) {
            self.delete_allocation(slot, now, CloseReason::ConnectionClosed);
        }
    }

    /// Deletes allocation `slot`: releases its relays, ports and quota.
    pub(crate) fn delete_allocation(&mut self, slot: SlotId, now: Instant, reason: CloseReason) {
        let Some(a) = self.allocations.remove(slot) else { return };
        self.offload_gone(a.tuple, a.relays.iter().map(|r| r.id));
        if a.tcp {
            self.close_connections_of(&a.tuple, None);
        }
        for r in &a.relays {
            self.release_socket(r.id, r.local);
        }
        self.config.quotas.release(&a.username, a.tuple.client.0.ip());
        self.stats.allocations_closed += 1;
        // Every relayed address it had, IPv4 first as in its Allocate response.
        let mut relays: Vec<SocketAddr> = a
            .ended_relays
            .iter()
            .copied()
            .chain(a.relays.iter().map(|r| r.public))
            .collect();
        relays.sort_by_key(SocketAddr::is_ipv6);
        self.commands.push_back(Command::Event(Event::AllocationClosed {
            tuple: a.tuple,
            relays,
            username: a.username,
            age: now.saturating_duration_since(a.created),
            reason,
            traffic: a.traffic,
        }));
        self.compact_timers();
    }

    /// Ends the `family` half of allocation `slot` (RFC 8656 §8.1: a Refresh
    /// naming that family with LIFETIME 0, or that family's lifetime running
    /// out): its relay, port and socket go, with the permissions, channels
    /// and connections to that family's peers; the other family carries on.
    /// The allocation ends with its last family.
    pub(crate) fn end_family(&mut self, slot: SlotId, family: Family, now: Instant, reason: CloseReason) {
        let a = self.allocations.live(slot);
        if !a.has_family(family) {
            return;
        }
        if a.relays.len() == 1 {
            self.delete_allocation(slot, now, reason);
            return;
        }
        let a = self.allocations.live_mut(slot);
        let Some(relay) = a.remove_family(family) else { return };
        a.ended_relays.push(relay.public);
        let (tuple, tcp) = (a.tuple, a.tcp);
        // The kernel stops this relay's channels and reports its last counts.
        self.offload_gone(tuple, [relay.id]);
        if tcp {
            self.close_connections_of(&tuple, Some(family));
        }
        self.release_relay(relay.id, Some(relay.local));
        self.commands.push_back(Command::Event(Event::RelayClosed {
            tuple,
            relay: relay.public,
            reason,
        }));
        self.arm(slot, now);
    }

    /// Frees a relay id; if it was bound, asks the driver to close the socket.
    pub(crate) fn release_relay(&mut self, id: RelayId, bound: Option<SocketAddr>) {
        self.allocations.free_relay_id(id);
        if let Some(addr) = bound {
            self.release_socket(id, addr);
        }
    }

    /// Gives the port of relay `id`, bound to `addr`, back and asks the
    /// driver to close its socket.
    fn release_socket(&mut self, id: RelayId, addr: SocketAddr) {
        self.ports.release(addr.ip(), addr.port());
        self.commands.push_back(Command::ReleaseRelay { relay: id });
    }
}
