//! Tests of the connection state machine, driven the way the loop drives it: bytes in at a
//! given `now`, the output taken by a client that reads everything (or nothing), mailbox
//! letters handed back through `on_letter`, deadlines fired through `on_timer`. No socket,
//! no sleep and no clock: time is the `now` each step is given.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Conn, Env, Timeouts, HEARTBEAT, WRITE_HIGH_WATER};
use crate::app::{Admission, App, Reply, Request};
use crate::chunked::ChunkedDecoder;
use crate::metrics::Metrics;
use crate::reply::{Letter, Mailbox, Post, Responder, StreamError, StreamSender, Wake};
use crate::request::{RequestHead, RequestIds};
use crate::response::{Body, Response};

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DATE: &[u8] = b"Thu, 01 Jan 1970 00:00:00 GMT";
const TOKEN: u64 = 7;
const TIMEOUTS: Timeouts = Timeouts {
    header_ms: 1_000,
    idle_ms: 5_000,
};
/// Largest body the test application admits.
const BODY_LIMIT: u64 = 16;
/// Body size of `/big`: the output of two answers passes the write high-water mark.
const BIG: usize = WRITE_HIGH_WATER / 2 + 1;

// ---- the application ----

/// Routes by path. `/defer` and `/stream` hand their `Responder` or `StreamSender` to the
/// test; `/stream-ended` streams one frame and ends at once; `/reject` is refused at
/// admission; `/panic` panics; `/big` answers `BIG` bytes; any other path answers
/// `path:body`, so that the order of the answers shows in the output.
#[derive(Default)]
struct TestApp {
    handled: Mutex<Vec<String>>,
    responders: Mutex<Vec<Responder>>,
    senders: Mutex<Vec<StreamSender>>,
}

impl TestApp {
    /// The paths handled so far, in order.
    fn handled(&self) -> Vec<String> {
        self.handled.lock().unwrap().clone()
    }

    /// The oldest `Responder` not taken yet.
    fn responder(&self) -> Responder {
        self.responders.lock().unwrap().remove(0)
    }

    /// The oldest `StreamSender` not taken yet.
    fn sender(&self) -> StreamSender {
        self.senders.lock().unwrap().remove(0)
    }
}

fn event_stream_head() -> Response {
    let mut head = Response::empty(200);
    head.content_type = Some("text/event-stream");
    head
}

fn with_body(status: u16, body: Vec<u8>) -> Response {
    Response {
        body: Body::Owned(body),
        ..Response::empty(status)
    }
}

impl App for TestApp {
    type Context = ();

    fn admit(&self, head: &RequestHead) -> Admission<()> {
        if head.path() == "/reject" {
            return Admission::Reject(Response::error(403, "FORBIDDEN", "Refused"));
        }
        Admission::Accept {
            body_limit: BODY_LIMIT,
            context: (),
        }
    }

    fn handle(&self, request: Request<()>) -> Reply {
        let path = request.head.path().to_string();
        self.handled.lock().unwrap().push(path.clone());
        match path.as_str() {
            "/defer" => {
                let (reply, responder) = request.defer();
                self.responders.lock().unwrap().push(responder);
                reply
            }
            "/stream" => {
                let (reply, sender) = request.stream(event_stream_head(), 1024);
                self.senders.lock().unwrap().push(sender);
                reply
            }
            "/stream-ended" => {
                let (reply, sender) = request.stream(event_stream_head(), 1024);
                sender.close_with(b"data: last\n\n");
                reply
            }
            "/panic" => panic!("the test handler panics (expected by the test)"),
            "/big" => Reply::Now(with_body(200, vec![b'x'; BIG])),
            _ => {
                let mut body = format!("{path}:").into_bytes();
                body.extend_from_slice(&request.body);
                Reply::Now(with_body(200, body))
            }
        }
    }
}

// ---- the loop around one connection ----

/// What the loop lends a connection.
struct Loop {
    app: TestApp,
    mailbox: Arc<Mailbox>,
    letters: crossbeam_channel::Receiver<Post>,
    ids: RequestIds,
    metrics: Metrics,
    origin: Instant,
    draining: bool,
}

impl Loop {
    /// The environment at `now_ms`: one moment, in the three units the loop gives it.
    fn env(&mut self, now_ms: u64) -> Env<'_, TestApp> {
        Env {
            app: &self.app,
            date: DATE,
            mailbox: &self.mailbox,
            token: TOKEN,
            ids: &mut self.ids,
            stats: self.metrics.loop_stats(0),
            timeouts: TIMEOUTS,
            now_ms,
            now_us: now_ms * 1_000,
            now: self.origin + Duration::from_millis(now_ms),
            draining: self.draining,
            access_log: None,
        }
    }
}

/// One connection, accepted at 0 ms, and its loop.
struct Rig {
    lp: Loop,
    conn: Conn<TestApp>,
    /// Whether the client reads what is written (false: a stalled client).
    reading: bool,
}

/// The connection after a step: what the client read, and what the loop would do next.
#[derive(Debug)]
struct Seen {
    out: Vec<u8>,
    done: bool,
    aborted: bool,
    deadline: Option<u64>,
}

impl Seen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    fn responses(&self) -> Vec<Resp> {
        responses(&self.out)
    }

    /// The one response read in this step.
    fn response(&self) -> Resp {
        let mut all = self.responses();
        assert_eq!(all.len(), 1, "{}", self.text());
        all.remove(0)
    }

    fn statuses(&self) -> Vec<u16> {
        self.responses().iter().map(|r| r.status).collect()
    }

    fn bodies(&self) -> Vec<String> {
        self.responses().iter().map(Resp::body_text).collect()
    }
}

/// How the loop ends a connection, as `Worker::drive` decides from the connection's state.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Not done.
    Open,
    /// Done cleanly: shut down writing, drain what the client still sends, then close.
    Linger,
    /// Aborted, or the client closed first: close at once.
    Drop,
}

impl Rig {
    fn new() -> Self {
        let (tx, letters) = crossbeam_channel::unbounded();
        Rig {
            lp: Loop {
                app: TestApp::default(),
                mailbox: Arc::new(Mailbox::new(tx, None)),
                letters,
                ids: RequestIds::new(0xc0),
                metrics: Metrics::new(1),
                origin: Instant::now(),
                draining: false,
            },
            conn: Conn::new(PEER, 0),
            reading: true,
        }
    }

    /// Runs `f` at `now_ms`, then, if the client reads, writes out everything pending as
    /// the loop's flush does (a write may resume paused work and so produce more).
    fn step(
        &mut self,
        now_ms: u64,
        f: impl FnOnce(&mut Conn<TestApp>, &mut Env<'_, TestApp>),
    ) -> Seen {
        let mut env = self.lp.env(now_ms);
        f(&mut self.conn, &mut env);
        let mut out = Vec::new();
        while self.reading && self.conn.pending_output() > 0 {
            out.extend_from_slice(self.conn.output());
            let n = self.conn.pending_output();
            self.conn.consumed(n, &mut env);
        }
        Seen {
            out,
            done: self.conn.is_done(),
            aborted: self.conn.is_aborted(),
            deadline: self.conn.deadline(TIMEOUTS),
        }
    }

    /// The peer's bytes arrive at `now_ms`.
    fn feed(&mut self, now_ms: u64, bytes: impl AsRef<[u8]>) -> Seen {
        self.step(now_ms, |c, e| c.receive(bytes.as_ref(), e))
    }

    /// The loop drains its mailbox at `now_ms` and hands the letters over.
    fn letters(&mut self, now_ms: u64) -> Seen {
        let posts: Vec<Post> = self.lp.letters.try_iter().collect();
        self.step(now_ms, |c, e| {
            for post in posts {
                match post {
                    Post::Conn(letter) => c.on_letter(letter, e),
                    other => panic!("unexpected post {other:?}"),
                }
            }
        })
    }

    /// The deadline timer fires at `now_ms`.
    fn timer(&mut self, now_ms: u64) -> Seen {
        self.step(now_ms, |c, e| c.on_timer(e))
    }

    /// The peer closes its sending side.
    fn eof(&mut self, now_ms: u64) -> Seen {
        self.step(now_ms, |c, e| c.on_eof(e))
    }

    /// The client starts reading again.
    fn read(&mut self, now_ms: u64) -> Seen {
        self.reading = true;
        self.step(now_ms, |_, _| {})
    }

    fn end(&self) -> End {
        if !self.conn.is_done() {
            End::Open
        } else if self.conn.is_aborted() || self.conn.peer_closed() {
            End::Drop
        } else {
            End::Linger
        }
    }
}

// ---- requests and responses ----

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

/// A POST head announcing `len` body bytes, with `extra` header lines.
fn post_head(path: &str, extra: &str, len: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: {len}\r\n\r\n")
}

fn post(path: &str, extra: &str, body: &str) -> String {
    post_head(path, extra, body.len()) + body
}

/// `data` as one chunk of a chunked body.
fn chunk(data: &[u8]) -> Vec<u8> {
    let mut c = format!("{:x}\r\n", data.len()).into_bytes();
    c.extend_from_slice(data);
    c.extend_from_slice(b"\r\n");
    c
}

/// One response read back from the output.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn closes(&self) -> bool {
        self.header("connection") == Some("close")
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The response head at the front of `out` (its body left empty), and the bytes after it.
fn split_head(out: &[u8]) -> (Resp, &[u8]) {
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut slots);
    let len = match r.parse(out) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!(
            "no whole head ({other:?}): {}",
            String::from_utf8_lossy(out)
        ),
    };
    let headers = r
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let status = r.code.expect("a status");
    let head = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    (head, &out[len..])
}

/// Splits `out` into whole responses: bodies framed by `Content-Length`, by the chunked
/// coding, or (with neither) by the end of the output, as an HTTP/1.0 stream is.
fn responses(mut out: &[u8]) -> Vec<Resp> {
    let mut all = Vec::new();
    while !out.is_empty() {
        let (mut resp, rest) = split_head(out);
        out = rest;
        let length = resp.header("content-length").map(|v| v.parse().unwrap());
        if matches!(resp.status, 100..=199 | 204 | 304) {
        } else if let Some(n) = length {
            resp.body = out[..n].to_vec();
            out = &out[n..];
        } else if resp.header("transfer-encoding") == Some("chunked") {
            let mut dec = ChunkedDecoder::new();
            let used = dec.decode(out, &mut resp.body).expect("chunked");
            assert!(dec.is_done(), "unfinished chunked body");
            out = &out[used..];
        } else {
            resp.body = std::mem::take(&mut out).to_vec();
        }
        all.push(resp);
    }
    all
}

// ---- pipelining ----

#[test]
fn pipelined_requests_in_one_read_are_answered_in_order() {
    let mut rig = Rig::new();
    let batch: String = (1..=3)
        .map(|i| format!("GET /r{i} HTTP/1.1\r\nHost: t\r\nX-Request-Id: id-{i}\r\n\r\n"))
        .collect();
    let seen = rig.feed(10, batch);
    assert_eq!(seen.bodies(), ["/r1:", "/r2:", "/r3:"]);
    let ids: Vec<_> = seen
        .responses()
        .iter()
        .map(|r| r.header("x-request-id").unwrap().to_string())
        .collect();
    assert_eq!(ids, ["id-1", "id-2", "id-3"]);
    assert!(!seen.done);
    assert_eq!(seen.deadline, Some(10 + TIMEOUTS.idle_ms));
}

#[test]
fn a_deferred_reply_holds_back_the_requests_behind_it() {
    let mut rig = Rig::new();
    let seen = rig.feed(10, get("/a") + &get("/defer") + &get("/b"));
    assert_eq!(seen.bodies(), ["/a:"]);
    // `/b` is not even handled while `/defer` waits: answers cannot overtake.
    assert_eq!(rig.lp.app.handled(), ["/a", "/defer"]);
    assert_eq!(
        seen.deadline, None,
        "waiting for the application has no deadline"
    );
    rig.lp
        .app
        .responder()
        .send(with_body(201, b"later".to_vec()));
    assert!(
        rig.feed(20, b"").out.is_empty(),
        "the reply comes by letter"
    );
    let seen = rig.letters(30);
    assert_eq!(seen.statuses(), [201, 200]);
    assert_eq!(seen.bodies(), ["later", "/b:"]);
    assert_eq!(rig.lp.app.handled(), ["/a", "/defer", "/b"]);
}

#[test]
fn a_head_split_across_reads_is_answered_once_whole() {
    let mut rig = Rig::new();
    let seen = rig.feed(10, "GET /a HTTP/1.1\r\nHo");
    assert!(seen.out.is_empty());
    assert_eq!(seen.deadline, Some(10 + TIMEOUTS.header_ms));
    let seen = rig.feed(20, "st: t\r\n\r\n");
    assert_eq!(seen.bodies(), ["/a:"]);
    assert_eq!(seen.deadline, Some(20 + TIMEOUTS.idle_ms));
}

#[test]
fn parsing_pauses_while_output_is_over_the_high_water_mark() {
    let mut rig = Rig::new();
    rig.reading = false;
    rig.feed(10, get("/big").repeat(3));
    assert_eq!(rig.lp.app.handled().len(), 2);
    assert!(rig.conn.pending_output() > WRITE_HIGH_WATER);
    assert!(!rig.conn.wants_read());
    let seen = rig.read(20);
    assert_eq!(seen.statuses(), [200, 200, 200]);
    assert!(rig.conn.wants_read());
}

// ---- 100-continue ----

#[test]
fn continue_is_sent_after_admission_before_the_body() {
    let mut rig = Rig::new();
    let head =
        "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    let seen = rig.feed(10, head);
    assert_eq!(seen.text(), "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(rig.lp.app.handled().is_empty());
    let seen = rig.feed(20, "hello");
    assert_eq!(seen.bodies(), ["/echo:hello"]);
}

#[test]
fn continue_is_not_sent_when_the_request_is_refused() {
    let too_long = BODY_LIMIT as usize + 1;
    for (path, len, status) in [("/reject", 3, 403), ("/echo", too_long, 413)] {
        let mut rig = Rig::new();
        let seen = rig.feed(10, post_head(path, "Expect: 100-continue\r\n", len));
        let r = seen.response();
        assert_eq!(r.status, status, "{path}");
        // The announced body is not read, so the connection cannot carry another request.
        assert!(r.closes() && seen.done, "{path}");
        assert!(rig.lp.app.handled().is_empty());
    }
}

#[test]
fn continue_is_not_sent_when_body_bytes_already_arrived() {
    let mut rig = Rig::new();
    let req = post("/echo", "Expect: 100-continue\r\n", "hello");
    let seen = rig.feed(10, &req[..req.len() - 3]);
    assert!(seen.out.is_empty(), "{}", seen.text());
    let seen = rig.feed(20, "llo");
    assert_eq!(seen.bodies(), ["/echo:hello"]);
    let mut rig = Rig::new();
    assert_eq!(rig.feed(10, req).bodies(), ["/echo:hello"]);
}

// ---- deadlines ----

#[test]
fn a_head_not_complete_in_time_is_408_then_close() {
    let mut rig = Rig::new();
    let seen = rig.feed(100, "GET /a HTTP/1.1\r\nHo");
    assert_eq!(seen.deadline, Some(1_100));
    // More bytes do not move it: a head has `header_ms` from its first byte.
    assert_eq!(rig.feed(600, "st: t\r\n").deadline, Some(1_100));
    let seen = rig.timer(1_099);
    assert!(seen.out.is_empty() && !seen.done);
    let seen = rig.timer(1_100);
    let r = seen.response();
    assert_eq!(r.status, 408);
    assert!(r.body_text().contains("REQUEST_TIMEOUT"));
    assert!(r.closes() && seen.done && !seen.aborted);
    assert_eq!(rig.end(), End::Linger);
}

#[test]
fn an_idle_keep_alive_connection_closes_silently() {
    let mut rig = Rig::new();
    assert_eq!(rig.conn.deadline(TIMEOUTS), Some(TIMEOUTS.idle_ms));
    rig.feed(10, get("/a"));
    let seen = rig.timer(5_009);
    assert!(seen.out.is_empty() && !seen.done);
    let seen = rig.timer(5_010);
    assert!(seen.out.is_empty());
    assert!(seen.done && seen.aborted);
    assert_eq!(seen.deadline, None);
    assert_eq!(rig.end(), End::Drop);
}

#[test]
fn output_stalled_past_idle_aborts() {
    let mut rig = Rig::new();
    rig.reading = false;
    let seen = rig.feed(10, get("/a"));
    assert!(rig.conn.pending_output() > 0);
    assert_eq!(seen.deadline, Some(10 + TIMEOUTS.idle_ms));
    // Any progress of the writes moves the deadline.
    let seen = rig.step(3_000, |c, e| c.consumed(1, e));
    assert_eq!(seen.deadline, Some(3_000 + TIMEOUTS.idle_ms));
    let pending = rig.conn.pending_output();
    assert!(!rig.timer(7_999).done);
    let seen = rig.timer(8_000);
    assert!(seen.done && seen.aborted);
    assert_eq!(
        rig.conn.pending_output(),
        pending,
        "nothing more is written"
    );
    assert_eq!(rig.end(), End::Drop);
}

#[test]
fn a_body_not_received_in_time_is_408_with_its_request_id() {
    let mut rig = Rig::new();
    let req = post("/echo", "X-Request-Id: slow-1\r\n", "hello");
    let seen = rig.feed(10, &req[..req.len() - 3]);
    assert_eq!(seen.deadline, Some(10 + TIMEOUTS.idle_ms));
    let seen = rig.timer(10 + TIMEOUTS.idle_ms);
    let r = seen.response();
    assert_eq!(r.status, 408);
    assert_eq!(r.header("x-request-id"), Some("slow-1"));
    assert!(r.closes() && seen.done && !seen.aborted);
    assert!(rig.lp.app.handled().is_empty());
}

// ---- closing ----

#[test]
fn connection_close_is_answered_then_lingers() {
    let mut rig = Rig::new();
    let close = "GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let seen = rig.feed(10, close.to_string() + &get("/b"));
    let r = seen.response();
    assert!(r.closes());
    assert_eq!(
        rig.lp.app.handled(),
        ["/a"],
        "nothing after `close` is read"
    );
    assert_eq!(rig.end(), End::Linger);
}

#[test]
fn eof_after_the_answers_closes_without_lingering() {
    let mut rig = Rig::new();
    rig.feed(10, get("/a"));
    let seen = rig.eof(20);
    assert!(seen.out.is_empty() && seen.done && !seen.aborted);
    assert_eq!(rig.end(), End::Drop);
}

#[test]
fn eof_answers_every_whole_request_already_buffered() {
    let mut rig = Rig::new();
    rig.reading = false;
    rig.feed(10, get("/big").repeat(3) + "GET /partial HTTP/1.1\r\n");
    assert!(!rig.eof(20).done);
    let seen = rig.read(30);
    assert_eq!(seen.statuses(), [200, 200, 200]);
    assert!(seen.done);
    assert_eq!(rig.end(), End::Drop);
}

#[test]
fn eof_in_the_middle_of_a_body_aborts() {
    let mut rig = Rig::new();
    let req = post("/echo", "", "hello");
    rig.feed(10, &req[..req.len() - 2]);
    let seen = rig.eof(20);
    assert!(seen.done && seen.aborted && seen.out.is_empty());
    assert!(rig.lp.app.handled().is_empty());
}

#[test]
fn a_malformed_head_is_400_after_the_earlier_answers_then_close() {
    let mut rig = Rig::new();
    let seen = rig.feed(10, get("/a") + "GET /b HTTP/1.1\r\n\r\n" + &get("/c"));
    assert_eq!(seen.statuses(), [200, 400]);
    assert!(seen.responses()[1].closes() && seen.done);
    assert_eq!(rig.lp.app.handled(), ["/a"]);
    assert_eq!(rig.end(), End::Linger);
}

#[test]
fn a_rejection_closes_only_when_a_body_was_announced() {
    let mut rig = Rig::new();
    let r = rig.feed(10, get("/reject")).response();
    assert_eq!(r.status, 403);
    assert!(!r.closes() && !rig.conn.is_done());
    let seen = rig.feed(20, post("/reject", "", "abc"));
    assert!(seen.response().closes() && seen.done);
}

// ---- HTTP/1.0 ----

#[test]
fn http10_keep_alive_is_honoured_only_when_asked() {
    let mut rig = Rig::new();
    let seen = rig.feed(10, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(seen.response().header("connection"), Some("keep-alive"));
    assert!(!seen.done);
    let seen = rig.feed(20, "GET /b HTTP/1.0\r\n\r\n");
    assert!(seen.response().closes() && seen.done);
}

#[test]
fn an_http10_stream_is_not_chunked_and_ends_with_the_connection() {
    let mut rig = Rig::new();
    let seen = rig.feed(10, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let (head, rest) = split_head(&seen.out);
    assert!(rest.is_empty());
    assert_eq!(head.header("transfer-encoding"), None);
    assert_eq!(head.header("content-length"), None);
    assert!(head.closes());
    let sender = rig.lp.app.sender();
    sender.send(b"data: 1\n\n").unwrap();
    assert_eq!(rig.letters(20).text(), "data: 1\n\n");
    drop(sender);
    let seen = rig.letters(30);
    assert!(seen.out.is_empty() && seen.done && !seen.aborted);
}

// ---- HEAD ----

#[test]
fn head_has_the_get_length_and_no_body() {
    let mut rig = Rig::new();
    let get_len = rig.feed(10, get("/abc")).response().body.len();
    let seen = rig.feed(
        20,
        "HEAD /abc HTTP/1.1\r\nHost: t\r\n\r\n".to_string() + &get("/b"),
    );
    let (head, rest) = split_head(&seen.out);
    assert_eq!(
        head.header("content-length"),
        Some(get_len.to_string().as_str())
    );
    // What follows the head is the next answer, not a body.
    let next: Vec<_> = responses(rest).iter().map(Resp::body_text).collect();
    assert_eq!(next, ["/b:"]);
}

#[test]
fn head_on_a_stream_route_is_answered_by_the_head_alone() {
    let mut rig = Rig::new();
    let seen = rig.feed(
        10,
        "HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n".to_string() + &get("/b"),
    );
    let (head, rest) = split_head(&seen.out);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    let next: Vec<_> = responses(rest).iter().map(Resp::body_text).collect();
    assert_eq!(next, ["/b:"]);
    let sender = rig.lp.app.sender();
    assert_eq!(sender.send(b"data: 1\n\n"), Err(StreamError::Gone));
}

// ---- deferred replies ----

#[test]
fn a_dropped_responder_answers_500() {
    let mut rig = Rig::new();
    rig.feed(10, get("/defer"));
    drop(rig.lp.app.responder());
    let r = rig.letters(20).response();
    assert_eq!(r.status, 500);
    assert!(r.body_text().contains("INTERNAL_ERROR"));
    assert!(!rig.conn.is_done());
}

#[test]
fn a_letter_about_another_request_is_ignored() {
    let mut rig = Rig::new();
    rig.feed(10, get("/defer"));
    let stale = Letter {
        token: TOKEN,
        seq: 99,
        wake: Wake::Complete(Response::empty(204)),
    };
    assert!(rig.step(20, |c, e| c.on_letter(stale, e)).out.is_empty());
    rig.lp.app.responder().send(Response::empty(204));
    assert_eq!(rig.letters(30).statuses(), [204]);
}

#[test]
fn eof_while_waiting_tells_the_producer_and_closes_after_the_reply() {
    let mut rig = Rig::new();
    rig.feed(10, get("/defer"));
    let seen = rig.eof(20);
    assert!(!seen.done, "the reply is still written if it comes");
    let responder = rig.lp.app.responder();
    assert!(responder.is_gone());
    responder.send(Response::empty(204));
    let seen = rig.letters(30);
    assert!(seen.response().closes() && seen.done);
}

#[test]
fn closing_while_waiting_tells_the_producer() {
    let mut rig = Rig::new();
    rig.feed(10, get("/defer"));
    rig.step(20, |c, e| c.on_close(e));
    assert!(rig.lp.app.responder().is_gone());
}

#[test]
fn a_deferred_reply_can_turn_into_a_stream() {
    let mut rig = Rig::new();
    rig.feed(10, get("/defer") + &get("/b"));
    let sender = rig.lp.app.responder().stream(event_stream_head(), 64);
    let (head, _) = split_head(&rig.letters(20).out);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    sender.send(b"data: 1\n\n").unwrap();
    drop(sender);
    let mut want = chunk(b"data: 1\n\n");
    want.extend_from_slice(b"0\r\n\r\n");
    let seen = rig.letters(30);
    let (body, after) = seen.out.split_at(want.len());
    assert_eq!(body, want);
    assert_eq!(responses(after)[0].body_text(), "/b:");
}

// ---- streams ----

#[test]
fn a_stream_sends_frames_heartbeats_and_its_end() {
    let mut rig = Rig::new();
    let seen = rig.feed(10, get("/stream"));
    let (head, rest) = split_head(&seen.out);
    assert!(rest.is_empty());
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        seen.deadline, None,
        "an open stream has heartbeats, not a deadline"
    );
    assert!(rig.conn.is_streaming());
    let sender = rig.lp.app.sender();
    sender.send(b"data: 1\n\n").unwrap();
    assert_eq!(rig.letters(20).out, chunk(b"data: 1\n\n"));
    assert_eq!(rig.step(30, |c, _| c.heartbeat()).out, chunk(HEARTBEAT));
    drop(sender);
    let seen = rig.letters(40);
    assert_eq!(seen.text(), "0\r\n\r\n");
    assert!(!seen.done && !rig.conn.is_streaming());
    assert_eq!(rig.feed(50, get("/b")).bodies(), ["/b:"]);
}

#[test]
fn closing_the_connection_tells_the_stream_producer() {
    let mut rig = Rig::new();
    rig.feed(10, get("/stream"));
    let sender = rig.lp.app.sender();
    let seen = rig.eof(20);
    assert!(seen.done && seen.aborted);
    rig.step(20, |c, e| c.on_close(e));
    assert!(sender.is_gone());
    assert_eq!(sender.send(b"data: 1\n\n"), Err(StreamError::Gone));
}

#[test]
fn shutdown_ends_a_stream_after_its_queued_frames() {
    let mut rig = Rig::new();
    rig.feed(10, get("/stream"));
    let sender = rig.lp.app.sender();
    sender.send(b"data: last words\n\n").unwrap();
    let seen = rig.step(20, |c, e| c.begin_shutdown(e));
    let mut want = chunk(b"data: last words\n\n");
    want.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(seen.out, want);
    assert!(seen.done && !seen.aborted);
    assert!(sender.is_gone());
}

#[test]
fn streams_that_end_at_once_keep_the_pipeline_going() {
    let mut rig = Rig::new();
    let n = 2_000;
    let seen = rig.feed(10, get("/stream-ended").repeat(n));
    let bodies = seen.bodies();
    assert_eq!(bodies.len(), n);
    assert!(bodies.iter().all(|b| b == "data: last\n\n"));
    assert!(!seen.done);
}

// ---- shutdown ----

#[test]
fn shutdown_closes_an_idle_connection() {
    let mut rig = Rig::new();
    rig.feed(10, get("/a"));
    let seen = rig.step(20, |c, e| c.begin_shutdown(e));
    assert!(seen.out.is_empty() && seen.done && !seen.aborted);
}

#[test]
fn shutdown_finishes_the_request_in_flight_without_keep_alive() {
    let mut rig = Rig::new();
    rig.feed(10, get("/defer") + &get("/b"));
    rig.lp.draining = true;
    assert!(!rig.step(20, |c, e| c.begin_shutdown(e)).done);
    rig.lp.app.responder().send(Response::empty(204));
    let seen = rig.letters(30);
    assert!(seen.response().closes() && seen.done);
    assert_eq!(rig.lp.app.handled(), ["/defer"]);
}

// ---- handlers and bodies ----

#[test]
fn a_panicking_handler_is_500_and_the_connection_goes_on() {
    let mut rig = Rig::new();
    let seen = rig.feed(10, get("/panic") + &get("/b"));
    assert_eq!(seen.statuses(), [500, 200]);
    assert!(!seen.done);
}

#[test]
fn a_chunked_body_is_read_and_the_connection_reused() {
    let mut rig = Rig::new();
    let req = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
               3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: t\r\n\r\n";
    let seen = rig.feed(10, req.to_string() + &get("/b"));
    assert_eq!(seen.bodies(), ["/echo:hello", "/b:"]);
    assert!(!seen.done);
}

#[test]
fn a_body_over_the_limit_is_413_and_closes() {
    let over = "x".repeat(BODY_LIMIT as usize + 1);
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{over}\r\n",
        over.len()
    );
    for req in [post("/echo", "", &over), chunked] {
        let mut rig = Rig::new();
        let seen = rig.feed(10, req);
        let r = seen.response();
        assert_eq!(r.status, 413);
        assert!(r.closes() && seen.done);
        assert!(rig.lp.app.handled().is_empty());
    }
}

#[test]
fn a_bad_chunked_body_is_400_with_its_request_id() {
    let mut rig = Rig::new();
    let req = "POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-Id: bad-1\r\n\
               Transfer-Encoding: chunked\r\n\r\nzz\r\n";
    let seen = rig.feed(10, req);
    let r = seen.response();
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-request-id"), Some("bad-1"));
    assert!(r.closes() && seen.done);
}
