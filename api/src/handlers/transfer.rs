//! Project export and import (`/api/projects/:pid/project-io/...`).
//!
//! An import is one commit: every tool and agent created or replaced (matched by name),
//! absent ones deleted only with `?prune=true`, the project's description and entry agent
//! taken, agent versions and deployment records added (`deployment_records`); all or
//! nothing. An agent may name the document's tools and the project's. A second
//! import of the same project while one is in flight is `409`.

use std::collections::HashSet;

use halyard_engine::{Reply, Response};
use halyard_storage::{Agent, Backend, Mutation, Page, Project};
use serde_json::{json, Value};

use super::agents::{self, read_agent, AgentInput};
use super::deployment_records::{self, Records};
use super::projects;
use super::tools::{self, ToolInput};
use super::Call;
use crate::body::{Field, Fields, Item, Patch};
use crate::error::{ApiError, ApiResult};
use crate::{reply, time, view};

/// Version of the export document.
pub const FORMAT_VERSION: u64 = 1;
/// Most agents one document may hold.
pub const MAX_AGENTS: usize = 10_000;
/// Most tools one document may hold.
pub const MAX_TOOLS: usize = 10_000;

/// What an import takes from the manifest: its version, and the project's fields that a
/// PATCH of the project may change (the name stays).
const MANIFEST: &[Field] = &[
    Field::whole("version", 1, FORMAT_VERSION),
    Field::object("project", projects::PATCH_BODY),
];

/// The body of an import and its preview: an export document.
pub(super) const IMPORT_BODY: &[Field] = &[
    Field::object("manifest", MANIFEST),
    Field::list("agents", Item::Object(agents::CREATE_BODY), 0, MAX_AGENTS).required(),
    Field::list("tools", Item::Object(tools::BODY), 0, MAX_TOOLS),
    deployment_records::VERSIONS,
    deployment_records::DEPLOYMENTS,
];

/// `GET /api/projects/:pid/project-io/export`: no keys, secrets or sessions.
pub fn export(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let doc = project_document(&*c.api.store, c.tenant()?, &project, time::now_ms());
    Ok(reply::ok(vec![
        ("manifest", doc.manifest),
        ("agents", doc.agents),
        ("tools", doc.tools),
        ("versions", doc.versions),
        ("deployments", doc.deployments),
    ]))
}

/// The parts of a project's export document.
pub(super) struct ProjectDocument {
    /// `{project, exportedAt, version}`.
    pub(super) manifest: Value,
    /// The agents, as an import reads them.
    pub(super) agents: Value,
    /// The tools, as an import reads them.
    pub(super) tools: Value,
    /// The agent versions, oldest first per agent name.
    pub(super) versions: Value,
    /// The deployment records, oldest first.
    pub(super) deployments: Value,
}

/// A project's export document: its `manifest`, `agents` and `tools`, in the shape an import
/// reads (the tenant export repeats it for each project, so that any of them imports).
pub(super) fn project_document(
    store: &dyn Backend,
    tenant: &str,
    project: &Project,
    exported_at: u64,
) -> ProjectDocument {
    let agents = store.agents(tenant, Some(&project.id), Page::ALL).items;
    let agents: Vec<Value> = agents
        .iter()
        .map(|a| {
            let v = view::agent(a);
            json!({
                "name": v["name"],
                "description": v["description"],
                "instructions": v["instructions"],
                "model": v["model"],
                "dslContent": v["dslContent"],
                "tools": v["tools"],
                "maxToolIterations": v["maxToolIterations"],
            })
        })
        .collect();
    let tools: Vec<Value> = store
        .tools(tenant, &project.id, Page::ALL)
        .items
        .iter()
        .map(|t| {
            let mut v = view::tool(t);
            if let Value::Object(o) = &mut v {
                for k in ["id", "projectId", "createdAt", "updatedAt"] {
                    o.remove(k);
                }
            }
            v
        })
        .collect();
    let manifest = json!({
        "project": {
            "name": project.name,
            "description": project.description,
            "entryAgentName": project.entry_agent_name,
        },
        "exportedAt": time::iso(exported_at),
        "version": FORMAT_VERSION,
    });
    let (versions, deployments) = deployment_records::export(store, tenant, project);
    ProjectDocument {
        manifest,
        agents: Value::Array(agents),
        tools: Value::Array(tools),
        versions,
        deployments,
    }
}

/// A validated import document.
struct Document {
    description: Patch<String>,
    entry_agent: Patch<String>,
    agents: Vec<AgentInput>,
    tools: Vec<ToolInput>,
    records: Records,
}

fn read_document(body: &Value) -> ApiResult<Document> {
    let mut f = Fields::of(body, IMPORT_BODY)?;
    let mut description = Patch::Absent;
    let mut entry_agent = Patch::Absent;
    f.nested("manifest", |m| {
        m.whole("version");
        m.nested("project", |p| {
            description = p.patch_str("description").map(String::from);
            entry_agent = p.patch_str("entryAgentName").map(String::from);
        });
    });
    let mut agents = Vec::new();
    let mut seen = HashSet::new();
    f.each("agents", |af| {
        let input = read_agent(af);
        if let Some(name) = &input.name {
            if !seen.insert(name.clone()) {
                af.fail("name", format!("duplicate agent name: {name}"));
            }
        }
        agents.push(input);
    });
    let mut tools = Vec::new();
    let mut tool_names = HashSet::new();
    f.each("tools", |tf| {
        let input = tools::read(tf);
        if !tool_names.insert(input.name.clone()) {
            tf.fail("name", format!("duplicate tool name: {}", input.name));
        }
        tools.push(input);
    });
    let records = deployment_records::read(&mut f, time::now_ms());
    f.finish()?;
    Ok(Document {
        description,
        entry_agent,
        agents,
        tools,
        records,
    })
}

/// What an import would do: agent names to create, update and delete.
struct Plan {
    create: Vec<String>,
    update: Vec<String>,
    delete: Vec<Agent>,
}

fn plan(existing: &[Agent], doc: &Document, prune: bool) -> Plan {
    let incoming: HashSet<&str> = doc
        .agents
        .iter()
        .filter_map(|a| a.name.as_deref())
        .collect();
    let (update, create) = doc
        .agents
        .iter()
        .filter_map(|a| a.name.clone())
        .partition(|n| existing.iter().any(|e| &e.name == n));
    let delete = if prune {
        existing
            .iter()
            .filter(|e| !incoming.contains(e.name.as_str()))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    Plan {
        create,
        update,
        delete,
    }
}

fn plan_json(p: &Plan) -> Value {
    let deleted: Vec<&str> = p.delete.iter().map(|a| a.name.as_str()).collect();
    json!({"create": p.create, "update": p.update, "delete": deleted})
}

fn load(c: &Call<'_>) -> ApiResult<(Project, Vec<Agent>, Document, bool)> {
    let project = c.project()?;
    let doc = read_document(&c.body()?)?;
    let existing = c
        .api
        .store
        .agents(c.tenant()?, Some(&project.id), Page::ALL)
        .items;
    let prune = c.query("prune").is_some_and(|v| v == "true" || v == "1");
    Ok((project, existing, doc, prune))
}

/// `POST /api/projects/:pid/project-io/import/preview`.
pub fn preview(c: &Call<'_>) -> ApiResult<Response> {
    let (_, existing, doc, prune) = load(c)?;
    Ok(reply::ok(vec![(
        "preview",
        plan_json(&plan(&existing, &doc, prune)),
    )]))
}

/// The document's tools created or replaced by name (and, with `prune`, the project's other
/// tools deleted), after checking that every agent of the document names a tool it will
/// have.
fn tool_mutations(
    c: &Call<'_>,
    project: &Project,
    doc: &mut Document,
    prune: bool,
    now: u64,
) -> ApiResult<Vec<Mutation>> {
    let existing = c.api.store.tools(c.tenant()?, &project.id, Page::ALL).items;
    let mut available: HashSet<&str> = doc.tools.iter().map(|t| t.name.as_str()).collect();
    if !prune {
        available.extend(existing.iter().map(|t| t.name.as_str()));
    }
    let mut errors = Vec::new();
    for (i, a) in doc.agents.iter().enumerate() {
        for name in a.tools.iter().filter(|n| !available.contains(n.as_str())) {
            errors.push(crate::error::FieldError {
                field: format!("agents[{i}].tools"),
                message: format!("{name} is not a tool of the project or the document"),
            });
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let incoming: HashSet<String> = doc.tools.iter().map(|t| t.name.clone()).collect();
    let mut mutations: Vec<Mutation> = std::mem::take(&mut doc.tools)
        .into_iter()
        .map(|t| {
            let current = existing.iter().find(|e| e.name == t.name);
            Mutation::PutTool(t.into_tool(&project.id, current, now))
        })
        .collect();
    if prune {
        mutations.extend(
            existing
                .iter()
                .filter(|e| !incoming.contains(&e.name))
                .map(|e| Mutation::DeleteTool {
                    project_id: project.id.clone(),
                    id: e.id.clone(),
                }),
        );
    }
    Ok(mutations)
}

/// `POST /api/projects/:pid/project-io/import`.
pub fn import(c: &Call<'_>) -> ApiResult<Reply> {
    let (mut project, existing, mut doc, prune) = load(c)?;
    let plan = plan(&existing, &doc, prune);
    let now = time::now_ms();
    let mut mutations = tool_mutations(c, &project, &mut doc, prune, now)?;
    for input in doc.agents {
        let current = existing
            .iter()
            .find(|e| Some(&e.name) == input.name.as_ref());
        mutations.push(Mutation::PutAgent(input.into_agent(
            &project.id,
            current,
            now,
        )));
    }
    mutations.extend(deployment_records::mutations(c, &project, doc.records)?);
    for gone in &plan.delete {
        mutations.push(Mutation::DeleteAgent {
            project_id: project.id.clone(),
            id: gone.id.clone(),
        });
    }
    doc.description.apply_to(&mut project.description);
    doc.entry_agent.apply_to(&mut project.entry_agent_name);
    project.updated_at = now;
    let project_id = project.id.clone();
    mutations.push(Mutation::PutProject(project));
    let key = format!("{}/{}", c.tenant()?, project_id);
    let fresh = c
        .api
        .imports
        .lock()
        .map(|mut s| s.insert(key.clone()))
        .unwrap_or(false);
    if !fresh {
        return Err(ApiError::Conflict(
            "An import of this project is already running".into(),
        ));
    }
    let resp = reply::ok(vec![("applied", {
        let mut v = plan_json(&plan);
        let obj = v.as_object_mut().map(std::mem::take).unwrap_or_default();
        json!({"created": obj.get("create"), "updated": obj.get("update"), "deleted": obj.get("delete")})
    })]);
    let api_imports = c.api.imports.clone();
    let release: super::After = Box::new(move |_| {
        if let Ok(mut s) = api_imports.lock() {
            s.remove(&key);
        }
    });
    let tenant = c.tenant()?.to_string();
    c.commit_for(&tenant, mutations, resp, Some(release))
}
