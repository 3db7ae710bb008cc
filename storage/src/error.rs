//! Errors of the store's write path and of opening a data directory.
//!
//! Responsible for: [`StoreError`] (a commit or its completion failed) and [`OpenError`]
//! (a data directory could not be opened), with messages fit for an operator.
//! Not responsible for: record-level damage descriptions (`record::Damage`) or decode errors
//! (`codec::DecodeError`), which these wrap.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::codec::DecodeError;
use crate::header::HeaderError;
use crate::record::Damage;

/// Why a commit was refused or did not become durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness rule was violated (HTTP 409): `what` is taken by another resource.
    Conflict {
        /// The kind of name: `agent name`, `project slug`, `key name`, `secret name`, `email`.
        what: &'static str,
        /// The name that is taken.
        name: String,
    },
    /// A resource the mutation refers to does not exist (HTTP 404).
    NotFound {
        /// The kind of resource.
        what: &'static str,
        /// Its id or name.
        id: String,
    },
    /// The transaction is malformed (a bug in the caller, HTTP 500).
    Invalid(String),
    /// An earlier write or fsync failed; the log accepts nothing more (HTTP 503). The
    /// string says what failed first.
    Poisoned(String),
    /// The store is shutting down.
    Closed,
    /// The database cannot be reached, or answered with an error (HTTP 503); nothing was
    /// applied. The string says what happened.
    Unavailable(String),
    /// A manual compaction failed.
    Compaction(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict { what, name } => write!(f, "{what} already exists: {name}"),
            StoreError::NotFound { what, id } => write!(f, "{what} not found: {id}"),
            StoreError::Invalid(m) => write!(f, "invalid transaction: {m}"),
            StoreError::Poisoned(m) => write!(f, "storage failed and refuses writes: {m}"),
            StoreError::Closed => write!(f, "storage is closed"),
            StoreError::Unavailable(m) => write!(f, "the database is unavailable: {m}"),
            StoreError::Compaction(m) => write!(f, "compaction failed: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Why a data directory could not be opened (or checked).
#[derive(Debug)]
pub enum OpenError {
    /// An I/O error on a path.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// A damaged record that is not a torn tail: in the middle of the log, in a segment
    /// that has a successor, or in a snapshot. Start with `repair` (`halyard check
    /// --repair`) to cut the log at this point.
    Corrupt {
        /// The segment or snapshot file.
        file: PathBuf,
        /// Byte offset of the damaged record in that file.
        offset: u64,
        /// What is wrong.
        damage: Damage,
    },
    /// A file header is invalid.
    BadHeader {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        error: HeaderError,
    },
    /// A checksummed record whose payload does not decode (written by a newer or buggy
    /// version).
    BadPayload {
        /// The file.
        file: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// The decode error.
        error: DecodeError,
    },
    /// A snapshot entry that the state refused (the snapshot is inconsistent).
    Refused {
        /// The file.
        file: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// Why it was refused.
        error: StoreError,
    },
    /// A snapshot file without its end record (it was not written to the end).
    IncompleteSnapshot {
        /// The file.
        file: PathBuf,
    },
    /// Segments are missing between the snapshot and the last segment.
    MissingSegment {
        /// The first missing segment number.
        number: u64,
    },
    /// Another process has the data directory open (it holds `DIR/LOCK`).
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// The process id written in the lock file by its holder, if readable.
        holder: Option<u32>,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            OpenError::Corrupt {
                file,
                offset,
                damage,
            } => write!(
                f,
                "corrupt log: {} at offset {offset}: {damage} (not a torn write at the end of the log; run `halyard check --repair` to cut the log here)",
                file.display()
            ),
            OpenError::BadHeader { file, error } => write!(f, "{}: {error}", file.display()),
            OpenError::BadPayload {
                file,
                offset,
                error,
            } => write!(
                f,
                "undecodable record: {} at offset {offset}: {error}",
                file.display()
            ),
            OpenError::Refused {
                file,
                offset,
                error,
            } => write!(
                f,
                "inconsistent snapshot: {} at offset {offset}: {error}",
                file.display()
            ),
            OpenError::IncompleteSnapshot { file } => {
                write!(f, "{}: snapshot has no end record", file.display())
            }
            OpenError::MissingSegment { number } => {
                write!(f, "log segment {number} is missing")
            }
            // Callers name the directory already ("cannot open the data directory D: ...").
            OpenError::Locked { holder, .. } => {
                write!(f, "in use by another process")?;
                if let Some(pid) = holder {
                    write!(f, " (pid {pid})")?;
                }
                write!(f, "; stop it first, or use another data directory")
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// Attaches a path to an I/O error.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> OpenError {
    let path = path.into();
    move |error| OpenError::Io { path, error }
}
