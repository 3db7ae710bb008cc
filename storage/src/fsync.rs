//! Durability policy and the sync calls themselves.
//!
//! Responsible for: [`FsyncPolicy`] (`always`, `interval:MS`, `never`, parsed from the
//! `--fsync` flag) and the [`Syncer`] seam through which every `fdatasync`/`fsync` of the
//! store goes, so tests can count or fail syncs. Not responsible for: when to sync (the
//! writer decides) or what a failure means (the writer poisons the log).

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// When the writer makes appended records durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// `fdatasync` every batch before its completions fire (the default).
    #[default]
    Always,
    /// Completions fire once the batch is written to the OS; `fdatasync` at most every
    /// interval. A crash may lose the last interval of acknowledged writes.
    Interval(Duration),
    /// Never sync (tests, throwaway data). A crash of the OS may lose anything unsynced.
    Never,
}

/// Why a `--fsync` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseFsyncPolicyError {
    /// Not `always`, `never` or `interval:MS`.
    Unknown(String),
    /// `interval:` followed by something that is not a whole number of milliseconds > 0.
    BadInterval(String),
}

impl fmt::Display for ParseFsyncPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseFsyncPolicyError::Unknown(s) => write!(
                f,
                "unknown fsync policy {s:?}: expected always, never or interval:MS"
            ),
            ParseFsyncPolicyError::BadInterval(s) => write!(
                f,
                "bad fsync interval {s:?}: expected a whole number of milliseconds above 0"
            ),
        }
    }
}

impl std::error::Error for ParseFsyncPolicyError {}

impl FromStr for FsyncPolicy {
    type Err = ParseFsyncPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => {
                let ms = s
                    .strip_prefix("interval:")
                    .ok_or_else(|| ParseFsyncPolicyError::Unknown(s.to_owned()))?;
                match ms.parse::<u64>() {
                    Ok(n) if n > 0 => Ok(FsyncPolicy::Interval(Duration::from_millis(n))),
                    _ => Err(ParseFsyncPolicyError::BadInterval(ms.to_owned())),
                }
            }
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => write!(f, "always"),
            FsyncPolicy::Interval(d) => write!(f, "interval:{}", d.as_millis()),
            FsyncPolicy::Never => write!(f, "never"),
        }
    }
}

/// The sync calls of the store. Every durability point goes through one of these two methods.
pub trait Syncer: Send + Sync + 'static {
    /// Makes a file's data durable (`fdatasync`).
    fn sync_data(&self, file: &File) -> io::Result<()>;
    /// Makes a directory's entries durable (a created, renamed or deleted name).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real syncs: `File::sync_data` (fdatasync on Linux) and `fsync` of the directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsSyncer;

impl Syncer for OsSyncer {
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
