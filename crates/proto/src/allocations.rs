//! The allocation table of one shard: allocations in reusable slots, found
//! by 5-tuple (client requests) or by relay id (peer datagrams). Slots carry
//! a generation so a timer queued for a deleted allocation cannot touch the
//! one that took its slot. Relay ids are handed out here too, from the moment
//! a bind is asked for until the allocation using them is removed.

use std::collections::HashMap;

use crate::addr::FiveTuple;
use crate::allocation::{Allocation, RelayId};

/// Index of an allocation in the table.
pub(crate) type SlotId = u32;

#[derive(Debug, Default)]
struct Slot {
    gen: u32,
    alloc: Option<Allocation>,
}

#[derive(Debug, Clone, Copy)]
enum RelayState {
    /// Bind requested, allocation not created yet.
    Pending,
    /// Serving allocation `slot`.
    Active { slot: SlotId },
}

#[derive(Debug, Default)]
pub(crate) struct Allocations {
    slots: Vec<Slot>,
    free_slots: Vec<SlotId>,
    by_tuple: HashMap<FiveTuple, SlotId>,
    relays: Vec<Option<RelayState>>,
    free_relays: Vec<u32>,
}

impl Allocations {
    /// Stores `alloc`, indexes it by its 5-tuple and makes its relays
    /// (handed out by [`Allocations::new_relay_id`]) point at it.
    pub fn insert(&mut self, alloc: Allocation) -> SlotId {
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() as SlotId - 1
            }
        };
        for r in &alloc.relays {
            self.activate(r.id, slot);
        }
        self.by_tuple.insert(alloc.tuple, slot);
        self.slots[slot as usize].alloc = Some(alloc);
        slot
    }

    /// Takes the allocation out of `slot`, unindexes it and frees its relay
    /// ids; the slot's generation moves on.
    pub fn remove(&mut self, slot: SlotId) -> Option<Allocation> {
        let s = self.slots.get_mut(slot as usize)?;
        let a = s.alloc.take()?;
        s.gen = s.gen.wrapping_add(1);
        self.free_slots.push(slot);
        self.by_tuple.remove(&a.tuple);
        for r in &a.relays {
            self.free_relay_id(r.id);
        }
        Some(a)
    }

    #[inline]
    pub fn by_tuple(&self, tuple: &FiveTuple) -> Option<SlotId> {
        self.by_tuple.get(tuple).copied()
    }

    /// The allocation a relay serves, if any.
    #[inline]
    pub fn by_relay(&self, relay: RelayId) -> Option<SlotId> {
        match self.relays.get(relay.0 as usize) {
            Some(Some(RelayState::Active { slot })) => Some(*slot),
            _ => None,
        }
    }

    #[inline]
    pub fn get(&self, slot: SlotId) -> Option<&Allocation> {
        self.slots.get(slot as usize)?.alloc.as_ref()
    }

    #[inline]
    pub fn get_mut(&mut self, slot: SlotId) -> Option<&mut Allocation> {
        self.slots.get_mut(slot as usize)?.alloc.as_mut()
    }

    /// The live allocation in `slot`. Callers hold a slot from
    /// [`Allocations::by_tuple`] or [`Allocations::by_relay`], which only
    /// ever name live allocations.
    #[inline]
    pub fn live(&self, slot: SlotId) -> &Allocation {
        self.get(slot).expect("indexed slots hold a live allocation")
    }

    /// [`Allocations::live`], mutable.
    #[inline]
    pub fn live_mut(&mut self, slot: SlotId) -> &mut Allocation {
        self.get_mut(slot).expect("indexed slots hold a live allocation")
    }

    /// The generation of `slot` (it changes when its allocation is removed).
    pub fn generation(&self, slot: SlotId) -> u32 {
        self.slots.get(slot as usize).map_or(0, |s| s.gen)
    }

    /// True if `slot` still holds the allocation of generation `gen`.
    pub fn is_current(&self, slot: SlotId, gen: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_some_and(|s| s.gen == gen && s.alloc.is_some())
    }

    /// A relay id for a bind about to be asked for.
    pub fn new_relay_id(&mut self) -> RelayId {
        match self.free_relays.pop() {
            Some(i) => {
                self.relays[i as usize] = Some(RelayState::Pending);
                RelayId(i)
            }
            None => {
                self.relays.push(Some(RelayState::Pending));
                RelayId(self.relays.len() as u32 - 1)
            }
        }
    }

    /// Frees a relay id (a failed or abandoned bind, or a removed allocation).
    pub fn free_relay_id(&mut self, id: RelayId) {
        if let Some(state) = self.relays.get_mut(id.0 as usize) {
            if state.take().is_some() {
                self.free_relays.push(id.0);
            }
        }
    }

    /// Relay `relay` now serves allocation `slot`.
    pub fn activate(&mut self, relay: RelayId, slot: SlotId) {
        if let Some(state) = self.relays.get_mut(relay.0 as usize) {
            *state = Some(RelayState::Active { slot });
        }
    }

    /// Live allocations.
    #[inline]
    pub fn len(&self) -> usize {
        self.by_tuple.len()
    }

    /// Every live allocation.
    pub fn iter(&self) -> impl Iterator<Item = &Allocation> {
        self.slots.iter().filter_map(|s| s.alloc.as_ref())
    }

    /// Every live allocation, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Allocation> {
        self.slots.iter_mut().filter_map(|s| s.alloc.as_mut())
    }
}
