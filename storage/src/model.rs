//! The stored resources of ENDPOINTS.md as plain Rust structs, and their binary encoding.
//!
//! Responsible for: the fields storage keeps for each resource and how each struct is
//! written to and read from a payload. Timestamps are milliseconds since the Unix epoch.
//! Free-form JSON (session metadata) is kept as JSON text so that storage needs no JSON
//! library. Not responsible for: validation of field contents (the API does that), JSON
//! shapes of responses, or indexes (`state`).

use crate::codec::{codec_enum, codec_struct, Codec, DecodeError, Decoder, Encoder};

/// Per-tenant limits (CONVENTIONS.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request rate, tokens per second.
    pub requests_per_second: u32,
    /// Token bucket capacity.
    pub burst: u32,
    /// Messages a client may send per session per minute.
    pub session_messages_per_minute: u32,
    /// Active sessions allowed at once.
    pub max_concurrent_sessions: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests_per_second: 100,
            burst: 200,
            session_messages_per_minute: 60,
            max_concurrent_sessions: 1000,
        }
    }
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// `ten_...`
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its limits.
    pub limits: Limits,
    /// A disabled tenant's credentials are refused.
    pub disabled: bool,
    /// Creation time (ms).
    pub created_at: u64,
    /// Last change (ms).
    pub updated_at: u64,
}

codec_enum! {
    /// A user's role (CONVENTIONS.md section 2).
    pub enum Role ("role") {
        /// Every permission.
        Owner = 0,
        /// All but `key:admin`.
        Developer = 1,
        /// The `:read` permissions.
        Viewer = 2,
    }
}

/// A user of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `usr_...`
    pub id: String,
    /// Login email, unique within the tenant.
    pub email: String,
    /// Argon2id PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// Creation time (ms).
    pub created_at: u64,
}

codec_enum! {
    /// The kind of an API key.
    pub enum KeyKind ("key kind") {
        /// `abl_sk-...`
        User = 0,
        /// `ak_...`
        Service = 1,
    }
}

/// An API key; the secret itself is never stored, only its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// `key_...`
    pub id: String,
    /// Name, unique within the tenant among keys not revoked.
    pub name: String,
    /// SHA-256 of the whole key string.
    pub digest: [u8; 32],
    /// The visible start of the key (e.g. `abl_sk-ab`).
    pub prefix: String,
    /// The key's last four characters.
    pub last4: String,
    /// User or service key.
    pub kind: KeyKind,
    /// Scopes granted.
    pub scopes: Vec<String>,
    /// Projects it is restricted to; empty means all.
    pub project_ids: Vec<String>,
    /// Expiry (ms), if any.
    pub expires_at: Option<u64>,
    /// A revoked key is refused.
    pub revoked: bool,
    /// Creation time (ms).
    pub created_at: u64,
}

/// A project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// `proj_...`
    pub id: String,
    /// Display name.
    pub name: String,
    /// URL slug, unique within the tenant.
    pub slug: String,
    /// Description.
    pub description: Option<String>,
    /// The agent used when a request names none.
    pub entry_agent_name: Option<String>,
    /// Creation time (ms).
    pub created_at: u64,
    /// Last change (ms).
    pub updated_at: u64,
}

/// Model pricing, per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pricing {
    /// Price of a million input tokens.
    pub input_per_mtok: f64,
    /// Price of a million output tokens.
    pub output_per_mtok: f64,
}

/// An agent's model configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelConfig {
    /// `echo` or `openai`.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Base URL of an OpenAI-compatible server.
    pub base_url: Option<String>,
    /// Name of the project secret holding the provider's API key.
    pub api_key_secret: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Output token cap.
    pub max_tokens: Option<u64>,
    /// Pricing, when known.
    pub pricing: Option<Pricing>,
}

/// An agent of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// `agt_...`
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Name (`[a-z0-9-]{1,64}`), unique within the project.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// System prompt.
    pub instructions: Option<String>,
    /// Model configuration.
    pub model: ModelConfig,
    /// DSL source, stored as text.
    pub dsl_content: Option<String>,
    /// Creation time (ms).
    pub created_at: u64,
    /// Last change (ms).
    pub updated_at: u64,
    /// Names of the project's tools the agent may call.
    pub tools: Vec<String>,
    /// The most model calls a turn makes while the model keeps asking for tools.
    pub max_tool_iterations: u32,
}

/// The tool-call budget of an agent that does not name one (and of agents stored before
/// tools existed).
pub const DEFAULT_MAX_TOOL_ITERATIONS: u32 = 8;

codec_enum! {
    /// How a tool is called.
    pub enum ToolType ("tool type") {
        /// An HTTP request built from a template.
        Http = 0,
        /// A tool of a Model Context Protocol server (streamable HTTP).
        Mcp = 1,
    }
}

/// A tool of a project, which its agents may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// `tool_...`
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Name (`[a-z0-9_-]{1,64}`), unique within the project.
    pub name: String,
    /// What the tool does, for the model.
    pub description: Option<String>,
    /// HTTP or MCP.
    pub tool_type: ToolType,
    /// The JSON Schema of its arguments, as JSON text.
    pub parameters: String,
    /// The settings of its type (URL template, headers, auth, limits...), as JSON text: the
    /// API owns their shape, so storage needs no JSON library.
    pub config: String,
    /// Creation time (ms).
    pub created_at: u64,
    /// Last change (ms).
    pub updated_at: u64,
}

codec_enum! {
    /// What a rater thought of a message.
    pub enum Rating ("rating") {
        /// Good.
        Positive = 0,
        /// Bad.
        Negative = 1,
    }
}

/// One rater's feedback on one message of a session (a second from the same rater replaces
/// the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// `fb_...`
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// The session.
    pub session_id: String,
    /// The message rated.
    pub message_id: String,
    /// Principal id of the rater.
    pub author: String,
    /// Positive or negative.
    pub rating: Rating,
    /// What the rater said.
    pub comment: Option<String>,
    /// First given (ms).
    pub created_at: u64,
    /// Last changed (ms).
    pub updated_at: u64,
}

/// An immutable, numbered snapshot of an agent: what a deployment pins.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentVersion {
    /// Owning project.
    pub project_id: String,
    /// The agent's name (versions outlive an agent's id: a deleted and recreated agent
    /// keeps numbering).
    pub agent_name: String,
    /// 1, 2, ... per agent name.
    pub version: u32,
    /// A free label (`v1.2`, `before the prompt change`).
    pub label: Option<String>,
    /// `sha256:` and the hex digest of the snapshot's content (instructions, model, tools,
    /// DSL): equal content, equal hash.
    pub content_hash: String,
    /// The agent as it was.
    pub agent: Agent,
    /// Creation time (ms).
    pub created_at: u64,
    /// Principal that created it.
    pub created_by: String,
}

codec_enum! {
    /// Where a deployment runs.
    pub enum Environment ("environment") {
        /// Development.
        Dev = 0,
        /// Staging.
        Staging = 1,
        /// Production.
        Production = 2,
    }
}

impl Environment {
    /// The name in the API and the runtime routes.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }

    /// The environment named `s`.
    pub fn parse(s: &str) -> Option<Environment> {
        Environment::ALL.iter().copied().find(|e| e.as_str() == s)
    }
}

codec_enum! {
    /// A deployment's state.
    pub enum DeploymentStatus ("deployment status") {
        /// What its environment serves (at most one per environment).
        Active = 0,
        /// Replaced by a later deployment of its environment, or rolled back.
        Superseded = 1,
        /// Withdrawn: its sessions end (`410`).
        Retired = 2,
    }
}

impl DeploymentStatus {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Active => "active",
            DeploymentStatus::Superseded => "superseded",
            DeploymentStatus::Retired => "retired",
        }
    }
}

/// One agent of a deployment and the version it pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedAgent {
    /// The agent's name.
    pub agent_name: String,
    /// Its version.
    pub version: u32,
}

/// A set of pinned agent versions serving one environment of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// `dep_...`
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Where it runs.
    pub environment: Environment,
    /// Active, superseded or retired.
    pub status: DeploymentStatus,
    /// A free label.
    pub label: Option<String>,
    /// A description.
    pub description: Option<String>,
    /// `projectSlug/environment/entryAgentName`: the runtime route's path and the model
    /// name of the OpenAI-compatible endpoint.
    pub endpoint_slug: String,
    /// The agent a request runs when it names none.
    pub entry_agent_name: String,
    /// Every agent it serves, by name, with its version.
    pub manifest: Vec<PinnedAgent>,
    /// Model settings laid over the pinned agents' (JSON text), if any.
    pub model_overrides: Option<String>,
    /// Creation time (ms).
    pub created_at: u64,
    /// Principal that created it.
    pub created_by: String,
    /// When it last became active (ms): rollback goes back to the environment's deployment
    /// active before this one.
    pub activated_at: u64,
    /// When it was rolled back (ms): a rolled-back deployment is never rolled back to.
    pub rolled_back_at: Option<u64>,
    /// When it was retired (ms).
    pub retired_at: Option<u64>,
}

codec_enum! {
    /// Whether a session is open.
    pub enum SessionStatus ("session status") {
        /// Open; counts toward the concurrency limit.
        Active = 0,
        /// Ended by `DELETE`; history kept.
        Ended = 1,
    }
}

codec_enum! {
    /// Where a session came from.
    pub enum Channel ("channel") {
        /// A credential of the API.
        Api = 0,
        /// A widget SDK token.
        Sdk = 1,
    }
}

/// A session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `ses_...`
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// The agent it talks to.
    pub agent_id: String,
    /// That agent's name at creation.
    pub agent_name: String,
    /// Active or ended.
    pub status: SessionStatus,
    /// API or SDK.
    pub channel: Channel,
    /// Messages stored (maintained by `AppendMessage`).
    pub message_count: u64,
    /// Tokens used (maintained by `AppendMessage`).
    pub token_count: u64,
    /// Creation time (ms).
    pub created_at: u64,
    /// Time of the last message (ms).
    pub last_activity_at: u64,
    /// Session metadata as JSON text (`{}` when none).
    pub metadata: String,
    /// The SDK token that created it, if any (SDK tokens see only their own sessions).
    pub created_by_token: Option<String>,
}

codec_enum! {
    /// Who wrote a message.
    pub enum MessageRole ("message role") {
        /// The client.
        User = 0,
        /// The agent.
        Assistant = 1,
        /// A system message.
        System = 2,
        /// A tool's result, answering one tool call of the assistant message before it.
        Tool = 3,
    }
}

codec_enum! {
    /// How a message's usage is stored: the byte before its numbers.
    enum UsageTag ("message usage") {
        /// No usage (user and system messages).
        Absent = 0,
        /// Input, output and total tokens: written before latency was recorded.
        WithoutLatency = 1,
        /// Input, output and total tokens, then the latency.
        WithLatency = 2,
        /// `opt<usage>` (the four numbers), `opt<str>` tool calls (JSON text),
        /// `opt<str>` tool call id: a message of a turn that called tools.
        WithTools = 3,
    }
}

/// Token usage of a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
    /// Time the turn took, in milliseconds (0 when unknown).
    pub latency_ms: u64,
}

/// A message of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `msg_...`
    pub id: String,
    /// Author.
    pub role: MessageRole,
    /// Text.
    pub content: String,
    /// Usage (assistant replies).
    pub usage: Option<Usage>,
    /// Creation time (ms).
    pub created_at: u64,
    /// The tool calls an assistant message asked for, as OpenAI's `tool_calls` JSON text
    /// (`[{id, type, function: {name, arguments}}]`); storage keeps it as text.
    pub tool_calls: Option<String>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
}

/// A project secret: ciphertext only, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// `sec_...`
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Name (`[A-Z0-9_]{1,128}`), unique within the project.
    pub name: String,
    /// Starts at 1, +1 per rotation.
    pub version: u32,
    /// Nonce + ciphertext + tag, as the API's cipher produced them.
    pub ciphertext: Vec<u8>,
    /// Creation time (ms).
    pub created_at: u64,
    /// Last rotation (ms).
    pub updated_at: u64,
    /// Expiry (ms), if any.
    pub expires_at: Option<u64>,
}

/// A widget public key (`pk_...`), stored by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// `pkey_...`
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// The visible start of the key.
    pub prefix: String,
    /// SHA-256 of the whole key string.
    pub digest: [u8; 32],
    /// Origins allowed to use it (exact `scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Creation time (ms).
    pub created_at: u64,
}

/// One stored SSE event of a stream, for `Last-Event-ID` resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    /// The `id:` line; increasing within a stream.
    pub id: u64,
    /// The `event:` name.
    pub event: String,
    /// The `data:` text.
    pub data: String,
}

codec_enum! {
    /// What a trace event records.
    pub enum TraceKind ("trace kind") {
        /// One model call (its span: start, duration, tokens, cost).
        LlmCall = 0,
        /// A tool call the model asked for (its span: the call's start and duration).
        ToolCall = 1,
        /// A tool call's result (in the call's span).
        ToolResult = 2,
        /// A failure of the turn.
        Error = 3,
        /// The turn's answer (the turn's root span: its whole duration and tokens).
        Response = 4,
    }
}

/// One event of a turn's trace. Spans nest: a turn's `response` span is the root, its
/// model calls and tool calls are its children.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEvent {
    /// What it records.
    pub kind: TraceKind,
    /// Its span (`spn_...`).
    pub span_id: String,
    /// The span it is part of (none for a turn's root).
    pub parent_span_id: Option<String>,
    /// A model name, or a tool name.
    pub name: String,
    /// Start (ms since the epoch).
    pub started_at: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost under the agent's pricing, when it has one.
    pub cost: Option<f64>,
    /// Details as JSON text (a tool's arguments and result, an error's message), never a
    /// secret's value.
    pub data: String,
}

/// A message in its compact stored form: the encoded bytes, decoded on read. One boxed
/// slice per message (16 bytes + the text) instead of a struct of Strings keeps a million
/// messages well under the memory target, and replay copies the bytes straight from the log.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredMessage(Box<[u8]>);

impl std::fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.decode() {
            Ok(m) => m.fmt(f),
            Err(e) => write!(f, "StoredMessage(<{e}>)"),
        }
    }
}

/// A borrowed view of a stored message (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef<'a> {
    /// `msg_...`
    pub id: &'a str,
    /// Author.
    pub role: MessageRole,
    /// Text.
    pub content: &'a str,
    /// Usage.
    pub usage: Option<Usage>,
    /// Creation time (ms).
    pub created_at: u64,
    /// Tool calls (JSON text).
    pub tool_calls: Option<&'a str>,
    /// The call a tool message answers.
    pub tool_call_id: Option<&'a str>,
}

impl Message {
    /// A borrowed view.
    pub fn view(&self) -> MessageRef<'_> {
        MessageRef {
            id: &self.id,
            role: self.role,
            content: &self.content,
            usage: self.usage,
            created_at: self.created_at,
            tool_calls: self.tool_calls.as_deref(),
            tool_call_id: self.tool_call_id.as_deref(),
        }
    }
}

impl MessageRef<'_> {
    /// An owned copy.
    pub fn to_message(&self) -> Message {
        Message {
            id: self.id.to_owned(),
            role: self.role,
            content: self.content.to_owned(),
            usage: self.usage,
            created_at: self.created_at,
            tool_calls: self.tool_calls.map(str::to_owned),
            tool_call_id: self.tool_call_id.map(str::to_owned),
        }
    }
}

impl StoredMessage {
    /// Encodes a message.
    pub fn new(m: &Message) -> Self {
        let mut e = Encoder::default();
        m.encode(&mut e);
        StoredMessage(e.into_bytes().into_boxed_slice())
    }

    /// Takes bytes after checking that they decode as a whole message.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes);
        MessageRef::decode(&mut d)?;
        d.finish()?;
        Ok(StoredMessage(bytes.into()))
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A borrowed view. Cannot fail for a value built by `new` or `from_bytes`; the
    /// `Result` keeps a corrupted value from panicking.
    pub fn view(&self) -> Result<MessageRef<'_>, DecodeError> {
        MessageRef::decode(&mut Decoder::new(&self.0))
    }

    /// An owned, decoded message.
    pub fn decode(&self) -> Result<Message, DecodeError> {
        self.view().map(|r| r.to_message())
    }
}

// The field lists below are the format: each struct is written field by field in this
// order (see the crate doc and `codec`); the golden files pin it.

codec_struct!(Limits {
    requests_per_second,
    burst,
    session_messages_per_minute,
    max_concurrent_sessions,
});
codec_struct!(Tenant {
    id,
    name,
    limits,
    disabled,
    created_at,
    updated_at,
});
codec_struct!(User {
    id,
    email,
    password_hash,
    role,
    created_at,
});
codec_struct!(ApiKey {
    id,
    name,
    digest,
    prefix,
    last4,
    kind,
    scopes,
    project_ids,
    expires_at,
    revoked,
    created_at,
});
codec_struct!(Project {
    id,
    name,
    slug,
    description,
    entry_agent_name,
    created_at,
    updated_at,
});
codec_struct!(Pricing {
    input_per_mtok,
    output_per_mtok,
});
codec_struct!(ModelConfig {
    provider,
    model,
    base_url,
    api_key_secret,
    temperature,
    max_tokens,
    pricing,
});
codec_struct!(Agent {
    id,
    project_id,
    name,
    description,
    instructions,
    model,
    dsl_content,
    created_at,
    updated_at,
    tools,
    max_tool_iterations,
});

/// An agent as written before tools existed (mutation tag 8): the fields of [`Agent`] up to
/// `updated_at`. Read as an agent with no tools and the default iteration cap.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentV0(pub Agent);

impl<'a> Codec<'a> for AgentV0 {
    fn encode(&self, e: &mut Encoder) {
        let a = &self.0;
        a.id.encode(e);
        a.project_id.encode(e);
        a.name.encode(e);
        a.description.encode(e);
        a.instructions.encode(e);
        a.model.encode(e);
        a.dsl_content.encode(e);
        a.created_at.encode(e);
        a.updated_at.encode(e);
    }

    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        Ok(AgentV0(Agent {
            id: Codec::decode(d)?,
            project_id: Codec::decode(d)?,
            name: Codec::decode(d)?,
            description: Codec::decode(d)?,
            instructions: Codec::decode(d)?,
            model: Codec::decode(d)?,
            dsl_content: Codec::decode(d)?,
            created_at: Codec::decode(d)?,
            updated_at: Codec::decode(d)?,
            tools: Vec::new(),
            max_tool_iterations: DEFAULT_MAX_TOOL_ITERATIONS,
        }))
    }
}

codec_struct!(Tool {
    id,
    project_id,
    name,
    description,
    tool_type,
    parameters,
    config,
    created_at,
    updated_at,
});
codec_struct!(Feedback {
    id,
    project_id,
    session_id,
    message_id,
    author,
    rating,
    comment,
    created_at,
    updated_at,
});
codec_struct!(AgentVersion {
    project_id,
    agent_name,
    version,
    label,
    content_hash,
    agent,
    created_at,
    created_by,
});
codec_struct!(PinnedAgent {
    agent_name,
    version,
});
codec_struct!(Deployment {
    id,
    project_id,
    environment,
    status,
    label,
    description,
    endpoint_slug,
    entry_agent_name,
    manifest,
    model_overrides,
    created_at,
    created_by,
    activated_at,
    rolled_back_at,
    retired_at,
});
codec_struct!(Session {
    id,
    project_id,
    agent_id,
    agent_name,
    status,
    channel,
    message_count,
    token_count,
    created_at,
    last_activity_at,
    metadata,
    created_by_token,
});
codec_struct!(Secret {
    id,
    project_id,
    name,
    version,
    ciphertext,
    created_at,
    updated_at,
    expires_at,
});
codec_struct!(PublicKey {
    id,
    project_id,
    name,
    prefix,
    digest,
    allowed_origins,
    created_at,
});
codec_struct!(StreamEvent { id, event, data });
codec_struct!(TraceEvent {
    kind,
    span_id,
    parent_span_id,
    name,
    started_at,
    duration_ms,
    input_tokens,
    output_tokens,
    cost,
    data,
});
codec_struct!(Usage {
    input_tokens,
    output_tokens,
    total_tokens,
    latency_ms,
});

/// `id | role | content | tail | created_at`: the tail is a [`UsageTag`] and what it
/// announces. Messages without tool fields keep the older forms (tags 0 and 2; tag 1,
/// without latency, is only read), so their bytes did not change when tools came.
impl<'a> Codec<'a> for MessageRef<'a> {
    fn encode(&self, e: &mut Encoder) {
        self.id.encode(e);
        self.role.encode(e);
        self.content.encode(e);
        if self.tool_calls.is_some() || self.tool_call_id.is_some() {
            UsageTag::WithTools.encode(e);
            self.usage.encode(e);
            self.tool_calls.encode(e);
            self.tool_call_id.encode(e);
        } else if let Some(u) = self.usage {
            UsageTag::WithLatency.encode(e);
            u.encode(e);
        } else {
            UsageTag::Absent.encode(e);
        }
        self.created_at.encode(e);
    }

    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        let id = Codec::decode(d)?;
        let role = Codec::decode(d)?;
        let content = Codec::decode(d)?;
        let (mut tool_calls, mut tool_call_id) = (None, None);
        let usage = match UsageTag::decode(d)? {
            UsageTag::Absent => None,
            UsageTag::WithoutLatency => Some(Usage {
                input_tokens: d.varint()?,
                output_tokens: d.varint()?,
                total_tokens: d.varint()?,
                latency_ms: 0,
            }),
            UsageTag::WithLatency => Some(Usage::decode(d)?),
            UsageTag::WithTools => {
                let usage = Codec::decode(d)?;
                tool_calls = Codec::decode(d)?;
                tool_call_id = Codec::decode(d)?;
                usage
            }
        };
        Ok(MessageRef {
            id,
            role,
            content,
            usage,
            created_at: Codec::decode(d)?,
            tool_calls,
            tool_call_id,
        })
    }
}

/// The form of [`MessageRef`], owned.
impl Codec<'_> for Message {
    fn encode(&self, e: &mut Encoder) {
        self.view().encode(e)
    }

    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        MessageRef::decode(d).map(|m| m.to_message())
    }
}

/// A length-prefixed byte string holding the message's own encoding, so that replay copies
/// it into memory without re-encoding.
impl Codec<'_> for StoredMessage {
    fn encode(&self, e: &mut Encoder) {
        e.bytes(self.as_bytes())
    }

    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        StoredMessage::from_bytes(d.bytes()?)
    }
}
