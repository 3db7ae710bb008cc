//! Operator routes: tenants (`/api/v1/admin/tenants`), root key only.

use halyard_engine::{Reply, Response};
use halyard_storage::{ids, Limits, Mutation, Tenant};

use super::Call;
use crate::body::Fields;
use crate::error::{ApiError, ApiResult};
use crate::reply;
use crate::view;

/// Reads `limits{...}` over `base`.
fn read_limits(f: &mut Fields<'_>, base: Limits) -> Limits {
    let mut limits = base;
    f.nested("limits", |l| {
        if let Some(v) = l.opt_u64("requestsPerSecond", 1, 1_000_000) {
            limits.requests_per_second = v as u32;
        }
        if let Some(v) = l.opt_u64("burst", 1, 10_000_000) {
            limits.burst = v as u32;
        }
        if let Some(v) = l.opt_u64("sessionMessagesPerMinute", 1, 1_000_000) {
            limits.session_messages_per_minute = v as u32;
        }
        if let Some(v) = l.opt_u64("maxConcurrentSessions", 1, 100_000_000) {
            limits.max_concurrent_sessions = v as u32;
        }
    });
    limits
}

/// `POST /api/v1/admin/tenants`.
pub fn create(c: &Call<'_>) -> ApiResult<Reply> {
    let body = c.body()?;
    let mut f = Fields::of(&body)?;
    let name = f.req_str("name", 128);
    let limits = read_limits(&mut f, Limits::default());
    let email = f.opt_str("ownerEmail", 254);
    let password = f.opt_str("ownerPassword", 1024);
    if email.is_some() && password.is_none_or(|p| p.chars().count() < 12) {
        f.fail(
            "ownerPassword",
            "is required with ownerEmail, at least 12 characters",
        );
    }
    if email.is_some_and(|e| !e.contains('@')) {
        f.fail("ownerEmail", "must be an email address");
    }
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
    let mut f = Fields::of(&body)?;
    if let Some(name) = f.opt_str("name", 128) {
        if name.is_empty() {
            f.fail("name", "must not be empty");
        }
        tenant.name = name.to_string();
    }
    tenant.limits = read_limits(&mut f, tenant.limits);
    if let Some(d) = f.opt_bool("disabled") {
        tenant.disabled = d;
    }
    f.finish()?;
    tenant.updated_at = crate::time::now_ms();
    let resp = reply::ok(vec![("tenant", view::tenant(&tenant))]);
    let tid = tenant.id.clone();
    c.commit_for(&tid, vec![Mutation::PutTenant(tenant)], resp, None)
}
