//! Loop liveness: proof that every event loop still turns, for a watchdog.
//!
//! Responsible for: [`Liveness::ask`] (a new round number, and a wake-up of every loop) and
//! [`Liveness::answered`] (whether every loop has seen that round). A loop answers at the top
//! of each turn, before it sleeps in `poll`, so an answer proves the loop finished whatever
//! it was doing (a handler, a burst of accepts) and came back for more: a loop stuck in a
//! handler or spinning inside one turn never answers. A thread that only checked a clock
//! would prove nothing about the loops.
//! Not responsible for: how often to ask or what to do when a loop does not answer (the
//! binary's service-manager watchdog decides both).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::server::Shared;

/// The rounds asked and each loop's last answer, kept in the server's shared state.
#[derive(Debug)]
pub(crate) struct Rounds {
    asked: AtomicU64,
    answered: Box<[AtomicU64]>,
}

impl Rounds {
    /// Rounds for `loops` loops; round 0 counts as answered by all.
    pub(crate) fn new(loops: usize) -> Rounds {
        Rounds {
            asked: AtomicU64::new(0),
            answered: (0..loops).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Called by loop `index` at the top of every turn. `last` is the loop's own copy of its
    /// last answer, so a turn with no new round costs one load and no store
    /// (the counter's cache line stays shared among the loops).
    pub(crate) fn answer(&self, index: usize, last: &mut u64) {
        let asked = self.asked.load(Ordering::Acquire);
        if asked != *last {
            *last = asked;
            if let Some(slot) = self.answered.get(index) {
                slot.store(asked, Ordering::Release);
            }
        }
    }

    fn ask(&self) -> u64 {
        self.asked.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn answered(&self, round: u64) -> bool {
        self.answered
            .iter()
            .all(|a| a.load(Ordering::Acquire) >= round)
    }
}

/// One request for proof of life; see [`Liveness::answered`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round(u64);

/// Asks a server's loops to show they still turn, from any thread.
#[derive(Debug, Clone)]
pub struct Liveness {
    shared: Arc<Shared>,
}

impl Liveness {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Liveness { shared }
    }

    /// Starts a new round and wakes every loop, so that an idle loop (asleep in `poll` with
    /// nothing to time) answers at once instead of at its next event. A loop that starts
    /// after this call answers on its first turn.
    pub fn ask(&self) -> Round {
        let round = Round(self.shared.rounds.ask());
        self.shared.wake_all();
        round
    }

    /// Whether every loop has turned since `round` was asked. Loops that have ended (after a
    /// shutdown) never answer again.
    pub fn answered(&self, round: Round) -> bool {
        self.shared.rounds.answered(round.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_answered_only_when_every_loop_has_turned_since() {
        let rounds = Rounds::new(2);
        let mut last = [0u64; 2];
        let r1 = rounds.ask();
        assert!(!rounds.answered(r1));
        rounds.answer(0, &mut last[0]);
        assert!(!rounds.answered(r1), "loop 1 has not turned");
        rounds.answer(1, &mut last[1]);
        assert!(rounds.answered(r1));
        let r2 = rounds.ask();
        assert!(!rounds.answered(r2));
        assert!(rounds.answered(r1), "an old round stays answered");
        rounds.answer(1, &mut last[1]);
        rounds.answer(0, &mut last[0]);
        assert!(rounds.answered(r2));
    }

    #[test]
    fn an_answer_counts_for_every_round_asked_before_it() {
        let rounds = Rounds::new(1);
        let mut last = 0;
        let r1 = rounds.ask();
        let r2 = rounds.ask();
        rounds.answer(0, &mut last);
        assert!(rounds.answered(r1) && rounds.answered(r2));
        // An index past the loops (cannot happen: one slot per loop) is ignored, not a panic.
        let mut fresh = 0;
        rounds.answer(5, &mut fresh);
        assert_eq!(fresh, 2);
    }
}
