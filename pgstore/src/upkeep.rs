//! A node's periodic work against the database, on one thread.
//!
//! Responsible for: calling, on a [`TICK`]: the renewal of the read leases still read
//! (`leases`); every [`BEAT`]: this node's heartbeat (`members`); every minute: dropping
//! what ended (full buckets of `halyard_cells`, old leases, the acknowledgements of gone
//! nodes); at start: forgetting nodes
//! not seen for a day. A failed step is tried again at its next turn. Not responsible for:
//! what each step does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::members::{self, BEAT};
use crate::sql;
use crate::store::PgStore;

/// How often leases are looked at.
pub const TICK: Duration = Duration::from_millis(250);

/// Ticks between two sweeps of what ended.
const SWEEP_EVERY: u64 = 240;

/// Starts the thread; it ends once `stop` is set or the store is dropped.
pub fn spawn(
    store: Weak<PgStore>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("halyard-pg-upkeep".into())
        .spawn(move || {
            let _ = store.upgrade().map(|s| execute(&s, members::FORGET_SQL));
            let beat_every = (BEAT.as_millis() / TICK.as_millis()) as u64;
            let mut ticks = 0u64;
            while !stop.load(Ordering::Acquire) {
                let Some(s) = store.upgrade() else { return };
                renew(&s);
                if ticks.is_multiple_of(beat_every) {
                    // A failed beat leaves the views to go stale (see `members`).
                    let _ = members::beat(&s);
                }
                if ticks.is_multiple_of(SWEEP_EVERY) {
                    let _ = execute(&s, sql::FORGET_CELLS);
                    let _ = execute(&s, sql::FORGET_LEASES);
                    let now = Instant::now();
                    s.acks.forget_gone(|node| s.members.is_gone(node, now));
                }
                ticks += 1;
                drop(s);
                sleep_unless(&stop, TICK);
            }
        })
}

/// Renews the leases still read, unless this node cannot hear of writes.
fn renew(store: &PgStore) {
    if !store.reach.is_up() {
        return;
    }
    for tenant in store.leases.to_renew(Instant::now()) {
        let _ = store.grant(&tenant);
    }
}

fn execute(store: &PgStore, statement: &str) -> Result<u64, String> {
    let mut lease = store.pool.get().map_err(|e| e.to_string())?;
    lease
        .client()
        .execute(statement, &[])
        .map_err(|e| crate::explain(&e))
}

/// Sleeps `d`, waking early once `stop` is set (so shutdown does not wait a whole tick).
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Acquire) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}
