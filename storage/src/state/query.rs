//! Read queries over the in-memory state.
//!
//! Responsible for: answering the [`crate::Backend`] reads from `State` under read locks,
//! copying out owned values, paging and ordering lists (newest first, ties broken by id, so
//! the order is stable). Not responsible for: writes, or deciding who may read what (the API
//! checks tenancy, scopes and `projectIds`).

use super::tenant::{ProjectData, TenantState};
use super::usage::UsageTotals;
use super::State;
use crate::backend::{Listed, Page, SessionFilter, StreamReplay};
use crate::model::{
    Agent, AgentVersion, ApiKey, Deployment, Feedback, Message, Project, PublicKey, Secret,
    Session, Tenant, Tool, TraceEvent, User,
};

/// Sorts newest first by (created_at, id) and cuts one page.
fn page_newest_first<T: Clone>(
    mut items: Vec<&T>,
    key: impl Fn(&T) -> (u64, &str),
    page: Page,
) -> Listed<T> {
    items.sort_unstable_by(|a, b| key(b).cmp(&key(a)));
    let total = items.len();
    let items = items
        .into_iter()
        .skip(page.offset)
        .take(page.limit)
        .cloned()
        .collect();
    Listed { items, total }
}

impl State {
    fn with_project<R>(
        &self,
        tenant: &str,
        pid: &str,
        f: impl FnOnce(&ProjectData) -> R,
    ) -> Option<R> {
        self.with_tenant(tenant, |t| t.projects.get(pid).map(f))
            .flatten()
    }

    /// A tenant.
    pub fn tenant(&self, id: &str) -> Option<Tenant> {
        self.with_tenant(id, |t| t.tenant.clone())
    }

    /// All tenants, newest first.
    pub fn tenants(&self, page: Page) -> Listed<Tenant> {
        let mut all = Vec::new();
        self.for_each_tenant(|t| all.push(t.tenant.clone()));
        page_newest_first(all.iter().collect(), |t| (t.created_at, &t.id), page)
    }

    /// A user.
    pub fn user(&self, tenant: &str, id: &str) -> Option<User> {
        self.with_tenant(tenant, |t| t.users.get(id).cloned())
            .flatten()
    }

    /// Users with an email, with their tenants.
    pub fn users_by_email(&self, email: &str) -> Vec<(String, User)> {
        let owners = self
            .index
            .emails
            .with(email, |v| v.cloned().unwrap_or_default());
        owners
            .into_iter()
            .filter_map(|(t, id)| self.user(&t, &id).map(|u| (t, u)))
            .collect()
    }

    /// A tenant's users.
    pub fn users(&self, tenant: &str, page: Page) -> Listed<User> {
        self.with_tenant(tenant, |t| {
            page_newest_first(t.users.values().collect(), |u| (u.created_at, &u.id), page)
        })
        .unwrap_or(Listed {
            items: Vec::new(),
            total: 0,
        })
    }

    /// An API key by digest.
    pub fn api_key_by_digest(&self, digest: &[u8; 32]) -> Option<(String, ApiKey)> {
        let loc = self.index.keys.with(digest, |l| l.cloned())?;
        let key = self.api_key(&loc.tenant, &loc.key_id)?;
        // The index may briefly point at a key being replaced; trust only an exact match.
        (key.digest == *digest).then_some((loc.tenant, key))
    }

    /// An API key by id.
    pub fn api_key(&self, tenant: &str, id: &str) -> Option<ApiKey> {
        self.with_tenant(tenant, |t| t.keys.get(id).cloned())
            .flatten()
    }

    /// A tenant's API keys.
    pub fn api_keys(&self, tenant: &str, page: Page) -> Listed<ApiKey> {
        self.with_tenant(tenant, |t| {
            page_newest_first(t.keys.values().collect(), |k| (k.created_at, &k.id), page)
        })
        .unwrap_or_else(empty)
    }

    /// A project.
    pub fn project(&self, tenant: &str, id: &str) -> Option<Project> {
        self.with_project(tenant, id, |p| p.project.clone())
    }

    /// A tenant's projects.
    pub fn projects(&self, tenant: &str, page: Page) -> Listed<Project> {
        self.with_tenant(tenant, |t| {
            let all = t.projects.values().map(|p| &p.project).collect();
            page_newest_first(all, |p| (p.created_at, &p.id), page)
        })
        .unwrap_or_else(empty)
    }

    /// A tool by id.
    pub fn tool(&self, tenant: &str, pid: &str, id: &str) -> Option<Tool> {
        self.with_project(tenant, pid, |p| p.tools.get(id).cloned())
            .flatten()
    }

    /// A tool by name.
    pub fn tool_by_name(&self, tenant: &str, pid: &str, name: &str) -> Option<Tool> {
        self.with_project(tenant, pid, |p| p.tools.by_name(name).cloned())
            .flatten()
    }

    /// Tools of a project, newest first.
    pub fn tools(&self, tenant: &str, pid: &str, page: Page) -> Listed<Tool> {
        self.with_project(tenant, pid, |p| {
            page_newest_first(p.tools.values().collect(), |t| (t.created_at, &t.id), page)
        })
        .unwrap_or_else(empty)
    }

    /// Versions of an agent name, newest first.
    pub fn agent_versions(
        &self,
        tenant: &str,
        pid: &str,
        name: &str,
        page: Page,
    ) -> Listed<AgentVersion> {
        self.with_project(tenant, pid, |p| {
            let all = p.versions.get(name).map(Vec::as_slice).unwrap_or_default();
            Listed {
                items: all
                    .iter()
                    .rev()
                    .skip(page.offset)
                    .take(page.limit)
                    .cloned()
                    .collect(),
                total: all.len(),
            }
        })
        .unwrap_or_else(empty)
    }

    /// Version `n` of an agent name.
    pub fn agent_version(
        &self,
        tenant: &str,
        pid: &str,
        name: &str,
        n: u32,
    ) -> Option<AgentVersion> {
        self.with_project(tenant, pid, |p| {
            let i = (n as usize).checked_sub(1)?;
            p.versions.get(name)?.get(i).cloned()
        })
        .flatten()
    }

    /// A project's rollups from `from_ms` to `to_ms`, grouped (see [`super::rollup::range`]).
    pub fn analytics(
        &self,
        tenant: &str,
        pid: &str,
        from_ms: u64,
        to_ms: u64,
        by: super::rollup::GroupBy,
    ) -> Vec<(super::rollup::Group, super::rollup::Rollup)> {
        self.with_project(tenant, pid, |p| {
            super::rollup::range(&p.rollups, from_ms, to_ms, by)
        })
        .unwrap_or_default()
    }

    /// Feedback on a session's messages, in the order first given.
    pub fn feedback(&self, tenant: &str, pid: &str, sid: &str) -> Vec<Feedback> {
        self.with_project(tenant, pid, |p| {
            p.sessions
                .get(sid)
                .map(|s| s.feedback.clone())
                .unwrap_or_default()
        })
        .unwrap_or_default()
    }

    /// The deployment a session runs, if it was opened on one.
    pub fn session_deployment(&self, tenant: &str, pid: &str, sid: &str) -> Option<String> {
        self.with_project(tenant, pid, |p| p.sessions.get(sid)?.deployment_id.clone())
            .flatten()
    }

    /// A deployment by id.
    pub fn deployment(&self, tenant: &str, pid: &str, id: &str) -> Option<Deployment> {
        self.with_project(tenant, pid, |p| p.deployments.get(id).cloned())
            .flatten()
    }

    /// Every deployment of a project, newest first.
    pub fn deployments(&self, tenant: &str, pid: &str) -> Vec<Deployment> {
        self.with_project(tenant, pid, |p| {
            let order = p.deployment_order.iter().rev();
            order
                .filter_map(|id| p.deployments.get(id))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
    }

    /// An agent by id.
    pub fn agent(&self, tenant: &str, pid: &str, id: &str) -> Option<Agent> {
        self.with_project(tenant, pid, |p| p.agents.get(id).cloned())
            .flatten()
    }

    /// An agent by name.
    pub fn agent_by_name(&self, tenant: &str, pid: &str, name: &str) -> Option<Agent> {
        self.with_project(tenant, pid, |p| p.agents.by_name(name).cloned())
            .flatten()
    }

    /// Agents of a project or of the whole tenant.
    pub fn agents(&self, tenant: &str, pid: Option<&str>, page: Page) -> Listed<Agent> {
        self.with_tenant(tenant, |t| {
            let all: Vec<&Agent> = match pid {
                Some(pid) => t
                    .projects
                    .get(pid)
                    .map(|p| p.agents.values().collect())
                    .unwrap_or_default(),
                None => t
                    .projects
                    .values()
                    .flat_map(|p| p.agents.values())
                    .collect(),
            };
            page_newest_first(all, |a| (a.created_at, &a.id), page)
        })
        .unwrap_or_else(empty)
    }

    /// Agents named `name` in any project of the tenant.
    pub fn agents_named(&self, tenant: &str, name: &str) -> Vec<Agent> {
        self.with_tenant(tenant, |t| {
            let mut v: Vec<Agent> = t
                .projects
                .values()
                .filter_map(|p| p.agents.by_name(name))
                .cloned()
                .collect();
            v.sort_by(|a, b| a.project_id.cmp(&b.project_id));
            v
        })
        .unwrap_or_default()
    }

    /// A session.
    pub fn session(&self, tenant: &str, pid: &str, id: &str) -> Option<Session> {
        self.with_project(tenant, pid, |p| {
            p.sessions.get(id).map(|s| s.session.clone())
        })
        .flatten()
    }

    /// Tenant and project of a session id.
    pub fn locate_session(&self, id: &str) -> Option<(String, String)> {
        self.index
            .sessions
            .with(id, |l| l.map(|l| (l.tenant.clone(), l.project_id.clone())))
    }

    /// Visits one page of a project's sessions, newest first (creation order, which replay
    /// preserves), under the shard's read lock, and returns how many match in all: the list
    /// endpoint writes each straight into its response instead of cloning it first.
    pub fn each_session(
        &self,
        tenant: &str,
        pid: &str,
        filter: &SessionFilter<'_>,
        page: Page,
        visit: &mut dyn FnMut(&Session),
    ) -> usize {
        self.with_project(tenant, pid, |p| {
            let matching = p
                .session_order
                .iter()
                .rev()
                .filter_map(|id| p.sessions.get(id))
                .map(|s| &s.session)
                .filter(|s| filter.matches(s));
            if filter.is_empty() {
                // Unfiltered, the total is known: visit the page only, not every session.
                matching.skip(page.offset).take(page.limit).for_each(visit);
                return p.sessions.len();
            }
            let mut total = 0;
            let end = page.offset.saturating_add(page.limit);
            for s in matching {
                if (page.offset..end).contains(&total) {
                    visit(s);
                }
                total += 1;
            }
            total
        })
        .unwrap_or(0)
    }

    /// Active sessions of a tenant.
    pub fn active_session_count(&self, tenant: &str) -> u64 {
        self.with_tenant(tenant, |t: &TenantState| t.active_sessions)
            .unwrap_or(0)
    }

    /// Messages of a session, oldest first.
    pub fn messages(
        &self,
        tenant: &str,
        pid: &str,
        sid: &str,
        page: Page,
    ) -> Option<Listed<Message>> {
        self.with_project(tenant, pid, |p| {
            let s = p.sessions.get(sid)?;
            let items = s
                .messages
                .iter()
                .skip(page.offset)
                .take(page.limit)
                .filter_map(|m| m.decode().ok())
                .collect();
            Some(Listed {
                items,
                total: s.messages.len(),
            })
        })
        .flatten()
    }

    /// Usage of a project's messages made within `from..=to` (ms), summed per agent id, of
    /// the sessions `keep` accepts (all when `None`).
    pub fn usage_totals(
        &self,
        tenant: &str,
        pid: &str,
        from: u64,
        to: u64,
        keep: Option<&dyn Fn(&str) -> bool>,
    ) -> Vec<(String, UsageTotals)> {
        self.with_project(tenant, pid, |p| p.usage.totals(from, to, keep))
            .unwrap_or_default()
    }

    /// A session's trace events, oldest first (`None` when there is no such session).
    pub fn traces(&self, tenant: &str, pid: &str, sid: &str) -> Option<Vec<TraceEvent>> {
        self.with_project(tenant, pid, |p| {
            p.sessions.get(sid).map(|s| s.traces.clone())
        })
        .flatten()
    }

    /// A secret.
    pub fn secret(&self, tenant: &str, pid: &str, name: &str) -> Option<Secret> {
        self.with_project(tenant, pid, |p| p.secrets.get(name).cloned())
            .flatten()
    }

    /// Secrets of a project.
    pub fn secrets(&self, tenant: &str, pid: &str, page: Page) -> Listed<Secret> {
        self.with_project(tenant, pid, |p| {
            page_newest_first(
                p.secrets.values().collect(),
                |s| (s.created_at, &s.id),
                page,
            )
        })
        .unwrap_or_else(empty)
    }

    /// A public key by digest.
    pub fn public_key_by_digest(&self, digest: &[u8; 32]) -> Option<(String, PublicKey)> {
        let loc = self.index.public_keys.with(digest, |l| l.cloned())?;
        let key = self
            .with_project(&loc.tenant, &loc.project_id, |p| {
                p.public_keys.get(&loc.key_id).cloned()
            })
            .flatten()?;
        (key.digest == *digest).then_some((loc.tenant, key))
    }

    /// Public keys of a project, newest first.
    pub fn public_keys(&self, tenant: &str, pid: &str) -> Vec<PublicKey> {
        self.with_project(tenant, pid, |p| {
            page_newest_first(
                p.public_keys.values().collect(),
                |k| (k.created_at, &k.id),
                Page::ALL,
            )
            .items
        })
        .unwrap_or_default()
    }

    /// Whether some public key allows `origin`.
    pub fn origin_registered(&self, origin: &str) -> bool {
        self.index.origins.with(origin, |n| n.is_some())
    }

    /// A stream's owner and its events after `after`.
    pub fn stream_events_after(
        &self,
        tenant: &str,
        stream_id: &str,
        after: u64,
    ) -> Option<StreamReplay> {
        self.with_tenant(tenant, |t| {
            let s = t.streams.get(stream_id)?;
            // Event ids increase, so the first event past `after` is found by binary search.
            let start = s.events.partition_point(|e| e.id <= after);
            Some(StreamReplay {
                owner: s.owner.clone(),
                node: s.node.clone(),
                events: s.events[start..].to_vec(),
            })
        })
        .flatten()
    }
}

fn empty<T>() -> Listed<T> {
    Listed {
        items: Vec::new(),
        total: 0,
    }
}
