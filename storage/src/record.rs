//! Record framing and the sans-I/O record reader.
//!
//! Responsible for: the `[len u32][masked crc32c u32][type u8][payload]` frame (see the
//! crate doc for the byte layout), encoding one frame, and walking a byte slice frame by
//! frame, telling a clean end, a torn tail and a corrupt record apart.
//! Not responsible for: files (the reader takes bytes and returns records; fuzzers drive it
//! directly), segment headers (`segment`), or what a payload means (`mutation`).

use std::fmt;

/// Bytes before the payload: length (4), checksum (4), type (1).
pub const FRAME_HEADER_LEN: usize = 9;

/// Largest payload accepted. An import may carry 60 MiB of agents; anything larger than this
/// in a length field is damage, not data.
pub const MAX_PAYLOAD_LEN: usize = 128 * 1024 * 1024;

/// What a record holds. The type byte is covered by the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// One committed transaction: a tenant id and its mutations, applied all or nothing.
    Txn = 1,
    /// One entry of a snapshot file (same payload encoding as `Txn`).
    SnapshotEntry = 2,
    /// The last record of a complete snapshot: the entry count.
    SnapshotEnd = 3,
}

impl RecordType {
    /// The type for a byte, if known.
    pub fn from_u8(b: u8) -> Option<RecordType> {
        match b {
            1 => Some(RecordType::Txn),
            2 => Some(RecordType::SnapshotEntry),
            3 => Some(RecordType::SnapshotEnd),
            _ => None,
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

/// The masked CRC32C of a type byte followed by a payload.
#[inline]
pub fn record_crc(kind: u8, payload: &[u8]) -> u32 {
    mask_crc(crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload))
}

/// Appends one framed record to `out`.
///
/// Panics if the payload is over [`MAX_PAYLOAD_LEN`]; callers check sizes first (the API
/// limits bodies to 60 MiB).
pub fn encode(kind: RecordType, payload: &[u8], out: &mut Vec<u8>) {
    assert!(payload.len() <= MAX_PAYLOAD_LEN, "record payload too large");
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&record_crc(kind as u8, payload).to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(payload);
}

/// Appends a frame around a payload already written at `out[start + FRAME_HEADER_LEN..]`,
/// filling the header reserved at `out[start..start + FRAME_HEADER_LEN]`. Lets callers encode
/// straight into the output buffer without a second copy.
pub fn seal_in_place(kind: RecordType, out: &mut [u8], start: usize) {
    let payload_start = start + FRAME_HEADER_LEN;
    let len = out.len() - payload_start;
    assert!(len <= MAX_PAYLOAD_LEN, "record payload too large");
    let crc = record_crc(kind as u8, &out[payload_start..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out[start + 8] = kind as u8;
}

/// One valid record, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Offset of the frame's first byte within the input.
    pub offset: usize,
    /// Record type.
    pub kind: RecordType,
    /// Payload bytes (checksum verified).
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Offset just past this record.
    pub fn end(&self) -> usize {
        self.offset + FRAME_HEADER_LEN + self.payload.len()
    }
}

/// Why a frame at some offset is not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// Fewer than 9 bytes remain.
    ShortHeader,
    /// The length field runs past the end of the input.
    ShortPayload,
    /// The length field is over [`MAX_PAYLOAD_LEN`].
    LengthTooLarge,
    /// The type byte is not a known [`RecordType`].
    UnknownType(u8),
    /// The checksum does not match the type and payload.
    ChecksumMismatch,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::ShortHeader => write!(f, "record header cut short"),
            Damage::ShortPayload => write!(f, "record payload cut short"),
            Damage::LengthTooLarge => write!(f, "record length over the maximum"),
            Damage::UnknownType(t) => write!(f, "unknown record type {t}"),
            Damage::ChecksumMismatch => write!(f, "record checksum mismatch"),
        }
    }
}

/// The result of one [`Reader::next`] step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next<'a> {
    /// A valid record.
    Record(Record<'a>),
    /// The input ended exactly at a record boundary.
    End,
    /// The input ends with damage and no valid record follows it: the writer died in the
    /// middle of a write. Everything from `offset` on should be cut.
    Torn {
        /// Offset of the first damaged byte (the end of the last valid record).
        offset: usize,
        /// What was wrong at that offset.
        damage: Damage,
    },
    /// Damage with at least one valid record after it: this is not a torn write but a
    /// corrupted log, and cutting it would lose records that were durable.
    Corrupt {
        /// Offset of the damaged frame.
        offset: usize,
        /// What was wrong.
        damage: Damage,
        /// Offset of the first valid record found after the damage.
        next_valid: usize,
    },
}

/// Walks a byte slice record by record. Holds no I/O; after `End`, `Torn` or `Corrupt`
/// every further call returns the same value.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    stopped: Option<Next<'a>>,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, starting at offset 0.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader::at(buf, 0)
    }

    /// A reader over `buf` starting at `pos` (offsets stay relative to `buf`).
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader {
            buf,
            pos: pos.min(buf.len()),
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
        let out = match check_frame(self.buf, self.pos) {
            Ok(rec) => {
                self.pos = rec.end();
                return Next::Record(rec);
            }
            Err(None) => Next::End,
            Err(Some(damage)) => match find_valid_after(self.buf, self.pos + 1) {
                Some(next_valid) => Next::Corrupt {
                    offset: self.pos,
                    damage,
                    next_valid,
                },
                None => Next::Torn {
                    offset: self.pos,
                    damage,
                },
            },
        };
        self.stopped = Some(out);
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

/// Checks the frame at `pos`. `Err(None)` means the input ends exactly there.
#[inline]
fn check_frame(buf: &[u8], pos: usize) -> Result<Record<'_>, Option<Damage>> {
    let rest = &buf[pos..];
    if rest.is_empty() {
        return Err(None);
    }
    if rest.len() < FRAME_HEADER_LEN {
        return Err(Some(Damage::ShortHeader));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let type_byte = rest[8];
    if len > MAX_PAYLOAD_LEN {
        return Err(Some(Damage::LengthTooLarge));
    }
    if len > rest.len() - FRAME_HEADER_LEN {
        return Err(Some(Damage::ShortPayload));
    }
    let kind = RecordType::from_u8(type_byte).ok_or(Some(Damage::UnknownType(type_byte)))?;
    let payload = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
    if record_crc(type_byte, payload) != crc {
        return Err(Some(Damage::ChecksumMismatch));
    }
    Ok(Record {
        offset: pos,
        kind,
        payload,
    })
}

/// The first offset at or after `from` where a valid frame starts, if any. Only runs once a
/// damaged frame was found, to tell a torn tail (nothing valid after) from mid-log
/// corruption; the cheap checks (length fits, known type) reject almost every offset before
/// a CRC is computed.
fn find_valid_after(buf: &[u8], from: usize) -> Option<usize> {
    let last_start = buf.len().checked_sub(FRAME_HEADER_LEN)?;
    (from..=last_start).find(|&p| check_frame(buf, p).is_ok())
}

/// Decodes a whole buffer: all valid records, then how it ended (`End`, `Torn` or `Corrupt`).
/// A convenience for fuzzers and tests.
pub fn decode(buf: &[u8]) -> (Vec<Record<'_>>, Next<'_>) {
    let mut reader = Reader::new(buf);
    let mut records = Vec::new();
    loop {
        match reader.next_record() {
            Next::Record(r) => records.push(r),
            end => return (records, end),
        }
    }
}
