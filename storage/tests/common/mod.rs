//! Shared test fixtures: temporary directories and resource builders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use halyard_storage::*;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "halyard-storage-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const T: &str = "ten_a";
pub const P: &str = "proj_a";

pub fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: format!("tenant {id}"),
        limits: Limits::default(),
        disabled: false,
        created_at: 10,
        updated_at: 10,
    }
}

pub fn project(id: &str, slug: &str) -> Project {
    Project {
        id: id.into(),
        name: format!("project {id}"),
        slug: slug.into(),
        description: Some("d".into()),
        entry_agent_name: Some("assistant".into()),
        created_at: 20,
        updated_at: 20,
    }
}

pub fn agent(pid: &str, id: &str, name: &str) -> Agent {
    Agent {
        id: id.into(),
        project_id: pid.into(),
        name: name.into(),
        description: None,
        instructions: Some("be brief".into()),
        model: ModelConfig {
            provider: "echo".into(),
            model: "echo-1".into(),
            temperature: Some(0.5),
            ..ModelConfig::default()
        },
        dsl_content: Some("agent x {}".into()),
        created_at: 30,
        updated_at: 30,
        tools: vec![],
        max_tool_iterations: DEFAULT_MAX_TOOL_ITERATIONS,
    }
}

pub fn session(pid: &str, id: &str, created_at: u64) -> Session {
    Session {
        id: id.into(),
        project_id: pid.into(),
        agent_id: "agt_1".into(),
        agent_name: "assistant".into(),
        status: SessionStatus::Active,
        channel: Channel::Api,
        message_count: 0,
        token_count: 0,
        created_at,
        last_activity_at: created_at,
        metadata: "{}".into(),
        created_by_token: None,
    }
}

pub fn message(id: &str, content: &str) -> Message {
    Message {
        id: id.into(),
        role: MessageRole::User,
        content: content.into(),
        usage: Some(Usage {
            input_tokens: 1,
            output_tokens: 2,
            total_tokens: 3,
            latency_ms: 0,
        }),
        created_at: 40,
        tool_calls: None,
        tool_call_id: None,
    }
}

pub fn secret(pid: &str, id: &str, name: &str) -> Secret {
    Secret {
        id: id.into(),
        project_id: pid.into(),
        name: name.into(),
        version: 1,
        ciphertext: vec![1, 2, 3],
        created_at: 50,
        updated_at: 50,
        expires_at: None,
    }
}

pub fn api_key(id: &str, name: &str, digest_byte: u8) -> ApiKey {
    ApiKey {
        id: id.into(),
        name: name.into(),
        digest: [digest_byte; 32],
        prefix: "abl_sk-ab".into(),
        last4: "wxyz".into(),
        kind: KeyKind::User,
        scopes: vec!["project:read".into()],
        project_ids: vec![],
        expires_at: None,
        revoked: false,
        created_at: 60,
    }
}

/// Options for tests: real fsyncs are cheap enough here, small segments exercise rolling.
pub fn opts() -> Options {
    Options {
        segment_size: 4096,
        snapshot_threshold: u64::MAX,
        ..Options::default()
    }
}

pub fn open(dir: &Path) -> (Store, RecoveryReport) {
    Store::open(dir, opts()).expect("open")
}

/// Tenant T with project P.
pub fn seed(store: &Store) {
    store
        .commit_wait(
            T,
            vec![
                Mutation::PutTenant(tenant(T)),
                Mutation::PutProject(project(P, "a")),
            ],
        )
        .unwrap();
}

/// Segment files of a directory, sorted.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// A frame (v1 or v2 shape) around a decodable `Txn` payload, with every byte ASCII so that
/// it fits in a `String` such as an agent's `instructions`: the text a client could send to
/// fool a recovery that scans payload bytes for frames.
pub fn ascii_frame(format: record::Format, tenant: &str) -> String {
    for nonce in 0u32.. {
        let mut e = codec::Encoder::default();
        let muts = [Mutation::DeleteProject {
            id: format!("{P}-{nonce}"),
        }];
        Txn::encode_parts(tenant, &muts, &mut e);
        let mut out = Vec::new();
        match format {
            record::Format::V1 => {
                record_v1::encode(record::RecordType::Txn, &e.into_bytes(), &mut out)
            }
            record::Format::V2 => {
                record::encode(record::RecordType::Txn, &e.into_bytes(), &mut out)
            }
        }
        if out.iter().all(|&b| b < 0x80) {
            return String::from_utf8(out).expect("ASCII");
        }
    }
    unreachable!("some nonce gives an ASCII frame")
}

/// Copies every file of `from` into `to` (a fixture into a test's own directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// The format version in a segment or snapshot file's header.
pub fn file_version(path: &Path) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]])
}
