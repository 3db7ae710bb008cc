//! The pinned format: committed v2 files that must decode to known values.
//!
//! `tests/fixtures/v2/golden/` holds a snapshot (covering segment 1) and segment 2, written
//! from the values below. Each record must decode to its value, and each value must encode
//! to the committed bytes, so reordering a field in `model.rs`, renumbering a tag or
//! changing a primitive fails here instead of silently changing the format. The files use
//! every mutation tag (legacy tags 8 and 17 and the message usage tag 1 as bytes the older
//! code wrote), every variant of every tag enum, and both sides of every `Option`.
//!
//! The files change only with the format, on purpose: `HALYARD_BLESS_GOLDEN=1 cargo test -p
//! halyard-storage --test golden` rewrites them from the values, and the diff goes with a
//! new tag or a new format version.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{copy_dir, TempDir};
use halyard_storage::codec::Encoder;
use halyard_storage::header::{self, HEADER_LEN, SEGMENT_MAGIC, SNAPSHOT_MAGIC};
use halyard_storage::record::{self, Next, RecordType};
use halyard_storage::*;

const T: &str = "ten_gold";
const P: &str = "proj_gold";
const P2: &str = "proj_gone";
/// A second tenant, created and deleted at the end of segment 2 (tag 24).
const T2: &str = "ten_gone";
const SNAP: &str = "snap-00000000000000000001.snap";
const SEG: &str = "00000000000000000002.log";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2/golden")
}

/// One record of a golden file: the transaction it must decode to, and, for tags only
/// older code writes, the exact bytes that code wrote (today's code writes another form).
struct Golden {
    txn: Txn,
    legacy: Option<Vec<u8>>,
}

/// A record written before tools: agents in their tag 8 form ([`AgentV0`]).
fn before_tools(txn: &str, mutations: Vec<Mutation>) -> Golden {
    let mut e = Encoder::default();
    e.str(txn);
    e.varint(mutations.len() as u64);
    for m in &mutations {
        match m {
            Mutation::PutAgent(a) => {
                e.u8(8);
                AgentV0(a.clone()).encode(&mut e);
            }
            other => other.encode(&mut e),
        }
    }
    Golden {
        legacy: Some(e.into_bytes()),
        ..now(txn, mutations)
    }
}

fn now(txn: &str, mutations: Vec<Mutation>) -> Golden {
    Golden {
        txn: Txn {
            tenant: txn.into(),
            mutations,
        },
        legacy: None,
    }
}

fn tenant() -> Tenant {
    Tenant {
        id: T.into(),
        name: "Gold Ltd".into(),
        limits: Limits {
            requests_per_second: 7,
            burst: 300,
            session_messages_per_minute: 61,
            max_concurrent_sessions: 100_000,
        },
        disabled: true,
        created_at: 1_700_000_000_001,
        updated_at: 1_700_000_000_002,
    }
}

fn user(id: &str, email: &str, role: Role) -> User {
    User {
        id: id.into(),
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role,
        created_at: 1_700_000_000_003,
    }
}

fn user_key() -> ApiKey {
    ApiKey {
        id: "key_user".into(),
        name: "laptop".into(),
        digest: [0xa5; 32],
        prefix: "abl_sk-ab".into(),
        last4: "wxyz".into(),
        kind: KeyKind::User,
        scopes: vec!["agent:read".into(), "chat:write".into()],
        project_ids: vec![P.into()],
        expires_at: Some(1_800_000_000_000),
        revoked: false,
        created_at: 1_700_000_000_004,
    }
}

fn service_key() -> ApiKey {
    ApiKey {
        id: "key_svc".into(),
        name: "ci".into(),
        digest: [0x5a; 32],
        prefix: "ak_cd".into(),
        last4: "0123".into(),
        kind: KeyKind::Service,
        scopes: vec![],
        project_ids: vec![],
        expires_at: None,
        revoked: true,
        created_at: 1_700_000_000_005,
    }
}

fn project(id: &str, slug: &str, described: bool) -> Project {
    Project {
        id: id.into(),
        name: format!("Project {slug}"),
        slug: slug.into(),
        description: described.then(|| "héllo ✓".into()),
        entry_agent_name: described.then(|| "assistant".into()),
        created_at: 1_700_000_000_006,
        updated_at: 1_700_000_000_007,
    }
}

fn full_agent() -> Agent {
    Agent {
        id: "agt_full".into(),
        project_id: P.into(),
        name: "assistant".into(),
        description: Some("helps".into()),
        instructions: Some("Be brief.\nNever guess.".into()),
        model: ModelConfig {
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            base_url: Some("https://api.example.com/v1".into()),
            api_key_secret: Some("OPENAI_KEY".into()),
            temperature: Some(0.25),
            max_tokens: Some(1024),
            pricing: Some(Pricing {
                input_per_mtok: 0.15,
                output_per_mtok: 0.6,
            }),
        },
        dsl_content: Some("agent assistant {}".into()),
        created_at: 1_700_000_000_008,
        updated_at: 1_700_000_000_009,
        tools: vec![],
        max_tool_iterations: DEFAULT_MAX_TOOL_ITERATIONS,
    }
}

fn bare_agent() -> Agent {
    Agent {
        id: "agt_bare".into(),
        project_id: P.into(),
        name: "echo".into(),
        description: None,
        instructions: None,
        model: ModelConfig {
            provider: "echo".into(),
            model: "echo-1".into(),
            ..ModelConfig::default()
        },
        dsl_content: None,
        created_at: 1_700_000_000_010,
        updated_at: 1_700_000_000_010,
        tools: vec![],
        max_tool_iterations: DEFAULT_MAX_TOOL_ITERATIONS,
    }
}

fn session(id: &str, status: SessionStatus, channel: Channel, token: Option<&str>) -> Session {
    Session {
        id: id.into(),
        project_id: P.into(),
        agent_id: "agt_full".into(),
        agent_name: "assistant".into(),
        status,
        channel,
        message_count: 0,
        token_count: 0,
        created_at: 1_700_000_000_011,
        last_activity_at: 1_700_000_000_011,
        metadata: r#"{"plan":"gold"}"#.into(),
        created_by_token: token.map(Into::into),
    }
}

fn message(id: &str, role: MessageRole, content: &str, usage: Option<Usage>) -> Message {
    Message {
        id: id.into(),
        role,
        content: content.into(),
        usage,
        created_at: 1_700_000_000_012,
        tool_calls: None,
        tool_call_id: None,
    }
}

fn usage(latency_ms: u64) -> Usage {
    Usage {
        input_tokens: 12,
        output_tokens: 300,
        total_tokens: 312,
        latency_ms,
    }
}

fn secret() -> Secret {
    Secret {
        id: "sec_gold".into(),
        project_id: P.into(),
        name: "OPENAI_KEY".into(),
        version: 3,
        ciphertext: (0u8..=40).collect(),
        created_at: 1_700_000_000_013,
        updated_at: 1_700_000_000_014,
        expires_at: Some(1_900_000_000_000),
    }
}

fn public_key() -> PublicKey {
    PublicKey {
        id: "pkey_gold".into(),
        project_id: P.into(),
        name: "site".into(),
        prefix: "pk_live_ab".into(),
        digest: [0x3c; 32],
        allowed_origins: vec![
            "https://gold.example".into(),
            "http://localhost:8080".into(),
        ],
        created_at: 1_700_000_000_015,
    }
}

fn event(id: u64, name: &str, data: &str) -> StreamEvent {
    StreamEvent {
        id,
        event: name.into(),
        data: data.into(),
    }
}

/// The snapshot's entries: the state after segment 1, as `emit_state` writes it.
fn snapshot_entries() -> Vec<Golden> {
    let hello = message("msg_s1", MessageRole::User, "hello", None);
    let mut ses = session("ses_gold", SessionStatus::Active, Channel::Api, None);
    ses.message_count = 1;
    vec![
        before_tools(
            T,
            vec![
                Mutation::PutTenant(tenant()),
                Mutation::PutUser(user("usr_owner", "owner@gold.example", Role::Owner)),
                Mutation::PutApiKey(user_key()),
                Mutation::PutProject(project(P, "gold", true)),
                Mutation::PutAgent(full_agent()),
                Mutation::PutSession(ses),
                Mutation::RestoreMessage {
                    project_id: P.into(),
                    session_id: "ses_gold".into(),
                    message: StoredMessage::new(&hello),
                },
                Mutation::PutSecret(secret()),
                Mutation::PutPublicKey(public_key()),
                Mutation::StartStream {
                    stream_id: "str_snap".into(),
                    owner: "usr_owner".into(),
                    created_at: 1_700_000_000_016,
                    node: String::new(),
                },
                Mutation::AppendStreamEvents {
                    stream_id: "str_snap".into(),
                    events: vec![event(1, "session", "{}"), event(2, "token", "a")],
                },
            ],
        ),
        now(
            "",
            vec![Mutation::SetMeta {
                key: "jwt_secret".into(),
                value: vec![0, 1, 2, 0xff],
            }],
        ),
    ]
}

/// The bytes older code wrote for a message with usage but no latency (usage tag 1).
fn legacy_usage_message() -> (Message, Vec<u8>) {
    let mut m = message("msg_old", MessageRole::System, "old usage", Some(usage(0)));
    m.created_at = 1_600_000_000_000;
    let mut e = Encoder::default();
    e.str(&m.id);
    e.u8(2); // MessageRole::System
    e.str(&m.content);
    e.u8(1); // usage without latency
    e.varint(12);
    e.varint(300);
    e.varint(312);
    e.varint(m.created_at);
    (m, e.into_bytes())
}

/// Segment 2's records, in order.
fn segment_records() -> Vec<Golden> {
    let (old_value, old_bytes) = legacy_usage_message();
    let old_msg = StoredMessage::from_bytes(&old_bytes).expect("the legacy message decodes");
    assert_eq!(old_msg.decode().unwrap(), old_value);
    // Tag 17: a stream started by code that did not record start times.
    let mut legacy_start = Encoder::default();
    legacy_start.str(T);
    legacy_start.varint(1);
    legacy_start.u8(17);
    legacy_start.str("str_old");
    legacy_start.str("usr_owner");
    vec![
        before_tools(
            T,
            vec![
                Mutation::PutUser(user("usr_dev", "dev@gold.example", Role::Developer)),
                Mutation::PutUser(user("usr_view", "view@gold.example", Role::Viewer)),
                Mutation::PutApiKey(service_key()),
                Mutation::PutAgent(bare_agent()),
                Mutation::PutSession(session(
                    "ses_sdk",
                    SessionStatus::Ended,
                    Channel::Sdk,
                    Some("tok_1"),
                )),
            ],
        ),
        now(
            T,
            vec![
                Mutation::append_message(
                    P,
                    "ses_gold",
                    &message("msg_a", MessageRole::Assistant, "hi ✓", Some(usage(420))),
                ),
                Mutation::AppendMessage {
                    project_id: P.into(),
                    session_id: "ses_gold".into(),
                    message: old_msg,
                },
            ],
        ),
        now(
            T,
            vec![
                Mutation::StartStream {
                    stream_id: "str_new".into(),
                    owner: "usr_dev".into(),
                    created_at: 1_700_000_000_017,
                    node: String::new(),
                },
                Mutation::AppendStreamEvent {
                    stream_id: "str_new".into(),
                    event: event(1, "session", r#"{"sessionId":"ses_gold"}"#),
                },
                Mutation::AppendStreamEvents {
                    stream_id: "str_new".into(),
                    events: vec![
                        event(2, "token", r#"{"delta":"a"}"#),
                        event(3, "token", r#"{"delta":"b"}"#),
                        event(300, "done", "{}"),
                    ],
                },
            ],
        ),
        Golden {
            txn: Txn {
                tenant: T.into(),
                mutations: vec![Mutation::StartStream {
                    stream_id: "str_old".into(),
                    owner: "usr_owner".into(),
                    created_at: 0,
                    node: String::new(),
                }],
            },
            legacy: Some(legacy_start.into_bytes()),
        },
        now(
            T,
            vec![
                Mutation::DeleteStream {
                    stream_id: "str_old".into(),
                },
                Mutation::ClearMessages {
                    project_id: P.into(),
                    session_id: "ses_sdk".into(),
                },
                Mutation::DeleteSecret {
                    project_id: P.into(),
                    name: "OPENAI_KEY".into(),
                },
                Mutation::DeletePublicKey {
                    project_id: P.into(),
                    id: "pkey_gold".into(),
                },
                Mutation::DeleteAgent {
                    project_id: P.into(),
                    id: "agt_bare".into(),
                },
                Mutation::DeleteApiKey {
                    id: "key_svc".into(),
                },
                Mutation::DeleteUser {
                    id: "usr_view".into(),
                },
            ],
        ),
        now(
            T,
            vec![
                Mutation::PutProject(project(P2, "gone", false)),
                Mutation::DeleteProject { id: P2.into() },
            ],
        ),
        now(
            "",
            vec![Mutation::SetMeta {
                key: "instance".into(),
                value: b"gold".to_vec(),
            }],
        ),
        // Tools (tags 25 to 27).
        now(
            T,
            vec![
                Mutation::PutTool(http_tool()),
                Mutation::PutTool(mcp_tool()),
                Mutation::PutAgent(tooled_agent()),
            ],
        ),
        now(
            T,
            vec![Mutation::DeleteTool {
                project_id: P.into(),
                id: "tool_mcp".into(),
            }],
        ),
        // Appended after the records above so that their bytes do not move.
        now(
            T2,
            vec![
                Mutation::PutTenant(Tenant {
                    id: T2.into(),
                    name: "Gone Ltd".into(),
                    disabled: false,
                    ..tenant()
                }),
                Mutation::PutUser(user("usr_gone", "gone@gold.example", Role::Owner)),
                Mutation::PutProject(project("proj_t2", "t2", false)),
            ],
        ),
        now(T2, vec![Mutation::DeleteTenant { id: T2.into() }]),
        // A turn that called a tool (message usage tag 3, role tool).
        now(
            T,
            vec![
                Mutation::append_message(
                    P,
                    "ses_gold",
                    &Message {
                        tool_calls: Some(
                            r#"[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]"#.into(),
                        ),
                        ..message("msg_calls", MessageRole::Assistant, "", Some(usage(7)))
                    },
                ),
                Mutation::append_message(
                    P,
                    "ses_gold",
                    &Message {
                        tool_call_id: Some("call_1".into()),
                        ..message("msg_result", MessageRole::Tool, "sunny", None)
                    },
                ),
            ],
        ),
        // A turn's trace (tag 28), every kind of event.
        now(
            T,
            vec![Mutation::AppendTraces {
                project_id: P.into(),
                session_id: "ses_gold".into(),
                events: TraceKind::ALL
                    .iter()
                    .enumerate()
                    .map(|(i, kind)| TraceEvent {
                        kind: *kind,
                        span_id: format!("spn_{i}"),
                        parent_span_id: (i > 0).then(|| "spn_0".into()),
                        name: "gpt-4o-mini".into(),
                        started_at: 1_700_000_000_100 + i as u64,
                        duration_ms: 42,
                        input_tokens: 10,
                        output_tokens: 3,
                        cost: (i % 2 == 0).then_some(0.000_25),
                        data: r#"{"arguments":"{}"}"#.into(),
                    })
                    .collect(),
            }],
        ),
        // Agent versions and deployments (tags 29 and 30): a deployment superseded by the
        // next one of its environment, in one transaction, and one retired.
        now(
            T,
            vec![
                Mutation::PutAgentVersion(agent_version(1, Some("first"))),
                Mutation::PutAgentVersion(agent_version(2, None)),
                Mutation::PutDeployment(deployment("dep_1", DeploymentStatus::Active)),
            ],
        ),
        now(
            T,
            vec![
                Mutation::PutDeployment(Deployment {
                    rolled_back_at: Some(1_700_000_000_300),
                    ..deployment("dep_1", DeploymentStatus::Superseded)
                }),
                Mutation::PutDeployment(Deployment {
                    environment: Environment::Staging,
                    ..deployment("dep_2", DeploymentStatus::Active)
                }),
                Mutation::PutDeployment(Deployment {
                    environment: Environment::Dev,
                    retired_at: Some(1_700_000_000_400),
                    ..deployment("dep_3", DeploymentStatus::Retired)
                }),
            ],
        ),
        // A session opened on a deployment (tag 31).
        now(
            T,
            vec![Mutation::SetSessionDeployment {
                project_id: P.into(),
                session_id: "ses_gold".into(),
                deployment_id: "dep_2".into(),
            }],
        ),
        // Feedback on a message (tag 32), then the same rater's second replacing it.
        now(
            T,
            vec![
                Mutation::PutFeedback(feedback(Rating::Positive, None)),
                Mutation::PutFeedback(feedback(Rating::Negative, Some("too long"))),
            ],
        ),
        // A stream started on a node of a shared store (tag 33).
        now(
            T,
            vec![Mutation::StartStream {
                stream_id: "str_node".into(),
                owner: "usr_owner".into(),
                created_at: 1_700_000_000_600,
                node: "node_gold".into(),
            }],
        ),
    ]
}

fn feedback(rating: Rating, comment: Option<&str>) -> Feedback {
    Feedback {
        id: "fb_1".into(),
        project_id: P.into(),
        session_id: "ses_gold".into(),
        message_id: "msg_result".into(),
        author: "usr_owner".into(),
        rating,
        comment: comment.map(Into::into),
        created_at: 1_700_000_000_500,
        updated_at: 1_700_000_000_501,
    }
}

fn agent_version(version: u32, label: Option<&str>) -> AgentVersion {
    AgentVersion {
        project_id: P.into(),
        agent_name: "planner".into(),
        version,
        label: label.map(Into::into),
        content_hash: format!("sha256:{version:064x}"),
        agent: tooled_agent(),
        created_at: 1_700_000_000_200 + u64::from(version),
        created_by: "usr_owner".into(),
    }
}

fn deployment(id: &str, status: DeploymentStatus) -> Deployment {
    Deployment {
        id: id.into(),
        project_id: P.into(),
        environment: Environment::Production,
        status,
        label: Some("release".into()),
        description: None,
        endpoint_slug: "gold/production/planner".into(),
        entry_agent_name: "planner".into(),
        manifest: vec![PinnedAgent {
            agent_name: "planner".into(),
            version: 2,
        }],
        model_overrides: Some(r#"{"temperature":0.1}"#.into()),
        created_at: 1_700_000_000_250,
        created_by: "key_user".into(),
        activated_at: 1_700_000_000_250,
        rolled_back_at: None,
        retired_at: None,
    }
}

fn http_tool() -> Tool {
    Tool {
        id: "tool_http".into(),
        project_id: P.into(),
        name: "get_weather".into(),
        description: Some("Weather by city".into()),
        tool_type: ToolType::Http,
        parameters: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.into(),
        config: r#"{"method":"GET","url":"https://weather.example/{city}"}"#.into(),
        created_at: 1_700_000_000_018,
        updated_at: 1_700_000_000_019,
    }
}

fn mcp_tool() -> Tool {
    Tool {
        id: "tool_mcp".into(),
        project_id: P.into(),
        name: "search".into(),
        description: None,
        tool_type: ToolType::Mcp,
        parameters: r#"{"type":"object"}"#.into(),
        config: r#"{"serverUrl":"http://127.0.0.1:9000/mcp","toolName":"search"}"#.into(),
        created_at: 1_700_000_000_020,
        updated_at: 1_700_000_000_020,
    }
}

fn tooled_agent() -> Agent {
    Agent {
        id: "agt_tools".into(),
        name: "planner".into(),
        tools: vec!["get_weather".into(), "search".into()],
        max_tool_iterations: 3,
        ..full_agent()
    }
}

fn payload(g: &Golden) -> Vec<u8> {
    match &g.legacy {
        Some(bytes) => bytes.clone(),
        None => {
            let mut e = Encoder::default();
            g.txn.encode(&mut e);
            e.into_bytes()
        }
    }
}

/// The file today's code makes from `records`: a header, then one frame per record.
fn render(magic: [u8; 8], number: u64, records: &[(RecordType, Vec<u8>)]) -> Vec<u8> {
    let mut out = header::encode(magic, number).to_vec();
    for (kind, payload) in records {
        record::encode(*kind, payload, &mut out);
    }
    out
}

fn snapshot_file() -> Vec<u8> {
    let entries = snapshot_entries();
    let mut recs: Vec<_> = entries
        .iter()
        .map(|g| (RecordType::SnapshotEntry, payload(g)))
        .collect();
    let mut end = Encoder::default();
    end.varint(entries.len() as u64);
    recs.push((RecordType::SnapshotEnd, end.into_bytes()));
    render(SNAPSHOT_MAGIC, 1, &recs)
}

fn segment_file() -> Vec<u8> {
    let recs: Vec<_> = segment_records()
        .iter()
        .map(|g| (RecordType::Txn, payload(g)))
        .collect();
    render(SEGMENT_MAGIC, 2, &recs)
}

/// Rewrites the fixture when asked to (see the module doc); a no-op otherwise.
fn bless() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("HALYARD_BLESS_GOLDEN").is_none() {
        return;
    }
    ONCE.call_once(|| {
        let dir = fixture();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(SNAP), snapshot_file()).unwrap();
        fs::write(dir.join(SEG), segment_file()).unwrap();
    });
}

fn read_fixture(name: &str) -> Vec<u8> {
    bless();
    fs::read(fixture().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Decodes every record of a committed file and compares it with `expected`.
fn assert_decodes(name: &str, magic: [u8; 8], kind: RecordType, expected: &[Golden]) {
    let bytes = read_fixture(name);
    let head = header::decode(magic, &bytes).expect("header");
    assert_eq!(head.version, header::FORMAT_VERSION, "{name}");
    let (records, end) = record::decode(&bytes[HEADER_LEN..]);
    assert!(matches!(end, Next::End), "{name}: {end:?}");
    let txns: Vec<_> = records.iter().filter(|r| r.kind == kind).collect();
    assert_eq!(txns.len(), expected.len(), "{name}: record count");
    for (i, (r, g)) in txns.iter().zip(expected).enumerate() {
        let got = Txn::decode(r.payload).unwrap_or_else(|e| panic!("{name} record {i}: {e}"));
        assert_eq!(got, g.txn, "{name} record {i} decodes to another value");
        assert_eq!(
            r.payload,
            &payload(g)[..],
            "{name} record {i}: bytes differ"
        );
    }
}

#[test]
fn the_committed_snapshot_decodes_to_the_known_values() {
    assert_decodes(
        SNAP,
        SNAPSHOT_MAGIC,
        RecordType::SnapshotEntry,
        &snapshot_entries(),
    );
}

#[test]
fn the_committed_segment_decodes_to_the_known_values() {
    assert_decodes(SEG, SEGMENT_MAGIC, RecordType::Txn, &segment_records());
}

#[test]
fn the_committed_files_are_what_the_values_encode_to() {
    // Frames and headers too: the whole files, byte for byte.
    assert!(read_fixture(SNAP) == snapshot_file(), "{SNAP} differs");
    assert!(read_fixture(SEG) == segment_file(), "{SEG} differs");
}

/// Every mutation decoded from the golden values' payloads, with the tag it was read from.
fn golden_mutations() -> Vec<(u8, Mutation)> {
    let mut out = Vec::new();
    for g in snapshot_entries().iter().chain(&segment_records()) {
        let bytes = payload(g);
        let mut d = codec::Decoder::new(&bytes);
        d.string().unwrap();
        for _ in 0..d.varint().unwrap() {
            let tag = bytes[d.position()];
            out.push((tag, Mutation::decode(&mut d).unwrap()));
        }
    }
    out
}

fn assert_covers<T: PartialEq + std::fmt::Debug>(what: &str, seen: &[T], all: &[T]) {
    let missing: Vec<_> = all.iter().filter(|v| !seen.contains(v)).collect();
    assert!(
        missing.is_empty(),
        "{what} missing from the golden files: {missing:?}"
    );
}

#[test]
fn every_tag_and_variant_is_in_the_golden_files() {
    use std::collections::BTreeSet;
    let muts = golden_mutations();
    let tags: BTreeSet<u8> = muts.iter().map(|(t, _)| *t).collect();
    let all: BTreeSet<u8> = mutation::MutationTag::ALL.iter().map(|t| t.tag()).collect();
    assert_eq!(tags, all, "mutation tags");
    let (mut roles, mut kinds, mut statuses, mut channels, mut authors) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut usages = BTreeSet::new();
    let mut tool_types = vec![];
    let mut trace_kinds = vec![];
    let (mut environments, mut dep_statuses, mut ratings) = (vec![], vec![], vec![]);
    for (_, m) in &muts {
        match m {
            Mutation::PutUser(u) => roles.push(u.role),
            Mutation::PutApiKey(k) => kinds.push(k.kind),
            Mutation::PutTool(t) => tool_types.push(t.tool_type),
            Mutation::PutFeedback(f) => ratings.push(f.rating),
            Mutation::PutDeployment(d) => {
                environments.push(d.environment);
                dep_statuses.push(d.status);
            }
            Mutation::AppendTraces { events, .. } => {
                trace_kinds.extend(events.iter().map(|e| e.kind))
            }
            Mutation::PutSession(s) => {
                statuses.push(s.status);
                channels.push(s.channel);
            }
            Mutation::AppendMessage { message, .. } | Mutation::RestoreMessage { message, .. } => {
                authors.push(message.view().unwrap().role);
                // The byte after id, role and content: the usage tag.
                let mut d = codec::Decoder::new(message.as_bytes());
                d.str().unwrap();
                d.u8().unwrap();
                d.str().unwrap();
                usages.insert(d.u8().unwrap());
            }
            _ => {}
        }
    }
    assert_covers("roles", &roles, Role::ALL);
    assert_covers("key kinds", &kinds, KeyKind::ALL);
    assert_covers("session statuses", &statuses, SessionStatus::ALL);
    assert_covers("channels", &channels, Channel::ALL);
    assert_covers("message roles", &authors, MessageRole::ALL);
    assert_covers("tool types", &tool_types, ToolType::ALL);
    assert_covers("trace kinds", &trace_kinds, TraceKind::ALL);
    assert_covers("environments", &environments, Environment::ALL);
    assert_covers("deployment statuses", &dep_statuses, DeploymentStatus::ALL);
    assert_covers("ratings", &ratings, Rating::ALL);
    assert_eq!(usages, BTreeSet::from([0, 1, 2, 3]), "message usage tags");
}

#[test]
fn a_store_opens_the_golden_directory_with_its_data() {
    bless();
    let dir = TempDir::new("golden-open");
    copy_dir(&fixture(), dir.path());
    let (store, report) = Store::open(dir.path(), common::opts()).expect("open");
    assert!(report.torn.is_none(), "{:?}", report.torn);
    assert_eq!(
        (report.records, report.rejected),
        (18, 0),
        "every record applies"
    );
    let on_node = store
        .stream_events_after(T, "str_node", 0)
        .expect("str_node");
    assert_eq!(on_node.node, "node_gold");
    assert_eq!(store.tenant(T2), None);
    assert!(store.users_by_email("gone@gold.example").is_empty());
    assert_eq!(store.tenant(T), Some(tenant()));
    assert_eq!(store.agent(T, P, "agt_full"), Some(full_agent()));
    assert_eq!(store.agent(T, P, "agt_bare"), None);
    assert_eq!(store.project(T, P2), None);
    assert_eq!(store.api_key(T, "key_user"), Some(user_key()));
    assert_eq!(store.user(T, "usr_view"), None);
    assert!(store.secret(T, P, "OPENAI_KEY").is_none());
    assert_eq!(
        store.agent_version(T, P, "planner", 1),
        Some(agent_version(1, Some("first")))
    );
    assert_eq!(
        store.agent_versions(T, P, "planner", Page::default()).total,
        2
    );
    let deps = store.deployments(T, P);
    let ids: Vec<_> = deps.iter().map(|d| (d.id.as_str(), d.status)).collect();
    assert_eq!(
        ids,
        [
            ("dep_3", DeploymentStatus::Retired),
            ("dep_2", DeploymentStatus::Active),
            ("dep_1", DeploymentStatus::Superseded)
        ]
    );
    assert_eq!(
        store.session_deployment(T, P, "ses_gold").as_deref(),
        Some("dep_2")
    );
    assert_eq!(
        store.feedback(T, P, "ses_gold"),
        [feedback(Rating::Negative, Some("too long"))]
    );
    // Replay rebuilt the rollups from the traces and the feedback: one answered turn and
    // one failure, the replaced rating counted once, as what replaced it.
    let all = store.analytics(T, P, 0, u64::MAX / 2, state::rollup::GroupBy::AgentName);
    assert_eq!(all.len(), 1, "{all:?}");
    let r = &all[0].1;
    assert_eq!((r.turns, r.errors, r.answered()), (2, 1, 1));
    assert_eq!((r.positive, r.negative), (0, 1));
    let ses = store.session(T, P, "ses_gold").expect("session");
    assert_eq!(ses.message_count, 5);
    assert_eq!(ses.token_count, 624 + 312);
    let sdk = store.session(T, P, "ses_sdk").expect("sdk session");
    assert_eq!(sdk.status, SessionStatus::Ended);
    assert_eq!(sdk.created_by_token.as_deref(), Some("tok_1"));
    assert_eq!(store.meta("instance").as_deref(), Some(&b"gold"[..]));
    assert_eq!(store.meta("jwt_secret"), Some(vec![0, 1, 2, 0xff]));
    assert_eq!(store.tool(T, P, "tool_http"), Some(http_tool()));
    assert_eq!(store.tool_by_name(T, P, "search"), None);
    assert_eq!(store.agent(T, P, "agt_tools"), Some(tooled_agent()));
}
