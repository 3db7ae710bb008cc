//! The `MANIFEST` of a backup: which files it holds, each with its length and checksum.
//!
//! Responsible for: rendering and parsing the manifest (sans-I/O), and refusing one that is
//! damaged or names a file outside the backup directory. Not responsible for: reading or
//! writing files (`backup`, `restore`).
//!
//! Why a manifest when every record has a CRC already: a segment cut at a record boundary
//! (a truncated copy, a lost block at the end) still reads as valid records, and a missing
//! segment at the end of the log is indistinguishable from a shorter log. The manifest pins
//! each file's exact length and a CRC32C of all of its bytes, and carries a CRC of its own.
//!
//! Format (UTF-8 text, one item per line, fields separated by one space):
//!
//! ```text
//! halyard-backup 1
//! created-at-ms 1700000000000
//! snapshot 4                      (or `snapshot -` when the cut has none)
//! last-segment 9                  (0 when the cut has no segment)
//! file snap-00000000000000000004.snap 123456 0a1b2c3d
//! file 00000000000000000005.log 67108864 deadbeef
//! end 89abcdef                    (CRC32C of every byte before this line, hex)
//! ```

use std::fmt;

/// File name of the manifest inside a backup directory.
pub const MANIFEST_FILE: &str = "MANIFEST";

const MAGIC_LINE: &str = "halyard-backup 1";

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name inside the backup directory (a plain name, no separators).
    pub name: String,
    /// Its length in bytes.
    pub len: u64,
    /// CRC32C of all of its bytes (unmasked).
    pub crc: u32,
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// When the backup was taken, ms since the epoch.
    pub created_at_ms: u64,
    /// The snapshot of the cut (the last segment it covers), if any.
    pub snapshot: Option<u64>,
    /// The last segment of the cut (0 when it has none).
    pub last_segment: u64,
    /// The files, in the order they were written.
    pub files: Vec<Entry>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Not UTF-8 text.
    NotText,
    /// The first line is not the magic of a version this build reads.
    BadMagic,
    /// The `end` line is missing (the manifest was cut short).
    Truncated,
    /// The `end` checksum does not match the text before it.
    ChecksumMismatch,
    /// A line that does not parse, by line number (1-based).
    BadLine(usize),
    /// A file name that is not a plain name of this directory.
    BadName(String),
    /// A file named twice.
    Duplicate(String),
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::NotText => write!(f, "manifest is not text"),
            ManifestError::BadMagic => write!(f, "not a halyard backup manifest (version 1)"),
            ManifestError::Truncated => write!(f, "manifest has no end line"),
            ManifestError::ChecksumMismatch => write!(f, "manifest checksum mismatch"),
            ManifestError::BadLine(n) => write!(f, "manifest line {n} does not parse"),
            ManifestError::BadName(name) => write!(f, "manifest names an invalid file {name:?}"),
            ManifestError::Duplicate(name) => write!(f, "manifest names {name} twice"),
        }
    }
}

impl std::error::Error for ManifestError {}

/// Whether `name` is a plain file name: ASCII letters, digits, `.`, `_`, `-`, not starting
/// with a dot, at most 128 bytes. Refuses separators and `..`, so that a tampered manifest
/// cannot make a restore read or write outside its directories.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Manifest {
    /// Total bytes of the files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }

    /// The manifest's text.
    pub fn render(&self) -> String {
        let mut s = format!("{MAGIC_LINE}\ncreated-at-ms {}\n", self.created_at_ms);
        match self.snapshot {
            Some(n) => s.push_str(&format!("snapshot {n}\n")),
            None => s.push_str("snapshot -\n"),
        }
        s.push_str(&format!("last-segment {}\n", self.last_segment));
        for e in &self.files {
            s.push_str(&format!("file {} {} {:08x}\n", e.name, e.len, e.crc));
        }
        let crc = crc32c::crc32c(s.as_bytes());
        s.push_str(&format!("end {crc:08x}\n"));
        s
    }

    /// Parses and checks a manifest's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotText)?;
        let body_end = text
            .rfind("end ")
            .filter(|&i| i == 0 || text.as_bytes()[i - 1] == b'\n')
            .ok_or(ManifestError::Truncated)?;
        let (body, end) = text.split_at(body_end);
        let end = end.strip_suffix('\n').ok_or(ManifestError::Truncated)?;
        let want = end
            .strip_prefix("end ")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or(ManifestError::Truncated)?;
        if crc32c::crc32c(body.as_bytes()) != want {
            return Err(ManifestError::ChecksumMismatch);
        }
        let mut lines = body.lines().enumerate();
        if lines.next().map(|(_, l)| l) != Some(MAGIC_LINE) {
            return Err(ManifestError::BadMagic);
        }
        let mut m = Manifest {
            created_at_ms: 0,
            snapshot: None,
            last_segment: 0,
            files: Vec::new(),
        };
        for (i, line) in lines {
            let bad = || ManifestError::BadLine(i + 1);
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["created-at-ms", v] => m.created_at_ms = v.parse().map_err(|_| bad())?,
                ["snapshot", "-"] => m.snapshot = None,
                ["snapshot", v] => m.snapshot = Some(v.parse().map_err(|_| bad())?),
                ["last-segment", v] => m.last_segment = v.parse().map_err(|_| bad())?,
                ["file", name, len, crc] => {
                    if !is_plain_name(name) {
                        return Err(ManifestError::BadName((*name).to_owned()));
                    }
                    if m.files.iter().any(|f| f.name == *name) {
                        return Err(ManifestError::Duplicate((*name).to_owned()));
                    }
                    m.files.push(Entry {
                        name: (*name).to_owned(),
                        len: len.parse().map_err(|_| bad())?,
                        crc: u32::from_str_radix(crc, 16).map_err(|_| bad())?,
                    });
                }
                _ => return Err(bad()),
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            created_at_ms: 1_700_000_000_000,
            snapshot: Some(4),
            last_segment: 9,
            files: vec![
                Entry {
                    name: "snap-00000000000000000004.snap".into(),
                    len: 100,
                    crc: 0xdead_beef,
                },
                Entry {
                    name: "00000000000000000005.log".into(),
                    len: 32,
                    crc: 7,
                },
            ],
        }
    }

    #[test]
    fn a_manifest_round_trips_and_any_changed_byte_is_refused() {
        let m = sample();
        let text = m.render();
        assert_eq!(Manifest::parse(text.as_bytes()), Ok(m));
        for i in 0..text.len() {
            let mut b = text.clone().into_bytes();
            b[i] ^= 0x01;
            assert!(
                Manifest::parse(&b).is_err(),
                "byte {i} flipped still parses"
            );
        }
        let cut = &text.as_bytes()[..text.len() - 10];
        assert!(Manifest::parse(cut).is_err());
    }

    #[test]
    fn names_with_separators_are_refused() {
        for bad in ["../x", "a/b", ".hidden", "", "a b"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        let mut m = sample();
        m.files[0].name = "../../etc/passwd".into();
        assert!(matches!(
            Manifest::parse(m.render().as_bytes()),
            Err(ManifestError::BadName(_))
        ));
    }
}
