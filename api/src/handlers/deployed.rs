//! Running deployed agents: the deployment-scoped runtime routes
//! (`/api/v1/project/:projectSlug/:env/agent/:agentSlug/chat|stream|complete`), the
//! deployment a legacy chat route names (`deploymentId`, `environment`), the agent a
//! deployment pins, and `POST /api/v1/chat/session`.
//!
//! A session opened on a deployment keeps it for its life: its turns run the version the
//! deployment pins for the session's agent, whatever happens to the agent or to the
//! environment since; once the deployment is retired its turns are `410 GONE`.

use halyard_engine::Reply;
use halyard_storage::{Agent, Deployment, DeploymentStatus, Environment, Mutation, Page, Project};
use serde_json::{json, Value};

use super::chat;
use super::sessions::{open_session, pick_agent, store_new_session, MAX_METADATA};
use super::Call;
use crate::body::{Field, Fields};
use crate::chat::runtime::Style;
use crate::error::{ApiError, ApiResult};
use crate::reply;

/// `deploymentId` and `environment` of a legacy chat body.
pub(super) const DEPLOYMENT_ID: Field = Field::text("deploymentId", 1, 64);
/// See [`DEPLOYMENT_ID`].
pub(super) const ENVIRONMENT: Field =
    Field::one_of("environment", super::deployments::ENVIRONMENTS);

/// The body of `POST /api/v1/chat/session`.
pub(super) const SESSION_BODY: &[Field] = &[
    Field::text("projectId", 1, 64).required(),
    Field::text("agentId", 0, 64),
    DEPLOYMENT_ID,
    ENVIRONMENT,
    Field::json("sessionMetadata", MAX_METADATA),
];

/// The agent `name` as `d` pins it, with the deployment's model overrides laid over it.
pub fn pinned_agent(c: &Call<'_>, d: &Deployment, name: &str) -> ApiResult<Agent> {
    let not_deployed = || ApiError::NotFound(format!("Agent {name} is not in deployment {}", d.id));
    let pin = d
        .manifest
        .iter()
        .find(|p| p.agent_name == name)
        .ok_or_else(not_deployed)?;
    let version = c
        .api
        .store
        .agent_version(c.tenant()?, &d.project_id, name, pin.version)
        .ok_or_else(not_deployed)?;
    let mut agent = version.agent;
    let overrides: Value = d
        .model_overrides
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    if let Some(model) = overrides["model"].as_str() {
        agent.model.model = model.to_string();
    }
    if let Some(t) = overrides["temperature"].as_f64() {
        agent.model.temperature = Some(t);
    }
    if let Some(n) = overrides["maxTokens"].as_u64() {
        agent.model.max_tokens = Some(n);
    }
    Ok(agent)
}

/// The deployment a session was opened on, if any: `410` once it is retired.
pub fn of_session(
    c: &Call<'_>,
    project_id: &str,
    session_id: &str,
) -> ApiResult<Option<Deployment>> {
    let tenant = c.tenant()?;
    let Some(id) = c
        .api
        .store
        .session_deployment(tenant, project_id, session_id)
    else {
        return Ok(None);
    };
    match c.api.store.deployment(tenant, project_id, &id) {
        Some(d) if d.status != DeploymentStatus::Retired => Ok(Some(d)),
        _ => Err(ApiError::Gone(format!(
            "Deployment {id} of session {session_id} is retired: open a new session"
        ))),
    }
}

/// The deployment a legacy chat body names: by id (not retired), or the environment's
/// active one; neither named, none.
pub fn chosen(
    c: &Call<'_>,
    project: &Project,
    id: Option<&str>,
    environment: Option<&str>,
) -> ApiResult<Option<Deployment>> {
    let tenant = c.tenant()?;
    match (id, environment.and_then(Environment::parse)) {
        (Some(id), env) => {
            let d = c
                .api
                .store
                .deployment(tenant, &project.id, id)
                .ok_or_else(|| ApiError::NotFound(format!("Deployment not found: {id}")))?;
            if d.status == DeploymentStatus::Retired {
                return Err(ApiError::Gone(format!("Deployment {id} is retired")));
            }
            if env.is_some_and(|e| e != d.environment) {
                return Err(ApiError::invalid(
                    "environment",
                    format!("deployment {id} is in {}", d.environment.as_str()),
                ));
            }
            Ok(Some(d))
        }
        (None, Some(env)) => active(c, project, env).map(Some),
        (None, None) => Ok(None),
    }
}

/// The active deployment of `env`: `404` when there is none.
fn active(c: &Call<'_>, project: &Project, env: Environment) -> ApiResult<Deployment> {
    super::deployments::active(c, &project.id, env)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "No active deployment of {} in this project",
            env.as_str()
        ))
    })
}

/// The agent a new session on `d` runs: the agent named, the one with `agent_id` (by its
/// name), or the deployment's entry agent.
pub fn session_agent(
    c: &Call<'_>,
    project: &Project,
    d: &Deployment,
    agent_id: Option<&str>,
) -> ApiResult<Agent> {
    let name = match agent_id {
        Some(id) => pick_agent(c, project, Some(id), None)?.name,
        None => d.entry_agent_name.clone(),
    };
    pinned_agent(c, d, &name)
}

/// The project, active deployment and agent of a deployment-scoped route's path.
fn target(c: &Call<'_>) -> ApiResult<(Project, Deployment, String)> {
    resolve(c, c.param(0), c.param(1), c.param(2))
}

/// The project with slug `slug` (one the principal sees), the active deployment of `env`
/// in it, and `agent` when that deployment pins it: `404` otherwise.
pub fn resolve(
    c: &Call<'_>,
    slug: &str,
    env: &str,
    agent: &str,
) -> ApiResult<(Project, Deployment, String)> {
    let p = c.principal()?;
    let project = c
        .api
        .store
        .projects(&p.tenant, Page::ALL)
        .items
        .into_iter()
        .find(|pr| pr.slug == slug && p.sees_project(&pr.id))
        .ok_or_else(|| ApiError::NotFound(format!("Project not found: {slug}")))?;
    let env = Environment::parse(env).ok_or_else(|| {
        ApiError::NotFound(format!("No environment {env}: dev, staging or production"))
    })?;
    let d = active(c, &project, env)?;
    if !d.manifest.iter().any(|pin| pin.agent_name == agent) {
        return Err(ApiError::NotFound(format!(
            "Agent {agent} is not in the active deployment of {}",
            env.as_str()
        )));
    }
    Ok((project, d, agent.to_string()))
}

/// `POST /api/v1/project/:projectSlug/:env/agent/:agentSlug/chat` and `/stream`: a turn of
/// the agent the environment's active deployment pins (an existing session keeps its own
/// deployment).
pub fn turn(c: &Call<'_>, style: Style) -> ApiResult<Reply> {
    let body = c.body()?;
    let mut f = Fields::of(&body, chat::DEPLOYED_AGENT_BODY)?;
    let input = chat::read_turn_input(&mut f);
    f.finish()?;
    let (project, d, agent) = target(c)?;
    chat::start_turn(c, &project, input, style, || {
        Ok((pinned_agent(c, &d, &agent)?, Some(d.clone())))
    })
}

/// `POST /api/v1/project/:projectSlug/:env/agent/:agentSlug/complete`: a direct model call
/// with the pinned agent's model.
pub fn complete(c: &Call<'_>) -> ApiResult<Reply> {
    let body = c.body()?;
    let (_, d, agent) = target(c)?;
    let agent = pinned_agent(c, &d, &agent)?;
    chat::complete_with(c, &body, Some(agent))
}

/// `POST /api/v1/chat/session`: a session, stored now and ready for turns (`201`).
pub fn open(c: &Call<'_>) -> ApiResult<Reply> {
    let body = c.body()?;
    let mut f = Fields::of(&body, SESSION_BODY)?;
    let project_id = f.str("projectId").unwrap_or_default();
    let agent_id = f.str("agentId");
    let deployment_id = f.str("deploymentId");
    let environment = f.str("environment");
    let metadata = f.json_text("sessionMetadata");
    f.finish()?;
    let project = c.visible_project(project_id)?;
    let deployment = chosen(c, &project, deployment_id, environment)?;
    let agent = match &deployment {
        Some(d) => session_agent(c, &project, d, agent_id)?,
        None => pick_agent(c, &project, agent_id, None)?,
    };
    let session = open_session(c, &project, &agent, metadata)?;
    let mut answer = json!({"sessionId": session.id, "agentName": agent.name, "status": "ready"});
    let mut mutations = vec![Mutation::PutSession(session.clone())];
    if let Some(d) = &deployment {
        answer["deploymentId"] = d.id.clone().into();
        answer["environment"] = d.environment.as_str().into();
        mutations.push(Mutation::SetSessionDeployment {
            project_id: project.id.clone(),
            session_id: session.id.clone(),
            deployment_id: d.id.clone(),
        });
    }
    let fields = answer
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.as_str(), v.clone())).collect())
        .unwrap_or_default();
    store_new_session(c, &session.id, mutations, reply::created(fields))
}
