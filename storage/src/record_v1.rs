//! The v1 record frame, read only: files written by builds before format v2.
//!
//! Responsible for: checking v1 frames `[len u32][masked crc32c u32][type u8][payload]`
//! (the crc over the type byte and the payload) and telling a torn tail from corruption
//! the way v1 always did, so that a v1 data directory opens exactly as it did before and
//! can be upgraded; [`encode`] for tests and tools that need v1 bytes. Not responsible for:
//! writing the log (the store writes v2 only), or the upgrade itself (`upgrade`).
//!
//! The v1 rule, kept as it was: damage followed by a valid frame at any later byte offset is
//! corruption, damage with none after it is a torn tail. That scan can take a payload that
//! contains a frame for a real one (the defect v2 removes), so a v1 directory that crashed
//! in the middle of such a record is refused until `halyard check --repair` cuts it; v1
//! files are only read until the upgrade rewrites them.

use crate::record::{mask_crc, Damage, Format, Next, Record, RecordType, MAX_PAYLOAD_LEN};

/// Bytes before the payload in v1: length (4), checksum (4), type (1).
pub const FRAME_HEADER_LEN: usize = 9;

/// The v1 masked CRC32C of a type byte followed by a payload.
#[inline]
pub fn record_crc(kind: u8, payload: &[u8]) -> u32 {
    mask_crc(crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload))
}

/// Appends one v1 frame to `out` (tests and tools: the store never writes v1).
///
/// Panics if the payload is over [`MAX_PAYLOAD_LEN`].
pub fn encode(kind: RecordType, payload: &[u8], out: &mut Vec<u8>) {
    assert!(payload.len() <= MAX_PAYLOAD_LEN, "record payload too large");
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&record_crc(kind.tag(), payload).to_le_bytes());
    out.push(kind.tag());
    out.extend_from_slice(payload);
}

/// One v1 step at `pos`: a record, the end, or the verdict on the damage there.
pub(crate) fn step(buf: &[u8], pos: usize) -> Next<'_> {
    match check_frame(buf, pos) {
        Ok(rec) => Next::Record(rec),
        Err(None) => Next::End,
        Err(Some(damage)) if find_valid_after(buf, pos + 1) => Next::Corrupt {
            offset: pos,
            damage,
        },
        Err(Some(damage)) => Next::Torn {
            offset: pos,
            damage,
        },
    }
}

/// Checks the v1 frame at `pos`. `Err(None)` means the input ends exactly there.
fn check_frame(buf: &[u8], pos: usize) -> Result<Record<'_>, Option<Damage>> {
    let rest = &buf[pos..];
    if rest.is_empty() {
        return Err(None);
    }
    let Some(h) = rest.get(..FRAME_HEADER_LEN) else {
        return Err(Some(Damage::ShortHeader));
    };
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let type_byte = h[8];
    if len > MAX_PAYLOAD_LEN {
        return Err(Some(Damage::LengthTooLarge));
    }
    let payload = rest
        .get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)
        .ok_or(Some(Damage::ShortPayload))?;
    let kind = RecordType::from_tag(type_byte).ok_or(Some(Damage::UnknownType(type_byte)))?;
    if record_crc(type_byte, payload) != crc {
        return Err(Some(Damage::ChecksumMismatch));
    }
    Ok(Record::new(Format::V1, pos, kind, payload))
}

/// Whether a valid v1 frame starts at some offset at or after `from`. Only runs once a
/// damaged frame was found; the cheap checks (length fits, known type) reject almost every
/// offset before a CRC is computed.
fn find_valid_after(buf: &[u8], from: usize) -> bool {
    let Some(last_start) = buf.len().checked_sub(FRAME_HEADER_LEN) else {
        return false;
    };
    (from..=last_start).any(|p| check_frame(buf, p).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::decode_format;

    #[test]
    fn v1_frames_read_back() {
        let mut buf = Vec::new();
        encode(RecordType::Txn, b"one", &mut buf);
        encode(RecordType::SnapshotEnd, b"", &mut buf);
        let (recs, end) = decode_format(Format::V1, &buf);
        assert_eq!(end, Next::End);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].payload, b"one");
        assert_eq!(recs[0].end(), FRAME_HEADER_LEN + 3);
        assert_eq!(recs[1].kind, RecordType::SnapshotEnd);
    }

    #[test]
    fn v1_rule_is_unchanged() {
        let mut buf = Vec::new();
        for p in [&b"first"[..], b"second", b"third"] {
            encode(RecordType::Txn, p, &mut buf);
        }
        let second = FRAME_HEADER_LEN + 5;
        let mut flipped = buf.clone();
        flipped[second + FRAME_HEADER_LEN] ^= 1;
        assert!(matches!(
            decode_format(Format::V1, &flipped).1,
            Next::Corrupt { offset, .. } if offset == second
        ));
        let torn = &buf[..buf.len() - 2];
        assert!(matches!(
            decode_format(Format::V1, torn).1,
            Next::Torn { .. }
        ));
    }
}
