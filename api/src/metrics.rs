//! The storage log's families of `/metrics`.
//!
//! Responsible for: rendering what the backend reports about its log (commit batches by
//! size, `fdatasync` latency, bytes appended, segments and their bytes, snapshots and the
//! age of the newest) in Prometheus text format. Not responsible for: measuring them (see
//! `halyard_storage::writer` and `disk_usage`), or the turn and refusal families (see
//! `chat::metrics` and `admission::refusals`).

use std::fmt::Write as _;

use halyard_engine::metrics::write_histogram;
use halyard_storage::writer::{BATCH_BUCKETS, FSYNC_BUCKETS_US};
use halyard_storage::LogMetrics;

/// Appends the log families for `m`.
pub fn write_log_metrics(out: &mut String, m: &LogMetrics) {
    let (log, disk) = (&m.log, &m.disk);
    out.push_str("# TYPE halyard_storage_commit_batch_records histogram\n");
    // Each batch's records are counted at their bucket's bound (the writer keeps no exact
    // sum per batch); the sum is the exact count of appends.
    write_histogram(
        out,
        "halyard_storage_commit_batch_records",
        "",
        &BATCH_BUCKETS,
        1.0,
        &log.batch_records,
        log.appends as f64,
    );
    out.push_str("# TYPE halyard_storage_fsync_seconds histogram\n");
    write_histogram(
        out,
        "halyard_storage_fsync_seconds",
        "",
        &FSYNC_BUCKETS_US,
        1e6,
        &log.fsync_us,
        log.fsync_seconds,
    );
    let counters = [
        ("halyard_storage_appends_total", log.appends),
        ("halyard_storage_batches_total", log.batches),
        ("halyard_storage_appended_bytes_total", log.bytes),
        ("halyard_storage_snapshots_total", log.compactions),
    ];
    for (name, v) in counters {
        let _ = writeln!(out, "# TYPE {name} counter\n{name} {v}");
    }
    let gauges = [
        ("halyard_storage_log_segments", disk.segments),
        ("halyard_storage_log_bytes", disk.segment_bytes),
    ];
    for (name, v) in gauges {
        let _ = writeln!(out, "# TYPE {name} gauge\n{name} {v}");
    }
    // No sample without a snapshot: an age of "never" has no honest number.
    out.push_str("# TYPE halyard_storage_snapshot_age_seconds gauge\n");
    if let Some(age) = disk.snapshot_age_secs {
        let _ = writeln!(out, "halyard_storage_snapshot_age_seconds {age}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_histograms_counters_and_gauges() {
        let mut m = LogMetrics::default();
        m.log.appends = 3;
        m.log.batch_records[0] = 1;
        m.log.batch_records[1] = 1;
        m.log.fsync_us[2] = 2;
        m.disk.segments = 2;
        let mut s = String::new();
        write_log_metrics(&mut s, &m);
        assert!(s.contains("halyard_storage_commit_batch_records_bucket{le=\"2\"} 2\n"));
        assert!(s.contains("halyard_storage_commit_batch_records_sum 3\n"));
        assert!(s.contains("halyard_storage_fsync_seconds_bucket{le=\"0.00025\"} 2\n"));
        assert!(s.contains("halyard_storage_log_segments 2\n"));
        assert!(!s.contains("\nhalyard_storage_snapshot_age_seconds "));
        m.disk.snapshot_age_secs = Some(1.5);
        let mut s = String::new();
        write_log_metrics(&mut s, &m);
        assert!(s.contains("halyard_storage_snapshot_age_seconds 1.5\n"));
    }
}
