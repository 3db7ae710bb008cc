//! A fixed-size, lock-free table of GCRA cells keyed by a 64-bit hash.
//!
//! Responsible for: finding the cell of a key (a tenant id, a session id, a client IP)
//! without a lock: open addressing over a pre-sized array, claiming an empty slot by
//! compare-and-swap on its key word. A slot whose bucket has been full for a while holds
//! no information (its TAT is in the past) and may be taken over by another key, so the
//! table never fills up with stale keys. Not responsible for: the rate decision (`gcra`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

/// How far a lookup probes before taking over a stale slot or giving up.
const PROBES: usize = 16;

#[derive(Debug, Default)]
#[repr(align(16))]
struct Slot {
    key: AtomicU64,
    tat: AtomicU64,
}

/// A keyed table of GCRA cells.
#[derive(Debug)]
pub struct CellTable {
    slots: Box<[Slot]>,
    hasher: RandomState,
}

impl CellTable {
    /// A table of `capacity` slots (rounded up to a power of two).
    pub fn new(capacity: usize) -> CellTable {
        let n = capacity.next_power_of_two().max(PROBES);
        CellTable {
            slots: (0..n).map(|_| Slot::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The 64-bit key of `k` (never 0: 0 marks an empty slot).
    pub fn key_of<K: Hash + ?Sized>(&self, k: &K) -> u64 {
        self.hasher.hash_one(k) | 1
    }

    /// The cell of `key`, claiming a slot if needed; `now` (ns) lets a lookup take over a
    /// slot whose bucket is full again. `None` when every probed slot is live and owned
    /// by other keys (the caller then fails open or closed as it chooses).
    pub fn cell(&self, key: u64, now: u64) -> Option<&AtomicU64> {
        let mask = self.slots.len() - 1;
        let start = (key as usize) & mask;
        let mut stale = None;
        for i in 0..PROBES {
            let slot = &self.slots[(start + i) & mask];
            let k = slot.key.load(Ordering::Acquire);
            if k == key {
                return Some(&slot.tat);
            }
            if k == 0 {
                match slot
                    .key
                    .compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return Some(&slot.tat),
                    Err(k) if k == key => return Some(&slot.tat),
                    Err(_) => continue,
                }
            }
            if stale.is_none() && slot.tat.load(Ordering::Acquire) < now {
                stale = Some(slot);
            }
        }
        let slot = stale?;
        let old = slot.key.load(Ordering::Acquire);
        // Taking over: a TAT in the past means "full bucket", the same as a fresh slot.
        slot.key
            .compare_exchange(old, key, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| &slot.tat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_cell_and_stale_takeover() {
        let t = CellTable::new(16);
        let a = t.key_of("tenant-a");
        let c1 = t.cell(a, 10).unwrap() as *const _;
        let c2 = t.cell(a, 10).unwrap() as *const _;
        assert_eq!(c1, c2);
        // Fill every slot with live buckets (TAT far in the future).
        for i in 0..1000u32 {
            if let Some(c) = t.cell(t.key_of(&i), 10) {
                c.store(u64::MAX / 2, Ordering::Release);
            }
        }
        // A new key finds no room while all are live...
        let b = t.key_of("tenant-b");
        assert!(t.cell(b, 10).is_none());
        // ...and takes over a slot once one is stale.
        assert!(t.cell(b, u64::MAX / 2 + 1).is_some());
    }
}
