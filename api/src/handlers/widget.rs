//! `GET /sdk/widget.js`: the embeddable chat widget, compiled into the binary.
//!
//! Responsible for: serving `sdk/widget/widget.js` with a long cache lifetime and a strong
//! `ETag` derived from its content (so a new build is a new tag), answering a matching
//! `If-None-Match` with `304`, and letting any page load it as a module script (module
//! scripts are fetched in CORS mode: the file is public and sent without credentials, so
//! `Access-Control-Allow-Origin: *` is safe here). Not responsible for: what the widget
//! does (see the file itself and README, "Web widget").

use std::sync::OnceLock;

use halyard_engine::{Body, RequestHead, Response};

/// The widget source, embedded at build time.
pub const WIDGET_JS: &str = include_str!("../../../sdk/widget/widget.js");

/// `Content-Type` of the widget.
pub const CONTENT_TYPE: &str = "text/javascript; charset=utf-8";

/// `Cache-Control` of the widget: one day, shared caches allowed.
pub const CACHE_CONTROL: &str = "public, max-age=86400";

/// The strong entity tag of the embedded widget: 128 bits of SHA-256 of its bytes.
pub fn etag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let digest = crate::tokens::digest(WIDGET_JS);
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{hex}\"")
    })
}

/// Whether an `If-None-Match` value matches `tag` (weak comparison, RFC 9110 13.1.2).
fn none_match(value: &str, tag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_string();
    value.trim() == "*" || value.split(',').any(|t| opaque(t) == opaque(tag))
}

/// The response to `GET` or `HEAD /sdk/widget.js` (the engine drops the body of a `HEAD`).
pub fn response(head: &RequestHead) -> Response {
    let tag = etag();
    let fresh = head
        .headers_named("if-none-match")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .any(|v| none_match(v, tag));
    let resp = if fresh {
        Response::empty(304)
    } else {
        Response {
            status: 200,
            content_type: Some(CONTENT_TYPE),
            headers: Vec::new(),
            body: Body::Static(WIDGET_JS.as_bytes()),
        }
    };
    resp.with_header("ETag", tag)
        .with_header("Cache-Control", CACHE_CONTROL)
        .with_header("Access-Control-Allow-Origin", "*")
        .with_header("Cross-Origin-Resource-Policy", "cross-origin")
        .with_header("X-Content-Type-Options", "nosniff")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_quoted_hex_of_the_content() {
        let t = etag();
        assert_eq!(t.len(), 34);
        assert!(t.starts_with('"') && t.ends_with('"'));
        assert!(t[1..33].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(t, etag());
    }

    #[test]
    fn if_none_match_comparison() {
        let t = "\"abc\"";
        assert!(none_match("\"abc\"", t));
        assert!(none_match("W/\"abc\"", t));
        assert!(none_match("\"x\", \"abc\"", t));
        assert!(none_match("*", t));
        assert!(!none_match("\"abd\"", t));
        assert!(!none_match("", t));
    }

    #[test]
    fn the_widget_never_parses_html() {
        // Agent output must reach the DOM as text only.
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!WIDGET_JS.contains(banned), "widget.js uses {banned}");
        }
        assert!(WIDGET_JS.len() < 32 * 1024, "widget.js should stay small");
    }
}
