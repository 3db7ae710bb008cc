//! The fuzz harness: one function per target, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`, each a one-line `fuzz_target!` over a function here) and the
//! corpus replay test of the root package (`tests/fuzz_corpus.rs`), which feeds every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through the same function on
//! stable Rust. Both include this file with `#[path]`, so there is one copy of the checks.
//!
//! A target fails by panicking: on a panic inside the code under test, and on a broken
//! invariant checked here (a framing decision that depends on how the input was split, a
//! credential accepted that was never issued, a record boundary past the end, ...).
//!
//! The credential and API targets need a store: [`fixture`] opens one in a fresh temporary
//! directory once per process, seeds it with fixed ids and keys (so that seed files can hold
//! valid credentials), and removes the directory at once (the open log file stays usable).

#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use halyard_api::auth::{self, Kind, Verifiers};
use halyard_api::body::{self, Field, Fields, Item, Text};
use halyard_api::jwt::Jwt;
use halyard_api::route::{Guard, ROUTES};
use halyard_api::sdk_token::{Grant, SdkSigner};
use halyard_api::{scope, tokens, Api, ApiConfig};
use halyard_engine::builtin::Builtin;
use halyard_engine::chunked::ChunkedDecoder;
use halyard_engine::conn::{Conn, Env, Timeouts};
use halyard_engine::metrics::Metrics;
use halyard_engine::parse::{self, Framing, Version};
use halyard_engine::reply::Mailbox;
use halyard_engine::request::{RequestHead, RequestId, RequestIds};
use halyard_engine::{App, Method};
use halyard_storage::record::{self, Next, RecordType};
use halyard_storage::state::State;
use halyard_storage::{
    ApiKey, Backend, KeyKind, Limits, Mutation, Options, Project, PublicKey, Role, Store, Tenant,
    Txn, User,
};

/// A harness function: panics when the input breaks something.
pub type Harness = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/` file and corpus directory.
pub const TARGETS: &[(&str, Harness)] = &[
    ("http_head", http_head),
    ("chunked", chunked),
    ("json_body", json_body),
    ("credentials", credentials),
    ("log_records", log_records),
    ("last_event_id", last_event_id),
    ("api_request", api_request),
    ("http_response", http_response),
    ("tool_schema", tool_schema),
    ("route_path", route_path),
    ("openai_chunk", openai_chunk),
];

/// The harness function of target `name`.
pub fn target(name: &str) -> Option<Harness> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

// ---------------------------------------------------------------------------------------
// http_head: the request-head parser and the framing rules (CONVENTIONS section 3)
// ---------------------------------------------------------------------------------------

/// Parses `data` as the front of a connection's input and checks the framing decision
/// against the raw header lines; a complete head must parse the same when cut anywhere
/// before its end (as "need more bytes") and when given alone.
pub fn http_head(data: &[u8]) {
    let mut slots = parse::header_slots();
    let head = match parse::parse(data, &mut slots) {
        Ok(Some(head)) => head,
        Ok(None) => {
            // Incomplete: every prefix is incomplete too (or already over a limit).
            if !data.is_empty() {
                let mut s = parse::header_slots();
                let cut = data.len() / 2;
                assert!(
                    !matches!(parse::parse(&data[..cut], &mut s), Ok(Some(_))),
                    "a prefix of an incomplete head parsed as complete"
                );
            }
            return;
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 414 | 431), "{e:?}");
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let len = head.len;
    assert!(
        len <= data.len() && len >= 4,
        "head length {len} of {}",
        data.len()
    );
    let raw = &data[..len];
    assert!(raw.ends_with(b"\r\n\r\n"), "head must end in CRLF CRLF");
    assert!(!raw.contains(&0), "NUL accepted in a head");
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && raw[i - 1] == b'\r', "bare LF accepted at {i}");
        }
        if b == b'\r' {
            assert!(raw.get(i + 1) == Some(&b'\n'), "bare CR accepted at {i}");
        }
    }
    assert!(head.target.starts_with('/') || head.target == "*");
    let request_line = raw.split(|&b| b == b'\n').next().unwrap_or(b"");
    assert!(request_line.len() <= parse::MAX_REQUEST_LINE + 1);
    assert!(head.headers.len() <= parse::MAX_HEADERS);

    // The framing decision, recomputed from the header lines.
    let mut lengths = Vec::new();
    let mut te = Vec::new();
    let mut hosts = 0;
    for h in head.headers {
        assert!(!h.name.is_empty());
        assert!(
            h.name.bytes().all(|b| b.is_ascii_graphic() && b != b':'),
            "header name {:?}",
            h.name
        );
        let value = parse::trim_ows(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths.push(value);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te.push(value);
        } else if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
    }
    assert!(lengths.len() <= 1, "several Content-Length accepted");
    assert!(te.len() <= 1, "several Transfer-Encoding accepted");
    assert!(
        lengths.is_empty() || te.is_empty(),
        "Content-Length with Transfer-Encoding accepted"
    );
    match head.version {
        Version::Http11 => assert_eq!(hosts, 1, "HTTP/1.1 without exactly one Host"),
        Version::Http10 => {
            assert!(hosts <= 1);
            assert!(te.is_empty(), "Transfer-Encoding accepted on HTTP/1.0");
        }
    }
    match head.framing {
        Framing::None => {
            assert!(te.is_empty());
            if let Some(v) = lengths.first() {
                assert!(v.iter().all(u8::is_ascii_digit) && v.iter().all(|&b| b == b'0'));
            }
        }
        Framing::Length(n) => {
            assert!(n > 0);
            let v = lengths.first().expect("a length without Content-Length");
            assert!(!v.is_empty() && v.iter().all(u8::is_ascii_digit), "{v:?}");
            let text = std::str::from_utf8(v).expect("digits");
            assert_eq!(text.parse::<u64>().ok(), Some(n));
        }
        Framing::Chunked => {
            let v = te.first().expect("chunked without Transfer-Encoding");
            assert!(v.eq_ignore_ascii_case(b"chunked"), "{v:?}");
        }
    }
    if let Some(id) = head.request_id {
        assert!((1..=64).contains(&id.len()));
    }
    let (framing, keep_alive, target) = (head.framing, head.keep_alive, head.target.to_string());

    // The same head alone, and cut before its end.
    let mut s = parse::header_slots();
    let alone = parse::parse(raw, &mut s)
        .expect("the head alone")
        .expect("complete");
    assert_eq!(
        (alone.len, alone.framing, alone.keep_alive),
        (len, framing, keep_alive)
    );
    let cut = usize::from(data[0]) * (len - 1) / 255;
    let mut s = parse::header_slots();
    assert!(
        matches!(parse::parse(&raw[..cut], &mut s), Ok(None)),
        "a prefix of {cut} bytes of a valid head is not 'need more'"
    );

    // The owned head the application sees.
    let owned = RequestHead::from_bytes(data, RequestId::new(b"fuzz"), PEER)
        .expect("parses as before")
        .expect("complete");
    assert!(owned.path().starts_with('/') || owned.path() == "*");
    let rebuilt = match owned.query() {
        Some(q) => format!("{}?{q}", owned.path()),
        None => owned.path().to_string(),
    };
    assert_eq!(rebuilt, target);
    assert_eq!(owned.chunked, framing == Framing::Chunked);
    for (name, value) in owned.headers() {
        let first = owned.header(name).expect("a header it listed");
        assert!(owned.headers_named(name).any(|v| v == first));
        let _ = value;
    }
    let _ = (owned.method(), owned.method_str(), owned.has_body());
}

// ---------------------------------------------------------------------------------------
// chunked: the chunked body decoder
// ---------------------------------------------------------------------------------------

/// Decodes `data[1..]` whole, then again split at an offset chosen by `data[0]` and again
/// byte by byte: the body, the bytes consumed and the error must not depend on the split.
pub fn chunked(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = decode_in_pieces(input, &[input.len()]);
    let cut = usize::from(seed) * input.len() / 255;
    let split = decode_in_pieces(input, &[cut, input.len() - cut]);
    assert_eq!(whole, split, "split at {cut} changed the outcome");
    if input.len() <= 4096 {
        let ones = vec![1; input.len()];
        assert_eq!(whole, decode_in_pieces(input, &ones), "byte by byte");
    }
    let (body, consumed, done, err) = whole;
    assert!(body.len() <= input.len(), "more body than input");
    if err.is_none() {
        assert!(consumed <= input.len());
        assert!(body.len() <= consumed, "more body than input consumed");
    }
    if err.is_none() && !done {
        assert_eq!(consumed, input.len(), "stopped early without being done");
    }
}

type Decoded = (
    Vec<u8>,
    usize,
    bool,
    Option<halyard_engine::chunked::ChunkError>,
);

fn decode_in_pieces(input: &[u8], pieces: &[usize]) -> Decoded {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut at = 0;
    for &n in pieces {
        let piece = &input[at..at + n];
        match d.decode(piece, &mut out) {
            Ok(used) => {
                assert!(used <= piece.len());
                at += used;
                if used < piece.len() {
                    assert!(d.is_done(), "input left over before the end");
                    break;
                }
            }
            // How far the decoder got before the error is not reported: not compared.
            Err(e) => return (out, usize::MAX, false, Some(e)),
        }
        if d.is_done() {
            break;
        }
    }
    (out, at, d.is_done(), None)
}

// ---------------------------------------------------------------------------------------
// json_body: JSON body decoding and field validation
// ---------------------------------------------------------------------------------------

fn json_head() -> &'static RequestHead {
    static HEAD: OnceLock<RequestHead> = OnceLock::new();
    HEAD.get_or_init(|| {
        RequestHead::from_bytes(
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\r\n",
            RequestId::new(b"fuzz"),
            PEER,
        )
        .expect("valid")
        .expect("complete")
    })
}

/// Decodes `data` as a request body: a clean 400 or a value, and the field readers of the
/// request types never panic on any value.
pub fn json_body(data: &[u8]) {
    let head = json_head();
    match body::json(head, data) {
        Ok(v) => validate_fields(&v),
        Err(e) => {
            assert_eq!(e.status(), 400, "{e:?}");
            assert_eq!(e.into_response().status, 400);
        }
    }
}

/// The kinds a body declaration may give its fields, with the bounds the handlers use.
const FUZZ_PRICING: &[Field] = &[Field::number("inputPerMTok", 0.0, 1e9)];
const FUZZ_LIMITS: &[Field] = &[
    Field::whole("requestsPerSecond", 1, 1_000_000),
    Field::whole("burst", 1, 10_000_000),
];
const FUZZ_MODEL: &[Field] = &[
    Field::one_of("provider", &["echo", "openai"]),
    Field::text("model", 1, 128).required_if("provider", "openai"),
    Field::text("baseUrl", 0, 2048).format(body::HTTP_URL),
    Field::object("pricing", FUZZ_PRICING),
];
const FUZZ_AGENT: &[Field] = &[Field::text("name", 1, 64)
    .format(body::AGENT_NAME)
    .required()];
const FUZZ_MESSAGE: &[Field] = &[
    Field::one_of("role", &["system", "user", "assistant"]).required(),
    Field::text("content", 0, 100_000).required(),
];
const FUZZ_BODY: &[Field] = &[
    Field::text("name", 1, 64).required(),
    Field::text("description", 0, 2000),
    Field::text("instructions", 0, 100_000),
    Field::text("entryAgentName", 0, 64)
        .format(body::AGENT_NAME)
        .clearable(),
    Field::text("message", 0, 100_000),
    Field::text("value", 1, 65_536).bytes(),
    Field::text("email", 0, 254).format(body::EMAIL),
    Field::text("password", 12, 1024).required_with("email"),
    Field::bool("disabled"),
    Field::whole("maxTokens", 1, 1_000_000),
    Field::whole("expiresIn", 60, 31_536_000),
    Field::number("temperature", 0.0, 2.0),
    Field::list("scopes", Item::OneOf(&scope::NAMES), 0, 10),
    Field::list(
        "allowedOrigins",
        Item::Text(Text::new(1, 253).format(body::ORIGIN)),
        1,
        100,
    ),
    Field::list("messages", Item::Object(FUZZ_MESSAGE), 1, 1000),
    Field::json("metadata", 16 * 1024),
    Field::time("expiresAt"),
    Field::object("model", FUZZ_MODEL),
    Field::object("limits", FUZZ_LIMITS),
    Field::list("agents", Item::Object(FUZZ_AGENT), 0, 64),
];

/// The field readers of the request types, over any JSON value.
fn validate_fields(v: &serde_json::Value) {
    let Ok(mut f) = Fields::of(v, FUZZ_BODY) else {
        assert!(!v.is_object());
        return;
    };
    for name in [
        "name",
        "description",
        "instructions",
        "message",
        "value",
        "email",
        "password",
    ] {
        f.str(name);
    }
    f.patch_str("entryAgentName");
    f.bool("disabled");
    f.whole("maxTokens");
    f.whole("expiresIn");
    f.number("temperature");
    f.strings("scopes");
    f.strings("allowedOrigins");
    f.each("messages", |m| {
        m.str("role");
        m.str("content");
    });
    f.json_text("metadata");
    f.time("expiresAt");
    f.nested("model", |m| {
        m.str("provider");
        m.str("model");
        m.str("baseUrl");
        m.nested("pricing", |p| {
            p.number("inputPerMTok");
        });
    });
    f.nested("limits", |l| {
        l.whole("requestsPerSecond");
        l.whole("burst");
    });
    f.each("agents", |a| {
        a.str("name");
    });
    if let Some(obj) = v.as_object() {
        for s in ["name", "origin", "value"]
            .iter()
            .filter_map(|k| obj.get(*k)?.as_str())
        {
            body::is_agent_name(s);
            body::is_secret_name(s);
            body::is_origin(s);
        }
    }
    match f.finish() {
        Ok(()) => {}
        Err(e) => {
            assert_eq!(e.status(), 400);
            let resp = e.into_response();
            assert_eq!(resp.status, 400);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The store fixture (credentials and api_request)
// ---------------------------------------------------------------------------------------

/// Tenant of the fixture.
pub const TENANT: &str = "ten_fuzz";
/// Its owner user (JWT subject).
pub const USER: &str = "usr_fuzz";
/// Its project.
pub const PROJECT: &str = "proj_fuzz";
/// An owner API key (all scopes but key:admin).
pub const USER_KEY: &str = "abl_sk-fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuz";
/// A service key restricted to project:read on the fixture project.
pub const SERVICE_KEY: &str = "ak_fuzzservicefuzzservicefuzzservicefuzzserv";
/// A revoked user key.
pub const REVOKED_KEY: &str = "abl_sk-revokedrevokedrevokedrevokedrevokedrevoke";
/// An expired service key.
pub const EXPIRED_KEY: &str = "ak_expiredexpiredexpiredexpiredexpiredexpire";
/// A widget public key.
pub const PUBLIC_KEY: &str = "pk_fuzzpublicfuzzpublicfuzzpublicfuzzpublicf";
/// Its public key id.
pub const PUBLIC_KEY_ID: &str = "pkey_fuzz";
/// The origin its key allows.
pub const ORIGIN: &str = "https://fuzz.example";
/// The operator root key.
pub const ROOT_KEY: &str = "fuzz-root-key-0123456789";
/// The HS256 secret of issued JWTs.
pub const JWT_SECRET: &[u8] = b"fuzz-jwt-secret-0123456789abcdef";
/// The SDK token signing key.
pub const SDK_KEY: &[u8] = b"fuzz-sdk-token-key";
/// Issue time of the fixture's JWT, and its lifetime (100 years): seeds stay valid.
const JWT_IAT: u64 = 1_700_000_000;
const JWT_TTL: u64 = 100 * 365 * 86_400;
/// Expiry of the fixture's SDK token (2100-01-01).
const SDK_EXP: u64 = 4_102_444_800;

/// The store, verifiers and API of the fixture.
pub struct Fixture {
    /// The seeded store.
    pub store: Arc<Store>,
    /// Verifiers with the fixture's secrets.
    pub verifiers: Verifiers,
    /// The whole API over the store (rate limits off).
    /// The API behind the engine's operations routes, as the server runs it.
    pub api: Builtin<Api>,
    /// Deferred replies and stream notices of `api_request`, discarded.
    letters: Mutex<crossbeam_channel::Receiver<halyard_engine::reply::Post>>,
    mailbox: Arc<Mailbox>,
    metrics: Arc<Metrics>,
}

/// A valid JWT of the fixture's owner.
pub fn fixture_jwt() -> String {
    jwt()
        .issue(USER, TENANT, "owner", JWT_IAT)
        .expect("issue a JWT")
}

/// A valid SDK token for the fixture's project and origin.
pub fn fixture_sdk_token() -> String {
    SdkSigner::new(SDK_KEY).mint(&Grant {
        tenant: TENANT.into(),
        project: PROJECT.into(),
        origin: ORIGIN.into(),
        public_key: PUBLIC_KEY_ID.into(),
        id: "sdkt_fuzz".into(),
        token_id: String::new(),
        exp: SDK_EXP,
    })
}

fn jwt() -> Jwt {
    Jwt::new(JWT_SECRET, JWT_TTL, None).expect("JWT settings")
}

/// The mutations that seed the fixture's tenant.
pub fn fixture_mutations() -> Vec<Mutation> {
    let now = 1_700_000_000_000;
    let key = |id: &str, secret: &str, kind, scopes: &[&str], projects: &[&str]| ApiKey {
        id: id.into(),
        name: id.into(),
        digest: tokens::digest(secret),
        prefix: secret.chars().take(11).collect(),
        last4: tokens::last4(secret),
        kind,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        project_ids: projects.iter().map(|s| s.to_string()).collect(),
        expires_at: None,
        revoked: false,
        created_at: now,
    };
    let all: Vec<&str> = scope::ALL
        .iter()
        .map(|(_, n)| *n)
        .filter(|n| *n != "key:admin")
        .collect();
    let mut revoked = key("key_revoked", REVOKED_KEY, KeyKind::User, &all, &[]);
    revoked.revoked = true;
    let mut expired = key("key_expired", EXPIRED_KEY, KeyKind::Service, &all, &[]);
    expired.expires_at = Some(1);
    vec![
        Mutation::PutTenant(Tenant {
            id: TENANT.into(),
            name: "fuzz".into(),
            limits: Limits::default(),
            disabled: false,
            created_at: now,
            updated_at: now,
        }),
        Mutation::PutUser(User {
            id: USER.into(),
            email: "owner@fuzz.example".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
                .into(),
            role: Role::Owner,
            created_at: now,
        }),
        Mutation::PutApiKey(key("key_owner", USER_KEY, KeyKind::User, &all, &[])),
        Mutation::PutApiKey(key(
            "key_service",
            SERVICE_KEY,
            KeyKind::Service,
            &["project:read"],
            &[PROJECT],
        )),
        Mutation::PutApiKey(revoked),
        Mutation::PutApiKey(expired),
        Mutation::PutProject(Project {
            id: PROJECT.into(),
            name: "fuzz".into(),
            slug: "fuzz".into(),
            description: None,
            entry_agent_name: Some("assistant".into()),
            created_at: now,
            updated_at: now,
        }),
        Mutation::PutAgent(fixture_agent(now)),
        // Version 1 of the agent, deployed to production: the deployment-scoped routes
        // (`/api/v1/project/fuzz/production/agent/assistant/...`) reach a turn.
        Mutation::PutAgentVersion(halyard_storage::AgentVersion {
            project_id: PROJECT.into(),
            agent_name: "assistant".into(),
            version: 1,
            label: None,
            content_hash: "sha256:fuzz".into(),
            agent: fixture_agent(now),
            created_at: now,
            created_by: "usr_fuzz".into(),
        }),
        Mutation::PutDeployment(halyard_storage::Deployment {
            id: "dep_fuzz".into(),
            project_id: PROJECT.into(),
            environment: halyard_storage::Environment::Production,
            status: halyard_storage::DeploymentStatus::Active,
            label: None,
            description: None,
            endpoint_slug: "fuzz/production/assistant".into(),
            entry_agent_name: "assistant".into(),
            manifest: vec![halyard_storage::PinnedAgent {
                agent_name: "assistant".into(),
                version: 1,
            }],
            model_overrides: None,
            created_at: now,
            created_by: "usr_fuzz".into(),
            activated_at: now,
            rolled_back_at: None,
            retired_at: None,
        }),
        Mutation::PutPublicKey(PublicKey {
            id: PUBLIC_KEY_ID.into(),
            project_id: PROJECT.into(),
            name: "fuzz widget".into(),
            prefix: PUBLIC_KEY.chars().take(7).collect(),
            digest: tokens::digest(PUBLIC_KEY),
            allowed_origins: vec![ORIGIN.into()],
            created_at: now,
        }),
    ]
}

/// The fixture's echo agent `assistant`.
fn fixture_agent(now: u64) -> halyard_storage::Agent {
    halyard_storage::Agent {
        id: "agt_fuzz".into(),
        project_id: PROJECT.into(),
        name: "assistant".into(),
        description: None,
        instructions: None,
        model: halyard_storage::ModelConfig {
            provider: "echo".into(),
            model: "echo".into(),
            ..halyard_storage::ModelConfig::default()
        },
        dsl_content: None,
        created_at: now,
        updated_at: now,
        tools: Vec::new(),
        max_tool_iterations: halyard_storage::DEFAULT_MAX_TOOL_ITERATIONS,
    }
}

/// The fixture, opened on first use.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("halyard-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let opts = Options {
            fsync: halyard_storage::FsyncPolicy::Never,
            snapshot_threshold: u64::MAX,
            ..Options::default()
        };
        let (store, _) = Store::open(&dir, opts).expect("open the fixture store");
        store
            .commit_wait(TENANT, fixture_mutations())
            .expect("seed the fixture");
        // The open segment stays writable after its directory is gone; nothing is left
        // behind in the temp dir however the process ends.
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(store);
        let api = Api::new(
            store.clone() as Arc<dyn Backend>,
            ApiConfig {
                jwt_secret: JWT_SECRET.to_vec(),
                jwt_ttl_secs: JWT_TTL,
                external_jwt: None,
                root_key: Some(ROOT_KEY.into()),
                master_key: [7; 32],
                limits: halyard_api::admission::LimitConfig {
                    enabled: false,
                    ..Default::default()
                },
                runtime: halyard_api::chat::runtime::RuntimeConfig {
                    max_running: 16,
                    ..Default::default()
                },
                backup_dir: None,
            },
        )
        .expect("API");
        let (tx, rx) = crossbeam_channel::unbounded();
        let metrics = Arc::new(Metrics::new(1));
        Fixture {
            store,
            verifiers: Verifiers {
                jwt: jwt(),
                sdk: SdkSigner::new(SDK_KEY),
                root: Some(tokens::digest(ROOT_KEY)),
            },
            api: Builtin::new(Arc::new(api), metrics.clone(), || false),
            letters: Mutex::new(rx),
            mailbox: Arc::new(Mailbox::new(tx, None)),
            metrics,
        }
    })
}

// ---------------------------------------------------------------------------------------
// credentials: Authorization / X-API-Key / X-SDK-Token / X-Public-Key / JWT
// ---------------------------------------------------------------------------------------

/// Treats `data` as header lines of a request and authenticates it under every guard; also
/// feeds the value-level verifiers directly. Only the fixture's own credentials may pass.
pub fn credentials(data: &[u8]) {
    let fx = fixture();
    let now_ms = halyard_api::time::now_ms();
    if let Ok(s) = std::str::from_utf8(data) {
        let token = s.trim();
        if let Some((claims, external)) = fx.verifiers.jwt.verify(token) {
            assert!(!external);
            assert_eq!((claims.sub.as_str(), claims.tid.as_str()), (USER, TENANT));
        }
        if let Some(grant) = fx.verifiers.sdk.verify(token, now_ms / 1000) {
            assert_eq!(grant.tenant, TENANT, "an SDK token was forged");
        }
        let _ = tokens::digest(token);
    }
    let mut raw = b"GET /api/v1/auth/me HTTP/1.1\r\nHost: h\r\n".to_vec();
    raw.extend_from_slice(data);
    raw.extend_from_slice(b"\r\n\r\n");
    let Ok(Some(head)) = RequestHead::from_bytes(&raw, RequestId::new(b"fuzz"), PEER) else {
        return;
    };
    let mut guards = vec![
        Guard::Public,
        Guard::Root,
        Guard::Scope(None),
        Guard::PublicKey,
        Guard::SdkToken,
    ];
    guards.extend(scope::ALL.iter().map(|(s, _)| Guard::Scope(Some(*s))));
    let text = String::from_utf8_lossy(data);
    for guard in guards {
        let principal = match auth::authenticate(&fx.verifiers, &*fx.store, &head, guard, now_ms) {
            Ok(Some(p)) => p,
            Ok(None) => {
                assert!(matches!(guard, Guard::Public));
                continue;
            }
            Err(e) => {
                assert!(matches!(e.status(), 401 | 403), "{e:?}");
                continue;
            }
        };
        match principal.kind {
            Kind::Root => {
                assert!(matches!(guard, Guard::Root));
                assert!(
                    text.contains(ROOT_KEY),
                    "root accepted without the root key"
                );
            }
            Kind::UserKey => assert!(text.contains(USER_KEY), "user key forged"),
            Kind::ServiceKey => assert!(text.contains(SERVICE_KEY), "service key forged"),
            Kind::PublicKey => {
                assert!(text.contains(PUBLIC_KEY) && text.contains(ORIGIN));
            }
            Kind::Sdk => assert!(text.contains(ORIGIN), "SDK token without its origin"),
            Kind::Jwt => assert_eq!(principal.id, USER),
        }
        if principal.kind != Kind::Root {
            assert_eq!(principal.tenant, TENANT);
            assert!(principal.sees_project(PROJECT) || !principal.projects.is_empty());
        }
        if let Guard::Scope(Some(s)) = guard {
            assert!(
                principal.has(s),
                "a principal without {s:?} passed its guard"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// log_records: the record decoder, segment recovery, Txn payloads and their replay
// ---------------------------------------------------------------------------------------

/// Walks `data` as v2 records and as a segment (bare, and behind a valid v2 and v1 segment
/// header), decodes every payload as a `Txn` (and `data` itself, so the fuzzer reaches the
/// payload decoder without forging checksums) and replays what decodes into a fresh state.
/// Checks the v2 promise that payload bytes never decide recovery: a cut inside the records
/// that read cleanly is a torn tail (or a clean end) keeping exactly the records wholly
/// before it, and `data` framed as a payload and cut anywhere inside is torn with no record
/// read out of it, whatever frames `data` holds.
pub fn log_records(data: &[u8]) {
    let (records, end) = record::decode(data);
    let mut at = 0;
    for r in &records {
        assert_eq!(r.offset, at, "records are back to back");
        assert!(r.end() <= data.len());
        at = r.end();
    }
    match end {
        Next::End => assert_eq!(at, data.len()),
        Next::Torn { offset, .. } | Next::Corrupt { offset, .. } => assert_eq!(offset, at),
        Next::Record(_) => panic!("decode ended on a record"),
    }
    check_cut(data, &records, cut_point(data, at));
    check_segments(data, &records, at);

    let state = State::default();
    for r in &records {
        if matches!(r.kind, RecordType::Txn | RecordType::SnapshotEntry) {
            replay(&state, r.payload);
        }
    }
    let (v1_records, _) = record::decode_format(record::Format::V1, data);
    for r in &v1_records {
        replay(&state, r.payload);
    }
    replay(&state, data);
    check_framed_payload(data);
}

/// A cut point in `0..=valid`, picked from the input so the fuzzer steers it.
fn cut_point(data: &[u8], valid: usize) -> usize {
    let pick = data.first().map_or(0, |&b| b as usize * 257) + data.len();
    pick % (valid + 1)
}

/// `data[..cut]`, with `cut` inside the cleanly read records: torn or clean, never corrupt,
/// and the same records as far as they are whole.
fn check_cut(data: &[u8], records: &[record::Record<'_>], cut: usize) {
    let (before, end) = record::decode(&data[..cut]);
    let whole = records.iter().take_while(|r| r.end() <= cut).count();
    assert_eq!(
        before[..],
        records[..whole],
        "a cut changed the records before it"
    );
    let valid_end = before.last().map_or(0, |r| r.end());
    match end {
        Next::End => assert_eq!(valid_end, cut),
        Next::Torn { offset, .. } => assert_eq!(offset, valid_end),
        other => panic!("a cut inside valid records read as {other:?}"),
    }
}

/// The input as a segment on its own, and behind valid v2 and v1 segment headers.
fn check_segments(data: &[u8], records: &[record::Record<'_>], valid: usize) {
    let scan = halyard_storage::recover_segment_bytes(data);
    assert!(scan.valid_end as usize <= data.len());
    for version in [2, 1] {
        let magic = halyard_storage::header::SEGMENT_MAGIC;
        let mut seg = halyard_storage::header::encode_version(magic, version, 1).to_vec();
        let header_len = seg.len();
        seg.extend_from_slice(data);
        let scan = halyard_storage::recover_segment_bytes(&seg);
        assert!(scan.valid_end as usize <= seg.len());
        if version == 2 {
            assert_eq!(
                scan.records,
                records.len() as u64,
                "segment scan disagrees with the reader"
            );
            assert_eq!(scan.valid_end as usize, header_len + valid);
        }
    }
}

/// `data` as the payload of one valid frame: read back whole, and cut anywhere inside
/// it, a torn tail at 0 with no record, whatever frames `data` holds.
fn check_framed_payload(data: &[u8]) {
    let mut framed = Vec::new();
    record::encode(RecordType::Txn, data, &mut framed);
    let (again, end) = record::decode(&framed);
    assert_eq!(end, Next::End);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].payload, data);
    let cuts = [
        1,
        record::FRAME_HEADER_LEN,
        framed.len() / 2,
        framed.len() - 1,
    ];
    for cut in cuts.into_iter().filter(|&c| c > 0 && c < framed.len()) {
        let (recs, end) = record::decode(&framed[..cut]);
        assert!(recs.is_empty(), "a record read from inside a payload");
        assert!(
            matches!(end, Next::Torn { offset: 0, .. }),
            "cut at {cut} of a framed payload: {end:?}"
        );
    }
}

fn replay(state: &State, payload: &[u8]) {
    let Ok(txn) = Txn::decode(payload) else {
        return;
    };
    // Encoding is canonical for what decodes: decode(encode(t)) == t.
    let mut e = halyard_storage::codec::Encoder::default();
    txn.encode(&mut e);
    let back = Txn::decode(&e.into_bytes()).expect("a re-encoded Txn decodes");
    assert_eq!(back, txn);
    let _ = state.apply(&txn.tenant, txn.mutations);
}

// ---------------------------------------------------------------------------------------
// last_event_id: the SSE Last-Event-ID header
// ---------------------------------------------------------------------------------------

/// Parses `data` as a `Last-Event-ID` value, directly and through a request head, against a
/// reference: optional SP/HTAB around plain ASCII digits that fit in a u64.
pub fn last_event_id(data: &[u8]) {
    let got = halyard_api::chat::sse::parse_last_event_id(data);
    let trimmed = parse::trim_ows(data);
    let want = if !trimmed.is_empty() && trimmed.iter().all(u8::is_ascii_digit) {
        std::str::from_utf8(trimmed)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
    } else {
        None
    };
    assert_eq!(got, want, "{data:?}");
    let mut raw = b"GET /api/v1/chat/stream/s HTTP/1.1\r\nHost: h\r\nLast-Event-ID: ".to_vec();
    raw.extend_from_slice(data);
    raw.extend_from_slice(b"\r\n\r\n");
    // Through a head, when the value is one header line (a CR or LF would end it early).
    if data.contains(&b'\r') || data.contains(&b'\n') {
        return;
    }
    if let Ok(Some(head)) = RequestHead::from_bytes(&raw, RequestId::new(b"fuzz"), PEER) {
        let value = head.header("last-event-id").unwrap_or(b"");
        assert_eq!(halyard_api::chat::sse::parse_last_event_id(value), want);
    }
}

// ---------------------------------------------------------------------------------------
// api_request: one request of any route through the connection state machine and the API
// ---------------------------------------------------------------------------------------

/// `data[0]` picks a route of the table, `data[1]` how the credential is presented; the
/// rest is the body (routes with a body) or the query string (others). The request goes
/// through a `Conn` (head parser, admission with authentication, body reading, the route's
/// handler with its JSON decoding and validation) like bytes from a socket; the response
/// must be well-formed, and never a 500.
pub fn api_request(data: &[u8]) {
    let [route_byte, cred_byte, rest @ ..] = data else {
        return;
    };
    let fx = fixture();
    let def = &ROUTES[usize::from(*route_byte) % ROUTES.len()];
    if def.id == halyard_api::route::RouteId::Login {
        // A login costs an Argon2 hash by design (about 50 ms): too slow to fuzz here; its
        // body is two strings, covered by json_body.
        return;
    }
    let has_body = matches!(def.method, Method::Post | Method::Put | Method::Patch);
    if has_body && names_openai(rest) {
        // An agent with the openai provider would make the agent runtime call out to a
        // model provider: this harness never leaves the process.
        return;
    }
    // Deletions and tenant changes aim at ids that do not exist, so that the fixture's
    // tenant, project, agent and keys stay for the next input.
    let deleting = def.method == Method::Delete;
    let last = def.pattern.rsplit('/').next().unwrap_or("");
    let path: String = def
        .pattern
        .split('/')
        .map(|seg| match seg {
            ":projectId" if !(deleting && last == ":projectId") => PROJECT,
            ":name" | ":agentSlug" if !deleting => "assistant",
            ":projectSlug" => "fuzz",
            ":env" => "production",
            ":version" => "1",
            ":tenantId" => "ten_other",
            s if s.starts_with(':') => "fuzz_id",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/");
    let mut target = path;
    if !has_body && !rest.is_empty() {
        target.push('?');
        for &b in rest {
            if b.is_ascii_alphanumeric() || b"-._~=&".contains(&b) {
                target.push(char::from(b));
            } else {
                target.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut req = format!("{} {target} HTTP/1.1\r\nHost: h\r\n", def.method.as_str());
    let credential = match (def.guard, cred_byte % 4) {
        (_, 3) => String::new(),
        (Guard::Root, _) => format!("Authorization: Bearer {ROOT_KEY}\r\n"),
        (Guard::PublicKey, _) => format!("X-Public-Key: {PUBLIC_KEY}\r\nOrigin: {ORIGIN}\r\n"),
        (Guard::SdkToken, _) => {
            format!(
                "X-SDK-Token: {}\r\nOrigin: {ORIGIN}\r\n",
                fixture_sdk_token()
            )
        }
        (_, 0) => format!("Authorization: Bearer {USER_KEY}\r\n"),
        (_, 1) => format!("X-API-Key: {SERVICE_KEY}\r\n"),
        (_, _) => format!("Authorization: Bearer {}\r\n", fixture_jwt()),
    };
    req.push_str(&credential);
    let mut bytes = req.into_bytes();
    if has_body {
        bytes.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                rest.len()
            )
            .as_bytes(),
        );
        bytes.extend_from_slice(rest);
    } else {
        bytes.extend_from_slice(b"\r\n");
    }
    let out = run_conn(fx, &bytes);
    check_response(&out, def.pattern);
}

/// Whether `body` is JSON holding the string "openai" anywhere (after unescaping).
fn names_openai(body: &[u8]) -> bool {
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.eq_ignore_ascii_case("openai"),
            serde_json::Value::Array(a) => a.iter().any(walk),
            serde_json::Value::Object(o) => o.iter().any(|(k, v)| k == "openai" || walk(v)),
            _ => false,
        }
    }
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| walk(&v))
}

/// Feeds `input` to a fresh connection over the fixture's API; returns what it wrote.
fn run_conn(fx: &Fixture, input: &[u8]) -> Vec<u8> {
    let mut ids = RequestIds::new(1);
    let mut conn: Conn<Builtin<Api>> = Conn::new(PEER, 0);
    let mut env = Env {
        app: &fx.api,
        date: b"Thu, 01 Jan 2026 00:00:00 GMT",
        mailbox: &fx.mailbox,
        token: 1,
        ids: &mut ids,
        stats: fx.metrics.loop_stats(0),
        timeouts: Timeouts {
            header_ms: 10_000,
            idle_ms: 10_000,
        },
        now_ms: 1,
        now_us: 1_000,
        now: std::time::Instant::now(),
        draining: false,
        access_log: None,
    };
    conn.receive(input, &mut env);
    conn.on_eof(&mut env);
    let out = conn.output().to_vec();
    let n = conn.pending_output();
    conn.consumed(n, &mut env);
    conn.on_close(&mut env);
    if let Ok(rx) = fx.letters.lock() {
        while rx.try_recv().is_ok() {}
    }
    out
}

fn check_response(out: &[u8], what: &str) {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    if *DEBUG.get_or_init(|| std::env::var_os("HALYARD_FUZZ_DEBUG").is_some()) {
        let line = out.split(|&b| b == b'\r').next().unwrap_or(b"");
        eprintln!("{what}: {}", String::from_utf8_lossy(line));
    }
    if out.is_empty() {
        // Deferred (a write waiting for durability, a queued turn): answered later.
        return;
    }
    let text = String::from_utf8_lossy(out);
    assert!(text.starts_with("HTTP/1.1 "), "{what}: {text}");
    let status: u16 = text[9..12].parse().unwrap_or(0);
    assert!((100..600).contains(&status), "{what}: {text}");
    assert_ne!(status, 500, "{what}: internal error: {text}");
    assert!(text.contains("\r\nX-Request-Id: ") || text.contains("\r\nx-request-id: "));
}

/// The application trait is used through `Conn`; keep the import honest.
fn _uses_app<A: App>() {}

// ---------------------------------------------------------------------------------------
// tool_schema: the JSON Schema check of tool parameters and of a model's arguments
// ---------------------------------------------------------------------------------------

/// The input is `schema JSON \0 arguments JSON`. Checking any schema must not panic; a
/// schema that passes must validate any arguments without panicking, the same way twice,
/// with each error naming a path under `$`; the object `{}` passes a schema that requires
/// nothing and limits nothing.
pub fn tool_schema(data: &[u8]) {
    use halyard_api::schema::{check_parameters, validate};
    use serde_json::Value;

    let (schema, args) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(schema) = serde_json::from_slice::<Value>(schema) else {
        return;
    };
    if check_parameters(&schema).is_err() {
        return;
    }
    let Ok(args) = serde_json::from_slice::<Value>(args) else {
        return;
    };
    let first = validate(&schema, &args);
    assert_eq!(
        first,
        validate(&schema, &args),
        "validation is deterministic"
    );
    if let Err(errors) = first {
        assert!(!errors.is_empty() && errors.len() <= 8, "{errors:?}");
        assert!(errors.iter().all(|e| e.starts_with('$')), "{errors:?}");
    }
    if schema.as_object().is_some_and(|o| o.len() == 1) {
        assert_eq!(validate(&schema, &serde_json::json!({})), Ok(()));
    }
}

// ---------------------------------------------------------------------------------------
// http_response: the outbound client's response reader, then its event-stream reader
// ---------------------------------------------------------------------------------------

/// `data[0]` holds flags (bit 0: the request was HEAD; bit 1: small limits, so that the
/// head, header and body limits are reached), `data[1]` and `data[2]` pick two split points
/// of the rest, which is read as the bytes of a connection: whole, split at those points,
/// and (up to 4 KiB) byte by byte. Head, body, completion, reuse and error must not depend
/// on the split. The decoded body, then the raw rest, go through the event-stream reader
/// the same three ways: same events, same error.
pub fn http_response(data: &[u8]) {
    use halyard_engine::client::response::ResponseLimits;

    let [flags, a, b, input @ ..] = data else {
        return;
    };
    let head_request = flags & 1 != 0;
    let limits = if flags & 2 != 0 {
        ResponseLimits {
            max_head: 128,
            max_headers: 4,
            max_body: 64,
        }
    } else {
        ResponseLimits::default()
    };
    let cuts = split_points(input.len(), *a, *b);
    let whole = read_response_in_pieces(input, &[], head_request, limits);
    let split = read_response_in_pieces(input, &cuts, head_request, limits);
    assert_eq!(whole, split, "response split at {cuts:?}");
    if input.len() <= 4096 {
        let every: Vec<usize> = (0..input.len()).collect();
        let ones = read_response_in_pieces(input, &every, head_request, limits);
        assert_eq!(whole, ones, "response byte by byte");
    }
    check_response_outcome(&whole, input.len(), head_request, limits);
    for stream in [&whole.body[..], input] {
        let cuts = split_points(stream.len(), *a, *b);
        let events = read_events_in_pieces(stream, &[]);
        assert_eq!(
            events,
            read_events_in_pieces(stream, &cuts),
            "events split at {cuts:?}"
        );
        if stream.len() <= 4096 {
            let every: Vec<usize> = (0..stream.len()).collect();
            assert_eq!(
                events,
                read_events_in_pieces(stream, &every),
                "events byte by byte"
            );
        }
        check_events(&events.0);
    }
}

/// Two split points of `len` bytes chosen by two bytes of the input.
fn split_points(len: usize, a: u8, b: u8) -> [usize; 2] {
    [usize::from(a) * len / 255, usize::from(b) * len / 255]
}

/// What a response reader made of a connection's bytes, then of its EOF.
#[derive(Debug, PartialEq, Eq)]
struct ResponseOutcome {
    /// The head, when no error came (an error in the call that completes the head hides it,
    /// so whether a head was seen before an error depends on the split).
    head: Option<halyard_engine::client::response::ResponseHead>,
    body: Vec<u8>,
    complete: bool,
    reusable: bool,
    error: Option<halyard_engine::client::response::ResponseError>,
    eof: Result<(), halyard_engine::client::response::ResponseError>,
}

fn read_response_in_pieces(
    input: &[u8],
    cuts: &[usize],
    head_request: bool,
    limits: halyard_engine::client::response::ResponseLimits,
) -> ResponseOutcome {
    let mut r = halyard_engine::client::response::ResponseReader::new(head_request, limits);
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    let (mut head, mut body, mut error, mut at) = (None, Vec::new(), None, 0);
    for end in bounds {
        match r.receive(&input[at..end], &mut body) {
            Ok(Some(h)) => {
                assert!(head.is_none(), "a second head from one reader");
                head = Some(h);
            }
            Ok(None) => {}
            Err(e) => {
                assert_eq!(
                    r.receive(b"more", &mut body),
                    Err(e),
                    "the reader must stay failed"
                );
                error = Some(e);
                break;
            }
        }
        at = end;
    }
    let (complete, reusable) = (r.is_complete(), r.reusable());
    let eof = r.on_eof();
    assert!(!r.reusable(), "reusable after EOF");
    if error.is_some() {
        head = None;
    }
    ResponseOutcome {
        head,
        body,
        complete,
        reusable,
        error,
        eof,
    }
}

fn check_response_outcome(
    o: &ResponseOutcome,
    input_len: usize,
    head_request: bool,
    limits: halyard_engine::client::response::ResponseLimits,
) {
    if let Some(e) = o.error {
        assert!(!o.complete && !o.reusable, "{e:?} yet complete or reusable");
        assert_eq!(o.eof, Err(e), "EOF after {e:?}");
        assert!(!e.to_string().is_empty());
    }
    assert!(!o.reusable || o.complete, "reusable before complete");
    assert!(!o.complete || o.eof.is_ok(), "complete, then EOF failed");
    assert!(o.body.len() <= input_len, "more body than input");
    assert!(
        o.body.len() as u64 <= limits.max_body,
        "body past the limit"
    );
    let Some(head) = &o.head else {
        assert!(
            o.body.is_empty() || o.error.is_some(),
            "a body without a head"
        );
        return;
    };
    assert!((200..=999).contains(&head.status), "status {}", head.status);
    assert!(head.headers.len() <= limits.max_headers);
    for (name, _) in &head.headers {
        assert!(
            !name.is_empty() && !name.bytes().any(|b| b.is_ascii_uppercase()),
            "{name:?}"
        );
    }
    if head_request || matches!(head.status, 204 | 304) {
        assert!(o.body.is_empty() && o.complete, "a body where none may be");
    }
}

type EventsRead = (
    Vec<halyard_engine::client::sse::SseEvent>,
    Option<halyard_engine::client::sse::SseError>,
);

const SSE_MAX_LINE: usize = 1024;
const SSE_MAX_EVENT: usize = 16 * 1024;

fn read_events_in_pieces(input: &[u8], cuts: &[usize]) -> EventsRead {
    let mut r = halyard_engine::client::sse::SseReader::new(SSE_MAX_LINE, SSE_MAX_EVENT);
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    let (mut events, mut error, mut at) = (Vec::new(), None, 0);
    for end in bounds {
        let fed = r.feed(&input[at..end]);
        while let Some(e) = r.next_event() {
            events.push(e);
        }
        if let Err(e) = fed {
            assert_eq!(
                r.feed(b"data: x\n\n"),
                Err(e),
                "the reader must stay failed"
            );
            assert!(r.next_event().is_none(), "an event after the error");
            error = Some(e);
            break;
        }
        at = end;
    }
    (events, error)
}

fn check_events(events: &[halyard_engine::client::sse::SseEvent]) {
    for e in events {
        assert!(!e.event.is_empty(), "an event without a type");
        assert!(!e.event.contains(['\r', '\n']), "{:?}", e.event);
        assert!(e.event.len() <= SSE_MAX_LINE);
        assert!(!e.data.contains('\r'), "CR in data {:?}", e.data);
        assert!(e.data.len() <= SSE_MAX_EVENT, "data past the limit");
        if let Some(id) = &e.id {
            assert!(!id.is_empty() && !id.contains(['\0', '\r', '\n']), "{id:?}");
        }
    }
}

/// `route_path`: [method byte, path bytes...]. The router on any path: no panic; a match's
/// captures are non-empty single segments of the path, and putting them back into the
/// route's pattern gives a path that resolves to the same route with the same captures; a
/// known path with another method lists the allowed methods.
pub fn route_path(data: &[u8]) {
    use halyard_api::route::{resolve, Matched};
    let [m, rest @ ..] = data else {
        return;
    };
    let methods = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Head,
        Method::Options,
    ];
    let method = methods[usize::from(*m) % methods.len()];
    let path = String::from_utf8_lossy(rest);
    match resolve(method, &path) {
        Matched::Route(def, params) => {
            let mut captures = Vec::new();
            for i in 0..3 {
                let c = params.get(&path, i);
                if c.is_empty() {
                    break;
                }
                assert!(!c.contains('/'), "capture {c:?} of {path:?}");
                captures.push(c);
            }
            let mut next = captures.iter();
            let rebuilt: Vec<&str> = def
                .pattern
                .split('/')
                .map(|seg| match seg.starts_with(':') {
                    true => next.next().copied().unwrap_or("x"),
                    false => seg,
                })
                .collect();
            let rebuilt = rebuilt.join("/");
            assert_eq!(rebuilt, path, "{} from {:?}", def.pattern, captures);
        }
        Matched::WrongMethod(allow) => assert!(!allow.is_empty(), "{path:?}"),
        Matched::NotFound => {}
    }
}

/// The input is the JSON of one streamed chunk (an SSE `data:` line). The one-pass reader
/// either declines it or reads exactly what serde reads, with the same result; serde never
/// refuses what it accepts.
pub fn openai_chunk(data: &[u8]) {
    use halyard_api::chat::openai_chunk::{parse, parse_with_serde, scan};

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let serde = parse_with_serde(text).map_err(|e| e.to_string());
    if let Some(chunk) = scan(text) {
        assert_eq!(Ok(&chunk), serde.as_ref(), "{text:?}");
    }
    assert_eq!(parse(text).map_err(|e| e.to_string()), serde, "{text:?}");
}
