//! Snapshots: a crash after every compaction step reopens with all data; deletions do not
//! survive; the writer triggers compaction past the threshold.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use halyard_storage::*;

const PAD: &str = "................................................................................................................";

/// Writes a varied state with enough data for several 4 KiB segments, including deletions.
fn populate(store: &Store, round: u64) {
    let sid = format!("ses_{round}");
    store
        .commit_wait(
            T,
            vec![
                Mutation::PutAgent(agent(P, &format!("agt_{round}"), &format!("bot-{round}"))),
                Mutation::PutSession(session(P, &sid, round)),
                Mutation::PutSecret(secret(P, &format!("sec_{round}"), &format!("S{round}"))),
            ],
        )
        .unwrap();
    for i in 0..30 {
        let m = message(
            &format!("msg_{round}_{i}"),
            &format!("message {i} of round {round} {PAD}"),
        );
        store
            .commit_wait(T, vec![Mutation::append_message(P, &sid, &m)])
            .unwrap();
    }
    // Deleted things must not come back from a snapshot.
    store
        .commit_wait(
            T,
            vec![
                Mutation::PutAgent(agent(P, "agt_tmp", "doomed")),
                Mutation::PutSecret(secret(P, "sec_tmp", "DOOMED")),
            ],
        )
        .unwrap();
    store
        .commit_wait(
            T,
            vec![
                Mutation::DeleteAgent {
                    project_id: P.into(),
                    id: "agt_tmp".into(),
                },
                Mutation::DeleteSecret {
                    project_id: P.into(),
                    name: "DOOMED".into(),
                },
            ],
        )
        .unwrap();
}

fn verify(store: &Store, rounds: u64) {
    for round in 0..rounds {
        let sid = format!("ses_{round}");
        assert!(store.agent_by_name(T, P, &format!("bot-{round}")).is_some());
        assert!(store.secret(T, P, &format!("S{round}")).is_some());
        let msgs = store.messages(T, P, &sid, Page::ALL).unwrap();
        assert_eq!(msgs.total, 30, "round {round}");
        assert_eq!(
            msgs.items[29].content,
            format!("message 29 of round {round} {PAD}")
        );
        assert_eq!(store.session(T, P, &sid).unwrap().message_count, 30);
    }
    assert!(store.agent_by_name(T, P, "doomed").is_none());
    assert!(store.secret(T, P, "DOOMED").is_none());
    assert_eq!(store.meta("jwt"), Some(b"secret".to_vec()));
    let listed: Vec<_> = store
        .sessions(T, P, &SessionFilter::default(), Page::ALL)
        .items
        .into_iter()
        .map(|s| s.id)
        .collect();
    let want: Vec<_> = (0..rounds).rev().map(|r| format!("ses_{r}")).collect();
    assert_eq!(listed, want);
}

fn files(dir: &Path, suffix: &str) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(suffix)
        })
        .count()
}

const STEPS: [CompactStep; 6] = [
    CompactStep::WriteTemp,
    CompactStep::SyncTemp,
    CompactStep::Rename,
    CompactStep::SyncDir,
    CompactStep::DeleteFirstCovered,
    CompactStep::DeleteCovered,
];

#[test]
fn crash_after_each_compaction_step_keeps_everything() {
    for (i, step) in STEPS.iter().enumerate() {
        let dir = TempDir::new("snap-step");
        let (store, _) = open(dir.path());
        seed(&store);
        store
            .commit_wait(
                "",
                vec![Mutation::SetMeta {
                    key: "jwt".into(),
                    value: b"secret".to_vec(),
                }],
            )
            .unwrap();
        populate(&store, 0);
        // An earlier snapshot exists for the later steps to replace.
        store.compact_now().unwrap();
        populate(&store, 1);
        drop(store);
        let segs = segments(dir.path());
        let upto =
            segment::parse_file_name(segs[segs.len() - 2].file_name().unwrap().to_str().unwrap())
                .unwrap();
        let r = snapshot::compact(dir.path(), upto, &OsSyncer, Some(*step)).unwrap();
        assert_eq!(r.stopped_after, Some(*step));
        if *step == CompactStep::WriteTemp {
            // Also a crash in the middle of writing the temp file.
            let tmp = dir
                .path()
                .join(format!("{}.tmp", snapshot::file_name(upto)));
            let len = fs::metadata(&tmp).unwrap().len();
            fs::OpenOptions::new()
                .write(true)
                .open(&tmp)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        }
        let (store, report) = open(dir.path());
        verify(&store, 2);
        assert_eq!(files(dir.path(), ".tmp"), 0, "step {i}: {report}");
        assert_eq!(files(dir.path(), ".snap"), 1, "step {i}: {report}");
        // Keeps working after the recovery: write more, reopen.
        populate(&store, 2);
        drop(store);
        let (store, _) = open(dir.path());
        verify(&store, 3);
    }
}

#[test]
fn snapshot_drops_deleted_resources_and_covered_segments() {
    let dir = TempDir::new("snap-delete");
    let (store, _) = open(dir.path());
    seed(&store);
    store
        .commit_wait(
            "",
            vec![Mutation::SetMeta {
                key: "jwt".into(),
                value: b"secret".to_vec(),
            }],
        )
        .unwrap();
    populate(&store, 0);
    let before = segments(dir.path()).len();
    let r = store.compact_now().unwrap();
    assert!(r.entries > 0);
    assert_eq!(segments(dir.path()).len(), 1, "{before} segments before");
    // The snapshot itself has no trace of the deleted agent.
    let snap = fs::read(snapshot::path(dir.path(), r.covers_through)).unwrap();
    assert!(!snap.windows(6).any(|w| w == b"doomed"));
    assert!(!snap.windows(6).any(|w| w == b"DOOMED"));
    drop(store);
    let (store, report) = open(dir.path());
    assert!(report.snapshot.is_some());
    verify(&store, 1);
}

#[test]
fn writer_compacts_past_the_threshold() {
    let dir = TempDir::new("snap-auto");
    let o = Options {
        segment_size: 4096,
        snapshot_threshold: 16 * 1024,
        ..Options::default()
    };
    let (store, _) = Store::open(dir.path(), o.clone()).unwrap();
    seed(&store);
    store
        .commit_wait(
            "",
            vec![Mutation::SetMeta {
                key: "jwt".into(),
                value: b"secret".to_vec(),
            }],
        )
        .unwrap();
    for round in 0..8 {
        populate(&store, round);
    }
    drop(store);
    assert!(files(dir.path(), ".snap") >= 1);
    assert!(segments(dir.path()).len() < 10);
    let (store, report) = Store::open(dir.path(), o).unwrap();
    assert!(report.snapshot.is_some(), "{report}");
    verify(&store, 8);
    assert!(store.is_healthy());
}

#[test]
fn corrupt_snapshot_is_an_error() {
    let dir = TempDir::new("snap-corrupt");
    let (store, _) = open(dir.path());
    seed(&store);
    store
        .commit_wait(
            "",
            vec![Mutation::SetMeta {
                key: "jwt".into(),
                value: b"secret".to_vec(),
            }],
        )
        .unwrap();
    populate(&store, 0);
    let r = store.compact_now().unwrap();
    drop(store);
    let p = snapshot::path(dir.path(), r.covers_through);
    let mut b = fs::read(&p).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x01;
    fs::write(&p, &b).unwrap();
    let err = Store::open(dir.path(), opts()).unwrap_err();
    assert!(err.to_string().contains("snap-"), "{err}");
}
