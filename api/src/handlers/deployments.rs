//! Deployment routes (`/api/projects/:pid/deployments`): pinned agent versions serving one
//! environment of a project.
//!
//! At most one deployment of an environment is `active`; creating or promoting one
//! supersedes the one before it in the same commit. Rollback goes back to the deployment
//! that was active before the current one (never to one that was itself rolled back);
//! retiring withdraws a deployment for good.

use halyard_engine::{Reply, Response};
use halyard_storage::{
    ids, Agent, AgentVersion, Deployment, DeploymentStatus, Environment, Mutation, PinnedAgent,
    Project,
};
use serde_json::{json, Map, Value};

use super::projects::page_of;
use super::versions;
use super::Call;
use crate::body::{Field, Fields, AGENT_NAME};
use crate::error::{ApiError, ApiResult};
use crate::{reply, time};

/// The environments' names, for the bodies and the query.
pub const ENVIRONMENTS: &[&str] = &["dev", "staging", "production"];
/// The statuses' names, for the list filter.
pub const STATUSES: &[&str] = &["active", "superseded", "retired"];
/// The most agents a deployment pins.
const MAX_MANIFEST: usize = 64;

const MODEL_OVERRIDES: &[Field] = &[
    Field::text("model", 1, 128),
    super::agents::TEMPERATURE,
    super::agents::MAX_TOKENS,
];

/// The body of `POST /api/projects/:pid/deployments`.
pub(super) const BODY: &[Field] = &[
    Field::one_of("environment", ENVIRONMENTS).required(),
    Field::manifest("agentVersionManifest", MAX_MANIFEST).required(),
    Field::text("entryAgentName", 1, 64)
        .format(AGENT_NAME)
        .required(),
    Field::text("label", 0, 128),
    Field::text("description", 0, 2000),
    Field::object("modelOverrides", MODEL_OVERRIDES),
];

/// The body of `POST .../deployments/:depId/promote`.
pub(super) const PROMOTE_BODY: &[Field] =
    &[Field::one_of("targetEnvironment", ENVIRONMENTS).required()];

/// A deployment as the API shows it.
pub fn view(d: &Deployment) -> Value {
    let manifest: Map<String, Value> = d
        .manifest
        .iter()
        .map(|p| (p.agent_name.clone(), p.version.into()))
        .collect();
    let overrides = d
        .model_overrides
        .as_deref()
        .and_then(|t| serde_json::from_str::<Value>(t).ok());
    json!({
        "id": d.id,
        "projectId": d.project_id,
        "environment": d.environment.as_str(),
        "status": d.status.as_str(),
        "label": d.label,
        "description": d.description,
        "endpointSlug": d.endpoint_slug,
        "entryAgentName": d.entry_agent_name,
        "agentVersionManifest": manifest,
        "modelOverrides": overrides,
        "createdAt": time::iso(d.created_at),
        "createdBy": d.created_by,
        "activatedAt": time::iso(d.activated_at),
        "rolledBackAt": d.rolled_back_at.map(time::iso),
        "retiredAt": d.retired_at.map(time::iso),
    })
}

/// The deployment named by capture 1 in `project`.
fn find(c: &Call<'_>, project: &Project) -> ApiResult<Deployment> {
    let id = c.param(1);
    c.api
        .store
        .deployment(c.tenant()?, &project.id, id)
        .ok_or_else(|| ApiError::NotFound(format!("Deployment not found: {id}")))
}

/// The active deployment of `env` in `project`, if any.
pub fn active(c: &Call<'_>, project_id: &str, env: Environment) -> ApiResult<Option<Deployment>> {
    let all = c.api.store.deployments(c.tenant()?, project_id);
    Ok(all
        .into_iter()
        .find(|d| d.environment == env && d.status == DeploymentStatus::Active))
}

/// The active deployments of `project` that pin an agent named `name`.
pub fn users_of(c: &Call<'_>, project_id: &str, name: &str) -> ApiResult<Vec<Deployment>> {
    let all = c.api.store.deployments(c.tenant()?, project_id);
    Ok(all
        .into_iter()
        .filter(|d| d.status == DeploymentStatus::Active)
        .filter(|d| d.manifest.iter().any(|p| p.agent_name == name))
        .collect())
}

/// The pinned versions of a manifest (`None`: `auto`, the agent as it is now), and the
/// versions `auto` adds (the latest version is reused when it holds the agent's current
/// content). An agent or version that does not exist is `404`, as elsewhere.
fn pin(
    c: &Call<'_>,
    project: &Project,
    wanted: Vec<(String, Option<u32>)>,
    now: u64,
) -> ApiResult<(Vec<PinnedAgent>, Vec<AgentVersion>)> {
    let tenant = c.tenant()?;
    let store = &c.api.store;
    let (mut pinned, mut new) = (Vec::new(), Vec::new());
    for (name, wanted) in wanted {
        let version = match wanted {
            Some(n) => {
                if store.agent_version(tenant, &project.id, &name, n).is_none() {
                    return Err(ApiError::NotFound(format!("Version not found: {name} {n}")));
                }
                n
            }
            None => {
                let agent = store
                    .agent_by_name(tenant, &project.id, &name)
                    .ok_or_else(|| ApiError::NotFound(format!("Agent not found: {name}")))?;
                match latest_alike(c, &agent)? {
                    Some(n) => n,
                    None => {
                        let v = versions::snapshot(c, &agent, None, now)?;
                        let n = v.version;
                        new.push(v);
                        n
                    }
                }
            }
        };
        pinned.push(PinnedAgent {
            agent_name: name,
            version,
        });
    }
    Ok((pinned, new))
}

/// The agent's latest version, if it holds the agent's current content.
fn latest_alike(c: &Call<'_>, agent: &Agent) -> ApiResult<Option<u32>> {
    let page = halyard_storage::Page {
        offset: 0,
        limit: 1,
    };
    let latest = c
        .api
        .store
        .agent_versions(c.tenant()?, &agent.project_id, &agent.name, page);
    let hash = versions::content_hash(agent);
    Ok(latest
        .items
        .first()
        .filter(|v| v.content_hash == hash)
        .map(|v| v.version))
}

/// The model overrides as stored JSON text.
fn read_overrides(f: &mut Fields<'_>) -> Option<String> {
    let mut out = Map::new();
    f.nested("modelOverrides", |m| {
        if let Some(model) = m.str("model") {
            out.insert("model".into(), model.into());
        }
        if let Some(t) = m.number("temperature") {
            out.insert("temperature".into(), t.into());
        }
        if let Some(n) = m.whole("maxTokens") {
            out.insert("maxTokens".into(), n.into());
        }
    });
    (!out.is_empty()).then(|| Value::Object(out).to_string())
}

/// `d` made the active deployment of its environment now, with the mutations that
/// supersede the one it replaces.
fn activate(c: &Call<'_>, mut d: Deployment, now: u64) -> ApiResult<Vec<Mutation>> {
    let mut mutations = Vec::new();
    if let Some(mut old) = active(c, &d.project_id, d.environment)? {
        if old.id != d.id {
            old.status = DeploymentStatus::Superseded;
            mutations.push(Mutation::PutDeployment(old));
        }
    }
    d.status = DeploymentStatus::Active;
    d.activated_at = now;
    mutations.push(Mutation::PutDeployment(d));
    Ok(mutations)
}

fn slug(project: &Project, env: Environment, agent: &str) -> String {
    format!("{}/{}/{agent}", project.slug, env.as_str())
}

fn environment(name: Option<&str>) -> Environment {
    name.and_then(Environment::parse)
        .unwrap_or(Environment::Production)
}

/// `POST /api/projects/:pid/deployments`.
pub fn create(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let body = c.body()?;
    let mut f = Fields::of(&body, BODY)?;
    let env = environment(f.str("environment"));
    let entry = f.str("entryAgentName").unwrap_or_default().to_string();
    let label = f.str("label").map(String::from);
    let description = f.str("description").map(String::from);
    let model_overrides = read_overrides(&mut f);
    let wanted = f.manifest("agentVersionManifest").unwrap_or_default();
    if !wanted.is_empty() && !wanted.iter().any(|(n, _)| *n == entry) {
        f.fail("entryAgentName", "must be an agent of agentVersionManifest");
    }
    f.finish()?;
    let now = time::now_ms();
    let (manifest, new_versions) = pin(c, &project, wanted, now)?;
    let d = Deployment {
        id: ids::new_id(ids::DEPLOYMENT),
        project_id: project.id.clone(),
        environment: env,
        status: DeploymentStatus::Active,
        label,
        description,
        endpoint_slug: slug(&project, env, &entry),
        entry_agent_name: entry,
        manifest,
        model_overrides,
        created_at: now,
        created_by: c.principal()?.id.clone(),
        activated_at: now,
        rolled_back_at: None,
        retired_at: None,
    };
    let resp = reply::created(vec![("deployment", view(&d))]);
    let mut mutations: Vec<Mutation> = new_versions
        .into_iter()
        .map(Mutation::PutAgentVersion)
        .collect();
    mutations.extend(activate(c, d, now)?);
    c.commit(mutations, resp)
}

/// `GET /api/projects/:pid/deployments` (`environment`, `status` filters), newest first.
pub fn list(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let page = c.page()?;
    let env = c.query("environment");
    let status = c.query("status");
    for (name, value, allowed) in [
        ("environment", &env, ENVIRONMENTS),
        ("status", &status, STATUSES),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !allowed.contains(v)) {
            return Err(ApiError::BadRequest(format!(
                "{name} must be one of {}, not {v:?}",
                allowed.join(", ")
            )));
        }
    }
    let all: Vec<Deployment> = c
        .api
        .store
        .deployments(c.tenant()?, &project.id)
        .into_iter()
        .filter(|d| env.as_deref().is_none_or(|e| d.environment.as_str() == e))
        .filter(|d| status.as_deref().is_none_or(|s| d.status.as_str() == s))
        .collect();
    Ok(reply::list("deployments", &page_of(all, page), page, view))
}

/// `GET /api/projects/:pid/deployments/:depId`.
pub fn get(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    Ok(reply::ok(vec![("deployment", view(&find(c, &project)?))]))
}

/// `POST .../deployments/:depId/promote`: a new deployment of the same pinned versions in
/// `targetEnvironment`, active there (`201`).
pub fn promote(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let source = find(c, &project)?;
    let body = c.body()?;
    let mut f = Fields::of(&body, PROMOTE_BODY)?;
    let target = environment(f.str("targetEnvironment"));
    if target == source.environment {
        f.fail("targetEnvironment", "is the deployment's own environment");
    }
    f.finish()?;
    if source.status == DeploymentStatus::Retired {
        return Err(ApiError::Conflict(format!(
            "Deployment {} is retired",
            source.id
        )));
    }
    let now = time::now_ms();
    let d = Deployment {
        id: ids::new_id(ids::DEPLOYMENT),
        environment: target,
        endpoint_slug: slug(&project, target, &source.entry_agent_name),
        created_at: now,
        created_by: c.principal()?.id.clone(),
        rolled_back_at: None,
        retired_at: None,
        ..source
    };
    let resp = reply::created(vec![("deployment", view(&active_now(&d, now)))]);
    c.commit(activate(c, d, now)?, resp)
}

fn active_now(d: &Deployment, now: u64) -> Deployment {
    Deployment {
        status: DeploymentStatus::Active,
        activated_at: now,
        ..d.clone()
    }
}

/// `POST .../deployments/:depId/rollback`: the active deployment steps down, and the one
/// active before it in its environment serves again (answered with that one).
pub fn rollback(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let mut current = find(c, &project)?;
    if current.status != DeploymentStatus::Active {
        return Err(ApiError::Conflict(format!(
            "Deployment {} is not active: only the active deployment of an environment rolls back",
            current.id
        )));
    }
    let previous = c
        .api
        .store
        .deployments(c.tenant()?, &project.id)
        .into_iter()
        .filter(|d| d.environment == current.environment)
        .filter(|d| d.status == DeploymentStatus::Superseded && d.rolled_back_at.is_none())
        .filter(|d| d.activated_at <= current.activated_at && d.id != current.id)
        .max_by_key(|d| d.activated_at)
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "No earlier deployment of {} to roll back to",
                current.environment.as_str()
            ))
        })?;
    let now = time::now_ms();
    current.status = DeploymentStatus::Superseded;
    current.rolled_back_at = Some(now);
    let restored = active_now(&previous, now);
    let resp = reply::ok(vec![("deployment", view(&restored))]);
    let mutations = vec![
        Mutation::PutDeployment(current),
        Mutation::PutDeployment(restored),
    ];
    c.commit(mutations, resp)
}

/// `POST .../deployments/:depId/retire`: withdrawn for good (its sessions end with `410`);
/// retiring a retired deployment changes nothing.
pub fn retire(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let mut d = find(c, &project)?;
    if d.status == DeploymentStatus::Retired {
        return Ok(Reply::Now(reply::ok(vec![("deployment", view(&d))])));
    }
    d.status = DeploymentStatus::Retired;
    d.retired_at = Some(time::now_ms());
    let resp = reply::ok(vec![("deployment", view(&d))]);
    c.commit(vec![Mutation::PutDeployment(d)], resp)
}
