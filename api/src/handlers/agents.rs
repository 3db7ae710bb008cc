//! Agent routes (`/api/projects/:pid/agents`, `/api/agents`).

use halyard_engine::{Reply, Response};
use halyard_storage::{ids, Agent, ModelConfig, Mutation, Page, Pricing, Project};
use serde_json::Value;

use super::projects::page_of;
use super::Call;
use crate::body::{is_agent_name, Fields};
use crate::error::{ApiError, ApiResult};
use crate::{reply, time, view};

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
}

fn read_model(f: &mut Fields<'_>) -> ModelConfig {
    let mut m = crate::chat::provider::echo_model();
    f.nested("model", |mf| {
        let provider = mf.opt_str("provider", 16).unwrap_or("echo");
        if !matches!(provider, "echo" | "openai") {
            mf.fail("provider", "must be echo or openai");
        }
        m.provider = provider.to_string();
        let default_model = if provider == "openai" {
            None
        } else {
            Some("echo")
        };
        match mf.opt_str("model", 128).or(default_model) {
            Some(name) if !name.is_empty() => m.model = name.to_string(),
            _ => mf.fail("model", "is required for the openai provider"),
        }
        m.base_url = mf.opt_str("baseUrl", 2048).map(String::from);
        if m.base_url
            .as_deref()
            .is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            mf.fail("baseUrl", "must be an http:// or https:// URL");
        }
        if provider == "openai" && m.base_url.is_none() {
            m.base_url = Some(crate::chat::openai::DEFAULT_BASE_URL.into());
        }
        m.api_key_secret = mf.opt_str("apiKeySecret", 128).map(String::from);
        m.temperature = mf.opt_f64("temperature", 0.0, 2.0);
        m.max_tokens = mf.opt_u64("maxTokens", 1, 1_000_000);
        let mut pricing = None;
        mf.nested("pricing", |pf| {
            let input = pf.opt_f64("inputPerMTok", 0.0, 1e9).unwrap_or(0.0);
            let output = pf.opt_f64("outputPerMTok", 0.0, 1e9).unwrap_or(0.0);
            pricing = Some(Pricing {
                input_per_mtok: input,
                output_per_mtok: output,
            });
        });
        m.pricing = pricing;
    });
    m
}

/// Validates an agent body (`name_required` on create).
pub fn read_agent(f: &mut Fields<'_>, name_required: bool) -> AgentInput {
    let name = if name_required {
        f.req_str("name", 64)
    } else {
        f.opt_str("name", 64)
    };
    if name.is_some_and(|n| !is_agent_name(n)) {
        f.fail("name", "must match [a-z0-9-]{1,64}");
    }
    AgentInput {
        name: name.map(String::from),
        description: f.opt_str("description", 2000).map(String::from),
        instructions: f.opt_str("instructions", 100_000).map(String::from),
        model: read_model(f),
        dsl_content: f.opt_str("dslContent", 1_000_000).map(String::from),
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
        }
    }
}

/// The agent named by capture 1 in `project`.
fn find(c: &Call<'_>, project: &Project) -> ApiResult<Agent> {
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
    let mut f = Fields::of(&body)?;
    let input = read_agent(&mut f, true);
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
    let mut f = Fields::of(&body)?;
    let input = read_agent(&mut f, false);
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
    let mut f = Fields::of(&body)?;
    let dsl = f.req_str("dslContent", 1_000_000);
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
