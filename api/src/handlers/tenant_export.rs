//! `GET /api/v1/admin/tenants/:tenantId/export`: all of a tenant's data in one JSON
//! document, for an operator (a tenant leaving, a support case, a data request).
//!
//! Responsible for: the document's shape. Each project entry repeats the project export's
//! `manifest`, `agents` and `tools` (`transfer::project_document`), so it can be posted to a project
//! import as it is, and adds what a project export leaves out: the project itself, its
//! sessions with their messages, its secrets and widget public keys. Credentials never
//! leave: users without password hashes, API keys and public keys as metadata without
//! digests, secrets as names and metadata without values or ciphertext (the views of
//! `view` have none of them). Resumable streams are not exported: they are a replay buffer
//! of recent SSE events that expires, not data the tenant owns for long.
//! Not responsible for: consistency across the document: each list is read under its own
//! read lock, so a write landing during the export may show in one list and not another.

use halyard_engine::Response;
use halyard_storage::{Backend, Page, Project, SessionFilter};
use serde_json::{json, Value};

use super::transfer::{project_document, FORMAT_VERSION};
use super::Call;
use crate::error::{ApiError, ApiResult};
use crate::{reply, time, view};

/// `GET /api/v1/admin/tenants/:tenantId/export`.
pub fn export(c: &Call<'_>) -> ApiResult<Response> {
    let id = c.param(0);
    let store = &*c.api.store;
    let tenant = store
        .tenant(id)
        .ok_or_else(|| ApiError::NotFound(format!("Tenant not found: {id}")))?;
    let now = time::now_ms();
    let users: Vec<Value> = store
        .users(id, Page::ALL)
        .items
        .iter()
        .map(view::user)
        .collect();
    let keys: Vec<Value> = store
        .api_keys(id, Page::ALL)
        .items
        .iter()
        .map(view::api_key)
        .collect();
    let projects: Vec<Value> = store
        .projects(id, Page::ALL)
        .items
        .iter()
        .map(|p| project_entry(store, id, p, now))
        .collect();
    Ok(reply::ok(vec![
        (
            "manifest",
            json!({
                "tenant": view::tenant(&tenant),
                "exportedAt": time::iso(now),
                "version": FORMAT_VERSION,
            }),
        ),
        ("users", Value::Array(users)),
        ("apiKeys", Value::Array(keys)),
        ("projects", Value::Array(projects)),
    ]))
}

/// One project: its export document, the project, sessions (oldest first, each with its
/// messages), secrets' metadata and public keys' metadata.
fn project_entry(store: &dyn Backend, tenant: &str, p: &Project, now: u64) -> Value {
    let doc = project_document(store, tenant, p, now);
    let mut sessions = store
        .sessions(tenant, &p.id, &SessionFilter::default(), Page::ALL)
        .items;
    sessions.reverse();
    let sessions: Vec<Value> = sessions
        .iter()
        .map(|s| {
            let mut out = Vec::new();
            view::write_session(&mut out, s);
            let mut v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
            let messages = store
                .messages(tenant, &p.id, &s.id, Page::ALL)
                .map(|l| l.items.iter().map(view::message).collect::<Vec<_>>())
                .unwrap_or_default();
            if let Value::Object(map) = &mut v {
                map.insert("messages".into(), Value::Array(messages));
            }
            v
        })
        .collect();
    let secrets: Vec<Value> = store
        .secrets(tenant, &p.id, Page::ALL)
        .items
        .iter()
        .map(view::secret)
        .collect();
    let public_keys: Vec<Value> = store
        .public_keys(tenant, &p.id)
        .iter()
        .map(view::public_key)
        .collect();
    json!({
        "manifest": doc.manifest,
        "agents": doc.agents,
        "tools": doc.tools,
        "versions": doc.versions,
        "deployments": doc.deployments,
        "project": view::project(p),
        "sessions": sessions,
        "secrets": secrets,
        "publicKeys": public_keys,
    })
}
