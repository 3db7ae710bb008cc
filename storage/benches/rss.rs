//! Memory: resident set size with 1,000,000 stored messages (100-byte texts, 1000
//! sessions), after writing them and after reopening (replay) in a fresh state.
//!
//! Run: `cargo bench -p halyard-storage --bench rss`

use std::sync::Arc;

use halyard_storage::*;

const MESSAGES: u64 = 1_000_000;
const SESSIONS: u64 = 1000;
const PER_TXN: u64 = 100;

fn vm_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn session(i: u64) -> Session {
    Session {
        id: format!("ses_{i:020}"),
        project_id: "proj_rss".into(),
        agent_id: "agt_rss".into(),
        agent_name: "rss".into(),
        status: SessionStatus::Active,
        channel: Channel::Api,
        message_count: 0,
        token_count: 0,
        created_at: 1,
        last_activity_at: 1,
        metadata: "{}".into(),
        created_by_token: None,
    }
}

fn fill(store: &Store) {
    let t = Tenant {
        id: "ten_rss".into(),
        name: "rss".into(),
        limits: Limits::default(),
        disabled: false,
        created_at: 1,
        updated_at: 1,
    };
    let p = Project {
        id: "proj_rss".into(),
        name: "rss".into(),
        slug: "rss".into(),
        description: None,
        entry_agent_name: None,
        created_at: 1,
        updated_at: 1,
    };
    let mut muts = vec![Mutation::PutTenant(t), Mutation::PutProject(p)];
    muts.extend((0..SESSIONS).map(|i| Mutation::PutSession(session(i))));
    store.commit_wait("ten_rss", muts).unwrap();
    for batch in 0..MESSAGES / PER_TXN {
        let sid = format!("ses_{:020}", batch % SESSIONS);
        let muts = (0..PER_TXN)
            .map(|j| {
                let n = batch * PER_TXN + j;
                let m = Message {
                    id: ids::new_id(ids::MESSAGE),
                    role: if n.is_multiple_of(2) {
                        MessageRole::User
                    } else {
                        MessageRole::Assistant
                    },
                    content: format!("{n:0100}"),
                    usage: Some(Usage {
                        input_tokens: 10,
                        output_tokens: 20,
                        total_tokens: 30,
                        latency_ms: 0,
                    }),
                    created_at: 1_700_000_000_000 + n,
                    tool_calls: None,
                    tool_call_id: None,
                };
                Mutation::append_message("proj_rss", &sid, &m)
            })
            .collect();
        store.commit_wait("ten_rss", muts).unwrap();
    }
}

fn count(store: &Store) -> u64 {
    (0..SESSIONS)
        .map(|i| {
            let sid = format!("ses_{i:020}");
            let page = Page {
                offset: 0,
                limit: 0,
            };
            store
                .messages("ten_rss", "proj_rss", &sid, page)
                .map_or(0, |l| l.total as u64)
        })
        .sum()
}

fn opts() -> Options {
    Options {
        fsync: FsyncPolicy::Never,
        snapshot_threshold: u64::MAX,
        ..Options::default()
    }
}

/// Second phase, in a fresh process so that the first store's freed memory does not count.
fn replay(dir: &str) {
    let base = vm_rss_kib();
    let (store, report) = Store::open(dir, opts()).unwrap();
    let rss = vm_rss_kib();
    assert_eq!(count(&store), MESSAGES);
    println!(
        "fresh process, replay of the log ({:.2}s): VmRSS {} MiB (process baseline {} MiB)",
        report.elapsed.as_secs_f64(),
        rss / 1024,
        base / 1024
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Ok(dir) = std::env::var("HALYARD_RSS_REPLAY") {
        return replay(&dir);
    }
    let dir = std::env::temp_dir().join(format!("halyard-rss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = vm_rss_kib();
    let store = Arc::new(Store::open(&dir, opts()).unwrap().0);
    fill(&store);
    let after_write = vm_rss_kib();
    assert_eq!(count(&store), MESSAGES);
    drop(store);
    println!("messages stored: {MESSAGES} (100-byte texts, {SESSIONS} sessions)");
    println!(
        "after writing them: VmRSS {} MiB (process baseline {} MiB)",
        after_write / 1024,
        base / 1024
    );
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env("HALYARD_RSS_REPLAY", &dir)
        .status()
        .unwrap();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
