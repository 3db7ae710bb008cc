//! What the data directory holds on disk, for `/metrics`.
//!
//! Responsible for: counting the log segments and their bytes, and the age of the newest
//! snapshot, by listing the directory when asked (a scrape, not a hot path: nothing is
//! tracked between scrapes, so the figures are right whatever rolled, compacted or was
//! deleted meanwhile). Not responsible for: the writer's counters (see `writer`).

use std::path::Path;
use std::time::SystemTime;

use crate::{segment, snapshot};

/// The data directory's log files, as listed now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DiskUsage {
    /// Segment files (closed ones and the active one).
    pub segments: u64,
    /// Their bytes.
    pub segment_bytes: u64,
    /// Seconds since the newest snapshot was written; `None` when there is none.
    pub snapshot_age_secs: Option<f64>,
}

/// Lists `dir`. Files that vanish while listed (a compaction deleting them) are skipped.
pub fn disk_usage(dir: &Path) -> DiskUsage {
    let mut usage = DiskUsage::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return usage;
    };
    let mut newest: Option<SystemTime> = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        if segment::parse_file_name(name).is_some() {
            usage.segments += 1;
            usage.segment_bytes += meta.len();
        } else if snapshot::parse_file_name(name).is_some() {
            if let Ok(at) = meta.modified() {
                newest = Some(newest.map_or(at, |n| n.max(at)));
            }
        }
    }
    usage.snapshot_age_secs = newest.map(|at| {
        SystemTime::now()
            .duration_since(at)
            .unwrap_or_default()
            .as_secs_f64()
    });
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_segments_and_dates_the_newest_snapshot() {
        let dir = std::env::temp_dir().join(format!("halyard-du-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        assert_eq!(disk_usage(&dir), DiskUsage::default());
        std::fs::write(dir.join(segment::file_name(1)), [0u8; 100]).expect("write");
        std::fs::write(dir.join(segment::file_name(2)), [0u8; 20]).expect("write");
        std::fs::write(dir.join("LOCK"), b"").expect("write");
        let u = disk_usage(&dir);
        assert_eq!(
            (u.segments, u.segment_bytes, u.snapshot_age_secs),
            (2, 120, None)
        );
        std::fs::write(dir.join(snapshot::file_name(1)), b"s").expect("write");
        let age = disk_usage(&dir).snapshot_age_secs.expect("a snapshot");
        let _ = std::fs::remove_dir_all(&dir);
        assert!((0.0..60.0).contains(&age));
    }
}
