//! Concurrent active sessions per tenant (CONVENTIONS section 5).
//!
//! Responsible for: counting, per tenant, the sessions that are active and were used in
//! the last 30 minutes, and reserving a slot atomically with the check, so two creations
//! at once cannot both take the last slot. Idle sessions leave the count lazily: a create
//! at the limit first drops entries idle for 30 minutes from the front of an ordered set,
//! with no scan of all sessions. Not responsible for: storing sessions.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// Sessions idle longer than this do not count.
pub const IDLE_MS: u64 = 30 * 60 * 1000;
const SHARDS: usize = 16;

#[derive(Debug, Default)]
struct TenantSessions {
    /// (last activity ms, session id), oldest first.
    by_activity: BTreeSet<(u64, String)>,
    /// session id → last activity ms.
    last: HashMap<String, u64>,
}

impl TenantSessions {
    fn remove(&mut self, id: &str) {
        if let Some(t) = self.last.remove(id) {
            self.by_activity.remove(&(t, id.to_string()));
        }
    }

    fn touch(&mut self, id: &str, now: u64) {
        self.remove(id);
        self.by_activity.insert((now, id.to_string()));
        self.last.insert(id.to_string(), now);
    }

    fn drop_idle(&mut self, now: u64) {
        while let Some((t, id)) = self.by_activity.first().cloned() {
            if t + IDLE_MS > now {
                break;
            }
            self.by_activity.pop_first();
            self.last.remove(&id);
        }
    }
}

/// The per-tenant counts.
#[derive(Debug)]
pub struct SessionSlots {
    shards: Vec<Mutex<HashMap<String, TenantSessions>>>,
}

impl Default for SessionSlots {
    fn default() -> Self {
        SessionSlots {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl SessionSlots {
    fn with<R>(
        &self,
        tenant: &str,
        load: impl FnOnce() -> Vec<(String, u64)>,
        f: impl FnOnce(&mut TenantSessions) -> R,
    ) -> R {
        let shard = tenant
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31) + usize::from(b));
        let mut map = self.shards[shard % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(tenant.to_string()).or_insert_with(|| {
            let mut t = TenantSessions::default();
            for (id, at) in load() {
                t.touch(&id, at);
            }
            t
        });
        f(entry)
    }

    /// Reserves a slot for new session `id` if fewer than `max` count; `load` lists the
    /// tenant's active sessions with their last activity, the first time it is seen.
    /// `Err(ms)`: full; the oldest session goes idle in `ms` milliseconds.
    pub fn reserve(
        &self,
        tenant: &str,
        id: &str,
        max: u32,
        now: u64,
        load: impl FnOnce() -> Vec<(String, u64)>,
    ) -> Result<(), u64> {
        self.with(tenant, load, |t| {
            if t.last.len() >= max as usize {
                t.drop_idle(now);
            }
            if t.last.len() >= max as usize {
                let oldest = t.by_activity.first().map_or(now, |(at, _)| *at);
                return Err((oldest + IDLE_MS).saturating_sub(now).max(1));
            }
            t.touch(id, now);
            Ok(())
        })
    }

    /// Session `id` was used at `now` (it counts again if it had gone idle).
    pub fn touch(&self, tenant: &str, id: &str, now: u64) {
        self.with(tenant, Vec::new, |t| t.touch(id, now));
    }

    /// Session `id` ended (or its creation failed): its slot is free.
    pub fn release(&self, tenant: &str, id: &str) {
        self.with(tenant, Vec::new, |t| t.remove(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_release_and_idle_expiry() {
        let s = SessionSlots::default();
        assert!(s.reserve("t", "a", 2, 0, Vec::new).is_ok());
        assert!(s.reserve("t", "b", 2, 1, Vec::new).is_ok());
        assert_eq!(s.reserve("t", "c", 2, 2, Vec::new), Err(IDLE_MS - 2));
        s.release("t", "a");
        assert!(s.reserve("t", "c", 2, 3, Vec::new).is_ok());
        assert!(s.reserve("t", "d", 2, 4, Vec::new).is_err());
        // b and c go idle; b is used again and keeps counting.
        s.touch("t", "b", IDLE_MS);
        assert!(s.reserve("t", "d", 2, IDLE_MS + 10, Vec::new).is_ok());
        assert!(s.reserve("t", "e", 2, IDLE_MS + 11, Vec::new).is_err());
        // Other tenants are separate; a first sight loads the stored sessions.
        assert!(s
            .reserve("u", "x", 1, 5, || vec![("old".into(), 4)])
            .is_err());
    }
}
