//! Request bodies: the JSON checks (CONVENTIONS section 3), and each body's fields declared
//! once and read through that declaration.
//!
//! Responsible for: `415` for a body that is not JSON and `400 BAD_REQUEST` with the byte
//! offset for invalid UTF-8 or malformed JSON ([`json`]); the declaration of a body's fields
//! and bounds ([`Field`], [`Format`]), written as a `const` table next to the handler that
//! reads it; and [`Fields`], which reads a body through its table: declared fields strictly,
//! unknown ones ignored, every problem collected into one `VALIDATION_ERROR` with
//! `details[]`. The OpenAPI document's request schemas are made from the same tables
//! (`openapi::bodies`), so the documented bounds are the checked ones.
//! Not responsible for: what a handler does with the values, or rules that compare a value
//! with stored state or the clock (an unknown project, an expiry in the past).

mod fields;
mod formats;
mod patch;
mod spec;

pub use fields::Fields;
pub use formats::{
    is_agent_name, is_backup_name, is_origin, is_secret_name, is_tool_name, Format, AGENT_NAME,
    BACKUP_NAME, EMAIL, HTTP_URL, ORIGIN, SECRET_NAME, TOOL_NAME,
};
pub use patch::Patch;
pub use spec::{Field, Item, Presence, Rule, Text, Unit};

use halyard_engine::RequestHead;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// Parses a request body as a JSON value with serde_json. An empty body reads as `{}`.
///
/// serde_json is used for every route, imports included. simd-json measured faster on large
/// bodies (15.6 ms against 19.5 ms for a 2 MiB import, `benches/json.rs`) but slower on the
/// small bodies of the other routes, and fuzzing it against serde_json found documents it
/// accepts or reads differently (a number running into letters, a NUL ending the document,
/// a lone surrogate read as U+0000): one strict parser is worth more than 20 % on imports.
pub fn json(head: &RequestHead, body: &[u8]) -> ApiResult<Value> {
    if !check(head, body)? {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body).map_err(|e| {
        let at = byte_offset(body, e.line(), e.column());
        ApiError::BadRequest(format!("Malformed JSON at byte {at}: {e}"))
    })
}

/// The checks before parsing: `false` for an empty body (read as `{}`), `415` for a body
/// that is not JSON, `400` with the offset of invalid UTF-8.
fn check(head: &RequestHead, body: &[u8]) -> ApiResult<bool> {
    if body.is_empty() {
        return Ok(false);
    }
    if !is_json_type(head.header_str("content-type")) {
        return Err(ApiError::UnsupportedMediaType);
    }
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ApiError::BadRequest(format!(
            "Invalid UTF-8 at byte {}",
            e.valid_up_to()
        )));
    }
    Ok(true)
}

fn is_json_type(ct: Option<&str>) -> bool {
    let Some(ct) = ct else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || (mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Byte offset of serde_json's 1-based line and column.
fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = body
        .split(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(body.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn offsets() {
        assert_eq!(byte_offset(b"{\n  \"a\": x}", 2, 8), 9);
    }

    #[test]
    fn deep_nesting_and_bad_input_are_400() {
        let head = RequestHead::from_bytes(
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\r\n",
            halyard_engine::request::RequestId::new(b"t"),
            [127, 0, 0, 1].into(),
        )
        .unwrap()
        .unwrap();
        let deep = "[".repeat(100_000);
        assert!(matches!(
            json(&head, deep.as_bytes()),
            Err(ApiError::BadRequest(_))
        ));
        // Found by fuzzing simd-json (no longer used): a number run into letters is invalid.
        let bad = b"{\"n\":1277777777777777777777version77773157e309}";
        assert!(matches!(json(&head, bad), Err(ApiError::BadRequest(m)) if m.contains("byte")));
        assert_eq!(json(&head, b"{\"a\": [1, 2]}").unwrap()["a"][1], json!(2));
    }
}
