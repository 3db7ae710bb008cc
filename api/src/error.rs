//! API errors and their one envelope (CONVENTIONS section 4).
//!
//! Responsible for: every error a handler or admission can return, with its status, code
//! and message, rendered as `{"success":false,"error":{...}}`. Messages never carry
//! internals. Not responsible for: engine-level errors (parse, limits), which the engine
//! renders in the same envelope.

use std::fmt;

use halyard_engine::Response;
use halyard_storage::StoreError;

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's JSON path (`name`, `model.provider`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: unparsable request or bad query parameter.
    BadRequest(String),
    /// 400: a well-formed body with invalid fields.
    Validation(Vec<FieldError>),
    /// 401: no valid credential.
    Unauthorized(&'static str),
    /// 403: valid credential, not allowed.
    Forbidden(String),
    /// 404: no such resource, or another tenant's.
    NotFound(String),
    /// 405: known path, wrong method.
    MethodNotAllowed(String),
    /// 409: a duplicate.
    Conflict(String),
    /// 410: a session of a retired deployment.
    Gone(String),
    /// 413: body over the route's limit.
    TooLarge(u64),
    /// 415: body is not JSON.
    UnsupportedMediaType,
    /// 429: a rate or concurrency limit; retry after this many milliseconds.
    RateLimited(String, u64),
    /// 429: the agent execution queue is full.
    QueueFull(u64),
    /// 500: a bug; the message is generic.
    Internal,
    /// 503: a backend is offline or not configured, or the server is draining.
    Unavailable(String),
}

impl ApiError {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) | ApiError::Validation(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Conflict(_) => 409,
            ApiError::Gone(_) => 410,
            ApiError::TooLarge(_) => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::RateLimited(..) | ApiError::QueueFull(_) => 429,
            ApiError::Internal => 500,
            ApiError::Unavailable(_) => 503,
        }
    }

    /// The `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BAD_REQUEST",
            ApiError::Validation(_) => "VALIDATION_ERROR",
            ApiError::Unauthorized(_) => "UNAUTHORIZED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::Gone(_) => "GONE",
            ApiError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::RateLimited(..) => "RATE_LIMIT_EXCEEDED",
            ApiError::QueueFull(_) => "QUEUE_FULL",
            ApiError::Internal => "INTERNAL_ERROR",
            ApiError::Unavailable(_) => "SERVICE_UNAVAILABLE",
        }
    }

    /// One error of every kind with what it means, in status order: the error codes the
    /// reference (`docs`) lists. A test matches every variant, so a new one must be added.
    pub fn catalog() -> Vec<(ApiError, &'static str)> {
        vec![
            (
                ApiError::BadRequest(String::new()),
                "unparsable request: malformed JSON or invalid UTF-8 (the message names the byte offset), a bad query parameter or `Last-Event-ID`",
            ),
            (
                ApiError::Validation(Vec::new()),
                "a well-formed body with invalid fields; `error.details[]` lists each `{field, message}`",
            ),
            (
                ApiError::Unauthorized(""),
                "no valid credential: missing, malformed, unknown, expired or revoked",
            ),
            (
                ApiError::Forbidden(String::new()),
                "a valid credential that may not do this: a missing scope, a disallowed `Origin`, a disabled tenant",
            ),
            (
                ApiError::NotFound(String::new()),
                "no such route or resource, or another tenant's (the same response)",
            ),
            (
                ApiError::MethodNotAllowed(String::new()),
                "a known path with another method; `Allow` lists the methods",
            ),
            (
                ApiError::Conflict(String::new()),
                "a duplicate (name, slug, email), an ended session, an import already running",
            ),
            (
                ApiError::Gone(String::new()),
                "a turn on a session of a retired deployment: open a new session",
            ),
            (
                ApiError::TooLarge(0),
                "a body over the route's limit, decided before it is read (the connection then closes)",
            ),
            (
                ApiError::UnsupportedMediaType,
                "a non-empty body whose `Content-Type` is not `application/json` or `*/*+json`",
            ),
            (
                ApiError::RateLimited(String::new(), 0),
                "a rate or concurrency limit; `Retry-After` and `retryAfterMs` say when to retry",
            ),
            (
                ApiError::QueueFull(0),
                "`--max-running-turns` agent turns are running; `Retry-After` and `retryAfterMs` as above",
            ),
            (
                ApiError::Internal,
                "a bug (a handler panicked, or stored data failed a check); the message is generic",
            ),
            (
                ApiError::Unavailable(String::new()),
                "a backend (model provider, storage) offline or not configured, or the server shutting down",
            ),
        ]
    }

    /// A one-field validation error.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// The response: the envelope, plus `details`, `retryAfterMs`/`Retry-After` or `Allow`.
    pub fn into_response(self) -> Response {
        let mut error = serde_json::json!({"code": self.code(), "message": self.to_string()});
        if let ApiError::Validation(details) = &self {
            error["details"] = details
                .iter()
                .map(|d| serde_json::json!({"field": d.field, "message": d.message}))
                .collect();
        }
        let mut body = serde_json::json!({"success": false, "error": error});
        let retry = match &self {
            ApiError::RateLimited(_, ms) | ApiError::QueueFull(ms) => Some(*ms),
            _ => None,
        };
        if let Some(ms) = retry {
            body["retryAfterMs"] = ms.into();
        }
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = Response::json(self.status(), bytes);
        if let Some(ms) = retry {
            resp = resp.with_header("Retry-After", ms.div_ceil(1000).max(1).to_string());
        }
        if let ApiError::MethodNotAllowed(allow) = self {
            resp = resp.with_header("Allow", allow);
        }
        resp
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Gone(m)
            | ApiError::RateLimited(m, _)
            | ApiError::Unavailable(m) => f.write_str(m),
            ApiError::Validation(d) => match d.first() {
                Some(first) => write!(f, "Invalid field '{}': {}", first.field, first.message),
                None => f.write_str("Invalid request body"),
            },
            ApiError::Unauthorized(m) => f.write_str(m),
            ApiError::MethodNotAllowed(_) => f.write_str("Method not allowed"),
            ApiError::TooLarge(limit) => {
                write!(f, "Request body exceeds the limit of {limit} bytes")
            }
            ApiError::UnsupportedMediaType => f.write_str("Request body must be application/json"),
            ApiError::QueueFull(_) => f.write_str("Agent execution queue is full"),
            ApiError::Internal => f.write_str("Internal server error"),
        }
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { what, name } => {
                ApiError::Conflict(format!("{} already exists: {name}", capitalize(what)))
            }
            StoreError::NotFound { what, id } => {
                ApiError::NotFound(format!("{} not found: {id}", capitalize(what)))
            }
            StoreError::Invalid(_) => ApiError::Internal,
            _ => ApiError::Unavailable("Storage is unavailable".into()),
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Each variant's place in [`ApiError::catalog`]; a new variant does not compile here
    /// until it is given one (and added to the catalog, or the test below fails).
    fn place(e: &ApiError) -> usize {
        match e {
            ApiError::BadRequest(_) => 0,
            ApiError::Validation(_) => 1,
            ApiError::Unauthorized(_) => 2,
            ApiError::Forbidden(_) => 3,
            ApiError::NotFound(_) => 4,
            ApiError::MethodNotAllowed(_) => 5,
            ApiError::Conflict(_) => 6,
            ApiError::Gone(_) => 7,
            ApiError::TooLarge(_) => 8,
            ApiError::UnsupportedMediaType => 9,
            ApiError::RateLimited(..) => 10,
            ApiError::QueueFull(_) => 11,
            ApiError::Internal => 12,
            ApiError::Unavailable(_) => 13,
        }
    }

    /// The number of arms of [`place`].
    const VARIANTS: usize = 14;

    #[test]
    fn the_catalog_holds_every_variant_once_in_status_order() {
        let catalog = ApiError::catalog();
        let places: Vec<usize> = catalog.iter().map(|(e, _)| place(e)).collect();
        assert_eq!(places, (0..VARIANTS).collect::<Vec<_>>());
        let statuses: Vec<u16> = catalog.iter().map(|(e, _)| e.status()).collect();
        assert!(statuses.windows(2).all(|w| w[0] <= w[1]), "{statuses:?}");
    }
}
