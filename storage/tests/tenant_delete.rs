//! `DeleteTenant` (tag 24): a tenant and everything it owns leave the state, its index
//! entries with it, and compaction removes its bytes from every file of the directory.

mod common;

use std::path::Path;

use common::*;
use halyard_storage::*;

const GONE: &str = "ten_gone_4711";

/// Ids and names of the tenant that is deleted, each distinctive enough that finding it
/// in a file means its data is still there.
const GONE_IDS: &[&str] = &[
    GONE,
    "usr_gone_4711",
    "gone_4711@example.test",
    "key_gone_4711",
    "proj_gone_4711",
    "agt_gone_4711",
    "ses_gone_4711",
    "msg_gone_4711",
    "sec_gone_4711",
    "SECRET_NAME_GONE_4711",
    "pkey_gone_4711",
    "str_gone_4711",
    "https://gone_4711.example",
];

/// Ciphertext of the deleted tenant's secret.
fn gone_ciphertext() -> Vec<u8> {
    (0..64u8).map(|i| i.wrapping_mul(37) ^ 0xa7).collect()
}

/// Ciphertext of the kept tenant's secret.
fn kept_ciphertext() -> Vec<u8> {
    (0..64u8).map(|i| i.wrapping_mul(53) ^ 0x3c).collect()
}

fn user(id: &str, email: &str) -> User {
    User {
        id: id.into(),
        email: email.into(),
        password_hash: "$argon2id$hash".into(),
        role: Role::Owner,
        created_at: 1,
    }
}

fn public_key(pid: &str, id: &str, digest: u8, origin: &str) -> PublicKey {
    PublicKey {
        id: id.into(),
        project_id: pid.into(),
        name: "site".into(),
        prefix: "pk_live_ab".into(),
        digest: [digest; 32],
        allowed_origins: vec![origin.into()],
        created_at: 1,
    }
}

/// A tenant with one of everything: user, key, project, agent, session with a message,
/// secret, public key and stream.
fn populate(store: &Store, t: &str, tag: &str, digest: u8, ciphertext: Vec<u8>) {
    let pid = format!("proj_{tag}");
    let mut key = api_key(&format!("key_{tag}"), "k", digest);
    key.project_ids = vec![pid.clone()];
    let mut sec = secret(
        &pid,
        &format!("sec_{tag}"),
        &format!("SECRET_NAME_{}", tag.to_uppercase()),
    );
    sec.ciphertext = ciphertext;
    let mut ses = session(&pid, &format!("ses_{tag}"), 5);
    ses.agent_id = format!("agt_{tag}");
    store
        .commit_wait(
            t,
            vec![
                Mutation::PutTenant(tenant(t)),
                Mutation::PutUser(user(&format!("usr_{tag}"), &format!("{tag}@example.test"))),
                Mutation::PutApiKey(key),
                Mutation::PutProject(project(&pid, tag)),
                Mutation::PutAgent(agent(&pid, &format!("agt_{tag}"), "assistant")),
                Mutation::PutSession(ses),
                Mutation::append_message(
                    &pid,
                    &format!("ses_{tag}"),
                    &message(&format!("msg_{tag}"), "hi"),
                ),
                Mutation::PutSecret(sec),
                Mutation::PutPublicKey(public_key(
                    &pid,
                    &format!("pkey_{tag}"),
                    digest.wrapping_add(1),
                    &format!("https://{tag}.example"),
                )),
                Mutation::StartStream {
                    stream_id: format!("str_{tag}"),
                    owner: format!("usr_{tag}"),
                    created_at: 5,
                    node: String::new(),
                },
            ],
        )
        .expect("populate");
}

fn populate_both(store: &Store) {
    populate(store, GONE, "gone_4711", 0x11, gone_ciphertext());
    populate(store, T, "kept", 0x22, kept_ciphertext());
}

fn assert_gone(store: &Store) {
    assert_eq!(store.tenant(GONE), None);
    assert!(store.users_by_email("gone_4711@example.test").is_empty());
    assert_eq!(store.api_key_by_digest(&[0x11; 32]), None);
    assert_eq!(store.public_key_by_digest(&[0x12; 32]), None);
    assert_eq!(store.locate_session("ses_gone_4711"), None);
    assert!(!store.origin_registered("https://gone_4711.example"));
    assert_eq!(store.stream_events_after(GONE, "str_gone_4711", 0), None);
    assert_eq!(store.projects(GONE, Page::ALL).total, 0);
}

fn assert_kept(store: &Store) {
    assert!(store.tenant(T).is_some());
    assert_eq!(store.users_by_email("kept@example.test").len(), 1);
    assert!(store.api_key_by_digest(&[0x22; 32]).is_some());
    assert!(store.public_key_by_digest(&[0x23; 32]).is_some());
    assert!(store.locate_session("ses_kept").is_some());
    assert!(store.origin_registered("https://kept.example"));
    let sec = store
        .secret(T, "proj_kept", "SECRET_NAME_KEPT")
        .expect("kept secret");
    assert_eq!(sec.ciphertext, kept_ciphertext());
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of every file of `dir`.
fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn a_deleted_tenant_leaves_the_state_and_its_indexes() {
    let dir = TempDir::new("tenant-delete-state");
    let (store, _) = open(dir.path());
    populate_both(&store);
    store
        .commit_wait(GONE, vec![Mutation::DeleteTenant { id: GONE.into() }])
        .expect("delete");
    assert_gone(&store);
    assert_kept(&store);
    drop(store);
    // Replayed from the log, the deletion holds.
    let (store, report) = open(dir.path());
    assert_eq!(report.rejected, 0);
    assert_gone(&store);
    assert_kept(&store);
}

#[test]
fn deleting_an_unknown_tenant_or_another_than_the_transactions_is_refused() {
    let dir = TempDir::new("tenant-delete-refused");
    let (store, _) = open(dir.path());
    populate_both(&store);
    let r = store.commit_wait(
        "ten_nobody",
        vec![Mutation::DeleteTenant {
            id: "ten_nobody".into(),
        }],
    );
    assert!(
        matches!(r, Err(StoreError::NotFound { what: "tenant", .. })),
        "{r:?}"
    );
    let r = store.commit_wait(T, vec![Mutation::DeleteTenant { id: GONE.into() }]);
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    assert!(store.tenant(GONE).is_some());
}

#[test]
fn a_refused_transaction_puts_the_deleted_tenant_back_with_its_indexes() {
    let dir = TempDir::new("tenant-delete-undo");
    let (store, _) = open(dir.path());
    populate_both(&store);
    // The second mutation fails (the tenant is gone by then): all or nothing.
    let r = store.commit_wait(
        GONE,
        vec![
            Mutation::DeleteTenant { id: GONE.into() },
            Mutation::DeleteUser {
                id: "usr_gone_4711".into(),
            },
        ],
    );
    assert!(r.is_err(), "{r:?}");
    assert!(store.tenant(GONE).is_some());
    assert_eq!(store.users_by_email("gone_4711@example.test").len(), 1);
    assert!(store.api_key_by_digest(&[0x11; 32]).is_some());
    assert!(store.public_key_by_digest(&[0x12; 32]).is_some());
    assert!(store.locate_session("ses_gone_4711").is_some());
    assert!(store.origin_registered("https://gone_4711.example"));
    assert_kept(&store);
}

#[test]
fn compaction_removes_every_byte_of_a_deleted_tenant_from_the_directory() {
    let dir = TempDir::new("tenant-delete-compact");
    let (store, _) = open(dir.path());
    populate_both(&store);
    // Before: the deleted tenant's secret is on disk (the check below can see it).
    let before = all_files(dir.path());
    assert!(before.iter().any(|(_, b)| contains(b, &gone_ciphertext())));
    for id in GONE_IDS {
        assert!(
            before.iter().any(|(_, b)| contains(b, id.as_bytes())),
            "{id}"
        );
    }
    store
        .commit_wait(GONE, vec![Mutation::DeleteTenant { id: GONE.into() }])
        .expect("delete");
    store.compact_now().expect("compact");
    for (name, bytes) in all_files(dir.path()) {
        assert!(
            !contains(&bytes, &gone_ciphertext()),
            "{name} holds the deleted tenant's secret ciphertext"
        );
        for id in GONE_IDS {
            assert!(!contains(&bytes, id.as_bytes()), "{name} holds {id}");
        }
    }
    // The kept tenant's data is still on disk and opens.
    let after = all_files(dir.path());
    assert!(after.iter().any(|(_, b)| contains(b, &kept_ciphertext())));
    assert!(after.iter().any(|(_, b)| contains(b, b"SECRET_NAME_KEPT")));
    drop(store);
    let (store, _) = open(dir.path());
    assert_gone(&store);
    assert_kept(&store);
}
