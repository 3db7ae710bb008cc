//! Session routes (`/api/projects/:pid/sessions`, `/api/v1/sessions/:id/transcripts`).
//! An SDK token sees only the sessions it created; any other is a `404`.

use halyard_engine::{Reply, Response};
use halyard_storage::{ids, Channel, Mutation, Page, Session, SessionFilter, SessionStatus};
use serde_json::Value;

use super::Call;
use crate::auth::Principal;
use crate::body::Fields;
use crate::error::{ApiError, ApiResult};
use crate::{reply, time, view};

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
fn find(c: &Call<'_>) -> ApiResult<Session> {
    let project = c.project()?;
    let id = c.param(1);
    let p = c.principal()?;
    c.api
        .store
        .session(&p.tenant, &project.id, id)
        .filter(|s| sees_session(p, s))
        .ok_or_else(|| not_found(id))
}

/// `POST /api/projects/:pid/sessions`.
pub fn create(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let p = c.principal()?;
    let body = c.body()?;
    let mut f = Fields::of(&body)?;
    let agent_id = f.opt_str("agentId", 64);
    let agent_name = f.opt_str("agentName", 64);
    let metadata = f.opt_object_text("metadata", 16 * 1024);
    f.finish()?;
    let store = &c.api.store;
    let agent = match (agent_id, agent_name.or(project.entry_agent_name.as_deref())) {
        (Some(id), _) => store.agent(&p.tenant, &project.id, id),
        (None, Some(name)) => store.agent_by_name(&p.tenant, &project.id, name),
        (None, None) => {
            return Err(ApiError::invalid(
                "agentName",
                "is required: the project has no entry agent",
            ))
        }
    }
    .ok_or_else(|| {
        let which = agent_id
            .or(agent_name)
            .or(project.entry_agent_name.as_deref());
        ApiError::NotFound(format!("Agent not found: {}", which.unwrap_or("")))
    })?;
    let now = time::now_ms();
    let session = Session {
        id: ids::new_id(ids::SESSION),
        project_id: project.id,
        agent_id: agent.id,
        agent_name: agent.name,
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
    };
    let resp = reply::created(vec![("session", view::session(&session))]);
    let after = reserve_slot(c, p, &session.id, now)?;
    c.commit_for(&p.tenant, vec![Mutation::PutSession(session)], resp, after)
}

/// Reserves a concurrent-session slot for a new session; the returned hook frees it if
/// the session is not stored after all.
fn reserve_slot(
    c: &Call<'_>,
    p: &Principal,
    session_id: &str,
    now: u64,
) -> ApiResult<Option<super::After>> {
    let limiter = c.api.limiter();
    if !limiter.enabled() {
        return Ok(None);
    }
    let store = &c.api.store;
    let load = || active_sessions(&**store, &p.tenant);
    let max = p.limits.max_concurrent_sessions;
    limiter
        .sessions
        .reserve(&p.tenant, session_id, max, now, load)
        .map_err(|ms| ApiError::RateLimited("Concurrent session limit exceeded".into(), ms))?;
    let limiter = limiter.clone();
    let (tenant, id) = (p.tenant.clone(), session_id.to_string());
    Ok(Some(Box::new(move |durable| {
        if !durable {
            limiter.sessions.release(&tenant, &id);
        }
    })))
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
    let listed = c.api.store.sessions(&p.tenant, &project.id, &filter, page);
    Ok(reply::list("sessions", &listed, page, view::session))
}

/// `GET /api/projects/:pid/sessions/:id`.
pub fn get(c: &Call<'_>) -> ApiResult<Response> {
    Ok(reply::ok(vec![("session", view::session(&find(c)?))]))
}

/// `DELETE /api/projects/:pid/sessions/:id`: ends the session; history is kept.
pub fn end(c: &Call<'_>) -> ApiResult<Reply> {
    let mut session = find(c)?;
    session.status = SessionStatus::Ended;
    let tenant = c.tenant()?;
    c.api.limiter().sessions.release(tenant, &session.id);
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
    let resp = reply::ok(vec![("session", view::session(&session))]);
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
