//! The agent runtime: turns as tasks on the event loops, under a cap on how many run.
//!
//! Responsible for: what a turn needs from the rest of the API (store, vault, stream hub,
//! session limiter, provider settings), starting each job as a [`Turn`](super::turn) task on
//! the loop of the request that asked for it, and refusing a job with `429 QUEUE_FULL` while
//! [`RuntimeConfig::max_running`] turns run (a running turn waiting on a model costs its
//! memory, not a thread). Not responsible for: parsing requests or authorization (see
//! `handlers::chat`), or what a turn does (see `turn`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_engine::client::{FetchTimeouts, Reach};
use halyard_engine::{Request, Responder};
use halyard_storage::{Agent, Backend, Deployment, Session, Usage};

use super::hub::Hub;
use super::mcp_import::{McpImport, McpImportTask};
use super::metrics::TurnMetrics;
use super::provider::Prompt;
use super::tool_test::{ToolTest, ToolTestTask};
use super::turn::TurnTask;
use crate::admission::Limiter;
use crate::reply::Finish;
use crate::vault::Vault;

/// Bytes a stream may buffer for a slow client before it is ended as a slow consumer.
pub const STREAM_BUFFER: usize = 256 * 1024;
/// How long a turn whose clients all went away waits for a resume before it is cancelled.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(1);
/// How often expired streams are looked for (when turns run: only turns make streams).
pub const EXPIRY_SWEEP: Duration = Duration::from_secs(60);

/// Added to the patience of a follow (see [`Runtime::follow_patience`]).
const FOLLOW_MARGIN: Duration = Duration::from_secs(5);

/// Settings of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Turns running at once; more are `429 QUEUE_FULL`.
    pub max_running: usize,
    /// Delay per token of the echo provider.
    pub echo_delay: Duration,
    /// Deadlines of upstream model calls.
    pub timeouts: FetchTimeouts,
    /// How long a stream's events are kept for resumes.
    pub stream_retention: Duration,
    /// Where tool calls may connect: public addresses and the operator's allow-list
    /// (`--tool-allow-private`, `--tool-allow-cidr`).
    pub tool_reach: Reach,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_running: 10_000,
            echo_delay: Duration::ZERO,
            timeouts: FetchTimeouts::default(),
            stream_retention: Duration::from_secs(86_400),
            tool_reach: Reach::Public(Vec::new().into()),
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
    /// `/v1/chat/completions`: a `chat.completion`.
    OpenAi,
    /// `/v1/chat/completions` with `stream: true`: `chat.completion.chunk` frames, `[DONE]`.
    OpenAiStream,
}

impl Style {
    /// Whether the answer is an event stream.
    pub fn streams(self) -> bool {
        matches!(
            self,
            Style::AgentStream | Style::ChatStream | Style::OpenAiStream
        )
    }
}

/// An agent turn on a session.
#[derive(Debug)]
pub struct Turn {
    /// Tenant.
    pub tenant: String,
    /// The session (a new one is stored by the turn).
    pub session: Session,
    /// Whether the session must be created.
    pub new_session: bool,
    /// The session's agent.
    pub agent: Agent,
    /// The user's message.
    pub message: String,
    /// Principal id of the caller (owner of the stream).
    pub owner: String,
    /// The deployment the session runs (a new session is bound to it when stored).
    pub deployment: Option<Box<Deployment>>,
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
    /// How an OpenAI-compatible call names its answer (its styles only).
    pub openai: Option<super::openai_compat::CompletionId>,
}

/// The work of a job.
#[derive(Debug)]
pub enum Work {
    /// A turn.
    Turn(Turn),
    /// A direct call.
    Direct(Direct),
}

/// One job.
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

/// What every turn shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Backend>,
    pub(crate) vault: Arc<Vault>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) cfg: RuntimeConfig,
    /// Turns running now.
    pub(crate) running: AtomicUsize,
    /// Turns and providers, for `/metrics`.
    pub(crate) metrics: TurnMetrics,
    /// When (ms since the epoch) expired streams are next looked for.
    next_sweep: AtomicU64,
}

impl Shared {
    /// The value of the project secret `name`; the error never holds the value.
    pub(crate) fn open_secret(
        &self,
        tenant: &str,
        pid: &str,
        name: &str,
    ) -> Result<String, String> {
        let secret = self
            .store
            .secret(tenant, pid, name)
            .ok_or_else(|| format!("secret {name} does not exist"))?;
        let plain = self
            .vault
            .open(&secret.ciphertext, &crate::vault::aad(tenant, pid, name))
            .ok_or_else(|| format!("secret {name} cannot be opened"))?;
        String::from_utf8(plain).map_err(|_| format!("secret {name} is not text"))
    }
}

/// Counts a running turn for as long as it lives.
pub(crate) struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The runtime.
pub struct Runtime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("running", &self.running())
            .finish()
    }
}

impl Runtime {
    /// A runtime; it holds no thread.
    pub fn new(
        cfg: RuntimeConfig,
        store: Arc<dyn Backend>,
        vault: Arc<Vault>,
        limiter: Arc<Limiter>,
    ) -> Runtime {
        let shared = Arc::new(Shared {
            store,
            vault,
            hub: Arc::new(Hub::default()),
            limiter,
            cfg,
            running: AtomicUsize::new(0),
            metrics: TurnMetrics::default(),
            next_sweep: AtomicU64::new(0),
        });
        Runtime { shared }
    }

    /// Starts `job` on the loop serving `req`, unless the cap on running turns is reached:
    /// then the job is given back.
    pub fn submit<C>(&self, req: &Request<C>, job: Job) -> Result<(), Box<Job>> {
        let cap = self.shared.cfg.max_running.max(1);
        let taken = self
            .shared
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Box::new(job));
        }
        // Swept before the turn starts, so that a sweep never lags behind the streams of
        // the turn that scheduled it (the next one is due one interval after this one).
        self.sweep_expired_streams();
        let running = Running(self.shared.clone());
        req.spawn(Box::new(TurnTask::new(self.shared.clone(), job, running)));
        Ok(())
    }

    /// Deletes the streams older than the retention, at most once per [`EXPIRY_SWEEP`] (or
    /// per retention, if shorter); the next snapshot then reclaims their log space.
    fn sweep_expired_streams(&self) {
        let now = crate::time::now_ms();
        let due = self.shared.next_sweep.load(Ordering::Acquire);
        let retention = self.shared.cfg.stream_retention.as_millis() as u64;
        // A retention shorter than the sweep interval is swept as often as it lasts.
        let next = now + (EXPIRY_SWEEP.as_millis() as u64).min(retention.max(1));
        if now < due
            || self
                .shared
                .next_sweep
                .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        if let Err(e) = self.shared.store.expire_streams(now, retention) {
            halyard_engine::log_error!("cannot expire old streams: {e}");
        }
    }

    /// Runs one call of `tool` with `input` on the loop serving `req`, and answers
    /// `responder` with its output (`POST .../tools/:toolId/test`).
    pub fn test_tool<C>(&self, req: &Request<C>, test: ToolTest) {
        req.spawn(Box::new(ToolTestTask::new(self.shared.clone(), test)));
    }

    /// Imports an MCP server's tools into a project, on the loop serving `req`.
    pub fn import_mcp<C>(&self, req: &Request<C>, job: McpImport) {
        req.spawn(Box::new(McpImportTask::new(self.shared.clone(), job)));
    }

    /// Turns running now.
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Renders the turn families of `/metrics`: running turns and their cap, then the
    /// per-provider counters and histograms. Turns do not queue (over the cap they are
    /// refused, counted as `halyard_rate_limit_refusals_total{reason="queue_full"}`).
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# TYPE halyard_turns_running gauge\nhalyard_turns_running {}\n\
             # TYPE halyard_turns_max_running gauge\nhalyard_turns_max_running {}",
            self.running(),
            self.shared.cfg.max_running
        );
        self.shared.metrics.render(out);
    }

    /// How long a resume following another node's stream waits for its next event before
    /// taking that node for gone: the longest a turn waits on its model, two flushes, and a
    /// margin. (A tool call may be silent for longer: the follow then ends early, with
    /// `STREAM_INTERRUPTED`, and a new resume picks up where it stopped.)
    pub fn follow_patience(&self) -> Duration {
        self.shared.cfg.timeouts.first_byte + 2 * super::turn::FLUSH_EVERY + FOLLOW_MARGIN
    }

    /// The live stream registry.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.shared.hub
    }
}

/// `{inputTokens, outputTokens, totalTokens}`.
pub(crate) fn usage_json(u: &Usage) -> serde_json::Value {
    serde_json::json!({"inputTokens": u.input_tokens, "outputTokens": u.output_tokens, "totalTokens": u.total_tokens})
}

/// The cost of `u` under the agent's pricing, if it has one.
pub fn cost(agent: &Agent, u: &Usage) -> Option<f64> {
    agent.model.pricing.map(|p| {
        (u.input_tokens as f64 * p.input_per_mtok + u.output_tokens as f64 * p.output_per_mtok)
            / 1e6
    })
}
