//! Query strings: parameters and pagination (CONVENTIONS section 6).
//!
//! Responsible for: reading `name=value` pairs (percent-decoded), and `limit`/`offset`
//! with their defaults, the clamp to 200 and `400` on negative or non-integer values.
//! Not responsible for: ordering (storage lists newest first).

use halyard_storage::Page;

use crate::error::{ApiError, ApiResult};

/// Default page size.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size; larger values are clamped.
pub const MAX_LIMIT: usize = 200;

/// The decoded value of parameter `name`, if present.
pub fn param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| decode(v))
}

fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The largest number a query parameter such as `limit` or `offset` may hold (18 digits).
pub const MAX_NUMBER: u64 = 999_999_999_999_999_999;

fn number(query: Option<&str>, name: &str, default: usize) -> ApiResult<usize> {
    let Some(v) = param(query, name) else {
        return Ok(default);
    };
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(format!(
            "Query parameter '{name}' must be a non-negative integer"
        )));
    }
    v.parse::<u64>()
        .ok()
        .filter(|n| *n <= MAX_NUMBER)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Query parameter '{name}' must be at most {MAX_NUMBER}"
            ))
        })
}

/// The page asked for by `limit` and `offset`.
pub fn page(query: Option<&str>) -> ApiResult<Page> {
    page_up_to(query, MAX_LIMIT)
}

/// [`page`] for a route whose pages may hold up to `max` items.
pub fn page_up_to(query: Option<&str>, max: usize) -> ApiResult<Page> {
    let limit = number(query, "limit", DEFAULT_LIMIT)?.min(max);
    let offset = number(query, "offset", 0)?;
    Ok(Page { offset, limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        assert_eq!(param(Some("a=1&b=x%20y+z"), "b").as_deref(), Some("x y z"));
        assert_eq!(param(Some("a"), "a").as_deref(), Some(""));
        assert_eq!(param(Some("a=%zz"), "a").as_deref(), Some("%zz"));
        assert_eq!(param(Some("a=%4"), "a").as_deref(), Some("%4"));
        assert_eq!(param(None, "a"), None);
    }

    #[test]
    fn pages() {
        assert_eq!(
            page(None).unwrap(),
            Page {
                offset: 0,
                limit: 50
            }
        );
        assert_eq!(
            page(Some("limit=500&offset=3")).unwrap(),
            Page {
                offset: 3,
                limit: 200
            }
        );
        assert_eq!(page(Some("limit=0")).unwrap().limit, 0);
        // The OpenAPI document's `maximum`: 18 digits are taken, a 19th is too many.
        assert_eq!(
            page(Some("offset=999999999999999999")).unwrap().offset,
            MAX_NUMBER as usize
        );
        match page(Some("offset=1000000000000000000")) {
            Err(ApiError::BadRequest(m)) => assert!(m.contains("at most"), "{m}"),
            other => panic!("{other:?}"),
        }
        for bad in [
            "limit=-1",
            "limit=1.5",
            "offset=x",
            "limit=",
            "limit=99999999999999999999",
        ] {
            assert!(page(Some(bad)).is_err(), "{bad}");
        }
    }
}
