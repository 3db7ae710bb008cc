//! Criterion benchmark of the access log's line formatting: what the writer thread spends
//! per request with `--access-log` on (issue 18: the log must cost under 10 % of requests/s,
//! so at a million pipelined requests a second a line has ~0.1 µs).
//!
//! - `access_log/format_1024_lines`: 1,024 typical entries (generated request ids, IPv4
//!   peers, a tenant, three routes, 0.7 ms apart so the second changes every ~1,400 lines)
//!   formatted into one reused batch buffer, as the writer does between two `write`s.
//!
//! Run: `cargo bench -p halyard-engine --bench access_log -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use halyard_engine::access_log::{Entry, LineFormat};
use halyard_engine::request::{Method, RequestIds};
use halyard_engine::Tenant;

const LABELS: [&str; 3] = [
    "/health/live",
    "/api/projects/:projectId/agents",
    "/api/projects/:projectId/agents/:agentId",
];

fn entries(base: Instant) -> Vec<Entry> {
    let mut ids = RequestIds::new(0x3f2a_1b9c);
    (0..1024u64)
        .map(|i| Entry {
            at: base + Duration::from_micros(i * 700),
            id: ids.next_id(),
            peer: IpAddr::V4(Ipv4Addr::new(203, 0, 113, (i % 250) as u8)),
            tenant: Tenant::new("ten_kg97djfeqr3j6j34dkqt"),
            route: Some((i % 3) as u16),
            method: Method::Post,
            status: 201,
            bytes_in: 412,
            bytes_out: 690 + i,
            latency_us: 1830,
            stream_us: None,
        })
        .collect()
}

fn format(c: &mut Criterion) {
    let base = (Instant::now(), SystemTime::now());
    let entries = entries(base.0);
    let mut g = c.benchmark_group("access_log");
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.bench_function("format_1024_lines", |b| {
        let mut f = LineFormat::new(&LABELS, base);
        let mut batch: Vec<u8> = Vec::with_capacity(512 * 1024);
        b.iter(|| {
            batch.clear();
            for e in &entries {
                f.push(&mut batch, black_box(e));
            }
            black_box(batch.len())
        })
    });
    g.finish();
}

criterion_group!(benches, format);
criterion_main!(benches);
