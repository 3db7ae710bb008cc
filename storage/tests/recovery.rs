//! Recovery: torn tails cut at every offset, corruption detected and named, repair, check.

mod common;

use std::fs;

use common::*;
use halyard_storage::*;

/// Writes `n` messages into a fresh store; returns the single segment's bytes and the file
/// offset where the last record starts.
fn build(dir: &std::path::Path, n: usize) -> (std::path::PathBuf, Vec<u8>, usize) {
    let o = Options {
        segment_size: 1 << 20,
        snapshot_threshold: u64::MAX,
        ..Options::default()
    };
    let (store, _) = Store::open(dir, o).unwrap();
    seed(&store);
    store
        .commit_wait(T, vec![Mutation::PutSession(session(P, "ses_1", 1))])
        .unwrap();
    for i in 0..n {
        let m = message(&format!("msg_{i}"), &format!("content {i}"));
        store
            .commit_wait(T, vec![Mutation::append_message(P, "ses_1", &m)])
            .unwrap();
    }
    drop(store);
    let segs = segments(dir);
    assert_eq!(segs.len(), 1);
    let bytes = fs::read(&segs[0]).unwrap();
    let (recs, end) = record::decode(&bytes[header::HEADER_LEN..]);
    assert_eq!(end, record::Next::End);
    let last = header::HEADER_LEN + recs.last().unwrap().offset;
    (segs[0].clone(), bytes, last)
}

fn message_count(store: &Store) -> usize {
    store
        .messages(T, P, "ses_1", Page::ALL)
        .map_or(0, |l| l.items.len())
}

#[test]
fn torn_tail_cut_at_every_offset_of_the_last_record() {
    let dir = TempDir::new("torn");
    let (seg, bytes, last) = build(dir.path(), 5);
    for cut in last..bytes.len() {
        fs::write(&seg, &bytes[..cut]).unwrap();
        let (store, report) = Store::open(dir.path(), opts()).unwrap();
        assert_eq!(message_count(&store), 4, "cut at {cut}");
        let s = store.session(T, P, "ses_1").unwrap();
        assert_eq!(s.message_count, 4);
        if cut > last {
            let torn = report.torn.expect("torn tail reported");
            assert_eq!(torn.offset, last as u64);
            assert_eq!(torn.bytes_cut, (cut - last) as u64);
        } else {
            assert!(report.torn.is_none());
        }
        // The store appends after the cut and the result reopens cleanly.
        store
            .commit_wait(
                T,
                vec![Mutation::append_message(
                    P,
                    "ses_1",
                    &message("msg_new", "n"),
                )],
            )
            .unwrap();
        drop(store);
        let (store, report) = Store::open(dir.path(), opts()).unwrap();
        assert!(report.torn.is_none(), "cut at {cut}: {report}");
        assert_eq!(message_count(&store), 5);
        drop(store);
    }
}

#[test]
fn zero_filled_tail_is_torn() {
    let dir = TempDir::new("zeros");
    let (seg, mut bytes, _) = build(dir.path(), 3);
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&seg, &bytes).unwrap();
    let (store, report) = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(message_count(&store), 3);
    assert_eq!(report.torn.unwrap().bytes_cut, 4096);
}

#[test]
fn flipped_bit_in_the_middle_is_detected_and_named() {
    let dir = TempDir::new("flip");
    let (seg, bytes, _) = build(dir.path(), 20);
    // Every byte of a record in the middle: length, CRC, type and payload.
    let (recs, _) = record::decode(&bytes[header::HEADER_LEN..]);
    let mid = recs[recs.len() / 2];
    let start = header::HEADER_LEN + mid.offset;
    for pos in start..header::HEADER_LEN + mid.end() {
        let mut damaged = bytes.clone();
        damaged[pos] ^= 0x10;
        fs::write(&seg, &damaged).unwrap();
        match Store::open(dir.path(), opts()) {
            Err(OpenError::Corrupt { file, offset, .. }) => {
                assert_eq!(file, seg);
                assert_eq!(offset, start as u64, "flip at {pos}");
                let msg = OpenError::Corrupt {
                    file,
                    offset,
                    damage: record::Damage::ChecksumMismatch,
                }
                .to_string();
                assert!(msg.contains(".log") && msg.contains(&format!("offset {start}")));
            }
            other => panic!("flip at {pos}: expected corruption, got {other:?}"),
        }
    }
    // check names it too and changes nothing.
    let mut damaged = bytes.clone();
    damaged[start + 12] ^= 1;
    fs::write(&seg, &damaged).unwrap();
    let report = check(dir.path(), false).unwrap();
    assert!(!report.is_ok());
    let text = report.to_string();
    assert!(
        text.contains("CORRUPT") && text.contains(&format!("offset {start}")),
        "{text}"
    );
    assert_eq!(fs::read(&seg).unwrap(), damaged);
}

#[test]
fn repair_cuts_at_the_corruption() {
    let dir = TempDir::new("repair");
    let (seg, mut bytes, _) = build(dir.path(), 20);
    let (recs, _) = record::decode(&bytes[header::HEADER_LEN..]);
    // records: seed, session, then messages; damage message 10.
    let at = header::HEADER_LEN + recs[2 + 10].offset + 12;
    bytes[at] ^= 0xff;
    fs::write(&seg, &bytes).unwrap();
    let report = check(dir.path(), true).unwrap();
    assert!(report.is_ok());
    assert!(report.to_string().contains("REPAIRED"), "{report}");
    let (store, _) = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(message_count(&store), 10);
}

#[test]
fn repair_option_on_open() {
    let dir = TempDir::new("repair-open");
    let (seg, mut bytes, _) = build(dir.path(), 6);
    let (recs, _) = record::decode(&bytes[header::HEADER_LEN..]);
    let at = header::HEADER_LEN + recs[4].offset + 2;
    bytes[at] ^= 0x40;
    fs::write(&seg, &bytes).unwrap();
    assert!(Store::open(dir.path(), opts()).is_err());
    let o = Options {
        repair: true,
        ..opts()
    };
    let (store, report) = Store::open(dir.path(), o).unwrap();
    assert_eq!(report.repairs.len(), 1, "{report}");
    assert_eq!(message_count(&store), 2);
}

#[test]
fn damage_in_a_closed_segment_is_corruption_even_at_its_end() {
    let dir = TempDir::new("closed");
    let (store, _) = open(dir.path());
    seed(&store);
    store
        .commit_wait(T, vec![Mutation::PutSession(session(P, "ses_1", 1))])
        .unwrap();
    for i in 0..200 {
        let m = message(&format!("msg_{i}"), "some text to fill the 4 KiB segments");
        store
            .commit_wait(T, vec![Mutation::append_message(P, "ses_1", &m)])
            .unwrap();
    }
    drop(store);
    let segs = segments(dir.path());
    assert!(segs.len() > 2);
    let first = &segs[0];
    let len = fs::metadata(first).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(first).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    match Store::open(dir.path(), opts()) {
        Err(OpenError::Corrupt { file, .. }) => assert_eq!(&file, first),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn torn_segment_header_is_removed() {
    let dir = TempDir::new("torn-header");
    let (_, _, _) = build(dir.path(), 3);
    // A crash while creating segment 2: only part of its header made it.
    let p = dir.path().join(segment::file_name(2));
    fs::write(&p, &header::encode(header::SEGMENT_MAGIC, 2)[..10]).unwrap();
    let (store, report) = Store::open(dir.path(), opts()).unwrap();
    assert!(report.torn.is_some());
    assert_eq!(message_count(&store), 3);
    store
        .commit_wait(
            T,
            vec![Mutation::append_message(P, "ses_1", &message("m", "x"))],
        )
        .unwrap();
    drop(store);
    let (store, _) = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(message_count(&store), 4);
}

#[test]
fn segment_scan_is_sans_io() {
    let dir = TempDir::new("scan");
    let (_, bytes, last) = build(dir.path(), 3);
    let scan = recover_segment_bytes(&bytes);
    assert_eq!(scan.records, 2 + 3 + 1 - 1);
    assert_eq!(scan.end, segment::SegmentEnd::Clean);
    let torn = recover_segment_bytes(&bytes[..last + 3]);
    assert_eq!(torn.valid_end, last as u64);
    assert!(matches!(torn.end, segment::SegmentEnd::Torn { .. }));
    assert!(matches!(
        recover_segment_bytes(b"garbage").end,
        segment::SegmentEnd::BadHeader(_)
    ));
}

#[test]
fn one_store_at_a_time_opens_a_data_directory() {
    let dir = TempDir::new("locked");
    let (store, _) = open(dir.path());
    seed(&store);
    let refused = Store::open(dir.path(), opts()).expect_err("a second store on the directory");
    assert!(
        matches!(&refused, OpenError::Locked { holder: Some(pid), .. } if *pid == std::process::id()),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("in use by another process"),
        "{refused}"
    );
    // A repair writes, so it waits its turn; a plain check only reads, and may run.
    assert!(matches!(
        check(dir.path(), true),
        Err(OpenError::Locked { .. })
    ));
    assert!(check(dir.path(), false).is_ok());
    // The first store still writes, and once it is closed the directory opens again.
    store
        .commit_wait(T, vec![Mutation::PutSession(session(P, "ses_after", 2))])
        .expect("the first store keeps writing");
    drop(store);
    let (again, _) = open(dir.path());
    assert!(again.session(T, P, "ses_after").is_some());
}

/// Commits, in one segment: tenant and project, a session with three messages, an agent
/// `agt_before`, then agent `agt_evil` whose instructions embed `frame` (several times, with
/// text around it). Returns the segment, its bytes, and where the evil record starts.
fn build_with_frame_text(
    dir: &std::path::Path,
    frame: &str,
) -> (std::path::PathBuf, Vec<u8>, usize) {
    let o = Options {
        segment_size: 1 << 20,
        snapshot_threshold: u64::MAX,
        ..Options::default()
    };
    let (store, _) = Store::open(dir, o).unwrap();
    seed(&store);
    store
        .commit_wait(T, vec![Mutation::PutSession(session(P, "ses_1", 1))])
        .unwrap();
    for i in 0..3 {
        let m = message(&format!("msg_{i}"), &format!("content {i}"));
        store
            .commit_wait(T, vec![Mutation::append_message(P, "ses_1", &m)])
            .unwrap();
    }
    store
        .commit_wait(
            T,
            vec![Mutation::PutAgent(agent(P, "agt_before", "before"))],
        )
        .unwrap();
    let mut evil = agent(P, "agt_evil", "evil");
    evil.instructions = Some(format!("You are helpful. {frame}{frame} then {frame}."));
    store
        .commit_wait(T, vec![Mutation::PutAgent(evil)])
        .unwrap();
    drop(store);
    let segs = segments(dir);
    assert_eq!(segs.len(), 1);
    let bytes = fs::read(&segs[0]).unwrap();
    let (recs, end) = record::decode(&bytes[header::HEADER_LEN..]);
    assert_eq!(end, record::Next::End);
    let last = header::HEADER_LEN + recs.last().unwrap().offset;
    (segs[0].clone(), bytes, last)
}

/// The defect of v1: a torn write in the middle of a record whose payload holds a complete
/// valid frame. Every cut inside that record must be a torn tail (the record cut, all before
/// it kept), for both frame shapes, and the store must go on appending after the cut.
#[test]
fn torn_record_whose_text_embeds_a_valid_frame_is_cut_not_refused() {
    for format in [record::Format::V1, record::Format::V2] {
        let frame = ascii_frame(format, T);
        let dir = TempDir::new("torn-frame-text");
        let (seg, bytes, last) = build_with_frame_text(dir.path(), &frame);
        let inner = bytes
            .windows(frame.len())
            .position(|w| w == frame.as_bytes())
            .expect("the frame is in the log as written");
        assert!(
            inner > last,
            "{format:?}: the frame sits inside the last record"
        );
        for cut in last + 1..bytes.len() {
            fs::write(&seg, &bytes[..cut]).unwrap();
            let (store, report) = match Store::open(dir.path(), opts()) {
                Ok(opened) => opened,
                Err(e) => panic!("{format:?}, cut at {cut}: refused to open: {e}"),
            };
            let torn = report.torn.as_ref().expect("torn tail reported");
            assert_eq!(torn.offset, last as u64, "{format:?}, cut at {cut}");
            assert!(report.corruption.is_empty(), "{report}");
            assert!(store.agent(T, P, "agt_evil").is_none(), "cut at {cut}");
            assert!(store.agent(T, P, "agt_before").is_some(), "cut at {cut}");
            assert_eq!(message_count(&store), 3, "cut at {cut}");
            drop(store);
            // The cut is durable: the next open finds a clean log of the same length.
            assert_eq!(fs::metadata(&seg).unwrap().len(), last as u64);
        }
        // The whole record reads back, text and all.
        fs::write(&seg, &bytes).unwrap();
        let (store, report) = Store::open(dir.path(), opts()).unwrap();
        assert!(report.torn.is_none());
        let evil = store.agent(T, P, "agt_evil").expect("whole record kept");
        assert!(evil.instructions.unwrap().contains(&frame));
    }
}

/// A flipped byte in an early record whose text embeds frames, followed by valid records:
/// refused with the file and offset, `check` names it and changes nothing, and
/// `check --repair` cuts the log there, keeping everything before it.
#[test]
fn corruption_before_valid_records_is_refused_then_repaired() {
    let frame = ascii_frame(record::Format::V2, T);
    let dir = TempDir::new("corrupt-frame-text");
    let (seg, _, evil_at) = build_with_frame_text(dir.path(), &frame);
    // Valid records after the agent that carries the frames.
    let (store, _) = Store::open(dir.path(), opts()).unwrap();
    for i in 3..6 {
        let m = message(&format!("msg_{i}"), "after");
        store
            .commit_wait(T, vec![Mutation::append_message(P, "ses_1", &m)])
            .unwrap();
    }
    drop(store);
    let clean = fs::read(&seg).unwrap();
    // One byte in the header, then one inside the embedded frame of the payload.
    let in_frame = evil_at
        + clean[evil_at..]
            .windows(frame.len())
            .position(|w| w == frame.as_bytes())
            .unwrap()
        + 3;
    for pos in [evil_at + 2, evil_at + 10, in_frame] {
        let mut damaged = clean.clone();
        damaged[pos] ^= 0x01;
        fs::write(&seg, &damaged).unwrap();
        let err = Store::open(dir.path(), opts()).expect_err("corruption must be refused");
        match &err {
            OpenError::Corrupt { file, offset, .. } => {
                assert_eq!(file, &seg);
                assert_eq!(*offset, evil_at as u64, "flip at {pos}");
            }
            other => panic!("flip at {pos}: {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&format!("offset {evil_at}")) && text.contains("check --repair"),
            "{text}"
        );
        let report = check(dir.path(), false).unwrap();
        assert!(!report.is_ok(), "{report}");
        assert_eq!(
            fs::read(&seg).unwrap(),
            damaged,
            "check without --repair wrote"
        );
    }
    let report = check(dir.path(), true).unwrap();
    assert!(
        report.is_ok() && report.to_string().contains("REPAIRED"),
        "{report}"
    );
    assert_eq!(fs::metadata(&seg).unwrap().len(), evil_at as u64);
    let (store, report) = Store::open(dir.path(), opts()).unwrap();
    assert!(
        report.corruption.is_empty() && report.torn.is_none(),
        "{report}"
    );
    assert!(store.agent(T, P, "agt_before").is_some());
    assert!(store.agent(T, P, "agt_evil").is_none());
    assert_eq!(message_count(&store), 3);
}
