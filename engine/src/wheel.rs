//! A hashed timer wheel: O(1) insert, O(1) cancel, expiry driven by `now` passed in.
//!
//! Responsible for: keeping deadlines of one event loop (header-read and idle timeouts,
//! stream heartbeats, the shutdown deadline) and telling the loop how long it may sleep.
//! Not responsible for: reading a clock or deciding what an expiry means; the loop passes
//! `now` (milliseconds on its own monotonic clock) and interprets the payloads it gets back.
//!
//! Layout (Varghese & Lauck, scheme 6): `SLOTS` buckets of `tick_ms` each. An entry due at
//! tick `t` sits in bucket `t % SLOTS` in an intrusive doubly-linked list whose nodes live in
//! one `slab`, so cancel unlinks in O(1) and no allocation happens once the slab has grown.
//! Entries further away than one rotation stay in their bucket and are skipped until their
//! round comes. An `occupied` bitmap finds the next non-empty bucket without a scan of the
//! buckets, which gives the poll timeout. Almost every deadline here is reset before it fires,
//! so callers are expected to re-arm lazily (keep the real deadline beside the payload and
//! re-insert when an early entry fires) rather than cancel on every reset.

use slab::Slab;

/// Number of buckets; a power of two so the bucket of a tick is a mask.
const SLOTS: usize = 512;
const WORDS: usize = SLOTS / 64;
const NIL: usize = usize::MAX;

/// Handle of an inserted entry, for [`Wheel::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerKey(usize);

#[derive(Debug)]
struct Node<T> {
    tick: u64,
    payload: T,
    prev: usize,
    next: usize,
}

/// A single-owner timer wheel holding payloads of type `T`.
#[derive(Debug)]
pub struct Wheel<T> {
    tick_ms: u64,
    /// The first tick not yet expired.
    current: u64,
    heads: Box<[usize]>,
    occupied: [u64; WORDS],
    nodes: Slab<Node<T>>,
    /// Scratch list of expired keys, kept to avoid an allocation per `advance`.
    due: Vec<usize>,
}

impl<T> Wheel<T> {
    /// A wheel whose resolution is `tick_ms` (at least 1), starting at time `now_ms`.
    pub fn new(tick_ms: u64, now_ms: u64) -> Self {
        let tick_ms = tick_ms.max(1);
        Wheel {
            tick_ms,
            current: now_ms / tick_ms,
            heads: vec![NIL; SLOTS].into_boxed_slice(),
            occupied: [0; WORDS],
            nodes: Slab::new(),
            due: Vec::new(),
        }
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no entry is pending.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Schedules `payload` to expire at `at_ms` (rounded up to the next tick; a deadline in
    /// the past expires on the next [`advance`](Self::advance)).
    pub fn insert(&mut self, at_ms: u64, payload: T) -> TimerKey {
        let tick = at_ms.div_ceil(self.tick_ms).max(self.current);
        let slot = (tick as usize) & (SLOTS - 1);
        let next = self.heads[slot];
        let key = self.nodes.insert(Node {
            tick,
            payload,
            prev: NIL,
            next,
        });
        if next != NIL {
            self.nodes[next].prev = key;
        }
        self.heads[slot] = key;
        self.occupied[slot / 64] |= 1 << (slot % 64);
        TimerKey(key)
    }

    /// Removes an entry before it expires and returns its payload; `None` if it already
    /// expired or was cancelled.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        if !self.nodes.contains(key.0) {
            return None;
        }
        self.unlink(key.0);
        Some(self.nodes.remove(key.0).payload)
    }

    fn unlink(&mut self, key: usize) {
        let (prev, next, tick) = {
            let n = &self.nodes[key];
            (n.prev, n.next, n.tick)
        };
        let slot = (tick as usize) & (SLOTS - 1);
        if prev == NIL {
            self.heads[slot] = next;
            if next == NIL {
                self.occupied[slot / 64] &= !(1 << (slot % 64));
            }
        } else {
            self.nodes[prev].next = next;
        }
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    /// Expires every entry due at or before `now_ms`, handing each payload to `fire`.
    /// Entries inserted by `fire` itself are not visited in the same call.
    pub fn advance(&mut self, now_ms: u64, mut fire: impl FnMut(T)) {
        let target = now_ms / self.tick_ms;
        if target < self.current {
            return;
        }
        // One full rotation visits every bucket, so a long sleep costs at most SLOTS steps.
        let steps = (target - self.current + 1).min(SLOTS as u64);
        let mut due = std::mem::take(&mut self.due);
        for i in 0..steps {
            let slot = ((self.current + i) as usize) & (SLOTS - 1);
            if self.occupied[slot / 64] & (1 << (slot % 64)) == 0 {
                continue;
            }
            let mut key = self.heads[slot];
            while key != NIL {
                let next = self.nodes[key].next;
                if self.nodes[key].tick <= target {
                    due.push(key);
                }
                key = next;
            }
        }
        self.current = target + 1;
        for &key in &due {
            self.unlink(key);
            fire(self.nodes.remove(key).payload);
        }
        due.clear();
        self.due = due;
    }

    /// Milliseconds from `now_ms` until the next non-empty bucket comes due (`Some(0)` when
    /// one is already due), or `None` when the wheel is empty. It may wake the loop early for
    /// an entry whose round has not come yet; never late.
    pub fn next_timeout(&self, now_ms: u64) -> Option<u64> {
        if self.nodes.is_empty() {
            return None;
        }
        let start = (self.current as usize) & (SLOTS - 1);
        let ahead = self.first_occupied_from(start)?;
        let due_tick = self.current + ahead as u64;
        Some((due_tick * self.tick_ms).saturating_sub(now_ms))
    }

    /// Distance (in buckets) from `start` to the first occupied bucket, wrapping around.
    fn first_occupied_from(&self, start: usize) -> Option<usize> {
        for step in 0..=WORDS {
            let word_index = (start / 64 + step) % WORDS;
            let mut word = self.occupied[word_index];
            if step == 0 {
                word &= !0u64 << (start % 64);
            } else if step == WORDS {
                word &= (1u64 << (start % 64)).wrapping_sub(1);
            }
            if word != 0 {
                let slot = word_index * 64 + word.trailing_zeros() as usize;
                return Some((slot + SLOTS - start) % SLOTS);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(w: &mut Wheel<u32>, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        w.advance(now, |p| out.push(p));
        out.sort();
        out
    }

    #[test]
    fn fires_at_deadline_not_before() {
        let mut w = Wheel::new(10, 0);
        w.insert(100, 1);
        w.insert(55, 2);
        assert_eq!(fired(&mut w, 50), Vec::<u32>::new());
        assert_eq!(fired(&mut w, 60), vec![2]);
        assert_eq!(fired(&mut w, 99), Vec::<u32>::new());
        assert_eq!(fired(&mut w, 100), vec![1]);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_removes_and_is_idempotent() {
        let mut w = Wheel::new(10, 0);
        let a = w.insert(100, 1);
        let b = w.insert(100, 2);
        let c = w.insert(100, 3);
        assert_eq!(w.cancel(b), Some(2));
        assert_eq!(w.cancel(b), None);
        assert_eq!(fired(&mut w, 200), vec![1, 3]);
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.cancel(c), None);
    }

    #[test]
    fn entries_beyond_one_rotation_wait_their_round() {
        let mut w = Wheel::new(1, 0);
        let far = SLOTS as u64 * 3 + 7;
        w.insert(far, 9);
        w.insert(7, 1);
        for t in 0..far {
            let f = fired(&mut w, t);
            if t == 7 {
                assert_eq!(f, vec![1]);
            } else {
                assert!(f.is_empty(), "fired early at {t}");
            }
        }
        assert_eq!(fired(&mut w, far), vec![9]);
    }

    #[test]
    fn long_sleep_expires_everything_due() {
        let mut w = Wheel::new(10, 0);
        for i in 0..1000u32 {
            w.insert(u64::from(i) * 37, i);
        }
        let f = fired(&mut w, 1_000_000);
        assert_eq!(f.len(), 1000);
    }

    #[test]
    fn past_deadline_fires_on_next_advance() {
        let mut w = Wheel::new(10, 1000);
        w.insert(5, 1);
        assert_eq!(w.next_timeout(1000), Some(0));
        assert_eq!(fired(&mut w, 1000), vec![1]);
    }

    #[test]
    fn next_timeout_points_at_first_bucket() {
        let mut w: Wheel<u32> = Wheel::new(10, 0);
        assert_eq!(w.next_timeout(0), None);
        w.insert(250, 1);
        w.insert(3000, 2);
        assert_eq!(w.next_timeout(0), Some(250));
        assert_eq!(w.next_timeout(100), Some(150));
        let _ = fired(&mut w, 250);
        assert_eq!(w.next_timeout(250), Some(2750));
    }

    #[test]
    fn next_timeout_wraps_around_the_bitmap() {
        let mut w: Wheel<u32> = Wheel::new(1, 500);
        // Slot index below the current slot: reached by wrapping.
        w.insert(500 + SLOTS as u64 - 20, 1);
        assert_eq!(w.next_timeout(500), Some(SLOTS as u64 - 20));
    }

    #[test]
    fn inserting_while_firing_is_not_visited() {
        let mut w = Wheel::new(10, 0);
        w.insert(10, 1u32);
        let mut seen = Vec::new();
        let mut later = Vec::new();
        w.advance(10, |p| {
            seen.push(p);
            later.push(p + 1);
        });
        for p in later {
            w.insert(10, p);
        }
        assert_eq!(seen, vec![1]);
        assert_eq!(fired(&mut w, 20), vec![2]);
    }

    proptest::proptest! {
        #[test]
        fn every_entry_fires_exactly_once_on_time(
            deadlines in proptest::collection::vec(0u64..20_000, 1..200),
            cancel_mask in proptest::collection::vec(proptest::bool::ANY, 200),
        ) {
            let mut w = Wheel::new(7, 0);
            let keys: Vec<_> = deadlines.iter().enumerate()
                .map(|(i, &d)| w.insert(d, i)).collect();
            let mut live = vec![true; deadlines.len()];
            for (i, k) in keys.iter().enumerate() {
                if cancel_mask[i] {
                    proptest::prop_assert!(w.cancel(*k).is_some());
                    live[i] = false;
                }
            }
            let mut seen = vec![false; deadlines.len()];
            let mut now = 0;
            while now <= 21_000 {
                w.advance(now, |i| {
                    assert!(!seen[i]);
                    assert!(live[i]);
                    // never early; late by less than one tick
                    assert!(deadlines[i] <= now && now < deadlines[i] + 7 + 13);
                    seen[i] = true;
                });
                now += 13;
            }
            proptest::prop_assert_eq!(seen, live);
        }
    }
}
