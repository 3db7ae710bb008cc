//! JSON objects written straight into a response body.
//!
//! Responsible for: the views on hot list paths (sessions), where serde_json's serializer
//! spent more time in its generic writer than on the bytes. Keys here are static and need no
//! escaping, so a field is one copy of `,"key":` plus its value. Not responsible for: shapes
//! not fixed at compile time, or parsing (both are serde_json's).

use halyard_engine::response::write_json_string;
use serde_json::value::RawValue;

use crate::time::Iso;

/// A JSON object being written into a buffer; [`Object::end`] closes it.
#[derive(Debug)]
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Opens an object at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Writes `,"key":` (no comma before the first field).
    #[inline(always)]
    fn key(&mut self, key: &str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
        self.out.reserve(key.len() + 4);
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A string field, escaped.
    #[inline(always)]
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        write_json_string(self.out, value);
        self
    }

    /// An unsigned integer field.
    #[inline(always)]
    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// A timestamp field, RFC 3339 UTC with milliseconds.
    #[inline(always)]
    pub fn time(&mut self, key: &str, ms: u64) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(&Iso(ms).bytes());
        self.out.push(b'"');
        self
    }

    /// A field holding JSON text as it is, or `null` when there is none.
    #[inline(always)]
    pub fn raw(&mut self, key: &str, value: Option<&RawValue>) -> &mut Self {
        self.key(key);
        let text = value.map_or("null", RawValue::get);
        self.out.extend_from_slice(text.as_bytes());
        self
    }

    /// Closes the object.
    pub fn end(&mut self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_valid_json_with_every_kind_of_field() {
        let mut out = Vec::new();
        let raw: Box<RawValue> = serde_json::from_str(r#"{"a":[1,2]}"#).unwrap();
        Object::begin(&mut out)
            .str("name", "quote \" slash \\ nl \n ctl \u{1}")
            .u64("count", u64::MAX)
            .time("at", 1_795_922_190_123)
            .raw("meta", Some(&raw))
            .raw("none", None)
            .end();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["name"], "quote \" slash \\ nl \n ctl \u{1}");
        assert_eq!(v["count"], u64::MAX);
        assert_eq!(v["at"], "2026-11-29T03:16:30.123Z");
        assert_eq!(v["meta"]["a"][1], 2);
        assert!(v["none"].is_null());
    }

    #[test]
    fn an_empty_object_is_two_braces() {
        let mut out = Vec::new();
        Object::begin(&mut out).end();
        assert_eq!(out, b"{}");
    }
}
