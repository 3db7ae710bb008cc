//! The engine in-process, with a test application whose handlers panic, defer, stream and
//! send large bodies: behaviour that needs handlers the real API does not have. Over
//! loopback TCP, bounded in time; every server started here is shut down by its handle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use halyard_engine::{
    Admission, App, Config, Reply, Request, RequestHead, Response, Server, ShutdownHandle,
    StreamError,
};
use halyard_testkit::Client;

const BIG: usize = 10 * 1024 * 1024;

#[derive(Default, Clone)]
struct TestApp {
    /// Producers that learned their client went away.
    gone_seen: Arc<AtomicUsize>,
}

impl TestApp {
    fn stream_ticks(req: &Request<()>) -> Reply {
        let (reply, sender) = req.stream(Response::empty(200), 1024);
        std::thread::spawn(move || {
            for i in 0..3 {
                std::thread::sleep(Duration::from_millis(150));
                let frame = format!("id: {i}\nevent: tick\ndata: {{}}\n\n");
                if sender.send(frame.as_bytes()).is_err() {
                    return;
                }
            }
        });
        reply
    }

    fn stream_endless(&self, req: &Request<()>) -> Reply {
        let (reply, sender) = req.stream(Response::empty(200), 64);
        let gone_seen = self.gone_seen.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match sender.send(b"data: x\n\n") {
                    Ok(()) | Err(StreamError::Full) => std::thread::sleep(Duration::from_millis(5)),
                    Err(StreamError::Gone) => {
                        gone_seen.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
        reply
    }
}

impl App for TestApp {
    type Context = ();

    fn admit(&self, head: &RequestHead) -> Admission<()> {
        if head.path() == "/reject" {
            return Admission::Reject(Response::error(401, "UNAUTHORIZED", "no"));
        }
        let body_limit = if head.path() == "/upload" {
            64 << 20
        } else {
            1024
        };
        Admission::Accept {
            body_limit,
            context: (),
        }
    }

    fn handle(&self, req: Request<()>) -> Reply {
        if let Some(inner) = req.head.path().strip_prefix("/offload") {
            // As an application with a blocking store does: the handler runs on another
            // thread, and whatever it returns (it may defer or stream itself) is the reply.
            let inner = inner.to_owned();
            let (reply, responder) = req.defer();
            let app = self.clone();
            std::thread::spawn(move || responder.reply(app.route(&req, &inner)));
            return reply;
        }
        let path = req.head.path().to_owned();
        self.route(&req, &path)
    }
}

impl TestApp {
    fn route(&self, req: &Request<()>, path: &str) -> Reply {
        match path {
            "/panic" => panic!("handler panic (expected by the test)"),
            "/big" => Reply::Now(Response::json(200, vec![b'x'; BIG])),
            "/echo" => Reply::Now(Response::json(200, req.body.clone())),
            "/upload" => Reply::Now(Response::json(200, req.body.len().to_string().into_bytes())),
            "/defer" => {
                let (reply, responder) = req.defer();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    responder.send(Response::static_json(200, b"{\"deferred\":true}"));
                });
                reply
            }
            "/drop-responder" => req.defer().0,
            "/stream" => Self::stream_ticks(req),
            "/endless" => self.stream_endless(req),
            _ => Reply::Now(Response::error(404, "NOT_FOUND", "nope")),
        }
    }
}

struct Running {
    addr: std::net::SocketAddr,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    fn start(app: Arc<TestApp>, heartbeat_ms: u64) -> Running {
        let server = Server::bind(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: 1,
            sse_heartbeat_ms: heartbeat_ms,
            shutdown_timeout_ms: 3_000,
            ..Config::default()
        })
        .unwrap();
        let addr = server.local_addr();
        let handle = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run(app));
        Running {
            addr,
            handle,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) -> std::io::Result<()> {
        self.handle.shutdown();
        let (tx, rx) = mpsc::channel();
        let t = self.thread.take().expect("running");
        std::thread::spawn(move || {
            let _ = tx.send(t.join());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("server stops in time")
            .expect("no panic")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

#[test]
fn a_panicking_handler_gives_500_and_the_next_request_succeeds() {
    let srv = Running::start(Arc::default(), 15_000);
    let mut c = Client::connect(srv.addr).unwrap();
    let r = c.get("/panic").unwrap();
    assert_eq!(r.status, 500);
    assert!(r.text().contains("INTERNAL_ERROR"));
    assert!(
        !r.text().contains("expected by the test"),
        "no internals leak"
    );
    assert_eq!(c.get("/health/live").unwrap().status, 200);
    let metrics = c.get("/metrics").unwrap().text();
    assert!(metrics.contains("halyard_handler_panics_total 1"));
}

#[test]
fn a_slow_reader_of_10_mib_gets_every_byte_and_does_not_stall_others() {
    let srv = Running::start(Arc::default(), 15_000);
    let mut slow = Client::connect(srv.addr).unwrap();
    slow.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let head = slow.head().unwrap();
    assert_eq!(
        head.header("content-length"),
        Some(BIG.to_string().as_str())
    );
    let mut got = 0usize;
    let mut buf = vec![0u8; 32 * 1024];
    let started = Instant::now();
    let mut checked_other = false;
    while got < BIG {
        let n = slow.read_some(&mut buf).unwrap();
        assert!(n > 0, "closed after {got} bytes");
        assert!(buf[..n].iter().all(|&b| b == b'x'));
        got += n;
        if got < 2 * 1024 * 1024 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if !checked_other && got > 512 * 1024 {
            // While the slow reader has megabytes pending, others are served at once.
            let t = Instant::now();
            let mut other = Client::connect(srv.addr).unwrap();
            assert_eq!(other.get("/health/live").unwrap().status, 200);
            assert!(t.elapsed() < Duration::from_millis(500));
            checked_other = true;
        }
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    assert_eq!(got, BIG);
    assert_eq!(slow.get("/health/live").unwrap().status, 200);
}

#[test]
fn a_large_upload_sent_in_one_go_is_read_to_the_end() {
    // More than a loop reads for one connection in one pass: the rest must be read without
    // waiting for a new readiness event (there is none while the client is blocked).
    let srv = Running::start(Arc::default(), 15_000);
    let mut c = Client::connect(srv.addr).unwrap();
    let size = 24 << 20;
    let head = format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n");
    let mut all = head.into_bytes();
    all.extend(std::iter::repeat_n(b'u', size));
    let started = Instant::now();
    c.send(&all).unwrap();
    let r = c.response().unwrap();
    assert_eq!(r.text(), size.to_string());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn deferred_replies_keep_pipelined_order() {
    let srv = Running::start(Arc::default(), 15_000);
    let mut c = Client::connect(srv.addr).unwrap();
    c.send(
        b"GET /defer HTTP/1.1\r\nHost: t\r\n\r\nGET /health/live HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    )
    .unwrap();
    assert_eq!(c.response().unwrap().body, b"{\"deferred\":true}");
    assert_eq!(c.response().unwrap().body, b"{\"status\":\"ok\"}");
    assert_eq!(c.response().unwrap().body, b"hi");
}

#[test]
fn a_handler_run_on_another_thread_answers_now_later_or_with_a_stream() {
    let srv = Running::start(Arc::default(), 15_000);
    let mut c = Client::connect(srv.addr).unwrap();
    c.send(
        b"GET /offload/defer HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /offload/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
    )
    .unwrap();
    assert_eq!(c.response().unwrap().body, b"{\"deferred\":true}");
    assert_eq!(c.response().unwrap().body, b"hi");
    let streamed = c.get("/offload/stream").unwrap();
    assert_eq!(streamed.status, 200);
    let text = String::from_utf8(streamed.body).unwrap();
    assert_eq!(text.matches("event: tick").count(), 3, "{text}");
    assert_eq!(c.get("/offload/drop-responder").unwrap().status, 500);
}

#[test]
fn a_dropped_responder_answers_500() {
    let srv = Running::start(Arc::default(), 15_000);
    let mut c = Client::connect(srv.addr).unwrap();
    assert_eq!(c.get("/drop-responder").unwrap().status, 500);
    assert_eq!(c.get("/health/live").unwrap().status, 200);
}

#[test]
fn admission_rejects_before_the_body_and_closes() {
    let srv = Running::start(Arc::default(), 15_000);
    let mut c = Client::connect(srv.addr).unwrap();
    c.send(b"POST /reject HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let r = c.response().unwrap();
    assert_eq!(r.status, 401);
    assert!(r.closes());
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn a_chunked_body_over_the_admitted_limit_is_413() {
    let srv = Running::start(Arc::default(), 15_000);
    let mut c = Client::connect(srv.addr).unwrap();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n")
        .unwrap();
    c.send(&[b'a'; 1024]).unwrap();
    c.send(b"\r\n1\r\nb\r\n0\r\n\r\n").unwrap();
    let r = c.response().unwrap();
    assert_eq!(r.status, 413);
    assert!(r.closes());
}

#[test]
fn streams_carry_frames_and_heartbeats_then_end() {
    let srv = Running::start(Arc::default(), 100);
    let mut c = Client::connect(srv.addr).unwrap();
    c.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let head = c.head().unwrap();
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    let mut frames = Vec::new();
    while let Some(chunk) = c.chunk().unwrap() {
        frames.push(String::from_utf8(chunk).unwrap());
    }
    let all = frames.concat();
    assert!(all.contains(": heartbeat\n\n"), "{all:?}");
    for i in 0..3 {
        assert!(all.contains(&format!("id: {i}\nevent: tick\ndata: {{}}\n\n")));
    }
    // The connection stays usable after the stream ends.
    assert_eq!(c.get("/health/live").unwrap().status, 200);
}

#[test]
fn a_client_that_goes_away_is_seen_by_the_producer() {
    let app = Arc::new(TestApp::default());
    let gone = app.gone_seen.clone();
    let srv = Running::start(app, 15_000);
    {
        let mut c = Client::connect(srv.addr).unwrap();
        c.send(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let _ = c.head().unwrap();
        let _ = c.chunk().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while gone.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(gone.load(Ordering::SeqCst), 1, "producer told within 5 s");
}

#[test]
fn shutdown_finishes_a_deferred_request_in_flight() {
    let mut srv = Running::start(Arc::default(), 15_000);
    let mut c = Client::connect(srv.addr).unwrap();
    c.send(b"GET /defer HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    srv.handle.shutdown();
    let r = c.response().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.closes());
    srv.stop().unwrap();
}

#[test]
fn shutdown_ends_open_streams() {
    let mut srv = Running::start(Arc::default(), 15_000);
    let mut c = Client::connect(srv.addr).unwrap();
    c.send(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let _ = c.head().unwrap();
    srv.stop().unwrap();
    // The stream was ended with its last chunk, then the connection closed.
    let rest = c.read_to_close().unwrap();
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}
