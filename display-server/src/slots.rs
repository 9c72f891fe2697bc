//! The session limit: a plain counter of admitted sessions. A slot is taken when a hello
//! is admitted and given back when its guard drops, however the session ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct SessionSlots {
    taken: Arc<AtomicUsize>,
}

/// One admitted session's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    taken: Arc<AtomicUsize>,
}

impl SessionSlots {
    /// Takes a slot if fewer than `max` are taken; simultaneous callers never overshoot.
    pub fn try_take(&self, max: usize) -> Option<Slot> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot {
            taken: self.taken.clone(),
        })
    }

    /// Sessions admitted and not yet ended.
    pub fn active(&self) -> usize {
        self.taken.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let slots = SessionSlots::default();
        let a = slots.try_take(2).unwrap();
        let _b = slots.try_take(2).unwrap();
        assert!(slots.try_take(2).is_none());
        drop(a);
        assert_eq!(slots.active(), 1);
        assert!(slots.try_take(2).is_some());
    }
}
