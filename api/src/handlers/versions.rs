//! Agent version routes (`/api/projects/:pid/agents/:name/versions`): immutable, numbered
//! snapshots of an agent, which deployments pin.
//!
//! A version keeps the whole agent as it was; its `contentHash` covers what changes a turn
//! (description, instructions, model, tools, tool budget, DSL), so two versions with the
//! same hash behave alike whatever their names, ids or times.

use halyard_engine::{Reply, Response};
use halyard_storage::{Agent, AgentVersion, Mutation};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::Call;
use crate::body::{Field, Fields};
use crate::error::{ApiError, ApiResult};
use crate::{reply, time, view};

/// The body of `POST .../agents/:name/versions`.
pub(super) const BODY: &[Field] = &[Field::text("label", 0, 128)];

/// `sha256:` and the hex digest of what in `a` changes a turn.
pub fn content_hash(a: &Agent) -> String {
    let mut content = view::agent(a);
    if let Value::Object(map) = &mut content {
        for volatile in ["id", "projectId", "name", "createdAt", "updatedAt"] {
            map.remove(volatile);
        }
    }
    // serde_json's maps are ordered by key, so equal content gives equal text.
    let digest = Sha256::digest(content.to_string().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The next version of `agent`, made now by the call's principal.
pub fn snapshot(
    c: &Call<'_>,
    agent: &Agent,
    label: Option<String>,
    now: u64,
) -> ApiResult<AgentVersion> {
    let tenant = c.tenant()?;
    let last = c
        .api
        .store
        .agent_versions(tenant, &agent.project_id, &agent.name, Default::default())
        .total;
    Ok(AgentVersion {
        project_id: agent.project_id.clone(),
        agent_name: agent.name.clone(),
        version: u32::try_from(last + 1)
            .map_err(|_| ApiError::Conflict("too many versions".into()))?,
        label,
        content_hash: content_hash(agent),
        agent: agent.clone(),
        created_at: now,
        created_by: c.principal()?.id.clone(),
    })
}

/// A version as the API shows it.
pub fn view(v: &AgentVersion) -> Value {
    json!({
        "projectId": v.project_id,
        "agentName": v.agent_name,
        "version": v.version,
        "label": v.label,
        "contentHash": v.content_hash,
        "agent": view::agent(&v.agent),
        "createdAt": time::iso(v.created_at),
        "createdBy": v.created_by,
    })
}

/// `POST /api/projects/:pid/agents/:name/versions`.
pub fn create(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let agent = super::agents::find(c, &project)?;
    let body = c.body()?;
    let mut f = Fields::of(&body, BODY)?;
    let label = f.str("label").map(String::from);
    f.finish()?;
    let version = snapshot(c, &agent, label, time::now_ms())?;
    let resp = reply::created(vec![("version", view(&version))]);
    c.commit(vec![Mutation::PutAgentVersion(version)], resp)
}

/// `GET /api/projects/:pid/agents/:name/versions`, newest first. The versions of a name
/// outlive its agent, so they are listed without one.
pub fn list(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let page = c.page()?;
    let listed = c
        .api
        .store
        .agent_versions(c.tenant()?, &project.id, c.param(1), page);
    Ok(reply::list("versions", &listed, page, view))
}

/// `GET /api/projects/:pid/agents/:name/versions/:version`.
pub fn get(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let (tenant, name, n) = (c.tenant()?, c.param(1), c.param(2));
    let found = n
        .parse::<u32>()
        .ok()
        .and_then(|n| c.api.store.agent_version(tenant, &project.id, name, n));
    let version =
        found.ok_or_else(|| ApiError::NotFound(format!("Version not found: {name} {n}")))?;
    Ok(reply::ok(vec![("version", view(&version))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, instructions: &str, at: u64) -> Agent {
        Agent {
            id: format!("agt_{name}"),
            project_id: "proj_1".into(),
            name: name.into(),
            description: None,
            instructions: Some(instructions.into()),
            model: crate::chat::provider::echo_model(),
            dsl_content: None,
            created_at: at,
            updated_at: at,
            tools: vec![],
            max_tool_iterations: 8,
        }
    }

    #[test]
    fn the_hash_covers_content_not_identity() {
        let a = agent("a", "Be brief.", 1);
        assert!(content_hash(&a).starts_with("sha256:"));
        assert_eq!(content_hash(&a).len(), 7 + 64);
        assert_eq!(content_hash(&a), content_hash(&agent("b", "Be brief.", 2)));
        assert_ne!(content_hash(&a), content_hash(&agent("a", "Be long.", 1)));
    }
}
