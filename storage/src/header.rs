//! The 32-byte header at the start of every segment and snapshot file.
//!
//! Responsible for: encoding and checking the header (magic, format version, file number,
//! checksum); which format versions this build reads. Not responsible for: naming files or
//! reading them (`segment`, `snapshot`), or the frames after the header (`record`).

use std::fmt;

use crate::record::Format;

/// Header length in bytes; the first record starts here.
pub const HEADER_LEN: usize = 32;

/// Format version written by this build.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format version this build still reads (and upgrades on open).
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// Magic of a log segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"HLYDLOG\0";

/// Magic of a snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"HLYDSNP\0";

/// A checked header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Segment number (segments) or the last segment number covered (snapshots).
    pub number: u64,
    /// Format version of the file (1 or 2): says how its records are framed.
    pub version: u32,
}

impl FileHeader {
    /// How the file's records are framed. [`decode`] only returns versions this build reads,
    /// so anything but 1 is the current format.
    pub fn format(&self) -> Format {
        match self.version {
            1 => Format::V1,
            _ => Format::V2,
        }
    }
}

/// Why a header is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than 32 bytes, or 32 zero bytes: the file was being created when the process
    /// died.
    Incomplete,
    /// The magic is not the expected one.
    BadMagic,
    /// A format version this build does not read.
    UnsupportedVersion(u32),
    /// The header checksum does not match.
    ChecksumMismatch,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Incomplete => write!(f, "file header incomplete"),
            HeaderError::BadMagic => write!(f, "bad magic in file header"),
            HeaderError::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            HeaderError::ChecksumMismatch => write!(f, "file header checksum mismatch"),
        }
    }
}

/// Encodes a header of the current [`FORMAT_VERSION`].
///
/// Layout: magic (8) | version u32 LE (4) | number u64 LE (8) | reserved zero (4) |
/// masked CRC32C of bytes 0..24, u32 LE (4) | reserved zero (4).
pub fn encode(magic: [u8; 8], number: u64) -> [u8; HEADER_LEN] {
    encode_version(magic, FORMAT_VERSION, number)
}

/// Encodes a header of any format version: for tests and tools that build old files (the
/// store only writes [`FORMAT_VERSION`]).
pub fn encode_version(magic: [u8; 8], version: u32, number: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&magic);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..20].copy_from_slice(&number.to_le_bytes());
    let crc = crate::record::mask_crc(crc32c::crc32c(&h[0..24]));
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks the header at the start of `bytes` against `magic`.
pub fn decode(magic: [u8; 8], bytes: &[u8]) -> Result<FileHeader, HeaderError> {
    let h = bytes.get(..HEADER_LEN).ok_or(HeaderError::Incomplete)?;
    if h.iter().all(|&b| b == 0) {
        return Err(HeaderError::Incomplete);
    }
    if h[0..8] != magic {
        return Err(HeaderError::BadMagic);
    }
    let crc = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    if crate::record::mask_crc(crc32c::crc32c(&h[0..24])) != crc {
        return Err(HeaderError::ChecksumMismatch);
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&h[12..20]);
    Ok(FileHeader {
        number: u64::from_le_bytes(n),
        version,
    })
}
