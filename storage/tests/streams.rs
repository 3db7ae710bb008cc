//! Streams: batched events (apply rules, replay, resume reads, snapshots), start times and
//! expiry, and that expired streams leave the disk at the next compaction.

mod common;

use std::path::Path;

use common::*;
use halyard_storage::*;

const RETENTION: u64 = 86_400_000;
const NOW: u64 = 1_700_000_000_000;

fn tok(id: u64) -> StreamEvent {
    StreamEvent {
        id,
        event: "token".into(),
        data: format!(r#"{{"delta":" word","index":{id}}}"#),
    }
}

fn start(stream_id: &str, created_at: u64) -> Mutation {
    Mutation::StartStream {
        stream_id: stream_id.into(),
        owner: "usr_1".into(),
        created_at,
        node: String::new(),
    }
}

fn batch(stream_id: &str, ids: impl IntoIterator<Item = u64>) -> Mutation {
    Mutation::AppendStreamEvents {
        stream_id: stream_id.into(),
        events: ids.into_iter().map(tok).collect(),
    }
}

fn ids(store: &Store, stream_id: &str, after: u64) -> Vec<u64> {
    let replay = store.stream_events_after(T, stream_id, after).unwrap();
    replay.events.iter().map(|e| e.id).collect()
}

fn created_at(store: &Store, stream_id: &str) -> Option<u64> {
    store
        .state()
        .with_tenant(T, |t| t.streams.get(stream_id).map(|s| s.created_at))
        .flatten()
}

fn invalid(r: Result<(), StoreError>) {
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
}

#[test]
fn batch_to_an_unknown_stream_is_not_found() {
    let dir = TempDir::new("str-404");
    let (store, _) = open(dir.path());
    seed(&store);
    let r = store.commit_wait(T, vec![batch("str_none", [1, 2])]);
    assert_eq!(
        r,
        Err(StoreError::NotFound {
            what: "stream",
            id: "str_none".into()
        })
    );
    let r = store.commit_wait("ten_none", vec![batch("str_none", [1])]);
    assert!(matches!(
        r,
        Err(StoreError::NotFound { what: "tenant", .. })
    ));
}

#[test]
fn batch_ids_must_increase_past_the_stored_ones_or_nothing_is_applied() {
    let dir = TempDir::new("str-order");
    let (store, _) = open(dir.path());
    seed(&store);
    store
        .commit_wait(T, vec![start("str_1", NOW), batch("str_1", 1..=3)])
        .unwrap();
    // Not increasing within the batch, equal to the last stored id, below it.
    invalid(store.commit_wait(T, vec![batch("str_1", [4, 6, 5])]));
    invalid(store.commit_wait(T, vec![batch("str_1", [4, 4])]));
    invalid(store.commit_wait(T, vec![batch("str_1", [3, 4])]));
    invalid(store.commit_wait(T, vec![batch("str_1", [1])]));
    // The single-event form follows the same rule.
    let old = Mutation::AppendStreamEvent {
        stream_id: "str_1".into(),
        event: tok(2),
    };
    invalid(store.commit_wait(T, vec![old]));
    // A refused batch later in a transaction undoes the earlier ones.
    let txn = vec![batch("str_1", 4..=5), batch("str_1", [5, 6])];
    invalid(store.commit_wait(T, txn));
    assert_eq!(ids(&store, "str_1", 0), [1, 2, 3]);
    // Gaps are allowed, an empty batch changes nothing.
    store
        .commit_wait(T, vec![batch("str_1", [7, 9]), batch("str_1", [])])
        .unwrap();
    assert_eq!(ids(&store, "str_1", 0), [1, 2, 3, 7, 9]);
    // Refused commits never reached the log.
    drop(store);
    let (store, report) = open(dir.path());
    assert_eq!(ids(&store, "str_1", 0), [1, 2, 3, 7, 9]);
    assert_eq!(report.rejected, 0);
}

/// Commits a stream's 1..=total events in batches of the given sizes (cycled).
fn stream_in_batches(store: &Store, stream_id: &str, total: u64, sizes: &[u64]) {
    store.commit_wait(T, vec![start(stream_id, NOW)]).unwrap();
    let mut next = 1;
    for &size in sizes.iter().cycle() {
        if next > total {
            break;
        }
        let end = (next + size - 1).min(total);
        store
            .commit(T, vec![batch(stream_id, next..=end)], Box::new(|_| {}))
            .unwrap();
        next = end + 1;
    }
}

#[test]
fn batched_events_replay_in_order_after_reopen() {
    let dir = TempDir::new("str-replay");
    let (store, _) = open(dir.path());
    seed(&store);
    // Two streams interleaved, batches across 4 KiB segment boundaries, and events of
    // the single-event form mixed in.
    store
        .commit_wait(T, vec![start("str_a", NOW), start("str_b", NOW + 1)])
        .unwrap();
    for round in 0..30u64 {
        let base = round * 20;
        store
            .commit_wait(T, vec![batch("str_a", base + 1..=base + 19)])
            .unwrap();
        let single = Mutation::AppendStreamEvent {
            stream_id: "str_a".into(),
            event: tok(base + 20),
        };
        store
            .commit_wait(T, vec![single, batch("str_b", [round + 1])])
            .unwrap();
    }
    let want_a: Vec<StreamEvent> = (1..=600).map(tok).collect();
    drop(store);
    let (store, _) = open(dir.path());
    assert!(segments(dir.path()).len() > 3);
    assert_eq!(
        store.stream_events_after(T, "str_a", 0).unwrap().events,
        want_a
    );
    assert_eq!(ids(&store, "str_b", 0), (1..=30).collect::<Vec<_>>());
    assert_eq!(created_at(&store, "str_b"), Some(NOW + 1));
}

#[test]
fn resume_reads_see_each_batched_event_exactly_once() {
    let dir = TempDir::new("str-after");
    let (store, _) = open(dir.path());
    seed(&store);
    stream_in_batches(&store, "str_1", 100, &[1, 3, 20, 7, 2]);
    let check = |store: &Store| {
        for after in 0..=101 {
            let want: Vec<u64> = (after + 1..=100).collect();
            assert_eq!(ids(store, "str_1", after), want, "after {after}");
        }
    };
    check(&store);
    drop(store);
    let (store, _) = open(dir.path());
    check(&store);
}

#[test]
fn snapshot_keeps_stream_times_and_events() {
    let dir = TempDir::new("str-snap");
    let (store, _) = open(dir.path());
    seed(&store);
    stream_in_batches(&store, "str_new", 250, &[20]);
    // Written by an earlier version: no start time, events one by one.
    let legacy_start = Mutation::StartStream {
        stream_id: "str_legacy".into(),
        owner: "usr_2".into(),
        created_at: 0,
        node: String::new(),
    };
    store.commit_wait(T, vec![legacy_start]).unwrap();
    for id in 1..=3 {
        let ev = Mutation::AppendStreamEvent {
            stream_id: "str_legacy".into(),
            event: tok(id),
        };
        store.commit_wait(T, vec![ev]).unwrap();
    }
    store
        .commit_wait(T, vec![start("str_empty", NOW + 5)])
        .unwrap();
    // Over 1 MiB of events: the snapshot writes it as several batches.
    let large = |id: u64| StreamEvent {
        id,
        event: "token".into(),
        data: format!("{id}{}", "y".repeat(1000)),
    };
    store.commit_wait(T, vec![start("str_large", NOW)]).unwrap();
    for chunk in 0..15u64 {
        let events = (chunk * 100 + 1..=chunk * 100 + 100).map(large).collect();
        let m = Mutation::AppendStreamEvents {
            stream_id: "str_large".into(),
            events,
        };
        store.commit(T, vec![m], Box::new(|_| {})).unwrap();
    }
    let report = store.compact_now().unwrap();
    assert!(report.removed > 0);
    drop(store);
    let (store, _) = open(dir.path());
    let new = store.stream_events_after(T, "str_new", 0).unwrap();
    assert_eq!(new.owner, "usr_1");
    assert_eq!(new.events, (1..=250).map(tok).collect::<Vec<_>>());
    assert_eq!(created_at(&store, "str_new"), Some(NOW));
    assert_eq!(ids(&store, "str_legacy", 0), [1, 2, 3]);
    assert_eq!(created_at(&store, "str_legacy"), Some(0));
    assert_eq!(ids(&store, "str_empty", 0), Vec::<u64>::new());
    assert_eq!(created_at(&store, "str_empty"), Some(NOW + 5));
    let large_events = store.stream_events_after(T, "str_large", 0).unwrap().events;
    assert_eq!(large_events, (1..=1500).map(large).collect::<Vec<_>>());
    // Appending after the snapshot continues from the restored last id.
    invalid(store.commit_wait(T, vec![batch("str_new", [250])]));
    store.commit_wait(T, vec![batch("str_new", [251])]).unwrap();
}

#[test]
fn expiry_deletes_only_streams_past_their_retention() {
    let dir = TempDir::new("str-expire");
    let (store, _) = open(dir.path());
    seed(&store);
    store
        .commit_wait(
            "ten_b",
            vec![
                Mutation::PutTenant(tenant("ten_b")),
                start("str_b_old", NOW - RETENTION - 1),
            ],
        )
        .unwrap();
    let streams = [
        start("str_old", 1),
        start("str_edge", NOW - RETENTION),
        start("str_young", NOW - RETENTION + 1),
        start("str_legacy", 0),
        batch("str_old", 1..=5),
    ];
    store.commit_wait(T, streams.to_vec()).unwrap();

    assert_eq!(store.expire_streams(NOW, RETENTION).unwrap(), 3);
    assert!(store.stream_events_after(T, "str_old", 0).is_none());
    assert!(store.stream_events_after(T, "str_edge", 0).is_none());
    assert!(store.stream_events_after("ten_b", "str_b_old", 0).is_none());
    assert!(store.stream_events_after(T, "str_young", 0).is_some());
    // The legacy stream is kept and given this sweep's time.
    assert_eq!(created_at(&store, "str_legacy"), Some(NOW));
    assert_eq!(store.expire_streams(NOW, RETENTION).unwrap(), 0);

    assert_eq!(store.expire_streams(NOW + 1, RETENTION).unwrap(), 1);
    assert!(store.stream_events_after(T, "str_young", 0).is_none());
    assert_eq!(
        store
            .expire_streams(NOW + RETENTION - 1, RETENTION)
            .unwrap(),
        0
    );
    assert_eq!(store.expire_streams(NOW + RETENTION, RETENTION).unwrap(), 1);
    assert!(store.stream_events_after(T, "str_legacy", 0).is_none());

    // The deletions are in the log.
    drop(store);
    let (store, _) = open(dir.path());
    let left = store.state().with_tenant(T, |t| t.streams.len());
    assert_eq!(left, Some(0));
}

fn dir_bytes(dir: &Path) -> u64 {
    let files = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap());
    files.map(|e| e.metadata().unwrap().len()).sum()
}

/// Whether any file of the directory contains `needle`.
fn on_disk(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[test]
fn expired_streams_leave_the_disk_at_the_next_compaction() {
    let dir = TempDir::new("str-reclaim");
    let (store, _) = open(dir.path());
    seed(&store);
    let big = |id: u64| StreamEvent {
        id,
        event: "token".into(),
        data: format!("doomed-{id:04}-{}", "x".repeat(500)),
    };
    store.commit_wait(T, vec![start("str_doomed", 1)]).unwrap();
    for chunk in 0..10u64 {
        let events = (chunk * 20 + 1..=chunk * 20 + 20).map(big).collect();
        let m = Mutation::AppendStreamEvents {
            stream_id: "str_doomed".into(),
            events,
        };
        store.commit_wait(T, vec![m]).unwrap();
    }
    stream_in_batches(&store, "str_kept", 40, &[20]);
    let before = dir_bytes(dir.path());
    assert!(before > 100_000, "{before}");

    assert_eq!(store.expire_streams(NOW, RETENTION).unwrap(), 1);
    store.compact_now().unwrap();
    let after = dir_bytes(dir.path());
    assert!(after < 10_000, "{before} -> {after}");
    assert!(!on_disk(dir.path(), b"str_doomed"));
    assert!(!on_disk(dir.path(), b"doomed-0001"));
    assert!(on_disk(dir.path(), b"str_kept"));

    drop(store);
    let (store, _) = open(dir.path());
    assert!(store.stream_events_after(T, "str_doomed", 0).is_none());
    assert_eq!(ids(&store, "str_kept", 0), (1..=40).collect::<Vec<_>>());
}
