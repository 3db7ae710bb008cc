//! One turn, or one direct model call, as a task on the event loop of its request.
//!
//! Responsible for, in order: storing the user message (and a new session), building the
//! prompt from the agent's instructions, the session history and the agent's tools, calling
//! the provider (the
//! `echo` words paced by a wheel timer, or an upstream through the engine's client, retried
//! at most [`MAX_RETRIES`] times with backoff while the connection is refused or reset and
//! nothing was relayed yet), relaying deltas to the client and the stream's log, storing the
//! reply with its usage and answering (`done`, or the JSON reply) only once it is durable,
//! cancelling when every client has been gone for [`ORPHAN_GRACE`] (the upstream
//! connection is closed, what was said is stored), and on shutdown ending with
//! `event: error` `SHUTTING_DOWN` after storing what was said. When the model asks for
//! tools, the turn stores its calls, runs them at once ([`ToolRound`]), stores and sends
//! (`tool_call`, `tool_result`) their results and calls the model again, at most the
//! agent's `maxToolIterations` model calls in all. Nothing here blocks: each step ends by
//! waiting for an event. Not responsible for: parsing requests, authorization or
//! the cap on running turns (see `runtime`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_engine::client::{ExchangeId, Fetch, HttpEvent, ResponseHead};
use halyard_engine::{Cx, Event, Responder, Response, Status, StreamSender, Task, TaskHandle};
use halyard_storage::{
    ids, Deployment, Message, MessageRole, Mutation, Page, Session, StoreError, Tool, Usage,
};
use serde_json::{json, Value};

use super::call_events::CallEvents;
use super::hub::OpenStream;
use super::openai::{self, Relay};
use super::openai_compat::{self as compat, CompletionId};
use super::pace::Pace;
use super::provider::{Completion, Echo, Line, Prompt, ProviderError, Speaker};
use super::runtime::{cost, usage_json, Job, Running, Shared, Style, Work, ORPHAN_GRACE};
use super::tool_round::{self, ToolRound};
use super::tracer::Tracer;
use super::{runtime::STREAM_BUFFER, sse};
use crate::emit::Object;
use crate::error::ApiError;
use crate::reply::Finish;

/// Retries of a refused or reset upstream connection before the first delta.
pub const MAX_RETRIES: u32 = 2;
/// Backoff before the first retry; each later one waits four times longer.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Timer: the next echo token is due.
const TAG_TOKEN: u64 = 1;
/// Timer: try the upstream again.
const TAG_RETRY: u64 = 2;
/// Timer: the grace after a client left is over.
const TAG_GRACE: u64 = 3;
/// Wake: a client left.
pub(crate) const TAG_GONE: u64 = 4;
/// Timer: the stream's events are due to be flushed to the log.
const TAG_FLUSH: u64 = 5;

/// How long a stream's events stay in memory before they are written to the log as one
/// batch (the end of the stream flushes too). Resumes see them either way; a crash loses at
/// most this much of a stream. A model streaming 20 to 50 tokens a second fills a batch with
/// 5 to 12: about 44 to 36 log bytes per token against 97 for one record per token
/// (`benches/RESULTS.md`, "Log bytes per streamed token").
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// The durability of the reply, posted by the storage writer.
struct Stored(Result<(), StoreError>);

/// Where the answer goes.
enum Out {
    /// Nothing sent yet.
    Pending(Responder),
    /// An open event stream.
    Stream(Emitter),
    /// An OpenAI-compatible stream: chunks written as they come, not stored (no resume).
    Raw(StreamSender),
    /// Answered.
    Sent,
}

/// The events of one stream, numbered from 1.
struct Emitter {
    stream: OpenStream,
    next_id: u64,
    /// A flush timer is set.
    flush_due: bool,
}

/// The provider call in progress.
enum Model {
    Echo {
        deltas: Vec<String>,
        next: usize,
        pace: Pace,
    },
    OpenAi(Box<Upstream>),
}

struct Upstream {
    fetch: Fetch,
    exchange: Option<ExchangeId>,
    relay: Relay,
    /// The head of a non-2xx answer, whose body is being read for its message.
    refused: Option<ResponseHead>,
    error_body: Vec<u8>,
    attempts: u32,
}

/// A turn's session part.
struct OnSession {
    session: Session,
    new_session: bool,
    /// The deployment it runs, if any.
    deployment: Option<Box<Deployment>>,
    message: String,
    /// The reply's id, once it is being stored.
    reply_id: Option<String>,
}

/// One turn or direct call.
pub(crate) struct TurnTask {
    shared: Arc<Shared>,
    style: Style,
    finish: Finish,
    started: Instant,
    tenant: String,
    owner: String,
    agent: halyard_storage::Agent,
    session: Option<OnSession>,
    prompt: Prompt,
    /// An OpenAI-compatible call's answer id (its styles only).
    openai: Option<CompletionId>,
    out: Out,
    model: Option<Model>,
    /// The echo's text so far.
    text: String,
    index: u64,
    /// The completion being stored.
    completion: Option<Completion>,
    /// The agent's tools (a turn on a session).
    tools: Vec<Tool>,
    /// The tool calls running.
    round: Option<ToolRound>,
    /// Model calls made so far.
    model_calls: u32,
    /// Usage of every model call of the turn.
    turn_usage: Usage,
    /// The tool-call events of a streamed direct call sent so far.
    call_events: CallEvents,
    /// The turn's trace.
    tracer: Tracer,
    /// Metrics cell of the agent's provider.
    provider: usize,
    /// When the provider call started; `None` before, and once its first token was counted.
    first_token_from: Option<Instant>,
    /// When the provider call started, until its end was counted.
    provider_from: Option<Instant>,
    /// The turn was counted as finished or failed.
    counted: bool,
    /// This task, for callbacks of the store (set at start).
    handle: Option<TaskHandle>,
    /// The error to answer once the failure's trace is stored (a shared store).
    failing: Option<ApiError>,
    /// The deltas of the upstream bytes being read, kept between reads (no allocation a
    /// relayed token).
    deltas: Deltas,
    _running: Running,
}

/// Text deltas read from one piece of a provider's body, in order.
#[derive(Default)]
struct Deltas {
    text: String,
    ends: Vec<usize>,
}

impl Deltas {
    fn push(&mut self, delta: &str) {
        self.text.push_str(delta);
        self.ends.push(self.text.len());
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(a, &b)| &self.text[a..b])
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }
}

/// The failure's trace is stored (or could not be): the error may be answered.
struct FailStored;

impl TurnTask {
    /// The task of `job`, counted by `running` while it lives.
    pub(crate) fn new(shared: Arc<Shared>, job: Job, running: Running) -> Self {
        let Job {
            work,
            style,
            responder,
            finish,
            started,
        } = job;
        let mut openai = None;
        let (tenant, owner, agent, session, prompt) = match work {
            Work::Turn(t) => {
                let on = OnSession {
                    session: t.session,
                    new_session: t.new_session,
                    deployment: t.deployment,
                    message: t.message,
                    reply_id: None,
                };
                let prompt = Prompt {
                    messages: Vec::new(),
                    model: t.agent.model.model.clone(),
                    temperature: t.agent.model.temperature,
                    max_tokens: t.agent.model.max_tokens,
                    tools: Vec::new(),
                };
                (t.tenant, t.owner, t.agent, Some(on), prompt)
            }
            Work::Direct(d) => {
                openai = d.openai;
                (d.tenant, d.owner, d.agent, None, d.prompt)
            }
        };
        let provider = super::metrics::provider_index(&agent.model.provider);
        TurnTask {
            shared,
            style,
            finish,
            started,
            tenant,
            owner,
            agent,
            session,
            prompt,
            openai,
            out: Out::Pending(responder),
            model: None,
            text: String::new(),
            index: 0,
            completion: None,
            tools: Vec::new(),
            round: None,
            model_calls: 0,
            turn_usage: Usage::default(),
            call_events: CallEvents::default(),
            tracer: Tracer::start(),
            provider,
            first_token_from: None,
            provider_from: None,
            counted: false,
            handle: None,
            failing: None,
            deltas: Deltas::default(),
            _running: running,
        }
    }
}

impl Task for TurnTask {
    fn on_event(&mut self, event: Event, cx: &mut Cx<'_>) -> Status {
        if self.failing.is_some() {
            return self.on_event_failing(event);
        }
        match event {
            Event::Start => self.start(cx),
            Event::Timer(TAG_TOKEN) => self.next_token(cx),
            Event::Timer(TAG_RETRY) => self.fetch(cx),
            Event::Timer(TAG_GRACE) => self.check_abandoned(cx),
            Event::Timer(TAG_FLUSH) => self.flush(),
            Event::Wake(TAG_GONE) => self.on_gone(cx),
            Event::Http(id, e) => self.on_http(id, e, cx),
            Event::Message(m) => match m.downcast::<Stored>() {
                Ok(stored) => self.on_stored(stored.0),
                Err(_) => Status::Pending,
            },
            Event::Shutdown => self.shutdown(cx),
            Event::Timer(_) | Event::Wake(_) => Status::Pending,
        }
    }
}

// ---- the steps ----

impl TurnTask {
    /// Only the report of the failure's trace (or shutdown) matters now.
    fn on_event_failing(&mut self, event: Event) -> Status {
        match event {
            Event::Message(m) if m.downcast_ref::<FailStored>().is_some() => {}
            Event::Shutdown => {}
            _ => return Status::Pending,
        }
        match self.failing.take() {
            Some(e) => self.answer_failure(e),
            None => Status::Done,
        }
    }

    fn start(&mut self, cx: &mut Cx<'_>) -> Status {
        self.handle = Some(cx.handle());
        self.shared.metrics.started(self.provider);
        self.first_token_from = Some(Instant::now());
        if let Some(on) = &self.session {
            // Read before the user message is stored: on a shared store that write is
            // queued, and not seen here until committed.
            let mut lines = self.history(&on.session);
            lines.push(Line::say(Speaker::User, on.message.as_str()));
            self.prompt.messages = lines;
            self.tools = self.agent_tools();
            self.prompt.tools = tool_round::specs(&self.tools);
        }
        if let Err(e) = self.store_user_message() {
            return self.fail(e);
        }
        if let Out::Pending(r) = &self.out {
            r.watch_gone(cx.handle(), TAG_GONE);
        }
        self.call_model(cx)
    }

    /// The agent's tools that exist (a name whose tool was deleted is skipped).
    fn agent_tools(&self) -> Vec<Tool> {
        let (store, pid) = (&self.shared.store, &self.agent.project_id);
        self.agent
            .tools
            .iter()
            .filter_map(|name| store.tool_by_name(&self.tenant, pid, name))
            .collect()
    }

    /// One call of the model with the prompt as it is now.
    fn call_model(&mut self, cx: &mut Cx<'_>) -> Status {
        self.model_calls += 1;
        self.provider_from = Some(Instant::now());
        self.tracer.llm_started();
        self.text.clear();
        match self.agent.model.provider.as_str() {
            "echo" => {
                if self.style.streams() {
                    self.open_stream(cx);
                }
                let calls = Echo::tool_calls(&self.prompt);
                if !calls.is_empty() {
                    let mut c = Echo::completion(&self.prompt, "", "tool_calls");
                    c.tool_calls = calls;
                    return self.generated(c, cx);
                }
                self.model = Some(Model::Echo {
                    deltas: Echo::deltas(&self.prompt),
                    next: 0,
                    pace: Pace::new(self.shared.cfg.echo_delay.as_millis() as u64),
                });
                self.next_token(cx)
            }
            "openai" => match self.upstream_request() {
                Ok(fetch) => {
                    self.model = Some(Model::OpenAi(Box::new(Upstream {
                        fetch,
                        exchange: None,
                        relay: Relay::new(&self.prompt),
                        refused: None,
                        error_body: Vec::new(),
                        attempts: 0,
                    })));
                    self.fetch(cx)
                }
                Err(e) => self.fail(e.to_api()),
            },
            other => {
                let e = ProviderError::NotConfigured(format!("unknown provider {other}"));
                self.fail(e.to_api())
            }
        }
    }

    /// Stores the user message (and a new session); reads see it at once, durability is
    /// not awaited (the reply's commit comes after it in the same log).
    fn store_user_message(&mut self) -> Result<(), ApiError> {
        let Some(on) = &self.session else {
            return Ok(());
        };
        let now = crate::time::now_ms();
        let (pid, sid) = (&on.session.project_id, &on.session.id);
        let user = Message {
            id: ids::new_id(ids::MESSAGE),
            role: MessageRole::User,
            content: on.message.clone(),
            usage: None,
            created_at: now,
            tool_calls: None,
            tool_call_id: None,
        };
        let mut first = Vec::with_capacity(2);
        if on.new_session {
            first.push(Mutation::PutSession(on.session.clone()));
        }
        if let Some(d) = on.deployment.as_ref().filter(|_| on.new_session) {
            first.push(Mutation::SetSessionDeployment {
                project_id: pid.clone(),
                session_id: sid.clone(),
                deployment_id: d.id.clone(),
            });
        }
        first.push(Mutation::append_message(pid, sid, &user));
        let limiter = &self.shared.limiter;
        let stored = self.shared.store.commit_queued(&self.tenant, first, None);
        limiter.turn_stored(&self.tenant, sid, now, stored.is_ok(), on.new_session);
        stored.map_err(Into::into)
    }

    fn history(&self, session: &Session) -> Vec<Line> {
        let mut messages = Vec::new();
        if let Some(sys) = self.agent.instructions.as_deref().filter(|s| !s.is_empty()) {
            messages.push(Line::say(Speaker::System, sys));
        }
        let history = self
            .shared
            .store
            .messages(&self.tenant, &session.project_id, &session.id, Page::ALL)
            .map(|l| l.items)
            .unwrap_or_default();
        for m in history {
            let speaker = match m.role {
                MessageRole::User => Speaker::User,
                MessageRole::Assistant => Speaker::Assistant,
                MessageRole::System => Speaker::System,
                MessageRole::Tool => Speaker::Tool,
            };
            let calls = m
                .tool_calls
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok());
            messages.push(Line {
                speaker,
                text: m.content,
                tool_calls: calls.map_or_else(Vec::new, |v| openai::tool_calls_from_json(&v)),
                tool_call_id: m.tool_call_id,
            });
        }
        messages
    }

    fn upstream_request(&self) -> Result<Fetch, ProviderError> {
        let base = self
            .agent
            .model
            .base_url
            .as_deref()
            .unwrap_or(openai::DEFAULT_BASE_URL);
        let key = self.provider_key()?;
        openai::request(base, &key, &self.prompt, self.shared.cfg.timeouts)
    }

    fn provider_key(&self) -> Result<String, ProviderError> {
        let name = self.agent.model.api_key_secret.as_deref().ok_or_else(|| {
            ProviderError::NotConfigured("the agent names no apiKeySecret".into())
        })?;
        self.open_secret(name).map_err(ProviderError::NotConfigured)
    }

    /// The value of the project secret `name` (the message never holds the value).
    fn open_secret(&self, name: &str) -> Result<String, String> {
        self.shared
            .open_secret(&self.tenant, &self.agent.project_id, name)
    }

    /// Emits the echo's tokens that are due; sets the timer of the next one. A loop that
    /// runs late emits the overdue ones at once rather than slowing the model down (when
    /// each delay counted from the token before, 20 tokens at 50 ms took 2 s under load).
    fn next_token(&mut self, cx: &mut Cx<'_>) -> Status {
        loop {
            let Some(Model::Echo { deltas, next, pace }) = &mut self.model else {
                return Status::Pending;
            };
            if *next >= deltas.len() {
                let c = Echo::completion(&self.prompt, &self.text, "stop");
                return self.generated(c, cx);
            }
            if let Some(ms) = pace.wait(cx.now_ms()) {
                cx.set_timer(Duration::from_millis(ms), TAG_TOKEN);
                return Status::Pending;
            }
            let delta = std::mem::take(&mut deltas[*next]);
            *next += 1;
            self.text.push_str(&delta);
            if !self.relay_delta(&delta, cx) {
                return self.cancel(cx);
            }
        }
    }

    fn fetch(&mut self, cx: &mut Cx<'_>) -> Status {
        if let Some(Model::OpenAi(up)) = &mut self.model {
            up.refused = None;
            up.error_body.clear();
            up.exchange = Some(cx.fetch(up.fetch.clone()));
        }
        Status::Pending
    }

    fn on_http(&mut self, id: ExchangeId, event: HttpEvent, cx: &mut Cx<'_>) -> Status {
        if let Some(round) = self.round.as_mut().filter(|r| r.owns(id)) {
            round.on_http(id, event, cx);
            return self.after_tool_news(cx);
        }
        let Some(Model::OpenAi(up)) = &mut self.model else {
            return Status::Pending;
        };
        if up.exchange != Some(id) {
            return Status::Pending;
        }
        match event {
            HttpEvent::Head(head) if (200..300).contains(&head.status) => {
                if self.style.streams() && matches!(self.out, Out::Pending(_)) {
                    self.open_stream(cx);
                }
                Status::Pending
            }
            HttpEvent::Head(head) => {
                up.refused = Some(head);
                Status::Pending
            }
            HttpEvent::Body(bytes) if up.refused.is_some() => {
                let room = openai::MAX_ERROR_BODY.saturating_sub(up.error_body.len());
                up.error_body
                    .extend_from_slice(&bytes[..bytes.len().min(room)]);
                Status::Pending
            }
            HttpEvent::Body(bytes) => {
                let status = self.on_body(&bytes, cx);
                cx.give_back(bytes);
                status
            }
            HttpEvent::End => {
                up.exchange = None;
                match up.refused.take() {
                    Some(head) => {
                        let e = openai::status_error(&head, &up.error_body);
                        self.fail(e.to_api())
                    }
                    None => {
                        let c = up.relay.completion(None);
                        self.generated(c, cx)
                    }
                }
            }
            HttpEvent::Failed(e) => {
                up.exchange = None;
                let retry = !up.relay.started() && e.is_connect_failure();
                if retry && up.attempts < MAX_RETRIES {
                    let wait = RETRY_BACKOFF * 4u32.pow(up.attempts);
                    up.attempts += 1;
                    cx.set_timer(wait, TAG_RETRY);
                    return Status::Pending;
                }
                self.fail(ProviderError::Upstream(format!("upstream {e}")).to_api())
            }
        }
    }

    fn on_body(&mut self, bytes: &[u8], cx: &mut Cx<'_>) -> Status {
        let direct = self.streams_direct_calls();
        let Some(Model::OpenAi(up)) = &mut self.model else {
            return Status::Pending;
        };
        let mut deltas = std::mem::take(&mut self.deltas);
        let fed = up.relay.feed(bytes, &mut |d| deltas.push(d));
        if fed.is_err() {
            if let Some(id) = up.exchange.take() {
                cx.cancel(id);
            }
        }
        let calls = (direct && !up.relay.calls().is_empty()).then(|| up.relay.calls().to_vec());
        // The deltas read before a malformed line were said: they are relayed first.
        let said = deltas.iter().all(|d| self.relay_delta(d, cx));
        deltas.clear();
        self.deltas = deltas;
        if !said {
            return self.cancel(cx);
        }
        for (name, data) in calls.map_or_else(Vec::new, |c| self.call_events.progress(&c)) {
            self.emit(name, &data);
        }
        match fed {
            Ok(()) => Status::Pending,
            Err(e) => self.fail(e.to_api()),
        }
    }

    /// The provider is done: run the tools it asked for, or store the reply (a session
    /// turn) or answer (a direct call).
    fn generated(&mut self, mut c: Completion, cx: &mut Cx<'_>) -> Status {
        self.model = None;
        if let Some(from) = self.provider_from.take() {
            self.shared
                .metrics
                .provider_done(self.provider, from.elapsed());
        }
        add_usage(&mut self.turn_usage, &c.usage);
        let call_cost = cost(&self.agent, &c.usage);
        let calls = c.tool_calls.len();
        (self.tracer).llm_done(
            &self.prompt.model,
            &c.usage,
            call_cost,
            &c.finish_reason,
            calls,
        );
        if self.session.is_some() && !c.tool_calls.is_empty() {
            if self.model_calls < self.agent.max_tool_iterations {
                return self.run_tools(c, cx);
            }
            // The budget is spent: what the model said is the answer.
            c.tool_calls.clear();
            c.finish_reason = "max_tool_iterations".into();
        }
        let Some(on) = &mut self.session else {
            self.answer_direct(&c);
            return Status::Done;
        };
        let mut usage = c.usage;
        usage.latency_ms = self.started.elapsed().as_millis() as u64;
        let m = Message {
            id: ids::new_id(ids::MESSAGE),
            role: MessageRole::Assistant,
            content: c.text.clone(),
            usage: Some(usage),
            created_at: crate::time::now_ms(),
            tool_calls: None,
            tool_call_id: None,
        };
        let (pid, sid) = (&on.session.project_id, &on.session.id);
        let data = json!({"finishReason": c.finish_reason, "messageId": m.id});
        let total_cost = cost(&self.agent, &self.turn_usage);
        let events = (self.tracer).finish(&self.prompt.model, &self.turn_usage, total_cost, data);
        let traces = Mutation::AppendTraces {
            project_id: pid.clone(),
            session_id: sid.clone(),
            events,
        };
        let task = cx.handle();
        // The reply and its trace in one commit: both or neither.
        let stored = self.shared.store.commit_queued(
            &self.tenant,
            vec![Mutation::append_message(pid, sid, &m), traces],
            Some(Box::new(move |r| task.post(Box::new(Stored(r))))),
        );
        on.reply_id = Some(m.id);
        // The answer reports the whole turn's usage.
        c.usage = self.turn_usage;
        self.completion = Some(c);
        match stored {
            Ok(()) => Status::Pending,
            Err(e) => self.fail(e.into()),
        }
    }

    /// The reply is durable (or failed to be): answer.
    fn on_stored(&mut self, result: Result<(), StoreError>) -> Status {
        let Some(c) = self.completion.take() else {
            return Status::Pending;
        };
        if let Err(e) = result {
            return self.fail(e.into());
        }
        let sid = self
            .session
            .as_ref()
            .map_or("", |on| on.session.id.as_str());
        let reply_id = self
            .session
            .as_ref()
            .and_then(|on| on.reply_id.clone())
            .unwrap_or_default();
        match self.style {
            // The OpenAI styles run direct calls only; a turn answers as `/chat/agent`.
            Style::AgentSync | Style::Complete | Style::OpenAi | Style::OpenAiStream => {
                let body = json!({
                    "success": true,
                    "sessionId": sid,
                    "messageId": reply_id,
                    "response": c.text,
                    "usage": usage_json(&c.usage),
                    "latencyMs": self.started.elapsed().as_millis() as u64,
                });
                self.respond(json_response(&body));
            }
            Style::AgentStream => {
                let data =
                    json!({"sessionId": sid, "messageId": reply_id, "usage": usage_json(&c.usage)});
                self.emit(sse::DONE, &data);
            }
            Style::ChatStream => self.emit_usage_and_complete(&c),
        }
        self.end_stream();
        self.count_finished(&c);
        Status::Done
    }

    /// Counts the turn as finished with the tokens of `c` (once).
    fn count_finished(&mut self, c: &Completion) {
        if !std::mem::replace(&mut self.counted, true) {
            let u = &c.usage;
            self.shared
                .metrics
                .finished(self.provider, u.input_tokens, u.output_tokens);
        }
    }

    /// Counts the turn as failed (once).
    fn count_failed(&mut self) {
        if !std::mem::replace(&mut self.counted, true) {
            self.shared.metrics.failed(self.provider);
        }
    }

    /// Whether this is a streamed direct call, whose tool calls are sent as events.
    fn streams_direct_calls(&self) -> bool {
        self.style == Style::ChatStream && self.session.is_none()
    }

    fn answer_direct(&mut self, c: &Completion) {
        self.count_finished(c);
        if let Some(id) = &self.openai {
            let u = &c.usage;
            let usage = compat::usage(u.input_tokens, u.output_tokens);
            let reason = Some(c.finish_reason.as_str());
            if let Out::Raw(sender) = &self.out {
                let _ = sender.send(&compat::last_chunks(id, &c.tool_calls, reason, usage));
                self.out = Out::Sent;
                return;
            }
            let body = compat::completion(id, &c.text, &c.tool_calls, reason, usage);
            return self.respond(json_response(&body));
        }
        if self.style == Style::Complete {
            let mut usage = usage_json(&c.usage);
            usage["estimatedCost"] = cost(&self.agent, &c.usage).map_or(Value::Null, Value::from);
            let body = json!({
                "success": true,
                "content": c.text,
                "toolCalls": openai::tool_calls_json(&c.tool_calls),
                "model": self.prompt.model,
                "finishReason": c.finish_reason,
                "usage": usage,
                "latencyMs": self.started.elapsed().as_millis() as u64,
            });
            return self.respond(json_response(&body));
        }
        for (name, data) in self.call_events.end(&c.tool_calls) {
            self.emit(name, &data);
        }
        self.emit_usage_and_complete(c);
        self.end_stream();
    }

    fn emit_usage_and_complete(&mut self, c: &Completion) {
        let u = &c.usage;
        self.emit(
            sse::USAGE,
            &json!({"inputTokens": u.input_tokens, "outputTokens": u.output_tokens}),
        );
        let complete = json!({
            "inputTokens": u.input_tokens,
            "outputTokens": u.output_tokens,
            "totalTokens": u.total_tokens,
            "latencyMs": self.started.elapsed().as_millis() as u64,
        });
        self.emit(sse::COMPLETE, &complete);
    }
}

// ---- tools ----

impl TurnTask {
    /// Stores the model's calls, tells the stream, and starts them all.
    fn run_tools(&mut self, c: Completion, cx: &mut Cx<'_>) -> Status {
        let calls = c.tool_calls;
        let asked = Message {
            id: ids::new_id(ids::MESSAGE),
            role: MessageRole::Assistant,
            content: c.text.clone(),
            usage: Some(c.usage),
            created_at: crate::time::now_ms(),
            tool_calls: Some(openai::tool_calls_json(&calls).to_string()),
            tool_call_id: None,
        };
        if let Err(e) = self.store_messages(&[asked]) {
            return self.fail(e);
        }
        for call in &calls {
            let data = json!({"id": call.id, "name": call.name, "arguments": call.arguments});
            self.emit(sse::TOOL_CALL, &data);
        }
        self.tracer.calls_started(&calls);
        self.prompt.messages.push(Line {
            tool_calls: calls.clone(),
            ..Line::say(Speaker::Assistant, c.text)
        });
        let secret = |name: &str| self.open_secret(name);
        let reach = &self.shared.cfg.tool_reach;
        let round = ToolRound::start(calls, &self.tools, &secret, reach, cx);
        self.round = Some(round);
        self.after_tool_news(cx)
    }

    /// Once every call has its result: store and send the results, then call the model.
    fn after_tool_news(&mut self, cx: &mut Cx<'_>) -> Status {
        if !self.round.as_ref().is_some_and(ToolRound::is_done) {
            return Status::Pending;
        }
        let Some(round) = self.round.take() else {
            return Status::Pending;
        };
        let mut stored = Vec::new();
        for r in round.results() {
            self.tracer.call_done(&r);
            let mut data = json!({"id": r.call.id, "durationMs": r.duration_ms});
            match &r.outcome {
                Ok(text) => data["result"] = text.as_str().into(),
                Err(e) => {
                    data["result"] = Value::Null;
                    data["error"] = e.as_str().into();
                }
            }
            self.emit(sse::TOOL_RESULT, &data);
            let text = r.for_model();
            stored.push(Message {
                id: ids::new_id(ids::MESSAGE),
                role: MessageRole::Tool,
                content: text.clone(),
                usage: None,
                created_at: crate::time::now_ms(),
                tool_calls: None,
                tool_call_id: Some(r.call.id.clone()),
            });
            self.prompt.messages.push(Line {
                tool_call_id: Some(r.call.id),
                ..Line::say(Speaker::Tool, text)
            });
        }
        if let Err(e) = self.store_messages(&stored) {
            return self.fail(e);
        }
        self.call_model(cx)
    }

    /// Appends messages to the session without waiting: the reply's commit comes after them
    /// in the same log, and is awaited.
    fn store_messages(&self, messages: &[Message]) -> Result<(), ApiError> {
        let Some(on) = &self.session else {
            return Ok(());
        };
        let (pid, sid) = (&on.session.project_id, &on.session.id);
        let muts = messages
            .iter()
            .map(|m| Mutation::append_message(pid, sid, m))
            .collect();
        self.shared
            .store
            .commit_queued(&self.tenant, muts, None)
            .map_err(ApiError::from)
    }
}

/// The `session` event: the session, and the deployment it runs.
fn session_event(on: &OnSession) -> Value {
    let mut event = json!({"sessionId": on.session.id});
    if let Some(d) = &on.deployment {
        event["deploymentId"] = d.id.clone().into();
        event["environment"] = d.environment.as_str().into();
    }
    event
}

/// Adds one model call's usage to the turn's (the latency is the turn's, set at its end).
fn add_usage(total: &mut Usage, u: &Usage) {
    total.input_tokens += u.input_tokens;
    total.output_tokens += u.output_tokens;
    total.total_tokens += u.total_tokens;
}

// ---- clients that leave, shutdown, failure ----

impl TurnTask {
    fn on_gone(&mut self, cx: &mut Cx<'_>) -> Status {
        if let Out::Stream(em) = &self.out {
            // Starts the orphan clock now (nobody may publish to this stream for a while).
            self.shared.hub.orphaned_for(&em.stream);
        }
        // A little past the grace: the check must find it over.
        cx.set_timer(ORPHAN_GRACE + Duration::from_millis(20), TAG_GRACE);
        Status::Pending
    }

    fn check_abandoned(&mut self, cx: &mut Cx<'_>) -> Status {
        let gone = match &self.out {
            Out::Pending(r) => r.is_gone(),
            Out::Raw(sender) => sender.is_gone(),
            Out::Stream(em) => self
                .shared
                .hub
                .orphaned_for(&em.stream)
                .is_some_and(|d| d >= ORPHAN_GRACE),
            Out::Sent => false,
        };
        if gone && (self.model.is_some() || self.round.is_some()) {
            return self.cancel(cx);
        }
        Status::Pending
    }

    /// Stops the provider (closing the upstream connection) and keeps what was said.
    fn cancel(&mut self, cx: &mut Cx<'_>) -> Status {
        match self.stop_model(cx) {
            Some(c) => self.generated(c, cx),
            None => Status::Pending,
        }
    }

    /// Stops the provider, closing its upstream connection: what it said so far, as a
    /// cancelled completion (`None` when no call runs).
    fn stop_model(&mut self, cx: &mut Cx<'_>) -> Option<Completion> {
        if let Some(mut round) = self.round.take() {
            round.cancel(cx);
            return Some(Echo::completion(&self.prompt, "", "cancelled"));
        }
        Some(match self.model.take()? {
            Model::OpenAi(up) => {
                if let Some(id) = up.exchange {
                    cx.cancel(id);
                }
                up.relay.completion(Some("cancelled"))
            }
            Model::Echo { .. } => Echo::completion(&self.prompt, &self.text, "cancelled"),
        })
    }

    fn shutdown(&mut self, cx: &mut Cx<'_>) -> Status {
        if self.completion.is_some() {
            // The reply is being made durable: its answer follows.
            return Status::Pending;
        }
        let Some(said) = self.stop_model(cx) else {
            return Status::Done;
        };
        self.store_said(&said);
        self.count_failed();
        let message = "The server is shutting down; what was said is stored";
        match &self.out {
            Out::Stream(_) => {
                self.emit(
                    sse::ERROR,
                    &json!({"code": sse::SHUTTING_DOWN, "message": message}),
                );
                self.end_stream();
            }
            Out::Raw(sender) => {
                let e = ApiError::Unavailable(message.into());
                let _ = sender.send(&compat::error_frame(&e));
                self.out = Out::Sent;
            }
            _ => self.respond(ApiError::Unavailable(message.into()).into_response()),
        }
        Status::Done
    }

    /// Stores a partial reply without waiting (the writer finishes its batch before exit).
    fn store_said(&self, c: &Completion) {
        let Some(on) = &self.session else { return };
        if c.text.is_empty() {
            return;
        }
        let m = Message {
            id: ids::new_id(ids::MESSAGE),
            role: MessageRole::Assistant,
            content: c.text.clone(),
            usage: Some(c.usage),
            created_at: crate::time::now_ms(),
            tool_calls: None,
            tool_call_id: None,
        };
        let (pid, sid) = (&on.session.project_id, &on.session.id);
        let muts = vec![Mutation::append_message(pid, sid, &m)];
        let _ = self.shared.store.commit_queued(&self.tenant, muts, None);
    }

    /// Ends the turn with `e`: the error response, or `event: error` on an open stream.
    /// On a shared store the answer waits until the failure's trace (and the turn's other
    /// writes, queued before it) are stored, so that a client reading after the error
    /// finds them on any node.
    fn fail(&mut self, e: ApiError) -> Status {
        self.count_failed();
        if let Some(Model::OpenAi(_)) = &self.model {
            self.model = None;
        }
        if self.store_failure_trace(&e) {
            self.failing = Some(e);
            return Status::Pending;
        }
        self.answer_failure(e)
    }

    /// The error response, or `event: error` on an open stream.
    fn answer_failure(&mut self, e: ApiError) -> Status {
        match &self.out {
            Out::Stream(_) => {
                let data = json!({"code": e.code(), "message": e.to_string()});
                self.emit(sse::ERROR, &data);
                self.end_stream();
            }
            Out::Raw(sender) => {
                let _ = sender.send(&compat::error_frame(&e));
                self.out = Out::Sent;
            }
            _ if self.openai.is_some() => self.respond(compat::error_response(e)),
            _ => self.respond(e.into_response()),
        }
        Status::Done
    }
}

impl TurnTask {
    /// Stores the trace of a failed turn, its error last; `true` when the answer is to
    /// wait for [`FailStored`] (a shared store: the commit is queued). The error is the
    /// answer whether or not the trace is stored.
    fn store_failure_trace(&mut self, e: &ApiError) -> bool {
        let Some(on) = &self.session else {
            return false;
        };
        self.tracer.failed(e.code(), &e.to_string());
        let traces = Mutation::AppendTraces {
            project_id: on.session.project_id.clone(),
            session_id: on.session.id.clone(),
            events: self.tracer.take(),
        };
        let store = &self.shared.store;
        let task = self.handle.clone().filter(|_| store.is_shared());
        let done = task.map(|task| -> halyard_storage::Completion {
            Box::new(move |_| task.post(Box::new(FailStored)))
        });
        let waits = done.is_some();
        store
            .commit_queued(&self.tenant, vec![traces], done)
            .is_ok()
            && waits
    }
}

// ---- output ----

impl TurnTask {
    fn respond(&mut self, resp: Response) {
        if let Out::Pending(r) = std::mem::replace(&mut self.out, Out::Sent) {
            r.send(self.finish.apply(resp));
        }
    }

    /// Turns the deferred reply into an event stream, registered (and stored, for resumes
    /// by the owner) under a new id.
    fn open_stream(&mut self, cx: &mut Cx<'_>) {
        if !matches!(self.out, Out::Pending(_)) {
            // Already open (a later model call of a turn with tools), or answered.
            return;
        }
        let Out::Pending(responder) = std::mem::replace(&mut self.out, Out::Sent) else {
            return;
        };
        if let Some(id) = &self.openai {
            let mut head = sse::head("");
            head.headers.retain(|(k, _)| k != "X-Stream-Id");
            let sender = responder.stream(self.finish.apply(head), STREAM_BUFFER);
            sender.watch_gone(cx.handle(), TAG_GONE);
            let _ = sender.send(&compat::first_chunk(id));
            self.out = Out::Raw(sender);
            return;
        }
        let stream_id = ids::new_id("str_");
        let head = self.finish.apply(sse::head(&stream_id));
        let sender = responder.stream(head, STREAM_BUFFER);
        let start = Mutation::StartStream {
            stream_id: stream_id.clone(),
            owner: self.owner.clone(),
            created_at: crate::time::now_ms(),
            node: self.shared.store.node().to_owned(),
        };
        // Without the start record the stream cannot be resumed, but it is still served.
        let _ = self
            .shared
            .store
            .commit_queued(&self.tenant, vec![start], None);
        let stream = self
            .shared
            .hub
            .open(&stream_id, &self.owner, sender, (cx.handle(), TAG_GONE));
        self.out = Out::Stream(Emitter {
            stream,
            next_id: 1,
            flush_due: false,
        });
        if self.style == Style::AgentStream {
            let event = self.session.as_ref().map_or(Value::Null, session_event);
            self.emit(sse::SESSION, &event);
        } else if self.session.is_none() {
            let meta = json!({"model": self.prompt.model, "provider": self.agent.model.provider});
            self.emit(sse::METADATA, &meta);
        }
    }

    /// Sends one delta to the stream (a sync answer collects it in the completion); false
    /// when every listener has been gone for the grace period.
    fn relay_delta(&mut self, delta: &str, cx: &mut Cx<'_>) -> bool {
        if let Some(from) = self.first_token_from.take() {
            self.shared
                .metrics
                .first_token(self.provider, from.elapsed());
        }
        if let (Out::Raw(sender), Some(id)) = (&self.out, &self.openai) {
            return sender.send(&compat::text_chunk(id, delta)).is_ok();
        }
        // Written straight, not through a `Value`: this is the per-token path of a relay.
        let mut data = Vec::with_capacity(delta.len() + 32);
        let mut o = Object::begin(&mut data);
        o.str("delta", delta);
        let event = match self.style {
            Style::AgentStream => {
                o.u64("index", self.index);
                sse::TOKEN
            }
            Style::ChatStream => sse::TEXT_DELTA,
            Style::AgentSync | Style::Complete | Style::OpenAi | Style::OpenAiStream => {
                return true
            }
        };
        o.end();
        self.index += 1;
        // Escaped JSON is ASCII-safe UTF-8 built from a `&str`.
        let data = String::from_utf8(data).unwrap_or_default();
        let listeners = self.emit_text(event, data);
        let Out::Stream(em) = &mut self.out else {
            return true;
        };
        if !em.flush_due {
            em.flush_due = true;
            cx.set_timer(FLUSH_EVERY, TAG_FLUSH);
        }
        listeners > 0
            || self
                .shared
                .hub
                .orphaned_for(&em.stream)
                .is_none_or(|d| d < ORPHAN_GRACE)
    }

    /// Publishes an event on the open stream; returns how many listen.
    fn emit(&mut self, event: &str, data: &Value) -> usize {
        self.emit_text(event, data.to_string())
    }

    /// Publishes an event whose data is JSON text already.
    fn emit_text(&mut self, event: &str, data: String) -> usize {
        let Out::Stream(em) = &mut self.out else {
            return 0;
        };
        let e = halyard_storage::StreamEvent {
            id: em.next_id,
            event: event.to_string(),
            data,
        };
        em.next_id += 1;
        self.shared.hub.publish(&em.stream, e)
    }

    /// Writes the stream's buffered events to the log.
    fn flush(&mut self) -> Status {
        if let Out::Stream(em) = &mut self.out {
            em.flush_due = false;
            let store = &*self.shared.store;
            self.shared.hub.flush(store, &self.tenant, &em.stream);
        }
        Status::Pending
    }

    fn end_stream(&mut self) {
        if let Out::Stream(em) = std::mem::replace(&mut self.out, Out::Sent) {
            let store = &*self.shared.store;
            self.shared.hub.finish(store, &self.tenant, em.stream);
        }
    }
}

fn json_response(body: &Value) -> Response {
    Response::json(200, serde_json::to_vec(body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::Deltas;

    #[test]
    fn deltas_come_back_in_order_and_are_kept_for_the_next_read() {
        let mut d = Deltas::default();
        for s in ["Hel", "", "lo ", "wörld"] {
            d.push(s);
        }
        assert_eq!(d.iter().collect::<Vec<_>>(), ["Hel", "", "lo ", "wörld"]);
        d.clear();
        assert_eq!(d.iter().count(), 0);
        d.push("again");
        assert_eq!(d.iter().collect::<Vec<_>>(), ["again"]);
    }
}
