//! The outbound HTTP/1.1 client: what a task on an event loop uses to call an upstream
//! (a model provider, a tool).
//!
//! Responsible for: the sans-I/O pieces ([`url`], [`request`], [`response`], [`sse`]),
//! which tests and fuzzers drive directly; what a task asks for ([`Fetch`]) and hears back
//! ([`HttpEvent`], [`FetchError`]); and, on each loop, the connections that carry exchanges
//! (`driver`: connect, TLS, keep-alive pooling per origin, timeouts on the loop's wheel),
//! with DNS answered off the loops (`resolve`) and the platform's trust roots (`roots`).
//! Not responsible for: what the bytes mean (the task reads the body, e.g. with
//! [`sse::SseReader`]) or retry policy beyond a stale pooled connection (the task decides).

pub(crate) mod driver;
pub mod reach;
pub mod request;
pub(crate) mod resolve;
pub mod response;
pub mod roots;
pub mod sse;
pub mod url;

use std::fmt;
use std::io;
use std::time::Duration;

pub use reach::{Cidr, Reach};
pub use resolve::Resolver;
pub use response::{ResponseError, ResponseHead};
pub use url::Url;

/// One request for [`crate::task::Cx::fetch`].
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Method, e.g. `POST`.
    pub method: String,
    /// Where.
    pub url: Url,
    /// Headers besides `Host` and `Content-Length` (which the client writes).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Deadlines of the exchange.
    pub timeouts: FetchTimeouts,
    /// Largest response body accepted.
    pub max_body: u64,
    /// Which addresses it may connect to (checked on the resolved address, before the
    /// connect).
    pub reach: Reach,
}

/// Deadlines of one exchange, each ending it with [`FetchError::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchTimeouts {
    /// From the fetch to a connected socket (DNS, TCP and the TLS handshake included).
    pub connect: Duration,
    /// From the connection to the first byte of the response.
    pub first_byte: Duration,
    /// Longest silence once the response has begun.
    pub idle: Duration,
    /// The whole exchange.
    pub total: Duration,
}

impl Default for FetchTimeouts {
    fn default() -> Self {
        FetchTimeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}

/// Identifies one exchange of a loop (the outbound slot and a sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExchangeId(pub(crate) u64);

/// News of an exchange, in order: `Head`, any `Body`, then `End`; or `Failed` at any point.
#[derive(Debug)]
pub enum HttpEvent {
    /// The response head (interim `1xx` responses are skipped).
    Head(ResponseHead),
    /// Decoded body bytes.
    Body(Vec<u8>),
    /// The response is complete.
    End,
    /// The exchange failed; nothing follows.
    Failed(FetchError),
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// [`FetchTimeouts::connect`].
    Connect,
    /// [`FetchTimeouts::first_byte`].
    FirstByte,
    /// [`FetchTimeouts::idle`].
    Idle,
    /// [`FetchTimeouts::total`].
    Total,
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The request could not be written (bad header or method).
    Request(String),
    /// The host name did not resolve.
    Resolve(String),
    /// Nothing listens there.
    Refused,
    /// The peer reset the connection, or closed it before the response began.
    Reset,
    /// Another socket error.
    Io(io::ErrorKind),
    /// The TLS handshake or session failed.
    Tls(String),
    /// A deadline passed.
    Timeout(TimeoutKind),
    /// The response broke HTTP/1.1 (or a limit), or the connection closed early.
    Response(ResponseError),
    /// The server is shutting down.
    Shutdown,
    /// Every address of the host is one the exchange may not reach (see [`Reach`]).
    Forbidden(std::net::IpAddr),
}

impl FetchError {
    /// Whether the connection itself failed (refused, or reset): what a caller may retry
    /// while nothing of the answer has been used. A reset may come after the request reached
    /// the upstream (even after a response head), so a caller that must not repeat a request
    /// has to decide for itself.
    pub fn is_connect_failure(&self) -> bool {
        matches!(self, FetchError::Refused | FetchError::Reset)
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Request(m) => write!(f, "invalid request: {m}"),
            FetchError::Resolve(m) => write!(f, "cannot resolve host: {m}"),
            FetchError::Refused => f.write_str("connection refused"),
            FetchError::Reset => f.write_str("connection reset"),
            FetchError::Io(k) => write!(f, "connection failed: {k}"),
            FetchError::Tls(m) => write!(f, "TLS failed: {m}"),
            FetchError::Timeout(TimeoutKind::Connect) => f.write_str("timed out connecting"),
            FetchError::Timeout(TimeoutKind::FirstByte) => {
                f.write_str("timed out waiting for the response")
            }
            FetchError::Timeout(TimeoutKind::Idle) => f.write_str("the response stalled"),
            FetchError::Timeout(TimeoutKind::Total) => {
                f.write_str("the response exceeded its total time")
            }
            FetchError::Response(e) => write!(f, "bad response: {e}"),
            FetchError::Shutdown => f.write_str("the server is shutting down"),
            FetchError::Forbidden(ip) => {
                write!(f, "{ip} is not a public address, and not allowed")
            }
        }
    }
}

impl std::error::Error for FetchError {}

impl From<io::Error> for FetchError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => FetchError::Refused,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => FetchError::Reset,
            k => FetchError::Io(k),
        }
    }
}
