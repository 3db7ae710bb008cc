//! One round of tool calls: every call a model asked for in one answer, run at once.
//!
//! Responsible for: finding each called tool among the agent's, checking the model's
//! arguments against the tool's `parameters` (invalid ones go back to the model as an error
//! result, nothing is called), starting HTTP calls through the loop's client (with the
//! turn's [`Reach`] and a project secret for `auth`), following redirects under the same
//! rule, and the result of each call with its duration, in the order the model asked.
//! Not responsible for: storing messages, events or calling the model again (the turn).

use std::time::Instant;

use halyard_engine::client::{ExchangeId, Fetch, FetchError, FetchTimeouts, HttpEvent, Reach, Url};
use halyard_engine::Cx;
use halyard_storage::{Tool, ToolType};
use serde_json::Value;

use super::http_tool::{cut, every_deadline, Collected, HttpTool, Outcome, MAX_REDIRECTS};
use super::mcp::{call_outcome, McpSession, McpTool, Work};
use super::provider::{ToolCall, ToolSpec};
use crate::schema;

/// What a finished call gave the model: its result or its error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// The call.
    pub call: ToolCall,
    /// The tool's answer, or why there is none.
    pub outcome: Result<String, String>,
    /// How long it took.
    pub duration_ms: u64,
}

impl CallResult {
    /// The text the model reads: the result, or `Error: ...`.
    pub fn for_model(&self) -> String {
        match &self.outcome {
            Ok(text) => text.clone(),
            Err(e) => format!("Error: {e}"),
        }
    }
}

enum State {
    Http(Box<HttpCall>),
    Mcp(Box<McpCall>),
    Done(Result<String, String>),
}

/// An MCP call in progress: a session of a few requests.
struct McpCall {
    session: McpSession,
    exchange: ExchangeId,
    timeouts: FetchTimeouts,
    reach: Reach,
    response_limit: u64,
}

/// An HTTP call in progress.
struct HttpCall {
    tool: HttpTool,
    /// The URL of the current exchange (redirects are resolved against it).
    url: Url,
    exchange: ExchangeId,
    collected: Option<Collected>,
    redirects: u32,
    fetch: Fetch,
}

struct Call {
    call: ToolCall,
    started: Instant,
    state: State,
    duration_ms: u64,
}

impl Call {
    /// The exchange it waits on, while it runs.
    fn exchange(&self) -> Option<ExchangeId> {
        match &self.state {
            State::Http(h) => Some(h.exchange),
            State::Mcp(m) => Some(m.exchange),
            State::Done(_) => None,
        }
    }
}

/// The calls of one model answer.
pub struct ToolRound {
    calls: Vec<Call>,
}

/// The offer of `tools` to a model.
pub fn specs(tools: &[Tool]) -> Vec<ToolSpec> {
    tools
        .iter()
        .map(|t| ToolSpec {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: serde_json::from_str(&t.parameters)
                .unwrap_or_else(|_| serde_json::json!({"type": "object"})),
        })
        .collect()
}

impl ToolRound {
    /// Starts every call of `calls` against `tools`; `secret` opens a project secret by
    /// name.
    pub fn start(
        calls: Vec<ToolCall>,
        tools: &[Tool],
        secret: &dyn Fn(&str) -> Result<String, String>,
        reach: &Reach,
        cx: &mut Cx<'_>,
    ) -> ToolRound {
        let calls = calls
            .into_iter()
            .map(|call| {
                let started = Instant::now();
                let state = match begin(&call, tools, secret, reach, cx) {
                    Ok(state) => state,
                    Err(e) => State::Done(Err(e)),
                };
                Call {
                    call,
                    started,
                    state,
                    duration_ms: 0,
                }
            })
            .collect();
        ToolRound { calls }
    }

    /// Whether `id` is one of this round's exchanges.
    pub fn owns(&self, id: ExchangeId) -> bool {
        self.calls.iter().any(|c| c.exchange() == Some(id))
    }

    /// News of exchange `id`.
    pub fn on_http(&mut self, id: ExchangeId, event: HttpEvent, cx: &mut Cx<'_>) {
        let Some(c) = self.calls.iter_mut().find(|c| c.exchange() == Some(id)) else {
            return;
        };
        let done = match &mut c.state {
            State::Mcp(m) => mcp_step(m, event, cx),
            _ => step(&mut c.state, event, cx),
        };
        if let Some(done) = done {
            c.state = State::Done(done);
            c.duration_ms = c.started.elapsed().as_millis() as u64;
        }
    }

    /// Whether every call has its result.
    pub fn is_done(&self) -> bool {
        self.calls.iter().all(|c| matches!(c.state, State::Done(_)))
    }

    /// Cancels the calls still running (their exchanges close).
    pub fn cancel(&mut self, cx: &mut Cx<'_>) {
        for c in &mut self.calls {
            if let Some(exchange) = c.exchange() {
                cx.cancel(exchange);
                c.state = State::Done(Err("cancelled".into()));
            }
        }
    }

    /// The results, in the order the model asked.
    pub fn results(self) -> Vec<CallResult> {
        self.calls
            .into_iter()
            .map(|c| CallResult {
                outcome: match c.state {
                    State::Done(r) => r,
                    State::Http(_) | State::Mcp(_) => Err("cancelled".into()),
                },
                call: c.call,
                duration_ms: c.duration_ms,
            })
            .collect()
    }
}

/// Checks and starts one call.
fn begin(
    call: &ToolCall,
    tools: &[Tool],
    secret: &dyn Fn(&str) -> Result<String, String>,
    reach: &Reach,
    cx: &mut Cx<'_>,
) -> Result<State, String> {
    let tool = tools
        .iter()
        .find(|t| t.name == call.name)
        .ok_or_else(|| format!("no tool is named {:?}", call.name))?;
    let text = if call.arguments.trim().is_empty() {
        "{}"
    } else {
        call.arguments.as_str()
    };
    let args: Value =
        serde_json::from_str(text).map_err(|e| format!("the arguments are not valid JSON: {e}"))?;
    let schema: Value = serde_json::from_str(&tool.parameters).unwrap_or(Value::Bool(true));
    schema::validate(&schema, &args)
        .map_err(|errors| format!("invalid arguments: {}", errors.join("; ")))?;
    match tool.tool_type {
        ToolType::Http => {
            let http = HttpTool::from_config(&tool.config)?;
            let opened = match http.secret_name() {
                Some(name) => Some(secret(name)?),
                None => None,
            };
            let fetch = http.request(&args, opened.as_deref(), reach.clone())?;
            Ok(State::Http(Box::new(HttpCall {
                url: fetch.url.clone(),
                exchange: cx.fetch(fetch.clone()),
                fetch,
                tool: http,
                collected: None,
                redirects: 0,
            })))
        }
        ToolType::Mcp => {
            let mcp = McpTool::from_config(&tool.config)?;
            let mut headers = Vec::new();
            if let Some(auth) = &mcp.auth {
                headers.push(auth.header_for(&secret(&auth.secret)?));
            }
            let work = Work::Call {
                name: mcp.tool_name.clone(),
                arguments: args,
            };
            let session = McpSession::new(mcp.server_url.clone(), headers, work);
            let timeouts = every_deadline(mcp.timeout);
            let exchange = cx.fetch(session.fetch(timeouts, reach.clone()));
            Ok(State::Mcp(Box::new(McpCall {
                session,
                exchange,
                timeouts,
                reach: reach.clone(),
                response_limit: mcp.response_limit,
            })))
        }
    }
}

/// One event of an MCP call; its result once it has one.
fn mcp_step(
    call: &mut McpCall,
    event: HttpEvent,
    cx: &mut Cx<'_>,
) -> Option<Result<String, String>> {
    let result = match event {
        HttpEvent::Head(head) => return call.session.on_head(&head).err().map(Err),
        HttpEvent::Body(bytes) => match call.session.on_body(&bytes) {
            Ok(None) => return None,
            Ok(Some(result)) => {
                // The answer came on an event stream that may stay open.
                cx.cancel(call.exchange);
                result
            }
            Err(e) => {
                cx.cancel(call.exchange);
                return Some(Err(e));
            }
        },
        HttpEvent::End => match call.session.on_end() {
            Ok(result) => result,
            Err(e) => return Some(Err(e)),
        },
        HttpEvent::Failed(FetchError::Timeout(_)) => {
            let ms = call.timeouts.total.as_millis();
            return Some(Err(format!("the call timed out after {ms} ms")));
        }
        HttpEvent::Failed(e) => return Some(Err(format!("the call failed: {e}"))),
    };
    if call.session.advance() {
        call.exchange = cx.fetch(call.session.fetch(call.timeouts, call.reach.clone()));
        return None;
    }
    Some(call_outcome(&result).map(|text| cut(text, call.response_limit)))
}

/// One event of an HTTP call; its result once it has one.
fn step(state: &mut State, event: HttpEvent, cx: &mut Cx<'_>) -> Option<Result<String, String>> {
    let State::Http(h) = state else {
        return None;
    };
    let HttpCall {
        tool,
        url,
        exchange,
        collected,
        redirects,
        fetch,
    } = &mut **h;
    match event {
        HttpEvent::Head(head) => {
            *collected = Some(Collected::new(&head, tool.response_limit));
            None
        }
        HttpEvent::Body(bytes) => {
            let c = collected.as_mut()?;
            if c.push(&bytes) {
                return None;
            }
            // Over the limit: the rest is not read.
            cx.cancel(*exchange);
            Some(finish(collected.take(), url))
        }
        HttpEvent::End => match collected.take().map(|c| c.outcome(url)) {
            Some(Outcome::Redirect(next)) if *redirects < MAX_REDIRECTS => {
                let next = Url::parse(&next).map_err(|e| format!("redirect to {next}: {e}"));
                match next {
                    Ok(next) => {
                        *redirects += 1;
                        if next.origin() != url.origin() {
                            // The credential is for the tool's origin only.
                            let auth = tool.auth_header();
                            fetch.headers.retain(|(n, _)| {
                                !n.eq_ignore_ascii_case("authorization")
                                    && auth.as_deref().is_none_or(|a| !n.eq_ignore_ascii_case(a))
                            });
                        }
                        fetch.url = next.clone();
                        // A 303 and the 301/302 of a POST become a GET, as browsers do.
                        fetch.method = "GET".into();
                        fetch.body.clear();
                        *url = next;
                        *exchange = cx.fetch(fetch.clone());
                        None
                    }
                    Err(e) => Some(Err(e)),
                }
            }
            Some(Outcome::Redirect(_)) => Some(Err(format!("more than {MAX_REDIRECTS} redirects"))),
            Some(Outcome::Result(text)) => Some(Ok(text)),
            Some(Outcome::Error(e)) => Some(Err(e)),
            None => Some(Err("the tool answered nothing".into())),
        },
        HttpEvent::Failed(FetchError::Timeout(_)) => Some(Err(format!(
            "the call timed out after {} ms",
            tool.timeout.as_millis()
        ))),
        HttpEvent::Failed(e) => Some(Err(format!("the call failed: {e}"))),
    }
}

fn finish(collected: Option<Collected>, url: &Url) -> Result<String, String> {
    match collected.map(|c| c.outcome(url)) {
        Some(Outcome::Result(text)) => Ok(text),
        Some(Outcome::Error(e)) => Err(e),
        Some(Outcome::Redirect(_)) | None => Err("the tool answered nothing".into()),
    }
}
