//! Format v2: payload bytes can never pass for a record. Property tests over the sans-I/O
//! reader and segment scan (what recovery runs), with payloads that embed valid frames,
//! bare headers and zero runs, cut and damaged anywhere; and the same through a `Store`.

mod common;

use std::fs;

use common::*;
use halyard_storage::record::{self, Damage, Format, Next, RecordType, FRAME_HEADER_LEN};
use halyard_storage::segment::SegmentEnd;
use halyard_storage::*;
use proptest::prelude::*;
use proptest::sample::Index;

/// Payloads chosen to look like log data: random bytes, or random bytes around a complete
/// valid frame (v1 or v2), a valid v2 header alone (claiming some length), a run of whole
/// v2 frames, or a run of zeros.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
    let inner = prop_oneof![
        bytes().prop_map(|p| framed(Format::V2, &[p])),
        bytes().prop_map(|p| framed(Format::V1, &[p])),
        // A valid header alone: it claims a payload that does not follow it.
        bytes().prop_map(|p| framed(Format::V2, &[p])[..FRAME_HEADER_LEN].to_vec()),
        proptest::collection::vec(bytes(), 1..4).prop_map(|ps| framed(Format::V2, &ps)),
        (1usize..64).prop_map(|n| vec![0u8; n]),
        Just(Vec::new()),
    ];
    (bytes(), inner, bytes()).prop_map(|(mut before, inner, after)| {
        before.extend_from_slice(&inner);
        before.extend_from_slice(&after);
        before
    })
}

fn framed(format: Format, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        match format {
            Format::V1 => record_v1::encode(RecordType::Txn, p, &mut out),
            Format::V2 => record::encode(RecordType::Txn, p, &mut out),
        }
    }
    out
}

/// A v2 segment of `payloads`: its bytes and each record's (start, end) file offsets.
fn segment_of(payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut bytes = header::encode(header::SEGMENT_MAGIC, 1).to_vec();
    let mut spans = Vec::new();
    for p in payloads {
        let start = bytes.len();
        record::encode(RecordType::Txn, p, &mut bytes);
        spans.push((start, bytes.len()));
    }
    (bytes, spans)
}

/// The records a scan returns, as (offset, payload), for comparing against what was written.
fn scanned(bytes: &[u8]) -> (Vec<(usize, Vec<u8>)>, segment::SegmentScan) {
    let mut got = Vec::new();
    let scan = segment::scan(bytes, |r| got.push((r.offset, r.payload.to_vec())));
    (got, scan)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A cut anywhere after the file header is a torn tail (or a clean end on a record
    /// boundary), never corruption, and keeps exactly the records wholly before the cut.
    #[test]
    fn a_cut_anywhere_is_a_torn_tail(
        payloads in proptest::collection::vec(payload(), 1..8),
        at in any::<Index>(),
    ) {
        let (bytes, spans) = segment_of(&payloads);
        let cut = header::HEADER_LEN + at.index(bytes.len() - header::HEADER_LEN + 1);
        let (got, scan) = scanned(&bytes[..cut]);
        let kept: Vec<(usize, Vec<u8>)> = spans
            .iter()
            .zip(&payloads)
            .filter(|((_, end), _)| *end <= cut)
            .map(|((start, _), p)| (*start, p.clone()))
            .collect();
        let valid_end = spans.iter().map(|s| s.1).filter(|&e| e <= cut).max()
            .unwrap_or(header::HEADER_LEN);
        prop_assert_eq!(&got, &kept);
        prop_assert_eq!(scan.valid_end as usize, valid_end);
        if cut == valid_end {
            prop_assert_eq!(scan.end, SegmentEnd::Clean);
        } else {
            let torn = matches!(scan.end, SegmentEnd::Torn { offset, .. } if offset as usize == valid_end);
            prop_assert!(torn, "cut at {} of {}: {:?}", cut, bytes.len(), scan.end);
        }
    }

    /// A byte changed in any record but the last one, or a zeroed block inside it, followed
    /// by valid records, is corruption at that record; in the last one it is a torn tail or
    /// corruption there. Either way every record returned is one that was written, at its
    /// offset: payload bytes never pass for a record.
    #[test]
    fn damage_is_named_where_it_is(
        payloads in proptest::collection::vec(payload(), 1..8),
        which in any::<Index>(),
        at in any::<Index>(),
        xor in 1u8..=255,
        zero_run in proptest::option::of(1usize..64),
        cut in proptest::option::of(any::<Index>()),
    ) {
        let (mut bytes, spans) = segment_of(&payloads);
        let k = which.index(spans.len());
        let (start, end) = spans[k];
        let pos = start + at.index(end - start);
        match zero_run {
            // A block that never reached the disk reads as zeros; unless it was already
            // zero, something in the record changes.
            Some(n) => bytes[pos..(pos + n).min(end)].fill(0),
            None => bytes[pos] ^= xor,
        }
        // Optionally a tail cut after the damaged record as well.
        let len = match cut {
            Some(c) => end + c.index(bytes.len() - end + 1),
            None => bytes.len(),
        };
        let bytes = &bytes[..len];
        let (got, scan) = scanned(bytes);
        let written: Vec<(usize, Vec<u8>)> = spans
            .iter()
            .zip(&payloads)
            .map(|((s, _), p)| (*s, p.clone()))
            .collect();
        let unchanged = got.len() > k;
        if unchanged {
            // The zeroed bytes were zero already: the record is intact.
            prop_assert_eq!(&got[..], &written[..got.len()]);
            return Ok(());
        }
        prop_assert_eq!(&got[..], &written[..k]);
        prop_assert_eq!(scan.valid_end as usize, start);
        let followed = spans[k + 1..].iter().any(|&(_, e)| e <= len);
        match scan.end {
            SegmentEnd::Corrupt { offset, .. } => prop_assert_eq!(offset as usize, start),
            SegmentEnd::Torn { offset, .. } => {
                prop_assert_eq!(offset as usize, start);
                prop_assert!(!followed, "damage before a whole record called torn");
            }
            other => prop_assert!(false, "{:?}", other),
        }
        if followed {
            let corrupt = matches!(scan.end, SegmentEnd::Corrupt { .. });
            prop_assert!(corrupt);
        }
    }

    /// Any bytes at all: the reader returns records back to back and stops once; a record
    /// it returns re-encodes to the very bytes it was read from.
    #[test]
    fn arbitrary_bytes_never_yield_a_record_that_was_not_framed(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let (recs, end) = record::decode(&bytes);
        let mut at = 0;
        for r in &recs {
            prop_assert_eq!(r.offset, at);
            let mut again = Vec::new();
            record::encode(r.kind, r.payload, &mut again);
            prop_assert_eq!(&bytes[r.offset..r.end()], &again[..]);
            at = r.end();
        }
        match end {
            Next::End => prop_assert_eq!(at, bytes.len()),
            Next::Torn { offset, .. } | Next::Corrupt { offset, .. } => prop_assert_eq!(offset, at),
            Next::Record(_) => prop_assert!(false),
        }
    }
}

/// The defect v2 removes, shown on the v1 reader: a torn v1 record whose payload holds a
/// valid v1 frame is taken for corruption ("valid records follow"). The v2 reader, on the
/// same text in a v2 record, calls it torn.
#[test]
fn v1_rule_was_fooled_by_frame_text_and_v2_is_not() {
    let text = format!("instructions: {} end", ascii_frame(Format::V1, T));
    let v1 = framed(Format::V1, &[b"before".to_vec(), text.clone().into_bytes()]);
    let v1_cut = &v1[..v1.len() - 3];
    assert!(matches!(
        record::decode_format(Format::V1, v1_cut).1,
        Next::Corrupt { .. }
    ));
    let v2_text = format!("instructions: {} end", ascii_frame(Format::V2, T));
    let v2 = framed(Format::V2, &[b"before".to_vec(), v2_text.into_bytes()]);
    let (recs, end) = record::decode(&v2[..v2.len() - 3]);
    assert_eq!(recs.len(), 1);
    assert!(matches!(
        end,
        Next::Torn {
            damage: Damage::ShortPayload,
            ..
        }
    ));
}

/// Strings an agent's instructions may hold: plain text, or text around ASCII frames of
/// either shape.
fn instructions() -> impl Strategy<Value = String> {
    let frame = prop_oneof![
        Just(ascii_frame(Format::V1, T)),
        Just(ascii_frame(Format::V2, T)),
        Just(String::new()),
    ];
    ("[a-z ]{0,20}", frame, "[a-z \\x00]{0,20}").prop_map(|(a, f, b)| format!("{a}{f}{b}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Through the store: agents whose instructions embed frames, the segment cut anywhere
    /// after the first agent: the store opens, keeps every agent wholly before the cut, and
    /// reports a torn tail exactly when the cut is inside a record.
    #[test]
    fn store_opens_after_a_cut_anywhere(
        texts in proptest::collection::vec(instructions(), 1..5),
        at in any::<Index>(),
    ) {
        let dir = TempDir::new("prop-store-cut");
        let (store, _) = Store::open(dir.path(), opts_one_segment()).unwrap();
        seed(&store);
        drop(store);
        let seg = segments(dir.path()).remove(0);
        let mut ends = vec![fs::metadata(&seg).unwrap().len() as usize];
        let (store, _) = Store::open(dir.path(), opts_one_segment()).unwrap();
        for (i, text) in texts.iter().enumerate() {
            let mut a = agent(P, &format!("agt_{i}"), &format!("a{i}"));
            a.instructions = Some(text.clone());
            store.commit_wait(T, vec![Mutation::PutAgent(a)]).unwrap();
        }
        drop(store);
        let bytes = fs::read(&seg).unwrap();
        let (recs, _) = record::decode(&bytes[header::HEADER_LEN..]);
        ends.extend(recs.iter().skip(1).map(|r| header::HEADER_LEN + r.end()));
        let cut = ends[0] + at.index(bytes.len() - ends[0] + 1);
        fs::write(&seg, &bytes[..cut]).unwrap();
        let (store, report) = Store::open(dir.path(), opts_one_segment())
            .map_err(|e| TestCaseError::fail(format!("cut at {cut}: {e}")))?;
        let whole = ends[1..].iter().filter(|&&e| e <= cut).count();
        for (i, text) in texts.iter().enumerate() {
            let got = store.agent(T, P, &format!("agt_{i}"));
            if i < whole {
                prop_assert_eq!(got.and_then(|a| a.instructions), Some(text.clone()));
            } else {
                prop_assert!(got.is_none(), "agent {} past the cut at {}", i, cut);
            }
        }
        prop_assert_eq!(report.torn.is_some(), !ends.contains(&cut));
        prop_assert!(report.corruption.is_empty());
    }
}

fn opts_one_segment() -> Options {
    Options {
        segment_size: 1 << 20,
        ..opts()
    }
}
