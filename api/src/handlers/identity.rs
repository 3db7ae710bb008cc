//! Identity routes: login, `me`, users and API keys.

use halyard_engine::{Reply, Response};
use halyard_storage::{ids, ApiKey, KeyKind, Mutation, Page, Role, User};
use serde_json::json;

use super::projects::page_of;
use super::Call;
use crate::auth::{parse_role, Principal};
use crate::body::Fields;
use crate::error::{ApiError, ApiResult};
use crate::scope::{Scope, Scopes};
use crate::{password, reply, seed, time, tokens, view};

const BAD_LOGIN: &str = "Invalid email or password";

/// `POST /api/v1/auth/login`: the same `401` after the same work for an unknown email and a
/// wrong password.
pub fn login(c: &Call<'_>) -> ApiResult<Response> {
    let body = c.body()?;
    let mut f = Fields::of(&body)?;
    let email = f.req_str("email", 254).map(str::to_ascii_lowercase);
    let pw = f.req_str("password", 1024);
    let tenant_id = f.opt_str("tenantId", 64);
    f.finish()?;
    let (email, pw) = (email.unwrap_or_default(), pw.unwrap_or_default());
    let candidate = c
        .api
        .store
        .users_by_email(&email)
        .into_iter()
        .find(|(t, _)| tenant_id.is_none_or(|want| want == t));
    let (tenant, user) = match candidate {
        Some((t, u)) if password::verify(pw, &u.password_hash) => (t, u),
        Some(_) => return Err(ApiError::Unauthorized(BAD_LOGIN)),
        None => {
            password::verify_dummy(pw);
            return Err(ApiError::Unauthorized(BAD_LOGIN));
        }
    };
    if c.api.store.tenant(&tenant).is_none_or(|t| t.disabled) {
        return Err(ApiError::Unauthorized(BAD_LOGIN));
    }
    let jwt = &c.api.verifiers.jwt;
    let token = jwt
        .issue(
            &user.id,
            &tenant,
            view::role(user.role),
            time::now_ms() / 1000,
        )
        .ok_or(ApiError::Internal)?;
    Ok(reply::ok(vec![(
        "data",
        json!({"token": token, "expiresIn": jwt.ttl_secs(), "user": view::user(&user), "tenantId": tenant}),
    )]))
}

/// `GET /api/v1/auth/me`.
pub fn me(c: &Call<'_>) -> ApiResult<Response> {
    let p = c.principal()?;
    Ok(reply::ok(vec![(
        "data",
        json!({
            "tenantId": p.tenant,
            "principal": p.id,
            "kind": p.kind.name(),
            "scopes": p.scopes.names(),
            "projectIds": p.projects,
        }),
    )]))
}

/// `POST /api/v1/users`.
pub fn create_user(c: &Call<'_>) -> ApiResult<Reply> {
    let body = c.body()?;
    let mut f = Fields::of(&body)?;
    let email = f.req_str("email", 254);
    let pw = f.req_str("password", 1024);
    let role = match f.opt_str("role", 16) {
        None => Some(Role::Developer),
        Some(r) => parse_role(r),
    };
    if role.is_none() {
        f.fail("role", "must be owner, developer or viewer");
    }
    if email.is_some_and(|e| !e.contains('@')) {
        f.fail("email", "must be an email address");
    }
    if pw.is_some_and(|p| p.chars().count() < 12) {
        f.fail("password", "must be at least 12 characters");
    }
    f.finish()?;
    let role = role.unwrap_or(Role::Developer);
    let p = c.principal()?;
    // A user's JWT sees every project of the tenant with its role's scopes: only a
    // credential that already holds as much may create one.
    if !p.projects.is_empty() {
        return Err(ApiError::Forbidden(
            "A credential restricted to projects cannot create users".into(),
        ));
    }
    if let Some(missing) = missing_scopes(p.scopes, Scopes::of_role(role)) {
        return Err(ApiError::Forbidden(format!(
            "Role {} holds scopes this credential does not: {missing}",
            view::role(role)
        )));
    }
    let user = User {
        id: ids::new_id(ids::USER),
        email: email.unwrap_or_default().to_ascii_lowercase(),
        password_hash: password::hash(pw.unwrap_or_default()).ok_or(ApiError::Internal)?,
        role,
        created_at: time::now_ms(),
    };
    let resp = reply::created(vec![("user", view::user(&user))]);
    c.commit(vec![Mutation::PutUser(user)], resp)
}

/// The scopes of `wanted` that `held` lacks, by name, if any.
fn missing_scopes(held: Scopes, wanted: Scopes) -> Option<String> {
    let missing: Vec<&str> = crate::scope::ALL
        .iter()
        .filter(|(s, _)| wanted.has(*s) && !held.has(*s))
        .map(|(_, n)| *n)
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// The scopes in both sets.
fn common_scopes(a: Scopes, b: Scopes) -> Scopes {
    let both: Vec<Scope> = crate::scope::ALL
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| a.has(*s) && b.has(*s))
        .collect();
    Scopes::of(&both)
}

/// `GET /api/v1/users`.
pub fn list_users(c: &Call<'_>) -> ApiResult<Response> {
    if !c.principal()?.projects.is_empty() {
        return Err(ApiError::Forbidden(
            "A credential restricted to projects cannot manage users".into(),
        ));
    }
    let page = c.page()?;
    let listed = c.api.store.users(c.tenant()?, page);
    Ok(reply::list("users", &listed, page, view::user))
}

/// `POST /api/v1/api-keys`.
pub fn create_key(c: &Call<'_>) -> ApiResult<Reply> {
    let body = c.body()?;
    let mut f = Fields::of(&body)?;
    let name = f.req_str("name", 128);
    let kind = match f.opt_str("kind", 16) {
        None | Some("user") => Some(KeyKind::User),
        Some("service") => Some(KeyKind::Service),
        Some(_) => None,
    };
    if kind.is_none() {
        f.fail("kind", "must be user or service");
    }
    let scope_names = f.opt_strings("scopes", 32, 16).unwrap_or_default();
    let scopes: Vec<Scope> = scope_names.iter().filter_map(|s| Scope::parse(s)).collect();
    if scopes.len() != scope_names.len() {
        f.fail("scopes", "has an unknown scope");
    }
    let mut project_ids = f.opt_strings("projectIds", 64, 100).unwrap_or_default();
    let principal = c.principal()?;
    let tenant = c.tenant()?;
    // A project the creator may not see is as unknown as one that does not exist.
    if let Some(bad) = project_ids
        .iter()
        .find(|p| !principal.sees_project(p) || c.api.store.project(tenant, p).is_none())
    {
        f.fail("projectIds", format!("unknown project: {bad}"));
    }
    let now = time::now_ms();
    let expires_at = f.opt_time("expiresAt");
    if expires_at.is_some_and(|e| e <= now) {
        f.fail("expiresAt", "must be in the future");
    }
    f.finish()?;
    let kind = kind.unwrap_or(KeyKind::User);
    // A new key never holds more than its creator: no scope it lacks, no project it
    // cannot see.
    let scopes = if scope_names.is_empty() {
        common_scopes(Scopes::default_for_key(), principal.scopes)
    } else {
        let wanted = Scopes::of(&scopes);
        if let Some(missing) = missing_scopes(principal.scopes, wanted) {
            return Err(ApiError::Forbidden(format!(
                "Cannot grant scopes this credential does not hold: {missing}"
            )));
        }
        wanted
    };
    if project_ids.is_empty() {
        project_ids = principal.projects.clone();
    }
    let prefix = match kind {
        KeyKind::User => tokens::USER_KEY,
        KeyKind::Service => tokens::SERVICE_KEY,
    };
    let key = tokens::mint(prefix);
    let name = name.unwrap_or_default();
    let record = seed::key_record(&key, name, kind, scopes, project_ids, expires_at, now);
    let resp = reply::created(vec![
        ("apiKey", view::api_key(&record)),
        ("key", key.into()),
    ]);
    c.commit(vec![Mutation::PutApiKey(record)], resp)
}

/// `GET /api/v1/api-keys`.
pub fn list_keys(c: &Call<'_>) -> ApiResult<Response> {
    let p = c.principal()?;
    let page = c.page()?;
    let listed = if p.projects.is_empty() {
        c.api.store.api_keys(&p.tenant, page)
    } else {
        let all = c.api.store.api_keys(&p.tenant, Page::ALL).items;
        page_of(all.into_iter().filter(|k| manages(p, k)).collect(), page)
    };
    Ok(reply::list("apiKeys", &listed, page, view::api_key))
}

/// Whether `p` may see and revoke key `k`: any key for an unrestricted principal; for one
/// restricted to projects, only keys restricted to a subset of its projects.
fn manages(p: &Principal, k: &ApiKey) -> bool {
    p.projects.is_empty()
        || (!k.project_ids.is_empty() && k.project_ids.iter().all(|id| p.sees_project(id)))
}

/// `DELETE /api/v1/api-keys/:keyId`: revokes; the key is `401` from the next request on.
pub fn revoke_key(c: &Call<'_>) -> ApiResult<Reply> {
    let id = c.param(0);
    let p = c.principal()?;
    let mut key = c
        .api
        .store
        .api_key(&p.tenant, id)
        .filter(|k| !k.revoked && manages(p, k))
        .ok_or_else(|| ApiError::NotFound(format!("API key not found: {id}")))?;
    key.revoked = true;
    c.commit(vec![Mutation::PutApiKey(key)], crate::success())
}
