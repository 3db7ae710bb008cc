//! The interface between the engine and the application that serves requests.
//!
//! Responsible for: the [`App`] trait (`admit` before the body, `handle` after it), the
//! [`Admission`] decision, the [`Request`] a handler receives and the [`Reply`] it returns,
//! and the [`Label`] the application puts on each request for the access log and the
//! per-route metrics (its route template and tenant: the engine knows neither).
//! Not responsible for: routing, authentication or JSON (all the application's).

use std::sync::Arc;

use crate::reply::{Gone, ReplyLink, Responder, StreamSender, StreamShared};
use crate::request::RequestHead;
use crate::response::Response;

/// An application served by the engine. One instance is shared by every loop.
pub trait App: Send + Sync + 'static {
    /// Per-request value produced by `admit` and handed to `handle` (route, principal, ...).
    type Context: Send + 'static;

    /// Decides on a request from its head alone, before any body byte is read. A rejection
    /// is written at once (and the connection closed when a body was announced); `100
    /// Continue` is sent only after acceptance.
    fn admit(&self, head: &RequestHead) -> Admission<Self::Context>;

    /// Serves an admitted request whose body has been read. A panic here becomes a `500`.
    fn handle(&self, request: Request<Self::Context>) -> Reply;

    /// Whether `/health/ready` answers `200` (storage open, replay finished).
    fn ready(&self) -> bool {
        true
    }

    /// Appends application metrics (Prometheus text format) to `/metrics`.
    fn write_metrics(&self, _out: &mut String) {}

    /// The route templates requests are labelled with (`/api/projects/:projectId/agents`),
    /// each once. Asked once when the server starts; [`Label::route`] indexes this list.
    /// Templates, never raw paths: the label set of `/metrics` stays bounded.
    fn route_labels(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Labels a request once `admit` decided: `context` is `Some` when it was accepted,
    /// `None` when it was rejected (a rejected request may still have a known route, such
    /// as a `401` on a valid path). Called on the loop for every request: keep it cheap.
    fn describe(&self, _head: &RequestHead, _context: Option<&Self::Context>) -> Label {
        Label::default()
    }
}

/// What the application says about a request: its route and tenant. Neither a path nor a
/// credential: the access log writes it as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Label {
    /// Index into [`App::route_labels`]; `None` for a request that matched no route.
    pub route: Option<u16>,
    /// The tenant the request was authenticated for, if any.
    pub tenant: Tenant,
}

/// Longest tenant id kept in a [`Label`].
pub const TENANT_MAX: usize = 48;

/// A tenant id held inline, so that labelling a request allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tenant {
    len: u8,
    bytes: [u8; TENANT_MAX],
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant {
            len: 0,
            bytes: [0; TENANT_MAX],
        }
    }
}

impl Tenant {
    /// `id`, truncated to [`TENANT_MAX`] bytes (at a character boundary).
    pub fn new(id: &str) -> Self {
        let mut len = id.len().min(TENANT_MAX);
        while !id.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; TENANT_MAX];
        bytes[..len].copy_from_slice(&id.as_bytes()[..len]);
        Tenant {
            len: len as u8,
            bytes,
        }
    }

    /// The id; empty when there is none.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// The id's bytes (UTF-8: cut at a character boundary); empty when there is none.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The id's bytes, zero-padded to [`TENANT_MAX`], and the id's length: a fixed-size copy
    /// (no `memcpy` call) for the access log.
    pub fn padded(&self) -> (&[u8; TENANT_MAX], usize) {
        (&self.bytes, usize::from(self.len))
    }

    /// Whether there is no tenant.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of [`App::admit`].
#[derive(Debug)]
pub enum Admission<C> {
    /// Refuse with this response.
    Reject(Response),
    /// Accept; the body may be at most `body_limit` bytes, else `413`.
    Accept {
        /// Largest body accepted, in bytes.
        body_limit: u64,
        /// Handed to [`App::handle`].
        context: C,
    },
}

/// An admitted request with its body.
#[derive(Debug)]
pub struct Request<C> {
    /// The head.
    pub head: RequestHead,
    /// The whole body (de-chunked).
    pub body: Vec<u8>,
    /// What `admit` produced.
    pub context: C,
    link: ReplyLink,
    /// The "client gone" signal of this request's deferred reply, made by the first
    /// [`Request::defer`]: every later call answers through the same one.
    deferred: std::sync::OnceLock<Arc<Gone>>,
}

impl<C> Request<C> {
    pub(crate) fn new(head: RequestHead, body: Vec<u8>, context: C, link: ReplyLink) -> Self {
        Request {
            head,
            body,
            context,
            link,
            deferred: std::sync::OnceLock::new(),
        }
    }

    /// Answers later: return the [`Reply`] now and complete the [`Responder`] from any
    /// thread. Later pipelined requests wait until it is completed.
    ///
    /// Deferring again (a handler run on another thread by an application that deferred
    /// first) gives a [`Responder`] for the same reply; the earlier one then steps aside
    /// through [`Responder::reply`].
    pub fn defer(&self) -> (Reply, Responder) {
        let gone = self.deferred.get_or_init(Arc::default).clone();
        (
            Reply::Later(Deferred(gone.clone())),
            Responder::new(self.link.clone(), gone),
        )
    }

    /// Starts `task` on the event loop serving this request (it gets
    /// [`Event::Start`](crate::task::Event::Start) there): work that waits on timers, other
    /// threads or upstream servers without holding a thread.
    pub fn spawn(&self, task: Box<dyn crate::task::Task>) {
        self.link.spawn(task);
    }

    /// Answers with a stream: `head` is written at once (its body is ignored) and the body
    /// continues with the frames pushed through the [`StreamSender`], at most `capacity`
    /// bytes buffered at a time.
    pub fn stream(&self, head: Response, capacity: usize) -> (Reply, StreamSender) {
        let shared = StreamShared::new(self.link.clone(), capacity);
        let sender = StreamSender::new(shared.clone());
        (Reply::Stream(StreamStart { head, shared }), sender)
    }
}

/// What a handler returns.
#[derive(Debug)]
pub enum Reply {
    /// The response, now.
    Now(Response),
    /// A response that a [`Responder`] will send (made by [`Request::defer`]).
    Later(Deferred),
    /// A stream (made by [`Request::stream`]).
    Stream(StreamStart),
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::Now(r)
    }
}

/// Marker of a deferred reply; only [`Request::defer`] makes one. It carries the "client
/// gone" signal the connection raises for the [`Responder`].
#[derive(Debug)]
pub struct Deferred(pub(crate) Arc<Gone>);

/// The start of a stream reply; only [`Request::stream`] makes one.
#[derive(Debug)]
pub struct StreamStart {
    pub(crate) head: Response,
    pub(crate) shared: Arc<StreamShared>,
}
