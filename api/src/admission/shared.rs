//! Tenant request rates shared by the nodes of a cluster (a store shared by several
//! processes, [`Backend::share_rates`]).
//!
//! Responsible for: counting the requests this node admits per tenant between syncs;
//! capping them, per sync interval Δ, at this node's share `q = ⌈b/N⌉ + ⌈r·Δ⌉` (rate `r`,
//! burst `b`, `N` nodes sharing); and every Δ ([`SYNC_EVERY`]) reporting the counts to the
//! store and moving each tenant's local cell up to the shared bucket's debt. Not responsible
//! for: the local decision (`gcra`) or per-IP and per-session limits (they stay per node).
//!
//! The bound: a node's cell reflects the other nodes' requests up to two intervals late (they
//! report, then it reads), and in an interval each node admits at most `q`; a node also
//! takes the shared debt less one interval (the round trips' jitter must not push its cell
//! past the shared bucket). So across `N` nodes a tenant gets at most
//! `2(N−1)·q + N·⌈r·Δ⌉` requests more than one bucket of its limits would give, repaid by
//! later denials. The sustained rate is exact. With the store unreachable
//! each node falls back to its own bucket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use halyard_storage::{Backend, RateUse, StoreError};

use super::gcra::{Decision, Quota};

/// How often a node shares its counts.
pub const SYNC_EVERY: Duration = Duration::from_millis(20);

/// Syncs without a request after which a tenant is no longer shared by this node.
const IDLE_SYNCS: u32 = 50;

/// One tenant's use of this node since the last sync.
#[derive(Debug)]
struct Use {
    quota: Quota,
    /// Requests per second, for the share of an interval.
    rate: u32,
    admitted: u32,
    /// When the first request counted in `admitted` was admitted.
    first: Option<Instant>,
    idle_syncs: u32,
}

/// The shared rates of one node.
#[derive(Debug)]
pub struct SharedRates {
    node: String,
    tenants: Mutex<HashMap<String, Use>>,
    nodes: AtomicU32,
}

impl SharedRates {
    /// The shared rates of node `node` (an id unique to this process).
    pub fn new(node: String) -> SharedRates {
        SharedRates {
            node,
            tenants: Mutex::new(HashMap::new()),
            nodes: AtomicU32::new(1),
        }
    }

    /// This node's share of an interval: `⌈b/N⌉ + ⌈r·Δ⌉`.
    fn share(&self, q: &Quota, rate: u32) -> u32 {
        let n = self.nodes.load(Ordering::Relaxed).max(1);
        let per_interval = (u64::from(rate) * SYNC_EVERY.as_millis() as u64).div_ceil(1000);
        q.burst.div_ceil(n) + per_interval as u32
    }

    /// Decides with `local` (the node's GCRA take) unless this node used its share of the
    /// interval already; counts what it allows.
    pub fn admit(
        &self,
        tenant: &str,
        quota: Quota,
        rate: u32,
        local: impl FnOnce() -> Decision,
    ) -> Decision {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let share = self.share(&quota, rate);
        // The key is allocated only for a tenant's first request since it went idle.
        if !tenants.contains_key(tenant) {
            let fresh = Use {
                quota,
                rate,
                admitted: 0,
                first: None,
                idle_syncs: 0,
            };
            tenants.insert(tenant.to_owned(), fresh);
        }
        let Some(entry) = tenants.get_mut(tenant) else {
            return local();
        };
        (entry.quota, entry.rate, entry.idle_syncs) = (quota, rate, 0);
        if entry.admitted >= share {
            return Decision::Deny {
                retry_in: SYNC_EVERY.as_nanos() as u64,
            };
        }
        let decision = local();
        if let Decision::Allow { .. } = decision {
            entry.admitted += 1;
            entry.first.get_or_insert_with(Instant::now);
        }
        decision
    }

    /// Reports the counts (each with how long ago its first request was admitted, so that
    /// the shared bucket counts them from then, not from the report) and returns each
    /// shared tenant with its debt (ns); `None` when the store shares no rates.
    pub fn sync(&self, store: &dyn Backend) -> Option<Result<Vec<(String, u64)>, StoreError>> {
        let used = self.drain();
        let share = store.share_rates(&self.node, &used)?;
        Some(share.map(|share| {
            self.nodes.store(share.nodes.max(1), Ordering::Relaxed);
            used.into_iter()
                .map(|u| u.tenant)
                .zip(share.debt_ns)
                .collect()
        }))
    }

    /// The counts since the last sync (zeroed); tenants idle for long are forgotten.
    fn drain(&self) -> Vec<RateUse> {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        tenants.retain(|_, u| u.idle_syncs < IDLE_SYNCS);
        tenants
            .iter_mut()
            .map(|(tenant, u)| {
                u.idle_syncs += 1;
                RateUse {
                    tenant: tenant.clone(),
                    admitted: std::mem::take(&mut u.admitted),
                    interval_ns: u.quota.interval,
                    age_ns: u.first.take().map_or(0, |t| t.elapsed().as_nanos() as u64),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: Decision = Decision::Allow {
        remaining: 0,
        full_in: 0,
    };

    #[test]
    fn a_node_admits_at_most_its_share_of_an_interval() {
        let s = SharedRates::new("n1".into());
        s.nodes.store(2, Ordering::Relaxed);
        let q = Quota::per_second(100, 100);
        // ⌈100/2⌉ + ⌈100 · 0.02⌉ = 52.
        let allowed = (0..200)
            .filter(|_| matches!(s.admit("t", q, 100, || ALLOW), Decision::Allow { .. }))
            .count();
        assert_eq!(allowed, 52);
        let used = s.drain();
        assert_eq!(used.len(), 1);
        assert_eq!((used[0].admitted, used[0].interval_ns), (52, 10_000_000));
        // A new interval, a new share.
        assert!(matches!(
            s.admit("t", q, 100, || ALLOW),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn a_local_denial_is_not_counted_and_idle_tenants_are_forgotten() {
        let s = SharedRates::new("n1".into());
        let q = Quota::per_second(10, 10);
        let deny = || Decision::Deny { retry_in: 1 };
        assert!(matches!(s.admit("t", q, 10, deny), Decision::Deny { .. }));
        assert_eq!(s.drain()[0].admitted, 0);
        for _ in 0..IDLE_SYNCS {
            s.drain();
        }
        assert!(s.drain().is_empty());
    }
}
