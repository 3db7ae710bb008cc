//! The embedded store: the log, its writer and compactor threads, and the state, behind the
//! [`Backend`] interface.
//!
//! Responsible for: opening a data directory (recovery, then threads), the commit path
//! (encode outside any lock; validate, apply and enqueue under the tenant's shard lock so
//! that memory order equals log order; completion from the writer once durable), manual
//! compaction, stream expiry, health and counters, and an orderly shutdown on drop (pending
//! appends are written and synced). Not responsible for: the format, recovery rules or
//! snapshot steps (their modules), or HTTP semantics.
//!
//! One process per data directory: the store holds the directory's `LOCK` while open.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::backend::{Backend, Completion};
use crate::backup::{self, BackupError, BackupOptions, BackupReport};
use crate::codec::Encoder;
use crate::disk_usage::DiskUsage;
use crate::error::{io_at, OpenError, StoreError};
use crate::fsync::{FsyncPolicy, OsSyncer, Syncer};
use crate::health::Health;
use crate::lock::DirLock;
use crate::mutation::{Mutation, Txn};
use crate::record::{self, RecordType, FRAME_HEADER_LEN, MAX_PAYLOAD_LEN};
use crate::recovery::{self, RecoveryMode, RecoveryReport};
use crate::segment::{self, DEFAULT_SEGMENT_SIZE};
use crate::snapshot::{self, CompactReport, DEFAULT_SNAPSHOT_THRESHOLD};
use crate::state::State;
use crate::writer::{self, Request, WriterConfig, WriterStats, BATCH_BUCKETS, FSYNC_BUCKETS_US};

/// How to open a store.
#[derive(Clone)]
pub struct Options {
    /// Durability policy (`--fsync`).
    pub fsync: FsyncPolicy,
    /// Segment size past which a new segment starts.
    pub segment_size: u64,
    /// Closed-segment bytes past which a snapshot is taken; `u64::MAX` disables.
    pub snapshot_threshold: u64,
    /// Cut the log at corruption instead of refusing to open (`--repair`).
    pub repair: bool,
    /// Under `always`, how long a commit nobody waits on may stay unsynced when no awaited
    /// commit syncs it first.
    pub unawaited_sync_within: std::time::Duration,
    /// The sync calls (tests inject counting or failing ones).
    pub syncer: Arc<dyn Syncer>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fsync: FsyncPolicy::Always,
            segment_size: DEFAULT_SEGMENT_SIZE,
            snapshot_threshold: DEFAULT_SNAPSHOT_THRESHOLD,
            repair: false,
            unawaited_sync_within: crate::writer::UNAWAITED_SYNC_WITHIN,
            syncer: Arc::new(OsSyncer),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("fsync", &self.fsync)
            .field("segment_size", &self.segment_size)
            .field("snapshot_threshold", &self.snapshot_threshold)
            .field("repair", &self.repair)
            .finish_non_exhaustive()
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LogStats {
    /// Records appended since open.
    pub appends: u64,
    /// Batches written.
    pub batches: u64,
    /// Segment fdatasyncs.
    pub fsyncs: u64,
    /// Seconds spent in them.
    pub fsync_seconds: f64,
    /// Bytes appended.
    pub bytes: u64,
    /// Snapshots written.
    pub compactions: u64,
    /// Batches by records, per bucket of [`crate::writer::BATCH_BUCKETS`] (then more).
    pub batch_records: [u64; BATCH_BUCKETS.len() + 1],
    /// `fdatasync` calls per bucket of [`crate::writer::FSYNC_BUCKETS_US`] (then slower).
    pub fsync_us: [u64; FSYNC_BUCKETS_US.len() + 1],
}

/// What `/metrics` says about the log: the writer's counters and the files on disk.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LogMetrics {
    /// Counters since open.
    pub log: LogStats,
    /// Files now.
    pub disk: DiskUsage,
}

/// The embedded store. Share it with `Arc`; every method takes `&self`.
pub struct Store {
    dir: PathBuf,
    state: State,
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    compactor: Option<JoinHandle<()>>,
    health: Arc<Health>,
    stats: Arc<WriterStats>,
    syncer: Arc<dyn Syncer>,
    compaction_lock: Arc<Mutex<()>>,
    compactions: Arc<AtomicU64>,
    /// Last, so it is released after `drop` has joined the writer (its final sync included).
    _dir_lock: DirLock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the data directory `dir`, replays it, and starts the
    /// writer. The report says what recovery found (print it: a torn tail is cut here).
    pub fn open(
        dir: impl AsRef<Path>,
        opts: Options,
    ) -> Result<(Store, RecoveryReport), OpenError> {
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let dir_lock = DirLock::acquire(&dir)?;
        let state = State::default();
        let mode = RecoveryMode {
            repair: opts.repair,
            read_only: false,
        };
        let rec = recovery::recover(&dir, &state, mode, opts.syncer.as_ref())?;
        let (file, number, len) = match rec.tail {
            Some((n, len)) => {
                let p = segment::path(&dir, n);
                let f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&p)
                    .map_err(io_at(&p))?;
                (f, n, len)
            }
            None => {
                let n = rec.next_segment;
                let f = segment::create(&dir, n, opts.syncer.as_ref())
                    .map_err(io_at(segment::path(&dir, n)))?;
                (f, n, crate::header::HEADER_LEN as u64)
            }
        };
        let health = Arc::new(Health::default());
        let stats = Arc::new(WriterStats::default());
        let compaction_lock = Arc::new(Mutex::new(()));
        let compactions = Arc::new(AtomicU64::new(0));
        let (ctx, crx) = bounded::<u64>(1);
        let compactor = spawn_compactor(
            dir.clone(),
            opts.syncer.clone(),
            health.clone(),
            compaction_lock.clone(),
            compactions.clone(),
            crx,
        )
        .map_err(io_at(&dir))?;
        let cfg = WriterConfig {
            dir: dir.clone(),
            file,
            segment: number,
            segment_len: len,
            segment_size: opts.segment_size.max(crate::header::HEADER_LEN as u64 + 1),
            policy: opts.fsync,
            syncer: opts.syncer.clone(),
            health: health.clone(),
            stats: stats.clone(),
            closed_bytes: rec.closed_bytes,
            snapshot_threshold: opts.snapshot_threshold,
            unawaited_sync_within: opts.unawaited_sync_within,
            compact: Some(ctx),
        };
        let (tx, rx) = unbounded();
        let writer = std::thread::Builder::new()
            .name("halyard-log-writer".into())
            .spawn(move || writer::run(cfg, rx))
            .map_err(io_at(&dir))?;
        let store = Store {
            dir,
            state,
            tx: Some(tx),
            writer: Some(writer),
            compactor: Some(compactor),
            health,
            stats,
            syncer: opts.syncer,
            compaction_lock,
            compactions,
            _dir_lock: dir_lock,
        };
        Ok((store, rec.report))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The in-memory state, for zero-copy reads (`with_tenant`) beyond the [`Backend`]
    /// queries.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The first write or fsync failure, if the log is poisoned.
    pub fn failure(&self) -> Option<String> {
        self.health.reason()
    }

    /// Counters since open.
    pub fn stats(&self) -> LogStats {
        let s = &self.stats;
        LogStats {
            appends: s.appends.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            fsync_seconds: s.fsync_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            bytes: s.bytes.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
            batch_records: s
                .batch_records
                .each_ref()
                .map(|c| c.load(Ordering::Relaxed)),
            fsync_us: s.fsync_us.each_ref().map(|c| c.load(Ordering::Relaxed)),
        }
    }

    /// Commits and blocks until the commit is durable (or failed). For offline tools,
    /// tests and the `--dev` seeding; handlers use [`Backend::commit`] with a completion.
    pub fn commit_wait(&self, tenant: &str, mutations: Vec<Mutation>) -> Result<(), StoreError> {
        crate::backend::commit_and_wait(self, tenant, mutations)
    }

    /// Closes the active segment and snapshots everything before it, now (tests, operator
    /// tooling). Runs on the calling thread.
    pub fn compact_now(&self) -> Result<CompactReport, StoreError> {
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        let (rtx, rrx) = bounded(1);
        tx.send(Request::Roll { reply: rtx })
            .map_err(|_| StoreError::Closed)?;
        let closed = rrx.recv().unwrap_or(Err(StoreError::Closed))?;
        let _g = self
            .compaction_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let r = snapshot::compact(&self.dir, closed, self.syncer.as_ref(), None)
            .map_err(|e| StoreError::Compaction(e.to_string()))?;
        self.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(r)
    }

    /// Encodes a transaction as one framed record. Done before taking any lock: the
    /// encoding and CRC are most of a commit's CPU and need no state.
    fn encode(tenant: &str, mutations: &[Mutation]) -> Result<Vec<u8>, StoreError> {
        // Grown from the header's size, a stream's 250 ms batch of events (a few KiB) was
        // reallocated and copied six or seven times.
        let hint: usize = mutations.iter().map(Mutation::size_hint).sum();
        let mut buf = Vec::with_capacity(FRAME_HEADER_LEN + tenant.len() + 8 + hint);
        buf.resize(FRAME_HEADER_LEN, 0);
        let mut e = Encoder::with_buffer(buf);
        Txn::encode_parts(tenant, mutations, &mut e);
        let mut rec = e.into_bytes();
        if rec.len() - FRAME_HEADER_LEN > MAX_PAYLOAD_LEN {
            return Err(StoreError::Invalid("transaction over 128 MiB".into()));
        }
        record::seal_in_place(RecordType::Txn, &mut rec, 0);
        Ok(rec)
    }
}

fn spawn_compactor(
    dir: PathBuf,
    syncer: Arc<dyn Syncer>,
    health: Arc<Health>,
    lock: Arc<Mutex<()>>,
    count: Arc<AtomicU64>,
    rx: Receiver<u64>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("halyard-log-compactor".into())
        .spawn(move || {
            while let Ok(upto) = rx.recv() {
                let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
                match snapshot::compact(&dir, upto, syncer.as_ref(), None) {
                    Ok(_) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    // A failed snapshot may hide a failed fsync or a corrupt closed segment:
                    // either way the operator must look, so readiness turns red.
                    Err(e) => health.poison(format!("compaction: {e}")),
                }
            }
        })
}

impl Drop for Store {
    fn drop(&mut self) {
        // Dropping the sender lets the writer drain, sync and exit; the writer owns the
        // compactor's sender, so the compactor exits after it.
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        if let Some(c) = self.compactor.take() {
            let _ = c.join();
        }
    }
}

impl Store {
    /// [`Backend::commit`], with or without a completion.
    fn append(
        &self,
        tenant: &str,
        mutations: Vec<Mutation>,
        done: Option<Completion>,
    ) -> Result<(), StoreError> {
        if !self.health.is_healthy() {
            return Err(StoreError::Poisoned(
                self.health.reason().unwrap_or_default(),
            ));
        }
        let tx = self.tx.as_ref().ok_or(StoreError::Closed)?;
        let record = Store::encode(tenant, &mutations)?;
        let mut shard = self.state.write_shard(tenant);
        shard.apply(tenant, mutations)?;
        // Enqueued while the shard is still locked: the next commit on this shard cannot
        // overtake this one on its way to the log.
        if let Err(e) = tx.send(Request::Append { record, done }) {
            self.health.poison("log writer stopped".into());
            if let Request::Append {
                done: Some(done), ..
            } = e.into_inner()
            {
                done(Err(StoreError::Closed));
            }
        }
        Ok(())
    }
}

impl Backend for Store {
    fn is_healthy(&self) -> bool {
        self.health.is_healthy()
    }

    fn log_metrics(&self) -> Option<LogMetrics> {
        Some(LogMetrics {
            log: self.stats(),
            disk: crate::disk_usage::disk_usage(&self.dir),
        })
    }

    fn commit(
        &self,
        tenant: &str,
        mutations: Vec<Mutation>,
        done: Completion,
    ) -> Result<(), StoreError> {
        self.append(tenant, mutations, Some(done))
    }

    fn commit_unawaited(&self, tenant: &str, mutations: Vec<Mutation>) -> Result<(), StoreError> {
        self.append(tenant, mutations, None)
    }

    crate::state_reads!(state);
    /// Holds the compaction lock for the whole copy, so that no file of the cut is deleted
    /// under it (the copy never has to start again) and the writer goes on unhindered.
    fn backup(&self, to: &Path, opts: &BackupOptions) -> Result<BackupReport, BackupError> {
        let _g = self
            .compaction_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        backup::take(&self.dir, to, opts)
    }
    fn expire_streams(&self, now_ms: u64, retention_ms: u64) -> Result<usize, StoreError> {
        crate::backend::delete_streams(self, self.state.expired_streams(now_ms, retention_ms))
    }
}
