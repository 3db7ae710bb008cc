//! The log's health flag: healthy until the first failed write or fsync, then poisoned for
//! good (PostgreSQL's rule after "fsyncgate": after a failed fsync the kernel may have
//! dropped dirty pages, so a retry that succeeds proves nothing).
//!
//! Responsible for: recording the first failure and answering `is_healthy`. Not responsible
//! for: detecting failures (the writer and the compactor report them).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Shared by the store, the writer and the compactor.
#[derive(Debug, Default)]
pub struct Health {
    poisoned: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Health {
    /// True until [`Health::poison`] was called.
    pub fn is_healthy(&self) -> bool {
        !self.poisoned.load(Ordering::Acquire)
    }

    /// Marks the log failed; the first reason is kept, and said once on stderr: writes
    /// answer `503` from now on, and the operator has to learn why.
    pub fn poison(&self, reason: String) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            eprintln!(
                "halyard: storage: {reason}; writes are stopped until a restart \
                 (/health/ready answers 503; `halyard check` verifies the log)"
            );
            *r = Some(reason);
        }
        self.poisoned.store(true, Ordering::Release);
    }

    /// The first failure, if any.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
