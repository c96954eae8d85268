//! Queue budgets (DESIGN.md §10): the bytes of relayed messages the hub may
//! hold for one peer (its socket's outgoing queue, or its resume-grace
//! queue) and for all peers together, and the count of messages refused
//! because a budget was exhausted, by a fixed reason.

/// A budget that was exhausted; its label is the `reason` of
/// `ternd_signaling_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// The target peer already holds `max_queued_bytes_per_peer` (or, in its
    /// grace, `MAX_PENDING` messages): the relay is refused.
    PeerQueueFull,
    /// The hub already holds `max_queued_bytes`: the relay is refused.
    HubQueueFull,
    /// A socket's queue reached its message count: the reader is dropped.
    SlowReader,
}

impl Exhausted {
    pub const ALL: [Exhausted; 3] = [Exhausted::PeerQueueFull, Exhausted::HubQueueFull, Exhausted::SlowReader];

    pub fn label(self) -> &'static str {
        match self {
            Exhausted::PeerQueueFull => "peer_queue_full",
            Exhausted::HubQueueFull => "hub_queue_full",
            Exhausted::SlowReader => "slow_reader",
        }
    }
}

/// Messages refused or dropped, one counter per [`Exhausted`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounts([u64; Exhausted::ALL.len()]);

impl DropCounts {
    pub fn add(&mut self, why: Exhausted) {
        self.0[why as usize] += 1;
    }

    pub fn get(&self, why: Exhausted) -> u64 {
        self.0[why as usize]
    }

    /// The first reason counted more here than in `earlier`.
    pub fn grown_since(&self, earlier: &DropCounts) -> Option<Exhausted> {
        Exhausted::ALL.into_iter().find(|&why| self.get(why) > earlier.get(why))
    }
}

/// Bytes held in queues against the two limits.
#[derive(Debug, Clone)]
pub struct QueueBudget {
    per_peer: usize,
    max_total: usize,
    total: usize,
}

impl QueueBudget {
    pub fn new(per_peer: usize, max_total: usize) -> QueueBudget {
        QueueBudget {
            per_peer,
            max_total,
            total: 0,
        }
    }

    /// Whether `size` more bytes may be queued for a peer holding `held`.
    pub fn admit(&self, held: usize, size: usize) -> Result<(), Exhausted> {
        if held.saturating_add(size) > self.per_peer {
            Err(Exhausted::PeerQueueFull)
        } else if self.total.saturating_add(size) > self.max_total {
            Err(Exhausted::HubQueueFull)
        } else {
            Ok(())
        }
    }

    pub fn charge(&mut self, size: usize) {
        self.total += size;
    }

    pub fn release(&mut self, size: usize) {
        self.total = self.total.saturating_sub(size);
    }

    /// Bytes held now.
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_peer_then_total() {
        let mut b = QueueBudget::new(100, 150);
        assert_eq!(b.admit(0, 100), Ok(()));
        assert_eq!(b.admit(1, 100), Err(Exhausted::PeerQueueFull));
        b.charge(100);
        assert_eq!(b.admit(0, 50), Ok(()), "exactly full is allowed");
        assert_eq!(b.admit(0, 51), Err(Exhausted::HubQueueFull));
        b.release(100);
        assert_eq!(b.total(), 0);
        b.release(5);
        assert_eq!(b.total(), 0, "never below zero");
        assert_eq!(b.admit(usize::MAX, 1), Err(Exhausted::PeerQueueFull), "no overflow");
    }

    #[test]
    fn counts_by_reason() {
        let mut d = DropCounts::default();
        let before = d.clone();
        assert_eq!(d.grown_since(&before), None);
        d.add(Exhausted::HubQueueFull);
        d.add(Exhausted::HubQueueFull);
        assert_eq!(d.get(Exhausted::HubQueueFull), 2);
        assert_eq!(d.get(Exhausted::PeerQueueFull), 0);
        assert_eq!(d.grown_since(&before), Some(Exhausted::HubQueueFull));
        let labels: Vec<_> = Exhausted::ALL.iter().map(|e| e.label()).collect();
        assert_eq!(labels, ["peer_queue_full", "hub_queue_full", "slow_reader"]);
    }
}
