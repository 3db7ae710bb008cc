//! Project routes (`/api/projects`).

use halyard_engine::{Reply, Response};
use halyard_storage::{ids, Listed, Mutation, Page, Project};

use super::Call;
use crate::body::{Field, Fields, AGENT_NAME};
use crate::error::ApiResult;
use crate::{reply, time, view};

/// The longest project name.
const MAX_NAME: usize = 128;
/// The longest project description.
const MAX_DESCRIPTION: usize = 2000;
/// The project's entry agent, by name.
const ENTRY_AGENT: Field = Field::text("entryAgentName", 0, 64).format(AGENT_NAME);

/// The body of `POST /api/projects`.
pub(super) const CREATE_BODY: &[Field] = &[
    Field::text("name", 1, MAX_NAME).required(),
    Field::text("description", 0, MAX_DESCRIPTION),
    ENTRY_AGENT,
];

/// The body of `PATCH /api/projects/:projectId` (and the project of an import manifest).
pub(super) const PATCH_BODY: &[Field] = &[
    Field::text("name", 1, MAX_NAME),
    Field::text("description", 0, MAX_DESCRIPTION).clearable(),
    ENTRY_AGENT.clearable(),
];

/// The slug of a project name: lowercase ASCII letters and digits joined by single dashes.
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for ch in name.chars() {
        if ch.is_ascii_alphanumeric() {
            slug.push(ch.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        "project".into()
    } else {
        slug
    }
}

/// Pages a list the principal sees only part of (keys restricted to some projects).
pub fn page_of<T: Clone>(all: Vec<T>, page: Page) -> Listed<T> {
    let total = all.len();
    let items = all.into_iter().skip(page.offset).take(page.limit).collect();
    Listed { items, total }
}

/// `GET /api/projects`.
pub fn list(c: &Call<'_>) -> ApiResult<Response> {
    let p = c.principal()?;
    let page = c.page()?;
    let listed = if p.projects.is_empty() {
        c.api.store.projects(&p.tenant, page)
    } else {
        let all = c.api.store.projects(&p.tenant, Page::ALL).items;
        page_of(
            all.into_iter().filter(|x| p.sees_project(&x.id)).collect(),
            page,
        )
    };
    Ok(reply::list("projects", &listed, page, view::project))
}

/// `POST /api/projects`.
pub fn create(c: &Call<'_>) -> ApiResult<Reply> {
    let body = c.body()?;
    let mut f = Fields::of(&body, CREATE_BODY)?;
    let name = f.str("name");
    let description = f.str("description");
    let entry = f.str("entryAgentName");
    f.finish()?;
    let now = time::now_ms();
    let name = name.unwrap_or_default();
    let project = Project {
        id: ids::new_id(ids::PROJECT),
        name: name.to_string(),
        slug: slugify(name),
        description: description.map(String::from),
        entry_agent_name: entry.map(String::from),
        created_at: now,
        updated_at: now,
    };
    let resp = reply::created(vec![("project", view::project(&project))]);
    c.commit(vec![Mutation::PutProject(project)], resp)
}

/// `GET /api/projects/:projectId`.
pub fn get(c: &Call<'_>) -> ApiResult<Response> {
    Ok(reply::ok(vec![("project", view::project(&c.project()?))]))
}

/// `PATCH /api/projects/:projectId`.
pub fn patch(c: &Call<'_>) -> ApiResult<Reply> {
    let mut project = c.project()?;
    let body = c.body()?;
    let mut f = Fields::of(&body, PATCH_BODY)?;
    if let Some(name) = f.str("name") {
        project.name = name.to_string();
    }
    f.patch_str("description")
        .apply_to(&mut project.description);
    f.patch_str("entryAgentName")
        .apply_to(&mut project.entry_agent_name);
    f.finish()?;
    project.updated_at = time::now_ms();
    let resp = reply::ok(vec![("project", view::project(&project))]);
    c.commit(vec![Mutation::PutProject(project)], resp)
}

/// `DELETE /api/projects/:projectId`: its agents, sessions, keys and secrets go with it.
pub fn delete(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    c.commit(
        vec![Mutation::DeleteProject { id: project.id }],
        crate::success(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("My Project!"), "my-project");
        assert_eq!(slugify("  --  "), "project");
        assert_eq!(slugify("Ünïcode 2"), "n-code-2");
    }
}
