//! The stored resources of ENDPOINTS.md as plain Rust structs, and their binary encoding.
//!
//! Responsible for: the fields storage keeps for each resource and how each struct is
//! written to and read from a payload. Timestamps are milliseconds since the Unix epoch.
//! Free-form JSON (session metadata) is kept as JSON text so that storage needs no JSON
//! library. Not responsible for: validation of field contents (the API does that), JSON
//! shapes of responses, or indexes (`state`).

use crate::codec::{DecodeError, Decoder, Encoder};

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

/// A user's role (CONVENTIONS.md section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every permission.
    Owner,
    /// All but `key:admin`.
    Developer,
    /// The `:read` permissions.
    Viewer,
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

/// The kind of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `abl_sk-...`
    User,
    /// `ak_...`
    Service,
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
}

/// Whether a session is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Open; counts toward the concurrency limit.
    Active,
    /// Ended by `DELETE`; history kept.
    Ended,
}

/// Where a session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A credential of the API.
    Api,
    /// A widget SDK token.
    Sdk,
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

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRole {
    /// The client.
    User,
    /// The agent.
    Assistant,
    /// A system message.
    System,
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

fn tag_err(what: &'static str, tag: u8) -> DecodeError {
    DecodeError::BadTag {
        what,
        tag: tag as u64,
    }
}

impl Limits {
    fn encode(&self, e: &mut Encoder) {
        e.varint(self.requests_per_second as u64);
        e.varint(self.burst as u64);
        e.varint(self.session_messages_per_minute as u64);
        e.varint(self.max_concurrent_sessions as u64);
    }

    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Limits {
            requests_per_second: d.varint_u32()?,
            burst: d.varint_u32()?,
            session_messages_per_minute: d.varint_u32()?,
            max_concurrent_sessions: d.varint_u32()?,
        })
    }
}

impl Tenant {
    /// Writes the tenant.
    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.id);
        e.str(&self.name);
        self.limits.encode(e);
        e.bool(self.disabled);
        e.varint(self.created_at);
        e.varint(self.updated_at);
    }

    /// Reads a tenant.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Tenant {
            id: d.string()?,
            name: d.string()?,
            limits: Limits::decode(d)?,
            disabled: d.bool()?,
            created_at: d.varint()?,
            updated_at: d.varint()?,
        })
    }
}

impl Role {
    fn to_u8(self) -> u8 {
        match self {
            Role::Owner => 0,
            Role::Developer => 1,
            Role::Viewer => 2,
        }
    }

    fn from_u8(b: u8) -> Result<Self, DecodeError> {
        match b {
            0 => Ok(Role::Owner),
            1 => Ok(Role::Developer),
            2 => Ok(Role::Viewer),
            t => Err(tag_err("role", t)),
        }
    }
}

impl User {
    /// Writes the user.
    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.id);
        e.str(&self.email);
        e.str(&self.password_hash);
        e.u8(self.role.to_u8());
        e.varint(self.created_at);
    }

    /// Reads a user.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(User {
            id: d.string()?,
            email: d.string()?,
            password_hash: d.string()?,
            role: Role::from_u8(d.u8()?)?,
            created_at: d.varint()?,
        })
    }
}

impl ApiKey {
    /// Writes the key.
    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.id);
        e.str(&self.name);
        e.raw(&self.digest);
        e.str(&self.prefix);
        e.str(&self.last4);
        e.u8(match self.kind {
            KeyKind::User => 0,
            KeyKind::Service => 1,
        });
        e.str_list(&self.scopes);
        e.str_list(&self.project_ids);
        e.opt_varint(self.expires_at);
        e.bool(self.revoked);
        e.varint(self.created_at);
    }

    /// Reads a key.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ApiKey {
            id: d.string()?,
            name: d.string()?,
            digest: d.digest()?,
            prefix: d.string()?,
            last4: d.string()?,
            kind: match d.u8()? {
                0 => KeyKind::User,
                1 => KeyKind::Service,
                t => return Err(tag_err("key kind", t)),
            },
            scopes: d.str_list()?,
            project_ids: d.str_list()?,
            expires_at: d.opt_varint()?,
            revoked: d.bool()?,
            created_at: d.varint()?,
        })
    }
}

impl Project {
    /// Writes the project.
    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.id);
        e.str(&self.name);
        e.str(&self.slug);
        e.opt_str(self.description.as_deref());
        e.opt_str(self.entry_agent_name.as_deref());
        e.varint(self.created_at);
        e.varint(self.updated_at);
    }

    /// Reads a project.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Project {
            id: d.string()?,
            name: d.string()?,
            slug: d.string()?,
            description: d.opt_string()?,
            entry_agent_name: d.opt_string()?,
            created_at: d.varint()?,
            updated_at: d.varint()?,
        })
    }
}

impl ModelConfig {
    fn encode(&self, e: &mut Encoder) {
        e.str(&self.provider);
        e.str(&self.model);
        e.opt_str(self.base_url.as_deref());
        e.opt_str(self.api_key_secret.as_deref());
        match self.temperature {
            Some(t) => {
                e.u8(1);
                e.f64(t);
            }
            None => e.u8(0),
        }
        e.opt_varint(self.max_tokens);
        match self.pricing {
            Some(p) => {
                e.u8(1);
                e.f64(p.input_per_mtok);
                e.f64(p.output_per_mtok);
            }
            None => e.u8(0),
        }
    }

    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(ModelConfig {
            provider: d.string()?,
            model: d.string()?,
            base_url: d.opt_string()?,
            api_key_secret: d.opt_string()?,
            temperature: if d.bool()? { Some(d.f64()?) } else { None },
            max_tokens: d.opt_varint()?,
            pricing: if d.bool()? {
                Some(Pricing {
                    input_per_mtok: d.f64()?,
                    output_per_mtok: d.f64()?,
                })
            } else {
                None
            },
        })
    }
}

impl Agent {
    /// Writes the agent.
    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.id);
        e.str(&self.project_id);
        e.str(&self.name);
        e.opt_str(self.description.as_deref());
        e.opt_str(self.instructions.as_deref());
        self.model.encode(e);
        e.opt_str(self.dsl_content.as_deref());
        e.varint(self.created_at);
        e.varint(self.updated_at);
    }

    /// Reads an agent.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Agent {
            id: d.string()?,
            project_id: d.string()?,
            name: d.string()?,
            description: d.opt_string()?,
            instructions: d.opt_string()?,
            model: ModelConfig::decode(d)?,
            dsl_content: d.opt_string()?,
            created_at: d.varint()?,
            updated_at: d.varint()?,
        })
    }
}

impl Session {
    /// Writes the session.
    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.id);
        e.str(&self.project_id);
        e.str(&self.agent_id);
        e.str(&self.agent_name);
        e.u8(match self.status {
            SessionStatus::Active => 0,
            SessionStatus::Ended => 1,
        });
        e.u8(match self.channel {
            Channel::Api => 0,
            Channel::Sdk => 1,
        });
        e.varint(self.message_count);
        e.varint(self.token_count);
        e.varint(self.created_at);
        e.varint(self.last_activity_at);
        e.str(&self.metadata);
        e.opt_str(self.created_by_token.as_deref());
    }

    /// Reads a session.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Session {
            id: d.string()?,
            project_id: d.string()?,
            agent_id: d.string()?,
            agent_name: d.string()?,
            status: match d.u8()? {
                0 => SessionStatus::Active,
                1 => SessionStatus::Ended,
                t => return Err(tag_err("session status", t)),
            },
            channel: match d.u8()? {
                0 => Channel::Api,
                1 => Channel::Sdk,
                t => return Err(tag_err("channel", t)),
            },
            message_count: d.varint()?,
            token_count: d.varint()?,
            created_at: d.varint()?,
            last_activity_at: d.varint()?,
            metadata: d.string()?,
            created_by_token: d.opt_string()?,
        })
    }
}

impl Message {
    /// Writes the message.
    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.id);
        e.u8(match self.role {
            MessageRole::User => 0,
            MessageRole::Assistant => 1,
            MessageRole::System => 2,
        });
        e.str(&self.content);
        match self.usage {
            Some(u) => {
                e.u8(2);
                e.varint(u.input_tokens);
                e.varint(u.output_tokens);
                e.varint(u.total_tokens);
                e.varint(u.latency_ms);
            }
            None => e.u8(0),
        }
        e.varint(self.created_at);
    }
}

impl<'a> MessageRef<'a> {
    /// Reads a message without copying its strings.
    pub fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        Ok(MessageRef {
            id: d.str()?,
            role: match d.u8()? {
                0 => MessageRole::User,
                1 => MessageRole::Assistant,
                2 => MessageRole::System,
                t => return Err(tag_err("message role", t)),
            },
            content: d.str()?,
            usage: match d.u8()? {
                0 => None,
                // 1: without latency (format written before latency was recorded).
                tag @ (1 | 2) => Some(Usage {
                    input_tokens: d.varint()?,
                    output_tokens: d.varint()?,
                    total_tokens: d.varint()?,
                    latency_ms: if tag == 2 { d.varint()? } else { 0 },
                }),
                t => return Err(tag_err("message usage", t)),
            },
            created_at: d.varint()?,
        })
    }
}

impl Secret {
    /// Writes the secret.
    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.id);
        e.str(&self.project_id);
        e.str(&self.name);
        e.varint(self.version as u64);
        e.bytes(&self.ciphertext);
        e.varint(self.created_at);
        e.varint(self.updated_at);
        e.opt_varint(self.expires_at);
    }

    /// Reads a secret.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Secret {
            id: d.string()?,
            project_id: d.string()?,
            name: d.string()?,
            version: d.varint_u32()?,
            ciphertext: d.bytes()?.to_vec(),
            created_at: d.varint()?,
            updated_at: d.varint()?,
            expires_at: d.opt_varint()?,
        })
    }
}

impl PublicKey {
    /// Writes the public key.
    pub fn encode(&self, e: &mut Encoder) {
        e.str(&self.id);
        e.str(&self.project_id);
        e.str(&self.name);
        e.str(&self.prefix);
        e.raw(&self.digest);
        e.str_list(&self.allowed_origins);
        e.varint(self.created_at);
    }

    /// Reads a public key.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(PublicKey {
            id: d.string()?,
            project_id: d.string()?,
            name: d.string()?,
            prefix: d.string()?,
            digest: d.digest()?,
            allowed_origins: d.str_list()?,
            created_at: d.varint()?,
        })
    }
}

impl StreamEvent {
    /// Writes the event.
    pub fn encode(&self, e: &mut Encoder) {
        e.varint(self.id);
        e.str(&self.event);
        e.str(&self.data);
    }

    /// Reads an event.
    pub fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(StreamEvent {
            id: d.varint()?,
            event: d.string()?,
            data: d.string()?,
        })
    }
}
