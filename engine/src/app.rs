//! The interface between the engine and the application that serves requests.
//!
//! Responsible for: the [`App`] trait (`admit` before the body, `handle` after it), the
//! [`Admission`] decision, the [`Request`] a handler receives and the [`Reply`] it returns.
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
}

impl<C> Request<C> {
    pub(crate) fn new(head: RequestHead, body: Vec<u8>, context: C, link: ReplyLink) -> Self {
        Request {
            head,
            body,
            context,
            link,
        }
    }

    /// Answers later: return the [`Reply`] now and complete the [`Responder`] from any
    /// thread. Later pipelined requests wait until it is completed.
    pub fn defer(&self) -> (Reply, Responder) {
        let gone = Arc::new(Gone::default());
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
