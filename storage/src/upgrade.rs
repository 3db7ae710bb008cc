//! The on-open upgrade of a data directory from format v1 to v2.
//!
//! Responsible for: once recovery has replayed a directory in which a live file (the
//! snapshot it loaded or a segment it replayed) is v1, writing the recovered state as a v2
//! snapshot covering the last segment, then deleting every segment that snapshot covers and
//! every older snapshot, so that no v1 file is left and the writer starts a fresh v2
//! segment; saying what it did ([`Upgrade`]).
//! Not responsible for: reading v1 (`record_v1`, `recovery`), the snapshot file itself
//! (`snapshot`), or deciding that an upgrade is needed (`recovery`).
//!
//! Why a snapshot and not segments rewritten one by one: after replay the whole state is in
//! memory, and writing it as a snapshot reuses the compaction's crash-safe sequence (write
//! a temporary file, sync, rename, sync the directory, then delete what it covers). A crash
//! before the rename leaves the v1 files in charge and the next open upgrades again; a crash
//! after it leaves covered v1 files that recovery deletes as compaction leftovers. The v2
//! writer never appends to a v1 segment: it starts segment N + 1.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{io_at, OpenError};
use crate::fsync::Syncer;
use crate::recovery;
use crate::segment;
use crate::snapshot;
use crate::state::State;

/// What an upgrade did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The v2 snapshot written.
    pub snapshot: PathBuf,
    /// Its entry records.
    pub entries: u64,
    /// The files it replaced (v1 segments and snapshots, and any other file it covers).
    pub removed: Vec<PathBuf>,
}

impl fmt::Display for Upgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "upgraded format v1 to v2: wrote {} ({} entries), removed {} files",
            self.snapshot.display(),
            self.entries,
            self.removed.len()
        )
    }
}

/// Writes `state` (everything replayed from `dir`) as v2 snapshot `last` and deletes the
/// segments `<= last` and the snapshots `< last`. `last` is the last segment left after
/// recovery (or the covered number of the snapshot if no segment is left).
pub(crate) fn to_v2(
    dir: &Path,
    last: u64,
    state: &State,
    syncer: &dyn Syncer,
) -> Result<Upgrade, OpenError> {
    let written = snapshot::write_state(dir, last, state, syncer)?;
    let listing = recovery::list(dir)?;
    let doomed: Vec<PathBuf> = listing
        .segments
        .iter()
        .filter(|&&n| n <= last)
        .map(|&n| segment::path(dir, n))
        .chain(
            listing
                .snapshots
                .iter()
                .filter(|&&n| n < last)
                .map(|&n| snapshot::path(dir, n)),
        )
        .collect();
    for p in &doomed {
        fs::remove_file(p).map_err(io_at(p))?;
    }
    syncer.sync_dir(dir).map_err(io_at(dir))?;
    Ok(Upgrade {
        snapshot: snapshot::path(dir, last),
        entries: written.entries,
        removed: doomed,
    })
}
