//! Log segment files: names, creation, and the sans-I/O scan of one segment's bytes.
//!
//! Responsible for: the `NNNNNNNNNNNNNNNNNNNN.log` naming scheme, creating a segment
//! durably (header written, file synced, directory synced), and classifying a segment's bytes
//! into valid records plus a clean, torn or corrupt end ([`recover_segment_bytes`], which
//! fuzzers call), in the frame format its header names (v1 segments are still read). Not responsible for: deciding what to do about damage (`recovery`), or
//! appending records (`writer`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::fsync::Syncer;
use crate::header::{self, FileHeader, HeaderError, HEADER_LEN, SEGMENT_MAGIC};
use crate::record::{Damage, Next, Reader, Record};

/// Default segment size: a new segment starts once the current one passes 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// File name of segment `n`: 20 zero-padded digits so that names sort by number.
pub fn file_name(n: u64) -> String {
    format!("{n:020}.log")
}

/// The segment number of a file name, if it is a segment's.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Path of segment `n` in `dir`.
pub fn path(dir: &Path, n: u64) -> PathBuf {
    dir.join(file_name(n))
}

/// Creates segment `n` durably: header written and synced, then the directory synced so
/// that the new name survives a crash. Fails if the file exists.
pub fn create(dir: &Path, n: u64, syncer: &dyn Syncer) -> io::Result<File> {
    let p = path(dir, n);
    let mut f = OpenOptions::new()
        .create_new(true)
        .read(true)
        .append(true)
        .open(&p)?;
    f.write_all(&header::encode(SEGMENT_MAGIC, n))?;
    syncer.sync_data(&f)?;
    syncer.sync_dir(dir)?;
    Ok(f)
}

/// How a segment's bytes end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Ends exactly after the last valid record.
    Clean,
    /// A torn write at `offset` (see [`crate::record::Reader`] for the rule).
    Torn {
        /// File offset where valid data ends.
        offset: u64,
        /// What was wrong at that offset.
        damage: Damage,
    },
    /// Damage at `offset` that a torn write cannot explain: corruption.
    Corrupt {
        /// File offset of the damaged record.
        offset: u64,
        /// What was wrong at that offset.
        damage: Damage,
    },
    /// The header is missing or invalid, so no record could be read.
    BadHeader(HeaderError),
}

/// The result of scanning one segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// The header, when valid.
    pub header: Option<FileHeader>,
    /// Number of valid records.
    pub records: u64,
    /// File offset just past the last valid record (the header length when there is none,
    /// 0 when the header itself is bad).
    pub valid_end: u64,
    /// How the bytes end.
    pub end: SegmentEnd,
}

/// Scans a whole segment file's bytes, calling `each` on every valid record in order.
pub fn scan(bytes: &[u8], mut each: impl FnMut(Record<'_>)) -> SegmentScan {
    let header = match header::decode(SEGMENT_MAGIC, bytes) {
        Ok(h) => h,
        Err(e) => {
            return SegmentScan {
                header: None,
                records: 0,
                valid_end: 0,
                end: SegmentEnd::BadHeader(e),
            }
        }
    };
    let mut reader = Reader::with_format(header.format(), bytes, HEADER_LEN);
    let mut records = 0u64;
    let end = loop {
        match reader.next_record() {
            Next::Record(r) => {
                records += 1;
                each(r);
            }
            Next::End => break SegmentEnd::Clean,
            Next::Torn { offset, damage } => {
                break SegmentEnd::Torn {
                    offset: offset as u64,
                    damage,
                }
            }
            Next::Corrupt { offset, damage } => {
                break SegmentEnd::Corrupt {
                    offset: offset as u64,
                    damage,
                }
            }
        }
    };
    SegmentScan {
        header: Some(header),
        records,
        valid_end: reader.position() as u64,
        end,
    }
}

/// Scans a segment's bytes without looking at the records: the entry point for fuzzers and
/// for `halyard check`.
pub fn recover_segment_bytes(bytes: &[u8]) -> SegmentScan {
    scan(bytes, |_| {})
}
