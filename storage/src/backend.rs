//! The interface between the API and storage: the [`Backend`] trait.
//!
//! Responsible for: the whole set of calls the API layer makes (one commit method for every
//! write, typed queries for reads, a health query), in terms of owned model values, so that
//! a second backend (an external database) can implement it without the handlers changing.
//! Not responsible for: any implementation (the embedded log is [`crate::Store`]).

use std::path::Path;

use crate::backup::{BackupError, BackupOptions, BackupReport};
use crate::error::StoreError;
use crate::model::{
    Agent, AgentVersion, ApiKey, Channel, Deployment, Feedback, Message, Project, PublicKey,
    Secret, Session, SessionStatus, StreamEvent, Tenant, Tool, TraceEvent, User,
};
use crate::mutation::Mutation;

/// Called once a commit is durable (`Ok`) or has failed for good (`Err`). Runs on the
/// writer thread: it must be quick (hand the result to a connection's loop and return).
pub type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send + 'static>;

/// A page request (CONVENTIONS.md section 6); the API clamps `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Items to skip.
    pub offset: usize,
    /// Items to return at most.
    pub limit: usize,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            offset: 0,
            limit: 50,
        }
    }
}

impl Page {
    /// A page of everything (for internal callers).
    pub const ALL: Page = Page {
        offset: 0,
        limit: usize::MAX,
    };
}

/// One page of a list and the total number of items before paging.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed<T> {
    /// The page's items.
    pub items: Vec<T>,
    /// Total items matching.
    pub total: usize,
}

/// Filters of the session list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionFilter<'a> {
    /// Only this status.
    pub status: Option<SessionStatus>,
    /// Only this channel.
    pub channel: Option<Channel>,
    /// Only sessions created by this SDK token id.
    pub created_by_token: Option<&'a str>,
}

impl SessionFilter<'_> {
    /// Whether no filter is set (every session passes).
    pub fn is_empty(&self) -> bool {
        *self == SessionFilter::default()
    }

    /// Whether `s` passes every filter that is set.
    pub fn matches(&self, s: &Session) -> bool {
        self.status.is_none_or(|st| s.status == st)
            && self.channel.is_none_or(|c| s.channel == c)
            && self
                .created_by_token
                .is_none_or(|t| s.created_by_token.as_deref() == Some(t))
    }
}

/// A stream's owner and the events after a given id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReplay {
    /// Principal id of the stream's creator.
    pub owner: String,
    /// Id of the node running it on a shared store (empty: one node, or not recorded).
    pub node: String,
    /// Events with an id greater than the one asked for, in order.
    pub events: Vec<StreamEvent>,
}

/// What the API layer needs from storage. Lists are newest first (ties broken by id) unless
/// said otherwise; every read sees every commit that returned `Ok` from `commit`, durable or
/// not yet, and never waits for an fsync.
pub trait Backend: Send + Sync {
    /// True while writes are accepted: false after a failed write or fsync
    /// (`/health/ready` answers 503).
    fn is_healthy(&self) -> bool;

    /// The log's counters and files for `/metrics`; `None` for a backend without a log.
    fn log_metrics(&self) -> Option<crate::store::LogMetrics> {
        None
    }

    /// Validates `mutations` against the state and applies them, all or nothing, in the same
    /// order as they reach the log. `Err` (409, 404, poisoned) means nothing was applied and
    /// `done` is dropped uncalled. `Ok` means the reads see the change now, and `done` runs
    /// once it is durable (or with the error that made it fail).
    fn commit(
        &self,
        tenant: &str,
        mutations: Vec<Mutation>,
        done: Completion,
    ) -> Result<(), StoreError>;

    /// [`Backend::commit`] for a change nobody waits on (a turn's user message, its tool
    /// calls, stream events): the reads see it now and it becomes durable with the next
    /// awaited commit, or soon after (the log: within
    /// [`UNAWAITED_SYNC_WITHIN`](crate::writer::UNAWAITED_SYNC_WITHIN)) without a sync of
    /// its own in front of that commit.
    fn commit_unawaited(&self, tenant: &str, mutations: Vec<Mutation>) -> Result<(), StoreError> {
        self.commit(tenant, mutations, Box::new(|_| {}))
    }

    /// A commit from an event loop (a chat turn's writes): never waits on the network.
    /// The embedded store commits at once, as [`Backend::commit`] with `done`, or as
    /// [`Backend::commit_unawaited`] without. A shared store queues it to a thread of its
    /// own, in order with the tenant's other queued writes, and reports the outcome to
    /// `done`; reads see it once it is committed there, not yet when this returns. `Err`:
    /// refused at once (invalid here, or too many writes waiting).
    fn commit_queued(
        &self,
        tenant: &str,
        mutations: Vec<Mutation>,
        done: Option<Completion>,
    ) -> Result<(), StoreError> {
        match done {
            Some(done) => self.commit(tenant, mutations, done),
            None => self.commit_unawaited(tenant, mutations),
        }
    }

    /// A tenant.
    fn tenant(&self, id: &str) -> Option<Tenant>;
    /// All tenants, by creation time.
    fn tenants(&self, page: Page) -> Listed<Tenant>;
    /// A user.
    fn user(&self, tenant: &str, id: &str) -> Option<User>;
    /// The users with an email, with their tenant ids (login without a tenant id).
    fn users_by_email(&self, email: &str) -> Vec<(String, User)>;
    /// A tenant's users.
    fn users(&self, tenant: &str, page: Page) -> Listed<User>;
    /// An API key by the SHA-256 digest of the presented key, with its tenant id.
    fn api_key_by_digest(&self, digest: &[u8; 32]) -> Option<(String, ApiKey)>;
    /// An API key by id.
    fn api_key(&self, tenant: &str, id: &str) -> Option<ApiKey>;
    /// A tenant's API keys.
    fn api_keys(&self, tenant: &str, page: Page) -> Listed<ApiKey>;
    /// A project.
    fn project(&self, tenant: &str, id: &str) -> Option<Project>;
    /// A tenant's projects.
    fn projects(&self, tenant: &str, page: Page) -> Listed<Project>;
    /// A session's trace events, oldest first.
    fn traces(&self, tenant: &str, project_id: &str, session_id: &str) -> Option<Vec<TraceEvent>>;
    /// A tool by id.
    fn tool(&self, tenant: &str, project_id: &str, id: &str) -> Option<Tool>;
    /// A tool by name within a project.
    fn tool_by_name(&self, tenant: &str, project_id: &str, name: &str) -> Option<Tool>;
    /// Tools of a project, newest first.
    fn tools(&self, tenant: &str, project_id: &str, page: Page) -> Listed<Tool>;
    /// Versions of an agent name, newest first.
    fn agent_versions(
        &self,
        tenant: &str,
        project_id: &str,
        name: &str,
        page: Page,
    ) -> Listed<AgentVersion>;
    /// Version `n` of an agent name.
    fn agent_version(
        &self,
        tenant: &str,
        project_id: &str,
        name: &str,
        n: u32,
    ) -> Option<AgentVersion>;
    /// A project's turn and rating rollups from `from_ms` to `to_ms` (by the hour), grouped.
    fn analytics(
        &self,
        tenant: &str,
        project_id: &str,
        from_ms: u64,
        to_ms: u64,
        by: crate::state::rollup::GroupBy,
    ) -> Vec<(crate::state::rollup::Group, crate::state::rollup::Rollup)>;
    /// Feedback on a session's messages, in the order first given.
    fn feedback(&self, tenant: &str, project_id: &str, session_id: &str) -> Vec<Feedback>;
    /// The deployment a session runs, if it was opened on one.
    fn session_deployment(
        &self,
        tenant: &str,
        project_id: &str,
        session_id: &str,
    ) -> Option<String>;
    /// A deployment by id.
    fn deployment(&self, tenant: &str, project_id: &str, id: &str) -> Option<Deployment>;
    /// Every deployment of a project, newest first.
    fn deployments(&self, tenant: &str, project_id: &str) -> Vec<Deployment>;
    /// An agent by id.
    fn agent(&self, tenant: &str, project_id: &str, id: &str) -> Option<Agent>;
    /// An agent by name within a project.
    fn agent_by_name(&self, tenant: &str, project_id: &str, name: &str) -> Option<Agent>;
    /// Agents of one project, or of all the tenant's projects.
    fn agents(&self, tenant: &str, project_id: Option<&str>, page: Page) -> Listed<Agent>;
    /// Agents with a name across the tenant's projects (`GET /api/agents/:name`).
    fn agents_named(&self, tenant: &str, name: &str) -> Vec<Agent>;
    /// A session.
    fn session(&self, tenant: &str, project_id: &str, id: &str) -> Option<Session>;
    /// Tenant and project of a session id.
    fn locate_session(&self, id: &str) -> Option<(String, String)>;
    /// Sessions of a project, newest first.
    fn sessions(
        &self,
        tenant: &str,
        project_id: &str,
        filter: &SessionFilter<'_>,
        page: Page,
    ) -> Listed<Session> {
        let mut items = Vec::new();
        let total = self.each_session(tenant, project_id, filter, page, &mut |s| {
            items.push(s.clone())
        });
        Listed { items, total }
    }
    /// Visits one page of a project's sessions, newest first, and returns how many match
    /// in all (0 for a missing project). `visit` runs under a read lock of the store: it
    /// must not call back into the store.
    fn each_session(
        &self,
        tenant: &str,
        project_id: &str,
        filter: &SessionFilter<'_>,
        page: Page,
        visit: &mut dyn FnMut(&Session),
    ) -> usize;
    /// Sessions of the tenant with status `Active`.
    fn active_session_count(&self, tenant: &str) -> u64;
    /// Messages of a session, oldest first; `None` if the session does not exist.
    fn messages(
        &self,
        tenant: &str,
        project_id: &str,
        session_id: &str,
        page: Page,
    ) -> Option<Listed<Message>>;
    /// Usage of a project's messages made within `from..=to` (ms since the epoch), summed
    /// per agent id, of the sessions `keep` accepts (all when `None`). Kept as messages
    /// apply: no walk of the messages.
    fn usage_totals(
        &self,
        tenant: &str,
        project_id: &str,
        from: u64,
        to: u64,
        keep: Option<&dyn Fn(&str) -> bool>,
    ) -> Vec<(String, crate::state::usage::UsageTotals)>;
    /// A secret by name.
    fn secret(&self, tenant: &str, project_id: &str, name: &str) -> Option<Secret>;
    /// Secrets of a project.
    fn secrets(&self, tenant: &str, project_id: &str, page: Page) -> Listed<Secret>;
    /// A public key by digest, with its tenant id.
    fn public_key_by_digest(&self, digest: &[u8; 32]) -> Option<(String, PublicKey)>;
    /// Public keys of a project.
    fn public_keys(&self, tenant: &str, project_id: &str) -> Vec<PublicKey>;
    /// Whether some public key allows `origin` (CORS preflights).
    fn origin_registered(&self, origin: &str) -> bool;
    /// A stream's owner and its events after `after`.
    fn stream_events_after(
        &self,
        tenant: &str,
        stream_id: &str,
        after: u64,
    ) -> Option<StreamReplay>;
    /// A server metadata value.
    fn meta(&self, key: &str) -> Option<Vec<u8>>;

    /// Whether other processes write the same data (a shared database): the API then runs
    /// handlers off the event loops and calls [`Backend::catch_up`] before each one.
    fn is_shared(&self) -> bool {
        false
    }

    /// This process's id among the nodes sharing the store (empty for a store of one
    /// process). Streams it starts record it, so that others can tell once it is gone.
    fn node(&self) -> &str {
        ""
    }

    /// [`Backend::catch_up`] of `tenant` before a read: a shared store also takes a read
    /// lease, so that the tenant's next reads need no catch-up ([`Backend::is_current`]).
    /// May wait on the network: never call it on an event loop.
    fn catch_up_to_read(&self, tenant: &str) -> Result<(), StoreError> {
        self.catch_up(Some(tenant))
    }

    /// Whether this process's copy of `tenant` holds every write acknowledged anywhere, so
    /// that a read may be answered from it with no [`Backend::catch_up`] first: always for
    /// a store of one process; on a shared store, while this node holds a read lease on
    /// the tenant (a check in memory, fit for an event loop).
    fn is_current(&self, tenant: &str) -> bool {
        let _ = tenant;
        !self.is_shared()
    }

    /// Whether node `node` is known to be gone: it has not shown itself alive for longer
    /// than its heartbeats allow. `false` when it cannot be told (no node recorded, a store
    /// of one process, or the database unreachable).
    fn is_node_gone(&self, node: &str) -> bool {
        let _ = node;
        false
    }

    /// Adds to the cluster's shared request rates what this node admitted since its last
    /// call (`used`, per tenant), and returns each tenant's debt and how many nodes share
    /// them; `None` for a store of one process. Waits on the network: never call it on an
    /// event loop.
    fn share_rates(&self, node: &str, used: &[RateUse]) -> Option<Result<RateShare, StoreError>> {
        let _ = (node, used);
        None
    }

    /// Takes one from the bucket `key` shared by every node, atomically (exact across
    /// nodes); `None` for a store of one process, whose limiter keeps its own buckets.
    /// Waits on the network: never call it on an event loop.
    fn take_shared_cell(
        &self,
        key: &str,
        quota: CellQuota,
    ) -> Option<Result<CellTaken, StoreError>> {
        let _ = (key, quota);
        None
    }

    /// The slots shared by every node (exact concurrent-session limits); `None` for a store
    /// of one process, whose limiter counts in memory.
    fn slots(&self) -> Option<&dyn crate::slots::Slots> {
        None
    }

    /// Brings this process's view of `tenant` (of every tenant when `None`) up to every
    /// commit acknowledged anywhere before the call: read-your-writes across processes.
    /// May wait on the network: never call it on an event loop.
    fn catch_up(&self, tenant: Option<&str>) -> Result<(), StoreError> {
        let _ = tenant;
        Ok(())
    }

    /// Deletes every stream started at least `retention_ms` before `now_ms` (`created_at +
    /// retention_ms <= now_ms`) with `Mutation::DeleteStream`, committed per tenant without
    /// waiting for durability, and returns how many it deleted. Compaction then drops the
    /// streams' records from disk.
    ///
    /// Streams of unknown start time (`created_at == 0`: started by a version that did not
    /// record it) are not deleted; the first call stamps them with `now_ms`, in memory only,
    /// so they expire one retention after the upgraded server first sweeps rather than at
    /// once. The stamp is not logged: after a restart such streams are stamped again by the
    /// next sweep.
    ///
    /// Streams are found under one read lock at a time and deleted afterwards, so no lock
    /// is held over the whole state. `Err` (poisoned, closed) stops the sweep; streams
    /// already deleted stay deleted.
    fn expire_streams(&self, now_ms: u64, retention_ms: u64) -> Result<usize, StoreError>;

    /// Copies a consistent cut of the data (every commit acknowledged before the call) into
    /// the new directory `to`, written atomically and checked (see [`crate::backup`]).
    /// Blocks for as long as the copy takes: call it off the event loops. Backends that
    /// cannot answer [`BackupError::Unsupported`].
    fn backup(&self, to: &Path, opts: &BackupOptions) -> Result<BackupReport, BackupError> {
        let _ = (to, opts);
        Err(BackupError::Unsupported)
    }
}

/// Streams deleted per commit by an expiry sweep: bounds how long one commit holds a
/// shard's write lock when a tenant has very many expired streams.
const EXPIRE_BATCH: usize = 1024;

/// Deletes the streams `expired` lists (tenant, stream ids), in commits of at most
/// [`EXPIRE_BATCH`], and returns how many it deleted: the second half of
/// [`Backend::expire_streams`] for a backend whose state lists them.
pub fn delete_streams(
    backend: &dyn Backend,
    expired: Vec<(String, Vec<String>)>,
) -> Result<usize, StoreError> {
    let mut deleted = 0;
    for (tenant, ids) in expired {
        for chunk in ids.chunks(EXPIRE_BATCH) {
            deleted += delete_stream_batch(backend, &tenant, chunk)?;
        }
    }
    Ok(deleted)
}

/// Deletes streams of one tenant in one commit and returns how many. A commit is all or
/// nothing, so if one of them was deleted since it was listed (the API deleting it), the
/// rest are deleted one by one, skipping the missing.
fn delete_stream_batch(
    backend: &dyn Backend,
    tenant: &str,
    ids: &[String],
) -> Result<usize, StoreError> {
    let del = |id: &String| Mutation::DeleteStream {
        stream_id: id.clone(),
    };
    match backend.commit_unawaited(tenant, ids.iter().map(del).collect()) {
        Ok(()) => Ok(ids.len()),
        Err(StoreError::NotFound { .. }) if ids.len() > 1 => {
            let mut deleted = 0;
            for id in ids {
                deleted += delete_stream_batch(backend, tenant, std::slice::from_ref(id))?;
            }
            Ok(deleted)
        }
        Err(StoreError::NotFound { .. }) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Commits and blocks until the commit is durable (or failed): for commands and tools run
/// outside a request, never on an event loop.
pub fn commit_and_wait(
    backend: &dyn Backend,
    tenant: &str,
    mutations: Vec<Mutation>,
) -> Result<(), StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    backend.commit(
        tenant,
        mutations,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    )?;
    rx.recv().unwrap_or(Err(StoreError::Closed))
}

/// Requests of one tenant a node admitted since it last shared its rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateUse {
    /// The tenant.
    pub tenant: String,
    /// Requests admitted (0: only asking for the others' use).
    pub admitted: u32,
    /// The tenant's emission interval (one second over its rate), in nanoseconds.
    pub interval_ns: u64,
    /// How long before the call the first of them was admitted, in nanoseconds: the shared
    /// bucket counts them from then.
    pub age_ns: u64,
}

/// A GCRA bucket kept by the shared database, for a limit that must be exact across nodes
/// (see [`Backend::take_shared_cell`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellQuota {
    /// Emission interval `T`, in nanoseconds.
    pub interval_ns: u64,
    /// Burst tolerance `tau = T * (burst - 1)`, in nanoseconds.
    pub tau_ns: u64,
}

/// What [`Backend::take_shared_cell`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellTaken {
    /// Allowed.
    Allowed,
    /// Denied; a take would be allowed this many nanoseconds from now.
    Denied {
        /// Nanoseconds until a take would be allowed.
        retry_in_ns: u64,
    },
}

/// What the cluster answered to [`Backend::share_rates`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateShare {
    /// Per tenant of the call, in its order: how far ahead of now its shared bucket's
    /// theoretical arrival time is, in nanoseconds (0: the bucket is full).
    pub debt_ns: Vec<u64>,
    /// Nodes that shared their rates within the last second (at least 1).
    pub nodes: u32,
}
