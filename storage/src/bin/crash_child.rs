//! Crash-test child: opens a store, then several threads commit two-message turns as fast as
//! they can and print `ack THREAD TURN` once each turn's completion reports it durable. The
//! test kills this process with SIGKILL at a random moment and checks the reopened store.
//!
//! Usage: `halyard-storage-crash-child DIR THREADS`

use std::io::Write;
use std::sync::Arc;

use halyard_storage::{
    Backend, Channel, Limits, Message, MessageRole, Mutation, Options, Project, Session,
    SessionStatus, Store, Tenant, Usage,
};

const TENANT: &str = "ten_crash";
const PROJECT: &str = "proj_crash";

fn session_id(t: usize) -> String {
    format!("ses_t{t}")
}

/// The two messages of turn `k` of thread `t` (the test recomputes them to compare).
pub fn turn(t: usize, k: u64) -> [Message; 2] {
    [
        Message {
            id: format!("msg_{t}_{k}_u"),
            role: MessageRole::User,
            content: format!("question {t} {k}"),
            usage: None,
            created_at: k,
            tool_calls: None,
            tool_call_id: None,
        },
        Message {
            id: format!("msg_{t}_{k}_a"),
            role: MessageRole::Assistant,
            content: format!("answer {t} {k} {}", "x".repeat((k % 50) as usize)),
            usage: Some(Usage {
                input_tokens: 1,
                output_tokens: 2,
                total_tokens: 3,
                latency_ms: 0,
            }),
            created_at: k,
            tool_calls: None,
            tool_call_id: None,
        },
    ]
}

fn setup(store: &Store, threads: usize) {
    if store.tenant(TENANT).is_none() {
        let t = Tenant {
            id: TENANT.into(),
            name: "crash".into(),
            limits: Limits::default(),
            disabled: false,
            created_at: 1,
            updated_at: 1,
        };
        let p = Project {
            id: PROJECT.into(),
            name: "crash".into(),
            slug: "crash".into(),
            description: None,
            entry_agent_name: None,
            created_at: 1,
            updated_at: 1,
        };
        store
            .commit_wait(
                TENANT,
                vec![Mutation::PutTenant(t), Mutation::PutProject(p)],
            )
            .expect("setup commit");
    }
    for t in 0..threads {
        if store.session(TENANT, PROJECT, &session_id(t)).is_none() {
            let s = Session {
                id: session_id(t),
                project_id: PROJECT.into(),
                agent_id: "agt_x".into(),
                agent_name: "x".into(),
                status: SessionStatus::Active,
                channel: Channel::Api,
                message_count: 0,
                token_count: 0,
                created_at: 1,
                last_activity_at: 1,
                metadata: "{}".into(),
                created_by_token: None,
            };
            store
                .commit_wait(TENANT, vec![Mutation::PutSession(s)])
                .expect("session commit");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(threads)) = (args.get(1), args.get(2).and_then(|s| s.parse().ok())) else {
        eprintln!("usage: halyard-storage-crash-child DIR THREADS");
        std::process::exit(2);
    };
    let opts = Options {
        segment_size: 64 * 1024,
        snapshot_threshold: 256 * 1024,
        ..Options::default()
    };
    let (store, _report) = Store::open(dir, opts).expect("open");
    let store = Arc::new(store);
    setup(&store, threads);
    println!("ready");
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let sid = session_id(t);
                let start = store
                    .session(TENANT, PROJECT, &sid)
                    .map_or(0, |s| s.message_count / 2);
                for k in start.. {
                    let [u, a] = turn(t, k);
                    let muts = vec![
                        Mutation::append_message(PROJECT, &sid, &u),
                        Mutation::append_message(PROJECT, &sid, &a),
                    ];
                    store.commit_wait(TENANT, muts).expect("commit");
                    // Printed only after the completion said durable.
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ack {t} {k}");
                    let _ = out.flush();
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}
