//! Secret routes (`/api/projects/:pid/secrets`): values are sealed before they are stored
//! and never returned.

use halyard_engine::{Reply, Response};
use halyard_storage::{ids, Mutation, Secret};

use super::Call;
use crate::body::{Field, Fields, SECRET_NAME};
use crate::error::{ApiError, ApiResult};
use crate::vault::aad;
use crate::{reply, time, view};

/// Largest secret value.
pub const MAX_VALUE: usize = 64 * 1024;

/// A secret's value: sealed and stored as bytes, so bounded in bytes.
const VALUE: Field = Field::text("value", 1, MAX_VALUE).bytes().required();

/// The body of `POST /api/projects/:pid/secrets`.
pub(super) const CREATE_BODY: &[Field] = &[
    Field::text("name", 1, 128).format(SECRET_NAME).required(),
    VALUE,
    Field::time("expiresAt"),
];

/// The body of `POST /api/projects/:pid/secrets/:name/rotate`.
pub(super) const ROTATE_BODY: &[Field] = &[VALUE];

/// `POST /api/projects/:pid/secrets`.
pub fn create(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let tenant = c.tenant()?;
    let body = c.body()?;
    let mut f = Fields::of(&body, CREATE_BODY)?;
    let name = f.str("name");
    let value = f.str("value");
    let now = time::now_ms();
    let expires_at = f.time("expiresAt");
    if expires_at.is_some_and(|e| e <= now) {
        f.fail("expiresAt", "must be in the future");
    }
    f.finish()?;
    let name = name.unwrap_or_default();
    let sealed = c
        .api
        .vault
        .seal(
            value.unwrap_or_default().as_bytes(),
            &aad(tenant, &project.id, name),
        )
        .ok_or(ApiError::Internal)?;
    let secret = Secret {
        id: ids::new_id(ids::SECRET),
        project_id: project.id,
        name: name.to_string(),
        version: 1,
        ciphertext: sealed,
        created_at: now,
        updated_at: now,
        expires_at,
    };
    let resp = reply::created(vec![("secret", view::secret(&secret))]);
    c.commit(vec![Mutation::PutSecret(secret)], resp)
}

/// `GET /api/projects/:pid/secrets`: metadata only.
pub fn list(c: &Call<'_>) -> ApiResult<Response> {
    let project = c.project()?;
    let page = c.page()?;
    let listed = c.api.store.secrets(c.tenant()?, &project.id, page);
    Ok(reply::list("secrets", &listed, page, view::secret))
}

fn find(c: &Call<'_>, project_id: &str) -> ApiResult<Secret> {
    let name = c.param(1);
    c.api
        .store
        .secret(c.tenant()?, project_id, name)
        .ok_or_else(|| ApiError::NotFound(format!("Secret not found: {name}")))
}

/// `POST /api/projects/:pid/secrets/:name/rotate`.
pub fn rotate(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let mut secret = find(c, &project.id)?;
    let body = c.body()?;
    let mut f = Fields::of(&body, ROTATE_BODY)?;
    let value = f.str("value");
    f.finish()?;
    secret.ciphertext = c
        .api
        .vault
        .seal(
            value.unwrap_or_default().as_bytes(),
            &aad(c.tenant()?, &project.id, &secret.name),
        )
        .ok_or(ApiError::Internal)?;
    secret.version += 1;
    secret.updated_at = time::now_ms();
    let resp = reply::ok(vec![("secret", view::secret(&secret))]);
    c.commit(vec![Mutation::PutSecret(secret)], resp)
}

/// `DELETE /api/projects/:pid/secrets/:name`.
pub fn delete(c: &Call<'_>) -> ApiResult<Reply> {
    let project = c.project()?;
    let secret = find(c, &project.id)?;
    let m = Mutation::DeleteSecret {
        project_id: project.id,
        name: secret.name,
    };
    c.commit(vec![m], crate::success())
}
