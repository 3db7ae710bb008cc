//! Record framing (format v2) and the sans-I/O record reader.
//!
//! Responsible for: the v2 frame `[len u32][type u8][payload crc u32][header crc u32]
//! [payload]` (see the crate doc for the byte layout), encoding one frame, and walking a
//! byte slice frame by frame, telling a clean end, a torn tail and corruption apart by the
//! rule in [`Reader`]; dispatching to the v1 reader ([`crate::record_v1`]) for files that
//! an older build wrote. Not responsible for: files (the reader takes bytes and returns
//! records; fuzzers drive it directly), file headers (`header`), or what a payload means
//! (`mutation`).
//!
//! Why the header has a checksum of its own: it makes a frame's length trustworthy before
//! the payload is read. The reader then only ever looks at offsets where a verified frame
//! ends, never inside the bytes a verified length claims, so a payload (client text) that
//! holds something shaped like a frame is never read as one. v1 had no such checksum and
//! scanned every offset after damage for a valid frame; that scan is what client text could
//! fool.

use std::fmt;

use crate::record_v1;

/// Bytes before the payload: length (4), type (1), payload checksum (4), header checksum (4).
pub const FRAME_HEADER_LEN: usize = 13;

/// Bytes of the header that the header checksum covers (length, type, payload checksum).
const HEADER_CHECKED_LEN: usize = 9;

/// Largest payload accepted. An import may carry 60 MiB of agents; anything larger than this
/// in a length field is damage, not data.
pub const MAX_PAYLOAD_LEN: usize = 128 * 1024 * 1024;

crate::codec::codec_enum! {
    /// What a record holds. The type byte is covered by the header checksum.
    pub enum RecordType ("record type") {
        /// One committed transaction: a tenant id and its mutations, applied all or nothing.
        Txn = 1,
        /// One entry of a snapshot file (same payload encoding as `Txn`).
        SnapshotEntry = 2,
        /// The last record of a complete snapshot: the entry count.
        SnapshotEnd = 3,
    }
}

/// The frame format of a file, from its header's format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Format version 1: `[len][crc][type]` frames, read only (see [`crate::record_v1`]).
    V1,
    /// Format version 2: frames with a header checksum; the only one written.
    V2,
}

impl Format {
    /// The frame format of a file header's format version, if this build reads it.
    pub fn from_version(version: u32) -> Option<Format> {
        match version {
            1 => Some(Format::V1),
            2 => Some(Format::V2),
            _ => None,
        }
    }

    /// Bytes before a payload in this format.
    pub fn frame_header_len(self) -> usize {
        match self {
            Format::V1 => record_v1::FRAME_HEADER_LEN,
            Format::V2 => FRAME_HEADER_LEN,
        }
    }
}

/// LevelDB's CRC mask: a CRC over bytes that themselves embed CRCs is weak, so stored CRCs
/// are rotated and offset.
#[inline]
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Inverse of [`mask_crc`].
#[inline]
pub fn unmask_crc(masked: u32) -> u32 {
    masked.wrapping_sub(0xa282_ead8).rotate_left(15)
}

/// The masked CRC32C of a payload (frame bytes 5..9).
#[inline]
pub fn payload_crc(payload: &[u8]) -> u32 {
    mask_crc(crc32c::crc32c(payload))
}

/// The masked CRC32C of the first 9 header bytes (frame bytes 9..13).
#[inline]
fn header_crc(checked: &[u8]) -> u32 {
    mask_crc(crc32c::crc32c(checked))
}

/// Fills `header` (13 bytes) for a payload of `len` bytes with checksum `pcrc`.
fn write_header(header: &mut [u8], kind: RecordType, len: usize, pcrc: u32) {
    header[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4] = kind.tag();
    header[5..9].copy_from_slice(&pcrc.to_le_bytes());
    let hcrc = header_crc(&header[..HEADER_CHECKED_LEN]);
    header[9..13].copy_from_slice(&hcrc.to_le_bytes());
}

/// Appends one framed record to `out`.
///
/// Panics if the payload is over [`MAX_PAYLOAD_LEN`]; callers check sizes first (the API
/// limits bodies to 60 MiB).
pub fn encode(kind: RecordType, payload: &[u8], out: &mut Vec<u8>) {
    assert!(payload.len() <= MAX_PAYLOAD_LEN, "record payload too large");
    out.reserve(FRAME_HEADER_LEN + payload.len());
    let start = out.len();
    out.resize(start + FRAME_HEADER_LEN, 0);
    write_header(&mut out[start..], kind, payload.len(), payload_crc(payload));
    out.extend_from_slice(payload);
}

/// Frames a payload already written at `out[start + FRAME_HEADER_LEN..]`, filling the header
/// reserved at `out[start..start + FRAME_HEADER_LEN]`. Lets callers encode straight into the
/// output buffer without a second copy.
///
/// Panics if the payload is over [`MAX_PAYLOAD_LEN`].
pub fn seal_in_place(kind: RecordType, out: &mut [u8], start: usize) {
    let payload_start = start + FRAME_HEADER_LEN;
    let len = out.len() - payload_start;
    assert!(len <= MAX_PAYLOAD_LEN, "record payload too large");
    let pcrc = payload_crc(&out[payload_start..]);
    write_header(&mut out[start..payload_start], kind, len, pcrc);
}

/// One valid record, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Offset of the frame's first byte within the input.
    pub offset: usize,
    /// Record type.
    pub kind: RecordType,
    /// Payload bytes (checksums verified).
    pub payload: &'a [u8],
    /// Frame header length of the format it was read in (v1 frames are shorter).
    header_len: usize,
}

impl<'a> Record<'a> {
    /// A record read in `format`.
    pub(crate) fn new(format: Format, offset: usize, kind: RecordType, payload: &'a [u8]) -> Self {
        Record {
            offset,
            kind,
            payload,
            header_len: format.frame_header_len(),
        }
    }

    /// Offset just past this record.
    pub fn end(&self) -> usize {
        self.offset + self.header_len + self.payload.len()
    }
}

/// Why a frame at some offset is not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Fewer bytes than a frame header remain (not counting trailing zero bytes).
    ShortHeader,
    /// The frame's length runs past the end of the input.
    ShortPayload,
    /// Every byte from here to the end is zero: space the file system allocated but whose
    /// data never reached the disk.
    ZeroFilled,
    /// The header checksum (v2) does not match the header: its length cannot be trusted.
    HeaderChecksumMismatch,
    /// The length field is over [`MAX_PAYLOAD_LEN`].
    LengthTooLarge,
    /// The type byte is not a known [`RecordType`].
    UnknownType(u8),
    /// The payload checksum does not match the payload (v1: the type and payload).
    ChecksumMismatch,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::ShortHeader => write!(f, "record header cut short"),
            Damage::ShortPayload => write!(f, "record payload cut short"),
            Damage::ZeroFilled => write!(f, "zero-filled tail"),
            Damage::HeaderChecksumMismatch => write!(f, "record header checksum mismatch"),
            Damage::LengthTooLarge => write!(f, "record length over the maximum"),
            Damage::UnknownType(t) => write!(f, "unknown record type {t}"),
            Damage::ChecksumMismatch => write!(f, "record checksum mismatch"),
        }
    }
}

/// The result of one [`Reader::next_record`] step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next<'a> {
    /// A valid record.
    Record(Record<'a>),
    /// The input ended exactly at a record boundary.
    End,
    /// The input ends inside the frame at `offset`: the writer died in the middle of a
    /// write. Everything from `offset` on should be cut.
    Torn {
        /// Offset of the first damaged byte (the end of the last valid record).
        offset: usize,
        /// What was wrong at that offset.
        damage: Damage,
    },
    /// Damage that a torn write cannot explain: cutting here would lose what follows.
    Corrupt {
        /// Offset of the damaged frame (the end of the last valid record).
        offset: usize,
        /// What was wrong.
        damage: Damage,
    },
}

/// Walks a byte slice record by record. Holds no I/O; after `End`, `Torn` or `Corrupt`
/// every further call returns the same value.
///
/// The v2 rule at the first frame (at `offset`) that is not a valid record, with `live` the
/// end of the input once trailing zero bytes are dropped:
/// - fewer than [`FRAME_HEADER_LEN`] bytes in `offset..live` (none at all: zero-filled):
///   **torn**;
/// - the header checksum holds and the frame it describes reaches `live` or beyond (payload
///   cut short, or a bad payload checksum in the last frame of the input): **torn**;
/// - anything else is **corrupt**: a bad header checksum with a header's worth of data
///   after it (its length cannot be trusted, so nothing after it is interpreted), a valid
///   header followed by more data after its frame, or a valid header with a length over
///   the maximum or an unknown type (a torn write does not produce a valid checksum).
///
/// No byte inside a length that a valid header claims is ever examined for frames.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    format: Format,
    stopped: Option<Next<'a>>,
}

impl<'a> Reader<'a> {
    /// A v2 reader over `buf`, starting at offset 0.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader::at(buf, 0)
    }

    /// A v2 reader over `buf` starting at `pos` (offsets stay relative to `buf`).
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader::with_format(Format::V2, buf, pos)
    }

    /// A reader of `format` frames over `buf` starting at `pos`.
    pub fn with_format(format: Format, buf: &'a [u8], pos: usize) -> Self {
        Reader {
            buf,
            pos: pos.min(buf.len()),
            format,
            stopped: None,
        }
    }

    /// Offset of the next frame to read (the end of the last valid record).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Reads the next record, or tells why there is none.
    pub fn next_record(&mut self) -> Next<'a> {
        if let Some(s) = self.stopped {
            return s;
        }
        let out = match self.format {
            Format::V2 => step(self.buf, self.pos),
            Format::V1 => record_v1::step(self.buf, self.pos),
        };
        match out {
            Next::Record(rec) => self.pos = rec.end(),
            _ => self.stopped = Some(out),
        }
        out
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Record<'a>, Next<'a>>;

    /// Valid records as `Ok`, then at most one `Err` carrying `Torn` or `Corrupt`.
    fn next(&mut self) -> Option<Self::Item> {
        let already_stopped = self.stopped.is_some();
        match self.next_record() {
            Next::Record(r) => Some(Ok(r)),
            Next::End => None,
            other if !already_stopped => Some(Err(other)),
            _ => None,
        }
    }
}

/// A frame that is not a valid record: what is wrong, and where the frame ends when its
/// header is valid (and so its length can be trusted).
struct Bad {
    damage: Damage,
    claimed_end: Option<usize>,
}

/// One v2 step at `pos`: a record, the end, or the verdict on the damage there.
fn step(buf: &[u8], pos: usize) -> Next<'_> {
    match check_frame(buf, pos) {
        Ok(Some(rec)) => Next::Record(rec),
        Ok(None) => Next::End,
        Err(bad) => classify(buf, pos, bad),
    }
}

/// Checks the v2 frame at `pos`. `Ok(None)` means the input ends exactly there.
#[inline]
fn check_frame(buf: &[u8], pos: usize) -> Result<Option<Record<'_>>, Bad> {
    let rest = &buf[pos..];
    if rest.is_empty() {
        return Ok(None);
    }
    let unchecked = |damage| Bad {
        damage,
        claimed_end: None,
    };
    let Some(h) = rest.get(..FRAME_HEADER_LEN) else {
        return Err(unchecked(Damage::ShortHeader));
    };
    let hcrc = u32::from_le_bytes([h[9], h[10], h[11], h[12]]);
    if header_crc(&h[..HEADER_CHECKED_LEN]) != hcrc {
        return Err(unchecked(Damage::HeaderChecksumMismatch));
    }
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    if len > MAX_PAYLOAD_LEN {
        return Err(unchecked(Damage::LengthTooLarge));
    }
    let kind = RecordType::from_tag(h[4]).ok_or_else(|| unchecked(Damage::UnknownType(h[4])))?;
    let checked = |damage| Bad {
        damage,
        claimed_end: Some(pos + FRAME_HEADER_LEN + len),
    };
    let payload = rest
        .get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)
        .ok_or_else(|| checked(Damage::ShortPayload))?;
    let pcrc = u32::from_le_bytes([h[5], h[6], h[7], h[8]]);
    if payload_crc(payload) != pcrc {
        return Err(checked(Damage::ChecksumMismatch));
    }
    Ok(Some(Record::new(Format::V2, pos, kind, payload)))
}

/// The torn-or-corrupt verdict on damage at `pos` (see [`Reader`] for the rule).
fn classify(buf: &[u8], pos: usize, bad: Bad) -> Next<'_> {
    let live = live_end(buf, pos);
    let torn = |damage| Next::Torn {
        offset: pos,
        damage,
    };
    if live == pos {
        return torn(Damage::ZeroFilled);
    }
    if live - pos < FRAME_HEADER_LEN {
        return torn(Damage::ShortHeader);
    }
    match bad.claimed_end {
        Some(end) if end >= live => torn(bad.damage),
        _ => Next::Corrupt {
            offset: pos,
            damage: bad.damage,
        },
    }
}

/// The end of `buf` without its trailing zero bytes, but not before `pos`. Only runs once,
/// at damage: a torn write may leave file-system blocks that read back as zeros.
fn live_end(buf: &[u8], pos: usize) -> usize {
    buf[pos..]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(pos, |i| pos + i + 1)
}

/// Decodes a whole v2 buffer: all valid records, then how it ended (`End`, `Torn` or
/// `Corrupt`). A convenience for fuzzers and tests.
pub fn decode(buf: &[u8]) -> (Vec<Record<'_>>, Next<'_>) {
    decode_format(Format::V2, buf)
}

/// Like [`decode`], for frames of `format`.
pub fn decode_format(format: Format, buf: &[u8]) -> (Vec<Record<'_>>, Next<'_>) {
    let mut reader = Reader::with_format(format, buf, 0);
    let mut records = Vec::new();
    loop {
        match reader.next_record() {
            Next::Record(r) => records.push(r),
            end => return (records, end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode(RecordType::Txn, p, &mut out);
        }
        out
    }

    #[test]
    fn header_layout_is_as_documented() {
        let out = framed(&[b"abc"]);
        assert_eq!(out.len(), FRAME_HEADER_LEN + 3);
        assert_eq!(&out[0..4], &3u32.to_le_bytes());
        assert_eq!(out[4], RecordType::Txn.tag());
        assert_eq!(&out[5..9], &payload_crc(b"abc").to_le_bytes());
        let hcrc = mask_crc(crc32c::crc32c(&out[0..9]));
        assert_eq!(&out[9..13], &hcrc.to_le_bytes());
        assert_eq!(&out[13..], b"abc");
    }

    #[test]
    fn a_frame_inside_a_torn_payload_is_never_read() {
        let inner = framed(&[b"looks like a record"]);
        let mut payload = b"text: ".to_vec();
        payload.extend_from_slice(&inner);
        payload.extend_from_slice(b" and more text after it");
        let buf = framed(&[b"first", &payload]);
        let second = FRAME_HEADER_LEN + 5;
        for cut in second + 1..buf.len() {
            let (recs, end) = decode(&buf[..cut]);
            assert_eq!(recs.len(), 1, "cut at {cut}");
            assert!(
                matches!(end, Next::Torn { offset, .. } if offset == second),
                "cut at {cut}: {end:?}"
            );
        }
    }

    #[test]
    fn zero_fill_after_a_partial_header_is_torn() {
        let mut buf = framed(&[b"first", b"second"]);
        let second = FRAME_HEADER_LEN + 5;
        // The second frame's header lost its last bytes to a block that reads as zeros.
        for b in &mut buf[second + 6..] {
            *b = 0;
        }
        buf.extend_from_slice(&[0; 100]);
        let (recs, end) = decode(&buf);
        assert_eq!(recs.len(), 1);
        assert!(matches!(end, Next::Torn { offset, .. } if offset == second));
    }

    #[test]
    fn bad_header_with_data_after_it_is_corrupt() {
        let mut buf = framed(&[b"first", b"second", b"third"]);
        let second = FRAME_HEADER_LEN + 5;
        buf[second] ^= 1;
        let (recs, end) = decode(&buf);
        assert_eq!(recs.len(), 1);
        assert_eq!(
            end,
            Next::Corrupt {
                offset: second,
                damage: Damage::HeaderChecksumMismatch
            }
        );
    }

    #[test]
    fn bad_payload_is_torn_only_in_the_last_frame() {
        let buf = framed(&[b"first", b"second", b"third"]);
        let second = FRAME_HEADER_LEN + 5;
        let mut mid = buf.clone();
        mid[second + FRAME_HEADER_LEN] ^= 1;
        assert!(matches!(decode(&mid).1, Next::Corrupt { offset, .. } if offset == second));
        let mut last = buf.clone();
        let n = last.len();
        last[n - 1] ^= 1;
        assert!(matches!(decode(&last).1, Next::Torn { .. }));
    }
}
