//! JSON shapes of the stored resources, as ENDPOINTS.md names their fields.
//!
//! Responsible for: turning model values into response objects (camelCase fields, RFC 3339
//! times), and never including a secret: key digests, password hashes and secret
//! ciphertexts have no view. Not responsible for: the envelopes (see `reply`).

use halyard_storage::{
    Agent, ApiKey, Channel, KeyKind, Message, MessageRole, Project, PublicKey, Role, Secret,
    Session, SessionStatus, Tenant, Tool, ToolType, Usage, User,
};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::emit::Object;
use crate::time::{iso, Iso};

fn opt_time(ms: Option<u64>) -> Value {
    ms.map_or(Value::Null, |m| Value::String(iso(m)))
}

/// A role's name.
pub fn role(r: Role) -> &'static str {
    match r {
        Role::Owner => "owner",
        Role::Developer => "developer",
        Role::Viewer => "viewer",
    }
}

/// A tenant.
pub fn tenant(t: &Tenant) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "limits": {
            "requestsPerSecond": t.limits.requests_per_second,
            "burst": t.limits.burst,
            "sessionMessagesPerMinute": t.limits.session_messages_per_minute,
            "maxConcurrentSessions": t.limits.max_concurrent_sessions,
        },
        "disabled": t.disabled,
        "createdAt": iso(t.created_at),
        "updatedAt": iso(t.updated_at),
    })
}

/// A user (never the password hash).
pub fn user(u: &User) -> Value {
    json!({"id": u.id, "email": u.email, "role": role(u.role), "createdAt": iso(u.created_at)})
}

/// An API key's metadata (never the key or its digest).
pub fn api_key(k: &ApiKey) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "kind": match k.kind { KeyKind::User => "user", KeyKind::Service => "service" },
        "prefix": k.prefix,
        "last4": k.last4,
        "scopes": k.scopes,
        "projectIds": k.project_ids,
        "expiresAt": opt_time(k.expires_at),
        "revoked": k.revoked,
        "createdAt": iso(k.created_at),
    })
}

/// A project.
pub fn project(p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "slug": p.slug,
        "description": p.description,
        "entryAgentName": p.entry_agent_name,
        "createdAt": iso(p.created_at),
        "updatedAt": iso(p.updated_at),
    })
}

/// An agent, serialized straight from the stored value.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView<'a> {
    id: &'a str,
    project_id: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    instructions: Option<&'a str>,
    model: ModelView<'a>,
    dsl_content: Option<&'a str>,
    tools: &'a [String],
    max_tool_iterations: u32,
    created_at: Iso,
    updated_at: Iso,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelView<'a> {
    provider: &'a str,
    model: &'a str,
    base_url: Option<&'a str>,
    api_key_secret: Option<&'a str>,
    temperature: Option<f64>,
    max_tokens: Option<u64>,
    pricing: Option<PricingView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PricingView {
    #[serde(rename = "inputPerMTok")]
    input_per_mtok: f64,
    #[serde(rename = "outputPerMTok")]
    output_per_mtok: f64,
}

impl<'a> AgentView<'a> {
    /// The view of `a`.
    pub fn of(a: &'a Agent) -> Self {
        let m = &a.model;
        AgentView {
            id: &a.id,
            project_id: &a.project_id,
            name: &a.name,
            description: a.description.as_deref(),
            instructions: a.instructions.as_deref(),
            model: ModelView {
                provider: &m.provider,
                model: &m.model,
                base_url: m.base_url.as_deref(),
                api_key_secret: m.api_key_secret.as_deref(),
                temperature: m.temperature,
                max_tokens: m.max_tokens,
                pricing: m.pricing.map(|p| PricingView {
                    input_per_mtok: p.input_per_mtok,
                    output_per_mtok: p.output_per_mtok,
                }),
            },
            dsl_content: a.dsl_content.as_deref(),
            tools: &a.tools,
            max_tool_iterations: a.max_tool_iterations,
            created_at: Iso(a.created_at),
            updated_at: Iso(a.updated_at),
        }
    }
}

/// An agent as a JSON value.
pub fn agent(a: &Agent) -> Value {
    serde_json::to_value(AgentView::of(a)).unwrap_or(Value::Null)
}

fn status(s: SessionStatus) -> &'static str {
    match s {
        SessionStatus::Active => "active",
        SessionStatus::Ended => "ended",
    }
}

/// A channel's name.
pub fn channel(c: Channel) -> &'static str {
    match c {
        Channel::Api => "api",
        Channel::Sdk => "sdk",
    }
}

/// Writes a session as a JSON object straight from the stored value. Its metadata is stored
/// as the JSON text a client sent, checked then; it is checked again here, as bytes read
/// from disk, and written as it is (`null` if it does not parse).
pub fn write_session(out: &mut Vec<u8>, s: &Session) {
    let metadata: Option<&RawValue> = serde_json::from_str(&s.metadata).ok();
    Object::begin(out)
        .str("id", &s.id)
        .str("projectId", &s.project_id)
        .str("agentId", &s.agent_id)
        .str("agentName", &s.agent_name)
        .str("status", status(s.status))
        .str("channel", channel(s.channel))
        .u64("messageCount", s.message_count)
        .u64("tokenCount", s.token_count)
        .raw("metadata", metadata)
        .time("createdAt", s.created_at)
        .time("lastActivityAt", s.last_activity_at)
        .end();
}

/// Token usage.
pub fn usage(u: &Usage) -> Value {
    json!({"inputTokens": u.input_tokens, "outputTokens": u.output_tokens, "totalTokens": u.total_tokens})
}

/// A message.
pub fn message(m: &Message) -> Value {
    let mut v = json!({
        "id": m.id,
        "role": match m.role {
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
            MessageRole::System => "system",
            MessageRole::Tool => "tool",
        },
        "content": m.content,
        "usage": m.usage.as_ref().map(usage),
        "createdAt": iso(m.created_at),
    });
    // Only on the messages of a turn that called tools, so other messages keep their shape.
    if let Some(calls) = m.tool_calls.as_deref() {
        v["toolCalls"] = serde_json::from_str(calls).unwrap_or(Value::Null);
    }
    if let Some(id) = &m.tool_call_id {
        v["toolCallId"] = id.as_str().into();
    }
    v
}

/// A secret's metadata (never its value).
pub fn secret(s: &Secret) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "version": s.version,
        "createdAt": iso(s.created_at),
        "updatedAt": iso(s.updated_at),
        "expiresAt": opt_time(s.expires_at),
    })
}

/// A tool: its fields, its parsed parameters schema and the settings of its type.
pub fn tool(t: &Tool) -> Value {
    let mut v = json!({
        "id": t.id,
        "projectId": t.project_id,
        "name": t.name,
        "description": t.description,
        "toolType": match t.tool_type {
            ToolType::Http => "http",
            ToolType::Mcp => "mcp",
        },
        "parameters": serde_json::from_str::<Value>(&t.parameters).unwrap_or(Value::Null),
        "createdAt": iso(t.created_at),
        "updatedAt": iso(t.updated_at),
    });
    if let (Value::Object(out), Ok(Value::Object(config))) =
        (&mut v, serde_json::from_str::<Value>(&t.config))
    {
        out.extend(config);
    }
    v
}

/// A widget public key's metadata (never the key).
pub fn public_key(k: &PublicKey) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "keyPrefix": k.prefix,
        "allowedOrigins": k.allowed_origins,
        "createdAt": iso(k.created_at),
    })
}
