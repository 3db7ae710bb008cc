//! Checks of one file's bytes before a backup copies it or a restore uses it (sans-I/O).
//!
//! Responsible for: saying whether a snapshot is complete and intact (header, every record's
//! checksums, the end record and its count), and how much of a segment is whole records
//! (header with the expected number, every record's checksums, and for the live segment
//! where a torn tail starts). Not responsible for: what the records mean (a restore replays
//! the result with `recovery` before using it), or files.

use std::fmt;

use crate::codec::Decoder;
use crate::header::{self, HeaderError, HEADER_LEN, SNAPSHOT_MAGIC};
use crate::record::{Damage, Next, Reader, RecordType};
use crate::segment::{self, SegmentEnd};

/// Why a file's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flaw {
    /// The file header is invalid.
    Header(HeaderError),
    /// The header names another number than the file name.
    WrongNumber {
        /// The number in the name.
        expected: u64,
        /// The number in the header.
        found: u64,
    },
    /// A damaged record at a byte offset.
    Record(u64, Damage),
    /// A record of a type the file cannot hold, at a byte offset.
    WrongType(u64, RecordType),
    /// A snapshot without its end record, or whose end record's count is wrong.
    Incomplete,
}

impl fmt::Display for Flaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flaw::Header(e) => write!(f, "{e}"),
            Flaw::WrongNumber { expected, found } => {
                write!(f, "header says {found}, the name says {expected}")
            }
            Flaw::Record(offset, d) => write!(f, "damaged record at offset {offset}: {d}"),
            Flaw::WrongType(offset, t) => {
                write!(f, "record of type {} at offset {offset}", t.tag())
            }
            Flaw::Incomplete => write!(f, "snapshot has no valid end record"),
        }
    }
}

/// Checks a whole snapshot file `n`; returns its entry count.
pub fn snapshot(bytes: &[u8], n: u64) -> Result<u64, Flaw> {
    let head = header::decode(SNAPSHOT_MAGIC, bytes).map_err(Flaw::Header)?;
    if head.number != n {
        return Err(Flaw::WrongNumber {
            expected: n,
            found: head.number,
        });
    }
    let mut reader = Reader::with_format(head.format(), bytes, HEADER_LEN);
    let mut entries = 0u64;
    loop {
        match reader.next_record() {
            Next::Record(r) if r.kind == RecordType::SnapshotEntry => entries += 1,
            Next::Record(r) if r.kind == RecordType::SnapshotEnd => {
                let count = Decoder::new(r.payload).varint().ok();
                if count != Some(entries) || r.end() != bytes.len() {
                    return Err(Flaw::Incomplete);
                }
                return Ok(entries);
            }
            Next::Record(r) => return Err(Flaw::WrongType(r.offset as u64, r.kind)),
            Next::End => return Err(Flaw::Incomplete),
            Next::Torn { offset, damage } | Next::Corrupt { offset, damage } => {
                return Err(Flaw::Record(offset as u64, damage))
            }
        }
    }
}

/// What to keep of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The first `len` bytes: the header and whole records.
    Prefix(u64),
    /// Nothing: the live segment's header is not written yet (it is being created), so
    /// nothing in it was ever acknowledged.
    Nothing,
}

/// Checks segment `n`'s bytes. A closed segment (`live == false`) must end exactly after
/// its last record. The live segment may end in a torn tail, a record being written as it
/// was read: what precedes it is kept. Corruption is refused either way.
pub fn segment(bytes: &[u8], n: u64, live: bool) -> Result<Keep, Flaw> {
    let mut kinds_ok = Ok(());
    let scan = segment::scan(bytes, |r| {
        if r.kind != RecordType::Txn && kinds_ok.is_ok() {
            kinds_ok = Err(Flaw::WrongType(r.offset as u64, r.kind));
        }
    });
    if let Some(h) = scan.header {
        if h.number != n {
            return Err(Flaw::WrongNumber {
                expected: n,
                found: h.number,
            });
        }
    }
    kinds_ok?;
    match scan.end {
        SegmentEnd::Clean => Ok(Keep::Prefix(scan.valid_end)),
        SegmentEnd::Torn { .. } if live => Ok(Keep::Prefix(scan.valid_end)),
        SegmentEnd::BadHeader(HeaderError::Incomplete) if live => Ok(Keep::Nothing),
        SegmentEnd::Torn { offset, damage } | SegmentEnd::Corrupt { offset, damage } => {
            Err(Flaw::Record(offset, damage))
        }
        SegmentEnd::BadHeader(e) => Err(Flaw::Header(e)),
    }
}
