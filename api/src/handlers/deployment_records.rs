//! Agent versions and deployment records in a project document (export and import).
//!
//! Versions are history: an import adds the document's versions that continue a name's
//! numbering in the target, skips those the target already holds with the same content, and
//! refuses (`409`) a number the target holds with other content. Deployment records are
//! matched by id: absent ones are created (their endpoint slug made from the target's
//! project slug), present ones left as they are; an imported active deployment supersedes
//! the target's active one of its environment.

use std::collections::{HashMap, HashSet};

use halyard_storage::{
    AgentVersion, Backend, Deployment, DeploymentStatus, Environment, Mutation, Page, PinnedAgent,
    Project,
};
use serde_json::{json, Map, Value};

use super::agents::{self, read_agent};
use super::deployments::{self, ENVIRONMENTS, STATUSES};
use super::versions::content_hash;
use super::Call;
use crate::body::{Field, Fields, Item, AGENT_NAME};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::{time, view};

/// Most versions, and most deployments, one document may hold.
pub const MAX_RECORDS: usize = 10_000;

const VERSION: &[Field] = &[
    Field::text("agentName", 1, 64)
        .format(AGENT_NAME)
        .required(),
    Field::whole("version", 1, u32::MAX as u64).required(),
    Field::text("label", 0, 128),
    Field::object("agent", agents::CREATE_BODY).required(),
    Field::time("createdAt"),
    Field::text("createdBy", 0, 64),
];

const DEPLOYMENT: &[Field] = &[
    Field::text("id", 5, 64).required(),
    Field::one_of("environment", ENVIRONMENTS).required(),
    Field::one_of("status", STATUSES).required(),
    Field::text("label", 0, 128),
    Field::text("description", 0, 2000),
    Field::text("entryAgentName", 1, 64)
        .format(AGENT_NAME)
        .required(),
    Field::json("agentVersionManifest", 16 * 1024).required(),
    Field::json("modelOverrides", 16 * 1024),
    Field::time("createdAt"),
    Field::text("createdBy", 0, 64),
    Field::time("activatedAt"),
    Field::time("rolledBackAt"),
    Field::time("retiredAt"),
];

/// The document's `versions` list.
pub(super) const VERSIONS: Field = Field::list("versions", Item::Object(VERSION), 0, MAX_RECORDS);
/// The document's `deployments` list.
pub(super) const DEPLOYMENTS: Field =
    Field::list("deployments", Item::Object(DEPLOYMENT), 0, MAX_RECORDS);

/// A project's versions and deployments, as an import reads them.
pub(super) fn export(store: &dyn Backend, tenant: &str, project: &Project) -> (Value, Value) {
    let agents = store.agents(tenant, Some(&project.id), Page::ALL).items;
    let mut names: Vec<String> = agents.into_iter().map(|a| a.name).collect();
    let deps = store.deployments(tenant, &project.id);
    names.extend(
        deps.iter()
            .flat_map(|d| d.manifest.iter().map(|p| p.agent_name.clone())),
    );
    names.sort();
    names.dedup();
    let mut versions = Vec::new();
    for name in &names {
        let mut all = store
            .agent_versions(tenant, &project.id, name, Page::ALL)
            .items;
        all.reverse();
        versions.extend(all.iter().map(version_record));
    }
    // Oldest first, so that an import meets them in the order they happened.
    let deployments = deps.iter().rev().map(deployment_record).collect();
    (Value::Array(versions), Value::Array(deployments))
}

fn version_record(v: &AgentVersion) -> Value {
    let a = view::agent(&v.agent);
    json!({
        "agentName": v.agent_name,
        "version": v.version,
        "label": v.label,
        "contentHash": v.content_hash,
        "agent": {
            "name": a["name"],
            "description": a["description"],
            "instructions": a["instructions"],
            "model": a["model"],
            "dslContent": a["dslContent"],
            "tools": a["tools"],
            "maxToolIterations": a["maxToolIterations"],
        },
        "createdAt": time::iso(v.created_at),
        "createdBy": v.created_by,
    })
}

fn deployment_record(d: &Deployment) -> Value {
    let mut v = deployments::view(d);
    if let Value::Object(o) = &mut v {
        for k in ["projectId", "endpointSlug"] {
            o.remove(k);
        }
    }
    v
}

/// The records of a document, validated (`f` is the document's fields).
pub(super) struct Records {
    versions: Vec<AgentVersion>,
    deployments: Vec<Deployment>,
}

/// Reads `versions` and `deployments` (for a project still to be named: ids, project and
/// slugs are set by [`mutations`]).
pub(super) fn read(f: &mut Fields<'_>, now: u64) -> Records {
    let mut versions = Vec::new();
    f.each("versions", |vf| {
        let agent_name = vf.str("agentName").unwrap_or_default().to_string();
        let version = vf.whole("version").unwrap_or(1) as u32;
        let label = vf.str("label").map(String::from);
        let created_at = vf.time("createdAt").unwrap_or(now);
        let created_by = vf.str("createdBy").unwrap_or_default().to_string();
        let mut agent = None;
        vf.nested("agent", |af| agent = Some(read_agent(af)));
        let Some(agent) = agent else { return };
        let mut agent = agent.into_agent("", None, created_at);
        agent.name.clone_from(&agent_name);
        versions.push(AgentVersion {
            project_id: String::new(),
            agent_name,
            version,
            label,
            content_hash: String::new(),
            agent,
            created_at,
            created_by,
        });
    });
    let mut deployments = Vec::new();
    f.each("deployments", |df| {
        if let Some(d) = read_deployment(df, now) {
            deployments.push(d);
        }
    });
    Records {
        versions,
        deployments,
    }
}

fn read_deployment(df: &mut Fields<'_>, now: u64) -> Option<Deployment> {
    let id = df.str("id").unwrap_or_default().to_string();
    if !id.starts_with("dep_") {
        df.fail("id", "must be a deployment id (dep_...)");
    }
    let environment = df.str("environment").and_then(Environment::parse)?;
    let status = match df.str("status")? {
        "active" => DeploymentStatus::Active,
        "superseded" => DeploymentStatus::Superseded,
        _ => DeploymentStatus::Retired,
    };
    let manifest = read_manifest(df);
    let created_at = df.time("createdAt").unwrap_or(now);
    Some(Deployment {
        id,
        project_id: String::new(),
        environment,
        status,
        label: df.str("label").map(String::from),
        description: df.str("description").map(String::from),
        endpoint_slug: String::new(),
        entry_agent_name: df.str("entryAgentName").unwrap_or_default().to_string(),
        manifest,
        model_overrides: df.json_text("modelOverrides"),
        created_at,
        created_by: df.str("createdBy").unwrap_or_default().to_string(),
        activated_at: df.time("activatedAt").unwrap_or(created_at),
        rolled_back_at: df.time("rolledBackAt"),
        retired_at: df.time("retiredAt"),
    })
}

/// A stored manifest: agent names to version numbers (no `auto` in a record).
fn read_manifest(df: &mut Fields<'_>) -> Vec<PinnedAgent> {
    const FIELD: &str = "agentVersionManifest";
    let text = df.json_text(FIELD).unwrap_or_default();
    let map = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let pinned: Vec<PinnedAgent> = map
        .iter()
        .filter_map(|(name, v)| {
            let version = v.as_u64().and_then(|n| u32::try_from(n).ok())?;
            Some(PinnedAgent {
                agent_name: name.clone(),
                version,
            })
        })
        .collect();
    if pinned.is_empty() || pinned.len() != map.len() {
        df.fail(FIELD, "must map agent names to version numbers");
    }
    pinned
}

/// The mutations that bring the records into `project`, after the document's agents.
pub(super) fn mutations(
    c: &Call<'_>,
    project: &Project,
    records: Records,
) -> ApiResult<Vec<Mutation>> {
    let tenant = c.tenant()?;
    let store = &c.api.store;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    // Versions per name, as the target will hold them once the new ones are added.
    let mut held: HashMap<String, Vec<String>> = HashMap::new();
    for (i, mut v) in records.versions.into_iter().enumerate() {
        let have = held.entry(v.agent_name.clone()).or_insert_with(|| {
            let mut all = store
                .agent_versions(tenant, &project.id, &v.agent_name, Page::ALL)
                .items;
            all.reverse();
            all.into_iter().map(|v| v.content_hash).collect()
        });
        v.project_id.clone_from(&project.id);
        v.agent.project_id.clone_from(&project.id);
        v.content_hash = content_hash(&v.agent);
        let n = v.version as usize;
        match n.checked_sub(1).and_then(|i| have.get(i)) {
            Some(hash) if *hash == v.content_hash => {}
            Some(_) => {
                return Err(ApiError::Conflict(format!(
                    "Version {n} of {} in the project differs from the document's",
                    v.agent_name
                )))
            }
            None if n == have.len() + 1 => {
                have.push(v.content_hash.clone());
                out.push(Mutation::PutAgentVersion(v));
            }
            None => errors.push(FieldError {
                field: format!("versions[{i}].version"),
                message: format!(
                    "{} has {} versions: the next is {}",
                    v.agent_name,
                    have.len(),
                    have.len() + 1
                ),
            }),
        }
    }
    let existing = store.deployments(tenant, &project.id);
    let known: HashSet<&str> = existing.iter().map(|d| d.id.as_str()).collect();
    let mut active_in: HashSet<Environment> = HashSet::new();
    for (i, mut d) in records.deployments.into_iter().enumerate() {
        if known.contains(d.id.as_str()) {
            continue;
        }
        for p in &d.manifest {
            let count = held.get(&p.agent_name).map(Vec::len).unwrap_or_else(|| {
                store
                    .agent_versions(tenant, &project.id, &p.agent_name, Page::ALL)
                    .total
            });
            if p.version as usize > count {
                errors.push(FieldError {
                    field: format!("deployments[{i}].agentVersionManifest"),
                    message: format!("{}: no version {}", p.agent_name, p.version),
                });
            }
        }
        if !d
            .manifest
            .iter()
            .any(|p| p.agent_name == d.entry_agent_name)
        {
            errors.push(FieldError {
                field: format!("deployments[{i}].entryAgentName"),
                message: "must be an agent of agentVersionManifest".into(),
            });
        }
        if d.status == DeploymentStatus::Active {
            if !active_in.insert(d.environment) {
                errors.push(FieldError {
                    field: format!("deployments[{i}].status"),
                    message: format!("a second active deployment of {}", d.environment.as_str()),
                });
            }
            if let Some(mut old) = existing
                .iter()
                .find(|o| o.environment == d.environment && o.status == DeploymentStatus::Active)
                .cloned()
            {
                old.status = DeploymentStatus::Superseded;
                out.push(Mutation::PutDeployment(old));
            }
        }
        d.project_id.clone_from(&project.id);
        d.endpoint_slug = format!(
            "{}/{}/{}",
            project.slug,
            d.environment.as_str(),
            d.entry_agent_name
        );
        out.push(Mutation::PutDeployment(d));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::Validation(errors))
    }
}
