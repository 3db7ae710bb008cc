//! Operator routes: tenants (`/api/v1/admin/tenants`), root key only. A tenant's export is
//! in `tenant_export`, backups in `backup`.

use halyard_engine::{Reply, Response};
use halyard_storage::{ids, Limits, Mutation, Tenant};

use super::identity::{MAX_EMAIL, MAX_PASSWORD, MIN_PASSWORD};
use super::Call;
use crate::body::{Field, Fields, EMAIL};
use crate::error::{ApiError, ApiResult};
use crate::reply;
use crate::view;

/// The longest tenant name.
const MAX_NAME: usize = 128;

/// A tenant's limits (each bound fits the `u32` it is stored in).
const LIMITS: &[Field] = &[
    Field::whole("requestsPerSecond", 1, 1_000_000),
    Field::whole("burst", 1, 10_000_000),
    Field::whole("sessionMessagesPerMinute", 1, 1_000_000),
    Field::whole("maxConcurrentSessions", 1, 100_000_000),
];

/// The body of `POST /api/v1/admin/tenants`: an owner user when `ownerEmail` is given.
pub(super) const CREATE_BODY: &[Field] = &[
    Field::text("name", 1, MAX_NAME).required(),
    Field::object("limits", LIMITS),
    Field::text("ownerEmail", 0, MAX_EMAIL).format(EMAIL),
    Field::text("ownerPassword", MIN_PASSWORD, MAX_PASSWORD).required_with("ownerEmail"),
];

/// The body of `PATCH /api/v1/admin/tenants/:tenantId`.
pub(super) const PATCH_BODY: &[Field] = &[
    Field::text("name", 1, MAX_NAME),
    Field::object("limits", LIMITS),
    Field::bool("disabled"),
];

/// Reads `limits{...}` over `base`.
fn read_limits(f: &mut Fields<'_>, base: Limits) -> Limits {
    let mut limits = base;
    f.nested("limits", |l| {
        let mut set = |name: &str, to: &mut u32| {
            if let Some(v) = l.whole(name) {
                *to = v as u32;
            }
        };
        set("requestsPerSecond", &mut limits.requests_per_second);
        set("burst", &mut limits.burst);
        set(
            "sessionMessagesPerMinute",
            &mut limits.session_messages_per_minute,
        );
        set("maxConcurrentSessions", &mut limits.max_concurrent_sessions);
    });
    limits
}

/// `POST /api/v1/admin/tenants`.
pub fn create(c: &Call<'_>) -> ApiResult<Reply> {
    let body = c.body()?;
    let mut f = Fields::of(&body, CREATE_BODY)?;
    let name = f.str("name");
    let limits = read_limits(&mut f, Limits::default());
    let email = f.str("ownerEmail");
    let password = f.str("ownerPassword");
    f.finish()?;
    let now = crate::time::now_ms();
    let tenant = Tenant {
        id: ids::new_id(ids::TENANT),
        name: name.unwrap_or_default().to_string(),
        limits,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    let owner = crate::seed::owner(email.zip(password), now)?;
    let resp = reply::created(vec![
        ("tenant", view::tenant(&tenant)),
        (
            "owner",
            serde_json::json!({
                "user": owner.user.as_ref().map(view::user),
                "apiKey": owner.key,
            }),
        ),
    ]);
    let tenant_id = tenant.id.clone();
    c.commit_for(&tenant_id, owner.mutations(tenant), resp, None)
}

/// `GET /api/v1/admin/tenants`.
pub fn list(c: &Call<'_>) -> ApiResult<Response> {
    let page = c.page()?;
    let listed = c.api.store.tenants(page);
    Ok(reply::list("tenants", &listed, page, view::tenant))
}

/// `PATCH /api/v1/admin/tenants/:tenantId`.
pub fn patch(c: &Call<'_>) -> ApiResult<Reply> {
    let id = c.param(0);
    let mut tenant = c
        .api
        .store
        .tenant(id)
        .ok_or_else(|| ApiError::NotFound(format!("Tenant not found: {id}")))?;
    let body = c.body()?;
    let mut f = Fields::of(&body, PATCH_BODY)?;
    if let Some(name) = f.str("name") {
        tenant.name = name.to_string();
    }
    tenant.limits = read_limits(&mut f, tenant.limits);
    if let Some(d) = f.bool("disabled") {
        tenant.disabled = d;
    }
    f.finish()?;
    tenant.updated_at = crate::time::now_ms();
    let resp = reply::ok(vec![("tenant", view::tenant(&tenant))]);
    let tid = tenant.id.clone();
    c.commit_for(&tid, vec![Mutation::PutTenant(tenant)], resp, None)
}

/// `DELETE /api/v1/admin/tenants/:tenantId`: the tenant and everything it owns, in one
/// commit (`Mutation::DeleteTenant`); its keys and logins stop working at once, and the
/// next compaction removes its data from disk.
pub fn delete(c: &Call<'_>) -> ApiResult<Reply> {
    let id = c.param(0);
    if c.api.store.tenant(id).is_none() {
        return Err(ApiError::NotFound(format!("Tenant not found: {id}")));
    }
    let gone = Mutation::DeleteTenant { id: id.to_owned() };
    c.commit_for(id, vec![gone], crate::success(), None)
}
