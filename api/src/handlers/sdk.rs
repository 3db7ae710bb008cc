//! Widget SDK routes: public keys of a project, and `sdk/init`, `sdk/refresh`,
//! `sdk/config` for pages embedding the widget.

use halyard_engine::{Reply, Response};
use halyard_storage::{ids, DeploymentStatus, Environment, Mutation, Project, PublicKey};
use serde_json::{json, Value};

use super::Call;
use crate::body::{Field, Fields, Item, Text, ORIGIN};
use crate::error::{ApiError, ApiResult};
use crate::sdk_token::{Grant, TTL_SECS};
use crate::{reply, time, tokens, view};

/// What the key's pages may do: declared for clients but not read, as every key's pages
/// may chat.
const PERMISSIONS: &[Field] = &[Field::bool("chat")];

/// The body of `POST /api/projects/:pid/sdk-public-keys`.
pub(super) const KEY_BODY: &[Field] = &[
    Field::text("name", 1, 128).required(),
    Field::list(
        "allowedOrigins",
        Item::Text(Text::new(1, 253).format(ORIGIN)),
        1,
        50,
    )
    .required(),
    Field::object("permissions", PERMISSIONS),
];

/// Who the page's visitor is, as the page says.
const USER_CONTEXT: &[Field] = &[Field::text("userId", 0, 256)];

/// The body of `POST /api/v1/sdk/init`.
pub(super) const INIT_BODY: &[Field] = &[
    Field::text("projectId", 1, 64).required(),
    Field::object("userContext", USER_CONTEXT),
];

/// `POST /api/projects/:pid/sdk-public-keys`.
pub fn create_key(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let body = c.body()?;
    let mut f = Fields::of(&body, KEY_BODY)?;
    let name = f.str("name");
    let origins = f.strings("allowedOrigins");
    f.finish()?;
    let key = tokens::mint(tokens::PUBLIC_KEY);
    let record = PublicKey {
        id: ids::new_id(ids::PUBLIC_KEY),
        project_id: project.id,
        name: name.unwrap_or_default().to_string(),
        prefix: tokens::visible_prefix(&key, tokens::PUBLIC_KEY),
        digest: tokens::digest(&key),
        allowed_origins: origins
            .unwrap_or_default()
            .into_iter()
            .map(String::from)
            .collect(),
        created_at: time::now_ms(),
    };
    let resp = reply::created(vec![
        ("key", view::public_key(&record)),
        ("publicKey", key.into()),
    ]);
    c.commit(vec![Mutation::PutPublicKey(record)], resp)
}

/// `GET /api/projects/:pid/sdk-public-keys`.
pub fn list_keys(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let keys: Vec<Value> = c
        .api
        .store
        .public_keys(c.tenant()?, &project.id)
        .iter()
        .map(view::public_key)
        .collect();
    Ok(reply::ok(vec![("keys", Value::Array(keys))]))
}

/// `DELETE /api/projects/:pid/sdk-public-keys/:keyId`: its SDK tokens stop working too.
pub fn delete_key(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let id = c.param(1);
    let exists = c
        .api
        .store
        .public_keys(c.tenant()?, &project.id)
        .iter()
        .any(|k| k.id == id);
    if !exists {
        return Err(ApiError::NotFound(format!("Public key not found: {id}")));
    }
    let m = Mutation::DeletePublicKey {
        project_id: project.id,
        id: id.to_string(),
    };
    c.commit(vec![m], crate::success())
}

/// Each environment's stream route for the widget: the deployment-scoped stream of the
/// active deployment's entry agent, or `null` when the environment has none (the widget then
/// uses `/api/v1/chat/agent/stream` on the project's current agents).
fn deployment_routes(c: &Call<'_>, tenant: &str, project: &Project) -> Value {
    let deps = c.api.store.deployments(tenant, &project.id);
    let mut routes = serde_json::Map::new();
    for env in Environment::ALL {
        let path = deps
            .iter()
            .find(|d| d.environment == *env && d.status == DeploymentStatus::Active)
            .map(|d| {
                let agent = &d.entry_agent_name;
                format!(
                    "/api/v1/project/{}/{}/agent/{agent}/stream",
                    project.slug,
                    env.as_str()
                )
            });
        routes.insert(env.as_str().into(), path.into());
    }
    Value::Object(routes)
}

fn widget_config(c: &Call<'_>, tenant: &str, project: &Project) -> Value {
    let agent_name = project.entry_agent_name.clone();
    let greeting = match &agent_name {
        Some(a) => format!("Hi! I'm {a}. How can I help?"),
        None => "Hi! How can I help?".to_string(),
    };
    json!({
        "projectId": project.id,
        "projectName": project.name,
        "agentName": agent_name,
        "greeting": greeting,
        "theme": {},
        "features": {"chat": true, "voice": false},
        "deployments": deployment_routes(c, tenant, project),
    })
}

/// Mints a token for `grant` under a new token id (two tokens issued within the same
/// second are still different tokens) and answers with it.
fn token_reply(c: &Call<'_>, grant: &Grant, project: &Project) -> Response {
    let grant = Grant {
        token_id: ids::new_id("tok_"),
        ..grant.clone()
    };
    let grant = &grant;
    let token = c.api.verifiers.sdk.mint(grant);
    reply::ok(vec![
        ("token", token.into()),
        ("expiresIn", TTL_SECS.into()),
        ("tenantId", grant.tenant.clone().into()),
        ("projectId", grant.project.clone().into()),
        ("permissions", json!(["session:execute", "session:read"])),
        ("widgetConfig", widget_config(c, &grant.tenant, project)),
    ])
}

/// `POST /api/v1/sdk/init`: a public key and an allowed origin buy an SDK token.
pub fn init(c: &Call<'_>) -> ApiResult<Response> {
    let p = c.principal()?;
    let pk = p
        .public_key
        .as_ref()
        .ok_or(ApiError::Unauthorized("Missing or invalid credential"))?;
    let body = c.body()?;
    let mut f = Fields::of(&body, INIT_BODY)?;
    let project_id = f.str("projectId");
    f.nested("userContext", |u| {
        u.str("userId");
    });
    f.finish()?;
    let project_id = project_id.unwrap_or_default();
    if project_id != pk.project_id {
        return Err(ApiError::NotFound(format!(
            "Project not found: {project_id}"
        )));
    }
    let project = c.visible_project(project_id)?;
    let origin = c
        .req
        .head
        .header_str("origin")
        .unwrap_or("")
        .trim()
        .to_string();
    let grant = Grant {
        tenant: p.tenant.clone(),
        project: project.id.clone(),
        origin,
        public_key: pk.id.clone(),
        id: ids::new_id("tok_"),
        token_id: String::new(),
        exp: time::now_ms() / 1000 + TTL_SECS,
    };
    Ok(token_reply(c, &grant, &project))
}

/// `POST /api/v1/sdk/refresh`: a new token with the same grant; the old one stays valid
/// until it expires.
pub fn refresh(c: &Call<'_>) -> ApiResult<Response> {
    let p = c.principal()?;
    let mut grant = p
        .sdk
        .clone()
        .ok_or(ApiError::Unauthorized("Missing or invalid credential"))?;
    let project = c.visible_project(&grant.project.clone())?;
    grant.exp = time::now_ms() / 1000 + TTL_SECS;
    Ok(token_reply(c, &grant, &project))
}

/// `GET /api/v1/sdk/config/:projectId`.
pub fn config(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let config = widget_config(c, c.tenant()?, &project);
    Ok(reply::ok(vec![("config", config)]))
}
