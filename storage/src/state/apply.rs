//! Validating and applying mutations to the in-memory state, all or nothing per transaction.
//!
//! Responsible for: the uniqueness and existence rules (409 and 404 cases), the order of
//! stream event ids, applying each mutation with every index kept in step, and rolling back
//! the earlier mutations of a transaction when a later one is refused. Runs under the
//! tenant's shard write lock, the same lock under which the commit is queued to the writer,
//! so the order of application is the order in the log. Not responsible for: locking,
//! logging or reading.
//!
//! Each mutation is validated completely before it changes anything; a refused mutation
//! therefore changes nothing, and only the already-applied ones of its transaction need
//! undoing. Undo entries are closures over the previous values (moved, not cloned) and are
//! built only for transactions of more than one mutation.

use std::collections::HashMap;
use std::sync::RwLock;

use super::index::{GlobalIndex, KeyLocation, PublicKeyLocation, SessionLocation};
use super::named::{Named, NamedItem};
use super::rollup;
use super::tenant::{ProjectData, SessionData, StreamData, TenantState};
use crate::error::StoreError;
use crate::model::{
    Agent, ApiKey, DeploymentStatus, Feedback, Project, PublicKey, Session, SessionStatus,
    StreamEvent, Tenant, Tool, User,
};
use crate::mutation::Mutation;

/// What the apply code may touch: one shard's tenants, the global indexes, the server
/// metadata.
pub(crate) struct Ctx<'a> {
    pub tenants: &'a mut HashMap<String, TenantState>,
    pub index: &'a GlobalIndex,
    pub meta: &'a RwLock<HashMap<String, Vec<u8>>>,
}

type Undo = Box<dyn FnOnce(&mut Ctx<'_>)>;

/// Undo entries of the running transaction; disabled for single-mutation transactions,
/// which never need them.
struct UndoLog<'u>(Option<&'u mut Vec<Undo>>);

impl UndoLog<'_> {
    fn push(&mut self, undo: impl FnOnce(&mut Ctx<'_>) + 'static) {
        if let Some(entries) = &mut self.0 {
            entries.push(Box::new(undo));
        }
    }
}

/// A transaction applied to memory that its caller may still take back (a remote commit
/// that failed): the undo entries of every mutation, newest last.
pub struct Applied(Vec<Undo>);

impl std::fmt::Debug for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Applied({} undo entries)", self.0.len())
    }
}

/// Validates and applies `mutations` for `tenant`, all or nothing.
pub(crate) fn apply_txn(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    mutations: Vec<Mutation>,
) -> Result<(), StoreError> {
    let keep = mutations.len() > 1;
    apply_txn_undoable(ctx, tenant, mutations, keep).map(|_| ())
}

/// [`apply_txn`], keeping the undo entries of every mutation when `keep` (else only while
/// they are needed to refuse the transaction whole).
pub(crate) fn apply_txn_undoable(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    mutations: Vec<Mutation>,
    keep: bool,
) -> Result<Applied, StoreError> {
    let mut undo: Vec<Undo> = Vec::new();
    let needs_undo = keep || mutations.len() > 1;
    for mutation in mutations {
        let log = UndoLog(needs_undo.then_some(&mut undo));
        if let Err(refused) = apply_one(ctx, tenant, mutation, log) {
            while let Some(undo_one) = undo.pop() {
                undo_one(ctx);
            }
            return Err(refused);
        }
    }
    Ok(Applied(undo))
}

/// Takes back a transaction applied by [`apply_txn_undoable`] with `keep`, provided nothing
/// was applied to the same tenant since.
pub(crate) fn undo_txn(ctx: &mut Ctx<'_>, applied: Applied) {
    let mut entries = applied.0;
    while let Some(undo_one) = entries.pop() {
        undo_one(ctx);
    }
}

fn not_found(what: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        what,
        id: id.to_owned(),
    }
}

fn conflict(what: &'static str, name: &str) -> StoreError {
    StoreError::Conflict {
        what,
        name: name.to_owned(),
    }
}

fn tenant_mut<'c>(
    tenants: &'c mut HashMap<String, TenantState>,
    tenant: &str,
) -> Result<&'c mut TenantState, StoreError> {
    tenants
        .get_mut(tenant)
        .ok_or_else(|| not_found("tenant", tenant))
}

fn project_mut<'c>(
    tenants: &'c mut HashMap<String, TenantState>,
    tenant: &str,
    project_id: &str,
) -> Result<&'c mut ProjectData, StoreError> {
    tenant_mut(tenants, tenant)?
        .projects
        .get_mut(project_id)
        .ok_or_else(|| not_found("project", project_id))
}

fn session_mut<'c>(
    tenants: &'c mut HashMap<String, TenantState>,
    tenant: &str,
    project_id: &str,
    session_id: &str,
) -> Result<&'c mut SessionData, StoreError> {
    project_mut(tenants, tenant, project_id)?
        .sessions
        .get_mut(session_id)
        .ok_or_else(|| not_found("session", session_id))
}

fn apply_one(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    mutation: Mutation,
    mut undo: UndoLog<'_>,
) -> Result<(), StoreError> {
    let tenant_id = tenant.to_owned();
    match mutation {
        Mutation::PutTenant(record) => {
            if record.id != tenant {
                return Err(StoreError::Invalid(format!(
                    "tenant {} put in a transaction of tenant {tenant}",
                    record.id
                )));
            }
            let prev = put_tenant(ctx, record);
            undo.push(move |ctx| match prev {
                Some(prev) => {
                    put_tenant(ctx, prev);
                }
                None => {
                    ctx.tenants.remove(&tenant_id);
                }
            });
        }
        Mutation::DeleteTenant { id } => {
            if id != tenant {
                return Err(StoreError::Invalid(format!(
                    "tenant {id} deleted in a transaction of tenant {tenant}"
                )));
            }
            let gone = del_tenant(ctx, tenant).ok_or_else(|| not_found("tenant", tenant))?;
            undo.push(move |ctx| restore_tenant(ctx, gone));
        }
        Mutation::PutUser(user) => {
            let state = tenant_mut(ctx.tenants, tenant)?;
            if state
                .user_emails
                .get(&user.email)
                .is_some_and(|holder| *holder != user.id)
            {
                return Err(conflict("email", &user.email));
            }
            let id = user.id.clone();
            let prev = put_user(ctx, tenant, user);
            undo.push(move |ctx| {
                restore(ctx, &tenant_id, prev, put_user, |ctx, tenant| {
                    del_user(ctx, tenant, &id)
                })
            });
        }
        Mutation::DeleteUser { id } => {
            let prev = del_user(ctx, tenant, &id).ok_or_else(|| not_found("user", &id))?;
            undo.push(move |ctx| {
                put_user(ctx, &tenant_id, prev);
            });
        }
        Mutation::PutApiKey(key) => {
            let state = tenant_mut(ctx.tenants, tenant)?;
            if !key.revoked
                && state
                    .key_names
                    .get(&key.name)
                    .is_some_and(|holder| *holder != key.id)
            {
                return Err(conflict("key name", &key.name));
            }
            let id = key.id.clone();
            let prev = put_key(ctx, tenant, key);
            undo.push(move |ctx| {
                restore(ctx, &tenant_id, prev, put_key, |ctx, tenant| {
                    del_key(ctx, tenant, &id)
                })
            });
        }
        Mutation::DeleteApiKey { id } => {
            tenant_mut(ctx.tenants, tenant)?;
            let prev = del_key(ctx, tenant, &id).ok_or_else(|| not_found("api key", &id))?;
            undo.push(move |ctx| {
                put_key(ctx, &tenant_id, prev);
            });
        }
        Mutation::PutProject(project) => {
            let state = tenant_mut(ctx.tenants, tenant)?;
            if state
                .slugs
                .get(&project.slug)
                .is_some_and(|holder| *holder != project.id)
            {
                return Err(conflict("project slug", &project.slug));
            }
            let id = project.id.clone();
            let prev = put_project(state, project);
            undo.push(move |ctx| match prev {
                Some(prev) => {
                    if let Ok(state) = tenant_mut(ctx.tenants, &tenant_id) {
                        put_project(state, prev);
                    }
                }
                None => {
                    del_project(ctx, &tenant_id, &id);
                }
            });
        }
        Mutation::DeleteProject { id } => {
            tenant_mut(ctx.tenants, tenant)?;
            let data = del_project(ctx, tenant, &id).ok_or_else(|| not_found("project", &id))?;
            undo.push(move |ctx| restore_project(ctx, &tenant_id, data));
        }
        Mutation::PutAgent(agent) => {
            let project_id = agent.project_id.clone();
            put_named(ctx, tenant, &project_id, agent, "agent name", agents, undo)?;
        }
        Mutation::DeleteAgent { project_id, id } => {
            del_named(ctx, tenant, &project_id, &id, "agent", agents, undo)?;
        }
        Mutation::PutSession(session) => {
            project_mut(ctx.tenants, tenant, &session.project_id)?;
            let (project_id, id) = (session.project_id.clone(), session.id.clone());
            let prev = put_session(ctx, tenant, session);
            undo.push(move |ctx| match prev {
                Some(prev) => {
                    put_session(ctx, &tenant_id, prev);
                }
                None => del_new_session(ctx, &tenant_id, &project_id, &id),
            });
        }
        Mutation::AppendMessage {
            project_id,
            session_id,
            message,
        } => {
            let project = project_mut(ctx.tenants, tenant, &project_id)?;
            let data = project
                .sessions
                .get_mut(&session_id)
                .ok_or_else(|| not_found("session", &session_id))?;
            let view = message
                .view()
                .map_err(|bad| StoreError::Invalid(bad.to_string()))?;
            let (usage, at) = (view.usage, view.created_at);
            let session = &mut data.session;
            let before = (
                session.message_count,
                session.token_count,
                session.last_activity_at,
            );
            session.message_count += 1;
            session.token_count += usage.map_or(0, |usage| usage.total_tokens);
            session.last_activity_at = at;
            if let Some(u) = usage {
                project.usage.push(at, &session_id, &session.agent_id, u);
            }
            data.messages.push(message);
            undo.push(move |ctx| {
                if let (Some(_), Ok(project)) =
                    (usage, project_mut(ctx.tenants, &tenant_id, &project_id))
                {
                    project.usage.pop();
                }
                if let Ok(data) = session_mut(ctx.tenants, &tenant_id, &project_id, &session_id) {
                    data.messages.pop();
                    let session = &mut data.session;
                    (
                        session.message_count,
                        session.token_count,
                        session.last_activity_at,
                    ) = before;
                }
            });
        }
        Mutation::RestoreMessage {
            project_id,
            session_id,
            message,
        } => {
            let project = project_mut(ctx.tenants, tenant, &project_id)?;
            let data = project
                .sessions
                .get_mut(&session_id)
                .ok_or_else(|| not_found("session", &session_id))?;
            // A message that does not decode is kept as it is, without usage.
            let usage = message
                .view()
                .ok()
                .and_then(|v| Some((v.usage?, v.created_at)));
            if let Some((u, at)) = usage {
                project
                    .usage
                    .push(at, &session_id, &data.session.agent_id, u);
            }
            data.messages.push(message);
            undo.push(move |ctx| {
                if let (Some(_), Ok(project)) =
                    (usage, project_mut(ctx.tenants, &tenant_id, &project_id))
                {
                    project.usage.pop();
                }
                if let Ok(data) = session_mut(ctx.tenants, &tenant_id, &project_id, &session_id) {
                    data.messages.pop();
                }
            });
        }
        Mutation::AppendTraces {
            project_id,
            session_id,
            events,
        } => {
            let project = project_mut(ctx.tenants, tenant, &project_id)?;
            let key = project
                .rollup_key(&session_id)
                .ok_or_else(|| not_found("session", &session_id))?;
            let deltas = rollup::of_traces(&events);
            rollup::apply(&mut project.rollups, &key, &deltas, true);
            let data = session_mut(ctx.tenants, tenant, &project_id, &session_id)?;
            let before = data.traces.len();
            data.traces.extend(events);
            undo.push(move |ctx| {
                if let Ok(project) = project_mut(ctx.tenants, &tenant_id, &project_id) {
                    rollup::apply(&mut project.rollups, &key, &deltas, false);
                }
                if let Ok(data) = session_mut(ctx.tenants, &tenant_id, &project_id, &session_id) {
                    data.traces.truncate(before);
                }
            });
        }
        Mutation::ClearMessages {
            project_id,
            session_id,
        } => {
            let project = project_mut(ctx.tenants, tenant, &project_id)?;
            let data = project
                .sessions
                .get_mut(&session_id)
                .ok_or_else(|| not_found("session", &session_id))?;
            let old = std::mem::take(&mut data.messages);
            let count = std::mem::replace(&mut data.session.message_count, 0);
            let floor = project.usage.clear(&session_id);
            undo.push(move |ctx| {
                if let (Some(floor), Ok(project)) =
                    (floor, project_mut(ctx.tenants, &tenant_id, &project_id))
                {
                    project.usage.unclear(&session_id, floor);
                }
                if let Ok(data) = session_mut(ctx.tenants, &tenant_id, &project_id, &session_id) {
                    data.messages = old;
                    data.session.message_count = count;
                }
            });
        }
        Mutation::PutTool(tool) => {
            let project_id = tool.project_id.clone();
            put_named(ctx, tenant, &project_id, tool, "tool name", tools, undo)?;
        }
        Mutation::DeleteTool { project_id, id } => {
            del_named(ctx, tenant, &project_id, &id, "tool", tools, undo)?;
        }
        Mutation::PutAgentVersion(v) => {
            let project = project_mut(ctx.tenants, tenant, &v.project_id)?;
            let versions = project.versions.entry(v.agent_name.clone()).or_default();
            if v.version as usize != versions.len() + 1 {
                let name = format!("{} version {}", v.agent_name, v.version);
                return Err(conflict("agent version", &name));
            }
            let (project_id, name) = (v.project_id.clone(), v.agent_name.clone());
            versions.push(v);
            undo.push(move |ctx| {
                if let Ok(project) = project_mut(ctx.tenants, &tenant_id, &project_id) {
                    if let Some(versions) = project.versions.get_mut(&name) {
                        versions.pop();
                    }
                }
            });
        }
        Mutation::PutDeployment(dep) => {
            let project = project_mut(ctx.tenants, tenant, &dep.project_id)?;
            let active = DeploymentStatus::Active;
            if dep.status == active
                && project.deployments.values().any(|d| {
                    d.id != dep.id && d.environment == dep.environment && d.status == active
                })
            {
                return Err(conflict("active deployment of", dep.environment.as_str()));
            }
            let (project_id, id) = (dep.project_id.clone(), dep.id.clone());
            let prev = project.deployments.insert(id.clone(), dep);
            if prev.is_none() {
                project.deployment_order.push(id.clone());
            }
            undo.push(move |ctx| {
                if let Ok(project) = project_mut(ctx.tenants, &tenant_id, &project_id) {
                    match prev {
                        Some(prev) => {
                            project.deployments.insert(id, prev);
                        }
                        None => {
                            project.deployments.remove(&id);
                            project.deployment_order.pop();
                        }
                    }
                }
            });
        }
        Mutation::SetSessionDeployment {
            project_id,
            session_id,
            deployment_id,
        } => {
            let data = session_mut(ctx.tenants, tenant, &project_id, &session_id)?;
            let prev = data.deployment_id.replace(deployment_id);
            undo.push(move |ctx| {
                if let Ok(data) = session_mut(ctx.tenants, &tenant_id, &project_id, &session_id) {
                    data.deployment_id = prev;
                }
            });
        }
        Mutation::PutFeedback(fb) => {
            let (project_id, session_id) = (fb.project_id.clone(), fb.session_id.clone());
            let project = project_mut(ctx.tenants, tenant, &project_id)?;
            let key = project
                .rollup_key(&session_id)
                .ok_or_else(|| not_found("session", &session_id))?;
            let hour = fb.created_at / rollup::HOUR_MS;
            let added = [(hour, rollup::of_rating(fb.rating))];
            rollup::apply(&mut project.rollups, &key, &added, true);
            let data = session_mut(ctx.tenants, tenant, &project_id, &session_id)?;
            let same = |f: &Feedback| f.message_id == fb.message_id && f.author == fb.author;
            let prev = match data.feedback.iter().position(same) {
                Some(i) => Some((i, std::mem::replace(&mut data.feedback[i], fb))),
                None => {
                    data.feedback.push(fb);
                    None
                }
            };
            // A replaced rating no longer counts.
            let taken: Vec<(u64, rollup::Rollup)> = prev
                .iter()
                .map(|(_, old)| {
                    (
                        old.created_at / rollup::HOUR_MS,
                        rollup::of_rating(old.rating),
                    )
                })
                .collect();
            if let Ok(project) = project_mut(ctx.tenants, tenant, &project_id) {
                rollup::apply(&mut project.rollups, &key, &taken, false);
            }
            undo.push(move |ctx| {
                if let Ok(project) = project_mut(ctx.tenants, &tenant_id, &project_id) {
                    rollup::apply(&mut project.rollups, &key, &taken, true);
                    rollup::apply(&mut project.rollups, &key, &added, false);
                }
                if let Ok(data) = session_mut(ctx.tenants, &tenant_id, &project_id, &session_id) {
                    match prev {
                        Some((i, old)) => data.feedback[i] = old,
                        None => {
                            data.feedback.pop();
                        }
                    }
                }
            });
        }
        Mutation::PutSecret(secret) => {
            let project = project_mut(ctx.tenants, tenant, &secret.project_id)?;
            if project
                .secrets
                .get(&secret.name)
                .is_some_and(|holder| holder.id != secret.id)
            {
                return Err(conflict("secret name", &secret.name));
            }
            let (project_id, name) = (secret.project_id.clone(), secret.name.clone());
            let prev = project.secrets.insert(secret.name.clone(), secret);
            undo.push(move |ctx| {
                if let Ok(project) = project_mut(ctx.tenants, &tenant_id, &project_id) {
                    match prev {
                        Some(prev) => project.secrets.insert(name, prev),
                        None => project.secrets.remove(&name),
                    };
                }
            });
        }
        Mutation::DeleteSecret { project_id, name } => {
            let project = project_mut(ctx.tenants, tenant, &project_id)?;
            let prev = project
                .secrets
                .remove(&name)
                .ok_or_else(|| not_found("secret", &name))?;
            undo.push(move |ctx| {
                if let Ok(project) = project_mut(ctx.tenants, &tenant_id, &project_id) {
                    project.secrets.insert(name, prev);
                }
            });
        }
        Mutation::PutPublicKey(key) => {
            project_mut(ctx.tenants, tenant, &key.project_id)?;
            let (project_id, id) = (key.project_id.clone(), key.id.clone());
            let prev = put_public_key(ctx, tenant, key);
            undo.push(move |ctx| match prev {
                Some(prev) => {
                    put_public_key(ctx, &tenant_id, prev);
                }
                None => {
                    del_public_key(ctx, &tenant_id, &project_id, &id);
                }
            });
        }
        Mutation::DeletePublicKey { project_id, id } => {
            project_mut(ctx.tenants, tenant, &project_id)?;
            let prev = del_public_key(ctx, tenant, &project_id, &id)
                .ok_or_else(|| not_found("public key", &id))?;
            undo.push(move |ctx| {
                put_public_key(ctx, &tenant_id, prev);
            });
        }
        Mutation::StartStream {
            stream_id,
            owner,
            created_at,
            node,
        } => {
            let state = tenant_mut(ctx.tenants, tenant)?;
            let data = StreamData {
                owner,
                created_at,
                node,
                events: Vec::new(),
            };
            let prev = state.streams.insert(stream_id.clone(), data);
            undo.push(move |ctx| {
                if let Ok(state) = tenant_mut(ctx.tenants, &tenant_id) {
                    match prev {
                        Some(prev) => state.streams.insert(stream_id, prev),
                        None => state.streams.remove(&stream_id),
                    };
                }
            });
        }
        Mutation::AppendStreamEvent { stream_id, event } => {
            append_stream_events(ctx, tenant, stream_id, vec![event], undo)?;
        }
        Mutation::AppendStreamEvents { stream_id, events } => {
            append_stream_events(ctx, tenant, stream_id, events, undo)?;
        }
        Mutation::DeleteStream { stream_id } => {
            let state = tenant_mut(ctx.tenants, tenant)?;
            let prev = state
                .streams
                .remove(&stream_id)
                .ok_or_else(|| not_found("stream", &stream_id))?;
            undo.push(move |ctx| {
                if let Ok(state) = tenant_mut(ctx.tenants, &tenant_id) {
                    state.streams.insert(stream_id, prev);
                }
            });
        }
        Mutation::SetMeta { key, value } => {
            let mut meta = ctx
                .meta
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let prev = meta.insert(key.clone(), value);
            undo.push(move |ctx| {
                let mut meta = ctx
                    .meta
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match prev {
                    Some(prev) => meta.insert(key, prev),
                    None => meta.remove(&key),
                };
            });
        }
    }
    Ok(())
}

fn stream_mut<'c>(
    tenants: &'c mut HashMap<String, TenantState>,
    tenant: &str,
    id: &str,
) -> Result<&'c mut StreamData, StoreError> {
    tenant_mut(tenants, tenant)?
        .streams
        .get_mut(id)
        .ok_or_else(|| not_found("stream", id))
}

/// Appends a batch of events to a stream after checking its ids (see [`check_event_ids`]).
fn append_stream_events(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    stream_id: String,
    events: Vec<StreamEvent>,
    mut undo: UndoLog<'_>,
) -> Result<(), StoreError> {
    let stream = stream_mut(ctx.tenants, tenant, &stream_id)?;
    check_event_ids(
        &stream_id,
        stream.events.last().map(|last| last.id),
        &events,
    )?;
    let before = stream.events.len();
    stream.events.extend(events);
    let tenant_id = tenant.to_owned();
    undo.push(move |ctx| {
        if let Ok(stream) = stream_mut(ctx.tenants, &tenant_id, &stream_id) {
            stream.events.truncate(before);
        }
    });
    Ok(())
}

/// Event ids must be strictly increasing and past the stream's last stored id: replays
/// find their start by binary search, and a snapshot writes a stream's events as one batch
/// that must apply again when it is loaded. The API numbers events itself, so a violation
/// is a caller bug (or a duplicated batch), refused as invalid.
fn check_event_ids(
    stream_id: &str,
    last: Option<u64>,
    events: &[StreamEvent],
) -> Result<(), StoreError> {
    let mut prev = last;
    for event in events {
        if let Some(prev_id) = prev.filter(|&prev_id| event.id <= prev_id) {
            return Err(StoreError::Invalid(format!(
                "stream {stream_id}: event id {} is not after {prev_id}",
                event.id
            )));
        }
        prev = Some(event.id);
    }
    Ok(())
}

/// Undo helper for `Put*` by id: put the previous value back, or delete the new one.
fn restore<T, R>(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    prev: Option<T>,
    put: impl FnOnce(&mut Ctx<'_>, &str, T) -> Option<T>,
    del: impl FnOnce(&mut Ctx<'_>, &str) -> R,
) {
    match prev {
        Some(prev) => {
            put(ctx, tenant, prev);
        }
        None => {
            del(ctx, tenant);
        }
    }
}

fn put_tenant(ctx: &mut Ctx<'_>, record: Tenant) -> Option<Tenant> {
    match ctx.tenants.get_mut(&record.id) {
        Some(state) => Some(std::mem::replace(&mut state.tenant, record)),
        None => {
            ctx.tenants
                .insert(record.id.clone(), TenantState::new(record));
            None
        }
    }
}

/// Removes a tenant and every cross-tenant index entry that points into it (emails, key
/// digests, session ids, public key digests and their origins), so that nothing of it can
/// be found or authenticate afterwards.
fn del_tenant(ctx: &mut Ctx<'_>, tenant: &str) -> Option<TenantState> {
    let state = ctx.tenants.remove(tenant)?;
    for (id, user) in &state.users {
        ctx.index.remove_email(&user.email, tenant, id);
    }
    for key in state.keys.values() {
        ctx.index.keys.remove(&key.digest);
    }
    for project in state.projects.values() {
        for session_id in project.sessions.keys() {
            ctx.index.sessions.remove(session_id);
        }
        for key in project.public_keys.values() {
            ctx.index.public_keys.remove(&key.digest);
            ctx.index.remove_origins(&key.allowed_origins);
        }
    }
    Some(state)
}

/// Undo of [`del_tenant`]: the tenant back, with its index entries.
fn restore_tenant(ctx: &mut Ctx<'_>, state: TenantState) {
    let tenant = state.tenant.id.clone();
    for (id, user) in &state.users {
        ctx.index.add_email(&user.email, &tenant, id);
    }
    for key in state.keys.values() {
        let location = KeyLocation {
            tenant: tenant.clone(),
            key_id: key.id.clone(),
        };
        ctx.index.keys.insert(key.digest, location);
    }
    for project in state.projects.values() {
        for session_id in project.sessions.keys() {
            let location = SessionLocation {
                tenant: tenant.clone(),
                project_id: project.project.id.clone(),
            };
            ctx.index.sessions.insert(session_id.clone(), location);
        }
        for key in project.public_keys.values() {
            index_public_key(ctx.index, &tenant, key);
        }
    }
    ctx.tenants.insert(tenant, state);
}

fn put_user(ctx: &mut Ctx<'_>, tenant: &str, user: User) -> Option<User> {
    let state = ctx.tenants.get_mut(tenant)?;
    let (id, email) = (user.id.clone(), user.email.clone());
    let prev = state.users.insert(id.clone(), user);
    if let Some(prev) = &prev {
        state.user_emails.remove(&prev.email);
        ctx.index.remove_email(&prev.email, tenant, &id);
    }
    state.user_emails.insert(email.clone(), id.clone());
    ctx.index.add_email(&email, tenant, &id);
    prev
}

fn del_user(ctx: &mut Ctx<'_>, tenant: &str, id: &str) -> Option<User> {
    let state = ctx.tenants.get_mut(tenant)?;
    let prev = state.users.remove(id)?;
    state.user_emails.remove(&prev.email);
    ctx.index.remove_email(&prev.email, tenant, id);
    Some(prev)
}

fn put_key(ctx: &mut Ctx<'_>, tenant: &str, key: ApiKey) -> Option<ApiKey> {
    let state = ctx.tenants.get_mut(tenant)?;
    let id = key.id.clone();
    let (name, digest, live) = (key.name.clone(), key.digest, !key.revoked);
    let prev = state.keys.insert(id.clone(), key);
    if let Some(prev) = &prev {
        if state.key_names.get(&prev.name) == Some(&id) {
            state.key_names.remove(&prev.name);
        }
        ctx.index.keys.remove(&prev.digest);
    }
    if live {
        state.key_names.insert(name, id.clone());
    }
    let location = KeyLocation {
        tenant: tenant.to_owned(),
        key_id: id,
    };
    ctx.index.keys.insert(digest, location);
    prev
}

fn del_key(ctx: &mut Ctx<'_>, tenant: &str, id: &str) -> Option<ApiKey> {
    let state = ctx.tenants.get_mut(tenant)?;
    let prev = state.keys.remove(id)?;
    if state
        .key_names
        .get(&prev.name)
        .is_some_and(|holder| holder == id)
    {
        state.key_names.remove(&prev.name);
    }
    ctx.index.keys.remove(&prev.digest);
    Some(prev)
}

fn put_project(state: &mut TenantState, project: Project) -> Option<Project> {
    let (id, slug) = (project.id.clone(), project.slug.clone());
    let prev = match state.projects.get_mut(&id) {
        Some(data) => Some(std::mem::replace(&mut data.project, project)),
        None => {
            state.projects.insert(id.clone(), ProjectData::new(project));
            None
        }
    };
    if let Some(old) = &prev {
        state.slugs.remove(&old.slug);
    }
    state.slugs.insert(slug, id);
    prev
}

fn del_project(ctx: &mut Ctx<'_>, tenant: &str, id: &str) -> Option<ProjectData> {
    let state = ctx.tenants.get_mut(tenant)?;
    let data = state.projects.remove(id)?;
    state.slugs.remove(&data.project.slug);
    state.active_sessions -= data.active_sessions();
    for session_id in data.sessions.keys() {
        ctx.index.sessions.remove(session_id);
    }
    for key in data.public_keys.values() {
        ctx.index.public_keys.remove(&key.digest);
        ctx.index.remove_origins(&key.allowed_origins);
    }
    Some(data)
}

fn restore_project(ctx: &mut Ctx<'_>, tenant: &str, data: ProjectData) {
    let Some(state) = ctx.tenants.get_mut(tenant) else {
        return;
    };
    state.active_sessions += data.active_sessions();
    for session_id in data.sessions.keys() {
        let location = SessionLocation {
            tenant: tenant.to_owned(),
            project_id: data.project.id.clone(),
        };
        ctx.index.sessions.insert(session_id.clone(), location);
    }
    for key in data.public_keys.values() {
        index_public_key(ctx.index, tenant, key);
    }
    state
        .slugs
        .insert(data.project.slug.clone(), data.project.id.clone());
    state.projects.insert(data.project.id.clone(), data);
}

fn agents(project: &mut ProjectData) -> &mut Named<Agent> {
    &mut project.agents
}

fn tools(project: &mut ProjectData) -> &mut Named<Tool> {
    &mut project.tools
}

/// Puts a named item of a project (an agent, a tool), refusing a name another item holds.
fn put_named<T: NamedItem + 'static>(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    project_id: &str,
    item: T,
    what: &'static str,
    items: fn(&mut ProjectData) -> &mut Named<T>,
    mut undo: UndoLog<'_>,
) -> Result<(), StoreError> {
    let named = items(project_mut(ctx.tenants, tenant, project_id)?);
    if named.is_taken(item.name(), item.id()) {
        return Err(conflict(what, item.name()));
    }
    let id = item.id().to_owned();
    let prev = named.put(item);
    let (tenant, project_id) = (tenant.to_owned(), project_id.to_owned());
    undo.push(move |ctx| {
        if let Ok(project) = project_mut(ctx.tenants, &tenant, &project_id) {
            match prev {
                Some(prev) => {
                    items(project).put(prev);
                }
                None => {
                    items(project).remove(&id);
                }
            }
        }
    });
    Ok(())
}

/// Deletes a named item of a project (an agent, a tool).
fn del_named<T: NamedItem + 'static>(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    project_id: &str,
    id: &str,
    what: &'static str,
    items: fn(&mut ProjectData) -> &mut Named<T>,
    mut undo: UndoLog<'_>,
) -> Result<(), StoreError> {
    let project = project_mut(ctx.tenants, tenant, project_id)?;
    let prev = items(project)
        .remove(id)
        .ok_or_else(|| not_found(what, id))?;
    let (tenant, project_id) = (tenant.to_owned(), project_id.to_owned());
    undo.push(move |ctx| {
        if let Ok(project) = project_mut(ctx.tenants, &tenant, &project_id) {
            items(project).put(prev);
        }
    });
    Ok(())
}

fn is_active(session: &Session) -> u64 {
    (session.status == SessionStatus::Active) as u64
}

fn put_session(ctx: &mut Ctx<'_>, tenant: &str, session: Session) -> Option<Session> {
    let state = ctx.tenants.get_mut(tenant)?;
    let project = state.projects.get_mut(&session.project_id)?;
    state.active_sessions += is_active(&session);
    if let Some(data) = project.sessions.get_mut(&session.id) {
        let prev = std::mem::replace(&mut data.session, session);
        state.active_sessions -= is_active(&prev);
        return Some(prev);
    }
    let location = SessionLocation {
        tenant: tenant.to_owned(),
        project_id: session.project_id.clone(),
    };
    ctx.index.sessions.insert(session.id.clone(), location);
    project.session_order.push(session.id.clone());
    let data = SessionData {
        session,
        messages: Vec::new(),
        traces: Vec::new(),
        deployment_id: None,
        feedback: Vec::new(),
    };
    project.sessions.insert(data.session.id.clone(), data);
    None
}

/// Undo of a session creation (sessions are otherwise never deleted one by one).
fn del_new_session(ctx: &mut Ctx<'_>, tenant: &str, project_id: &str, id: &str) {
    let Some(state) = ctx.tenants.get_mut(tenant) else {
        return;
    };
    let Some(project) = state.projects.get_mut(project_id) else {
        return;
    };
    if let Some(data) = project.sessions.remove(id) {
        state.active_sessions -= is_active(&data.session);
    }
    if project.session_order.last().is_some_and(|last| last == id) {
        project.session_order.pop();
    } else {
        project.session_order.retain(|session_id| session_id != id);
    }
    ctx.index.sessions.remove(&id.to_owned());
}

fn index_public_key(index: &GlobalIndex, tenant: &str, key: &PublicKey) {
    let location = PublicKeyLocation {
        tenant: tenant.to_owned(),
        project_id: key.project_id.clone(),
        key_id: key.id.clone(),
    };
    index.public_keys.insert(key.digest, location);
    index.add_origins(&key.allowed_origins);
}

fn put_public_key(ctx: &mut Ctx<'_>, tenant: &str, key: PublicKey) -> Option<PublicKey> {
    let project = ctx
        .tenants
        .get_mut(tenant)?
        .projects
        .get_mut(&key.project_id)?;
    index_public_key(ctx.index, tenant, &key);
    let prev = project.public_keys.insert(key.id.clone(), key);
    if let Some(prev) = &prev {
        ctx.index.remove_origins(&prev.allowed_origins);
        if project
            .public_keys
            .get(&prev.id)
            .is_none_or(|now| now.digest != prev.digest)
        {
            ctx.index.public_keys.remove(&prev.digest);
        }
    }
    prev
}

fn del_public_key(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    project_id: &str,
    id: &str,
) -> Option<PublicKey> {
    let project = ctx.tenants.get_mut(tenant)?.projects.get_mut(project_id)?;
    let prev = project.public_keys.remove(id)?;
    ctx.index.public_keys.remove(&prev.digest);
    ctx.index.remove_origins(&prev.allowed_origins);
    Some(prev)
}
