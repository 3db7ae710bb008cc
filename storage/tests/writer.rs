//! The writer: fsync before completion, group commit, poisoning on a failed fsync.

mod common;

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use halyard_storage::*;

/// Counts syncs and remembers the segment length at the last data sync.
#[derive(Default)]
struct CountingSyncer {
    data_syncs: AtomicU64,
    dir_syncs: AtomicU64,
    synced_len: AtomicU64,
    fail: AtomicBool,
}

impl Syncer for CountingSyncer {
    fn sync_data(&self, file: &File) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected EIO"));
        }
        file.sync_data()?;
        self.synced_len
            .store(file.metadata()?.len(), Ordering::SeqCst);
        self.data_syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.dir_syncs.fetch_add(1, Ordering::SeqCst);
        OsSyncer.sync_dir(dir)
    }
}

fn open_with(dir: &Path, syncer: Arc<CountingSyncer>, fsync: FsyncPolicy) -> Store {
    open_lazy(dir, syncer, fsync, UNAWAITED_SYNC_WITHIN)
}

fn open_lazy(
    dir: &Path,
    syncer: Arc<CountingSyncer>,
    fsync: FsyncPolicy,
    unawaited_sync_within: Duration,
) -> Store {
    let o = Options {
        fsync,
        unawaited_sync_within,
        segment_size: 1 << 20,
        snapshot_threshold: u64::MAX,
        syncer,
        ..Options::default()
    };
    Store::open(dir, o).unwrap().0
}

#[test]
fn fsync_always_syncs_before_every_completion() {
    let dir = TempDir::new("fsync-always");
    let syncer = Arc::new(CountingSyncer::default());
    let store = open_with(dir.path(), syncer.clone(), FsyncPolicy::Always);
    seed(&store);
    store
        .commit_wait(T, vec![Mutation::PutSession(session(P, "ses_1", 1))])
        .unwrap();
    let seg = segments(dir.path()).pop().unwrap();
    let checked = Arc::new(AtomicU64::new(0));
    for i in 0..50 {
        let before = syncer.data_syncs.load(Ordering::SeqCst);
        let (s, seg, checked) = (syncer.clone(), seg.clone(), checked.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let m = message(&format!("msg_{i}"), "hello");
        store
            .commit(
                T,
                vec![Mutation::append_message(P, "ses_1", &m)],
                Box::new(move |r| {
                    // Runs on the writer right after the batch: everything in the file must
                    // already be covered by a data sync that happened after the commit.
                    let len = std::fs::metadata(&seg).unwrap().len();
                    assert!(s.data_syncs.load(Ordering::SeqCst) > before);
                    assert_eq!(s.synced_len.load(Ordering::SeqCst), len);
                    checked.fetch_add(1, Ordering::SeqCst);
                    tx.send(r).unwrap();
                }),
            )
            .unwrap();
        rx.recv().unwrap().unwrap();
    }
    assert_eq!(checked.load(Ordering::SeqCst), 50);
    assert!(store.stats().fsyncs >= 50);
    // Creating the first segment synced the directory.
    assert!(syncer.dir_syncs.load(Ordering::SeqCst) >= 1);
}

/// Waits (bounded) until `done` holds.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn an_unawaited_commit_is_synced_by_the_next_awaited_one() {
    let dir = TempDir::new("unawaited");
    let syncer = Arc::new(CountingSyncer::default());
    let hour = Duration::from_secs(3600);
    let store = open_lazy(dir.path(), syncer.clone(), FsyncPolicy::Always, hour);
    seed(&store);
    store
        .commit_wait(T, vec![Mutation::PutSession(session(P, "ses_1", 1))])
        .unwrap();
    let seg = segments(dir.path()).pop().unwrap();
    let len = || std::fs::metadata(&seg).unwrap().len();
    let (syncs, written) = (syncer.data_syncs.load(Ordering::SeqCst), len());
    for i in 0..10 {
        let m = message(&format!("msg_{i}"), "not awaited");
        store
            .commit_unawaited(T, vec![Mutation::append_message(P, "ses_1", &m)])
            .unwrap();
    }
    // Written at once (reads and a crash-free restart see it), but not synced on its own.
    let listed = store.messages(T, P, "ses_1", Page::default()).unwrap();
    assert_eq!(listed.items.len(), 10);
    wait_until("the records are written", || len() > written);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(syncer.data_syncs.load(Ordering::SeqCst), syncs);
    // The awaited commit's one sync covers everything before it.
    let m = message("msg_reply", "awaited");
    store
        .commit_wait(T, vec![Mutation::append_message(P, "ses_1", &m)])
        .unwrap();
    assert_eq!(syncer.data_syncs.load(Ordering::SeqCst), syncs + 1);
    assert_eq!(syncer.synced_len.load(Ordering::SeqCst), len());
}

#[test]
fn an_unawaited_commit_alone_is_synced_on_time() {
    let dir = TempDir::new("unawaited-alone");
    let syncer = Arc::new(CountingSyncer::default());
    let within = Duration::from_millis(20);
    let store = open_lazy(dir.path(), syncer.clone(), FsyncPolicy::Always, within);
    seed(&store);
    let seg = segments(dir.path()).pop().unwrap();
    let m = Mutation::SetMeta {
        key: "k".into(),
        value: vec![1],
    };
    store.commit_unawaited("", vec![m]).unwrap();
    let len = || std::fs::metadata(&seg).unwrap().len();
    wait_until("the record is synced", || {
        syncer.synced_len.load(Ordering::SeqCst) == len()
    });
}

#[test]
fn fsync_never_does_not_sync_batches() {
    let dir = TempDir::new("fsync-never");
    let syncer = Arc::new(CountingSyncer::default());
    let store = open_with(dir.path(), syncer.clone(), FsyncPolicy::Never);
    let base = syncer.data_syncs.load(Ordering::SeqCst);
    seed(&store);
    for i in 0..20 {
        let m = Mutation::SetMeta {
            key: format!("k{i}"),
            value: vec![1],
        };
        store.commit_wait("", vec![m]).unwrap();
    }
    assert_eq!(syncer.data_syncs.load(Ordering::SeqCst), base);
    drop(store);
    let (store, _) = open(dir.path());
    assert_eq!(store.meta("k19"), Some(vec![1]));
}

#[test]
fn fsync_interval_syncs_on_time() {
    let dir = TempDir::new("fsync-interval");
    let syncer = Arc::new(CountingSyncer::default());
    let policy: FsyncPolicy = "interval:20".parse().unwrap();
    let store = open_with(dir.path(), syncer.clone(), policy);
    let base = syncer.data_syncs.load(Ordering::SeqCst);
    seed(&store);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(syncer.data_syncs.load(Ordering::SeqCst) > base);
}

#[test]
fn failed_fsync_poisons_the_log() {
    let dir = TempDir::new("poison");
    let syncer = Arc::new(CountingSyncer::default());
    let store = open_with(dir.path(), syncer.clone(), FsyncPolicy::Always);
    seed(&store);
    assert!(store.is_healthy());
    syncer.fail.store(true, Ordering::SeqCst);
    let err = store
        .commit_wait(T, vec![Mutation::PutProject(project("proj_b", "b"))])
        .unwrap_err();
    assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
    assert!(!store.is_healthy());
    assert!(store.failure().unwrap().contains("injected EIO"));
    // Even once the disk "recovers", the log refuses writes.
    syncer.fail.store(false, Ordering::SeqCst);
    let err = store
        .commit_wait(T, vec![Mutation::PutProject(project("proj_c", "c"))])
        .unwrap_err();
    assert!(matches!(err, StoreError::Poisoned(_)));
}

#[test]
fn pending_appends_fail_after_poison() {
    let dir = TempDir::new("poison-pending");
    let syncer = Arc::new(CountingSyncer::default());
    let store = Arc::new(open_with(dir.path(), syncer.clone(), FsyncPolicy::Always));
    seed(&store);
    syncer.fail.store(true, Ordering::SeqCst);
    let results = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (store, results) = (store.clone(), results.clone());
            std::thread::spawn(move || {
                let m = Mutation::SetMeta {
                    key: format!("k{i}"),
                    value: vec![],
                };
                let r = store.commit_wait("", vec![m]);
                results.lock().unwrap().push(r);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let results = results.lock().unwrap();
    assert_eq!(results.len(), 8);
    assert!(results
        .iter()
        .all(|r| matches!(r, Err(StoreError::Poisoned(_)))));
}

#[test]
fn group_commit_batches_concurrent_appends() {
    let dir = TempDir::new("group");
    let syncer = Arc::new(CountingSyncer::default());
    let store = Arc::new(open_with(dir.path(), syncer.clone(), FsyncPolicy::Always));
    seed(&store);
    let before = store.stats();
    let handles: Vec<_> = (0..32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let m = Mutation::SetMeta {
                        key: format!("k{t}_{i}"),
                        value: vec![0; 200],
                    };
                    store.commit_wait("", vec![m]).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let after = store.stats();
    let appends = after.appends - before.appends;
    let fsyncs = after.fsyncs - before.fsyncs;
    assert_eq!(appends, 32 * 50);
    assert!(fsyncs < appends, "{fsyncs} fsyncs for {appends} appends");
    drop(store);
    let (store, _) = open(dir.path());
    assert!(store.meta("k31_49").is_some());
}

#[test]
fn segments_roll_and_replay() {
    let dir = TempDir::new("roll");
    let syncer = Arc::new(CountingSyncer::default());
    let o = Options {
        segment_size: 2048,
        snapshot_threshold: u64::MAX,
        syncer: syncer.clone(),
        ..Options::default()
    };
    let (store, _) = Store::open(dir.path(), o.clone()).unwrap();
    seed(&store);
    store
        .commit_wait(T, vec![Mutation::PutSession(session(P, "ses_1", 1))])
        .unwrap();
    let dir_syncs = syncer.dir_syncs.load(Ordering::SeqCst);
    for i in 0..100 {
        let m = message(&format!("msg_{i}"), &"y".repeat(100));
        store
            .commit_wait(T, vec![Mutation::append_message(P, "ses_1", &m)])
            .unwrap();
    }
    // A record bigger than a segment still fits (in a segment of its own).
    let big = message("msg_big", &"z".repeat(10_000));
    store
        .commit_wait(T, vec![Mutation::append_message(P, "ses_1", &big)])
        .unwrap();
    drop(store);
    let n = segments(dir.path()).len();
    assert!(n > 5, "{n} segments");
    // Every new segment synced the directory.
    assert!(syncer.dir_syncs.load(Ordering::SeqCst) >= dir_syncs + n as u64 - 1);
    let (store, report) = Store::open(dir.path(), o).unwrap();
    assert_eq!(report.segments, n as u64);
    let msgs = store.messages(T, P, "ses_1", Page::ALL).unwrap();
    assert_eq!(msgs.total, 101);
    assert_eq!(msgs.items[100].content.len(), 10_000);
    assert_eq!(msgs.items[7].id, "msg_7");
}
