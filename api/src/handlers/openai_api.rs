//! The OpenAI-compatible endpoint: `POST /v1/chat/completions` and `GET /v1/models`, so
//! that any OpenAI client talks to a deployed agent.
//!
//! The credential is an API key restricted to projects (`projectIds`); a model is
//! `projectSlug/env/agentSlug`: the version of the agent that the environment's active
//! deployment pins. A completion is a direct model call with that agent's model and
//! instructions (no session is stored), answered as a `chat.completion` or as
//! `chat.completion.chunk` frames ending in `data: [DONE]`. Errors on these routes take
//! OpenAI's shape (`chat::openai_compat`).

use halyard_engine::{Reply, Response};
use halyard_storage::{DeploymentStatus, Page};
use serde_json::json;

use super::chat::{self, CALL, MAX_MESSAGE, ROLES, TOOLS};
use super::deployed;
use super::Call;
use crate::auth::{Kind, Principal};
use crate::body::{Field, Fields, Item};
use crate::chat::openai_compat::{split_model, CompletionId};
use crate::chat::provider::Prompt;
use crate::chat::runtime::{Direct, Style, Work};
use crate::error::{ApiError, ApiResult};
use crate::time;

/// One message as OpenAI's clients send it (`content` may be `null` beside tool calls).
const MESSAGE: &[Field] = &[
    Field::one_of("role", &ROLES).required(),
    Field::text("content", 0, MAX_MESSAGE),
    Field::text("name", 0, 64),
    Field::list("tool_calls", Item::Object(CALL), 0, 32),
    Field::text("tool_call_id", 1, 128).required_if("role", "tool"),
];

const STREAM_OPTIONS: &[Field] = &[Field::bool("include_usage")];

/// The body of `POST /v1/chat/completions` (fields OpenAI's API has and these routes do not
/// use, such as `n` or `tool_choice`, are ignored).
pub(super) const COMPLETIONS_BODY: &[Field] = &[
    Field::text("model", 5, 200).required(),
    Field::list("messages", Item::Object(MESSAGE), 1, 1000).required(),
    Field::bool("stream"),
    Field::object("stream_options", STREAM_OPTIONS),
    Field::number("temperature", 0.0, 2.0),
    Field::whole("max_tokens", 1, 1_000_000),
    Field::whole("max_completion_tokens", 1, 1_000_000),
    TOOLS,
];

/// The principal, which must be an API key restricted to projects.
fn project_key<'c>(c: &Call<'c>) -> ApiResult<&'c Principal> {
    let p = c.principal()?;
    let key = matches!(p.kind, Kind::UserKey | Kind::ServiceKey);
    if !key || p.projects.is_empty() {
        return Err(ApiError::Forbidden(
            "The OpenAI-compatible endpoint takes an API key restricted to projects (projectIds)"
                .into(),
        ));
    }
    Ok(p)
}

/// `GET /v1/models`: every agent of every active deployment of the key's projects.
pub fn models(c: &Call<'_>) -> ApiResult<Response> {
    let p = project_key(c)?;
    let store = &c.api.store;
    let mut data = Vec::new();
    for project in store.projects(&p.tenant, Page::ALL).items {
        if !p.projects.contains(&project.id) {
            continue;
        }
        let active = store
            .deployments(&p.tenant, &project.id)
            .into_iter()
            .filter(|d| d.status == DeploymentStatus::Active);
        for d in active {
            for pin in &d.manifest {
                data.push(json!({
                    "id": format!("{}/{}/{}", project.slug, d.environment.as_str(), pin.agent_name),
                    "object": "model",
                    "created": d.activated_at / 1000,
                    "owned_by": project.slug,
                }));
            }
        }
    }
    let body = json!({"object": "list", "data": data});
    Ok(Response::json(200, body.to_string().into_bytes()))
}

/// `POST /v1/chat/completions`.
pub fn completions(c: &Call<'_>) -> ApiResult<Reply> {
    let p = project_key(c)?;
    let body = c.body()?;
    let mut f = Fields::of(&body, COMPLETIONS_BODY)?;
    let model = f.str("model").unwrap_or_default().to_string();
    let stream = f.bool("stream").unwrap_or(false);
    let mut include_usage = false;
    f.nested("stream_options", |o| {
        include_usage = o.bool("include_usage").unwrap_or(false);
    });
    let temperature = f.number("temperature");
    let max_tokens = f.whole("max_completion_tokens").or(f.whole("max_tokens"));
    let mut messages = chat::read_messages(&mut f);
    let tools = chat::read_tools(&mut f);
    f.finish()?;
    let (slug, env, agent) = split_model(&model).ok_or_else(|| {
        ApiError::NotFound(format!(
            "Model not found: {model} (models are projectSlug/environment/agentName)"
        ))
    })?;
    let (_, d, agent) = deployed::resolve(c, slug, env, agent)?;
    let agent = deployed::pinned_agent(c, &d, &agent)?;
    chat::add_instructions(&agent, &mut messages);
    let id = CompletionId {
        id: halyard_storage::ids::new_id("chatcmpl-"),
        created: time::now_ms() / 1000,
        model,
        include_usage,
    };
    let direct = Direct {
        tenant: p.tenant.clone(),
        prompt: Prompt {
            messages,
            model: agent.model.model.clone(),
            temperature: temperature.or(agent.model.temperature),
            max_tokens: max_tokens.or(agent.model.max_tokens),
            tools,
        },
        agent,
        owner: p.id.clone(),
        openai: Some(id),
    };
    let style = if stream {
        Style::OpenAiStream
    } else {
        Style::OpenAi
    };
    chat::submit(c, Work::Direct(direct), style)
}
