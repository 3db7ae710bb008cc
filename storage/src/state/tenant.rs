//! One tenant's in-memory data and its per-tenant indexes.
//!
//! Responsible for: holding a tenant's users, keys, projects (with their agents, sessions,
//! messages, secrets, public keys, tools, agent versions and deployments) and streams, indexed by id and by the names that must
//! be unique. Not responsible for: changing them (`apply`) or cross-tenant lookups (`index`).

use std::collections::HashMap;

use super::named::Named;
use crate::model::{
    Agent, AgentVersion, ApiKey, Deployment, Feedback, Project, PublicKey, Secret, Session,
    SessionStatus, StoredMessage, StreamEvent, Tenant, Tool, TraceEvent, User,
};

/// A session and its messages, oldest first.
#[derive(Debug, Clone)]
pub struct SessionData {
    /// The session.
    pub session: Session,
    /// Its messages in order, in compact form.
    pub messages: Vec<StoredMessage>,
    /// Its turns' trace events, in order.
    pub traces: Vec<TraceEvent>,
    /// The deployment it runs, if it was opened on one.
    pub deployment_id: Option<String>,
    /// Feedback on its messages, in the order first given.
    pub feedback: Vec<Feedback>,
}

/// A project and everything that belongs to it.
#[derive(Debug, Clone)]
pub struct ProjectData {
    /// The project.
    pub project: Project,
    /// Agents, by id and by name.
    pub agents: Named<Agent>,
    /// Sessions by id.
    pub sessions: HashMap<String, SessionData>,
    /// Session ids in creation order (oldest first): lists read it backwards.
    pub session_order: Vec<String>,
    /// Secrets by name.
    pub secrets: HashMap<String, Secret>,
    /// Public keys by id.
    pub public_keys: HashMap<String, PublicKey>,
    /// Tools, by id and by name.
    pub tools: Named<Tool>,
    /// Agent versions by agent name, version 1 first.
    pub versions: HashMap<String, Vec<AgentVersion>>,
    /// Deployments by id.
    pub deployments: HashMap<String, Deployment>,
    /// Deployment ids in creation order (oldest first).
    pub deployment_order: Vec<String>,
    /// Turns and ratings per hour (derived from traces and feedback as they apply).
    pub rollups: super::rollup::Rollups,
    /// Usage of its messages (derived from messages as they apply).
    pub usage: super::usage::UsageLog,
}

impl ProjectData {
    /// An empty project.
    pub fn new(project: Project) -> Self {
        ProjectData {
            project,
            agents: Named::default(),
            sessions: HashMap::new(),
            session_order: Vec::new(),
            secrets: HashMap::new(),
            public_keys: HashMap::new(),
            tools: Named::default(),
            versions: HashMap::new(),
            deployments: HashMap::new(),
            deployment_order: Vec::new(),
            rollups: Default::default(),
            usage: Default::default(),
        }
    }

    /// Whom a session's turns count under in the rollups.
    pub fn rollup_key(&self, session_id: &str) -> Option<super::rollup::RollupKey> {
        let data = self.sessions.get(session_id)?;
        let environment = data
            .deployment_id
            .as_ref()
            .and_then(|id| self.deployments.get(id))
            .map(|d| d.environment);
        Some(super::rollup::RollupKey {
            agent_name: data.session.agent_name.clone(),
            channel: data.session.channel,
            environment,
        })
    }

    /// Active sessions of this project.
    pub fn active_sessions(&self) -> u64 {
        self.sessions
            .values()
            .filter(|s| s.session.status == SessionStatus::Active)
            .count() as u64
    }
}

/// A resumable stream.
#[derive(Debug, Clone)]
pub struct StreamData {
    /// Principal id of its creator.
    pub owner: String,
    /// Start time, ms since the epoch. 0 until the first expiry sweep when the stream was
    /// started by an earlier version, which did not record it (see
    /// [`crate::Backend::expire_streams`]).
    pub created_at: u64,
    /// Id of the node running it on a shared store (empty: one node, or not recorded).
    pub node: String,
    /// Events in order of strictly increasing id.
    pub events: Vec<StreamEvent>,
}

/// Everything of one tenant.
#[derive(Debug, Clone)]
pub struct TenantState {
    /// The tenant record.
    pub tenant: Tenant,
    /// Users by id.
    pub users: HashMap<String, User>,
    /// Email to user id.
    pub user_emails: HashMap<String, String>,
    /// API keys by id.
    pub keys: HashMap<String, ApiKey>,
    /// Name to id, for keys not revoked.
    pub key_names: HashMap<String, String>,
    /// Projects by id.
    pub projects: HashMap<String, ProjectData>,
    /// Slug to project id.
    pub slugs: HashMap<String, String>,
    /// Streams by id.
    pub streams: HashMap<String, StreamData>,
    /// Sessions with status `Active`, over all projects.
    pub active_sessions: u64,
}

impl TenantState {
    /// A tenant with nothing in it.
    pub fn new(tenant: Tenant) -> Self {
        TenantState {
            tenant,
            users: HashMap::new(),
            user_emails: HashMap::new(),
            keys: HashMap::new(),
            key_names: HashMap::new(),
            projects: HashMap::new(),
            slugs: HashMap::new(),
            streams: HashMap::new(),
            active_sessions: 0,
        }
    }
}
