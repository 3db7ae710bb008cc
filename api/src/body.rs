//! Request bodies: JSON checks (CONVENTIONS section 3) and field validation.
//!
//! Responsible for: `415` for a body that is not JSON, `400 BAD_REQUEST` with the byte
//! offset for invalid UTF-8 or malformed JSON, and [`Fields`], which reads known fields
//! strictly, ignores unknown ones, and collects every problem into one `VALIDATION_ERROR`
//! with `details[]`. Not responsible for: what a handler does with the values.

use halyard_engine::RequestHead;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult, FieldError};

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

/// A field that may be absent, `null`, or set (PATCH semantics: `null` clears).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patch<T> {
    /// Not in the body: leave unchanged.
    Absent,
    /// `null`: clear.
    Null,
    /// A value.
    Set(T),
}

impl<T> Patch<T> {
    /// Maps the value of `Set`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Patch::Absent => Patch::Absent,
            Patch::Null => Patch::Null,
            Patch::Set(v) => Patch::Set(f(v)),
        }
    }
}

impl<T: Into<String>> Patch<T> {
    /// Applies the patch to an optional text field.
    pub fn apply_to(self, field: &mut Option<String>) {
        match self {
            Patch::Absent => {}
            Patch::Null => *field = None,
            Patch::Set(v) => *field = Some(v.into()),
        }
    }
}

/// Reads the fields of one JSON object, collecting validation problems.
#[derive(Debug)]
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    prefix: String,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    /// The fields of `v`, which must be an object.
    pub fn of(v: &'a Value) -> ApiResult<Fields<'a>> {
        match v {
            Value::Object(obj) => Ok(Fields {
                obj,
                prefix: String::new(),
                errors: Vec::new(),
            }),
            _ => Err(ApiError::invalid("body", "must be a JSON object")),
        }
    }

    /// Records a problem with `field`.
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: format!("{}{field}", self.prefix),
            message: message.into(),
        });
    }

    /// The raw value of `field`, if present and not null.
    pub fn raw(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    /// A required non-empty string of at most `max` characters.
    pub fn req_str(&mut self, field: &str, max: usize) -> Option<&'a str> {
        match self.opt_str(field, max) {
            Some(s) if !s.is_empty() => Some(s),
            Some(_) => {
                self.fail(field, "must not be empty");
                None
            }
            None if self.obj.contains_key(field) && !self.obj[field].is_null() => None,
            None => {
                self.fail(field, "is required");
                None
            }
        }
    }

    /// An optional string of at most `max` characters.
    pub fn opt_str(&mut self, field: &str, max: usize) -> Option<&'a str> {
        match self.raw(field)? {
            Value::String(s) if s.chars().count() <= max => Some(s),
            Value::String(_) => {
                self.fail(field, format!("must be at most {max} characters"));
                None
            }
            _ => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    /// A string that may be absent, null or set.
    pub fn patch_str(&mut self, field: &str, max: usize) -> Patch<&'a str> {
        match self.obj.get(field) {
            None => Patch::Absent,
            Some(Value::Null) => Patch::Null,
            Some(_) => self.opt_str(field, max).map_or(Patch::Absent, Patch::Set),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&mut self, field: &str) -> Option<bool> {
        match self.raw(field)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.fail(field, "must be a boolean");
                None
            }
        }
    }

    /// An optional whole number in `min..=max`.
    pub fn opt_u64(&mut self, field: &str, min: u64, max: u64) -> Option<u64> {
        let v = self.raw(field)?;
        match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.fail(field, format!("must be a whole number from {min} to {max}"));
                None
            }
        }
    }

    /// An optional number in `min..=max`.
    pub fn opt_f64(&mut self, field: &str, min: f64, max: f64) -> Option<f64> {
        let v = self.raw(field)?;
        match v.as_f64() {
            Some(n) if n >= min && n <= max => Some(n),
            _ => {
                self.fail(field, format!("must be a number from {min} to {max}"));
                None
            }
        }
    }

    /// An optional array of strings, each at most `max` characters, at most `max_items`.
    pub fn opt_strings(
        &mut self,
        field: &str,
        max: usize,
        max_items: usize,
    ) -> Option<Vec<String>> {
        let Value::Array(items) = self.raw(field)? else {
            self.fail(field, "must be an array of strings");
            return None;
        };
        if items.len() > max_items {
            self.fail(field, format!("must have at most {max_items} items"));
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) if !s.is_empty() && s.chars().count() <= max => out.push(s.to_string()),
                _ => {
                    self.fail(
                        &format!("{field}[{i}]"),
                        format!("must be a non-empty string of at most {max} characters"),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    /// An optional object, kept as JSON text (metadata).
    pub fn opt_object_text(&mut self, field: &str, max_bytes: usize) -> Option<String> {
        match self.raw(field)? {
            v @ Value::Object(_) => {
                let text = v.to_string();
                if text.len() > max_bytes {
                    self.fail(field, format!("must be at most {max_bytes} bytes"));
                    return None;
                }
                Some(text)
            }
            _ => {
                self.fail(field, "must be an object");
                None
            }
        }
    }

    /// An optional RFC 3339 timestamp, in milliseconds.
    pub fn opt_time(&mut self, field: &str) -> Option<u64> {
        let s = self.opt_str(field, 64)?;
        let parsed = crate::time::parse(s);
        if parsed.is_none() {
            self.fail(field, "must be an RFC 3339 date-time");
        }
        parsed
    }

    /// Fields of a nested object, validated into the same error list.
    pub fn nested(&mut self, field: &str, f: impl FnOnce(&mut Fields<'a>)) {
        match self.raw(field) {
            None => {}
            Some(Value::Object(obj)) => {
                let mut inner = Fields {
                    obj,
                    prefix: format!("{}{field}.", self.prefix),
                    errors: std::mem::take(&mut self.errors),
                };
                f(&mut inner);
                self.errors = inner.errors;
            }
            Some(_) => self.fail(field, "must be an object"),
        }
    }

    /// `Ok` if every field read was valid, else one `VALIDATION_ERROR` with all problems.
    pub fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

/// Whether `s` matches `[a-z0-9-]{1,64}` (agent names).
pub fn is_agent_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `s` matches `[A-Z0-9_]{1,128}` (secret names).
pub fn is_secret_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `s` is an origin: `scheme://host[:port]` with no path.
pub fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' '])
        && rest.len() <= 253
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn offsets_and_collected_errors() {
        assert_eq!(byte_offset(b"{\n  \"a\": x}", 2, 8), 9);
        let v = json!({"name": "", "n": 5, "m": {"x": 1}, "extra": true});
        let mut f = Fields::of(&v).unwrap();
        assert_eq!(f.req_str("name", 10), None);
        assert_eq!(f.req_str("missing", 10), None);
        assert_eq!(f.opt_str("n", 10), None);
        f.nested("m", |m| {
            m.opt_str("x", 5);
        });
        match f.finish() {
            Err(ApiError::Validation(d)) => {
                let fields: Vec<_> = d.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["name", "missing", "n", "m.x"]);
            }
            other => panic!("{other:?}"),
        }
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

    #[test]
    fn patterns() {
        assert!(is_agent_name("my-agent-2"));
        assert!(!is_agent_name("My"));
        assert!(is_secret_name("OPENAI_API_KEY"));
        assert!(!is_secret_name("lower"));
        assert!(is_origin("https://a.example:8443"));
        assert!(!is_origin("https://a.example/path"));
        assert!(!is_origin("ftp://a"));
    }
}
