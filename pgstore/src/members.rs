//! The nodes alive: this node's heartbeat, and its view of which others still beat.
//!
//! Responsible for: this node's id, marking it alive in `halyard_nodes` every [`BEAT`]
//! and reading back the nodes seen within [`GONE_AFTER`], and answering whether a node is
//! gone (a stream it ran can then be ended at once instead of after a silence). Not
//! responsible for: the thread that beats (`upkeep`), the shared request rates (they mark
//! the same rows, `store`) or what to do with a gone node's work (the API's stream
//! follower).
//!
//! A node is gone when it was missing from the last two views read at least a [`BEAT`]
//! apart. Two, because `halyard_nodes` is unlogged: a database restart empties it, and the
//! live nodes are back in it one beat later. With the database unreachable the views go
//! stale and no node is taken for gone.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::PgStore;

/// How often a node marks itself alive.
pub const BEAT: Duration = Duration::from_secs(1);

/// A node not seen for this long is missing from a view.
pub const GONE_AFTER: Duration = Duration::from_secs(5);

/// Marks this node alive and reads who else is (`$2`: [`GONE_AFTER`] in ms). The select
/// sees the table as it was before the insert, which is why this node is never asked about.
const BEAT_SQL: &str = "WITH me AS (INSERT INTO halyard_nodes (id, seen_at) \
     VALUES ($1, clock_timestamp()) ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at) \
     SELECT id FROM halyard_nodes WHERE seen_at > clock_timestamp() - $2::float8 * interval '1 millisecond'";

/// Rows of nodes not seen for a day are dropped once, at start: each start makes one.
pub(crate) const FORGET_SQL: &str =
    "DELETE FROM halyard_nodes WHERE seen_at < clock_timestamp() - interval '1 day'";

/// This node and its last two views of the others.
#[derive(Debug)]
pub struct Members {
    id: String,
    views: Mutex<Views>,
}

#[derive(Debug, Default)]
struct Views {
    last: Option<(HashSet<String>, Instant)>,
    before: Option<HashSet<String>>,
}

impl Members {
    /// A node with a new id and no view yet.
    pub fn new() -> Members {
        Members {
            id: halyard_storage::ids::new_id("node_"),
            views: Mutex::default(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records a view read at `at`.
    pub fn saw(&self, alive: HashSet<String>, at: Instant) {
        let mut v = self.views.lock().unwrap_or_else(|p| p.into_inner());
        v.before = v.last.take().map(|(set, _)| set);
        v.last = Some((alive, at));
    }

    /// Whether `node` was missing from the last two views, the last one read within
    /// [`GONE_AFTER`] of `now`.
    pub fn is_gone(&self, node: &str, now: Instant) -> bool {
        if node.is_empty() || node == self.id {
            return false;
        }
        let v = self.views.lock().unwrap_or_else(|p| p.into_inner());
        let (Some((last, at)), Some(before)) = (&v.last, &v.before) else {
            return false;
        };
        now.saturating_duration_since(*at) <= GONE_AFTER
            && !last.contains(node)
            && !before.contains(node)
    }
}

impl Default for Members {
    fn default() -> Self {
        Members::new()
    }
}

/// Marks this node alive and reads the view of the others (the upkeep thread calls it
/// every [`BEAT`]).
pub(crate) fn beat(store: &PgStore) -> Result<(), String> {
    let mut lease = store.pool.get().map_err(|e| e.to_string())?;
    let gone_ms = GONE_AFTER.as_millis() as f64;
    let rows = lease
        .client()
        .query(BEAT_SQL, &[&store.members.id(), &gone_ms])
        .map_err(|e| crate::explain(&e))?;
    let alive = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    store.members.saw(alive, Instant::now());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_node_is_gone_once_missing_from_two_fresh_views() {
        let m = Members::new();
        let t0 = Instant::now();
        // No view yet, then only one: nothing can be told.
        assert!(!m.is_gone("node_a", t0));
        m.saw(set(&[]), t0);
        assert!(!m.is_gone("node_a", t0));
        // Back in the next view (as after a database restart emptied the table).
        m.saw(set(&["node_a"]), t0 + BEAT);
        assert!(!m.is_gone("node_a", t0 + BEAT));
        m.saw(set(&[]), t0 + 2 * BEAT);
        assert!(!m.is_gone("node_a", t0 + 2 * BEAT));
        m.saw(set(&[]), t0 + 3 * BEAT);
        assert!(m.is_gone("node_a", t0 + 3 * BEAT));
        // Stale views (database unreachable) tell nothing.
        assert!(!m.is_gone("node_a", t0 + 3 * BEAT + GONE_AFTER * 2));
        // This node and unrecorded nodes are never gone.
        assert!(!m.is_gone(m.id(), t0 + 3 * BEAT));
        assert!(!m.is_gone("", t0 + 3 * BEAT));
    }
}
