//! Tool routes (`/api/projects/:pid/tools`): HTTP and MCP tools that a project's agents may
//! call.
//!
//! A tool's type-specific settings are kept as one JSON object (`Tool::config`), so storage
//! needs no JSON; this module owns their shape. Credentials never sit in a definition: they
//! name a project secret (`auth.secret`), and headers or URLs that carry one are refused.

use halyard_engine::{Reply, Response};
use halyard_storage::{ids, Agent, Mutation, Page, Project, Tool, ToolType};
use serde_json::{Map, Value};

use super::Call;
use crate::body::{Field, Fields, HTTP_URL, SECRET_NAME, TOOL_NAME};
use crate::chat::http_tool::{DEFAULT_RESPONSE_LIMIT, DEFAULT_TIMEOUT_MS};
use crate::error::{ApiError, ApiResult};
use crate::{reply, schema, time, view};

/// The largest `responseLimit`.
pub const MAX_RESPONSE_LIMIT: u64 = 10 * 1024 * 1024;

/// Headers that carry credentials: a definition names a secret instead (`auth`).
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "api-key",
];

const AUTH: &[Field] = &[
    Field::one_of("type", &["bearer", "header", "basic"]).required(),
    Field::text("secret", 1, 128).format(SECRET_NAME).required(),
    Field::text("header", 1, 128),
];

/// The body of `POST /api/projects/:pid/tools` and `PUT .../tools/:toolId`.
pub(super) const BODY: &[Field] = &[
    Field::text("name", 1, 64).format(TOOL_NAME).required(),
    Field::text("description", 0, 2000),
    Field::one_of("toolType", &["http", "mcp"]).required(),
    Field::json("parameters", 64 * 1024),
    Field::one_of("method", &["GET", "POST", "PUT", "PATCH", "DELETE"]),
    Field::text("url", 1, 2048)
        .format(HTTP_URL)
        .required_if("toolType", "http"),
    Field::json("headers", 16 * 1024),
    Field::json("query", 16 * 1024),
    Field::json("body", 64 * 1024),
    Field::object("auth", AUTH),
    Field::whole("responseLimit", 1, MAX_RESPONSE_LIMIT),
    Field::whole("timeoutMs", 1_000, 300_000),
    Field::text("serverUrl", 1, 2048)
        .format(HTTP_URL)
        .required_if("toolType", "mcp"),
    Field::text("toolName", 1, 128).required_if("toolType", "mcp"),
];

/// The body of `POST /api/projects/:pid/tools/:toolId/test`.
pub(super) const TEST_BODY: &[Field] = &[
    Field::json("input", 64 * 1024),
    Field::whole("timeoutMs", 1_000, 300_000),
];

/// The body of `POST /api/projects/:pid/tools/import-mcp`.
pub(super) const IMPORT_MCP_BODY: &[Field] = &[
    Field::text("serverUrl", 1, 2048)
        .format(HTTP_URL)
        .required(),
    Field::object("auth", AUTH),
    Field::whole("timeoutMs", 1_000, 300_000),
];

/// Fields that only an HTTP tool has, and those only an MCP tool has.
const HTTP_ONLY: &[&str] = &["method", "url", "headers", "query", "body"];
const MCP_ONLY: &[&str] = &["serverUrl", "toolName"];

/// A tool's fields as sent, validated; `id` and times come from the route.
pub(super) struct ToolInput {
    /// Its name.
    pub(super) name: String,
    description: Option<String>,
    tool_type: ToolType,
    parameters: String,
    config: Map<String, Value>,
}

/// Reads a tool body declared by [`BODY`] (also each tool of an import).
pub(super) fn read(f: &mut Fields<'_>) -> ToolInput {
    let name = f.str("name").unwrap_or_default().to_string();
    let description = f.str("description").map(String::from);
    let tool_type = match f.str("toolType") {
        Some("mcp") => ToolType::Mcp,
        _ => ToolType::Http,
    };
    let parameters = f
        .json_text("parameters")
        .unwrap_or_else(|| r#"{"type":"object","properties":{}}"#.into());
    if let Ok(schema) = serde_json::from_str::<Value>(&parameters) {
        if let Err(e) = schema::check_parameters(&schema) {
            f.fail("parameters", e);
        }
    }
    let (own, foreign) = match tool_type {
        ToolType::Http => (HTTP_ONLY, MCP_ONLY),
        ToolType::Mcp => (MCP_ONLY, HTTP_ONLY),
    };
    for key in foreign {
        if f.has(key) {
            f.fail(key, "is not a field of this toolType");
        }
    }
    let mut config = Map::new();
    for key in own.iter().chain(&["auth", "responseLimit", "timeoutMs"]) {
        if let Some(v) = read_setting(f, key) {
            config.insert((*key).into(), v);
        }
    }
    check_setting(f, &config);
    ToolInput {
        name,
        description,
        tool_type,
        parameters,
        config,
    }
}

/// One type-specific setting, validated by its declaration.
fn read_setting(f: &mut Fields<'_>, key: &str) -> Option<Value> {
    let text = |s: &str| Value::String(s.into());
    match key {
        "method" | "url" | "serverUrl" | "toolName" => f.str(key).map(text),
        "responseLimit" | "timeoutMs" => f.whole(key).map(Value::from),
        "auth" => {
            let mut auth = Map::new();
            f.nested(key, |a| {
                for k in ["type", "secret", "header"] {
                    if let Some(v) = a.str(k) {
                        auth.insert(k.into(), text(v));
                    }
                }
            });
            (!auth.is_empty()).then_some(Value::Object(auth))
        }
        _ => f.json_text(key).and_then(|t| serde_json::from_str(&t).ok()),
    }
}

/// The rules a declaration cannot state: no credentials in URLs or headers, string values
/// in `headers` and `query`, header names that are tokens.
fn check_setting(f: &mut Fields<'_>, config: &Map<String, Value>) {
    const NAME_A_SECRET: &str = "must not carry credentials: name a secret in auth.secret";
    for url in ["url", "serverUrl"] {
        if config
            .get(url)
            .and_then(Value::as_str)
            .is_some_and(has_userinfo)
        {
            f.fail(url, NAME_A_SECRET);
        }
    }
    for name in ["headers", "query"] {
        let Some(Value::Object(map)) = config.get(name) else {
            continue;
        };
        if let Some((k, _)) = map.iter().find(|(_, v)| !v.is_string()) {
            f.fail(name, format!("{k}: values must be strings"));
        }
        if name == "headers" {
            if let Some(bad) = map.keys().find(|h| !is_token(h)) {
                f.fail(name, format!("{bad:?} is not a header name"));
            }
            let lower = |h: &String| h.to_ascii_lowercase();
            if map
                .keys()
                .map(lower)
                .any(|h| CREDENTIAL_HEADERS.contains(&h.as_str()))
            {
                f.fail(name, NAME_A_SECRET);
            }
        }
    }
}

/// Whether a URL names a user or password before its host.
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

/// An RFC 9110 token (a header name).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl ToolInput {
    /// The tool these fields describe, keeping `id` and `created_at` of a replaced one.
    pub(super) fn into_tool(mut self, project_id: &str, existing: Option<&Tool>, now: u64) -> Tool {
        // Stored with their effective values, so a client reads what a call will use.
        let defaults = [
            ("responseLimit", Value::from(DEFAULT_RESPONSE_LIMIT)),
            ("timeoutMs", Value::from(DEFAULT_TIMEOUT_MS)),
        ];
        for (k, v) in defaults {
            self.config.entry(k).or_insert(v);
        }
        if self.tool_type == ToolType::Http {
            self.config.entry("method").or_insert_with(|| "GET".into());
        }
        Tool {
            id: existing.map_or_else(|| ids::new_id(ids::TOOL), |t| t.id.clone()),
            project_id: project_id.into(),
            name: self.name,
            description: self.description,
            tool_type: self.tool_type,
            parameters: self.parameters,
            config: Value::Object(self.config).to_string(),
            created_at: existing.map_or(now, |t| t.created_at),
            updated_at: now,
        }
    }
}

fn validated(c: &Call<'_>) -> ApiResult<ToolInput> {
    let body = c.body()?;
    let mut f = Fields::of(&body, BODY)?;
    let input = read(&mut f);
    f.finish()?;
    Ok(input)
}

/// The tool named by capture 1 (its id) in `project`.
fn find(c: &Call<'_>, project: &Project) -> ApiResult<Tool> {
    let id = c.param(1);
    c.api
        .store
        .tool(c.tenant()?, &project.id, id)
        .ok_or_else(|| ApiError::NotFound(format!("Tool not found: {id}")))
}

/// The project's agents that name the tool `name`.
fn users_of(c: &Call<'_>, project: &Project, name: &str) -> ApiResult<Vec<Agent>> {
    let all = c
        .api
        .store
        .agents(c.tenant()?, Some(&project.id), Page::ALL);
    Ok(all
        .items
        .into_iter()
        .filter(|a| a.tools.iter().any(|t| t == name))
        .collect())
}

/// `GET /api/projects/:pid/tools`.
pub fn list(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let page = c.page()?;
    let listed = c.api.store.tools(c.tenant()?, &project.id, page);
    Ok(reply::list("tools", &listed, page, view::tool))
}

/// `POST /api/projects/:pid/tools`.
pub fn create(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let tool = validated(c)?.into_tool(&project.id, None, time::now_ms());
    let resp = reply::created(vec![("tool", view::tool(&tool))]);
    c.commit(vec![Mutation::PutTool(tool)], resp)
}

/// `GET /api/projects/:pid/tools/:toolId`.
pub fn get(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    Ok(reply::ok(vec![("tool", view::tool(&find(c, &project)?))]))
}

/// `PUT /api/projects/:pid/tools/:toolId`: whole replacement. A new name is carried into
/// the agents that use the tool, in the same commit.
pub fn replace(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let existing = find(c, &project)?;
    let tool = validated(c)?.into_tool(&project.id, Some(&existing), time::now_ms());
    let mut mutations = Vec::new();
    if tool.name != existing.name {
        for mut agent in users_of(c, &project, &existing.name)? {
            for t in agent.tools.iter_mut().filter(|t| **t == existing.name) {
                t.clone_from(&tool.name);
            }
            mutations.push(Mutation::PutAgent(agent));
        }
    }
    let resp = reply::ok(vec![("tool", view::tool(&tool))]);
    mutations.insert(0, Mutation::PutTool(tool));
    c.commit(mutations, resp)
}

/// `DELETE /api/projects/:pid/tools/:toolId`: `409` while agents use it, unless
/// `?force=true`, which takes it out of their tool lists in the same commit.
pub fn delete(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let tool = find(c, &project)?;
    let users = users_of(c, &project, &tool.name)?;
    let force = c.query("force").as_deref() == Some("true");
    if !users.is_empty() && !force {
        let names: Vec<&str> = users.iter().map(|a| a.name.as_str()).collect();
        return Err(ApiError::Conflict(format!(
            "Tool {} is used by agents: {} (delete with ?force=true to detach it)",
            tool.name,
            names.join(", ")
        )));
    }
    let mut mutations: Vec<Mutation> = users
        .into_iter()
        .map(|mut a| {
            a.tools.retain(|t| *t != tool.name);
            Mutation::PutAgent(a)
        })
        .collect();
    mutations.push(Mutation::DeleteTool {
        project_id: project.id,
        id: tool.id,
    });
    c.commit(mutations, crate::success())
}

/// `POST /api/projects/:pid/tools/:toolId/test`: one call with `input`, answered with its
/// output once it ends (`{success, data: {output, durationMs, error?}}`).
pub fn test(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let mut tool = find(c, &project)?;
    let body = c.body()?;
    let mut f = Fields::of(&body, TEST_BODY)?;
    let input = f.json_text("input").unwrap_or_else(|| "{}".into());
    let timeout = f.whole("timeoutMs");
    f.finish()?;
    if let Some(ms) = timeout {
        let mut config: Map<String, Value> = serde_json::from_str(&tool.config).unwrap_or_default();
        config.insert("timeoutMs".into(), ms.into());
        tool.config = Value::Object(config).to_string();
    }
    let (reply, responder) = c.req.defer();
    let test = crate::chat::tool_test::ToolTest {
        tenant: c.tenant()?.to_string(),
        tool,
        input: serde_json::from_str(&input).unwrap_or_default(),
        responder,
        finish: c.finish.clone(),
    };
    c.api.runtime.test_tool(c.req, test);
    Ok(reply)
}

/// `POST /api/projects/:pid/tools/import-mcp`: the server's tools become tools of the
/// project (`201 {success, tools, skipped}` once stored).
pub fn import_mcp(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let body = c.body()?;
    let mut f = Fields::of(&body, IMPORT_MCP_BODY)?;
    let mut settings = Map::new();
    for key in ["serverUrl", "auth", "timeoutMs"] {
        if let Some(v) = read_setting(&mut f, key) {
            settings.insert(key.into(), v);
        }
    }
    check_setting(&mut f, &settings);
    f.finish()?;
    let (reply, responder) = c.req.defer();
    let job = crate::chat::mcp_import::McpImport {
        tenant: c.tenant()?.to_string(),
        project_id: project.id,
        settings,
        responder,
        finish: c.finish.clone(),
    };
    c.api.runtime.import_mcp(c.req, job);
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_found() {
        assert!(has_userinfo("https://user:pw@api.example/x"));
        assert!(has_userinfo("http://token@api.example"));
        assert!(!has_userinfo("https://api.example/a@b?c=d@e"));
        assert!(!has_userinfo("https://api.example/{city}"));
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(is_token("X-Request-Id"));
        assert!(!is_token("Bad Header"));
        assert!(!is_token(""));
    }
}
