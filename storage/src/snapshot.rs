//! Snapshots and compaction: fold the covered segments into one file, then delete them.
//!
//! Responsible for: the snapshot file (`snap-NNNNNNNNNNNNNNNNNNNN.snap`, N = the last segment
//! it covers; header with the snapshot magic, then `SnapshotEntry` records whose payloads are
//! `Txn`s of `Put*`/`RestoreMessage`/`StartStream`/`AppendStreamEvents`/`SetMeta` mutations,
//! then one `SnapshotEnd` record holding the entry count), loading it, and the crash-safe
//! compaction sequence:
//!
//! 1. build the state of (previous snapshot + closed segments up to N) in a private `State`
//!    by replaying the files, so the live state is never locked or copied and the snapshot
//!    covers exactly segments <= N;
//! 2. write `snap-N.snap.tmp`; 3. fdatasync it; 4. rename it to `snap-N.snap`;
//! 5. fsync the directory; 6. delete segments <= N and older snapshots; fsync the directory.
//!
//! A crash before 4 leaves a temp file that recovery deletes; after 4, recovery uses the
//! new snapshot and deletes what it covers. Deleted resources are simply absent from the
//! state that is written, so they do not survive. The cost is a second copy of the state in
//! memory while a compaction runs. Also: [`write_state`], the same steps 2-5 for a state
//! already in memory (the v1 upgrade), and loading v1 snapshots.
//! Not responsible for: deciding when to compact (the writer asks past the threshold), or
//! which files an upgrade removes (`upgrade`).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::codec::{Codec, Decoder, Encoder};
use crate::error::{io_at, OpenError};
use crate::fsync::Syncer;
use crate::header::{self, HEADER_LEN, SNAPSHOT_MAGIC};
use crate::model::StreamEvent;
use crate::mutation::{Mutation, Txn};
use crate::record::{self, Damage, Next, Reader, RecordType};
use crate::recovery::{self, problem_error};
use crate::segment;
use crate::state::tenant::StreamData;
use crate::state::State;

/// Default size of closed segments past which a snapshot is taken.
pub const DEFAULT_SNAPSHOT_THRESHOLD: u64 = 256 * 1024 * 1024;

/// Entries are cut at about this many payload bytes, far below the record limit.
const ENTRY_TARGET_BYTES: usize = 1 << 20;

/// File name of the snapshot covering segments through `n`.
pub fn file_name(n: u64) -> String {
    format!("snap-{n:020}.snap")
}

/// The covered segment number of a snapshot file name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether a file name is a snapshot being written.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with("snap-") && name.ends_with(".snap.tmp")
}

/// Path of snapshot `n`.
pub fn path(dir: &Path, n: u64) -> PathBuf {
    dir.join(file_name(n))
}

fn temp_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{}.tmp", file_name(n)))
}

/// What [`load`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Entry records applied.
    pub entries: u64,
    /// The file's format version (1: to be upgraded).
    pub version: u32,
}

/// Loads a snapshot file (v1 or v2) into `state`. Any damage, or a missing end record, is
/// an error: a snapshot is renamed into place only once complete and synced, so even a
/// damaged last record is not a torn write.
pub fn load(path: &Path, state: &State) -> Result<Loaded, OpenError> {
    let bytes = fs::read(path).map_err(io_at(path))?;
    let head = header::decode(SNAPSHOT_MAGIC, &bytes).map_err(|error| OpenError::BadHeader {
        file: path.to_owned(),
        error,
    })?;
    let corrupt = |offset: usize, damage| OpenError::Corrupt {
        file: path.to_owned(),
        offset: offset as u64,
        damage,
    };
    let bad_payload = |offset: usize, error| OpenError::BadPayload {
        file: path.to_owned(),
        offset: offset as u64,
        error,
    };
    let mut reader = Reader::with_format(head.format(), &bytes, HEADER_LEN);
    let mut entries = 0u64;
    loop {
        match reader.next_record() {
            Next::Record(r) if r.kind == RecordType::SnapshotEntry => {
                let txn = Txn::decode(r.payload).map_err(|e| bad_payload(r.offset, e))?;
                entries += 1;
                // Entries were produced from a valid state; one that does not apply means the
                // snapshot is wrong, and loading it partially would be worse than failing.
                state
                    .apply(&txn.tenant, txn.mutations)
                    .map_err(|error| OpenError::Refused {
                        file: path.to_owned(),
                        offset: r.offset as u64,
                        error,
                    })?;
            }
            Next::Record(r) if r.kind == RecordType::SnapshotEnd => {
                let mut d = Decoder::new(r.payload);
                let count = d.varint().map_err(|e| bad_payload(r.offset, e))?;
                if count != entries || r.end() != bytes.len() {
                    return Err(corrupt(r.offset, Damage::ChecksumMismatch));
                }
                return Ok(Loaded {
                    entries,
                    version: head.version,
                });
            }
            Next::Record(r) => return Err(corrupt(r.offset, Damage::UnknownType(r.kind.tag()))),
            Next::End => {
                return Err(OpenError::IncompleteSnapshot {
                    file: path.to_owned(),
                })
            }
            Next::Torn { offset, damage } | Next::Corrupt { offset, damage } => {
                return Err(corrupt(offset, damage))
            }
        }
    }
}

/// Writes snapshot entries, grouping mutations of one tenant into records of about 1 MiB.
struct EntryWriter<W: Write> {
    out: W,
    tenant: String,
    pending: Encoder,
    count: u64,
    frame: Vec<u8>,
    entries: u64,
    bytes: u64,
}

/// Where [`emit_state`] puts the mutations that rebuild a state: a snapshot file, or another
/// store (`halyard export-store`, `import-store`).
pub trait StateSink {
    /// Takes the next mutation, of `tenant` (`""` for server metadata).
    fn push(&mut self, tenant: &str, m: &Mutation) -> io::Result<()>;
}

impl<W: Write> StateSink for EntryWriter<W> {
    fn push(&mut self, tenant: &str, m: &Mutation) -> io::Result<()> {
        if tenant != self.tenant || self.pending.len() >= ENTRY_TARGET_BYTES {
            self.flush()?;
            tenant.clone_into(&mut self.tenant);
        }
        m.encode(&mut self.pending);
        self.count += 1;
        Ok(())
    }
}

impl<W: Write> EntryWriter<W> {
    fn flush(&mut self) -> io::Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let mut e = Encoder::default();
        e.str(&self.tenant);
        e.varint(self.count);
        e.raw(&std::mem::take(&mut self.pending).into_bytes());
        self.write_record(RecordType::SnapshotEntry, &e.into_bytes())?;
        self.entries += 1;
        self.count = 0;
        Ok(())
    }

    fn write_record(&mut self, kind: RecordType, payload: &[u8]) -> io::Result<()> {
        self.frame.clear();
        record::encode(kind, payload, &mut self.frame);
        self.bytes += self.frame.len() as u64;
        self.out.write_all(&self.frame)
    }

    fn finish(mut self) -> io::Result<(W, u64, u64)> {
        self.flush()?;
        let mut e = Encoder::default();
        e.varint(self.entries);
        self.write_record(RecordType::SnapshotEnd, &e.into_bytes())?;
        Ok((self.out, self.entries, self.bytes))
    }
}

/// Emits the whole state as `Put*` mutations, parents before children, sessions in
/// creation order so that lists keep their order after a reload; each tenant's mutations
/// together, server metadata last.
pub fn emit_state(state: &State, w: &mut impl StateSink) -> io::Result<()> {
    let mut result = Ok(());
    state.for_each_tenant(|ts| {
        if result.is_ok() {
            result = emit_tenant(ts, w);
        }
    });
    result?;
    for (key, value) in state.meta_entries() {
        w.push("", &Mutation::SetMeta { key, value })?;
    }
    Ok(())
}

fn emit_tenant(ts: &crate::state::tenant::TenantState, w: &mut impl StateSink) -> io::Result<()> {
    let t = ts.tenant.id.as_str();
    w.push(t, &Mutation::PutTenant(ts.tenant.clone()))?;
    for u in ts.users.values() {
        w.push(t, &Mutation::PutUser(u.clone()))?;
    }
    for k in ts.keys.values() {
        w.push(t, &Mutation::PutApiKey(k.clone()))?;
    }
    for p in ts.projects.values() {
        w.push(t, &Mutation::PutProject(p.project.clone()))?;
        for a in p.agents.values() {
            w.push(t, &Mutation::PutAgent(a.clone()))?;
        }
        for s in p.secrets.values() {
            w.push(t, &Mutation::PutSecret(s.clone()))?;
        }
        for tool in p.tools.values() {
            w.push(t, &Mutation::PutTool(tool.clone()))?;
        }
        for v in p.versions.values().flatten() {
            w.push(t, &Mutation::PutAgentVersion(v.clone()))?;
        }
        for d in p
            .deployment_order
            .iter()
            .filter_map(|id| p.deployments.get(id))
        {
            w.push(t, &Mutation::PutDeployment(d.clone()))?;
        }
        for k in p.public_keys.values() {
            w.push(t, &Mutation::PutPublicKey(k.clone()))?;
        }
        for sd in p.session_order.iter().filter_map(|id| p.sessions.get(id)) {
            w.push(t, &Mutation::PutSession(sd.session.clone()))?;
            if let Some(deployment_id) = &sd.deployment_id {
                let bind = Mutation::SetSessionDeployment {
                    project_id: p.project.id.clone(),
                    session_id: sd.session.id.clone(),
                    deployment_id: deployment_id.clone(),
                };
                w.push(t, &bind)?;
            }
            for m in &sd.messages {
                let restore = Mutation::RestoreMessage {
                    project_id: p.project.id.clone(),
                    session_id: sd.session.id.clone(),
                    message: m.clone(),
                };
                w.push(t, &restore)?;
            }
            if !sd.traces.is_empty() {
                let traces = Mutation::AppendTraces {
                    project_id: p.project.id.clone(),
                    session_id: sd.session.id.clone(),
                    events: sd.traces.clone(),
                };
                w.push(t, &traces)?;
            }
            for fb in &sd.feedback {
                w.push(t, &Mutation::PutFeedback(fb.clone()))?;
            }
        }
    }
    for (id, st) in &ts.streams {
        emit_stream(t, id, st, w)?;
    }
    Ok(())
}

/// A stream as its start (with its time) and its events as one batch; a stream with more
/// than about 1 MiB of events is cut into several batches, so that no record comes near
/// the record size limit.
fn emit_stream(t: &str, id: &str, st: &StreamData, w: &mut impl StateSink) -> io::Result<()> {
    let start = Mutation::StartStream {
        stream_id: id.to_owned(),
        owner: st.owner.clone(),
        created_at: st.created_at,
        node: st.node.clone(),
    };
    w.push(t, &start)?;
    let mut rest = st.events.as_slice();
    while !rest.is_empty() {
        let n = batch_len(rest);
        let batch = Mutation::AppendStreamEvents {
            stream_id: id.to_owned(),
            events: rest[..n].to_vec(),
        };
        w.push(t, &batch)?;
        rest = &rest[n..];
    }
    Ok(())
}

/// How many of `events` (at least one) fit in about [`ENTRY_TARGET_BYTES`].
fn batch_len(events: &[StreamEvent]) -> usize {
    let mut bytes = 0;
    let n = events
        .iter()
        .take_while(|e| {
            bytes += e.event.len() + e.data.len() + 16;
            bytes <= ENTRY_TARGET_BYTES
        })
        .count();
    n.max(1)
}

/// The steps of a compaction, for tests that stop after each one to simulate a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CompactStep {
    /// The temporary snapshot is written (not synced).
    WriteTemp,
    /// The temporary snapshot is synced.
    SyncTemp,
    /// It is renamed to its final name.
    Rename,
    /// The directory is synced.
    SyncDir,
    /// The first covered segment is deleted.
    DeleteFirstCovered,
    /// All covered files are deleted and the directory synced.
    DeleteCovered,
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Segments covered.
    pub covers_through: u64,
    /// Entry records written.
    pub entries: u64,
    /// Snapshot size.
    pub bytes: u64,
    /// Files deleted.
    pub removed: u64,
    /// Time taken.
    pub elapsed: Duration,
    /// The step it stopped after, when asked to stop early.
    pub stopped_after: Option<CompactStep>,
}

impl CompactReport {
    /// A report of nothing done yet for a snapshot covering segments `<= upto`.
    fn empty(upto: u64) -> Self {
        CompactReport {
            covers_through: upto,
            entries: 0,
            bytes: 0,
            removed: 0,
            elapsed: Duration::ZERO,
            stopped_after: None,
        }
    }
}

/// Rebuilds the state covered by segments `<= upto` from the files alone.
fn fold(dir: &Path, upto: u64) -> Result<(State, Vec<u64>, Vec<u64>), OpenError> {
    let listing = recovery::list(dir)?;
    let state = State::default();
    let prev = listing
        .snapshots
        .iter()
        .rev()
        .find(|&&n| n <= upto)
        .copied();
    if let Some(n) = prev {
        load(&path(dir, n), &state)?;
    }
    let base = prev.unwrap_or(0);
    let covered: Vec<u64> = listing
        .segments
        .iter()
        .copied()
        .filter(|&n| n <= upto)
        .collect();
    let mut expected = None;
    for &n in covered.iter().filter(|&&n| n > base) {
        if expected.is_some_and(|e| e != n)
            || (prev.is_some() && expected.is_none() && n != base + 1)
        {
            return Err(OpenError::MissingSegment {
                number: expected.unwrap_or(base + 1),
            });
        }
        expected = Some(n + 1);
        let r = recovery::replay_segment(dir, n, &state)?;
        if let Some(p) = &r.problem {
            return Err(problem_error(&segment::path(dir, n), p));
        }
    }
    let old_snaps = listing
        .snapshots
        .iter()
        .copied()
        .filter(|&n| n < upto)
        .collect();
    Ok((state, covered, old_snaps))
}

/// Compacts segments `<= upto` (all closed) into snapshot `upto`, stopping after
/// `stop_after` if given (crash simulation).
pub fn compact(
    dir: &Path,
    upto: u64,
    syncer: &dyn Syncer,
    stop_after: Option<CompactStep>,
) -> Result<CompactReport, OpenError> {
    let started = Instant::now();
    let mut report = CompactReport::empty(upto);
    // A queued background request can arrive after a manual compaction went further; its
    // segments are gone, and folding nothing would write an empty (if harmless) snapshot.
    if recovery::list(dir)?.snapshots.iter().any(|&n| n >= upto) {
        return Ok(report);
    }
    let (state, covered, old_snaps) = fold(dir, upto)?;
    let stop = |step: CompactStep, report: &mut CompactReport| {
        let hit = stop_after == Some(step);
        if hit {
            report.stopped_after = Some(step);
            report.elapsed = started.elapsed();
        }
        hit
    };
    let tmp = temp_path(dir, upto);
    let file = write_temp(&tmp, upto, &state, &mut report)?;
    drop(state);
    if stop(CompactStep::WriteTemp, &mut report) {
        return Ok(report);
    }
    syncer.sync_data(&file).map_err(io_at(&tmp))?;
    drop(file);
    if stop(CompactStep::SyncTemp, &mut report) {
        return Ok(report);
    }
    let fin = path(dir, upto);
    fs::rename(&tmp, &fin).map_err(io_at(&fin))?;
    if stop(CompactStep::Rename, &mut report) {
        return Ok(report);
    }
    syncer.sync_dir(dir).map_err(io_at(dir))?;
    if stop(CompactStep::SyncDir, &mut report) {
        return Ok(report);
    }
    let doomed: Vec<PathBuf> = covered
        .iter()
        .map(|&n| segment::path(dir, n))
        .chain(old_snaps.iter().map(|&n| path(dir, n)))
        .collect();
    for (i, p) in doomed.iter().enumerate() {
        fs::remove_file(p).map_err(io_at(p))?;
        report.removed += 1;
        if i == 0 && stop(CompactStep::DeleteFirstCovered, &mut report) {
            return Ok(report);
        }
    }
    syncer.sync_dir(dir).map_err(io_at(dir))?;
    stop(CompactStep::DeleteCovered, &mut report);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Writes `state` as snapshot `upto` (temporary file, fdatasync, rename, directory fsync):
/// steps 2-5 of a compaction, for a state already in memory. Deletes nothing; a crash
/// before the rename leaves only a temporary file, which recovery deletes.
pub(crate) fn write_state(
    dir: &Path,
    upto: u64,
    state: &State,
    syncer: &dyn Syncer,
) -> Result<CompactReport, OpenError> {
    let started = Instant::now();
    let mut report = CompactReport::empty(upto);
    let tmp = temp_path(dir, upto);
    let file = write_temp(&tmp, upto, state, &mut report)?;
    syncer.sync_data(&file).map_err(io_at(&tmp))?;
    drop(file);
    let fin = path(dir, upto);
    fs::rename(&tmp, &fin).map_err(io_at(&fin))?;
    syncer.sync_dir(dir).map_err(io_at(dir))?;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn write_temp(
    tmp: &Path,
    upto: u64,
    state: &State,
    report: &mut CompactReport,
) -> Result<File, OpenError> {
    let file = File::create(tmp).map_err(io_at(tmp))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(&header::encode(SNAPSHOT_MAGIC, upto))
        .map_err(io_at(tmp))?;
    let mut w = EntryWriter {
        out,
        tenant: String::new(),
        pending: Encoder::default(),
        count: 0,
        frame: Vec::new(),
        entries: 0,
        bytes: HEADER_LEN as u64,
    };
    emit_state(state, &mut w).map_err(io_at(tmp))?;
    let (out, entries, bytes) = w.finish().map_err(io_at(tmp))?;
    report.entries = entries;
    report.bytes = bytes;
    out.into_inner().map_err(|e| OpenError::Io {
        path: tmp.to_owned(),
        error: e.into_error(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, data_len: usize) -> StreamEvent {
        StreamEvent {
            id,
            event: "token".into(),
            data: "x".repeat(data_len),
        }
    }

    #[test]
    fn stream_batches_are_cut_near_the_entry_target() {
        let events: Vec<StreamEvent> = (1..=3000).map(|id| event(id, 1000)).collect();
        let n = batch_len(&events);
        assert!((1000..1100).contains(&n), "{n}");
        assert_eq!(batch_len(&events[..10]), 10);
        // A single event over the target still goes out, alone.
        assert_eq!(batch_len(&[event(1, 2 << 20), event(2, 1)]), 1);
    }
}
