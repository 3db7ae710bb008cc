//! Criterion benchmarks of the engine's hot paths, driven through its public, I/O-free API.
//!
//! - `http/*`: parsing a small request head and encoding a small JSON response into a reused
//!   buffer, alone, together, and 16 pipelined requests per batch (what one read of a
//!   16-deep pipelined client hands the engine).
//! - `wheel/*`: the per-loop timer wheel: insert + cancel with 10,000 entries pending, one
//!   tick of `advance` over 10,000 pending entries that are not due, and `advance` firing
//!   10,000 due entries.
//!
//! The whole connection path (`conn::Conn`) is not benched here: building its `Env` needs a
//! `crossbeam_channel::Sender` for the `Mailbox`, and `crossbeam-channel` is not a dependency
//! of the root package. The load test (`benches/load/run.sh`) covers that path end to end.
//!
//! Run: `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use halyard_engine::parse::{header_slots, parse};
use halyard_engine::request::{RequestId, RequestIds};
use halyard_engine::response::{write_response, HeadContext, Response};
use halyard_engine::wheel::Wheel;

// Same allocator as the `halyard` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What `wrk` sends for `GET /health/live`.
const WRK_REQUEST: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

/// A typical API request head from a real client.
const CLIENT_REQUEST: &[u8] = b"GET /v1/agents/agt_01HZX3/runs?limit=20 HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: application/json\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZW4ifQ.c2lnbmF0dXJl\r\n\
X-Request-Id: client-req-42\r\n\
Connection: keep-alive\r\n\r\n";

const DATE: &[u8] = b"Thu, 01 Jan 2026 00:00:00 GMT";
const BODY: &[u8] = br#"{"status":"ok"}"#;

/// Parses one head and returns its length, as the connection does before answering.
fn parse_len(buf: &[u8]) -> usize {
    let mut slots = header_slots();
    match parse(buf, &mut slots) {
        Ok(Some(head)) => head.len,
        other => panic!("bench request did not parse: {other:?}"),
    }
}

fn http(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Elements(1));

    g.bench_function("parse/wrk_health_live", |b| {
        b.iter(|| parse_len(black_box(WRK_REQUEST)))
    });
    g.bench_function("parse/client_7_headers", |b| {
        b.iter(|| parse_len(black_box(CLIENT_REQUEST)))
    });

    let resp = Response::static_json(200, BODY);
    let id = RequestId::new(b"req_00000000000000000000002a");
    let cx = HeadContext {
        date: DATE,
        request_id: id.as_bytes(),
        keep_alive: true,
        http10: false,
    };
    let mut out = Vec::with_capacity(4096);
    g.bench_function("write/health_live", |b| {
        b.iter(|| {
            out.clear();
            write_response(&mut out, black_box(&resp), false, black_box(&cx));
            out.len()
        })
    });

    // What the connection does per `GET /health/live`: parse, mint a request id, build the
    // response, encode it.
    let mut ids = RequestIds::new(0x3f2a_1b9c);
    g.bench_function("parse_and_write/health_live", |b| {
        b.iter(|| {
            out.clear();
            let mut slots = header_slots();
            let head = parse(black_box(WRK_REQUEST), &mut slots)
                .expect("valid")
                .expect("complete");
            let id = ids.next_id();
            let cx = HeadContext {
                date: DATE,
                request_id: id.as_bytes(),
                keep_alive: head.keep_alive,
                http10: false,
            };
            let resp = Response::static_json(200, BODY);
            write_response(&mut out, &resp, head.method == "HEAD", &cx);
            out.len()
        })
    });

    // One read of a 16-deep pipelined client: 16 heads parsed from one buffer, 16 responses
    // appended to one output buffer.
    const DEPTH: usize = 16;
    let batch = WRK_REQUEST.repeat(DEPTH);
    g.throughput(Throughput::Elements(DEPTH as u64));
    g.bench_function("parse_and_write/pipelined_16", |b| {
        b.iter(|| {
            out.clear();
            let mut input = black_box(&batch[..]);
            while !input.is_empty() {
                let mut slots = header_slots();
                let head = parse(input, &mut slots).expect("valid").expect("complete");
                let id = ids.next_id();
                let cx = HeadContext {
                    date: DATE,
                    request_id: id.as_bytes(),
                    keep_alive: head.keep_alive,
                    http10: false,
                };
                let resp = Response::static_json(200, BODY);
                write_response(&mut out, &resp, false, &cx);
                input = &input[head.len..];
            }
            out.len()
        })
    });
    g.finish();
}

/// The engine's tick.
const TICK_MS: u64 = 10;
/// Pending entries in the wheel benches: a loop with 10,000 idle keep-alive connections.
const ENTRIES: u64 = 10_000;

/// A wheel holding `ENTRIES` deadlines spread over the next 60 s (the idle timeout).
fn populated_wheel() -> Wheel<u64> {
    let mut w = Wheel::new(TICK_MS, 0);
    for i in 0..ENTRIES {
        w.insert(1_000 + (i * 60_000) / ENTRIES, i);
    }
    w
}

fn wheel(c: &mut Criterion) {
    let mut g = c.benchmark_group("wheel");

    g.throughput(Throughput::Elements(1));
    let mut w = populated_wheel();
    let mut at = 0u64;
    g.bench_function("insert_cancel/10k_pending", |b| {
        b.iter(|| {
            at = (at + 7_919) % 60_000;
            let key = w.insert(black_box(1_000 + at), at);
            w.cancel(key)
        })
    });

    // One 10 ms tick while 10,000 entries are pending and none is due: the common case of
    // a loop whose connections are all idle well inside their timeout.
    g.bench_function("advance_one_tick/10k_pending_none_due", |b| {
        b.iter_batched_ref(
            populated_wheel,
            |w| {
                let mut fired = 0u32;
                w.advance(black_box(TICK_MS), |_| fired += 1);
                fired
            },
            BatchSize::LargeInput,
        )
    });

    // All 10,000 entries come due in one `advance` (e.g. after a long stall).
    g.throughput(Throughput::Elements(ENTRIES));
    g.bench_function("advance_fire_all/10k", |b| {
        b.iter_batched_ref(
            populated_wheel,
            |w| {
                let mut fired = 0u64;
                w.advance(black_box(61_000), |p| fired += p);
                fired
            },
            BatchSize::LargeInput,
        )
    });

    // Insert 10,000 deadlines, then advance tick by tick over 61 s until all have fired.
    g.bench_function("insert_then_advance_by_tick/10k", |b| {
        b.iter(|| {
            let mut w = populated_wheel();
            let mut fired = 0u64;
            let mut now = 0;
            while !w.is_empty() {
                now += TICK_MS;
                w.advance(now, |p| fired += p);
            }
            fired
        })
    });
    g.finish();
}

criterion_group!(benches, http, wheel);
criterion_main!(benches);
