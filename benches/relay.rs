//! Criterion benchmark of reading a streamed completion: the part of relaying a token that
//! is Halyard's own work between the upstream's bytes and the client's event (SSE lines, the
//! chunk's JSON, the delta handed on). The chunks are those of `fake-upstream`, the upstream
//! of the relay load test (`benches/load/chat.sh --only relay`), one token a chunk, fed one
//! chunk per call as a relay reads them when tokens are 10 ms apart; and one chunk's JSON
//! read by the one-pass reader and by serde (`openai_chunk`).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use halyard_api::chat::openai::Relay;
use halyard_api::chat::openai_chunk;
use halyard_api::chat::provider::Prompt;

/// One upstream body piece per token, as `fake-upstream` writes them (chunked framing
/// removed: the loop's decoder hands the relay body bytes).
fn chunks(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                "data: {{\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i} \"}},\"finish_reason\":null}}]}}\n\n"
            )
            .into_bytes()
        })
        .collect()
}

fn prompt() -> Prompt {
    Prompt {
        messages: Vec::new(),
        model: "fake".into(),
        temperature: None,
        max_tokens: None,
        tools: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let chunks = chunks(200);
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Elements(chunks.len() as u64));
    g.bench_function("feed_200_chunks", |b| {
        b.iter(|| {
            let mut relay = Relay::new(&prompt());
            let mut said = 0usize;
            for chunk in &chunks {
                let fed = relay.feed(chunk, &mut |d| said += d.len());
                black_box(fed.is_ok());
            }
            black_box(said)
        })
    });
    g.finish();

    // One chunk's JSON alone (the `data:` line's text), read both ways.
    let text = String::from_utf8_lossy(&chunks[7]);
    let data = text.trim_start_matches("data: ").trim_end();
    let mut g = c.benchmark_group("chunk");
    g.bench_function("scan", |b| {
        b.iter(|| black_box(openai_chunk::scan(black_box(data)).is_some()))
    });
    g.bench_function("serde", |b| {
        b.iter(|| black_box(openai_chunk::parse_with_serde(black_box(data)).is_ok()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
