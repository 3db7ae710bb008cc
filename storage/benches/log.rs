//! Log benchmarks: acknowledged appends/s with `fsync always` at 1, 8 and 64 concurrent
//! appenders (fsyncs/s printed beside), replay of a 1,000,000-record log, and the frame
//! reader alone over the same records in format v1 and v2 (in memory: no disk, no state).
//!
//! Run: `cargo bench -p halyard-storage --bench log -- --warm-up-time 1 --measurement-time 5`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use halyard_storage::*;

const TENANT: &str = "ten_bench";
const PROJECT: &str = "proj_bench";

fn temp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("halyard-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn seed(store: &Store, sessions: usize) {
    let t = Tenant {
        id: TENANT.into(),
        name: "bench".into(),
        limits: Limits::default(),
        disabled: false,
        created_at: 1,
        updated_at: 1,
    };
    let p = Project {
        id: PROJECT.into(),
        name: "bench".into(),
        slug: "bench".into(),
        description: None,
        entry_agent_name: None,
        created_at: 1,
        updated_at: 1,
    };
    let mut muts = vec![Mutation::PutTenant(t), Mutation::PutProject(p)];
    for i in 0..sessions {
        muts.push(Mutation::PutSession(Session {
            id: format!("ses_{i:020}"),
            project_id: PROJECT.into(),
            agent_id: "agt_bench".into(),
            agent_name: "bench".into(),
            status: SessionStatus::Active,
            channel: Channel::Api,
            message_count: 0,
            token_count: 0,
            created_at: 1,
            last_activity_at: 1,
            metadata: "{}".into(),
            created_by_token: None,
        }));
    }
    store.commit_wait(TENANT, muts).unwrap();
}

/// One message append whose payload is 191 bytes: a framed record of 204 bytes in format v2
/// (200 in v1, whose frame header was 4 bytes shorter), so both formats carry the same data.
fn append(session: usize, i: u64) -> Mutation {
    let m = Message {
        id: format!("msg_{i:020}"),
        role: MessageRole::User,
        content: "x".repeat(107),
        usage: None,
        created_at: 1_700_000_000_000 + i,
        tool_calls: None,
        tool_call_id: None,
    };
    Mutation::append_message(PROJECT, &format!("ses_{session:020}"), &m)
}

fn payload_len() -> usize {
    let mut e = codec::Encoder::default();
    Txn::encode_parts(TENANT, &[append(0, 0)], &mut e);
    e.len()
}

fn appends(c: &mut Criterion) {
    assert_eq!(payload_len(), 191);
    eprintln!(
        "framed record: {} bytes",
        payload_len() + record::FRAME_HEADER_LEN
    );
    let mut g = c.benchmark_group("acked_appends_fsync_always");
    g.throughput(Throughput::Elements(1));
    for appenders in [1usize, 8, 64] {
        let dir = temp(&format!("append{appenders}"));
        let opts = Options {
            snapshot_threshold: u64::MAX,
            ..Options::default()
        };
        let store = Arc::new(Store::open(&dir, opts).unwrap().0);
        seed(&store, appenders);
        let mut fsyncs = 0u64;
        let mut appended = 0u64;
        let mut spent = Duration::ZERO;
        g.bench_function(BenchmarkId::from_parameter(appenders), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(appenders as u64);
                let before = store.stats();
                let t = Instant::now();
                std::thread::scope(|s| {
                    for a in 0..appenders {
                        let store = &store;
                        s.spawn(move || {
                            for i in 0..per {
                                store.commit_wait(TENANT, vec![append(a, i)]).unwrap();
                            }
                        });
                    }
                });
                let el = t.elapsed();
                let after = store.stats();
                fsyncs += after.fsyncs - before.fsyncs;
                appended += after.appends - before.appends;
                spent += el;
                // Scale to the requested iteration count (per * appenders >= iters).
                el.mul_f64(iters as f64 / (per * appenders as u64) as f64)
            })
        });
        let secs = spent.as_secs_f64();
        eprintln!(
            "appenders={appenders}: {:.0} acked appends/s, {:.0} fsyncs/s, {:.1} appends per fsync",
            appended as f64 / secs,
            fsyncs as f64 / secs,
            appended as f64 / fsyncs.max(1) as f64
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

const REPLAY_RECORDS: u64 = 1_000_000;
const REPLAY_SESSIONS: usize = 1000;

fn build_replay_log(dir: &Path) -> u64 {
    let opts = Options {
        fsync: FsyncPolicy::Never,
        snapshot_threshold: u64::MAX,
        ..Options::default()
    };
    let store = Arc::new(Store::open(dir, opts).unwrap().0);
    seed(&store, REPLAY_SESSIONS);
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let store = &store;
            s.spawn(move || {
                let (tx, rx) = crossbeam_channel::bounded::<()>(4096);
                for i in (w..REPLAY_RECORDS - 1).step_by(2) {
                    // Keep at most 4096 commits in flight: completions free the slots.
                    tx.send(()).unwrap();
                    let rx = rx.clone();
                    let done: Completion = Box::new(move |r| {
                        r.unwrap();
                        let _ = rx.try_recv();
                    });
                    let m = append(i as usize % REPLAY_SESSIONS, i);
                    store.commit(TENANT, vec![m], done).unwrap();
                }
            });
        }
    });
    drop(store);
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn replay(c: &mut Criterion) {
    let dir = temp("replay");
    let bytes = build_replay_log(&dir);
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(REPLAY_RECORDS));
    let mut total = Duration::ZERO;
    let mut runs = 0u32;
    g.bench_function("open_1M_records", |b| {
        b.iter_custom(|iters| {
            let mut el = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let (store, report) = Store::open(&dir, Options::default()).unwrap();
                el += t.elapsed();
                assert_eq!(report.records, REPLAY_RECORDS);
                drop(store);
            }
            total += el;
            runs += iters as u32;
            el
        })
    });
    g.finish();
    let per = total.as_secs_f64() / runs.max(1) as f64;
    eprintln!(
        "replay: {} records, {} bytes; mean {:.3}s per open = {:.0} records/s, {:.0} MB/s",
        REPLAY_RECORDS,
        bytes,
        per,
        REPLAY_RECORDS as f64 / per,
        bytes as f64 / per / 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const FRAME_RECORDS: u64 = 100_000;

/// The same 100,000 transaction payloads framed in `format`, back to back.
fn framed_log(format: record::Format) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..FRAME_RECORDS {
        let mut e = codec::Encoder::default();
        Txn::encode_parts(TENANT, &[append(i as usize % 1000, i)], &mut e);
        let payload = e.into_bytes();
        match format {
            record::Format::V1 => record_v1::encode(record::RecordType::Txn, &payload, &mut out),
            record::Format::V2 => record::encode(record::RecordType::Txn, &payload, &mut out),
        }
    }
    out
}

/// Frame checking alone (length, checksums, type): what the format costs on replay.
fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_read");
    g.throughput(Throughput::Elements(FRAME_RECORDS));
    for (name, format) in [("v1", record::Format::V1), ("v2", record::Format::V2)] {
        let log = framed_log(format);
        g.bench_function(name, |b| {
            b.iter(|| {
                let (recs, end) = record::decode_format(format, &log);
                assert_eq!(end, record::Next::End);
                recs.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, appends, replay, frames);
criterion_main!(benches);
