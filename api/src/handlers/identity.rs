//! Identity routes: login, `me`, users and API keys.

use halyard_engine::{Reply, Response};
use halyard_storage::{ids, ApiKey, KeyKind, Mutation, Page, Role, User};
use serde_json::json;

use super::projects::page_of;
use super::Call;
use crate::auth::{parse_role, Principal, ROLE_NAMES};
use crate::body::{Field, Fields, Item, Text, EMAIL};
use crate::error::{ApiError, ApiResult};
use crate::scope::{self, Scope, Scopes};
use crate::{password, reply, seed, time, tokens, view};

const BAD_LOGIN: &str = "Invalid email or password";

/// The longest email address.
pub(super) const MAX_EMAIL: usize = 254;
/// The shortest password a new user may have.
pub(super) const MIN_PASSWORD: usize = 12;
/// The longest password.
pub(super) const MAX_PASSWORD: usize = 1024;

/// The body of `POST /api/v1/auth/login`: any email and password may be tried; the stored
/// user decides, not the rules for a new one.
pub(super) const LOGIN_BODY: &[Field] = &[
    Field::text("email", 1, MAX_EMAIL).required(),
    Field::text("password", 1, MAX_PASSWORD).required(),
    Field::text("tenantId", 0, 64),
];

/// The body of `POST /api/v1/users`.
pub(super) const USER_BODY: &[Field] = &[
    Field::text("email", 1, MAX_EMAIL).format(EMAIL).required(),
    Field::text("password", MIN_PASSWORD, MAX_PASSWORD).required(),
    Field::one_of("role", &ROLE_NAMES),
];

/// The body of `POST /api/v1/api-keys`.
pub(super) const KEY_BODY: &[Field] = &[
    Field::text("name", 1, 128).required(),
    Field::one_of("kind", &["user", "service"]),
    Field::list("scopes", Item::OneOf(&scope::NAMES), 0, 16),
    Field::list("projectIds", Item::Text(Text::new(1, 64)), 0, 100),
    Field::time("expiresAt"),
];

/// `POST /api/v1/auth/login`: the same `401` after the same work for an unknown email and a
/// wrong password.
pub fn login(c: &Call<'_>) -> ApiResult<Response> {
    let body = c.body()?;
    let mut f = Fields::of(&body, LOGIN_BODY)?;
    let email = f.str("email").map(str::to_ascii_lowercase);
    let pw = f.str("password");
    let tenant_id = f.str("tenantId");
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
    let mut f = Fields::of(&body, USER_BODY)?;
    let email = f.str("email");
    let pw = f.str("password");
    let role = f
        .str("role")
        .and_then(parse_role)
        .unwrap_or(Role::Developer);
    f.finish()?;
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
    let mut f = Fields::of(&body, KEY_BODY)?;
    let name = f.str("name");
    let kind = match f.str("kind") {
        Some("service") => KeyKind::Service,
        _ => KeyKind::User,
    };
    let scopes: Vec<Scope> = f
        .strings("scopes")
        .unwrap_or_default()
        .into_iter()
        .filter_map(Scope::parse)
        .collect();
    let mut project_ids: Vec<String> = f
        .strings("projectIds")
        .unwrap_or_default()
        .into_iter()
        .map(String::from)
        .collect();
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
    let expires_at = f.time("expiresAt");
    if expires_at.is_some_and(|e| e <= now) {
        f.fail("expiresAt", "must be in the future");
    }
    f.finish()?;
    // A new key never holds more than its creator: no scope it lacks, no project it
    // cannot see.
    let scopes = if scopes.is_empty() {
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
