//! Tasks on the event loop, in-process: timers, wake-ups from other threads, a panicking
//! task, a watched client that goes away, and outbound exchanges through the loop's client
//! (keep-alive reuse, a refused connection, a first-byte timeout) against the testkit's
//! fake upstream. Over loopback, bounded in time; every server is shut down by its handle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_engine::client::{ExchangeId, Fetch, FetchTimeouts, HttpEvent, Reach, Url};
use halyard_engine::{
    Admission, App, Config, Cx, Event, Reply, Request, RequestHead, Responder, Response, Server,
    ShutdownHandle, Status, Task,
};
use halyard_testkit::{Client, FakeUpstream};

#[derive(Default)]
struct TaskApp {
    gone_seen: Arc<AtomicUsize>,
}

/// Answers after a timer and a wake-up from another thread.
struct TimerThenWake(Option<Responder>);

impl Task for TimerThenWake {
    fn on_event(&mut self, event: Event, cx: &mut Cx<'_>) -> Status {
        match event {
            Event::Start => cx.set_timer(Duration::from_millis(50), 1),
            Event::Timer(1) => {
                let h = cx.handle();
                std::thread::spawn(move || h.wake(7));
            }
            Event::Wake(7) => {
                if let Some(r) = self.0.take() {
                    r.send(Response::json(200, b"\"timer, then wake\"".to_vec()));
                }
                return Status::Done;
            }
            _ => {}
        }
        Status::Pending
    }
}

/// Fetches a URL and answers with the status and body it got (or the error).
struct Fetcher {
    responder: Option<Responder>,
    fetch: Option<Fetch>,
    id: Option<ExchangeId>,
    status: u16,
    body: Vec<u8>,
}

impl Task for Fetcher {
    fn on_event(&mut self, event: Event, cx: &mut Cx<'_>) -> Status {
        let answer = match event {
            Event::Start => {
                let fetch = self.fetch.take().expect("a fetch");
                self.id = Some(cx.fetch(fetch));
                return Status::Pending;
            }
            Event::Http(id, _) if Some(id) != self.id => return Status::Pending,
            Event::Http(_, HttpEvent::Head(h)) => {
                self.status = h.status;
                return Status::Pending;
            }
            Event::Http(_, HttpEvent::Body(b)) => {
                self.body.extend_from_slice(&b);
                return Status::Pending;
            }
            Event::Http(_, HttpEvent::End) => {
                format!("{} {}", self.status, String::from_utf8_lossy(&self.body))
            }
            Event::Http(_, HttpEvent::Failed(e)) => format!("failed: {e}"),
            _ => return Status::Pending,
        };
        if let Some(r) = self.responder.take() {
            r.send(Response::json(200, serde_json::to_vec(&answer).unwrap()));
        }
        Status::Done
    }
}

/// Counts its client's departure.
struct Watcher(Arc<AtomicUsize>, Option<Responder>);

impl Task for Watcher {
    fn on_event(&mut self, event: Event, cx: &mut Cx<'_>) -> Status {
        match event {
            Event::Start => {
                if let Some(r) = &self.1 {
                    r.watch_gone(cx.handle(), 3);
                }
                Status::Pending
            }
            Event::Wake(3) => {
                self.0.fetch_add(1, Ordering::SeqCst);
                Status::Done
            }
            _ => Status::Pending,
        }
    }
}

struct Panics(#[allow(dead_code)] Responder);

impl Task for Panics {
    fn on_event(&mut self, _: Event, _: &mut Cx<'_>) -> Status {
        panic!("task panic (expected by the test)")
    }
}

fn fetch_of(body: &[u8]) -> Fetch {
    let v: serde_json::Value = serde_json::from_slice(body).expect("json");
    Fetch {
        method: "POST".into(),
        url: Url::parse(v["url"].as_str().expect("url")).expect("a valid url"),
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::to_vec(&serde_json::json!({"model": v["model"]})).unwrap(),
        timeouts: FetchTimeouts {
            first_byte: Duration::from_millis(v["firstByteMs"].as_u64().unwrap_or(5_000)),
            ..FetchTimeouts::default()
        },
        max_body: 1 << 20,
        reach: match v["reach"].as_str() {
            Some("public") => Reach::Public(Vec::new().into()),
            Some(block) => Reach::Public(vec![block.parse().expect("a CIDR block")].into()),
            None => Reach::Any,
        },
    }
}

impl App for TaskApp {
    type Context = ();

    fn admit(&self, _: &RequestHead) -> Admission<()> {
        Admission::Accept {
            body_limit: 4096,
            context: (),
        }
    }

    fn handle(&self, req: Request<()>) -> Reply {
        let (reply, responder) = req.defer();
        let task: Box<dyn Task> = match req.head.path() {
            "/timer" => Box::new(TimerThenWake(Some(responder))),
            "/fetch" => Box::new(Fetcher {
                responder: Some(responder),
                fetch: Some(fetch_of(&req.body)),
                id: None,
                status: 0,
                body: Vec::new(),
            }),
            "/watch" => Box::new(Watcher(self.gone_seen.clone(), Some(responder))),
            _ => Box::new(Panics(responder)),
        };
        req.spawn(task);
        reply
    }
}

struct Running {
    addr: std::net::SocketAddr,
    handle: ShutdownHandle,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    fn start(app: Arc<TaskApp>) -> Running {
        let server = Server::bind(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            threads: 1,
            shutdown_timeout_ms: 2_000,
            ..Config::default()
        })
        .unwrap();
        let addr = server.local_addr();
        let handle = server.shutdown_handle();
        let thread = Some(std::thread::spawn(move || server.run(app)));
        Running {
            addr,
            handle,
            thread,
        }
    }

    fn post(&self, path: &str, body: &serde_json::Value) -> String {
        let mut c = Client::connect(self.addr).unwrap();
        let r = post(&mut c, path, &body.to_string());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        serde_json::from_slice(&r.body).expect("a JSON string")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn post(c: &mut Client, path: &str, body: &str) -> halyard_testkit::Response {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.send(&[head.as_bytes(), body.as_bytes()].concat())
        .unwrap();
    c.response().unwrap()
}

#[test]
fn a_task_gets_its_timer_and_a_wake_from_another_thread() {
    let s = Running::start(Arc::default());
    assert_eq!(s.post("/timer", &serde_json::json!({})), "timer, then wake");
}

#[test]
fn a_panicking_task_drops_its_responder_as_500_and_the_loop_goes_on() {
    let s = Running::start(Arc::default());
    let mut c = Client::connect(s.addr).unwrap();
    let r = post(&mut c, "/panic", "{}");
    assert_eq!(r.status, 500);
    assert_eq!(s.post("/timer", &serde_json::json!({})), "timer, then wake");
}

#[test]
fn a_watching_task_learns_that_its_client_went_away() {
    let app = Arc::new(TaskApp::default());
    let s = Running::start(app.clone());
    let mut c = Client::connect(s.addr).unwrap();
    c.send(b"POST /watch HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.gone_seen.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(app.gone_seen.load(Ordering::SeqCst), 1);
}

#[test]
fn exchanges_reuse_one_pooled_connection_per_origin() {
    let up = FakeUpstream::start();
    let s = Running::start(Arc::default());
    let url = format!("{}/chat/completions", up.base_url());
    for _ in 0..3 {
        let got = s.post(
            "/fetch",
            &serde_json::json!({"url": url, "model": "fake:tokens=2;framing=length"}),
        );
        assert!(got.starts_with("200 "), "{got}");
        assert!(got.contains("\"w0\"") && got.contains("[DONE]"), "{got}");
    }
    assert_eq!(up.connections(), 1, "one connection carried all three");
}

#[test]
fn a_refused_connection_and_a_late_head_fail_the_exchange() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let s = Running::start(Arc::default());
    let refused = s.post(
        "/fetch",
        &serde_json::json!({"url": format!("http://127.0.0.1:{port}/v1/x"), "model": "m"}),
    );
    assert_eq!(refused, "failed: connection refused");
    let up = FakeUpstream::start();
    let started = Instant::now();
    let late = s.post(
        "/fetch",
        &serde_json::json!({
            "url": format!("{}/chat/completions", up.base_url()),
            "model": "fake:head_delay_ms=3000",
            "firstByteMs": 200,
        }),
    );
    assert_eq!(late, "failed: timed out waiting for the response");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_public_only_exchange_never_connects_to_loopback_by_address_or_by_name() {
    let up = FakeUpstream::start();
    let port = up
        .base_url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/v1")
        .to_string();
    let s = Running::start(Arc::default());
    for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"] {
        let refused = s.post(
            "/fetch",
            &serde_json::json!({"url": format!("http://{host}:{port}/v1/chat/completions"),
                                "model": "m", "reach": "public"}),
        );
        assert!(
            refused.starts_with("failed: ") && refused.contains("not a public address"),
            "{host}: {refused}"
        );
    }
    // The operator's allow-list opens the block; the answer is the upstream's.
    let allowed = s.post(
        "/fetch",
        &serde_json::json!({"url": format!("{}/chat/completions", up.base_url()),
                            "model": "fake:tokens=1", "reach": "127.0.0.0/8"}),
    );
    assert!(allowed.starts_with("200"), "{allowed}");
}
