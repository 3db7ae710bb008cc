//! Online backups of a data directory, and their restore.
//!
//! Responsible for: copying a consistent cut of a data directory that a running server may
//! be writing ([`take`]), into a new directory written atomically (`OUT.tmp`, every file
//! fsynced, checked by replaying it, then renamed to `OUT`), with a [`manifest`] of every
//! file's length and CRC32C; and restoring one into an empty data directory after checking
//! every file ([`restore`]). Not responsible for: the formats (`segment`, `snapshot`,
//! `record`), or deciding where backups may go (the binary and the API do).
//!
//! # The cut, beside a running server
//!
//! A backup never takes the directory's `LOCK` (the server holds it) and changes nothing
//! in the directory. It relies on how the store writes:
//!
//! - segments are append-only, and a segment is complete (synced) before its successor is
//!   created, so every segment but the last is immutable;
//! - a snapshot is renamed into place only once written and synced, so one that exists is
//!   complete;
//! - compaction deletes covered segments and older snapshots only after the rename.
//!
//! So the cut is: the newest snapshot, then every segment after it, each closed one whole
//! and the last one up to its last complete record (a record being written as it is read
//! shows as a torn tail, [`crate::record::Reader`], and is left out). A commit is
//! acknowledged only once its record was written, so every commit acknowledged before the
//! backup started is in the cut. Every file is checked before it is copied. When compaction
//! deletes a file between the listing and the read (or a listing raced with a compaction
//! and does not chain), the attempt is thrown away and started again from a fresh listing,
//! which has the newer snapshot; [`BackupOptions::attempts`] bounds the retries. A store
//! taking a backup of itself ([`crate::Store`]) holds its compaction lock instead, so
//! nothing vanishes.
//!
//! Open files stay readable after an unlink, so a file deleted after it was opened is
//! still read whole.

pub mod manifest;
pub mod restore;
pub mod verify;

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::OpenError;
use crate::fsync::{OsSyncer, Syncer};
use crate::recovery;
use crate::segment;
use crate::snapshot;
use manifest::{Entry, Manifest, ManifestError, MANIFEST_FILE};
use verify::{Flaw, Keep};

pub use restore::{restore, RestoreReport};

/// How to take a backup.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Other files of the data directory to copy when present (plain names, such as the
    /// API's `master.key`): the storage layer does not know them, the caller does.
    pub extra_files: Vec<String>,
    /// Attempts before giving up on a directory that keeps changing under the copy.
    pub attempts: u32,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            extra_files: Vec::new(),
            attempts: 8,
        }
    }
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup directory.
    pub path: PathBuf,
    /// Bytes of the files copied (the manifest not counted).
    pub bytes: u64,
    /// Files copied (the manifest not counted).
    pub files: u64,
    /// The snapshot of the cut, if any (the last segment it covers).
    pub snapshot: Option<u64>,
    /// The last segment of the cut (0 when it has none).
    pub last_segment: u64,
    /// When the backup started, ms since the epoch.
    pub created_at_ms: u64,
    /// Attempts it took (more than 1 when compaction raced the copy).
    pub attempts: u32,
}

impl fmt::Display for BackupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self
            .snapshot
            .map_or_else(|| "no snapshot".to_owned(), |n| format!("snapshot {n}"));
        writeln!(
            f,
            "backup {}: {} files, {} bytes ({snap}, segments through {}; {} attempt{})",
            self.path.display(),
            self.files,
            self.bytes,
            self.last_segment,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        )
    }
}

/// Why a backup or a restore failed.
#[derive(Debug)]
pub enum BackupError {
    /// The destination exists already (a backup never overwrites).
    Exists(PathBuf),
    /// The data directory to restore into is not empty.
    NotEmpty(PathBuf),
    /// An I/O error on a path.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// A file failed its checks.
    Damaged {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A file of the cut was deleted while it was copied (compaction).
    Vanished(PathBuf),
    /// The directory's files did not chain (a listing raced with a compaction).
    Unstable(String),
    /// A backup's manifest is missing, damaged or disagrees with the files.
    Manifest {
        /// The manifest file.
        file: PathBuf,
        /// What is wrong.
        error: ManifestError,
    },
    /// The copy did not open as a data directory.
    Open(OpenError),
    /// This backend cannot take backups.
    Unsupported,
}

impl fmt::Display for BackupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackupError::Exists(p) => write!(f, "{} exists already", p.display()),
            BackupError::NotEmpty(p) => write!(f, "{} is not an empty directory", p.display()),
            BackupError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            BackupError::Damaged { file, what } => write!(f, "{}: {what}", file.display()),
            BackupError::Vanished(p) => write!(f, "{} was deleted during the copy", p.display()),
            BackupError::Unstable(why) => {
                write!(f, "the data directory kept changing under the copy: {why}")
            }
            BackupError::Manifest { file, error } => write!(f, "{}: {error}", file.display()),
            BackupError::Open(e) => write!(f, "{e}"),
            BackupError::Unsupported => write!(f, "this storage backend cannot take backups"),
        }
    }
}

impl std::error::Error for BackupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BackupError::Io { error, .. } => Some(error),
            BackupError::Manifest { error, .. } => Some(error),
            BackupError::Open(e) => Some(e),
            _ => None,
        }
    }
}

impl From<OpenError> for BackupError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Io { path, error } => BackupError::Io { path, error },
            other => BackupError::Open(other),
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |error| BackupError::Io {
        path: path.to_owned(),
        error,
    }
}

/// How one attempt ended badly.
enum Failed {
    /// Start again from a fresh listing; the error is the answer if no attempt is left.
    Retry(BackupError),
    /// Give up.
    Stop(BackupError),
}

impl From<BackupError> for Failed {
    fn from(e: BackupError) -> Self {
        Failed::Stop(e)
    }
}

/// `path` with `suffix` appended to its last component (`OUT` → `OUT.tmp`).
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The directory that holds `path` (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether a file name is one a backup or a restore writes.
fn is_ours(name: &str, extra: &[String]) -> bool {
    name == MANIFEST_FILE
        || segment::parse_file_name(name).is_some()
        || snapshot::parse_file_name(name).is_some()
        || extra.iter().any(|e| e == name)
}

/// Makes a fresh, private (0700) temporary directory at `tmp`. A leftover of an earlier
/// attempt or of a crashed run is removed, but only if it holds nothing but files this
/// module writes; anything else there is refused rather than deleted.
pub(crate) fn fresh_dir(tmp: &Path, extra: &[String]) -> Result<(), BackupError> {
    match fs::read_dir(tmp) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(io_err(tmp))?;
                let name = entry.file_name();
                let plain_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
                if !plain_file || !name.to_str().is_some_and(|n| is_ours(n, extra)) {
                    return Err(BackupError::Exists(tmp.to_owned()));
                }
            }
            fs::remove_dir_all(tmp).map_err(io_err(tmp))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(BackupError::Exists(tmp.to_owned()))
        }
        Err(e) => return Err(io_err(tmp)(e)),
    }
    DirBuilder::new()
        .mode(0o700)
        .create(tmp)
        .map_err(io_err(tmp))
}

/// Writes `bytes` as `dir/name` (new file, mode 0600, synced) and returns its entry.
pub(crate) fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<Entry, BackupError> {
    let path = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    f.write_all(bytes).map_err(io_err(&path))?;
    f.sync_all().map_err(io_err(&path))?;
    Ok(Entry {
        name: name.to_owned(),
        len: bytes.len() as u64,
        crc: crc32c::crc32c(bytes),
    })
}

/// Syncs a directory, so that the names created in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    OsSyncer.sync_dir(dir).map_err(io_err(dir))
}

/// Renames the finished temporary directory into place and makes the rename durable.
pub(crate) fn publish(tmp: &Path, to: &Path) -> Result<(), BackupError> {
    fs::rename(tmp, to).map_err(io_err(to))?;
    sync_dir(parent_of(to))
}

/// Replays a finished copy read-only: it must open as it is, with nothing torn, corrupt
/// or refused. A bug in the copy, or damage the per-record checks cannot see (a payload
/// that does not decode), stops here instead of in the operator's restore.
pub(crate) fn replay_check(dir: &Path) -> Result<crate::CheckReport, BackupError> {
    let report = crate::check::check(dir, false)?;
    let r = &report.recovery;
    if r.corruption.is_empty() && r.torn.is_none() && r.rejected == 0 {
        return Ok(report);
    }
    Err(BackupError::Damaged {
        file: dir.to_owned(),
        what: format!("the copy does not replay cleanly: {report}"),
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Backs `data_dir` up into the new directory `out` (see the module doc). `out` must not
/// exist; it appears complete or not at all.
pub fn take(
    data_dir: &Path,
    out: &Path,
    opts: &BackupOptions,
) -> Result<BackupReport, BackupError> {
    fs::metadata(data_dir).map_err(io_err(data_dir))?;
    if fs::symlink_metadata(out).is_ok() {
        return Err(BackupError::Exists(out.to_owned()));
    }
    let created_at_ms = now_ms();
    let tmp = sibling(out, ".tmp");
    let mut attempts = 0;
    let manifest = loop {
        attempts += 1;
        fresh_dir(&tmp, &opts.extra_files)?;
        match copy_cut(data_dir, &tmp, opts, created_at_ms) {
            Ok(m) => break m,
            Err(Failed::Retry(e)) if attempts >= opts.attempts.max(1) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
            Err(Failed::Retry(_)) => continue,
            Err(Failed::Stop(e)) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        }
    };
    if let Err(e) = replay_check(&tmp).and_then(|_| publish(&tmp, out)) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(BackupReport {
        path: out.to_owned(),
        bytes: manifest.bytes(),
        files: manifest.files.len() as u64,
        snapshot: manifest.snapshot,
        last_segment: manifest.last_segment,
        created_at_ms,
        attempts,
    })
}

/// Reads a file of the data directory; one deleted since the listing means "start again".
fn read_live(path: &Path) -> Result<Vec<u8>, Failed> {
    match fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(Failed::Retry(BackupError::Vanished(path.to_owned())))
        }
        Err(e) => Err(Failed::Stop(io_err(path)(e))),
    }
}

fn damaged(path: &Path, flaw: &Flaw) -> BackupError {
    BackupError::Damaged {
        file: path.to_owned(),
        what: flaw.to_string(),
    }
}

/// One attempt: list, check and copy the cut into `tmp`, then write the manifest.
fn copy_cut(
    dir: &Path,
    tmp: &Path,
    opts: &BackupOptions,
    created_at_ms: u64,
) -> Result<Manifest, Failed> {
    let listing = recovery::list(dir).map_err(BackupError::from)?;
    let snap = listing.snapshots.last().copied();
    let base = snap.unwrap_or(0);
    let segs: Vec<u64> = listing
        .segments
        .iter()
        .copied()
        .filter(|&n| n > base)
        .collect();
    if let Some(w) = segs.windows(2).find(|w| w[1] != w[0] + 1) {
        let why = format!("segment {} is missing", w[0] + 1);
        return Err(Failed::Retry(BackupError::Unstable(why)));
    }
    // The history is complete when it starts at a snapshot's successor or at segment 1;
    // otherwise the listing may have missed a snapshot being renamed while the segments it
    // covers were deleted. That is checked again after the copy.
    let anchored = match (snap, segs.first()) {
        (_, None) => true,
        (Some(s), Some(&first)) => first == s + 1,
        (None, Some(&first)) => first == 1,
    };
    let mut m = Manifest {
        created_at_ms,
        snapshot: snap,
        last_segment: 0,
        files: Vec::new(),
    };
    if let Some(n) = snap {
        let name = snapshot::file_name(n);
        let path = dir.join(&name);
        let bytes = read_live(&path)?;
        verify::snapshot(&bytes, n).map_err(|f| damaged(&path, &f))?;
        m.files.push(write_file(tmp, &name, &bytes)?);
    }
    for (i, &n) in segs.iter().enumerate() {
        let live = i + 1 == segs.len();
        let name = segment::file_name(n);
        let path = dir.join(&name);
        let bytes = read_live(&path)?;
        match verify::segment(&bytes, n, live) {
            Ok(Keep::Prefix(len)) => {
                let keep = bytes.get(..len as usize).unwrap_or(&bytes);
                m.files.push(write_file(tmp, &name, keep)?);
                m.last_segment = n;
            }
            Ok(Keep::Nothing) => {}
            // The live segment is read while it is written: look once more before calling
            // it damaged.
            Err(f) if live => return Err(Failed::Retry(damaged(&path, &f))),
            Err(f) => return Err(Failed::Stop(damaged(&path, &f))),
        }
    }
    for name in &opts.extra_files {
        if !manifest::is_plain_name(name) || is_ours(name, &[]) {
            continue;
        }
        let path = dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => m.files.push(write_file(tmp, name, &bytes)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Failed::Stop(io_err(&path)(e))),
        }
    }
    if !anchored {
        let again = recovery::list(dir).map_err(BackupError::from)?;
        if again.snapshots.last().copied() != snap {
            let why = "a compaction ran while the directory was listed".to_owned();
            return Err(Failed::Retry(BackupError::Unstable(why)));
        }
    }
    write_file(tmp, MANIFEST_FILE, m.render().as_bytes())?;
    sync_dir(tmp)?;
    Ok(m)
}
