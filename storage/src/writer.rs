//! The writer thread: group commit of framed records to the active segment.
//!
//! Responsible for: taking encoded records from any thread over a crossbeam channel,
//! writing everything queued as one batch with one `write`, making the batch durable with
//! one `fdatasync` (policy `always`), and only then running the batch's completions
//! (a batch nobody waits on is written at once and synced by the next awaited batch, or
//! on time: [`UNAWAITED_SYNC_WITHIN`]);
//! rolling to a new segment past the size limit (old segment synced first, new segment
//! created durably, directory synced); asking the compactor for a snapshot once enough
//! closed segments pile up; poisoning the log on the first failed write or sync (pending
//! and later appends fail, [`crate::Health`] turns unhealthy); counting batches (by records
//! per batch) and `fdatasync` latency in fixed buckets for `/metrics`.
//! Not responsible for: encoding or validating records (the committing thread does both, so
//! the writer only copies bytes), recovery, or snapshots.

use std::fs::File;
use std::io::{self, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::backend::Completion;
use crate::error::StoreError;
use crate::fsync::{FsyncPolicy, Syncer};
use crate::header::HEADER_LEN;
use crate::health::Health;
use crate::segment;

/// A batch stops growing past this many bytes, so that one huge burst does not delay the
/// first completions behind megabytes of writes.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Under policy `always`, how long a record nobody waits on may stay written but not yet
/// synced, by default ([`crate::Options::unawaited_sync_within`]). Such records (a turn's user message, tool calls, stream events) are followed by
/// an awaited commit (the reply) that syncs them anyway; syncing each on its own would put
/// an `fdatasync` in front of that reply for nothing.
pub const UNAWAITED_SYNC_WITHIN: Duration = Duration::from_millis(10);

/// A request to the writer.
pub(crate) enum Request {
    /// Append one framed record; `done` runs once it is durable (or failed). Without `done`
    /// nobody waits, and the record is synced by the next awaited batch or on time.
    Append {
        record: Vec<u8>,
        done: Option<Completion>,
    },
    /// Close the active segment and start a new one; replies with the closed segment's
    /// number once both are durable.
    Roll {
        reply: Sender<Result<u64, StoreError>>,
    },
}

/// Upper bounds of the records-per-batch histogram.
pub const BATCH_BUCKETS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
/// Upper bounds of the `fdatasync` latency histogram, in microseconds.
pub const FSYNC_BUCKETS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// Counters of the writer, for `/metrics` and the benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Batches by records appended, per bucket of [`BATCH_BUCKETS`] (the last: more).
    pub batch_records: [AtomicU64; BATCH_BUCKETS.len() + 1],
    /// `fdatasync` calls per bucket of [`FSYNC_BUCKETS_US`] (the last: slower).
    pub fsync_us: [AtomicU64; FSYNC_BUCKETS_US.len() + 1],
    /// Records appended.
    pub appends: AtomicU64,
    /// Batches written.
    pub batches: AtomicU64,
    /// `fdatasync` calls on segments (batches and rolls).
    pub fsyncs: AtomicU64,
    /// Total nanoseconds spent in those calls.
    pub fsync_nanos: AtomicU64,
    /// Bytes appended (framed records).
    pub bytes: AtomicU64,
}

/// Everything the writer thread needs.
pub(crate) struct WriterConfig {
    pub dir: PathBuf,
    pub file: File,
    pub segment: u64,
    pub segment_len: u64,
    pub segment_size: u64,
    pub policy: FsyncPolicy,
    pub syncer: Arc<dyn Syncer>,
    pub health: Arc<Health>,
    pub stats: Arc<WriterStats>,
    /// Closed segments not covered by a snapshot, in bytes, at start.
    pub closed_bytes: u64,
    pub snapshot_threshold: u64,
    /// See [`UNAWAITED_SYNC_WITHIN`].
    pub unawaited_sync_within: Duration,
    /// Where to ask for a snapshot covering segments up to a number.
    pub compact: Option<Sender<u64>>,
}

struct Writer {
    cfg: WriterConfig,
    buf: Vec<u8>,
    dirty: bool,
    /// When the first byte not yet synced was written.
    dirty_since: Instant,
    last_sync: Instant,
}

/// Runs the writer until every sender is dropped, then syncs what is left.
pub(crate) fn run(cfg: WriterConfig, rx: Receiver<Request>) {
    let mut w = Writer {
        cfg,
        buf: Vec::with_capacity(1 << 20),
        dirty: false,
        dirty_since: Instant::now(),
        last_sync: Instant::now(),
    };
    while let Some(first) = w.recv_first(&rx) {
        let mut batch = vec![first];
        let mut bytes = request_len(&batch[0]);
        while bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += request_len(&r);
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        w.process(batch);
    }
    if w.dirty && w.cfg.health.is_healthy() && w.cfg.policy != FsyncPolicy::Never {
        // Shutdown: make interval-policy writes durable too. A failure here has nobody left
        // to tell but the health flag.
        if let Err(e) = w.sync() {
            w.cfg.health.poison(format!("fsync at shutdown: {e}"));
        }
    }
}

/// The bucket of `v` among `bounds` (`bounds.len()` past the last).
fn bucket(bounds: &[u64], v: u64) -> usize {
    bounds.iter().position(|&b| v <= b).unwrap_or(bounds.len())
}

fn request_len(r: &Request) -> usize {
    match r {
        Request::Append { record, .. } => record.len(),
        Request::Roll { .. } => 0,
    }
}

fn complete(done: Completion, result: Result<(), StoreError>) {
    // A panicking callback must not take the writer (and every later commit) down with it.
    let _ = catch_unwind(AssertUnwindSafe(move || done(result)));
}

impl Writer {
    /// Waits for the next request; it wakes up to sync dirty data on time.
    fn recv_first(&mut self, rx: &Receiver<Request>) -> Option<Request> {
        loop {
            let due = match self.cfg.policy {
                _ if !self.dirty => return rx.recv().ok(),
                FsyncPolicy::Never => return rx.recv().ok(),
                FsyncPolicy::Interval(every) => every.saturating_sub(self.last_sync.elapsed()),
                FsyncPolicy::Always => self
                    .cfg
                    .unawaited_sync_within
                    .saturating_sub(self.dirty_since.elapsed()),
            };
            match rx.recv_timeout(due.max(Duration::from_millis(1))) {
                Ok(r) => return Some(r),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.sync() {
                        self.poison(format!("fsync: {e}"));
                    }
                }
            }
        }
    }

    fn poison(&mut self, reason: String) {
        self.cfg.health.poison(reason);
        self.buf.clear();
    }

    fn poisoned_error(&self) -> StoreError {
        StoreError::Poisoned(self.cfg.health.reason().unwrap_or_default())
    }

    fn process(&mut self, batch: Vec<Request>) {
        let mut waiting: Vec<Completion> = Vec::with_capacity(batch.len());
        let mut records = 0u64;
        let mut failed: Option<StoreError> = None;
        for req in batch {
            if failed.is_none() && !self.cfg.health.is_healthy() {
                failed = Some(self.poisoned_error());
            }
            match (req, &failed) {
                (Request::Append { done, .. }, Some(e)) => {
                    if let Some(done) = done {
                        complete(done, Err(e.clone()));
                    }
                }
                (Request::Roll { reply }, Some(e)) => {
                    let _ = reply.send(Err(e.clone()));
                }
                (Request::Append { record, done }, None) => {
                    if let Err(e) = self.append(&record) {
                        self.poison(format!("write: {e}"));
                        failed = Some(self.poisoned_error());
                        if let Some(done) = done {
                            complete(done, Err(self.poisoned_error()));
                        }
                        continue;
                    }
                    self.cfg.stats.appends.fetch_add(1, Ordering::Relaxed);
                    records += 1;
                    waiting.extend(done);
                }
                (Request::Roll { reply }, None) => {
                    let r = self.flush().and_then(|_| self.roll());
                    match r {
                        Ok(closed) => {
                            let _ = reply.send(Ok(closed));
                        }
                        Err(e) => {
                            self.poison(format!("segment roll: {e}"));
                            failed = Some(self.poisoned_error());
                            let _ = reply.send(Err(self.poisoned_error()));
                        }
                    }
                }
            }
        }
        if records > 0 {
            let i = bucket(&BATCH_BUCKETS, records);
            self.cfg.stats.batch_records[i].fetch_add(1, Ordering::Relaxed);
        }
        let result = match failed {
            Some(e) => Err(e),
            None => self.finish_batch(!waiting.is_empty()),
        };
        for done in waiting {
            complete(done, result.clone());
        }
    }

    /// Writes the buffered batch and makes it durable as the policy says (`awaited`: some
    /// commit of the batch waits for durability).
    fn finish_batch(&mut self, awaited: bool) -> Result<(), StoreError> {
        if let Err(e) = self.flush() {
            self.poison(format!("write: {e}"));
            return Err(self.poisoned_error());
        }
        self.cfg.stats.batches.fetch_add(1, Ordering::Relaxed);
        let due = match self.cfg.policy {
            FsyncPolicy::Always => {
                awaited || self.dirty_since.elapsed() >= self.cfg.unawaited_sync_within
            }
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        if due {
            if let Err(e) = self.sync() {
                self.poison(format!("fsync: {e}"));
                return Err(self.poisoned_error());
            }
        }
        Ok(())
    }

    /// Buffers one record, rolling first if it would overflow the segment (a record larger
    /// than a whole segment gets a segment of its own).
    fn append(&mut self, record: &[u8]) -> io::Result<()> {
        let used = self.cfg.segment_len + self.buf.len() as u64;
        if used + record.len() as u64 > self.cfg.segment_size && used > HEADER_LEN as u64 {
            self.flush()?;
            self.roll()?;
        }
        self.buf.extend_from_slice(record);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.cfg.file.write_all(&self.buf)?;
        self.cfg.segment_len += self.buf.len() as u64;
        self.cfg
            .stats
            .bytes
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        self.buf.clear();
        if !self.dirty {
            self.dirty = true;
            self.dirty_since = Instant::now();
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let t = Instant::now();
        self.cfg.syncer.sync_data(&self.cfg.file)?;
        let stats = &self.cfg.stats;
        let nanos = t.elapsed().as_nanos() as u64;
        stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        stats.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
        let i = bucket(&FSYNC_BUCKETS_US, nanos / 1000);
        stats.fsync_us[i].fetch_add(1, Ordering::Relaxed);
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes the active segment (synced, unless the policy is `never`) and creates the
    /// next one. Returns the closed segment's number.
    fn roll(&mut self) -> io::Result<u64> {
        if self.cfg.policy != FsyncPolicy::Never && self.dirty {
            // Recovery treats damage in any but the last segment as corruption, which is
            // only sound if a segment is complete on disk before its successor exists.
            self.sync()?;
        }
        let closed = self.cfg.segment;
        let next = closed + 1;
        let file = segment::create(&self.cfg.dir, next, self.cfg.syncer.as_ref())?;
        self.cfg.closed_bytes += self.cfg.segment_len;
        self.cfg.file = file;
        self.cfg.segment = next;
        self.cfg.segment_len = HEADER_LEN as u64;
        self.dirty = false;
        self.maybe_compact(closed);
        Ok(closed)
    }

    fn maybe_compact(&mut self, closed: u64) {
        if self.cfg.closed_bytes < self.cfg.snapshot_threshold {
            return;
        }
        if let Some(tx) = &self.cfg.compact {
            match tx.try_send(closed) {
                Ok(()) => self.cfg.closed_bytes = 0,
                // Busy: the next roll asks again, with more segments to cover.
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }
}
