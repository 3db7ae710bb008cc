//! State: uniqueness (409), existence (404), all-or-nothing transactions, cascades, queries,
//! and that all of it survives a reopen.

mod common;

use common::*;
use halyard_storage::*;

fn conflict(r: Result<(), StoreError>, what: &str) {
    match r {
        Err(StoreError::Conflict { what: w, .. }) => assert_eq!(w, what),
        other => panic!("expected {what} conflict, got {other:?}"),
    }
}

#[test]
fn uniqueness_rules() {
    let dir = TempDir::new("unique");
    let (store, _) = open(dir.path());
    seed(&store);
    conflict(
        store.commit_wait(T, vec![Mutation::PutProject(project("proj_b", "a"))]),
        "project slug",
    );
    store
        .commit_wait(T, vec![Mutation::PutAgent(agent(P, "agt_1", "bot"))])
        .unwrap();
    conflict(
        store.commit_wait(T, vec![Mutation::PutAgent(agent(P, "agt_2", "bot"))]),
        "agent name",
    );
    // Same id, same name: a replacement, not a conflict.
    store
        .commit_wait(T, vec![Mutation::PutAgent(agent(P, "agt_1", "bot"))])
        .unwrap();
    store
        .commit_wait(T, vec![Mutation::PutSecret(secret(P, "sec_1", "OPENAI"))])
        .unwrap();
    conflict(
        store.commit_wait(T, vec![Mutation::PutSecret(secret(P, "sec_2", "OPENAI"))]),
        "secret name",
    );
    store
        .commit_wait(T, vec![Mutation::PutApiKey(api_key("key_1", "ci", 1))])
        .unwrap();
    conflict(
        store.commit_wait(T, vec![Mutation::PutApiKey(api_key("key_2", "ci", 2))]),
        "key name",
    );
    // A revoked key frees its name.
    let mut revoked = api_key("key_1", "ci", 1);
    revoked.revoked = true;
    store
        .commit_wait(T, vec![Mutation::PutApiKey(revoked)])
        .unwrap();
    store
        .commit_wait(T, vec![Mutation::PutApiKey(api_key("key_2", "ci", 2))])
        .unwrap();
    // Another project may reuse agent names; another tenant may reuse slugs.
    store
        .commit_wait(
            T,
            vec![
                Mutation::PutProject(project("proj_b", "b")),
                Mutation::PutAgent(agent("proj_b", "agt_3", "bot")),
            ],
        )
        .unwrap();
    store
        .commit_wait(
            "ten_b",
            vec![
                Mutation::PutTenant(tenant("ten_b")),
                Mutation::PutProject(project("proj_x", "a")),
            ],
        )
        .unwrap();
    assert_eq!(store.agents_named(T, "bot").len(), 2);
}

#[test]
fn missing_parents_are_not_found() {
    let dir = TempDir::new("missing");
    let (store, _) = open(dir.path());
    let r = store.commit_wait(T, vec![Mutation::PutProject(project(P, "a"))]);
    assert!(matches!(
        r,
        Err(StoreError::NotFound { what: "tenant", .. })
    ));
    seed(&store);
    let r = store.commit_wait(
        T,
        vec![Mutation::PutAgent(agent("proj_nope", "agt_1", "x"))],
    );
    assert!(matches!(
        r,
        Err(StoreError::NotFound {
            what: "project",
            ..
        })
    ));
    let r = store.commit_wait(
        T,
        vec![Mutation::append_message(P, "ses_nope", &message("m", "x"))],
    );
    assert!(matches!(
        r,
        Err(StoreError::NotFound {
            what: "session",
            ..
        })
    ));
    let r = store.commit_wait(T, vec![Mutation::PutTenant(tenant("ten_other"))]);
    assert!(matches!(r, Err(StoreError::Invalid(_))));
}

#[test]
fn a_refused_transaction_changes_nothing_and_is_not_logged() {
    let dir = TempDir::new("atomic");
    let (store, _) = open(dir.path());
    seed(&store);
    store
        .commit_wait(T, vec![Mutation::PutAgent(agent(P, "agt_1", "taken"))])
        .unwrap();
    let r = store.commit_wait(
        T,
        vec![
            Mutation::PutAgent(agent(P, "agt_2", "fresh")),
            Mutation::PutSession(session(P, "ses_1", 5)),
            Mutation::append_message(P, "ses_1", &message("m1", "x")),
            Mutation::PutSecret(secret(P, "sec_1", "S")),
            Mutation::DeleteAgent {
                project_id: P.into(),
                id: "agt_1".into(),
            },
            Mutation::PutProject(project("proj_z", "zz")),
            Mutation::PutAgent(agent(P, "agt_3", "taken")), // refused: name held? no: agt_1 deleted above
            Mutation::PutAgent(agent(P, "agt_4", "fresh")), // refused: agt_2 holds it
        ],
    );
    conflict(r, "agent name");
    let check = |store: &Store| {
        assert!(store.agent(T, P, "agt_1").is_some());
        assert!(store.agent(T, P, "agt_2").is_none());
        assert!(store.agent_by_name(T, P, "fresh").is_none());
        assert_eq!(store.agent_by_name(T, P, "taken").unwrap().id, "agt_1");
        assert!(store.session(T, P, "ses_1").is_none());
        assert!(store.locate_session("ses_1").is_none());
        assert!(store.secret(T, P, "S").is_none());
        assert!(store.project(T, "proj_z").is_none());
        assert_eq!(store.projects(T, Page::default()).total, 1);
        assert_eq!(store.active_session_count(T), 0);
    };
    check(&store);
    drop(store);
    let (store, report) = open(dir.path());
    assert_eq!(report.rejected, 0);
    check(&store);
}

#[test]
fn project_delete_cascades_and_survives_reopen() {
    let dir = TempDir::new("cascade");
    let (store, _) = open(dir.path());
    seed(&store);
    let pk = PublicKey {
        id: "pkey_1".into(),
        project_id: P.into(),
        name: "w".into(),
        prefix: "pk_ab".into(),
        digest: [9; 32],
        allowed_origins: vec!["https://a.example".into()],
        created_at: 1,
    };
    store
        .commit_wait(
            T,
            vec![
                Mutation::PutAgent(agent(P, "agt_1", "bot")),
                Mutation::PutSession(session(P, "ses_1", 1)),
                Mutation::PutSecret(secret(P, "sec_1", "S")),
                Mutation::PutPublicKey(pk),
            ],
        )
        .unwrap();
    assert!(store.public_key_by_digest(&[9; 32]).is_some());
    assert!(store.origin_registered("https://a.example"));
    assert_eq!(store.locate_session("ses_1"), Some((T.into(), P.into())));
    assert_eq!(store.active_session_count(T), 1);
    store
        .commit_wait(T, vec![Mutation::DeleteProject { id: P.into() }])
        .unwrap();
    let check = |store: &Store| {
        assert!(store.project(T, P).is_none());
        assert!(store.public_key_by_digest(&[9; 32]).is_none());
        assert!(!store.origin_registered("https://a.example"));
        assert!(store.locate_session("ses_1").is_none());
        assert_eq!(store.active_session_count(T), 0);
        assert!(store.agents(T, None, Page::default()).items.is_empty());
    };
    check(&store);
    // The slug is free again.
    store
        .commit_wait(T, vec![Mutation::PutProject(project("proj_2", "a"))])
        .unwrap();
    drop(store);
    let (store, _) = open(dir.path());
    check(&store);
    assert!(store.project(T, "proj_2").is_some());
}

#[test]
fn queries_order_and_page() {
    let dir = TempDir::new("queries");
    let (store, _) = open(dir.path());
    seed(&store);
    for i in 0..10u64 {
        let mut s = session(P, &format!("ses_{i}"), 100 + i);
        if i % 2 == 0 {
            s.status = SessionStatus::Ended;
        }
        if i == 3 {
            s.channel = Channel::Sdk;
            s.created_by_token = Some("tok_1".into());
        }
        store.commit_wait(T, vec![Mutation::PutSession(s)]).unwrap();
    }
    let all = store.sessions(
        T,
        P,
        &SessionFilter::default(),
        Page {
            offset: 2,
            limit: 3,
        },
    );
    assert_eq!(all.total, 10);
    let ids: Vec<_> = all.items.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["ses_7", "ses_6", "ses_5"]);
    let active = SessionFilter {
        status: Some(SessionStatus::Active),
        ..SessionFilter::default()
    };
    assert_eq!(store.sessions(T, P, &active, Page::default()).total, 5);
    assert_eq!(store.active_session_count(T), 5);
    let mine = SessionFilter {
        created_by_token: Some("tok_1"),
        ..SessionFilter::default()
    };
    assert_eq!(
        store.sessions(T, P, &mine, Page::default()).items[0].id,
        "ses_3"
    );

    for i in 0..5 {
        let mut m = message(&format!("msg_{i}"), &format!("text {i}"));
        m.usage = Some(Usage {
            input_tokens: 1,
            output_tokens: 1,
            total_tokens: 2,
            latency_ms: 0,
        });
        m.created_at = 1000 + i;
        store
            .commit_wait(T, vec![Mutation::append_message(P, "ses_1", &m)])
            .unwrap();
    }
    let s = store.session(T, P, "ses_1").unwrap();
    assert_eq!(
        (s.message_count, s.token_count, s.last_activity_at),
        (5, 10, 1004)
    );
    let page = store
        .messages(
            T,
            P,
            "ses_1",
            Page {
                offset: 1,
                limit: 2,
            },
        )
        .unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(page.items[0].content, "text 1");
    store
        .commit_wait(
            T,
            vec![Mutation::ClearMessages {
                project_id: P.into(),
                session_id: "ses_1".into(),
            }],
        )
        .unwrap();
    assert_eq!(store.messages(T, P, "ses_1", Page::ALL).unwrap().total, 0);

    store
        .commit_wait(
            T,
            vec![
                Mutation::StartStream {
                    stream_id: "str_1".into(),
                    owner: "usr_1".into(),
                    created_at: 1,
                    node: String::new(),
                },
                Mutation::AppendStreamEvent {
                    stream_id: "str_1".into(),
                    event: StreamEvent {
                        id: 1,
                        event: "text_delta".into(),
                        data: "{}".into(),
                    },
                },
                Mutation::AppendStreamEvent {
                    stream_id: "str_1".into(),
                    event: StreamEvent {
                        id: 2,
                        event: "complete".into(),
                        data: "{}".into(),
                    },
                },
            ],
        )
        .unwrap();
    let r = store.stream_events_after(T, "str_1", 1).unwrap();
    assert_eq!(r.owner, "usr_1");
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].event, "complete");

    let user = User {
        id: "usr_1".into(),
        email: "a@b.c".into(),
        password_hash: "$argon2id$v=19$x".into(),
        role: Role::Owner,
        created_at: 1,
    };
    store
        .commit_wait(T, vec![Mutation::PutUser(user.clone())])
        .unwrap();
    let mut dup = user.clone();
    dup.id = "usr_2".into();
    conflict(store.commit_wait(T, vec![Mutation::PutUser(dup)]), "email");
    store
        .commit_wait(T, vec![Mutation::PutApiKey(api_key("key_1", "k", 7))])
        .unwrap();
    drop(store);
    let (store, _) = open(dir.path());
    assert_eq!(store.users_by_email("a@b.c"), vec![(T.to_string(), user)]);
    assert_eq!(store.api_key_by_digest(&[7; 32]).unwrap().1.id, "key_1");
    let ids: Vec<_> = store
        .sessions(
            T,
            P,
            &SessionFilter::default(),
            Page {
                offset: 0,
                limit: 2,
            },
        )
        .items
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["ses_9", "ses_8"]);
    assert_eq!(
        store
            .stream_events_after(T, "str_1", 0)
            .unwrap()
            .events
            .len(),
        2
    );
    assert_eq!(store.tenants(Page::default()).total, 1);
}

#[test]
fn readers_do_not_wait_for_fsync() {
    // A syncer that blocks until released: the commit is visible to readers at once.
    use std::sync::{Arc, Condvar, Mutex};
    struct Gate(Mutex<bool>, Condvar);
    impl Syncer for Gate {
        fn sync_data(&self, f: &std::fs::File) -> std::io::Result<()> {
            let mut open = self.0.lock().unwrap();
            while !*open {
                open = self.1.wait(open).unwrap();
            }
            f.sync_data()
        }
        fn sync_dir(&self, d: &std::path::Path) -> std::io::Result<()> {
            OsSyncer.sync_dir(d)
        }
    }
    let dir = TempDir::new("no-wait");
    let gate = Arc::new(Gate(Mutex::new(true), Condvar::new()));
    let o = Options {
        syncer: gate.clone(),
        ..opts()
    };
    let (store, _) = Store::open(dir.path(), o).unwrap();
    seed(&store);
    *gate.0.lock().unwrap() = false;
    let (tx, rx) = std::sync::mpsc::channel();
    store
        .commit(
            T,
            vec![Mutation::PutAgent(agent(P, "agt_1", "bot"))],
            Box::new(move |r| tx.send(r).unwrap()),
        )
        .unwrap();
    assert!(store.agent_by_name(T, P, "bot").is_some());
    assert!(rx
        .recv_timeout(std::time::Duration::from_millis(50))
        .is_err());
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    rx.recv().unwrap().unwrap();
}

#[test]
fn a_transaction_taken_back_leaves_the_state_as_it_was() {
    // The PostgreSQL store applies before the database commits, and takes the apply back
    // when the database refuses: one mutation or several, every index follows.
    let state = halyard_storage::state::State::default();
    state
        .apply(T, vec![Mutation::PutTenant(tenant(T))])
        .unwrap();
    state
        .apply(T, vec![Mutation::PutProject(project(P, "a"))])
        .unwrap();
    let key = api_key("key_1", "ci", 1);
    let digest = key.digest;
    let applied = state
        .write_shard(T)
        .apply_undoable(T, vec![Mutation::PutApiKey(key)])
        .unwrap();
    assert!(state.api_key_by_digest(&digest).is_some());
    state.write_shard(T).undo(applied);
    assert!(state.api_key_by_digest(&digest).is_none());
    assert!(state.api_key(T, "key_1").is_none());
    let applied = state
        .write_shard(T)
        .apply_undoable(
            T,
            vec![
                Mutation::PutAgent(agent(P, "agt_1", "bot")),
                Mutation::DeleteProject { id: P.into() },
            ],
        )
        .unwrap();
    assert!(state.project(T, P).is_none());
    state.write_shard(T).undo(applied);
    assert_eq!(state.project(T, P).map(|p| p.slug), Some("a".to_string()));
    assert!(state.agent(T, P, "agt_1").is_none());
    // Taken back, the same transaction applies again as new.
    state
        .apply(T, vec![Mutation::PutAgent(agent(P, "agt_1", "bot"))])
        .unwrap();
    // A message's usage, and a reset hiding it, are taken back too.
    state
        .apply(T, vec![Mutation::PutSession(session(P, "ses_1", 1))])
        .unwrap();
    let said = Mutation::append_message(P, "ses_1", &message("msg_1", "x"));
    let applied = state.write_shard(T).apply_undoable(T, vec![said]).unwrap();
    assert_eq!(state.usage_totals(T, P, 0, u64::MAX, None).len(), 1);
    state.write_shard(T).undo(applied);
    assert!(state.usage_totals(T, P, 0, u64::MAX, None).is_empty());
    let said = Mutation::append_message(P, "ses_1", &message("msg_1", "x"));
    state.apply(T, vec![said]).unwrap();
    let clear = Mutation::ClearMessages {
        project_id: P.into(),
        session_id: "ses_1".into(),
    };
    let applied = state.write_shard(T).apply_undoable(T, vec![clear]).unwrap();
    assert!(state.usage_totals(T, P, 0, u64::MAX, None).is_empty());
    state.write_shard(T).undo(applied);
    assert_eq!(state.usage_totals(T, P, 0, u64::MAX, None).len(), 1);
}

/// The usage of the project's messages as a walk of them finds it, per agent id.
fn walked_usage(store: &Store, from: u64, to: u64) -> Vec<(String, u64, u64, u64)> {
    let mut sums: std::collections::BTreeMap<String, (u64, u64, u64)> = Default::default();
    for s in store
        .sessions(T, P, &SessionFilter::default(), Page::ALL)
        .items
    {
        let messages = store.messages(T, P, &s.id, Page::ALL).unwrap().items;
        for m in messages
            .iter()
            .filter(|m| (from..=to).contains(&m.created_at))
        {
            if let Some(u) = m.usage {
                let e = sums.entry(s.agent_id.clone()).or_default();
                *e = (e.0 + 1, e.1 + u.input_tokens, e.2 + u.total_tokens);
            }
        }
    }
    sums.into_iter()
        .map(|(a, (n, i, t))| (a, n, i, t))
        .collect()
}

fn summed_usage(store: &Store, from: u64, to: u64) -> Vec<(String, u64, u64, u64)> {
    let mut v: Vec<_> = store
        .usage_totals(T, P, from, to, None)
        .into_iter()
        .map(|(a, t)| (a, t.requests, t.input_tokens, t.total_tokens))
        .collect();
    v.sort();
    v
}

#[test]
fn usage_sums_follow_the_messages_through_clears_reopens_and_snapshots() {
    let dir = TempDir::new("usage");
    let (store, _) = open(dir.path());
    seed(&store);
    let mut on_a2 = session(P, "ses_2", 2);
    on_a2.agent_id = "agt_2".into();
    store
        .commit_wait(
            T,
            vec![
                Mutation::PutSession(session(P, "ses_1", 1)),
                Mutation::PutSession(on_a2),
            ],
        )
        .unwrap();
    let say = |sid: &str, i: u64, usage: bool| {
        let mut m = message(&format!("msg_{sid}_{i}"), "x");
        m.created_at = 100 + i;
        m.usage = m.usage.filter(|_| usage).map(|mut u| {
            u.input_tokens = i;
            u.total_tokens = i + 2;
            u
        });
        Mutation::append_message(P, sid, &m)
    };
    for i in 0..12 {
        let sid = if i % 3 == 0 { "ses_2" } else { "ses_1" };
        store.commit_wait(T, vec![say(sid, i, i % 4 != 1)]).unwrap();
    }
    let ranges = [(0, u64::MAX), (103, 107), (108, 108), (200, 300)];
    let check = |store: &Store, when: &str| {
        for (from, to) in ranges {
            let walked = walked_usage(store, from, to);
            assert_eq!(
                summed_usage(store, from, to),
                walked,
                "{when} {from}..={to}"
            );
        }
    };
    check(&store, "appended");
    assert_eq!(summed_usage(&store, 0, u64::MAX).len(), 2);
    // A reset session's usage leaves the sums; what it says afterwards counts.
    let clear = Mutation::ClearMessages {
        project_id: P.into(),
        session_id: "ses_1".into(),
    };
    store.commit_wait(T, vec![clear]).unwrap();
    store.commit_wait(T, vec![say("ses_1", 20, true)]).unwrap();
    check(&store, "cleared");
    // Only some sessions.
    let only = store.usage_totals(T, P, 0, u64::MAX, Some(&|s: &str| s == "ses_2"));
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].0, "agt_2");
    drop(store);
    let (store, _) = open(dir.path());
    check(&store, "replayed");
    store.compact_now().unwrap();
    drop(store);
    let (store, _) = open(dir.path());
    check(&store, "from a snapshot");
}
