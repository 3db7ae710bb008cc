//! Chat routes (`/api/v1/chat/...`): parse and authorize, take the session message rate,
//! and queue the work on the agent runtime; the runtime answers.

use std::collections::HashSet;
use std::time::Instant;

use halyard_engine::{Reply, Response};
use halyard_storage::{Agent, Deployment, Page, Project, Session, SessionStatus, Usage};
use serde_json::{json, Value};

use super::agents::{MAX_TOKENS, TEMPERATURE};
use super::deployed;
use super::sessions::{open_session, pick_agent, release_slot, sees_session, MAX_METADATA};
use super::Call;
use crate::auth::Kind;
use crate::body::{Field, Fields, Item, Text};
use crate::chat::follow::Follow;
use crate::chat::provider::{Line, Prompt, Speaker, ToolCall, ToolSpec};
use crate::chat::runtime::{cost, Direct, Job, Style, Turn, Work};
use crate::chat::{hub, sse};
use crate::error::{ApiError, ApiResult};
use crate::{reply, time};

/// Longest user message.
pub const MAX_MESSAGE: usize = 100_000;

// Fields of more than one chat body.
const PROJECT_ID: Field = Field::text("projectId", 1, 64).required();
const MESSAGE: Field = Field::text("message", 1, MAX_MESSAGE).required();
const AGENT_ID: Field = Field::text("agentId", 0, 64);

const SESSION_ID: Field = Field::text("sessionId", 0, 64);
const METADATA: Field = Field::json("metadata", MAX_METADATA);
const SESSION_METADATA: Field = Field::json("sessionMetadata", MAX_METADATA);
const ATTACHMENTS: Field = Field::list("attachmentIds", Item::Text(Text::new(1, 64)), 0, 100);

/// The body of `/chat/agent` and `/chat/agent/stream`: a turn on a new or existing session,
/// of a deployment when one is named.
pub(super) const AGENT_BODY: &[Field] = &[
    PROJECT_ID,
    MESSAGE,
    SESSION_ID,
    AGENT_ID,
    METADATA,
    SESSION_METADATA,
    ATTACHMENTS,
    deployed::DEPLOYMENT_ID,
    deployed::ENVIRONMENT,
];

/// The body of the deployment-scoped `/chat` and `/stream`: the path names the project and
/// the agent.
pub(super) const DEPLOYED_AGENT_BODY: &[Field] =
    &[MESSAGE, SESSION_ID, METADATA, SESSION_METADATA, ATTACHMENTS];

/// The body of `/chat/send`, and of `/chat/stream`'s turn on a session.
pub(super) const SESSION_TURN_BODY: &[Field] =
    &[Field::text("sessionId", 1, 64).required(), MESSAGE];

/// The speakers of a direct model call's messages, as [`speaker`] reads them.
pub(super) const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// A tool call an assistant message made (OpenAI's shape).
const CALL_FUNCTION: &[Field] = &[
    Field::text("name", 1, 64).required(),
    Field::text("arguments", 0, MAX_MESSAGE).required(),
];
pub(super) const CALL: &[Field] = &[
    Field::text("id", 1, 128).required(),
    Field::one_of("type", &["function"]),
    Field::object("function", CALL_FUNCTION).required(),
];

/// One message of a direct model call (an empty one is allowed): an assistant's may carry
/// `tool_calls`, a tool's names the call it answers.
const PROMPT_MESSAGE: &[Field] = &[
    Field::one_of("role", &ROLES).required(),
    Field::text("content", 0, MAX_MESSAGE).required(),
    Field::list("tool_calls", Item::Object(CALL), 0, 32),
    Field::text("tool_call_id", 1, 128).required_if("role", "tool"),
];

/// A tool offered to the model of a direct call (OpenAI's shape).
const FUNCTION: &[Field] = &[
    Field::text("name", 1, 64).required(),
    Field::text("description", 0, 2000),
    Field::json("parameters", 64 * 1024),
];
const TOOL: &[Field] = &[
    Field::one_of("type", &["function"]),
    Field::object("function", FUNCTION).required(),
];
pub(super) const TOOLS: Field = Field::list("tools", Item::Object(TOOL), 0, 64);

/// A direct model call's conversation.
const MESSAGES: Field = Field::list("messages", Item::Object(PROMPT_MESSAGE), 1, 1000).required();

/// The body of `/chat/stream`'s direct model call, with the agent's model.
pub(super) const DIRECT_BODY: &[Field] = &[
    PROJECT_ID,
    MESSAGES,
    AGENT_ID,
    TEMPERATURE,
    MAX_TOKENS,
    TOOLS,
];

const MODEL_ID: Field = Field::text("modelId", 0, 128);

/// The body of `/chat/complete`: a direct model call that may name another model.
pub(super) const COMPLETE_BODY: &[Field] = &[
    PROJECT_ID,
    MESSAGES,
    AGENT_ID,
    TEMPERATURE,
    MAX_TOKENS,
    MODEL_ID,
    TOOLS,
];

/// The body of the deployment-scoped `/complete`: the path names the agent.
pub(super) const DEPLOYED_COMPLETE_BODY: &[Field] =
    &[MESSAGES, TEMPERATURE, MAX_TOKENS, MODEL_ID, TOOLS];

/// The speaker of a role name of [`ROLES`].
fn speaker(role: &str) -> Option<Speaker> {
    match role {
        "system" => Some(Speaker::System),
        "user" => Some(Speaker::User),
        "assistant" => Some(Speaker::Assistant),
        "tool" => Some(Speaker::Tool),
        _ => None,
    }
}

fn session_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Session not found: {id}"))
}

/// An existing session the principal may use, with its agent and the deployment it runs
/// (whose pinned version is its agent; `410` once retired).
fn existing_session(
    c: &Call<'_>,
    project_id: &str,
    id: &str,
) -> ApiResult<(Session, Agent, Option<Deployment>)> {
    let p = c.principal()?;
    let session = c
        .api
        .store
        .session(&p.tenant, project_id, id)
        .filter(|s| sees_session(p, s))
        .ok_or_else(|| session_not_found(id))?;
    if session.status == SessionStatus::Ended {
        return Err(ApiError::Conflict(format!("Session has ended: {id}")));
    }
    if let Some(d) = deployed::of_session(c, project_id, id)? {
        let agent = deployed::pinned_agent(c, &d, &session.agent_name)?;
        return Ok((session, agent, Some(d)));
    }
    let agent = c
        .api
        .store
        .agent(&p.tenant, project_id, &session.agent_id)
        .ok_or_else(|| ApiError::NotFound(format!("Agent not found: {}", session.agent_name)))?;
    Ok((session, agent, None))
}

/// Queues a turn after the session message rate; gives a reserved slot back on refusal.
fn queue_turn(c: &Call<'_>, turn: Turn, style: Style) -> ApiResult<Reply> {
    let p = c.principal()?;
    let release = |t: &Turn| {
        if t.new_session {
            release_slot(c, &t.tenant, &t.session.id);
        }
    };
    let limiter = c.api.limiter();
    let (tenant, sid) = (&turn.tenant, &turn.session.id);
    let admitted = limiter
        .take_session_message(
            sid,
            p.limits.session_messages_per_minute,
            c.req.head.received,
        )
        .and_then(|()| limiter.turn_queued(tenant, sid, crate::time::now_ms()));
    if let Err(e) = admitted {
        release(&turn);
        return Err(e);
    }
    submit(c, Work::Turn(turn), style)
}

pub(super) fn submit(c: &Call<'_>, work: Work, style: Style) -> ApiResult<Reply> {
    let (reply, responder) = c.req.defer();
    let job = Job {
        work,
        style,
        responder,
        finish: c.finish.clone(),
        started: Instant::now(),
    };
    match c.api.runtime.submit(c.req, job) {
        Ok(()) => Ok(reply),
        Err(job) => {
            if let Work::Turn(t) = &job.work {
                if t.new_session {
                    release_slot(c, &t.tenant, &t.session.id);
                }
            }
            c.api
                .limiter()
                .refusals
                .count(crate::admission::refusals::Refusal::QueueFull);
            let e = ApiError::QueueFull(super::QUEUE_FULL_RETRY_MS);
            job.responder.send(c.finish.error(e));
            Ok(reply)
        }
    }
}

/// What a turn body says besides its project and agent.
pub(super) struct TurnInput {
    message: String,
    session_id: Option<String>,
    session_meta: Option<String>,
}

/// Reads a turn body declared with the fields of [`DEPLOYED_AGENT_BODY`].
pub(super) fn read_turn_input(f: &mut Fields<'_>) -> TurnInput {
    let message = f.str("message").unwrap_or_default().to_string();
    let session_id = f.str("sessionId").map(String::from);
    f.json_text("metadata");
    let session_meta = f.json_text("sessionMetadata");
    f.strings("attachmentIds");
    TurnInput {
        message,
        session_id,
        session_meta,
    }
}

/// `POST /api/v1/chat/agent` and `/chat/agent/stream`.
pub fn agent(c: &Call<'_>, style: Style) -> ApiResult<Reply> {
    let body = c.body()?;
    let mut f = Fields::of(&body, AGENT_BODY)?;
    let project_id = f.str("projectId");
    let agent_id = f.str("agentId");
    let deployment_id = f.str("deploymentId");
    let environment = f.str("environment");
    let input = read_turn_input(&mut f);
    f.finish()?;
    let project = c.visible_project(project_id.unwrap_or_default())?;
    let deployment = match input.session_id {
        Some(_) => None,
        None => deployed::chosen(c, &project, deployment_id, environment)?,
    };
    start_turn(c, &project, input, style, || match deployment {
        Some(d) => Ok((deployed::session_agent(c, &project, &d, agent_id)?, Some(d))),
        None => Ok((pick_agent(c, &project, agent_id, None)?, None)),
    })
}

/// Queues a turn of `input`: on its session (which keeps its agent and deployment), or on
/// a new session of the agent (and deployment) `fresh` gives.
pub(super) fn start_turn(
    c: &Call<'_>,
    project: &Project,
    input: TurnInput,
    style: Style,
    fresh: impl FnOnce() -> ApiResult<(Agent, Option<Deployment>)>,
) -> ApiResult<Reply> {
    let (session, agent, deployment, new) = match &input.session_id {
        Some(id) => {
            let (s, a, d) = existing_session(c, &project.id, id)?;
            (s, a, d, false)
        }
        None => {
            let (agent, d) = fresh()?;
            let s = open_session(c, project, &agent, input.session_meta)?;
            (s, agent, d, true)
        }
    };
    let p = c.principal()?;
    let turn = Turn {
        tenant: p.tenant.clone(),
        session,
        new_session: new,
        agent,
        message: input.message,
        owner: p.id.clone(),
        deployment: deployment.map(Box::new),
    };
    queue_turn(c, turn, style)
}

/// A turn on an existing session named by id alone (`/chat/send`, `/chat/stream`).
fn session_turn(c: &Call<'_>, session_id: &str, message: &str, style: Style) -> ApiResult<Reply> {
    let p = c.principal()?;
    let (tenant, project_id) = c
        .api
        .store
        .locate_session(session_id)
        .filter(|(t, _)| *t == p.tenant)
        .ok_or_else(|| session_not_found(session_id))?;
    let project = c
        .visible_project(&project_id)
        .map_err(|_| session_not_found(session_id))?;
    let (session, agent, deployment) = existing_session(c, &project.id, session_id)?;
    let turn = Turn {
        tenant,
        session,
        new_session: false,
        agent,
        message: message.to_string(),
        owner: p.id.clone(),
        deployment: deployment.map(Box::new),
    };
    queue_turn(c, turn, style)
}

/// `POST /api/v1/chat/send`.
pub fn send(c: &Call<'_>) -> ApiResult<Reply> {
    let body = c.body()?;
    read_session_turn(c, &body, Style::AgentSync)
}

/// A turn on the session a `{sessionId, message}` body names.
fn read_session_turn(c: &Call<'_>, body: &Value, style: Style) -> ApiResult<Reply> {
    let mut f = Fields::of(body, SESSION_TURN_BODY)?;
    let session_id = f.str("sessionId");
    let message = f.str("message");
    f.finish()?;
    session_turn(
        c,
        session_id.unwrap_or_default(),
        message.unwrap_or_default(),
        style,
    )
}

/// The direct-call form: `{projectId, messages, agentId?, temperature?, maxTokens?}`, and
/// `modelId?` for `/chat/complete`.
/// With a `pinned` agent (a deployment-scoped route), the body names neither.
fn read_direct(
    c: &Call<'_>,
    body: &Value,
    with_model_id: bool,
    pinned: Option<Agent>,
) -> ApiResult<Direct> {
    let spec = match (&pinned, with_model_id) {
        (Some(_), _) => DEPLOYED_COMPLETE_BODY,
        (None, true) => COMPLETE_BODY,
        (None, false) => DIRECT_BODY,
    };
    let mut f = Fields::of(body, spec)?;
    let (project_id, agent_id) = match pinned {
        Some(_) => (None, None),
        None => (f.str("projectId"), f.str("agentId")),
    };
    let temperature = f.number("temperature");
    let max_tokens = f.whole("maxTokens");
    let model_id = with_model_id.then(|| f.str("modelId")).flatten();
    let mut messages = read_messages(&mut f);
    let tools = read_tools(&mut f);
    f.finish()?;
    let agent = match pinned {
        Some(agent) => agent,
        None => {
            let project = c.visible_project(project_id.unwrap_or_default())?;
            pick_agent(c, &project, agent_id, None)?
        }
    };
    add_instructions(&agent, &mut messages);
    let p = c.principal()?;
    Ok(Direct {
        tenant: p.tenant.clone(),
        prompt: Prompt {
            messages,
            model: model_id.map_or_else(|| agent.model.model.clone(), String::from),
            temperature: temperature.or(agent.model.temperature),
            max_tokens: max_tokens.or(agent.model.max_tokens),
            tools,
        },
        agent,
        owner: p.id.clone(),
        openai: None,
    })
}

/// The `messages` of a direct call (each declared with `role`, `content`, `tool_calls`
/// and `tool_call_id`; an absent `content` is empty).
pub(super) fn read_messages(f: &mut Fields<'_>) -> Vec<Line> {
    let mut messages = Vec::new();
    f.each("messages", |m| {
        let role = m.str("role").and_then(speaker);
        let text = m.str("content").unwrap_or_default();
        let mut tool_calls = Vec::new();
        m.each("tool_calls", |c| {
            let id = c.str("id").unwrap_or_default().to_string();
            c.str("type");
            c.nested("function", |fun| {
                tool_calls.push(ToolCall {
                    id: id.clone(),
                    name: fun.str("name").unwrap_or_default().into(),
                    arguments: fun.str("arguments").unwrap_or_default().into(),
                });
            });
        });
        let tool_call_id = m.str("tool_call_id").map(String::from);
        if let Some(role) = role {
            messages.push(Line {
                tool_calls,
                tool_call_id,
                ..Line::say(role, text)
            });
        }
    });
    messages
}

/// The `tools` offered to the model of a direct call (OpenAI's shape).
pub(super) fn read_tools(f: &mut Fields<'_>) -> Vec<ToolSpec> {
    let mut tools = Vec::new();
    f.each("tools", |t| {
        t.str("type");
        t.nested("function", |fun| {
            let parameters = fun
                .json_text("parameters")
                .and_then(|p| serde_json::from_str(&p).ok())
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
            tools.push(ToolSpec {
                name: fun.str("name").unwrap_or_default().into(),
                description: fun.str("description").map(String::from),
                parameters,
            });
        });
    });
    tools
}

/// The agent's instructions as the first message, unless the call brings its own system
/// message.
pub(super) fn add_instructions(agent: &Agent, messages: &mut Vec<Line>) {
    if let Some(sys) = agent.instructions.as_deref().filter(|s| !s.is_empty()) {
        if !messages.iter().any(|l| l.speaker == Speaker::System) {
            messages.insert(0, Line::say(Speaker::System, sys));
        }
    }
}

/// `POST /api/v1/chat/stream`: a session turn or a direct model call.
pub fn stream(c: &Call<'_>) -> ApiResult<Reply> {
    let body = c.body()?;
    if body.get("messages").is_some() || body.get("sessionId").is_none() {
        let direct = read_direct(c, &body, false, None)?;
        return submit(c, Work::Direct(direct), Style::ChatStream);
    }
    read_session_turn(c, &body, Style::ChatStream)
}

/// `POST /api/v1/chat/complete` (JWT or API key only).
pub fn complete(c: &Call<'_>) -> ApiResult<Reply> {
    let body = c.body()?;
    complete_with(c, &body, None)
}

/// A `/complete` call of `body`, with the agent `pinned` by a deployment or the one the
/// body names.
pub(super) fn complete_with(c: &Call<'_>, body: &Value, pinned: Option<Agent>) -> ApiResult<Reply> {
    if c.principal()?.kind == Kind::Sdk {
        return Err(ApiError::Forbidden(
            "SDK tokens cannot call /chat/complete".into(),
        ));
    }
    let direct = read_direct(c, body, true, pinned)?;
    submit(c, Work::Direct(direct), Style::Complete)
}

/// `GET /api/v1/chat/stream/:streamId` with `Last-Event-ID`: stored events after it, then
/// the live ones.
pub fn resume(c: &Call<'_>) -> ApiResult<Reply> {
    let p = c.principal()?;
    let stream_id = c.param(0).to_string();
    let after = match c.req.head.header("last-event-id") {
        None => 0,
        Some(v) => sse::parse_last_event_id(v).ok_or_else(|| {
            ApiError::BadRequest("Last-Event-ID must be a non-negative integer".into())
        })?,
    };
    let not_found = || ApiError::NotFound(format!("Stream not found: {stream_id}"));
    let store = c.api.store.clone();
    // Open here, it may not be in the store's reads yet (a shared store queues its start).
    let owner = c.api.runtime.hub().owner(&stream_id).or_else(|| {
        store
            .stream_events_after(&p.tenant, &stream_id, u64::MAX)
            .map(|r| r.owner)
    });
    if owner.as_deref() != Some(p.id.as_str()) {
        return Err(not_found());
    }
    let head = c.finish.apply(sse::head(&stream_id));
    let (reply, sender) = c.req.stream(head, crate::chat::runtime::STREAM_BUFFER * 4);
    let (tenant, sid) = (p.tenant.clone(), stream_id.clone());
    let reader = store.clone();
    let unfinished = c
        .api
        .runtime
        .hub()
        .resume(&stream_id, after, sender, move |after| {
            reader
                .stream_events_after(&tenant, &sid, after)
                .map(|r| r.events)
                .unwrap_or_default()
        });
    let Some(unfinished) = unfinished else {
        return Ok(reply);
    };
    if store.is_shared() {
        // Another node runs it (or ran it): follow its events as they arrive here.
        let patience = c.api.runtime.follow_patience();
        let tenant = p.tenant.clone();
        let follow = Follow::new(store, tenant, stream_id, unfinished, patience);
        c.req.spawn(Box::new(follow));
    } else {
        // Not running here, on the only node: a restart cut it short.
        hub::end_interrupted(&unfinished.0, unfinished.1);
    }
    Ok(reply)
}

/// `GET /api/v1/chat/usage?projectId=&startDate=&endDate=&groupBy=model`.
pub fn usage(c: &Call<'_>) -> ApiResult<Response> {
    let p = c.principal()?;
    let project_id = c
        .query("projectId")
        .ok_or_else(|| ApiError::BadRequest("Query parameter 'projectId' is required".into()))?;
    let project = c.visible_project(&project_id)?;
    let date = |name: &str| -> ApiResult<Option<u64>> {
        match c.query(name) {
            None => Ok(None),
            Some(v) => time::parse(&v).map(Some).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Query parameter '{name}' must be an ISO date (YYYY-MM-DD), from 1970 on"
                ))
            }),
        }
    };
    let from = date("startDate")?.unwrap_or(0);
    // An end date without a time covers that whole day.
    let to = match (date("endDate")?, c.query("endDate")) {
        (Some(t), Some(raw)) if raw.len() == 10 => t + 86_400_000 - 1,
        (Some(t), _) => t,
        (None, _) => u64::MAX,
    };
    if let Some(g) = c.query("groupBy") {
        if g != "model" {
            return Err(ApiError::BadRequest("groupBy must be model".into()));
        }
    }
    let store = &c.api.store;
    // An SDK token sees the usage of the sessions it opened only.
    let own: Option<HashSet<String>> = p.sdk.as_ref().map(|g| {
        let filter = halyard_storage::SessionFilter {
            created_by_token: Some(g.id.as_str()),
            ..Default::default()
        };
        let mut ids = HashSet::new();
        store.each_session(&p.tenant, &project.id, &filter, Page::ALL, &mut |s| {
            ids.insert(s.id.clone());
        });
        ids
    });
    let keep = own.as_ref().map(|ids| move |sid: &str| ids.contains(sid));
    let keep = keep.as_ref().map(|k| k as &dyn Fn(&str) -> bool);
    let mut by_model: Vec<(String, String, u64, f64, u64)> = Vec::new();
    let (mut tokens, mut total_cost, mut requests, mut latency) = (0u64, 0f64, 0u64, 0u64);
    for (agent_id, sum) in store.usage_totals(&p.tenant, &project.id, from, to, keep) {
        let agent = store.agent(&p.tenant, &project.id, &agent_id);
        let (model, provider) = agent
            .as_ref()
            .map_or(("unknown".to_string(), "unknown".to_string()), |a| {
                (a.model.model.clone(), a.model.provider.clone())
            });
        let priced = Usage {
            input_tokens: sum.input_tokens,
            output_tokens: sum.output_tokens,
            total_tokens: sum.total_tokens,
            latency_ms: sum.latency_ms,
        };
        let price = agent.as_ref().and_then(|a| cost(a, &priced)).unwrap_or(0.0);
        tokens += sum.total_tokens;
        total_cost += price;
        requests += sum.requests;
        latency += sum.latency_ms;
        match by_model
            .iter_mut()
            .find(|e| e.0 == model && e.1 == provider)
        {
            Some(e) => {
                e.2 += sum.total_tokens;
                e.3 += price;
                e.4 += sum.requests;
            }
            None => by_model.push((model, provider, sum.total_tokens, price, sum.requests)),
        }
    }
    let by_model: Vec<Value> = by_model
        .into_iter()
        .map(|(m, p, t, cost, n)| json!({"modelId": m, "provider": p, "totalTokens": t, "totalCost": cost, "requestCount": n}))
        .collect();
    Ok(reply::ok(vec![
        (
            "summary",
            json!({
                "totalTokens": tokens,
                "totalCost": total_cost,
                "requestCount": requests,
                "avgLatency": if requests == 0 { 0.0 } else { latency as f64 / requests as f64 },
            }),
        ),
        ("byModel", Value::Array(by_model)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_role_is_a_speaker() {
        for role in ROLES {
            assert!(speaker(role).is_some(), "{role}");
        }
    }
}
