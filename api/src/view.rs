//! JSON shapes of the stored resources, as ENDPOINTS.md names their fields.
//!
//! Responsible for: turning model values into response objects (camelCase fields, RFC 3339
//! times), and never including a secret: key digests, password hashes and secret
//! ciphertexts have no view. Not responsible for: the envelopes (see `reply`).

use halyard_storage::{
    Agent, ApiKey, Channel, KeyKind, Message, MessageRole, Project, PublicKey, Role, Secret,
    Session, SessionStatus, Tenant, Usage, User,
};
use serde_json::{json, Value};

use crate::time::iso;

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

/// An agent.
pub fn agent(a: &Agent) -> Value {
    let m = &a.model;
    let pricing = m
        .pricing
        .map(|p| json!({"inputPerMTok": p.input_per_mtok, "outputPerMTok": p.output_per_mtok}));
    json!({
        "id": a.id,
        "projectId": a.project_id,
        "name": a.name,
        "description": a.description,
        "instructions": a.instructions,
        "model": {
            "provider": m.provider,
            "model": m.model,
            "baseUrl": m.base_url,
            "apiKeySecret": m.api_key_secret,
            "temperature": m.temperature,
            "maxTokens": m.max_tokens,
            "pricing": pricing,
        },
        "dslContent": a.dsl_content,
        "createdAt": iso(a.created_at),
        "updatedAt": iso(a.updated_at),
    })
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

/// A session.
pub fn session(s: &Session) -> Value {
    let metadata: Value = serde_json::from_str(&s.metadata).unwrap_or_else(|_| json!({}));
    json!({
        "id": s.id,
        "projectId": s.project_id,
        "agentId": s.agent_id,
        "agentName": s.agent_name,
        "status": status(s.status),
        "channel": channel(s.channel),
        "messageCount": s.message_count,
        "tokenCount": s.token_count,
        "metadata": metadata,
        "createdAt": iso(s.created_at),
        "lastActivityAt": iso(s.last_activity_at),
    })
}

/// Token usage.
pub fn usage(u: &Usage) -> Value {
    json!({"inputTokens": u.input_tokens, "outputTokens": u.output_tokens, "totalTokens": u.total_tokens})
}

/// A message.
pub fn message(m: &Message) -> Value {
    json!({
        "id": m.id,
        "role": match m.role {
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
            MessageRole::System => "system",
        },
        "content": m.content,
        "usage": m.usage.as_ref().map(usage),
        "createdAt": iso(m.created_at),
    })
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
