//! CORS for the widget and SDK routes (CONVENTIONS section 8).
//!
//! Responsible for: answering preflights only for origins registered on some public key
//! (never `*`), and telling which origin a real request may see its response from: the
//! request's own `Origin`, once its public key or SDK token allowed it. Other routes send
//! no CORS headers. Not responsible for: the origin check itself (see `auth`).

use halyard_engine::{Method, RequestHead, Response};
use halyard_storage::Backend;

use crate::auth::{Kind, Principal};
use crate::error::ApiError;

/// Request headers a widget may send.
pub const ALLOWED_HEADERS: &str =
    "Content-Type, X-Public-Key, X-SDK-Token, X-API-Key, Last-Event-ID";
/// Response headers a widget may read.
pub const EXPOSED: &str = "X-Request-Id, X-Stream-Id, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset";

/// Whether CORS applies to `path` at all: the SDK and chat routes, the deployment-scoped
/// runtime routes (a widget with `data-environment`) and feedback.
pub fn is_widget_path(path: &str) -> bool {
    path.starts_with("/api/v1/sdk/")
        || path.starts_with("/api/v1/chat/")
        || path.starts_with("/api/v1/project/")
        || path == "/api/v1/feedback"
}

/// The origin to allow on a real request's response, if any.
pub fn allowed_origin(head: &RequestHead, principal: Option<&Principal>) -> Option<String> {
    let p = principal?;
    if !matches!(p.kind, Kind::Sdk | Kind::PublicKey) || !is_widget_path(head.path()) {
        return None;
    }
    // auth already checked the origin against the key's or token's allowed origins.
    head.header_str("origin").map(|o| o.trim().to_string())
}

/// The methods `path` answers, as a `405` on it would list them in `Allow`.
fn allow(path: &str) -> String {
    match crate::route::resolve(Method::Options, path) {
        crate::route::Matched::WrongMethod(allow) => allow,
        _ => "OPTIONS".to_string(),
    }
}

/// The answer to an `OPTIONS` request on a known path.
pub fn preflight(store: &dyn Backend, head: &RequestHead) -> Response {
    let origin = head.header_str("origin").map(str::trim);
    if !is_widget_path(head.path()) {
        return Response::empty(204).with_header("Allow", allow(head.path()));
    }
    match origin {
        Some(o) if store.origin_registered(o) => Response::empty(204)
            .with_header("Access-Control-Allow-Origin", o.to_string())
            .with_header("Vary", "Origin")
            .with_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            .with_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
            .with_header("Access-Control-Max-Age", "600"),
        _ => ApiError::Forbidden("Origin is not allowed".into())
            .into_response()
            .with_header("Vary", "Origin"),
    }
}
