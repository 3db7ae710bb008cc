//! The agent runtime: a bounded execution queue served by worker threads.
//!
//! Responsible for: taking jobs without blocking the event loops (`QUEUE_FULL` when the
//! queue is full), starting workers as jobs need them (up to the configured number: an idle
//! server holds none, ~40 KB of RSS each), and on a worker: storing the user message, building the conversation
//! from the agent's instructions and the session history, calling the provider, streaming
//! deltas to the client and to the log, storing the assistant reply with its usage and
//! waiting until it is durable before the final event or response, and cancelling a turn
//! whose client went away (after a 1 s grace for a resume). Not responsible for: parsing
//! requests or authorization (see `chat`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_engine::{Responder, Response};
use halyard_storage::{
    ids, Agent, Backend, Message, MessageRole, Mutation, Page, Session, StreamEvent, Usage,
};
use serde_json::{json, Value};

use super::hub::Hub;
use super::openai::{self, OpenAi, Upstream};
use super::provider::{Completion, Echo, Flow, Prompt, ProviderError, Speaker};
use super::sse;
use crate::admission::Limiter;
use crate::error::ApiError;
use crate::reply::Finish;
use crate::vault::{aad, Vault};

/// Bytes a stream may buffer for a slow client before it is ended as a slow consumer.
pub const STREAM_BUFFER: usize = 256 * 1024;
/// How long a turn whose clients all went away waits for a resume before it is cancelled.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(1);

/// Settings of the runtime.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeConfig {
    /// Worker threads at most (started on demand).
    pub workers: usize,
    /// Jobs that may wait in the queue.
    pub queue: usize,
    /// Delay per token of the echo provider.
    pub echo_delay: Duration,
    /// Upstream timeouts of the openai provider.
    pub timeouts: openai::Timeouts,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            workers: 16,
            queue: 1024,
            echo_delay: Duration::ZERO,
            timeouts: openai::Timeouts {
                connect: Duration::from_secs(10),
                read: Duration::from_secs(60),
                body: Duration::from_secs(600),
            },
        }
    }
}

/// How a job answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `/chat/agent` JSON.
    AgentSync,
    /// `/chat/agent/stream` events: `session`, `token`, `done`.
    AgentStream,
    /// `/chat/stream` events: (`metadata`,) `text_delta`, `usage`, `complete`.
    ChatStream,
    /// `/chat/complete` JSON.
    Complete,
}

/// An agent turn on a session.
#[derive(Debug)]
pub struct Turn {
    /// Tenant.
    pub tenant: String,
    /// The session (new ones are stored by the worker).
    pub session: Session,
    /// Whether the session must be created.
    pub new_session: bool,
    /// The session's agent.
    pub agent: Agent,
    /// The user's message.
    pub message: String,
    /// Principal id of the caller (owner of the stream).
    pub owner: String,
}

/// A direct model call without a session.
#[derive(Debug)]
pub struct Direct {
    /// Tenant.
    pub tenant: String,
    /// The agent whose model is used.
    pub agent: Agent,
    /// The conversation as sent.
    pub prompt: Prompt,
    /// Principal id of the caller.
    pub owner: String,
}

/// The work of a job.
#[derive(Debug)]
pub enum Work {
    /// A turn.
    Turn(Turn),
    /// A direct call.
    Direct(Direct),
}

/// One queued job.
#[derive(Debug)]
pub struct Job {
    /// What to do.
    pub work: Work,
    /// How to answer.
    pub style: Style,
    /// The deferred reply.
    pub responder: Responder,
    /// Headers every response of the request gets.
    pub finish: Finish,
    /// When the request arrived.
    pub started: Instant,
}

struct Shared {
    store: Arc<dyn Backend>,
    vault: Arc<Vault>,
    hub: Arc<Hub>,
    limiter: Arc<Limiter>,
    openai: OpenAi,
    echo: Echo,
}

/// The queue and its workers.
pub struct Runtime {
    tx: crossbeam_channel::Sender<Job>,
    hub: Arc<Hub>,
    pool: Arc<Pool>,
}

/// The workers: how many may run, and what a new one needs.
struct Pool {
    max: usize,
    started: AtomicUsize,
    /// Workers waiting for a job.
    idle: AtomicUsize,
    rx: crossbeam_channel::Receiver<Job>,
    shared: Arc<Shared>,
}

impl Pool {
    /// Starts one more worker unless `max` run already.
    fn grow(self: &Arc<Self>) {
        let n = self.started.fetch_add(1, Ordering::AcqRel);
        if n >= self.max {
            self.started.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("halyard-agent-{n}"))
            .spawn(move || pool.serve());
        if let Err(e) = spawned {
            // The next job tries again.
            self.started.fetch_sub(1, Ordering::AcqRel);
            eprintln!("halyard: cannot start agent worker {n}: {e}");
        }
    }

    /// A worker's life: jobs until the runtime is dropped.
    fn serve(&self) {
        loop {
            self.idle.fetch_add(1, Ordering::AcqRel);
            let job = self.rx.recv();
            self.idle.fetch_sub(1, Ordering::AcqRel);
            match job {
                Ok(job) => self.shared.run(job),
                Err(_) => return,
            }
        }
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("queued", &self.tx.len())
            .field("workers", &self.pool.started.load(Ordering::Relaxed))
            .finish()
    }
}

impl Runtime {
    /// A runtime of at most `cfg.workers` workers; none runs until a job comes.
    pub fn start(
        cfg: RuntimeConfig,
        store: Arc<dyn Backend>,
        vault: Arc<Vault>,
        limiter: Arc<Limiter>,
    ) -> Runtime {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(cfg.queue.max(1));
        let hub = Arc::new(Hub::default());
        let shared = Arc::new(Shared {
            store,
            vault,
            hub: hub.clone(),
            limiter,
            openai: OpenAi::new(cfg.timeouts),
            echo: Echo {
                delay: cfg.echo_delay,
            },
        });
        let pool = Arc::new(Pool {
            max: cfg.workers.max(1),
            started: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            rx,
            shared,
        });
        Runtime { tx, hub, pool }
    }

    /// Queues a job, and starts a worker when more jobs wait than workers do; a full queue
    /// gives the job back.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        self.tx
            .try_send(job)
            .map_err(|e| Box::new(e.into_inner()))?;
        if self.tx.len() > self.pool.idle.load(Ordering::Acquire) {
            self.pool.grow();
        }
        Ok(())
    }

    /// Jobs waiting.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// The live stream registry.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

/// A provider ready to stream.
enum Ready {
    Echo,
    OpenAi(Upstream),
}

fn usage_json(u: &Usage) -> Value {
    json!({"inputTokens": u.input_tokens, "outputTokens": u.output_tokens, "totalTokens": u.total_tokens})
}

/// The cost of `u` under the agent's pricing, if it has one.
pub fn cost(agent: &Agent, u: &Usage) -> Option<f64> {
    agent.model.pricing.map(|p| {
        (u.input_tokens as f64 * p.input_per_mtok + u.output_tokens as f64 * p.output_per_mtok)
            / 1e6
    })
}

/// Emits the events of one stream, numbering them from 1.
struct Emitter<'a> {
    shared: &'a Shared,
    tenant: &'a str,
    stream_id: String,
    next_id: u64,
}

impl Emitter<'_> {
    fn emit(&mut self, event: &str, data: Value) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        let e = StreamEvent {
            id,
            event: event.to_string(),
            data: data.to_string(),
        };
        self.shared
            .hub
            .publish(&*self.shared.store, self.tenant, &self.stream_id, e)
    }

    /// Whether the turn should stop: nobody has listened for the grace period.
    fn abandoned(&self, listeners: usize) -> bool {
        listeners == 0
            && self
                .shared
                .hub
                .orphaned_for(&self.stream_id)
                .is_some_and(|d| d >= ORPHAN_GRACE)
    }
}

impl Shared {
    /// Turns the deferred reply into an event stream, registers it (stored, for resumes by
    /// `owner`) and returns the emitter of its events.
    fn open_stream<'a>(
        &'a self,
        tenant: &'a str,
        owner: &str,
        responder: Responder,
        finish: &Finish,
    ) -> Emitter<'a> {
        let stream_id = ids::new_id("str_");
        let sender = responder.stream(finish.apply(sse::head(&stream_id)), STREAM_BUFFER);
        let start = Mutation::StartStream {
            stream_id: stream_id.clone(),
            owner: owner.to_string(),
        };
        // Without the start record the stream cannot be resumed, but it is still served.
        let _ = self.store.commit(tenant, vec![start], Box::new(|_| {}));
        self.hub.open(&stream_id, sender);
        Emitter {
            shared: self,
            tenant,
            stream_id,
            next_id: 1,
        }
    }

    fn run(&self, job: Job) {
        let Job {
            work,
            style,
            responder,
            finish,
            started,
        } = job;
        match work {
            Work::Turn(turn) => self.turn(turn, style, responder, &finish, started),
            Work::Direct(direct) => self.direct(direct, style, responder, &finish, started),
        }
    }

    fn fail(&self, responder: Responder, finish: &Finish, e: ApiError) {
        responder.send(finish.apply(e.into_response()));
    }

    fn prepare(
        &self,
        tenant: &str,
        agent: &Agent,
        prompt: &Prompt,
    ) -> Result<Ready, ProviderError> {
        match agent.model.provider.as_str() {
            "echo" => Ok(Ready::Echo),
            "openai" => {
                let base = agent
                    .model
                    .base_url
                    .as_deref()
                    .unwrap_or(openai::DEFAULT_BASE_URL);
                let key = self.provider_key(tenant, agent)?;
                self.openai.start(base, &key, prompt).map(Ready::OpenAi)
            }
            other => Err(ProviderError::NotConfigured(format!(
                "unknown provider {other}"
            ))),
        }
    }

    fn provider_key(&self, tenant: &str, agent: &Agent) -> Result<String, ProviderError> {
        let name = agent.model.api_key_secret.as_deref().ok_or_else(|| {
            ProviderError::NotConfigured("the agent names no apiKeySecret".into())
        })?;
        let secret = self
            .store
            .secret(tenant, &agent.project_id, name)
            .ok_or_else(|| ProviderError::NotConfigured(format!("secret {name} does not exist")))?;
        let plain = self
            .vault
            .open(&secret.ciphertext, &aad(tenant, &agent.project_id, name))
            .ok_or_else(|| {
                ProviderError::NotConfigured(format!("secret {name} cannot be opened"))
            })?;
        String::from_utf8(plain)
            .map_err(|_| ProviderError::NotConfigured(format!("secret {name} is not text")))
    }

    fn generate(
        &self,
        ready: Ready,
        prompt: &Prompt,
        on_delta: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<Completion, ProviderError> {
        match ready {
            Ready::Echo => Ok(self.echo.run(prompt, on_delta)),
            Ready::OpenAi(up) => up.run(on_delta),
        }
    }

    fn prompt_for(&self, turn: &Turn) -> Prompt {
        let mut messages = Vec::new();
        if let Some(sys) = turn.agent.instructions.as_deref().filter(|s| !s.is_empty()) {
            messages.push((Speaker::System, sys.to_string()));
        }
        let history = self
            .store
            .messages(
                &turn.tenant,
                &turn.session.project_id,
                &turn.session.id,
                Page::ALL,
            )
            .map(|l| l.items)
            .unwrap_or_default();
        for m in history {
            let who = match m.role {
                MessageRole::User => Speaker::User,
                MessageRole::Assistant => Speaker::Assistant,
                MessageRole::System => Speaker::System,
            };
            messages.push((who, m.content));
        }
        Prompt {
            messages,
            model: turn.agent.model.model.clone(),
            temperature: turn.agent.model.temperature,
            max_tokens: turn.agent.model.max_tokens,
        }
    }

    fn turn(
        &self,
        turn: Turn,
        style: Style,
        responder: Responder,
        finish: &Finish,
        started: Instant,
    ) {
        let now = crate::time::now_ms();
        let (tenant, pid, sid) = (
            turn.tenant.clone(),
            turn.session.project_id.clone(),
            turn.session.id.clone(),
        );
        let user = Message {
            id: ids::new_id(ids::MESSAGE),
            role: MessageRole::User,
            content: turn.message.clone(),
            usage: None,
            created_at: now,
        };
        let mut first = Vec::with_capacity(2);
        if turn.new_session {
            first.push(Mutation::PutSession(turn.session.clone()));
        }
        first.push(Mutation::append_message(&pid, &sid, &user));
        if let Err(e) = self.store.commit(&tenant, first, Box::new(|_| {})) {
            if turn.new_session {
                self.limiter.sessions.release(&tenant, &sid);
            }
            return self.fail(responder, finish, e.into());
        }
        self.limiter.sessions.touch(&tenant, &sid, now);
        let prompt = self.prompt_for(&turn);
        let ready = match self.prepare(&tenant, &turn.agent, &prompt) {
            Ok(r) => r,
            Err(e) => return self.fail(responder, finish, ApiError::Unavailable(e.to_string())),
        };
        if style == Style::AgentSync {
            return self.turn_sync(&turn, ready, &prompt, responder, finish, started);
        }
        let mut em = self.open_stream(&tenant, &turn.owner, responder, finish);
        if style == Style::AgentStream {
            em.emit("session", json!({"sessionId": sid}));
        }
        let mut index = 0u64;
        let mut on_delta = |delta: &str| {
            let n = if style == Style::AgentStream {
                em.emit("token", json!({"delta": delta, "index": index}))
            } else {
                em.emit("text_delta", json!({"delta": delta}))
            };
            index += 1;
            if em.abandoned(n) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        };
        let result = self.generate(ready, &prompt, &mut on_delta);
        let stream_id = em.stream_id.clone();
        match result {
            Ok(c) => {
                let stored = self.store_reply(&tenant, &pid, &sid, &c, started);
                match (stored, style) {
                    (Err(e), _) => {
                        em.emit("error", json!({"code": e.code(), "message": e.to_string()}));
                    }
                    (Ok(message_id), Style::AgentStream) => {
                        em.emit("done", json!({"sessionId": sid, "messageId": message_id, "usage": usage_json(&c.usage)}));
                    }
                    (Ok(_), _) => {
                        em.emit("usage", json!({"inputTokens": c.usage.input_tokens, "outputTokens": c.usage.output_tokens}));
                        em.emit("complete", complete_json(&c.usage, started));
                    }
                }
            }
            Err(e) => {
                em.emit(
                    "error",
                    json!({"code": "SERVICE_UNAVAILABLE", "message": e.to_string()}),
                );
            }
        }
        self.hub.finish(&stream_id);
    }

    fn turn_sync(
        &self,
        turn: &Turn,
        ready: Ready,
        prompt: &Prompt,
        responder: Responder,
        finish: &Finish,
        started: Instant,
    ) {
        let (pid, sid) = (&turn.session.project_id, &turn.session.id);
        let c = match self.generate(ready, prompt, &mut |_| Flow::Continue) {
            Ok(c) => c,
            Err(e) => return self.fail(responder, finish, ApiError::Unavailable(e.to_string())),
        };
        match self.store_reply(&turn.tenant, pid, sid, &c, started) {
            Ok(message_id) => {
                let body = json!({
                    "success": true,
                    "sessionId": sid,
                    "messageId": message_id,
                    "response": c.text,
                    "usage": usage_json(&c.usage),
                    "latencyMs": started.elapsed().as_millis() as u64,
                });
                responder.send(finish.apply(json_response(&body)));
            }
            Err(e) => self.fail(responder, finish, e),
        }
    }

    /// Stores the assistant reply (usage with the turn's latency) and waits until it is
    /// durable; returns its id.
    fn store_reply(
        &self,
        tenant: &str,
        pid: &str,
        sid: &str,
        c: &Completion,
        started: Instant,
    ) -> Result<String, ApiError> {
        let mut usage = c.usage;
        usage.latency_ms = started.elapsed().as_millis() as u64;
        let m = Message {
            id: ids::new_id(ids::MESSAGE),
            role: MessageRole::Assistant,
            content: c.text.clone(),
            usage: Some(usage),
            created_at: crate::time::now_ms(),
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.store
            .commit(
                tenant,
                vec![Mutation::append_message(pid, sid, &m)],
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            )
            .map_err(ApiError::from)?;
        match rx.recv() {
            Ok(Ok(())) => Ok(m.id),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(ApiError::Unavailable("Storage is unavailable".into())),
        }
    }

    fn direct(
        &self,
        d: Direct,
        style: Style,
        responder: Responder,
        finish: &Finish,
        started: Instant,
    ) {
        let ready = match self.prepare(&d.tenant, &d.agent, &d.prompt) {
            Ok(r) => r,
            Err(e) => return self.fail(responder, finish, ApiError::Unavailable(e.to_string())),
        };
        if style == Style::Complete {
            let c = match self.generate(ready, &d.prompt, &mut |_| Flow::Continue) {
                Ok(c) => c,
                Err(e) => {
                    return self.fail(responder, finish, ApiError::Unavailable(e.to_string()))
                }
            };
            let mut usage = usage_json(&c.usage);
            usage["estimatedCost"] = cost(&d.agent, &c.usage).map_or(Value::Null, Value::from);
            let body = json!({
                "success": true,
                "content": c.text,
                "toolCalls": [],
                "model": d.prompt.model,
                "finishReason": c.finish_reason,
                "usage": usage,
                "latencyMs": started.elapsed().as_millis() as u64,
            });
            return responder.send(finish.apply(json_response(&body)));
        }
        let mut em = self.open_stream(&d.tenant, &d.owner, responder, finish);
        em.emit(
            "metadata",
            json!({"model": d.prompt.model, "provider": d.agent.model.provider}),
        );
        let mut on_delta = |delta: &str| {
            let n = em.emit("text_delta", json!({"delta": delta}));
            if em.abandoned(n) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        };
        let result = self.generate(ready, &d.prompt, &mut on_delta);
        match result {
            Ok(c) => {
                em.emit("usage", json!({"inputTokens": c.usage.input_tokens, "outputTokens": c.usage.output_tokens}));
                em.emit("complete", complete_json(&c.usage, started));
            }
            Err(e) => {
                em.emit(
                    "error",
                    json!({"code": "SERVICE_UNAVAILABLE", "message": e.to_string()}),
                );
            }
        }
        let stream_id = em.stream_id.clone();
        self.hub.finish(&stream_id);
    }
}

fn complete_json(u: &Usage, started: Instant) -> Value {
    json!({
        "inputTokens": u.input_tokens,
        "outputTokens": u.output_tokens,
        "totalTokens": u.total_tokens,
        "latencyMs": started.elapsed().as_millis() as u64,
    })
}

fn json_response(body: &Value) -> Response {
    Response::json(200, serde_json::to_vec(body).unwrap_or_default())
}
