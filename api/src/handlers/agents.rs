//! Agent routes (`/api/projects/:pid/agents`, `/api/agents`).

use halyard_engine::{Reply, Response};
use halyard_storage::{ids, Agent, ModelConfig, Mutation, Page, Pricing, Project};
use serde_json::Value;

use super::projects::page_of;
use super::Call;
use crate::body::{Field, Fields, Item, Text, AGENT_NAME, HTTP_URL, TOOL_NAME};
use crate::error::{ApiError, ApiResult};
use crate::{reply, time, view};

/// The longest agent name (as [`AGENT_NAME`] allows).
const MAX_NAME: usize = 64;
/// The longest DSL text.
const MAX_DSL: usize = 1_000_000;

/// A model's sampling temperature (also a direct model call's).
pub(super) const TEMPERATURE: Field = Field::number("temperature", 0.0, 2.0);
/// The most tokens a model may answer with (also a direct model call's).
pub(super) const MAX_TOKENS: Field = Field::whole("maxTokens", 1, 1_000_000);

/// Prices per million tokens.
const PRICING: &[Field] = &[
    Field::number("inputPerMTok", 0.0, 1e9),
    Field::number("outputPerMTok", 0.0, 1e9),
];

/// An agent's model settings: an echo agent defaults its model name, an openai one must
/// name it.
const MODEL: &[Field] = &[
    Field::one_of("provider", &["echo", "openai"]),
    Field::text("model", 1, 128).required_if("provider", "openai"),
    Field::text("baseUrl", 0, 2048).format(HTTP_URL),
    Field::text("apiKeySecret", 0, 128),
    TEMPERATURE,
    MAX_TOKENS,
    Field::object("pricing", PRICING),
];

/// Names of the project's tools an agent may call.
const TOOLS: Field = Field::list(
    "tools",
    Item::Text(Text::new(1, 64).format(TOOL_NAME)),
    0,
    MAX_TOOLS,
);
/// The most tools one agent offers the model.
const MAX_TOOLS: usize = 64;
/// The most model calls of one turn.
const ITERATIONS: Field = Field::whole("maxToolIterations", 1, 64);

// An agent's fields besides its name, the same in both bodies.
const DESCRIPTION: Field = Field::text("description", 0, 2000);
const INSTRUCTIONS: Field = Field::text("instructions", 0, 100_000);
const MODEL_FIELD: Field = Field::object("model", MODEL);
const DSL: Field = Field::text("dslContent", 0, MAX_DSL);

/// The body of `POST /api/projects/:pid/agents` (and of each agent of an import).
pub(super) const CREATE_BODY: &[Field] = &[
    Field::text("name", 1, MAX_NAME)
        .format(AGENT_NAME)
        .required(),
    DESCRIPTION,
    INSTRUCTIONS,
    MODEL_FIELD,
    DSL,
    TOOLS,
    ITERATIONS,
];

/// The body of `PUT /api/projects/:pid/agents/:name`: the path names the agent.
pub(super) const PUT_BODY: &[Field] = &[
    Field::text("name", 0, MAX_NAME).format(AGENT_NAME),
    DESCRIPTION,
    INSTRUCTIONS,
    MODEL_FIELD,
    DSL,
    TOOLS,
    ITERATIONS,
];

/// The body of `PUT /api/projects/:pid/agents/:name/dsl`.
pub(super) const DSL_BODY: &[Field] = &[Field::text("dslContent", 1, MAX_DSL).required()];

/// An agent's fields as sent in a body, validated.
pub struct AgentInput {
    /// Name (absent allowed only where the path names the agent).
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// System prompt.
    pub instructions: Option<String>,
    /// Model settings.
    pub model: ModelConfig,
    /// DSL text.
    pub dsl_content: Option<String>,
    /// Names of the project's tools it may call.
    pub tools: Vec<String>,
    /// Its model-call budget per turn.
    pub max_tool_iterations: u32,
}

fn read_model(f: &mut Fields<'_>) -> ModelConfig {
    let mut m = crate::chat::provider::echo_model();
    f.nested("model", |mf| {
        let provider = mf.str("provider").unwrap_or("echo");
        m.provider = provider.to_string();
        if let Some(name) = mf.str("model") {
            m.model = name.to_string();
        }
        m.base_url = mf.str("baseUrl").map(String::from);
        if provider == "openai" && m.base_url.is_none() {
            m.base_url = Some(crate::chat::openai::DEFAULT_BASE_URL.into());
        }
        m.api_key_secret = mf.str("apiKeySecret").map(String::from);
        m.temperature = mf.number("temperature");
        m.max_tokens = mf.whole("maxTokens");
        let mut pricing = None;
        mf.nested("pricing", |pf| {
            pricing = Some(Pricing {
                input_per_mtok: pf.number("inputPerMTok").unwrap_or(0.0),
                output_per_mtok: pf.number("outputPerMTok").unwrap_or(0.0),
            });
        });
        m.pricing = pricing;
    });
    m
}

/// Validates an agent body, read with [`CREATE_BODY`] or [`PUT_BODY`].
pub fn read_agent(f: &mut Fields<'_>) -> AgentInput {
    AgentInput {
        name: f.str("name").map(String::from),
        description: f.str("description").map(String::from),
        instructions: f.str("instructions").map(String::from),
        model: read_model(f),
        dsl_content: f.str("dslContent").map(String::from),
        tools: read_tools(f),
        max_tool_iterations: f
            .whole("maxToolIterations")
            .map_or(halyard_storage::DEFAULT_MAX_TOOL_ITERATIONS, |n| n as u32),
    }
}

/// The tool names, each once, in the order given.
fn read_tools(f: &mut Fields<'_>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in f.strings("tools").unwrap_or_default() {
        if names.iter().any(|n| n == name) {
            f.fail("tools", format!("{name} is named twice"));
        } else {
            names.push(name.into());
        }
    }
    names
}

/// Fails `tools` for each name that is not a tool of the project.
pub fn check_tools(c: &Call<'_>, f: &mut Fields<'_>, project: &Project, names: &[String]) {
    let Ok(tenant) = c.tenant() else {
        return;
    };
    for name in names {
        if c.api
            .store
            .tool_by_name(tenant, &project.id, name)
            .is_none()
        {
            f.fail("tools", format!("{name} is not a tool of this project"));
        }
    }
}

impl AgentInput {
    /// The agent these fields describe, keeping `id` and `created_at` of a replaced one.
    pub fn into_agent(self, project_id: &str, existing: Option<&Agent>, now: u64) -> Agent {
        Agent {
            id: existing.map_or_else(|| ids::new_id(ids::AGENT), |a| a.id.clone()),
            project_id: project_id.to_string(),
            name: self
                .name
                .or_else(|| existing.map(|a| a.name.clone()))
                .unwrap_or_default(),
            description: self.description,
            instructions: self.instructions,
            model: self.model,
            dsl_content: self.dsl_content,
            created_at: existing.map_or(now, |a| a.created_at),
            updated_at: now,
            tools: self.tools,
            max_tool_iterations: self.max_tool_iterations,
        }
    }
}

/// The agent named by capture 1 in `project`.
pub(super) fn find(c: &Call<'_>, project: &Project) -> ApiResult<Agent> {
    let name = c.param(1);
    c.api
        .store
        .agent_by_name(c.tenant()?, &project.id, name)
        .ok_or_else(|| ApiError::NotFound(format!("Agent not found: {name}")))
}

/// `GET /api/projects/:pid/agents`.
pub fn list(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let page = c.page()?;
    let listed = c.api.store.agents(c.tenant()?, Some(&project.id), page);
    Ok(reply::list_of("agents", &listed, page, |out, a| {
        reply::ser(out, &view::AgentView::of(a))
    }))
}

/// `POST /api/projects/:pid/agents`.
pub fn create(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let body = c.body()?;
    let mut f = Fields::of(&body, CREATE_BODY)?;
    let input = read_agent(&mut f);
    check_tools(c, &mut f, &project, &input.tools);
    f.finish()?;
    let agent = input.into_agent(&project.id, None, time::now_ms());
    let resp = reply::created(vec![("agent", view::agent(&agent))]);
    c.commit(vec![Mutation::PutAgent(agent)], resp)
}

/// `GET /api/projects/:pid/agents/:name`.
pub fn get(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    Ok(reply::ok(vec![("agent", view::agent(&find(c, &project)?))]))
}

/// `PUT /api/projects/:pid/agents/:name`: whole replacement.
pub fn replace(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let existing = find(c, &project)?;
    let body = c.body()?;
    let mut f = Fields::of(&body, PUT_BODY)?;
    let input = read_agent(&mut f);
    check_tools(c, &mut f, &project, &input.tools);
    f.finish()?;
    let agent = input.into_agent(&project.id, Some(&existing), time::now_ms());
    let resp = reply::ok(vec![("agent", view::agent(&agent))]);
    c.commit(vec![Mutation::PutAgent(agent)], resp)
}

/// `PUT /api/projects/:pid/agents/:name/dsl`.
pub fn set_dsl(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let mut agent = find(c, &project)?;
    let body = c.body()?;
    let mut f = Fields::of(&body, DSL_BODY)?;
    let dsl = f.str("dslContent");
    f.finish()?;
    agent.dsl_content = dsl.map(String::from);
    agent.updated_at = time::now_ms();
    let resp = reply::ok(vec![(
        "updatedAt",
        Value::String(time::iso(agent.updated_at)),
    )]);
    c.commit(vec![Mutation::PutAgent(agent)], resp)
}

/// `DELETE /api/projects/:pid/agents/:name`.
pub fn delete(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let agent = find(c, &project)?;
    let deployed = super::deployments::users_of(c, &project.id, &agent.name)?;
    if !deployed.is_empty() {
        let ids: Vec<&str> = deployed.iter().map(|d| d.id.as_str()).collect();
        return Err(ApiError::Conflict(format!(
            "Agent {} is pinned by active deployments: {} (retire them first)",
            agent.name,
            ids.join(", ")
        )));
    }
    let m = Mutation::DeleteAgent {
        project_id: project.id,
        id: agent.id,
    };
    c.commit(vec![m], crate::success())
}

/// `GET /api/agents`: agents of every project the principal sees.
pub fn directory(c: &Call<'_>) -> ApiResult<Response> {
    let p = c.principal()?;
    let page = c.page()?;
    let listed = if p.projects.is_empty() {
        c.api.store.agents(&p.tenant, None, page)
    } else {
        let all = c.api.store.agents(&p.tenant, None, Page::ALL).items;
        page_of(
            all.into_iter()
                .filter(|a| p.sees_project(&a.project_id))
                .collect(),
            page,
        )
    };
    Ok(reply::list_of("agents", &listed, page, |out, a| {
        reply::ser(out, &view::AgentView::of(a))
    }))
}

/// `GET /api/agents/:name` (`?projectId=` when the name is in several projects).
pub fn by_name(c: &Call<'_>) -> ApiResult<Response> {
    let p = c.principal()?;
    let name = c.param(0);
    let want = c.query("projectId");
    let mut found: Vec<Agent> = c
        .api
        .store
        .agents_named(&p.tenant, name)
        .into_iter()
        .filter(|a| p.sees_project(&a.project_id))
        .filter(|a| want.as_deref().is_none_or(|w| w == a.project_id))
        .collect();
    let agent = match found.len() {
        0 => return Err(ApiError::NotFound(format!("Agent not found: {name}"))),
        1 => found.remove(0),
        _ => {
            return Err(ApiError::BadRequest(format!(
                "Agent name {name} is in several projects: pass ?projectId="
            )))
        }
    };
    Ok(reply::ok_one("agent", &view::AgentView::of(&agent))
        .with_header("Cache-Control", "private, max-age=300"))
}
