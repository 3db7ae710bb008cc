//! `halyard check`: verify a data directory offline and say what was found.
//!
//! Responsible for: running recovery into a throwaway state, read-only unless `repair` is
//! set, and summarizing the result ([`CheckReport`], printable with `Display`). Not
//! responsible for: the rules themselves (`recovery`). Must not run while a server has the
//! directory open.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{io_at, OpenError};
use crate::fsync::OsSyncer;
use crate::lock::DirLock;
use crate::recovery::{self, RecoveryMode, RecoveryReport};
use crate::state::State;

/// What `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The directory checked.
    pub dir: PathBuf,
    /// Whether `repair` was asked for.
    pub repair: bool,
    /// What recovery found (and, with `repair`, did).
    pub recovery: RecoveryReport,
    /// Tenants in the recovered state.
    pub tenants: u64,
    /// Projects.
    pub projects: u64,
    /// Sessions.
    pub sessions: u64,
    /// Messages.
    pub messages: u64,
}

impl CheckReport {
    /// True when the directory opens as it is now: no corruption left (a torn tail is
    /// normal after a crash and is cut at open).
    pub fn is_ok(&self) -> bool {
        self.recovery.corruption.is_empty() || self.repair
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match (self.recovery.corruption.is_empty(), self.repair) {
            (true, _) => "OK",
            (false, true) => "REPAIRED",
            (false, false) => "CORRUPT (run with --repair to cut the log at the damage)",
        };
        writeln!(f, "data directory {}: {verdict}", self.dir.display())?;
        write!(f, "{}", self.recovery)?;
        writeln!(
            f,
            "state: {} tenants, {} projects, {} sessions, {} messages",
            self.tenants, self.projects, self.sessions, self.messages
        )
    }
}

/// Verifies `dir`. Without `repair` nothing on disk changes (a torn tail is reported, not
/// cut), and it may run beside a live server: a record being written as it reads shows as
/// a torn tail; v1 files are read and reported, not upgraded. With `repair`, torn tails
/// and corruption are cut, and a v1 directory upgraded to v2, as `Store::open` with
/// `repair` would, under the directory's lock ([`OpenError::Locked`] while a server has it
/// open). `Err` when the directory cannot be read or, with `repair`, is locked.
pub fn check(dir: &Path, repair: bool) -> Result<CheckReport, OpenError> {
    std::fs::metadata(dir).map_err(io_at(dir))?;
    let _lock = if repair {
        Some(DirLock::acquire(dir)?)
    } else {
        None
    };
    let state = State::default();
    let mode = RecoveryMode {
        repair,
        read_only: !repair,
    };
    let rec = recovery::recover(dir, &state, mode, &OsSyncer)?;
    let mut report = CheckReport {
        dir: dir.to_owned(),
        repair,
        recovery: rec.report,
        tenants: 0,
        projects: 0,
        sessions: 0,
        messages: 0,
    };
    state.for_each_tenant(|t| {
        report.tenants += 1;
        for p in t.projects.values() {
            report.projects += 1;
            report.sessions += p.sessions.len() as u64;
            report.messages += p
                .sessions
                .values()
                .map(|s| s.messages.len() as u64)
                .sum::<u64>();
        }
    });
    Ok(report)
}
