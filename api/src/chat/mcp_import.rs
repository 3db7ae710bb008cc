//! `POST /api/projects/:pid/tools/import-mcp`: a server's `tools/list` made into tools of
//! the project, as a task on the loop of the request.
//!
//! Responsible for: listing the server's tools (the same session, reach and credential as a
//! call), naming each tool (`[a-z0-9_-]{1,64}`, from its name on the server), keeping its
//! `inputSchema` as `parameters` when the schema check accepts it, replacing a project tool
//! of the same name only when it is the same server's same tool, storing them in one commit
//! and answering `201 {success, tools, skipped}` once it is durable. Not responsible for:
//! reading the request (the tool routes).

use std::sync::Arc;

use halyard_engine::client::{ExchangeId, FetchError, HttpEvent};
use halyard_engine::{Cx, Event, Responder, Response, Status, Task};
use halyard_storage::{ids, Mutation, StoreError, Tool, ToolType};
use serde_json::{json, Map, Value};

use super::http_tool::{every_deadline, Auth, DEFAULT_RESPONSE_LIMIT, DEFAULT_TIMEOUT_MS};
use super::mcp::{listed, Listed, McpSession, Work};
use super::runtime::Shared;
use crate::error::ApiError;
use crate::reply::Finish;
use crate::{schema, view};

/// What to import.
#[derive(Debug)]
pub struct McpImport {
    /// Tenant.
    pub tenant: String,
    /// Project.
    pub project_id: String,
    /// The tools' shared settings: `serverUrl`, and `auth`, `timeoutMs` when given.
    pub settings: Map<String, Value>,
    /// The deferred reply.
    pub responder: Responder,
    /// Headers every response of the request gets.
    pub finish: Finish,
}

/// The commit's durability, posted by the storage writer.
struct Stored(Result<(), StoreError>);

/// The task of one [`McpImport`].
pub(crate) struct McpImportTask {
    shared: Arc<Shared>,
    job: Option<McpImport>,
    session: Option<McpSession>,
    exchange: Option<ExchangeId>,
    answer: Option<(Vec<Tool>, Vec<Value>)>,
}

impl McpImportTask {
    pub(crate) fn new(shared: Arc<Shared>, job: McpImport) -> Self {
        McpImportTask {
            shared,
            job: Some(job),
            session: None,
            exchange: None,
            answer: None,
        }
    }

    fn start(&mut self, cx: &mut Cx<'_>) -> Status {
        let Some(job) = &self.job else {
            return Status::Done;
        };
        let settings = Value::Object(job.settings.clone());
        let url = settings["serverUrl"].as_str().unwrap_or_default();
        let url = match halyard_engine::client::Url::parse(url) {
            Ok(url) => url,
            Err(e) => return self.fail(ApiError::BadRequest(format!("serverUrl: {e}"))),
        };
        let mut headers = Vec::new();
        if let Some(auth) = Auth::from_config(&settings) {
            let opened = self
                .shared
                .open_secret(&job.tenant, &job.project_id, &auth.secret);
            match opened {
                Ok(secret) => headers.push(auth.header_for(&secret)),
                Err(e) => return self.fail(ApiError::BadRequest(e)),
            }
        }
        let session = McpSession::new(url, headers, Work::List);
        self.exchange = Some(cx.fetch(session.fetch(self.deadlines(), self.reach())));
        self.session = Some(session);
        Status::Pending
    }

    fn deadlines(&self) -> halyard_engine::client::FetchTimeouts {
        let ms = self
            .job
            .as_ref()
            .and_then(|j| j.settings.get("timeoutMs"))
            .and_then(Value::as_u64);
        every_deadline(std::time::Duration::from_millis(
            ms.unwrap_or(DEFAULT_TIMEOUT_MS),
        ))
    }

    fn reach(&self) -> halyard_engine::client::Reach {
        self.shared.cfg.tool_reach.clone()
    }

    fn on_http(&mut self, id: ExchangeId, event: HttpEvent, cx: &mut Cx<'_>) -> Status {
        if self.exchange != Some(id) {
            return Status::Pending;
        }
        let (deadlines, reach) = (self.deadlines(), self.reach());
        let Some(session) = &mut self.session else {
            return Status::Pending;
        };
        let result = match event {
            HttpEvent::Head(head) => match session.on_head(&head) {
                Ok(()) => return Status::Pending,
                Err(e) => Err(e),
            },
            HttpEvent::Body(bytes) => match session.on_body(&bytes) {
                Ok(None) => return Status::Pending,
                Ok(Some(result)) => {
                    cx.cancel(id);
                    Ok(result)
                }
                Err(e) => Err(e),
            },
            HttpEvent::End => session.on_end(),
            // An address tools may not reach is the request's fault, not the server's.
            HttpEvent::Failed(e @ FetchError::Forbidden(_)) => {
                self.exchange = None;
                return self.fail(ApiError::BadRequest(format!("serverUrl: {e}")));
            }
            HttpEvent::Failed(e) => Err(format!("the MCP server could not be reached: {e}")),
        };
        // The step is over: the exchange's later events (its end, after an answer that came
        // on a stream we cancelled) are not this step's.
        self.exchange = None;
        match result {
            // The server is a dependency, as a model provider is: its failure is a 503.
            Err(e) => self.fail(ApiError::Unavailable(e)),
            Ok(_) if session.advance() => {
                let next = session.fetch(deadlines, reach);
                self.exchange = Some(cx.fetch(next));
                Status::Pending
            }
            Ok(result_of_list) => self.store(&listed(&result_of_list), cx),
        }
    }

    /// The listed tools as project tools, stored in one commit.
    fn store(&mut self, found: &[Listed], cx: &mut Cx<'_>) -> Status {
        let Some(job) = &self.job else {
            return Status::Done;
        };
        let now = crate::time::now_ms();
        let (mut tools, mut skipped) = (Vec::new(), Vec::new());
        for t in found {
            match self.tool_of(job, t, now) {
                Ok(tool) => tools.push(tool),
                Err(reason) => skipped.push(json!({"name": t.name, "reason": reason})),
            }
        }
        let muts = tools.iter().cloned().map(Mutation::PutTool).collect();
        let task = cx.handle();
        let committed = self.shared.store.commit_queued(
            &job.tenant,
            muts,
            Some(Box::new(move |r| task.post(Box::new(Stored(r))))),
        );
        if let Err(e) = committed {
            return self.fail(e.into());
        }
        self.answer = Some((tools, skipped));
        Status::Pending
    }

    /// The project tool for a listed one, or why there is none.
    fn tool_of(&self, job: &McpImport, t: &Listed, now: u64) -> Result<Tool, String> {
        let name = tool_name(&t.name);
        schema::check_parameters(&t.input_schema)
            .map_err(|e| format!("its inputSchema is not supported: {e}"))?;
        let mut config = job.settings.clone();
        config.insert("toolName".into(), t.name.clone().into());
        config
            .entry("timeoutMs")
            .or_insert_with(|| DEFAULT_TIMEOUT_MS.into());
        config
            .entry("responseLimit")
            .or_insert_with(|| DEFAULT_RESPONSE_LIMIT.into());
        let existing = self
            .shared
            .store
            .tool_by_name(&job.tenant, &job.project_id, &name);
        if let Some(e) = &existing {
            let same = serde_json::from_str::<Value>(&e.config).is_ok_and(|c| {
                Some(&c["serverUrl"]) == config.get("serverUrl")
                    && Some(&c["toolName"]) == config.get("toolName")
            });
            if !same {
                return Err(format!("the project has another tool named {name}"));
            }
        }
        Ok(Tool {
            id: existing
                .as_ref()
                .map_or_else(|| ids::new_id(ids::TOOL), |e| e.id.clone()),
            project_id: job.project_id.clone(),
            name,
            description: t.description.clone(),
            tool_type: ToolType::Mcp,
            parameters: t.input_schema.to_string(),
            config: Value::Object(config).to_string(),
            created_at: existing.map_or(now, |e| e.created_at),
            updated_at: now,
        })
    }

    fn on_stored(&mut self, r: Result<(), StoreError>) -> Status {
        let (Some(job), Some((tools, skipped))) = (self.job.take(), self.answer.take()) else {
            return Status::Done;
        };
        let resp = match r {
            Ok(()) => {
                let tools: Vec<Value> = tools.iter().map(view::tool).collect();
                let body = json!({"success": true, "tools": tools, "skipped": skipped});
                Response::json(201, serde_json::to_vec(&body).unwrap_or_default())
            }
            Err(e) => ApiError::from(e).into_response(),
        };
        job.responder.send(job.finish.apply(resp));
        Status::Done
    }

    fn fail(&mut self, e: ApiError) -> Status {
        if let Some(job) = self.job.take() {
            job.responder.send(job.finish.apply(e.into_response()));
        }
        Status::Done
    }
}

/// A server's tool name as a project tool name: lower case, other characters `_`, at most
/// 64 bytes.
fn tool_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '_') => c,
            _ => '_',
        })
        .take(64)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

impl Task for McpImportTask {
    fn on_event(&mut self, event: Event, cx: &mut Cx<'_>) -> Status {
        match event {
            Event::Start => self.start(cx),
            Event::Http(id, e) => self.on_http(id, e, cx),
            Event::Message(m) => match m.downcast::<Stored>() {
                Ok(stored) => self.on_stored(stored.0),
                Err(_) => Status::Pending,
            },
            Event::Shutdown => {
                if let Some(id) = self.exchange.take() {
                    cx.cancel(id);
                }
                if self.answer.is_some() {
                    // Being stored: the answer follows.
                    return Status::Pending;
                }
                self.fail(ApiError::Unavailable("The server is shutting down".into()))
            }
            _ => Status::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_become_tool_names() {
        assert_eq!(tool_name("add"), "add");
        assert_eq!(tool_name("Get Weather.v2"), "get_weather_v2");
        assert_eq!(tool_name(""), "_");
        assert_eq!(tool_name(&"x".repeat(100)).len(), 64);
    }
}
