//! Opening a data directory: choose the snapshot, replay the segments after it, cut a torn
//! tail, refuse (or with `repair`, cut) corruption, clean up leftovers of an interrupted
//! compaction, and upgrade a v1 directory to v2.
//!
//! Responsible for: turning the files of a data directory (v1 or v2) into the in-memory
//! state and the position where the writer continues, and the [`RecoveryReport`] that says
//! what was found; starting the upgrade ([`crate::upgrade`]) when a live file is v1 and the
//! directory may be written. Not responsible for: the record format (`record`,
//! `record_v1`, `segment`), the snapshot format (`snapshot`), or offline reporting (`check`
//! wraps this module).
//!
//! Rules. Damage that the segment's reader calls a torn tail ([`crate::record::Reader`] for
//! v2; v1 keeps its old rule, [`crate::record_v1`]), in the last segment, is a torn write:
//! the segment is truncated at the last valid record. Any other damage (damage the reader
//! calls corrupt, any damage in a segment that has a successor, a missing segment, an
//! undecodable payload) is corruption: opening fails with the file and offset, unless
//! `repair` is set, in which case the log is cut at that point (that file truncated, later
//! segments deleted: point-in-time recovery, as RocksDB's default) and the cut is reported.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::codec::DecodeError;
use crate::error::{io_at, OpenError};
use crate::fsync::Syncer;
use crate::header::{self, HeaderError, HEADER_LEN, SEGMENT_MAGIC};
use crate::mutation::Txn;
use crate::record::{Damage, Next, Reader, RecordType};
use crate::segment;
use crate::snapshot;
use crate::state::State;
use crate::upgrade::{self, Upgrade};

/// How to treat the directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryMode {
    /// Cut the log at corruption instead of failing.
    pub repair: bool,
    /// Change nothing on disk (`halyard check` without `--repair`).
    pub read_only: bool,
}

/// The snapshot a recovery started from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotUsed {
    /// Its file.
    pub file: PathBuf,
    /// The last segment number it covers.
    pub covers_through: u64,
    /// Its entry records.
    pub entries: u64,
    /// Its format version.
    pub version: u32,
}

/// A torn tail that was (or, read-only, would be) cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub file: PathBuf,
    /// Where valid data ends.
    pub offset: u64,
    /// Bytes after it.
    pub bytes_cut: u64,
    /// What was found there.
    pub damage: String,
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The snapshot loaded, if any.
    pub snapshot: Option<SnapshotUsed>,
    /// Segments replayed.
    pub segments: u64,
    /// Records replayed from segments.
    pub records: u64,
    /// Bytes of segments read.
    pub bytes: u64,
    /// Records whose transaction the state refused (should be 0; a bug if not).
    pub rejected: u64,
    /// A torn tail.
    pub torn: Option<TornTail>,
    /// Corruption found. Without `repair` opening fails on the first one; `check` lists it.
    pub corruption: Vec<String>,
    /// Cuts made by `repair`.
    pub repairs: Vec<String>,
    /// Leftover files removed (temporary snapshots, segments a snapshot covers).
    pub removed: Vec<PathBuf>,
    /// Live files read in format v1 (the snapshot loaded and segments replayed).
    pub v1_files: u64,
    /// The upgrade to v2 done after replay (never read-only).
    pub upgraded: Option<Upgrade>,
    /// Time taken.
    pub elapsed: Duration,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.snapshot {
            Some(s) => writeln!(
                f,
                "snapshot {} ({} entries, covers segments through {})",
                s.file.display(),
                s.entries,
                s.covers_through
            )?,
            None => writeln!(f, "no snapshot")?,
        }
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "replayed {} records from {} segments ({} bytes) in {:.3}s ({:.0} records/s)",
            self.records,
            self.segments,
            self.bytes,
            secs,
            self.records as f64 / secs
        )?;
        if let Some(t) = &self.torn {
            writeln!(
                f,
                "torn tail: {} at offset {}: {} ({} bytes cut)",
                t.file.display(),
                t.offset,
                t.damage,
                t.bytes_cut
            )?;
        }
        for c in &self.corruption {
            writeln!(f, "corruption: {c}")?;
        }
        for r in &self.repairs {
            writeln!(f, "repaired: {r}")?;
        }
        for p in &self.removed {
            writeln!(f, "removed leftover {}", p.display())?;
        }
        match &self.upgraded {
            Some(u) => writeln!(f, "{u}")?,
            None if self.v1_files > 0 => writeln!(
                f,
                "{} files in format v1 (upgraded to v2 when the store opens them)",
                self.v1_files
            )?,
            None => {}
        }
        if self.rejected > 0 {
            writeln!(f, "warning: {} records refused on replay", self.rejected)?;
        }
        Ok(())
    }
}

/// Where the writer continues after recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub report: RecoveryReport,
    /// The last segment and its valid length, if one can be appended to.
    pub tail: Option<(u64, u64)>,
    /// The number for a new segment if `tail` is `None`.
    pub next_segment: u64,
    /// Bytes in segments replayed other than the tail (not covered by a snapshot).
    pub closed_bytes: u64,
}

/// The files of a data directory.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub segments: Vec<u64>,
    pub snapshots: Vec<u64>,
    pub temps: Vec<PathBuf>,
}

pub(crate) fn list(dir: &Path) -> Result<Listing, OpenError> {
    let mut l = Listing::default();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = segment::parse_file_name(name) {
            l.segments.push(n);
        } else if let Some(n) = snapshot::parse_file_name(name) {
            l.snapshots.push(n);
        } else if snapshot::is_temp_name(name) {
            l.temps.push(entry.path());
        }
    }
    l.segments.sort_unstable();
    l.snapshots.sort_unstable();
    Ok(l)
}

/// What went wrong in one segment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Problem {
    BadHeader(HeaderError),
    WrongNumber(u64),
    Torn(u64, Damage),
    Corrupt(u64, Damage),
    BadPayload(u64, DecodeError),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadHeader(e) => write!(f, "{e}"),
            Problem::WrongNumber(n) => write!(f, "header says segment {n}"),
            Problem::Torn(o, d) => write!(f, "torn at offset {o}: {d}"),
            Problem::Corrupt(o, d) => write!(f, "corrupt at offset {o}: {d}"),
            Problem::BadPayload(o, e) => write!(f, "undecodable record at offset {o}: {e}"),
        }
    }
}

/// The replay of one segment.
pub(crate) struct SegmentReplay {
    pub len: u64,
    /// The header's format version (0 if the header is bad).
    pub version: u32,
    pub records: u64,
    pub rejected: u64,
    /// End of the last good record (0 if the header is bad).
    pub valid_end: u64,
    pub problem: Option<Problem>,
}

/// Reads segment `n` and applies its records to `state`, stopping at the first problem.
pub(crate) fn replay_segment(
    dir: &Path,
    n: u64,
    state: &State,
) -> Result<SegmentReplay, OpenError> {
    let path = segment::path(dir, n);
    let bytes = fs::read(&path).map_err(io_at(&path))?;
    let mut out = SegmentReplay {
        len: bytes.len() as u64,
        version: 0,
        records: 0,
        rejected: 0,
        valid_end: 0,
        problem: None,
    };
    let head = match header::decode(SEGMENT_MAGIC, &bytes) {
        Err(e) => {
            out.problem = Some(Problem::BadHeader(e));
            return Ok(out);
        }
        Ok(h) if h.number != n => {
            out.problem = Some(Problem::WrongNumber(h.number));
            return Ok(out);
        }
        Ok(h) => h,
    };
    out.version = head.version;
    let mut reader = Reader::with_format(head.format(), &bytes, HEADER_LEN);
    out.problem = loop {
        match reader.next_record() {
            Next::Record(r) if r.kind == RecordType::Txn => match Txn::decode(r.payload) {
                Ok(txn) => {
                    out.records += 1;
                    if state.apply(&txn.tenant, txn.mutations).is_err() {
                        out.rejected += 1;
                    }
                }
                Err(e) => break Some(Problem::BadPayload(r.offset as u64, e)),
            },
            Next::Record(r) => {
                let e = DecodeError::BadTag {
                    what: "segment record type",
                    tag: r.kind as u64,
                };
                break Some(Problem::BadPayload(r.offset as u64, e));
            }
            Next::End => break None,
            Next::Torn { offset, damage } => break Some(Problem::Torn(offset as u64, damage)),
            Next::Corrupt { offset, damage } => {
                break Some(Problem::Corrupt(offset as u64, damage))
            }
        }
    };
    out.valid_end = match out.problem {
        Some(Problem::BadPayload(o, _)) => o,
        _ => reader.position() as u64,
    };
    Ok(out)
}

fn remove(path: &Path, report: &mut RecoveryReport) -> Result<(), OpenError> {
    fs::remove_file(path).map_err(io_at(path))?;
    report.removed.push(path.to_owned());
    Ok(())
}

/// Loads the newest valid snapshot; an invalid newest snapshot is corruption.
fn load_snapshot(
    dir: &Path,
    listing: &Listing,
    state: &State,
    mode: RecoveryMode,
    report: &mut RecoveryReport,
) -> Result<Option<u64>, OpenError> {
    for &n in listing.snapshots.iter().rev() {
        let path = snapshot::path(dir, n);
        match snapshot::load(&path, state) {
            Ok(loaded) => {
                if loaded.version < header::FORMAT_VERSION {
                    report.v1_files += 1;
                }
                report.snapshot = Some(SnapshotUsed {
                    file: path,
                    covers_through: n,
                    entries: loaded.entries,
                    version: loaded.version,
                });
                return Ok(Some(n));
            }
            Err(e) if mode.repair || mode.read_only => {
                report.corruption.push(format!("{}: {e}", path.display()));
                // The failed load may have applied part of the snapshot.
                state.clear();
                if mode.repair {
                    report
                        .repairs
                        .push(format!("ignored snapshot {}", path.display()));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Replays `dir` into `state`.
pub(crate) fn recover(
    dir: &Path,
    state: &State,
    mode: RecoveryMode,
    syncer: &dyn Syncer,
) -> Result<Recovered, OpenError> {
    let started = Instant::now();
    let mut report = RecoveryReport::default();
    let listing = list(dir)?;
    let covered = load_snapshot(dir, &listing, state, mode, &mut report)?;
    let base = covered.unwrap_or(0);
    let mut changed_dir = false;
    if !mode.read_only {
        changed_dir = remove_leftovers(dir, &listing, covered, &mut report)?;
    }
    let live: Vec<u64> = listing
        .segments
        .iter()
        .copied()
        .filter(|&n| n > base)
        .collect();
    let mut rec = Recovered {
        report,
        tail: None,
        next_segment: base + 1,
        closed_bytes: 0,
    };
    let mut expected = base + 1;
    for (i, &n) in live.iter().enumerate() {
        let last = i + 1 == live.len();
        if n != expected && !(covered.is_none() && i == 0) {
            let err = OpenError::MissingSegment { number: expected };
            stop_at_corruption(dir, &live[i..], None, err, mode, &mut rec, &mut changed_dir)?;
            break;
        }
        expected = n + 1;
        let r = replay_segment(dir, n, state)?;
        if r.version != 0 && r.version < header::FORMAT_VERSION {
            rec.report.v1_files += 1;
        }
        rec.report.segments += 1;
        rec.report.records += r.records;
        rec.report.rejected += r.rejected;
        rec.report.bytes += r.len;
        rec.next_segment = n + 1;
        match &r.problem {
            None => {}
            Some(Problem::Torn(offset, damage)) if last => {
                cut_torn(dir, n, *offset, r.len, damage, mode, &mut rec.report)?;
            }
            Some(Problem::BadHeader(HeaderError::Incomplete)) if last => {
                cut_torn_header(dir, n, r.len, mode, &mut rec)?;
                break;
            }
            Some(p) => {
                let path = segment::path(dir, n);
                let err = problem_error(&path, p);
                let cut = Some((n, r.valid_end));
                stop_at_corruption(
                    dir,
                    &live[i + 1..],
                    cut,
                    err,
                    mode,
                    &mut rec,
                    &mut changed_dir,
                )?;
                if r.valid_end >= HEADER_LEN as u64 {
                    rec.tail = Some((n, r.valid_end));
                }
                break;
            }
        }
        // Every segment replayed so far is closed except the one the writer continues.
        if let Some((_, prev_len)) = rec.tail {
            rec.closed_bytes += prev_len;
        }
        rec.tail = Some((n, r.valid_end));
    }
    if changed_dir {
        syncer.sync_dir(dir).map_err(io_at(dir))?;
    }
    if !mode.read_only && rec.report.v1_files > 0 {
        upgrade_after_replay(dir, state, syncer, &mut rec)?;
    }
    rec.report.elapsed = started.elapsed();
    Ok(rec)
}

/// Rewrites a directory with v1 files as v2 (see [`crate::upgrade`]); the writer then starts
/// a new segment after the last one, so it never appends v2 frames to a v1 file.
fn upgrade_after_replay(
    dir: &Path,
    state: &State,
    syncer: &dyn Syncer,
    rec: &mut Recovered,
) -> Result<(), OpenError> {
    // The last segment still on disk, or the snapshot's number when none is left.
    let last = rec.next_segment.saturating_sub(1);
    if last == 0 {
        // No file is left to replace (repair removed it): nothing to upgrade.
        return Ok(());
    }
    let done = upgrade::to_v2(dir, last, state, syncer)?;
    rec.report.upgraded = Some(done);
    rec.tail = None;
    rec.next_segment = last + 1;
    rec.closed_bytes = 0;
    Ok(())
}

pub(crate) fn problem_error(path: &Path, p: &Problem) -> OpenError {
    let file = path.to_owned();
    match p {
        Problem::BadHeader(error) => OpenError::BadHeader {
            file,
            error: *error,
        },
        Problem::WrongNumber(_) => OpenError::BadHeader {
            file,
            error: HeaderError::BadMagic,
        },
        Problem::Torn(offset, damage) | Problem::Corrupt(offset, damage) => OpenError::Corrupt {
            file,
            offset: *offset,
            damage: *damage,
        },
        Problem::BadPayload(offset, error) => OpenError::BadPayload {
            file,
            offset: *offset,
            error: error.clone(),
        },
    }
}

/// Deletes temporary snapshots, snapshots older than the one used and segments it covers:
/// the leftovers of a compaction interrupted after its rename.
fn remove_leftovers(
    dir: &Path,
    listing: &Listing,
    covered: Option<u64>,
    report: &mut RecoveryReport,
) -> Result<bool, OpenError> {
    let mut changed = false;
    for t in &listing.temps {
        remove(t, report)?;
        changed = true;
    }
    let Some(c) = covered else { return Ok(changed) };
    for &n in listing.snapshots.iter().filter(|&&n| n < c) {
        remove(&snapshot::path(dir, n), report)?;
        changed = true;
    }
    for &n in listing.segments.iter().filter(|&&n| n <= c) {
        remove(&segment::path(dir, n), report)?;
        changed = true;
    }
    Ok(changed)
}

fn cut_torn(
    dir: &Path,
    n: u64,
    offset: u64,
    len: u64,
    damage: &Damage,
    mode: RecoveryMode,
    report: &mut RecoveryReport,
) -> Result<(), OpenError> {
    let path = segment::path(dir, n);
    if !mode.read_only {
        truncate(&path, offset)?;
    }
    report.torn = Some(TornTail {
        file: path,
        offset,
        bytes_cut: len - offset,
        damage: damage.to_string(),
    });
    Ok(())
}

/// The last segment's header never made it to disk: the process died while creating it.
/// Nothing was ever acknowledged from it, so it is removed and recreated by the writer.
fn cut_torn_header(
    dir: &Path,
    n: u64,
    len: u64,
    mode: RecoveryMode,
    rec: &mut Recovered,
) -> Result<(), OpenError> {
    let path = segment::path(dir, n);
    if !mode.read_only {
        fs::remove_file(&path).map_err(io_at(&path))?;
    }
    rec.report.torn = Some(TornTail {
        file: path,
        offset: 0,
        bytes_cut: len,
        damage: HeaderError::Incomplete.to_string(),
    });
    rec.next_segment = n;
    rec.tail = None;
    Ok(())
}

fn truncate(path: &Path, len: u64) -> Result<(), OpenError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    f.set_len(len).map_err(io_at(path))?;
    f.sync_all().map_err(io_at(path))
}

/// Corruption: fail, or (repair) cut the file at `cut` and delete the segments in `later`.
fn stop_at_corruption(
    dir: &Path,
    later: &[u64],
    cut: Option<(u64, u64)>,
    err: OpenError,
    mode: RecoveryMode,
    rec: &mut Recovered,
    changed_dir: &mut bool,
) -> Result<(), OpenError> {
    if !mode.repair {
        if mode.read_only {
            rec.report.corruption.push(err.to_string());
            return Ok(());
        }
        return Err(err);
    }
    rec.report.corruption.push(err.to_string());
    if let Some((n, at)) = cut {
        let path = segment::path(dir, n);
        if at < HEADER_LEN as u64 {
            fs::remove_file(&path).map_err(io_at(&path))?;
            rec.next_segment = n;
            *changed_dir = true;
        } else {
            truncate(&path, at)?;
        }
        rec.report
            .repairs
            .push(format!("cut {} at offset {at}", path.display()));
    }
    for &m in later {
        let p = segment::path(dir, m);
        fs::remove_file(&p).map_err(io_at(&p))?;
        rec.report.repairs.push(format!("deleted {}", p.display()));
        *changed_dir = true;
    }
    Ok(())
}
