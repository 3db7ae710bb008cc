//! Success envelopes and the finishing touches every response gets.
//!
//! Responsible for: `{"success": true, ...}` bodies (with `data` or a named key), the
//! paginated list shape of CONVENTIONS section 6, and [`Finish`], which adds the CORS
//! headers an allowed widget origin needs to every response, deferred ones included.
//! Not responsible for: errors (see `error`).

use halyard_engine::Response;
use halyard_storage::{Listed, Page};
use serde_json::{Map, Value};

use crate::emit::Object;

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

/// `{"success": true, "<key>": item}`, serialized straight from `item` (no `Value` tree:
/// the hot read paths use this).
pub fn ok_one<T: serde::Serialize>(key: &str, item: &T) -> Response {
    one_written(200, key, |out| ser(out, item))
}

/// `{"success": true, "<key>": item}` with `status`, the item written by `write`.
pub fn one_written(status: u16, key: &str, write: impl FnOnce(&mut Vec<u8>)) -> Response {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"success\":true,");
    push_key(&mut out, key);
    write(&mut out);
    out.push(b'}');
    Response::json(status, out)
}

/// Serializes `v` into `out` (serialization of the views cannot fail).
pub fn ser<V: serde::Serialize>(out: &mut Vec<u8>, v: &V) {
    let _ = serde_json::to_writer(out, v);
}

/// A page of a list under `key`, each item written straight from its view by `write`.
pub fn list_of<T>(
    key: &str,
    listed: &Listed<T>,
    page: Page,
    write: impl Fn(&mut Vec<u8>, &T),
) -> Response {
    list_written(key, page, 320 * listed.items.len(), |items| {
        for item in &listed.items {
            write(items.push(), item);
        }
        listed.total
    })
}

/// A page of a list under `key` whose items `fill` writes, one [`Items::push`] per item,
/// returning the total before paging: lists read straight out of storage use this, with no
/// copy of the items in between. `capacity` is a guess of the items' size in bytes.
pub fn list_written(
    key: &str,
    page: Page,
    capacity: usize,
    fill: impl FnOnce(&mut Items<'_>) -> usize,
) -> Response {
    let mut out = Vec::with_capacity(96 + capacity);
    out.extend_from_slice(b"{\"success\":true,");
    push_key(&mut out, key);
    out.push(b'[');
    let total = fill(&mut Items {
        out: &mut out,
        count: 0,
    });
    out.extend_from_slice(b"],\"pagination\":");
    Object::begin(&mut out)
        .u64("total", total as u64)
        .u64("limit", page.limit as u64)
        .u64("offset", page.offset as u64)
        .end();
    out.push(b'}');
    Response::json(200, out)
}

/// The items of a list being written: a JSON array's elements.
#[derive(Debug)]
pub struct Items<'a> {
    out: &'a mut Vec<u8>,
    count: usize,
}

impl Items<'_> {
    /// The buffer to write the next item into (after a comma, except for the first).
    pub fn push(&mut self) -> &mut Vec<u8> {
        if self.count > 0 {
            self.out.push(b',');
        }
        self.count += 1;
        self.out
    }
}

fn push_key(out: &mut Vec<u8>, key: &str) {
    halyard_engine::response::write_json_string(out, key);
    out.push(b':');
}

/// Headers every response of one request gets.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    /// The allowed widget origin to echo, if any.
    pub cors: Option<String>,
    /// The tenant bucket's state (authenticated requests).
    pub rate: Option<crate::admission::RateHeaders>,
    /// Errors take OpenAI's shape (the OpenAI-compatible routes).
    pub openai: bool,
}

impl Finish {
    /// `e` as this route answers errors, with the finishing headers.
    pub fn error(&self, e: crate::error::ApiError) -> Response {
        let resp = if self.openai {
            crate::chat::openai_compat::error_response(e)
        } else {
            e.into_response()
        };
        self.apply(resp)
    }

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
