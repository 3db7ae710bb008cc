//! Session routes (`/api/projects/:pid/sessions`, `/api/v1/sessions/:id/transcripts`).
//! An SDK token sees only the sessions it created; any other is a `404`.

use halyard_engine::{Reply, Response};
use halyard_storage::{
    ids, Agent, Channel, Mutation, Page, Project, Session, SessionFilter, SessionStatus,
};
use serde_json::Value;

use super::Call;
use crate::auth::Principal;
use crate::body::{Field, Fields};
use crate::error::{ApiError, ApiResult};
use crate::{reply, time, view};

/// The largest metadata object, as JSON text.
pub(super) const MAX_METADATA: usize = 16 * 1024;

/// The body of `POST /api/projects/:pid/sessions`.
pub(super) const CREATE_BODY: &[Field] = &[
    Field::text("agentId", 0, 64),
    Field::text("agentName", 0, 64),
    Field::json("metadata", MAX_METADATA),
];

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Session not found: {id}"))
}

/// Whether `p` may see session `s` (SDK tokens: only their own).
pub fn sees_session(p: &Principal, s: &Session) -> bool {
    match &p.sdk {
        Some(grant) => s.created_by_token.as_deref() == Some(grant.id.as_str()),
        None => p.sees_project(&s.project_id),
    }
}

/// The session of captures 0 (project) and 1 (session), if visible.
pub(super) fn find(c: &Call<'_>) -> ApiResult<Session> {
    let project = c.project()?;
    let id = c.param(1);
    let p = c.principal()?;
    c.api
        .store
        .session(&p.tenant, &project.id, id)
        .filter(|s| sees_session(p, s))
        .ok_or_else(|| not_found(id))
}

/// The agent a new session talks to: `agentId`, else `agentName`, else the project's
/// entry agent.
pub fn pick_agent(
    c: &Call<'_>,
    project: &Project,
    agent_id: Option<&str>,
    agent_name: Option<&str>,
) -> ApiResult<Agent> {
    let tenant = c.tenant()?;
    let store = &c.api.store;
    let name = agent_name.or(project.entry_agent_name.as_deref());
    let found = match (agent_id, name) {
        (Some(id), _) => store.agent(tenant, &project.id, id),
        (None, Some(name)) => store.agent_by_name(tenant, &project.id, name),
        (None, None) => {
            return Err(ApiError::invalid(
                "agentName",
                "is required: the project has no entry agent",
            ))
        }
    };
    found.ok_or_else(|| {
        ApiError::NotFound(format!(
            "Agent not found: {}",
            agent_id.or(name).unwrap_or("")
        ))
    })
}

/// A new active session of `agent` for the principal, with its concurrency slot reserved:
/// whoever then fails to store it must free the slot ([`release_slot`]).
pub fn open_session(
    c: &Call<'_>,
    project: &Project,
    agent: &Agent,
    metadata: Option<String>,
) -> ApiResult<Session> {
    let p = c.principal()?;
    let now = time::now_ms();
    let id = ids::new_id(ids::SESSION);
    let store = &c.api.store;
    let load = || active_sessions(&**store, &p.tenant);
    let max = p.limits.max_concurrent_sessions;
    c.api
        .limiter()
        .reserve_session(&p.tenant, &id, max, now, &load)?;
    Ok(Session {
        id,
        project_id: project.id.clone(),
        agent_id: agent.id.clone(),
        agent_name: agent.name.clone(),
        status: SessionStatus::Active,
        channel: if p.sdk.is_some() {
            Channel::Sdk
        } else {
            Channel::Api
        },
        message_count: 0,
        token_count: 0,
        created_at: now,
        last_activity_at: now,
        metadata: metadata.unwrap_or_else(|| "{}".into()),
        created_by_token: p.sdk.as_ref().map(|g| g.id.clone()),
    })
}

/// Frees the concurrency slot of a session that was not stored after all.
pub fn release_slot(c: &Call<'_>, tenant: &str, session_id: &str) {
    c.api.limiter().release_session(tenant, session_id);
}

/// `POST /api/projects/:pid/sessions`.
pub fn create(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let body = c.body()?;
    let mut f = Fields::of(&body, CREATE_BODY)?;
    let agent_id = f.str("agentId");
    let agent_name = f.str("agentName");
    let metadata = f.json_text("metadata");
    f.finish()?;
    let agent = pick_agent(c, &project, agent_id, agent_name)?;
    let session = open_session(c, &project, &agent, metadata)?;
    let resp = reply::one_written(201, "session", |out| view::write_session(out, &session));
    let id = session.id.clone();
    store_new_session(c, &id, vec![Mutation::PutSession(session)], resp)
}

/// Commits a new session (`mutations` store it) and answers `resp` once it is durable; the
/// session's concurrency slot is given back if it is not.
pub fn store_new_session(
    c: &Call<'_>,
    session_id: &str,
    mutations: Vec<Mutation>,
    resp: halyard_engine::Response,
) -> ApiResult<Reply> {
    let tenant = c.tenant()?.to_string();
    let limiter = c.api.limiter().clone();
    let (t, id) = (tenant.clone(), session_id.to_string());
    let release: super::After = Box::new(move |durable| {
        if !durable {
            limiter.release_session(&t, &id);
        }
    });
    c.commit_for(&tenant, mutations, resp, Some(release))
}

/// The tenant's active sessions with their last activity.
pub fn active_sessions(store: &dyn halyard_storage::Backend, tenant: &str) -> Vec<(String, u64)> {
    let filter = SessionFilter {
        status: Some(SessionStatus::Active),
        ..SessionFilter::default()
    };
    store
        .projects(tenant, Page::ALL)
        .items
        .iter()
        .flat_map(|proj| store.sessions(tenant, &proj.id, &filter, Page::ALL).items)
        .map(|s| (s.id, s.last_activity_at))
        .collect()
}

/// `GET /api/projects/:pid/sessions` (`status`, `channel` filters).
pub fn list(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let p = c.principal()?;
    let page = c.page()?;
    let status = match c.query("status").as_deref() {
        None => None,
        Some("active") => Some(SessionStatus::Active),
        Some("ended") => Some(SessionStatus::Ended),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "status must be active or ended".into(),
            ))
        }
    };
    let channel = match c.query("channel").as_deref() {
        None => None,
        Some("api") => Some(Channel::Api),
        Some("sdk") => Some(Channel::Sdk),
        Some(_) => return Err(ApiError::BadRequest("channel must be api or sdk".into())),
    };
    let filter = SessionFilter {
        status,
        channel,
        created_by_token: p.sdk.as_ref().map(|g| g.id.as_str()),
    };
    let store = &c.api.store;
    Ok(reply::list_written(
        "sessions",
        page,
        320 * page.limit.min(100),
        |items| {
            store.each_session(&p.tenant, &project.id, &filter, page, &mut |s| {
                view::write_session(items.push(), s)
            })
        },
    ))
}

/// `GET /api/projects/:pid/sessions/:id`.
pub fn get(c: &Call<'_>) -> ApiResult<Response> {
    let session = find(c)?;
    Ok(reply::one_written(200, "session", |out| {
        view::write_session(out, &session)
    }))
}

/// `DELETE /api/projects/:pid/sessions/:id`: ends the session; history is kept.
pub fn end(c: &Call<'_>) -> ApiResult<Reply> {
    let mut session = find(c)?;
    session.status = SessionStatus::Ended;
    let tenant = c.tenant()?;
    c.api.limiter().release_session(tenant, &session.id);
    c.commit(vec![Mutation::PutSession(session)], crate::success())
}

/// `POST /api/projects/:pid/sessions/:id/reset`: clears the conversation, keeps the id.
pub fn reset(c: &Call<'_>) -> ApiResult<Reply> {
    let mut session = find(c)?;
    let m = Mutation::ClearMessages {
        project_id: session.project_id.clone(),
        session_id: session.id.clone(),
    };
    session.message_count = 0;
    let resp = reply::one_written(200, "session", |out| view::write_session(out, &session));
    c.commit(vec![m], resp)
}

/// `GET /api/projects/:pid/sessions/:id/messages`: oldest first.
pub fn messages(c: &Call<'_>) -> ApiResult<Response> {
    let session = find(c)?;
    let page = c.page()?;
    let listed = c
        .api
        .store
        .messages(c.tenant()?, &session.project_id, &session.id, page)
        .ok_or_else(|| not_found(&session.id))?;
    Ok(reply::list("messages", &listed, page, view::message))
}

/// `GET /api/v1/sessions/:id/transcripts`: the whole conversation.
pub fn transcript(c: &Call<'_>) -> ApiResult<Response> {
    let id = c.param(0);
    let p = c.principal()?;
    let (tenant, project) = c
        .api
        .store
        .locate_session(id)
        .ok_or_else(|| not_found(id))?;
    if tenant != p.tenant {
        return Err(not_found(id));
    }
    let session = c
        .api
        .store
        .session(&tenant, &project, id)
        .filter(|s| sees_session(p, s))
        .ok_or_else(|| not_found(id))?;
    let listed = c
        .api
        .store
        .messages(&tenant, &project, &session.id, Page::ALL)
        .ok_or_else(|| not_found(id))?;
    let messages: Vec<Value> = listed.items.iter().map(view::message).collect();
    Ok(reply::ok(vec![
        ("sessionId", Value::String(session.id)),
        ("messages", Value::Array(messages)),
    ]))
}
