//! What each route's request body and query may hold, as JSON Schema, for the OpenAPI
//! document.
//!
//! Responsible for stating the bounds the handlers check (`body::Fields`: required fields,
//! string lengths, number ranges, names' patterns), so that a schema-driven client such as
//! schemathesis sends bodies that reach the handlers' logic rather than only their
//! validation. Not responsible for the checks themselves: the handlers stay the authority,
//! and `tests/api_conventions.rs` posts each schema's smallest valid body to the server.

use serde_json::{json, Value};

use crate::handlers::{MAX_MESSAGE, MAX_SECRET_VALUE};
use crate::route::RouteId;
use crate::scope;

/// A string of at most `max` characters.
fn text(max: usize) -> Value {
    json!({"type": "string", "maxLength": max})
}

/// A string of 1 to `max` characters.
fn nonempty(max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max})
}

/// A string of at most `max` characters, or null (a PATCH that clears the field).
fn clearable(max: usize) -> Value {
    json!({"type": ["string", "null"], "maxLength": max})
}

fn whole(min: u64, max: u64) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max})
}

fn number(min: f64, max: f64) -> Value {
    json!({"type": "number", "minimum": min, "maximum": max})
}

fn strings(max: usize, max_items: usize) -> Value {
    json!({"type": "array", "items": text(max), "maxItems": max_items})
}

/// What `body::is_agent_name` accepts.
const AGENT_NAME: &str = "^[a-z0-9-]{1,64}$";

/// An agent name.
fn agent_name() -> Value {
    json!({"type": "string", "pattern": AGENT_NAME})
}

/// An RFC 3339 date-time in the future (the handlers refuse a past one).
fn future_time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

fn tenant_limits() -> Value {
    object(
        &[],
        json!({
            "requestsPerSecond": whole(1, 1_000_000),
            "burst": whole(1, 10_000_000),
            "sessionMessagesPerMinute": whole(1, 1_000_000),
            "maxConcurrentSessions": whole(1, 100_000_000),
        }),
    )
}

fn agent(name_required: bool) -> Value {
    let mut model = object(
        &[],
        json!({
            "provider": {"enum": ["echo", "openai"]},
            "model": nonempty(128),
            "baseUrl": {"type": "string", "pattern": "^https?://", "maxLength": 2048},
            "apiKeySecret": text(128),
            "temperature": number(0.0, 2.0),
            "maxTokens": whole(1, 1_000_000),
            "pricing": object(&[], json!({
                "inputPerMTok": number(0.0, 1e9),
                "outputPerMTok": number(0.0, 1e9),
            })),
        }),
    );
    // An echo agent defaults its model name; an openai one must name it.
    model["if"] =
        json!({"required": ["provider"], "properties": {"provider": {"const": "openai"}}});
    model["then"] = json!({"required": ["model"]});
    object(
        if name_required { &["name"] } else { &[] },
        json!({
            "name": agent_name(),
            "description": text(2000),
            "instructions": text(100_000),
            "model": model,
            "dslContent": text(1_000_000),
        }),
    )
}

/// The fields of `/chat/agent` and `/chat/agent/stream`.
fn agent_turn() -> Value {
    object(
        &["projectId", "message"],
        json!({
            "projectId": nonempty(64),
            "message": nonempty(MAX_MESSAGE),
            "sessionId": text(64),
            "agentId": text(64),
            "metadata": {"type": "object"},
            "sessionMetadata": {"type": "object"},
            "attachmentIds": strings(64, 100),
        }),
    )
}

/// The fields of a direct model call (`/chat/stream`'s second form, `/chat/complete`).
fn model_call(with_model_id: bool) -> Value {
    let message = object(
        &["role", "content"],
        json!({
            "role": {"enum": ["system", "user", "assistant"]},
            "content": text(MAX_MESSAGE),
        }),
    );
    let mut props = json!({
        "projectId": nonempty(64),
        "messages": {"type": "array", "items": message, "minItems": 1, "maxItems": 1000},
        "agentId": text(64),
        "temperature": number(0.0, 2.0),
        "maxTokens": whole(1, 1_000_000),
    });
    if with_model_id {
        props["modelId"] = text(128);
    }
    object(&["projectId", "messages"], props)
}

fn session_turn() -> Value {
    object(
        &["sessionId", "message"],
        json!({"sessionId": nonempty(64), "message": nonempty(MAX_MESSAGE)}),
    )
}

/// The request body's schema for `id`; a plain object where the body is free-form (an
/// export document) or unused.
pub(super) fn request(id: RouteId) -> Value {
    use RouteId::*;
    match id {
        AdminTenantCreate => {
            let mut o = object(
                &["name"],
                json!({
                    "name": nonempty(128),
                    "limits": tenant_limits(),
                    "ownerEmail": {"type": "string", "pattern": "@", "maxLength": 254},
                    "ownerPassword": {"type": "string", "minLength": 12, "maxLength": 1024},
                }),
            );
            o["dependentRequired"] = json!({"ownerEmail": ["ownerPassword"]});
            o
        }
        AdminTenantPatch => object(
            &[],
            json!({"name": text(128), "limits": tenant_limits(), "disabled": {"type": "boolean"}}),
        ),
        Login => object(
            &["email", "password"],
            json!({"email": nonempty(254), "password": nonempty(1024), "tenantId": text(64)}),
        ),
        UserCreate => object(
            &["email", "password"],
            json!({
                "email": {"type": "string", "pattern": "@", "maxLength": 254},
                "password": {"type": "string", "minLength": 12, "maxLength": 1024},
                "role": {"enum": ["owner", "developer", "viewer"]},
            }),
        ),
        KeyCreate => object(
            &["name"],
            json!({
                "name": nonempty(128),
                "kind": {"enum": ["user", "service"]},
                "scopes": {
                    "type": "array",
                    "items": {"enum": scope::ALL.iter().map(|(_, name)| *name).collect::<Vec<_>>()},
                    "maxItems": 16,
                },
                "projectIds": strings(64, 100),
                "expiresAt": future_time(),
            }),
        ),
        ProjectCreate => object(
            &["name"],
            json!({"name": nonempty(128), "description": text(2000), "entryAgentName": agent_name()}),
        ),
        ProjectPatch => object(
            &[],
            json!({
                "name": text(128),
                "description": clearable(2000),
                "entryAgentName": {"type": ["string", "null"], "pattern": AGENT_NAME},
            }),
        ),
        AgentCreate => agent(true),
        AgentPut => agent(false),
        AgentDsl => object(&["dslContent"], json!({"dslContent": nonempty(1_000_000)})),
        SessionCreate => object(
            &[],
            json!({"agentId": text(64), "agentName": text(64), "metadata": {"type": "object"}}),
        ),
        PublicKeyCreate => object(
            &["name", "allowedOrigins"],
            json!({
                "name": nonempty(128),
                // `body::is_origin`: scheme://host[:port], no path.
                "allowedOrigins": {
                    "type": "array",
                    "items": {"type": "string", "pattern": "^https?://[^/?# ]{1,253}$"},
                    "minItems": 1,
                    "maxItems": 50,
                },
                "permissions": object(&[], json!({"chat": {"type": "boolean"}})),
            }),
        ),
        SdkInit => object(
            &["projectId"],
            json!({
                "projectId": nonempty(64),
                "userContext": object(&[], json!({"userId": text(256)})),
            }),
        ),
        SecretCreate => object(
            &["name", "value"],
            json!({
                "name": {"type": "string", "pattern": "^[A-Z0-9_]{1,128}$"},
                "value": nonempty(MAX_SECRET_VALUE),
                "expiresAt": future_time(),
            }),
        ),
        SecretRotate => object(&["value"], json!({"value": nonempty(MAX_SECRET_VALUE)})),
        ChatAgent | ChatAgentStream => agent_turn(),
        ChatSend => session_turn(),
        ChatStream => json!({"anyOf": [session_turn(), model_call(false)]}),
        ChatComplete => model_call(true),
        _ => json!({"type": "object"}),
    }
}

/// Query parameters beyond pagination, for the routes that read them.
pub(super) fn query(id: RouteId) -> Vec<Value> {
    let param = |name: &str, required: bool, schema: Value| json!({"name": name, "in": "query", "required": required, "schema": schema});
    match id {
        RouteId::SessionList => vec![
            param("status", false, json!({"enum": ["active", "ended"]})),
            param("channel", false, json!({"enum": ["api", "sdk"]})),
        ],
        RouteId::ChatUsage => vec![
            param("projectId", true, nonempty(64)),
            param(
                "startDate",
                false,
                json!({"type": "string", "format": "date"}),
            ),
            param(
                "endDate",
                false,
                json!({"type": "string", "format": "date"}),
            ),
            param("groupBy", false, json!({"enum": ["model"]})),
        ],
        _ => Vec::new(),
    }
}
