//! The HTTP/1.1 connection state machine, free of sockets and clocks.
//!
//! Responsible for: everything one connection does between bytes in and bytes out: parsing
//! pipelined heads, admission before the body, reading length-delimited and chunked bodies
//! against the admitted limit, `100 Continue`, calling the handler (a panic becomes a
//! `500`), writing responses in request order, deferred replies, stream replies with
//! heartbeats, keep-alive and close decisions, its deadlines (header read, idle, stalled
//! writes), and the accounting of each exchange (bytes in and out, latency, and the label
//! the application gives it: counted per route in the loop's stats and handed to the access
//! log when the exchange ends, a stream's when it closes). The loop passes `now` in (the one clock: request heads carry `Env::now`); tests
//! and fuzzers drive a [`Conn`] directly. Not responsible for: reading or writing sockets,
//! timers (the loop asks [`Conn::deadline`] and calls [`Conn::on_timer`]), buffer pooling,
//! or any route (the operations routes wrap the application, see `builtin`).

use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::access_log::{Entry, LogSink};
use crate::app::{Admission, App, Label, Reply, Request, StreamStart};
use crate::chunked::ChunkedDecoder;
use crate::metrics::LoopStats;
use crate::parse::{header_slots, parse, Framing, Head, ParseError, Version};
use crate::reply::{Gone, Letter, Mailbox, ReplyLink, StreamShared, Wake};
use crate::request::{Method, RequestHead, RequestId, RequestIds};
use crate::response::{
    write_chunk, write_head, write_response, HeadContext, Length, Response, LAST_CHUNK,
};

/// Output above this many unwritten bytes pauses parsing and stream pulls until it drains.
pub const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Unprocessed input above this many bytes pauses reading.
pub const READ_HIGH_WATER: usize = 64 * 1024;
/// The comment frame written on open streams by the heartbeat timer.
pub const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// Timeouts of a connection, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the first byte of a head to its end; past it, `408` and close.
    pub header_ms: u64,
    /// Keep-alive idle time, body read time and stalled-write time; past it, close.
    pub idle_ms: u64,
}

/// What a connection borrows from its loop for one call.
pub struct Env<'a, A: App> {
    /// The application.
    pub app: &'a A,
    /// The cached `Date` value.
    pub date: &'a [u8],
    /// Where deferred replies and stream notices for this loop are posted.
    pub mailbox: &'a Arc<Mailbox>,
    /// This connection's token (slab key and generation).
    pub token: u64,
    /// The loop's request id generator.
    pub ids: &'a mut RequestIds,
    /// The loop's counters.
    pub stats: &'a LoopStats,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Milliseconds on the loop's monotonic clock.
    pub now_ms: u64,
    /// Microseconds on the same clock (latency figures).
    pub now_us: u64,
    /// The same moment as an `Instant`, stamped on request heads (the application's own
    /// clocks, such as rate limiters, then need no clock read per request).
    pub now: std::time::Instant,
    /// The server is shutting down: no keep-alive.
    pub draining: bool,
    /// Where finished exchanges are logged, when the access log is on.
    pub access_log: Option<&'a mut LogSink>,
}

/// The request currently being answered.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    id: RequestId,
    keep_alive: bool,
    http10: bool,
    head_only: bool,
    started_us: u64,
    method: Method,
    label: Label,
    bytes_in: u64,
    bytes_out: u64,
    /// Status and latency of the response head (a stream is logged when it ends).
    status: u16,
    latency_us: u64,
    /// When the stream reply opened.
    stream_since_us: u64,
}

impl Exchange {
    /// An exchange with no request behind it yet (`id`), started at `started_us`.
    fn blank(id: RequestId, started_us: u64) -> Self {
        Exchange {
            id,
            keep_alive: true,
            http10: false,
            head_only: false,
            started_us,
            method: Method::Other,
            label: Label::default(),
            bytes_in: 0,
            bytes_out: 0,
            status: 0,
            latency_us: 0,
            stream_since_us: 0,
        }
    }
}

enum BodyLeft {
    Length(u64),
    Chunked(ChunkedDecoder),
}

struct BodyState<C> {
    head: RequestHead,
    context: C,
    body: Vec<u8>,
    left: BodyLeft,
    limit: u64,
    since_ms: u64,
}

enum State<C> {
    /// Waiting for (or parsing) a request head.
    Head,
    /// Reading an admitted request's body.
    Body(Box<BodyState<C>>),
    /// The handler deferred; waiting for its `Responder` (which shares the gone signal).
    Waiting(Arc<Gone>),
    /// A stream reply is open.
    Streaming {
        shared: Arc<StreamShared>,
        chunked: bool,
    },
    /// No further request is read; close once the output is written.
    Closing,
}

/// What the head at the front of the input turned out to be.
enum Step {
    Fail(ParseError),
    /// The owned head, its framing, whether it expects `100 Continue`, and its exchange.
    Admit(Box<RequestHead>, Framing, bool, Exchange),
}

/// One HTTP/1.1 connection, driven by bytes and events.
pub struct Conn<A: App> {
    peer: IpAddr,
    input: Vec<u8>,
    in_pos: usize,
    output: Vec<u8>,
    out_pos: usize,
    state: State<A::Context>,
    ex: Exchange,
    seq: u64,
    head_since: Option<u64>,
    last_active_ms: u64,
    peer_closed: bool,
    abort: bool,
}

impl<A: App> Conn<A> {
    /// A new connection from `peer`, accepted at `now_ms`.
    pub fn new(peer: IpAddr, now_ms: u64) -> Self {
        Conn {
            peer,
            input: Vec::new(),
            in_pos: 0,
            output: Vec::new(),
            out_pos: 0,
            state: State::Head,
            ex: Exchange::blank(RequestId::new(b""), 0),
            seq: 0,
            head_since: None,
            last_active_ms: now_ms,
            peer_closed: false,
            abort: false,
        }
    }

    // ---- bytes in ----

    /// Appends bytes read from the peer and processes them.
    pub fn receive(&mut self, bytes: &[u8], env: &mut Env<'_, A>) {
        if bytes.is_empty() {
            return;
        }
        self.input.extend_from_slice(bytes);
        self.last_active_ms = env.now_ms;
        self.advance(env);
    }

    /// The peer closed its side: finish what can be finished, then close.
    pub fn on_eof(&mut self, env: &mut Env<'_, A>) {
        self.peer_closed = true;
        // Whole requests already buffered are still answered (see `after_eof`).
        self.advance(env);
        match &self.state {
            State::Waiting(gone) => {
                // As nginx does for proxied requests: a client that closed its side while
                // waiting is taken to be gone (its producer may stop); the reply is still
                // written if it comes.
                gone.signal();
                self.ex.keep_alive = false;
            }
            State::Streaming { .. } => self.abort = true,
            State::Head | State::Body(_) | State::Closing => {}
        }
    }

    /// Whether the loop should read more from the socket now.
    pub fn wants_read(&self) -> bool {
        let buffered = self.input.len() - self.in_pos;
        match self.state {
            _ if self.abort => false,
            State::Head | State::Body(_) => {
                self.pending_output() <= WRITE_HIGH_WATER && buffered < READ_HIGH_WATER
            }
            // Keep reading to notice a client that goes away.
            State::Waiting(_) | State::Streaming { .. } => buffered < READ_HIGH_WATER,
            State::Closing => false,
        }
    }

    // ---- bytes out ----

    /// Bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.output[self.out_pos..]
    }

    /// Number of bytes waiting to be written.
    pub fn pending_output(&self) -> usize {
        self.output.len() - self.out_pos
    }

    /// Records that `n` bytes of [`output`](Self::output) were written, and resumes work
    /// paused by the high-water mark.
    pub fn consumed(&mut self, n: usize, env: &mut Env<'_, A>) {
        if n == 0 {
            return;
        }
        self.out_pos += n;
        self.last_active_ms = env.now_ms;
        if self.out_pos >= self.output.len() {
            self.output.clear();
            self.out_pos = 0;
        }
        if self.pending_output() <= WRITE_HIGH_WATER {
            // Work paused by the high-water mark resumes: stream frames, then requests.
            self.pump_stream(env);
            self.advance(env);
        }
    }

    /// True when the connection should be closed (everything written, or aborted).
    pub fn is_done(&self) -> bool {
        self.abort || (matches!(self.state, State::Closing) && self.pending_output() == 0)
    }

    /// True when the connection was cut short (error, timeout, client gone): close at once.
    pub fn is_aborted(&self) -> bool {
        self.abort
    }

    /// True once the peer closed its sending side.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// True while a stream reply is open (the loop keeps a heartbeat timer for it).
    pub fn is_streaming(&self) -> bool {
        matches!(self.state, State::Streaming { .. })
    }

    /// The buffers, for the loop to lend an empty connection its pooled buffers and take
    /// them back when they are empty again. Only buffers with nothing pending may be swapped.
    pub fn buffers_mut(&mut self) -> (&mut Vec<u8>, &mut Vec<u8>) {
        (&mut self.input, &mut self.output)
    }

    // ---- events ----

    /// A deferred reply completed or a stream has news.
    pub fn on_letter(&mut self, letter: Letter, env: &mut Env<'_, A>) {
        if letter.seq != self.seq {
            return;
        }
        match (letter.wake, &self.state) {
            (Wake::Complete(resp), State::Waiting(_)) => {
                self.respond(resp, env);
            }
            (Wake::Stream, State::Streaming { .. }) => self.pump_stream(env),
            (Wake::Start(start), State::Waiting(_)) => self.start_stream(start, env),
            _ => return,
        }
        // The exchange may have ended: go on with the requests behind it.
        self.advance(env);
    }

    /// Writes a heartbeat comment if a stream is open.
    pub fn heartbeat(&mut self) {
        if let State::Streaming { chunked, .. } = self.state {
            let before = self.output.len();
            self.push_stream_bytes(HEARTBEAT, chunked);
            self.ex.bytes_out += (self.output.len() - before) as u64;
        }
    }

    /// When the connection next needs [`on_timer`](Self::on_timer), in loop milliseconds.
    pub fn deadline(&self, t: Timeouts) -> Option<u64> {
        if self.abort {
            return None;
        }
        if self.pending_output() > 0 {
            return Some(self.last_active_ms + t.idle_ms);
        }
        match &self.state {
            State::Head => Some(match self.head_since {
                Some(since) => since + t.header_ms,
                None => self.last_active_ms + t.idle_ms,
            }),
            State::Body(b) => Some(b.since_ms + t.idle_ms),
            State::Closing => Some(self.last_active_ms + t.idle_ms),
            State::Waiting(_) | State::Streaming { .. } => None,
        }
    }

    /// Applies an expired deadline: `408` for a late head or body, else a silent close.
    pub fn on_timer(&mut self, env: &mut Env<'_, A>) {
        match self.deadline(env.timeouts) {
            Some(d) if env.now_ms >= d => {}
            _ => return,
        }
        env.stats.timeout();
        let idle_output = self.pending_output() == 0;
        match self.state {
            // A late body belongs to an admitted exchange: answered under its request id.
            State::Body(_) if idle_output => {
                self.refuse(request_timeout(), env);
            }
            State::Head if idle_output && self.head_since.is_some() => {
                let partial = (self.input.len() - self.in_pos) as u64;
                self.fail(request_timeout(), partial, env);
            }
            _ => {
                self.abort = true;
                return;
            }
        }
        self.in_pos = self.input.len();
    }

    /// The server is shutting down: finish the request in flight without keep-alive, end
    /// streams, close idle connections.
    pub fn begin_shutdown(&mut self, env: &mut Env<'_, A>) {
        self.ex.keep_alive = false;
        match self.state {
            State::Head => self.state = State::Closing,
            State::Streaming { .. } => {
                // Frames queued before the shutdown (a producer's last words) go out first.
                self.pump_stream(env);
                self.end_stream(true, env);
            }
            State::Body(_) | State::Waiting(_) | State::Closing => {}
        }
    }

    /// The loop is dropping the connection: tell a stream producer or a deferred reply's
    /// producer that its client is gone.
    pub fn on_close(&mut self, env: &mut Env<'_, A>) {
        match &self.state {
            State::Streaming { shared, .. } => {
                shared.set_gone();
                env.stats.stream_opened(false);
                self.log_stream_end(env);
            }
            State::Waiting(gone) => gone.signal(),
            _ => {}
        }
        self.state = State::Closing;
        self.abort = true;
    }

    // ---- the state machine ----

    fn advance(&mut self, env: &mut Env<'_, A>) {
        loop {
            let progressed = match self.state {
                State::Head => self.pending_output() <= WRITE_HIGH_WATER && self.next_head(env),
                State::Body(_) => self.read_body(env),
                _ => false,
            };
            if !progressed {
                break;
            }
        }
        if self.in_pos == self.input.len() {
            self.input.clear();
            self.in_pos = 0;
        } else if self.in_pos > 0 {
            self.input.drain(..self.in_pos);
            self.in_pos = 0;
        }
        self.after_eof();
    }

    /// Once the peer has closed its side, no request can begin or end later: close when
    /// every whole request buffered has been answered (that is, when parsing is not paused
    /// by the output), and abort a body cut short.
    fn after_eof(&mut self) {
        if !self.peer_closed {
            return;
        }
        match self.state {
            State::Head if self.pending_output() <= WRITE_HIGH_WATER => {
                self.state = State::Closing;
            }
            State::Body(_) => self.abort = true,
            _ => {}
        }
    }

    /// Parses and answers (or admits) one head; true if another may follow at once.
    fn next_head(&mut self, env: &mut Env<'_, A>) -> bool {
        let avail = &self.input[self.in_pos..];
        if avail.is_empty() {
            self.head_since = None;
            return false;
        }
        let mut slots = header_slots();
        let (len, step) = match parse(avail, &mut slots) {
            Ok(None) => {
                self.head_since.get_or_insert(env.now_ms);
                return false;
            }
            Err(e) => (avail.len(), Step::Fail(e)),
            Ok(Some(head)) => {
                let mut ex = exchange(&head, env);
                ex.bytes_in = head.len as u64;
                let owned = RequestHead::from_parsed(&head, avail, ex.id, self.peer, env.now);
                let step = Step::Admit(Box::new(owned), head.framing, head.expect_continue, ex);
                (head.len, step)
            }
        };
        self.in_pos += len;
        self.head_since = None;
        match step {
            Step::Fail(e) => {
                env.stats.parse_error();
                let resp = Response::error(e.status(), e.code(), &e.to_string());
                self.fail(resp, len as u64, env);
                false
            }
            Step::Admit(head, framing, expect, ex) => {
                self.ex = ex;
                self.admit(*head, framing, expect, env)
            }
        }
    }

    fn admit(
        &mut self,
        head: RequestHead,
        framing: Framing,
        expect_continue: bool,
        env: &mut Env<'_, A>,
    ) -> bool {
        let has_body = framing != Framing::None;
        let app = env.app;
        // The label is asked for with the decision, under the same guard against panics.
        let decided = catch_unwind(AssertUnwindSafe(|| {
            let admission = app.admit(&head);
            let label = match &admission {
                Admission::Accept { context, .. } => app.describe(&head, Some(context)),
                Admission::Reject(_) => app.describe(&head, None),
            };
            (admission, label)
        }));
        let decided = decided.map(|(admission, label)| {
            self.ex.label = label;
            admission
        });
        let (body_limit, context) = match decided {
            Ok(Admission::Accept {
                body_limit,
                context,
            }) => (body_limit, context),
            Ok(Admission::Reject(resp)) => {
                // The announced body is not read, so the connection cannot be reused.
                self.ex.keep_alive &= !has_body;
                return self.respond(resp, env);
            }
            Err(_) => {
                env.stats.panicked();
                self.ex.keep_alive &= !has_body;
                return self.respond(internal_error(), env);
            }
        };
        let left = match framing {
            Framing::None => return self.dispatch(head, context, Vec::new(), env),
            Framing::Length(n) if n > body_limit => return self.refuse(too_large(body_limit), env),
            Framing::Length(n) => BodyLeft::Length(n),
            Framing::Chunked => BodyLeft::Chunked(ChunkedDecoder::new()),
        };
        if expect_continue && !self.ex.http10 && self.in_pos == self.input.len() {
            self.output
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let capacity = match left {
            BodyLeft::Length(n) => n.min(1 << 20) as usize,
            BodyLeft::Chunked(_) => 0,
        };
        self.state = State::Body(Box::new(BodyState {
            head,
            context,
            body: Vec::with_capacity(capacity),
            left,
            limit: body_limit,
            since_ms: env.now_ms,
        }));
        true
    }

    /// Moves body bytes from the input; dispatches when the body is complete.
    fn read_body(&mut self, env: &mut Env<'_, A>) -> bool {
        let State::Body(b) = &mut self.state else {
            return false;
        };
        let avail = &self.input[self.in_pos..];
        let outcome = match &mut b.left {
            BodyLeft::Length(left) => {
                let take = (*left).min(avail.len() as u64) as usize;
                b.body.extend_from_slice(&avail[..take]);
                self.in_pos += take;
                *left -= take as u64;
                Ok(*left == 0)
            }
            BodyLeft::Chunked(dec) => match dec.decode(avail, &mut b.body) {
                Ok(n) => {
                    self.in_pos += n;
                    Ok(dec.is_done())
                }
                Err(e) => Err(e),
            },
        };
        let over_limit = b.body.len() as u64 > b.limit;
        match outcome {
            Err(e) => {
                env.stats.parse_error();
                self.refuse(Response::error(400, "BAD_REQUEST", &e.to_string()), env);
                false
            }
            Ok(_) if over_limit => {
                let limit = b.limit;
                self.refuse(too_large(limit), env)
            }
            Ok(false) => false,
            Ok(true) => {
                let State::Body(b) = std::mem::replace(&mut self.state, State::Head) else {
                    return false;
                };
                let BodyState {
                    head,
                    context,
                    body,
                    ..
                } = *b;
                self.dispatch(head, context, body, env)
            }
        }
    }

    fn dispatch(
        &mut self,
        head: RequestHead,
        context: A::Context,
        body: Vec<u8>,
        env: &mut Env<'_, A>,
    ) -> bool {
        self.seq += 1;
        self.ex.bytes_in += body.len() as u64;
        let link = ReplyLink {
            mailbox: env.mailbox.clone(),
            token: env.token,
            seq: self.seq,
        };
        let request = Request::new(head, body, context, link);
        let app = env.app;
        match catch_unwind(AssertUnwindSafe(|| app.handle(request))) {
            Ok(Reply::Now(resp)) => self.respond(resp, env),
            Ok(Reply::Later(deferred)) => {
                self.state = State::Waiting(deferred.0);
                false
            }
            Ok(Reply::Stream(start)) => {
                self.start_stream(start, env);
                // A stream that ended at once (or answered a HEAD) lets the next request
                // go. The caller's loop takes it: re-entering `advance` from here would
                // nest one call chain per pipelined request.
                matches!(self.state, State::Head)
            }
            Err(_) => {
                env.stats.panicked();
                self.respond(internal_error(), env)
            }
        }
    }

    /// Writes the response of the current exchange; true if the connection goes on.
    fn respond(&mut self, resp: Response, env: &mut Env<'_, A>) -> bool {
        let keep = self.ex.keep_alive && !env.draining;
        let cx = HeadContext {
            date: env.date,
            request_id: self.ex.id.as_bytes(),
            keep_alive: keep,
            http10: self.ex.http10,
        };
        let before = self.output.len();
        write_response(&mut self.output, &resp, self.ex.head_only, &cx);
        self.ex.bytes_out = (self.output.len() - before) as u64;
        self.record_head(resp.status, env);
        self.log_exchange(None, env);
        self.state = if keep { State::Head } else { State::Closing };
        keep
    }

    /// Counts the response head of the current exchange under its route.
    fn record_head(&mut self, status: u16, env: &mut Env<'_, A>) {
        let latency = env.now_us.saturating_sub(self.ex.started_us);
        self.ex.status = status;
        self.ex.latency_us = latency;
        let route = self.ex.label.route;
        env.stats
            .record_route(route, self.ex.method, status, latency);
    }

    /// Hands the current exchange to the access log, if it is on.
    fn log_exchange(&self, stream_us: Option<u64>, env: &mut Env<'_, A>) {
        let Some(log) = env.access_log.as_deref_mut() else {
            return;
        };
        let ex = &self.ex;
        let entry = Entry {
            at: env.now,
            id: ex.id,
            peer: self.peer,
            tenant: ex.label.tenant,
            route: ex.label.route,
            method: ex.method,
            status: ex.status,
            bytes_in: ex.bytes_in,
            bytes_out: ex.bytes_out,
            latency_us: ex.latency_us,
            stream_us,
        };
        log.push(&entry, env.now_ms, env.stats);
    }

    /// Logs the open stream's exchange as it ends.
    fn log_stream_end(&self, env: &mut Env<'_, A>) {
        let open_us = env.now_us.saturating_sub(self.ex.stream_since_us);
        self.log_exchange(Some(open_us), env);
    }

    /// Answers with an error outside any admitted exchange (under a new request id), then
    /// closes; `bytes_in` is what was read of the refused head.
    fn fail(&mut self, resp: Response, bytes_in: u64, env: &mut Env<'_, A>) {
        self.ex = Exchange::blank(env.ids.next_id(), env.now_us);
        self.ex.keep_alive = false;
        self.ex.bytes_in = bytes_in;
        self.respond(resp, env);
    }

    /// Answers the current exchange with an error (under its request id), then closes.
    fn refuse(&mut self, resp: Response, env: &mut Env<'_, A>) -> bool {
        self.ex.keep_alive = false;
        self.respond(resp, env)
    }

    fn start_stream(&mut self, start: StreamStart, env: &mut Env<'_, A>) {
        // HTTP/1.0 has no chunked coding: the stream ends with the connection.
        let chunked = !self.ex.http10;
        self.ex.keep_alive &= chunked && !env.draining;
        let cx = HeadContext {
            date: env.date,
            request_id: self.ex.id.as_bytes(),
            keep_alive: self.ex.keep_alive,
            http10: self.ex.http10,
        };
        let length = if chunked {
            Length::Chunked
        } else {
            Length::UntilClose
        };
        let before = self.output.len();
        write_head(&mut self.output, &start.head, length, &cx);
        self.ex.bytes_out = (self.output.len() - before) as u64;
        self.record_head(start.head.status, env);
        if self.ex.head_only {
            self.log_exchange(None, env);
            // A response to HEAD has no body: the head is the whole answer, and the
            // producer learns at once that nobody reads its frames.
            start.shared.set_gone();
            self.state = if self.ex.keep_alive {
                State::Head
            } else {
                State::Closing
            };
            return;
        }
        env.stats.stream_opened(true);
        self.ex.stream_since_us = env.now_us;
        self.state = State::Streaming {
            shared: start.shared,
            chunked,
        };
        self.pump_stream(env);
    }

    /// Moves queued stream frames to the output, unless the output is over its mark.
    fn pump_stream(&mut self, env: &mut Env<'_, A>) {
        if self.pending_output() > WRITE_HIGH_WATER {
            return;
        }
        let State::Streaming { shared, chunked } = &self.state else {
            return;
        };
        let chunked = *chunked;
        let output = &mut self.output;
        let before = output.len();
        let closed = shared.drain(|bytes| {
            if chunked {
                write_chunk(output, bytes);
            } else {
                output.extend_from_slice(bytes);
            }
        });
        self.ex.bytes_out += (self.output.len() - before) as u64;
        if closed {
            self.end_stream(false, env);
        }
    }

    fn push_stream_bytes(&mut self, bytes: &[u8], chunked: bool) {
        if chunked {
            write_chunk(&mut self.output, bytes);
        } else {
            self.output.extend_from_slice(bytes);
        }
    }

    /// Ends the open stream; `client_gone` tells the producer to stop.
    fn end_stream(&mut self, client_gone: bool, env: &mut Env<'_, A>) {
        let State::Streaming { shared, chunked } = std::mem::replace(&mut self.state, State::Head)
        else {
            return;
        };
        if client_gone {
            shared.set_gone();
        }
        if chunked {
            self.output.extend_from_slice(LAST_CHUNK);
            self.ex.bytes_out += LAST_CHUNK.len() as u64;
        }
        env.stats.stream_opened(false);
        self.log_stream_end(env);
        // The callers go on with the requests behind the stream (see `dispatch`).
        let keep = self.ex.keep_alive && !env.draining;
        self.state = if keep { State::Head } else { State::Closing };
    }
}

/// The exchange for a parsed head: its id, keep-alive, version, HEAD-ness, start time.
fn exchange<A: App>(head: &Head<'_, '_>, env: &mut Env<'_, A>) -> Exchange {
    let id = match head.request_id {
        Some(id) => RequestId::new(id),
        None => env.ids.next_id(),
    };
    let mut ex = Exchange::blank(id, env.now_us);
    ex.keep_alive = head.keep_alive;
    ex.http10 = head.version == Version::Http10;
    ex.head_only = head.method == "HEAD";
    ex.method = Method::from_token(head.method);
    ex
}

fn request_timeout() -> Response {
    Response::error(
        408,
        "REQUEST_TIMEOUT",
        "Request head or body not received in time",
    )
}

fn internal_error() -> Response {
    Response::error(500, "INTERNAL_ERROR", "Internal server error")
}

fn too_large(limit: u64) -> Response {
    let msg = format!("Request body exceeds the limit of {limit} bytes");
    Response::error(413, "PAYLOAD_TOO_LARGE", &msg)
}

#[cfg(test)]
mod tests;
