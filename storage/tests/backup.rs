//! Online backups: a consistent cut of a directory that a store is writing, and restores
//! that check every file before using it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use halyard_storage::backup::{self, BackupError, BackupOptions};
use halyard_storage::*;

/// Small segments and a low snapshot threshold: the store rolls and compacts in the
/// background all the time, so backups race with both.
fn busy_opts() -> Options {
    Options {
        segment_size: 2048,
        snapshot_threshold: 8 * 1024,
        fsync: FsyncPolicy::Never,
        ..Options::default()
    }
}

/// Commits projects from a thread until stopped; every acknowledged id is recorded.
struct Load {
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(store: Arc<Store>) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                let id = format!("proj_load_{i}");
                let p = project(&id, &format!("load-{i}"));
                if store.commit_wait(T, vec![Mutation::PutProject(p)]).is_ok() {
                    a.lock().unwrap().push(id);
                }
                i += 1;
            }
        });
        Load {
            acked,
            stop,
            handle: Some(handle),
        }
    }

    fn acked(&self) -> Vec<String> {
        self.acked.lock().unwrap().clone()
    }

    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.acked.lock().unwrap().len() < n {
            assert!(Instant::now() < deadline, "the load did not get going");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Restores `from` into a new directory under `root`, checks it, opens it, and asserts it
/// holds every project of `expected`.
fn restore_and_verify(from: &Path, root: &Path, tag: &str, expected: &[String]) {
    let to = root.join(format!("restored-{tag}"));
    let report = backup::restore(from, &to).expect("restore");
    assert!(report.check.is_ok(), "{report}");
    let checked = check(&to, false).expect("check");
    assert!(
        checked.is_ok() && checked.recovery.torn.is_none(),
        "{checked}"
    );
    let (store, rec) = Store::open(&to, opts()).expect("the restored directory opens");
    assert_eq!(rec.rejected, 0);
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| store.project(T, id).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{tag}: acknowledged before the backup, missing: {missing:?}"
    );
}

#[test]
fn backups_under_write_load_hold_every_write_acknowledged_before_they_began() {
    let root = TempDir::new("backup-load");
    let data = root.path().join("data");
    let (store, _) = Store::open(&data, busy_opts()).expect("open");
    let store = Arc::new(store);
    seed(&store);
    let load = Load::start(store.clone());
    let mut taken = Vec::new();
    for round in 0..6 {
        load.wait_for(100 * (round + 1));
        let before = load.acked();
        let out = root.path().join(format!("backup-{round}"));
        // Even rounds: the CLI's way, from outside, without the lock; odd rounds: the
        // store's own, holding its compaction lock.
        let report = if round % 2 == 0 {
            backup::take(&data, &out, &BackupOptions::default()).expect("backup")
        } else {
            store
                .backup(&out, &BackupOptions::default())
                .expect("backup")
        };
        assert_eq!(report.path, out);
        assert!(report.files >= 1 && report.bytes > 0, "{report}");
        assert!(!root.path().join(format!("backup-{round}.tmp")).exists());
        taken.push((out, before));
    }
    drop(load);
    assert!(
        store.stats().compactions > 0,
        "no compaction ran during the backups"
    );
    drop(store);
    for (i, (out, before)) in taken.iter().enumerate() {
        restore_and_verify(out, root.path(), &i.to_string(), before);
    }
}

/// A finished backup of a small directory, and the directory it is under.
fn small_backup(tag: &str) -> (TempDir, PathBuf) {
    let root = TempDir::new(tag);
    let data = root.path().join("data");
    {
        let (store, _) = Store::open(&data, opts()).expect("open");
        seed(&store);
        for i in 0..40 {
            let p = project(&format!("proj_{i}"), &format!("p-{i}"));
            store.commit_wait(T, vec![Mutation::PutProject(p)]).unwrap();
        }
        store.compact_now().unwrap();
        store
            .commit_wait(T, vec![Mutation::PutProject(project("proj_tail", "tail"))])
            .unwrap();
    }
    std::fs::write(data.join("master.key"), b"key-bytes").unwrap();
    let out = root.path().join("backup");
    let opts = BackupOptions {
        extra_files: vec!["master.key".into()],
        ..BackupOptions::default()
    };
    let report = backup::take(&data, &out, &opts).expect("backup");
    assert!(report.snapshot.is_some(), "{report}");
    assert!(out.join("master.key").exists());
    (root, out)
}

fn segment_of(dir: &Path) -> PathBuf {
    segments(dir).pop().expect("a segment")
}

#[test]
fn a_backup_never_overwrites_and_restores_with_its_extra_files() {
    let (root, out) = small_backup("backup-basic");
    let again = backup::take(&root.path().join("data"), &out, &BackupOptions::default());
    assert!(matches!(again, Err(BackupError::Exists(_))), "{again:?}");
    let to = root.path().join("restored");
    std::fs::create_dir(&to).unwrap(); // an empty directory is fine
    backup::restore(&out, &to).expect("restore");
    assert_eq!(std::fs::read(to.join("master.key")).unwrap(), b"key-bytes");
    assert!(!to.join("MANIFEST").exists());
    let (store, _) = Store::open(&to, opts()).unwrap();
    assert!(store.project(T, "proj_39").is_some());
    assert!(store.project(T, "proj_tail").is_some());
}

#[test]
fn a_restore_refuses_a_non_empty_directory() {
    let (root, out) = small_backup("backup-nonempty");
    let to = root.path().join("busy");
    std::fs::create_dir(&to).unwrap();
    std::fs::write(to.join("something"), b"x").unwrap();
    let r = backup::restore(&out, &to);
    assert!(matches!(r, Err(BackupError::NotEmpty(_))), "{r:?}");
    assert_eq!(std::fs::read(to.join("something")).unwrap(), b"x");
}

/// Damages a copy of the backup with `harm`, and asserts the restore refuses it and
/// leaves no data directory behind.
fn refused(tag: &str, harm: impl FnOnce(&Path)) -> BackupError {
    let (root, out) = small_backup(tag);
    harm(&out);
    let to = root.path().join("restored");
    let err = backup::restore(&out, &to).expect_err("a damaged backup restored");
    assert!(!to.exists(), "{tag}: a data directory was left behind");
    assert!(!root.path().join("restored.restore.tmp").exists());
    err
}

#[test]
fn a_restore_refuses_a_flipped_byte_a_cut_segment_an_extra_file_or_a_bad_manifest() {
    let e = refused("flip", |out| {
        let seg = segment_of(out);
        let mut b = std::fs::read(&seg).unwrap();
        let i = b.len() - 3;
        b[i] ^= 0x40;
        std::fs::write(&seg, b).unwrap();
    });
    assert!(matches!(e, BackupError::Damaged { .. }), "{e}");
    // Cut at a record boundary: every record still checks out, only the manifest knows.
    let e = refused("cut", |out| {
        let seg = segment_of(out);
        let b = std::fs::read(&seg).unwrap();
        let scan = recover_segment_bytes(&b);
        assert!(scan.records > 0);
        std::fs::write(&seg, &b[..32]).unwrap();
    });
    assert!(e.to_string().contains("manifest says"), "{e}");
    let e = refused("extra", |out| {
        std::fs::write(out.join("00000000000000000099.log"), b"x").unwrap();
    });
    assert!(
        e.to_string().contains("not in the backup's manifest"),
        "{e}"
    );
    let e = refused("manifest", |out| {
        let m = out.join("MANIFEST");
        let text = std::fs::read_to_string(&m).unwrap();
        std::fs::write(&m, text.replacen("file ", "file  ", 1)).unwrap();
    });
    assert!(matches!(e, BackupError::Manifest { .. }), "{e}");
    let e = refused("snapshot", |out| {
        let snap = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "snap"))
            .expect("a snapshot");
        std::fs::remove_file(snap).unwrap();
    });
    assert!(matches!(e, BackupError::Io { .. }), "{e}");
}
