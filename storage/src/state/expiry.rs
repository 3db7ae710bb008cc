//! Finding the streams that have outlived their retention.
//!
//! Responsible for: listing expired streams per tenant, one shard's read lock at a time,
//! and giving streams of unknown start time (written by an earlier version) a start time.
//! Not responsible for: deleting them: the caller commits `DeleteStream`s, so that the
//! deletion is in the log and compaction drops the streams' records.

use super::tenant::TenantState;
use super::{Shard, State};

/// The expired streams of one tenant: its id and the stream ids.
pub type ExpiredStreams = (String, Vec<String>);

impl State {
    /// Streams with `created_at + retention_ms <= now_ms`, grouped by tenant. A stream with
    /// `created_at == 0` (unknown) is not expired but stamped with `now_ms` in memory, so
    /// that it expires one retention after this call.
    pub fn expired_streams(&self, now_ms: u64, retention_ms: u64) -> Vec<ExpiredStreams> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let unstamped = {
                let g = shard.read().unwrap_or_else(|p| p.into_inner());
                collect_expired(&g, now_ms, retention_ms, &mut out)
            };
            // The write lock is taken only when there is something to stamp, which is at
            // the first sweep after an upgrade.
            if unstamped {
                let mut g = shard.write().unwrap_or_else(|p| p.into_inner());
                stamp_unknown(&mut g, now_ms);
            }
        }
        out
    }
}

/// Pushes the shard's expired streams to `out`; returns whether some stream had no start
/// time.
fn collect_expired(
    shard: &Shard,
    now_ms: u64,
    retention_ms: u64,
    out: &mut Vec<ExpiredStreams>,
) -> bool {
    let mut unstamped = false;
    for ts in shard.tenants.values() {
        let ids = expired_in(ts, now_ms, retention_ms, &mut unstamped);
        if !ids.is_empty() {
            out.push((ts.tenant.id.clone(), ids));
        }
    }
    unstamped
}

fn expired_in(
    ts: &TenantState,
    now_ms: u64,
    retention_ms: u64,
    unstamped: &mut bool,
) -> Vec<String> {
    let mut ids = Vec::new();
    for (id, st) in &ts.streams {
        if st.created_at == 0 {
            *unstamped = true;
        } else if st.created_at.saturating_add(retention_ms) <= now_ms {
            ids.push(id.clone());
        }
    }
    ids
}

/// Gives every stream of unknown start time the start `now_ms` (at least 1, since 0 would
/// still mean unknown).
fn stamp_unknown(shard: &mut Shard, now_ms: u64) {
    let streams = shard
        .tenants
        .values_mut()
        .flat_map(|t| t.streams.values_mut());
    for st in streams.filter(|st| st.created_at == 0) {
        st.created_at = now_ms.max(1);
    }
}
