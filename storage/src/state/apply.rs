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
use super::tenant::{ProjectData, SessionData, StreamData, TenantState};
use crate::error::StoreError;
use crate::model::{
    Agent, ApiKey, Project, PublicKey, Session, SessionStatus, StreamEvent, Tenant, User,
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
    fn push(&mut self, f: impl FnOnce(&mut Ctx<'_>) + 'static) {
        if let Some(v) = &mut self.0 {
            v.push(Box::new(f));
        }
    }
}

/// Validates and applies `muts` for `tenant`, all or nothing.
pub(crate) fn apply_txn(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    muts: Vec<Mutation>,
) -> Result<(), StoreError> {
    let mut undo: Vec<Undo> = Vec::new();
    let needs_undo = muts.len() > 1;
    for m in muts {
        let log = UndoLog(needs_undo.then_some(&mut undo));
        if let Err(e) = apply_one(ctx, tenant, m, log) {
            while let Some(u) = undo.pop() {
                u(ctx);
            }
            return Err(e);
        }
    }
    Ok(())
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
    t: &str,
) -> Result<&'c mut TenantState, StoreError> {
    tenants.get_mut(t).ok_or_else(|| not_found("tenant", t))
}

fn project_mut<'c>(
    tenants: &'c mut HashMap<String, TenantState>,
    t: &str,
    pid: &str,
) -> Result<&'c mut ProjectData, StoreError> {
    tenant_mut(tenants, t)?
        .projects
        .get_mut(pid)
        .ok_or_else(|| not_found("project", pid))
}

fn session_mut<'c>(
    tenants: &'c mut HashMap<String, TenantState>,
    t: &str,
    pid: &str,
    sid: &str,
) -> Result<&'c mut SessionData, StoreError> {
    project_mut(tenants, t, pid)?
        .sessions
        .get_mut(sid)
        .ok_or_else(|| not_found("session", sid))
}

fn apply_one(
    ctx: &mut Ctx<'_>,
    t: &str,
    m: Mutation,
    mut undo: UndoLog<'_>,
) -> Result<(), StoreError> {
    let tn = t.to_owned();
    match m {
        Mutation::PutTenant(x) => {
            if x.id != t {
                return Err(StoreError::Invalid(format!(
                    "tenant {} put in a transaction of tenant {t}",
                    x.id
                )));
            }
            let prev = put_tenant(ctx, x);
            undo.push(move |c| match prev {
                Some(p) => {
                    put_tenant(c, p);
                }
                None => {
                    c.tenants.remove(&tn);
                }
            });
        }
        Mutation::PutUser(u) => {
            let ts = tenant_mut(ctx.tenants, t)?;
            if ts.user_emails.get(&u.email).is_some_and(|h| *h != u.id) {
                return Err(conflict("email", &u.email));
            }
            let id = u.id.clone();
            let prev = put_user(ctx, t, u);
            undo.push(move |c| restore(c, &tn, prev, put_user, |c, t| del_user(c, t, &id)));
        }
        Mutation::DeleteUser { id } => {
            let prev = del_user(ctx, t, &id).ok_or_else(|| not_found("user", &id))?;
            undo.push(move |c| {
                put_user(c, &tn, prev);
            });
        }
        Mutation::PutApiKey(k) => {
            let ts = tenant_mut(ctx.tenants, t)?;
            if !k.revoked && ts.key_names.get(&k.name).is_some_and(|h| *h != k.id) {
                return Err(conflict("key name", &k.name));
            }
            let id = k.id.clone();
            let prev = put_key(ctx, t, k);
            undo.push(move |c| restore(c, &tn, prev, put_key, |c, t| del_key(c, t, &id)));
        }
        Mutation::DeleteApiKey { id } => {
            tenant_mut(ctx.tenants, t)?;
            let prev = del_key(ctx, t, &id).ok_or_else(|| not_found("api key", &id))?;
            undo.push(move |c| {
                put_key(c, &tn, prev);
            });
        }
        Mutation::PutProject(p) => {
            let ts = tenant_mut(ctx.tenants, t)?;
            if ts.slugs.get(&p.slug).is_some_and(|h| *h != p.id) {
                return Err(conflict("project slug", &p.slug));
            }
            let id = p.id.clone();
            let prev = put_project(ts, p);
            undo.push(move |c| match prev {
                Some(p) => {
                    if let Ok(ts) = tenant_mut(c.tenants, &tn) {
                        put_project(ts, p);
                    }
                }
                None => {
                    del_project(c, &tn, &id);
                }
            });
        }
        Mutation::DeleteProject { id } => {
            tenant_mut(ctx.tenants, t)?;
            let data = del_project(ctx, t, &id).ok_or_else(|| not_found("project", &id))?;
            undo.push(move |c| restore_project(c, &tn, data));
        }
        Mutation::PutAgent(a) => {
            let pd = project_mut(ctx.tenants, t, &a.project_id)?;
            if pd.agent_names.get(&a.name).is_some_and(|h| *h != a.id) {
                return Err(conflict("agent name", &a.name));
            }
            let (pid, id) = (a.project_id.clone(), a.id.clone());
            let prev = put_agent(pd, a);
            undo.push(move |c| {
                if let Ok(pd) = project_mut(c.tenants, &tn, &pid) {
                    match prev {
                        Some(p) => {
                            put_agent(pd, p);
                        }
                        None => {
                            del_agent(pd, &id);
                        }
                    }
                }
            });
        }
        Mutation::DeleteAgent { project_id, id } => {
            let pd = project_mut(ctx.tenants, t, &project_id)?;
            let prev = del_agent(pd, &id).ok_or_else(|| not_found("agent", &id))?;
            undo.push(move |c| {
                if let Ok(pd) = project_mut(c.tenants, &tn, &project_id) {
                    put_agent(pd, prev);
                }
            });
        }
        Mutation::PutSession(s) => {
            project_mut(ctx.tenants, t, &s.project_id)?;
            let (pid, id) = (s.project_id.clone(), s.id.clone());
            let prev = put_session(ctx, t, s);
            undo.push(move |c| match prev {
                Some(p) => {
                    put_session(c, &tn, p);
                }
                None => del_new_session(c, &tn, &pid, &id),
            });
        }
        Mutation::AppendMessage {
            project_id,
            session_id,
            message,
        } => {
            let sd = session_mut(ctx.tenants, t, &project_id, &session_id)?;
            let view = message
                .view()
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            let s = &mut sd.session;
            let before = (s.message_count, s.token_count, s.last_activity_at);
            s.message_count += 1;
            s.token_count += view.usage.map_or(0, |u| u.total_tokens);
            s.last_activity_at = view.created_at;
            sd.messages.push(message);
            undo.push(move |c| {
                if let Ok(sd) = session_mut(c.tenants, &tn, &project_id, &session_id) {
                    sd.messages.pop();
                    let s = &mut sd.session;
                    (s.message_count, s.token_count, s.last_activity_at) = before;
                }
            });
        }
        Mutation::RestoreMessage {
            project_id,
            session_id,
            message,
        } => {
            let sd = session_mut(ctx.tenants, t, &project_id, &session_id)?;
            sd.messages.push(message);
            undo.push(move |c| {
                if let Ok(sd) = session_mut(c.tenants, &tn, &project_id, &session_id) {
                    sd.messages.pop();
                }
            });
        }
        Mutation::ClearMessages {
            project_id,
            session_id,
        } => {
            let sd = session_mut(ctx.tenants, t, &project_id, &session_id)?;
            let old = std::mem::take(&mut sd.messages);
            let count = std::mem::replace(&mut sd.session.message_count, 0);
            undo.push(move |c| {
                if let Ok(sd) = session_mut(c.tenants, &tn, &project_id, &session_id) {
                    sd.messages = old;
                    sd.session.message_count = count;
                }
            });
        }
        Mutation::PutSecret(s) => {
            let pd = project_mut(ctx.tenants, t, &s.project_id)?;
            if pd.secrets.get(&s.name).is_some_and(|h| h.id != s.id) {
                return Err(conflict("secret name", &s.name));
            }
            let (pid, name) = (s.project_id.clone(), s.name.clone());
            let prev = pd.secrets.insert(s.name.clone(), s);
            undo.push(move |c| {
                if let Ok(pd) = project_mut(c.tenants, &tn, &pid) {
                    match prev {
                        Some(p) => pd.secrets.insert(name, p),
                        None => pd.secrets.remove(&name),
                    };
                }
            });
        }
        Mutation::DeleteSecret { project_id, name } => {
            let pd = project_mut(ctx.tenants, t, &project_id)?;
            let prev = pd
                .secrets
                .remove(&name)
                .ok_or_else(|| not_found("secret", &name))?;
            undo.push(move |c| {
                if let Ok(pd) = project_mut(c.tenants, &tn, &project_id) {
                    pd.secrets.insert(name, prev);
                }
            });
        }
        Mutation::PutPublicKey(k) => {
            project_mut(ctx.tenants, t, &k.project_id)?;
            let (pid, id) = (k.project_id.clone(), k.id.clone());
            let prev = put_public_key(ctx, t, k);
            undo.push(move |c| match prev {
                Some(p) => {
                    put_public_key(c, &tn, p);
                }
                None => {
                    del_public_key(c, &tn, &pid, &id);
                }
            });
        }
        Mutation::DeletePublicKey { project_id, id } => {
            project_mut(ctx.tenants, t, &project_id)?;
            let prev = del_public_key(ctx, t, &project_id, &id)
                .ok_or_else(|| not_found("public key", &id))?;
            undo.push(move |c| {
                put_public_key(c, &tn, prev);
            });
        }
        Mutation::StartStream {
            stream_id,
            owner,
            created_at,
        } => {
            let ts = tenant_mut(ctx.tenants, t)?;
            let data = StreamData {
                owner,
                created_at,
                events: Vec::new(),
            };
            let prev = ts.streams.insert(stream_id.clone(), data);
            undo.push(move |c| {
                if let Ok(ts) = tenant_mut(c.tenants, &tn) {
                    match prev {
                        Some(p) => ts.streams.insert(stream_id, p),
                        None => ts.streams.remove(&stream_id),
                    };
                }
            });
        }
        Mutation::AppendStreamEvent { stream_id, event } => {
            append_stream_events(ctx, t, stream_id, vec![event], undo)?;
        }
        Mutation::AppendStreamEvents { stream_id, events } => {
            append_stream_events(ctx, t, stream_id, events, undo)?;
        }
        Mutation::DeleteStream { stream_id } => {
            let ts = tenant_mut(ctx.tenants, t)?;
            let prev = ts
                .streams
                .remove(&stream_id)
                .ok_or_else(|| not_found("stream", &stream_id))?;
            undo.push(move |c| {
                if let Ok(ts) = tenant_mut(c.tenants, &tn) {
                    ts.streams.insert(stream_id, prev);
                }
            });
        }
        Mutation::SetMeta { key, value } => {
            let mut meta = ctx.meta.write().unwrap_or_else(|p| p.into_inner());
            let prev = meta.insert(key.clone(), value);
            undo.push(move |c| {
                let mut meta = c.meta.write().unwrap_or_else(|p| p.into_inner());
                match prev {
                    Some(p) => meta.insert(key, p),
                    None => meta.remove(&key),
                };
            });
        }
    }
    Ok(())
}

fn stream_mut<'c>(
    tenants: &'c mut HashMap<String, TenantState>,
    t: &str,
    id: &str,
) -> Result<&'c mut StreamData, StoreError> {
    tenant_mut(tenants, t)?
        .streams
        .get_mut(id)
        .ok_or_else(|| not_found("stream", id))
}

/// Appends a batch of events to a stream after checking its ids (see [`check_event_ids`]).
fn append_stream_events(
    ctx: &mut Ctx<'_>,
    t: &str,
    stream_id: String,
    events: Vec<StreamEvent>,
    mut undo: UndoLog<'_>,
) -> Result<(), StoreError> {
    let st = stream_mut(ctx.tenants, t, &stream_id)?;
    check_event_ids(&stream_id, st.events.last().map(|e| e.id), &events)?;
    let before = st.events.len();
    st.events.extend(events);
    let tn = t.to_owned();
    undo.push(move |c| {
        if let Ok(st) = stream_mut(c.tenants, &tn, &stream_id) {
            st.events.truncate(before);
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
    for e in events {
        if let Some(p) = prev.filter(|&p| e.id <= p) {
            return Err(StoreError::Invalid(format!(
                "stream {stream_id}: event id {} is not after {p}",
                e.id
            )));
        }
        prev = Some(e.id);
    }
    Ok(())
}

/// Undo helper for `Put*` by id: put the previous value back, or delete the new one.
fn restore<T, R>(
    c: &mut Ctx<'_>,
    t: &str,
    prev: Option<T>,
    put: impl FnOnce(&mut Ctx<'_>, &str, T) -> Option<T>,
    del: impl FnOnce(&mut Ctx<'_>, &str) -> R,
) {
    match prev {
        Some(p) => {
            put(c, t, p);
        }
        None => {
            del(c, t);
        }
    }
}

fn put_tenant(c: &mut Ctx<'_>, x: Tenant) -> Option<Tenant> {
    match c.tenants.get_mut(&x.id) {
        Some(ts) => Some(std::mem::replace(&mut ts.tenant, x)),
        None => {
            c.tenants.insert(x.id.clone(), TenantState::new(x));
            None
        }
    }
}

fn put_user(c: &mut Ctx<'_>, t: &str, u: User) -> Option<User> {
    let ts = c.tenants.get_mut(t)?;
    let (id, email) = (u.id.clone(), u.email.clone());
    let prev = ts.users.insert(id.clone(), u);
    if let Some(p) = &prev {
        ts.user_emails.remove(&p.email);
        c.index.remove_email(&p.email, t, &id);
    }
    ts.user_emails.insert(email.clone(), id.clone());
    c.index.add_email(&email, t, &id);
    prev
}

fn del_user(c: &mut Ctx<'_>, t: &str, id: &str) -> Option<User> {
    let ts = c.tenants.get_mut(t)?;
    let prev = ts.users.remove(id)?;
    ts.user_emails.remove(&prev.email);
    c.index.remove_email(&prev.email, t, id);
    Some(prev)
}

fn put_key(c: &mut Ctx<'_>, t: &str, k: ApiKey) -> Option<ApiKey> {
    let ts = c.tenants.get_mut(t)?;
    let id = k.id.clone();
    let (name, digest, live) = (k.name.clone(), k.digest, !k.revoked);
    let prev = ts.keys.insert(id.clone(), k);
    if let Some(p) = &prev {
        if ts.key_names.get(&p.name) == Some(&id) {
            ts.key_names.remove(&p.name);
        }
        c.index.keys.remove(&p.digest);
    }
    if live {
        ts.key_names.insert(name, id.clone());
    }
    let loc = KeyLocation {
        tenant: t.to_owned(),
        key_id: id,
    };
    c.index.keys.insert(digest, loc);
    prev
}

fn del_key(c: &mut Ctx<'_>, t: &str, id: &str) -> Option<ApiKey> {
    let ts = c.tenants.get_mut(t)?;
    let prev = ts.keys.remove(id)?;
    if ts.key_names.get(&prev.name).is_some_and(|h| h == id) {
        ts.key_names.remove(&prev.name);
    }
    c.index.keys.remove(&prev.digest);
    Some(prev)
}

fn put_project(ts: &mut TenantState, p: Project) -> Option<Project> {
    let (id, slug) = (p.id.clone(), p.slug.clone());
    let prev = match ts.projects.get_mut(&id) {
        Some(pd) => Some(std::mem::replace(&mut pd.project, p)),
        None => {
            ts.projects.insert(id.clone(), ProjectData::new(p));
            None
        }
    };
    if let Some(old) = &prev {
        ts.slugs.remove(&old.slug);
    }
    ts.slugs.insert(slug, id);
    prev
}

fn del_project(c: &mut Ctx<'_>, t: &str, id: &str) -> Option<ProjectData> {
    let ts = c.tenants.get_mut(t)?;
    let data = ts.projects.remove(id)?;
    ts.slugs.remove(&data.project.slug);
    ts.active_sessions -= data.active_sessions();
    for sid in data.sessions.keys() {
        c.index.sessions.remove(sid);
    }
    for k in data.public_keys.values() {
        c.index.public_keys.remove(&k.digest);
        c.index.remove_origins(&k.allowed_origins);
    }
    Some(data)
}

fn restore_project(c: &mut Ctx<'_>, t: &str, data: ProjectData) {
    let Some(ts) = c.tenants.get_mut(t) else {
        return;
    };
    ts.active_sessions += data.active_sessions();
    for sid in data.sessions.keys() {
        let loc = SessionLocation {
            tenant: t.to_owned(),
            project_id: data.project.id.clone(),
        };
        c.index.sessions.insert(sid.clone(), loc);
    }
    for k in data.public_keys.values() {
        index_public_key(c.index, t, k);
    }
    ts.slugs
        .insert(data.project.slug.clone(), data.project.id.clone());
    ts.projects.insert(data.project.id.clone(), data);
}

fn put_agent(pd: &mut ProjectData, a: Agent) -> Option<Agent> {
    let (id, name) = (a.id.clone(), a.name.clone());
    let prev = pd.agents.insert(id.clone(), a);
    if let Some(p) = &prev {
        pd.agent_names.remove(&p.name);
    }
    pd.agent_names.insert(name, id);
    prev
}

fn del_agent(pd: &mut ProjectData, id: &str) -> Option<Agent> {
    let prev = pd.agents.remove(id)?;
    pd.agent_names.remove(&prev.name);
    Some(prev)
}

fn is_active(s: &Session) -> u64 {
    (s.status == SessionStatus::Active) as u64
}

fn put_session(c: &mut Ctx<'_>, t: &str, s: Session) -> Option<Session> {
    let ts = c.tenants.get_mut(t)?;
    let pd = ts.projects.get_mut(&s.project_id)?;
    ts.active_sessions += is_active(&s);
    if let Some(sd) = pd.sessions.get_mut(&s.id) {
        let prev = std::mem::replace(&mut sd.session, s);
        ts.active_sessions -= is_active(&prev);
        return Some(prev);
    }
    let loc = SessionLocation {
        tenant: t.to_owned(),
        project_id: s.project_id.clone(),
    };
    c.index.sessions.insert(s.id.clone(), loc);
    pd.session_order.push(s.id.clone());
    let sd = SessionData {
        session: s,
        messages: Vec::new(),
    };
    pd.sessions.insert(sd.session.id.clone(), sd);
    None
}

/// Undo of a session creation (sessions are otherwise never deleted one by one).
fn del_new_session(c: &mut Ctx<'_>, t: &str, pid: &str, id: &str) {
    let Some(ts) = c.tenants.get_mut(t) else {
        return;
    };
    let Some(pd) = ts.projects.get_mut(pid) else {
        return;
    };
    if let Some(sd) = pd.sessions.remove(id) {
        ts.active_sessions -= is_active(&sd.session);
    }
    if pd.session_order.last().is_some_and(|l| l == id) {
        pd.session_order.pop();
    } else {
        pd.session_order.retain(|s| s != id);
    }
    c.index.sessions.remove(&id.to_owned());
}

fn index_public_key(index: &GlobalIndex, t: &str, k: &PublicKey) {
    let loc = PublicKeyLocation {
        tenant: t.to_owned(),
        project_id: k.project_id.clone(),
        key_id: k.id.clone(),
    };
    index.public_keys.insert(k.digest, loc);
    index.add_origins(&k.allowed_origins);
}

fn put_public_key(c: &mut Ctx<'_>, t: &str, k: PublicKey) -> Option<PublicKey> {
    let pd = c.tenants.get_mut(t)?.projects.get_mut(&k.project_id)?;
    index_public_key(c.index, t, &k);
    let prev = pd.public_keys.insert(k.id.clone(), k);
    if let Some(p) = &prev {
        c.index.remove_origins(&p.allowed_origins);
        if pd
            .public_keys
            .get(&p.id)
            .is_none_or(|n| n.digest != p.digest)
        {
            c.index.public_keys.remove(&p.digest);
        }
    }
    prev
}

fn del_public_key(c: &mut Ctx<'_>, t: &str, pid: &str, id: &str) -> Option<PublicKey> {
    let pd = c.tenants.get_mut(t)?.projects.get_mut(pid)?;
    let prev = pd.public_keys.remove(id)?;
    c.index.public_keys.remove(&prev.digest);
    c.index.remove_origins(&prev.allowed_origins);
    Some(prev)
}
