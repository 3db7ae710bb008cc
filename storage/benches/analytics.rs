//! Analytics over a million turns: the per-hour rollups of one project holding 1,000,000
//! turns (5 % failed) spread over 30 days, 1,000 sessions of 4 agents on 2 channels, half
//! of them on a production deployment, read for a 30-day window grouped each way
//! (issue 17: under 50 ms).
//!
//! - `analytics/30_days_by_<group>`: `Backend::analytics` for the whole 30 days.
//! - `usage/30_days_summed`: `Backend::usage_totals` over the same project, whose sessions
//!   also hold one assistant message with usage per turn (1,000,000), against
//!   `usage/30_days_walked`: the walk of every session's messages that
//!   `GET /api/v1/chat/usage` did before (issue 16: "not a walk of every message").
//!
//! Run: `cargo bench -p halyard-storage --bench analytics -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use halyard_storage::state::rollup::{GroupBy, DAY_MS};
use halyard_storage::*;

const TURNS: u64 = 1_000_000;
const SESSIONS: u64 = 1_000;
const PER_TXN: u64 = 1_000;
const START: u64 = 1_700_000_000_000;
const T: &str = "ten_an";
const P: &str = "proj_an";

fn session(i: u64) -> Session {
    Session {
        id: format!("ses_{i:020}"),
        project_id: P.into(),
        agent_id: format!("agt_{}", i % 4),
        agent_name: format!("agent-{}", i % 4),
        status: SessionStatus::Active,
        channel: if i.is_multiple_of(2) {
            Channel::Api
        } else {
            Channel::Sdk
        },
        message_count: 0,
        token_count: 0,
        created_at: START,
        last_activity_at: START,
        metadata: "{}".into(),
        created_by_token: None,
    }
}

fn turn(n: u64) -> TraceEvent {
    TraceEvent {
        kind: if n.is_multiple_of(20) {
            TraceKind::Error
        } else {
            TraceKind::Response
        },
        span_id: format!("spn_{n}"),
        parent_span_id: None,
        name: "echo".into(),
        // Spread evenly over the 30 days.
        started_at: START + n * (30 * DAY_MS / TURNS),
        duration_ms: 40 + n % 3_000,
        input_tokens: 12,
        output_tokens: 30,
        cost: Some(0.0001),
        data: String::new(),
    }
}

fn reply(n: u64) -> Message {
    Message {
        id: format!("msg_{n}"),
        role: MessageRole::Assistant,
        content: "a reply of a few words".into(),
        usage: Some(Usage {
            input_tokens: 12,
            output_tokens: 30,
            total_tokens: 42,
            latency_ms: 40 + n % 3_000,
        }),
        created_at: START + n * (30 * DAY_MS / TURNS),
        tool_calls: None,
        tool_call_id: None,
    }
}

fn fill(store: &Store) {
    let mut muts = vec![
        Mutation::PutTenant(Tenant {
            id: T.into(),
            name: "an".into(),
            limits: Limits::default(),
            disabled: false,
            created_at: 1,
            updated_at: 1,
        }),
        Mutation::PutProject(Project {
            id: P.into(),
            name: "an".into(),
            slug: "an".into(),
            description: None,
            entry_agent_name: None,
            created_at: 1,
            updated_at: 1,
        }),
        Mutation::PutDeployment(Deployment {
            id: "dep_an".into(),
            project_id: P.into(),
            environment: Environment::Production,
            status: DeploymentStatus::Active,
            label: None,
            description: None,
            endpoint_slug: "an/production/agent-0".into(),
            entry_agent_name: "agent-0".into(),
            manifest: vec![],
            model_overrides: None,
            created_at: START,
            created_by: "bench".into(),
            activated_at: START,
            rolled_back_at: None,
            retired_at: None,
        }),
    ];
    for i in 0..SESSIONS {
        muts.push(Mutation::PutSession(session(i)));
        if i.is_multiple_of(2) {
            muts.push(Mutation::SetSessionDeployment {
                project_id: P.into(),
                session_id: session(i).id,
                deployment_id: "dep_an".into(),
            });
        }
    }
    store.commit_wait(T, muts).unwrap();
    for batch in 0..TURNS / PER_TXN {
        let events = (0..PER_TXN).map(|j| turn(batch * PER_TXN + j)).collect();
        let sid = session(batch % SESSIONS).id;
        let mut muts: Vec<Mutation> = (0..PER_TXN)
            .map(|j| Mutation::append_message(P, &sid, &reply(batch * PER_TXN + j)))
            .collect();
        muts.push(Mutation::AppendTraces {
            project_id: P.into(),
            session_id: sid,
            events,
        });
        store.commit_wait(T, muts).unwrap();
    }
}

fn analytics(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("halyard-analytics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = Options {
        fsync: FsyncPolicy::Never,
        snapshot_threshold: u64::MAX,
        ..Options::default()
    };
    let store = Store::open(&dir, opts).unwrap().0;
    let t0 = Instant::now();
    fill(&store);
    eprintln!(
        "{TURNS} turns stored in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let (from, to) = (START, START + 30 * DAY_MS);
    let total: u64 = store
        .analytics(T, P, from, to, GroupBy::Channel)
        .iter()
        .map(|(_, r)| r.turns)
        .sum();
    assert_eq!(total, TURNS, "every turn counted");
    let mut g = c.benchmark_group("analytics");
    for (name, by) in [
        ("agent_name", GroupBy::AgentName),
        ("channel", GroupBy::Channel),
        ("environment", GroupBy::Environment),
        ("hour", GroupBy::Hour),
        ("day", GroupBy::Day),
    ] {
        g.bench_function(format!("30_days_by_{name}"), |b| {
            b.iter(|| black_box(store.analytics(T, P, from, to, by)).len())
        });
    }
    g.finish();
    let summed = || store.usage_totals(T, P, from, to, None);
    let walked = || {
        let mut tokens = 0;
        let all = SessionFilter::default();
        for s in store.sessions(T, P, &all, Page::ALL).items {
            for m in store.messages(T, P, &s.id, Page::ALL).unwrap().items {
                if (from..=to).contains(&m.created_at) {
                    tokens += m.usage.map_or(0, |u| u.total_tokens);
                }
            }
        }
        tokens
    };
    let sum_tokens: u64 = summed().iter().map(|(_, t)| t.total_tokens).sum();
    assert_eq!(sum_tokens, walked(), "the sums and the walk agree");
    let mut g = c.benchmark_group("usage");
    g.sample_size(10);
    g.bench_function("30_days_summed", |b| b.iter(|| black_box(summed()).len()));
    g.bench_function("30_days_walked", |b| b.iter(|| black_box(walked())));
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, analytics);
criterion_main!(benches);
