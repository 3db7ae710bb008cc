//! Format v1 data directories: read with all their data and upgraded to v2 on open.
//!
//! The fixture `tests/fixtures/v1/basic` was written by the v1 code (see its README): a v1
//! snapshot covering segment 1 and v1 segments 2 and 3, with two tenants, sessions,
//! messages, an API key, a secret, streams (one deleted) and server metadata.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use halyard_storage::record::{Format, Next};
use halyard_storage::*;

const A: &str = "ten_alpha";
const PA: &str = "proj_alpha";
const B: &str = "ten_beta";
const PB: &str = "proj_beta";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/basic")
}

/// A private copy of the fixture.
fn v1_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    copy_dir(&fixture(), dir.path());
    dir
}

/// Segment and snapshot files of a directory, sorted by name.
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log" || e == "snap"))
        .collect();
    v.sort();
    v
}

fn names(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Everything the v1 code wrote into the fixture is there.
fn assert_fixture_data(store: &Store) {
    assert_eq!(store.tenants(Page::ALL).total, 2);
    assert!(store.tenant(A).is_some() && store.tenant(B).is_some());
    assert_eq!(store.project(A, PA).unwrap().slug, "alpha");
    assert_eq!(store.project(B, PB).unwrap().slug, "beta");
    // The agent's text holds a whole v1 frame; it comes back byte for byte.
    let agent = store.agent(A, PA, "agt_alpha").expect("agent");
    let text = agent.instructions.unwrap();
    let frame = text
        .strip_prefix("frame-looking text: ")
        .expect("instructions");
    let (recs, end) = record::decode_format(Format::V1, frame.as_bytes());
    assert_eq!((recs.len(), end), (1, Next::End));
    assert!(store.api_key_by_digest(&[7; 32]).is_some());
    assert!(store.secret(A, PA, "API_TOKEN").is_some());
    let alpha = store.messages(A, PA, "ses_a1", Page::ALL).unwrap().items;
    let texts: Vec<&str> = alpha.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        texts,
        (0..5)
            .map(|i| format!("alpha message {i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(store.session(A, PA, "ses_a1").unwrap().message_count, 5);
    let beta = store.messages(B, PB, "ses_b1", Page::ALL).unwrap().items;
    assert_eq!(beta.len(), 12);
    assert_eq!(beta[11].id, "msg_b1_11");
    assert_eq!(store.session(B, PB, "ses_b1").unwrap().message_count, 12);
    let stream = store.stream_events_after(A, "str_a1", 0).expect("stream");
    assert_eq!(stream.owner, "usr_alpha");
    let ids: Vec<u64> = stream.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    assert_eq!(stream.events[5].data, "{\"delta\":\"w6\"}");
    assert!(store.stream_events_after(A, "str_a2", 0).is_none());
    assert_eq!(store.meta("jwt_secret"), Some(vec![9; 32]));
}

#[test]
fn fixture_is_v1() {
    let files = data_files(&fixture());
    assert_eq!(
        names(&files),
        [
            "00000000000000000002.log",
            "00000000000000000003.log",
            "snap-00000000000000000001.snap"
        ]
    );
    assert!(files.iter().all(|f| file_version(f) == 1));
}

#[test]
fn v1_directory_opens_with_all_its_data_and_is_v2_after() {
    let dir = v1_dir("upgrade");
    // A plain check reads v1 and writes nothing.
    let before: Vec<Vec<u8>> = data_files(dir.path())
        .iter()
        .map(|f| fs::read(f).unwrap())
        .collect();
    let report = check(dir.path(), false).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.recovery.v1_files, 3);
    assert_eq!((report.tenants, report.messages), (2, 17));
    assert!(report.to_string().contains("format v1"), "{report}");
    let after: Vec<Vec<u8>> = data_files(dir.path())
        .iter()
        .map(|f| fs::read(f).unwrap())
        .collect();
    assert_eq!(before, after);

    let (store, report) = Store::open(dir.path(), opts()).expect("v1 directory opens");
    assert_fixture_data(&store);
    let up = report.upgraded.as_ref().expect("upgraded");
    assert_eq!(names(&up.removed).len(), 3, "{report}");
    assert!(report.to_string().contains("upgraded format v1 to v2"));
    // The snapshot replaces every v1 file; the writer has started a v2 segment after it.
    let files = data_files(dir.path());
    assert_eq!(
        names(&files),
        ["00000000000000000004.log", "snap-00000000000000000003.snap"]
    );
    assert!(files.iter().all(|f| file_version(f) == 2));
    store
        .commit_wait(
            A,
            vec![Mutation::append_message(
                PA,
                "ses_a1",
                &message("msg_new", "v2"),
            )],
        )
        .unwrap();
    drop(store);

    // The next open is a plain v2 open.
    let (store, report) = Store::open(dir.path(), opts()).unwrap();
    assert!(
        report.upgraded.is_none() && report.v1_files == 0,
        "{report}"
    );
    assert!(report.torn.is_none() && report.corruption.is_empty());
    assert_eq!(store.session(A, PA, "ses_a1").unwrap().message_count, 6);
    assert_eq!(store.tenants(Page::ALL).total, 2);
}

#[test]
fn v1_torn_tail_is_cut_then_upgraded() {
    let dir = v1_dir("upgrade-torn");
    let last = dir.path().join(segment::file_name(3));
    let mut frame = Vec::new();
    record_v1::encode(record::RecordType::Txn, &[b'x'; 60], &mut frame);
    let mut bytes = fs::read(&last).unwrap();
    let len = bytes.len() as u64;
    bytes.extend_from_slice(&frame[..30]);
    fs::write(&last, &bytes).unwrap();
    let (store, report) = Store::open(dir.path(), opts()).unwrap();
    let torn = report.torn.as_ref().expect("torn tail");
    assert_eq!((torn.offset, torn.bytes_cut), (len, 30));
    assert!(report.upgraded.is_some());
    assert_fixture_data(&store);
}

#[test]
fn upgrade_interrupted_before_its_rename_is_done_again() {
    let dir = v1_dir("upgrade-before-rename");
    // The temporary snapshot of a crashed upgrade.
    let tmp = dir.path().join("snap-00000000000000000003.snap.tmp");
    fs::write(&tmp, b"partial").unwrap();
    let (store, report) = Store::open(dir.path(), opts()).unwrap();
    assert!(report.removed.contains(&tmp), "{report}");
    assert!(report.upgraded.is_some());
    assert_fixture_data(&store);
}

#[test]
fn upgrade_interrupted_after_its_rename_is_finished_by_recovery() {
    // Upgrade one copy to get the v2 snapshot, then put it beside the v1 files of another:
    // the state of a crash after the rename, before the deletions.
    let done = v1_dir("upgrade-done");
    let (store, _) = Store::open(done.path(), opts()).unwrap();
    drop(store);
    let snap = fs::read(done.path().join(snapshot::file_name(3))).unwrap();
    let dir = v1_dir("upgrade-after-rename");
    fs::write(dir.path().join(snapshot::file_name(3)), snap).unwrap();
    let (store, report) = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(report.snapshot.as_ref().unwrap().version, 2);
    assert_eq!(report.removed.len(), 3, "{report}");
    assert!(
        report.upgraded.is_none() && report.v1_files == 0,
        "{report}"
    );
    assert_fixture_data(&store);
    drop(store);
    assert!(data_files(dir.path()).iter().all(|f| file_version(f) == 2));
}

#[test]
fn check_repair_upgrades_as_open_would() {
    let dir = v1_dir("upgrade-check-repair");
    let report = check(dir.path(), true).unwrap();
    assert!(
        report.is_ok() && report.recovery.upgraded.is_some(),
        "{report}"
    );
    assert_eq!((report.tenants, report.messages), (2, 17));
    assert_eq!(
        names(&data_files(dir.path())),
        ["snap-00000000000000000003.snap"]
    );
    let (store, report) = Store::open(dir.path(), opts()).unwrap();
    assert!(report.upgraded.is_none());
    assert_fixture_data(&store);
}
