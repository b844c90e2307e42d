//! Run slots, and the prefetch that keeps dispatch fair.
//!
//! A worker never holds more unstarted run messages than it has free slots,
//! so an idle worker is never starved by a busy one. Each run holds a
//! permit of a semaphore with one permit per slot. The broker's prefetch is
//! per channel and knows nothing of runs still going on from a channel that
//! died: after a reconnect the new channel starts with a prefetch of the
//! slots free *now*, and gains one each time a run from an older channel
//! ends. A channel opened while every slot is busy consumes nothing until
//! one frees up (a prefetch of 0 would mean "unlimited").

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The run slots of one worker.
#[derive(Debug, Clone)]
pub struct Slots {
    permits: Arc<Semaphore>,
    total: u16,
}

/// A run's slot; freed when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    /// The channel generation the run's message came from.
    pub generation: u64,
}

impl Slots {
    /// `total` slots, all free.
    pub fn new(total: u16) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(usize::from(total))),
            total,
        }
    }

    /// Slots free now.
    pub fn free(&self) -> u16 {
        self.permits.available_permits() as u16
    }

    /// Slots busy now.
    pub fn busy(&self) -> u16 {
        self.total - self.free()
    }

    /// All slots.
    pub fn total(&self) -> u16 {
        self.total
    }

    /// Takes a free slot for a message of channel `generation`, if any.
    pub fn take(&self, generation: u64) -> Option<Slot> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(Slot {
            _permit: permit,
            generation,
        })
    }
}

/// The prefetch of the current channel generation.
#[derive(Debug)]
pub struct Prefetch {
    /// The current channel's generation.
    pub generation: u64,
    /// Its prefetch now (0: not consuming yet).
    pub count: u16,
    total: u16,
}

impl Prefetch {
    /// A new channel generation with the slots free now.
    pub fn open(generation: u64, slots: &Slots) -> Self {
        Self {
            generation,
            count: slots.free(),
            total: slots.total(),
        }
    }

    /// A run of `generation` ended: returns the new prefetch if it grew.
    pub fn ended(&mut self, generation: u64) -> Option<u16> {
        (generation < self.generation && self.count < self.total).then(|| {
            self.count += 1;
            self.count
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_channel_gets_only_the_slots_older_runs_leave_free() {
        let slots = Slots::new(2);
        let old = slots.take(1).unwrap();
        let mut prefetch = Prefetch::open(2, &slots);
        assert_eq!(prefetch.count, 1);
        let new = slots.take(2).unwrap();
        assert!(slots.take(2).is_none(), "never more runs than slots");
        assert_eq!(
            prefetch.ended(new.generation),
            None,
            "a current run frees its own credit"
        );
        assert_eq!(prefetch.ended(old.generation), Some(2));
        assert_eq!(
            prefetch.ended(old.generation),
            None,
            "never above the slots"
        );
    }
}
