//! Whether this node is in step with the database, for `/health/ready`.
//!
//! Responsible for: the "database reachable" flag the listener keeps (down when a
//! connection or a catch-up fails, up again after a full catch-up), and the first sign of
//! a replica that refused a committed transaction. Not responsible for: finding out (the
//! listener and the store report here).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The node's view of the database.
#[derive(Debug, Default)]
pub struct Reach {
    down: AtomicBool,
    diverged: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Reach {
    /// The database is reachable and this node has caught up since it last was not.
    pub fn up(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            eprintln!("halyard: the database is reachable again");
        }
    }

    /// The database cannot be reached (or a catch-up failed): `why`.
    pub fn down(&self, why: &str) {
        if !self.down.swap(true, Ordering::AcqRel) {
            eprintln!("halyard: the database is unreachable: {why}");
        }
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_owned());
    }

    /// This node refused a transaction another committed: it no longer has the same
    /// state, and says so until restarted (a restart replays the log afresh).
    pub fn diverged(&self, why: &str) {
        eprintln!("halyard: replica out of step: {why}");
        self.diverged.store(true, Ordering::Release);
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_owned());
    }

    /// Whether the node may serve: reachable and in step.
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Acquire) && !self.diverged.load(Ordering::Acquire)
    }

    /// The last reason given, if any.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
