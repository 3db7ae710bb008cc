//! Read-your-writes for requests arriving together, at the price of one round trip.
//!
//! Responsible for: letting the requests of one tenant that wait for a catch-up share one:
//! a request needs a fence (a read of the tenant's head, then the catch-up to it) that
//! *started after it arrived*, since only that one sees every write acknowledged before it;
//! while one fence runs, the requests that arrive meanwhile wait and the next fence, run by
//! one of them, serves them all. Not responsible for: the fence itself (`store`).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Condvar, Mutex};

use halyard_storage::StoreError;

/// Stripes of the gates (tenants hashed to one share a lock and a condition variable).
const STRIPES: usize = 64;

/// The fences of one tenant: numbered as they start.
#[derive(Debug, Default, Clone, Copy)]
struct Gate {
    /// The number of the last fence started.
    started: u64,
    /// The highest number of a fence that completed.
    finished: u64,
    running: bool,
}

/// The gates of the tenants of one stripe, and the signal that one of their fences ended.
type Stripe = (Mutex<HashMap<String, Gate>>, Condvar);

/// The gates of every tenant.
pub struct Fences {
    stripes: Box<[Stripe]>,
    hasher: RandomState,
}

impl Default for Fences {
    fn default() -> Self {
        Fences {
            stripes: (0..STRIPES)
                .map(|_| (Mutex::default(), Condvar::new()))
                .collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Fences {
    /// Returns once a fence of `tenant` that started after this call completed: runs
    /// `fence` itself when none is running, else waits for the next one.
    pub fn pass(
        &self,
        tenant: &str,
        fence: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let (lock, cv) = &self.stripes[(self.hasher.hash_one(tenant) as usize) % STRIPES];
        let mut gates = lock.lock().unwrap_or_else(|p| p.into_inner());
        if !gates.contains_key(tenant) {
            gates.insert(tenant.to_owned(), Gate::default());
        }
        let need = gates.get(tenant).map_or(0, |g| g.started) + 1;
        let mut fence = Some(fence);
        loop {
            // Gates are never removed, so the tenant's is there.
            let Some(gate) = gates.get_mut(tenant) else {
                return fence.map_or(Ok(()), |run| run());
            };
            if gate.finished >= need {
                return Ok(());
            }
            if !gate.running {
                if let Some(run) = fence.take() {
                    gate.running = true;
                    gate.started += 1;
                    let mine = gate.started;
                    drop(gates);
                    let result = run();
                    gates = lock.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(gate) = gates.get_mut(tenant) {
                        gate.running = false;
                        if result.is_ok() {
                            gate.finished = gate.finished.max(mine);
                        }
                    }
                    cv.notify_all();
                    result?;
                    continue;
                }
            }
            gates = cv.wait(gates).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn requests_arriving_while_a_fence_runs_share_the_next_one() {
        let fences = Fences::default();
        let runs = AtomicUsize::new(0);
        let arrived = AtomicUsize::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                fences.pass("t", || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    // Runs until the eight below are waiting on it.
                    while arrived.load(Ordering::SeqCst) < 8 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    Ok(())
                })
            });
            while runs.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            // None of them may use the running fence; one more serves them all.
            for _ in 0..8 {
                s.spawn(|| {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    fences
                        .pass("t", || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap()
                });
            }
        });
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_fence_fails_its_runner_and_the_next_request_runs_its_own() {
        let fences = Fences::default();
        let refused = fences.pass("t", || Err(StoreError::Unavailable("down".into())));
        assert!(matches!(refused, Err(StoreError::Unavailable(_))));
        let mut ran = false;
        fences
            .pass("t", || {
                ran = true;
                Ok(())
            })
            .unwrap();
        assert!(ran);
    }
}
