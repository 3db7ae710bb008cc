//! Criterion benchmarks of admission: one GCRA bucket take, uncontended and contended by
//! two threads on the same cell (the case of one busy tenant served by two loops), and a
//! keyed lookup plus take in the lock-free tenant table.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use halyard_api::admission::gcra::{take, Quota};
use halyard_api::admission::table::CellTable;

/// A quota that never denies during a run, so every take is a successful CAS.
fn open_quota() -> Quota {
    Quota::per_second(u32::MAX, u32::MAX)
}

fn uncontended(c: &mut Criterion) {
    let cell = AtomicU64::new(0);
    let q = open_quota();
    let epoch = Instant::now();
    c.bench_function("gcra_take_uncontended", |b| {
        b.iter(|| take(black_box(&cell), epoch.elapsed().as_nanos() as u64 + 1, q))
    });
}

/// The take alone: `now` comes from a counter, as when the loop reads its clock once per
/// wake-up and admits a batch of pipelined requests with it.
fn uncontended_no_clock(c: &mut Criterion) {
    let cell = AtomicU64::new(0);
    let q = open_quota();
    let mut now = 1u64;
    c.bench_function("gcra_take_uncontended_no_clock", |b| {
        b.iter(|| {
            now += 1;
            take(black_box(&cell), now, q)
        })
    });
}

fn contended_no_clock(c: &mut Criterion) {
    let q = open_quota();
    c.bench_function("gcra_take_contended_2_threads_no_clock", |b| {
        b.iter_custom(|iters| {
            let cell = Arc::new(AtomicU64::new(0));
            let barrier = Arc::new(Barrier::new(2));
            let worker = |cell: Arc<AtomicU64>, barrier: Arc<Barrier>| {
                move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters {
                        black_box(take(&cell, i + 1, q));
                    }
                    start.elapsed()
                }
            };
            let other = std::thread::spawn(worker(cell.clone(), barrier.clone()));
            let mine = worker(cell, barrier)();
            let theirs = other.join().unwrap_or(Duration::ZERO);
            (mine + theirs) / 2
        })
    });
}

fn contended(c: &mut Criterion) {
    let q = open_quota();
    c.bench_function("gcra_take_contended_2_threads", |b| {
        b.iter_custom(|iters| {
            let cell = Arc::new(AtomicU64::new(0));
            let barrier = Arc::new(Barrier::new(2));
            let epoch = Instant::now();
            let worker = |cell: Arc<AtomicU64>, barrier: Arc<Barrier>| {
                move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(take(&cell, epoch.elapsed().as_nanos() as u64 + 1, q));
                    }
                    start.elapsed()
                }
            };
            let other = std::thread::spawn(worker(cell.clone(), barrier.clone()));
            let mine = worker(cell, barrier)();
            let theirs = other.join().unwrap_or(Duration::ZERO);
            // Time per take as each thread sees it while both hammer the same cell.
            (mine + theirs) / 2
        })
    });
}

fn keyed(c: &mut Criterion) {
    let table = CellTable::new(16 * 1024);
    let keys: Vec<u64> = (0..1000)
        .map(|i| table.key_of(&format!("ten_{i:020}")))
        .collect();
    let q = open_quota();
    let epoch = Instant::now();
    let mut i = 0;
    c.bench_function("tenant_table_lookup_and_take", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let now = epoch.elapsed().as_nanos() as u64 + 1;
            let cell = table.cell(keys[i], now).expect("room");
            take(cell, now, q)
        })
    });
}

criterion_group!(
    benches,
    uncontended,
    uncontended_no_clock,
    contended,
    contended_no_clock,
    keyed
);
criterion_main!(benches);
