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
            ApiError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::RateLimited(..) => "RATE_LIMIT_EXCEEDED",
            ApiError::QueueFull(_) => "QUEUE_FULL",
            ApiError::Internal => "INTERNAL_ERROR",
            ApiError::Unavailable(_) => "SERVICE_UNAVAILABLE",
        }
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
