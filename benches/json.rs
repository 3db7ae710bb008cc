//! Criterion benchmarks of JSON in and out. In: the parser of request bodies, serde_json
//! against simd-json, into the same `serde_json::Value` the handlers read, on a typical small
//! body (an agent definition, ~400 bytes) and on a large one (a 2 MiB project import). Out:
//! a page of 50 sessions written as the list endpoint writes it.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use halyard_storage::{Channel, Session, SessionStatus};
use serde_json::{json, Value};

fn agent(i: usize) -> Value {
    json!({
        "name": format!("agent-{i}"),
        "description": "Answers questions about orders and returns, politely and briefly.",
        "instructions": "You are a support agent. Be concise. Never promise refunds without checking the order first.",
        "model": {"provider": "openai", "model": "gpt-4o-mini", "baseUrl": "https://api.openai.com/v1",
                  "apiKeySecret": "OPENAI_KEY", "temperature": 0.3, "maxTokens": 1024,
                  "pricing": {"inputPerMTok": 0.15, "outputPerMTok": 0.6}},
        "dslContent": null
    })
}

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let small = serde_json::to_vec(&agent(0)).unwrap_or_default();
    let mut agents = Vec::new();
    let mut doc = json!({"manifest": {"version": 1}, "agents": []});
    while serde_json::to_vec(&doc).map_or(0, |b| b.len()) < 2 * 1024 * 1024 {
        agents.push(agent(agents.len()));
        doc["agents"] = Value::Array(agents.clone());
    }
    let large = serde_json::to_vec(&doc).unwrap_or_default();
    vec![("agent_body", small), ("import_2mib", large)]
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("json_body");
    for (name, body) in bodies() {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("serde_json", name), &body, |b, body| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(body)).map(|v| v.is_object()))
        });
        g.bench_with_input(BenchmarkId::new("simd_json", name), &body, |b, body| {
            b.iter_batched_ref(
                || body.clone(),
                |buf| simd_json::serde::from_slice::<Value>(black_box(buf)).map(|v| v.is_object()),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// A session as `POST /api/projects/:pid/sessions {}` stores it.
fn session(i: u64) -> Session {
    Session {
        id: format!("ses_{i:020}"),
        project_id: "proj_01jdx5w7k2m9q8r4t6v3".into(),
        agent_id: "agt_01jdx5w7k2m9q8r4t6v4".into(),
        agent_name: "assistant".into(),
        status: SessionStatus::Active,
        channel: Channel::Api,
        message_count: i,
        token_count: 40 * i,
        created_at: 1_795_922_190_123 + i,
        last_activity_at: 1_795_922_290_456 + i,
        metadata: "{}".into(),
        created_by_token: None,
    }
}

fn write(c: &mut Criterion) {
    let sessions: Vec<Session> = (0..50).map(session).collect();
    let mut out = Vec::with_capacity(32 * 1024);
    let mut g = c.benchmark_group("json_view");
    g.throughput(Throughput::Elements(sessions.len() as u64));
    g.bench_function("sessions_50", |b| {
        b.iter(|| {
            out.clear();
            for s in black_box(&sessions) {
                halyard_api::view::write_session(&mut out, s);
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, parse, write);
criterion_main!(benches);
