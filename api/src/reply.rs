//! Success envelopes and the finishing touches every response gets.
//!
//! Responsible for: `{"success": true, ...}` bodies (with `data` or a named key), the
//! paginated list shape of CONVENTIONS section 6, and [`Finish`], which adds the CORS
//! headers an allowed widget origin needs to every response, deferred ones included.
//! Not responsible for: errors (see `error`).

use halyard_engine::Response;
use halyard_storage::{Listed, Page};
use serde_json::{Map, Value};

/// A success body: `{"success": true}` plus the given top-level fields.
pub fn body(status: u16, fields: Vec<(&str, Value)>) -> Response {
    let mut obj = Map::with_capacity(fields.len() + 1);
    obj.insert("success".into(), Value::Bool(true));
    for (k, v) in fields {
        obj.insert(k.into(), v);
    }
    Response::json(
        status,
        serde_json::to_vec(&Value::Object(obj)).unwrap_or_default(),
    )
}

/// `200` with the given fields.
pub fn ok(fields: Vec<(&str, Value)>) -> Response {
    body(200, fields)
}

/// `201` with the given fields.
pub fn created(fields: Vec<(&str, Value)>) -> Response {
    body(201, fields)
}

/// A page of a list under `key`, with `pagination`.
pub fn list<T>(key: &str, listed: &Listed<T>, page: Page, view: impl Fn(&T) -> Value) -> Response {
    let items: Vec<Value> = listed.items.iter().map(view).collect();
    ok(vec![
        (key, Value::Array(items)),
        (
            "pagination",
            serde_json::json!({"total": listed.total, "limit": page.limit, "offset": page.offset}),
        ),
    ])
}

/// Headers every response of one request gets.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    /// The allowed widget origin to echo, if any.
    pub cors: Option<String>,
    /// The tenant bucket's state (authenticated requests).
    pub rate: Option<crate::admission::RateHeaders>,
}

impl Finish {
    /// Adds the finishing headers to `resp`.
    pub fn apply(&self, mut resp: Response) -> Response {
        if let Some(r) = &self.rate {
            resp = resp
                .with_header("X-RateLimit-Limit", r.limit.to_string())
                .with_header("X-RateLimit-Remaining", r.remaining.to_string())
                .with_header("X-RateLimit-Reset", r.reset.to_string());
        }
        match &self.cors {
            Some(origin) => resp
                .with_header("Access-Control-Allow-Origin", origin.clone())
                .with_header("Vary", "Origin")
                .with_header("Access-Control-Expose-Headers", crate::cors::EXPOSED),
            None => resp,
        }
    }
}
