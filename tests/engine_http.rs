//! The engine's HTTP/1.1 behaviour, black-box: each test starts the real `halyard` binary on
//! a loopback port, speaks raw HTTP to it, and stops it by PID (the guard's Drop).
//! Every wait is bounded (see `halyard_testkit::client::TIMEOUT`).

use std::path::Path;
use std::time::Duration;

use halyard_testkit::{raise_fd_limit, Client, Halyard};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_halyard"))
}

/// A server without rate limits: these tests send many requests without credentials.
fn start(args: &[&str]) -> Halyard {
    let mut all = vec!["--no-rate-limits"];
    all.extend_from_slice(args);
    Halyard::start(bin(), &all)
}

/// A route that takes a JSON body without a credential (an empty body is a validation
/// error, which is all these tests need: the engine read the body and answered).
const BODY_ROUTE: &str = "/api/v1/auth/login";

fn assert_error(resp: &halyard_testkit::Response, status: u16, code: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    let want = format!("\"code\":\"{code}\"");
    assert!(resp.text().contains(&want), "{} lacks {want}", resp.text());
    assert!(resp.text().starts_with("{\"success\":false,\"error\":{"));
    assert!(resp.header("x-request-id").is_some());
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    for _ in 0..50 {
        let r = c.get("/health/live").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, br#"{"status":"ok"}"#);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r
            .header("date")
            .is_some_and(|d| d.ends_with(" GMT") && d.len() == 29));
        assert!(!r.closes());
    }
}

#[test]
fn hundred_pipelined_requests_in_one_write_answer_in_order() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    let mut batch = Vec::new();
    for i in 0..100 {
        let path = if i % 3 == 0 {
            "/missing"
        } else {
            "/health/live"
        };
        batch.extend_from_slice(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Request-Id: r-{i}\r\n\r\n").as_bytes(),
        );
    }
    c.send(&batch).unwrap();
    for i in 0..100 {
        let r = c.response().unwrap();
        assert_eq!(r.header("x-request-id"), Some(format!("r-{i}").as_str()));
        assert_eq!(r.status, if i % 3 == 0 { 404 } else { 200 });
    }
    assert_eq!(c.get("/health/live").unwrap().status, 200);
}

#[test]
fn chunked_body_is_read_and_the_connection_reused() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    c.send(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\n{\"a\r\n4\r\n\":1}\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .unwrap();
    let r = c.response().unwrap();
    assert_error(&r, 400, "VALIDATION_ERROR");
    assert!(!r.closes());
    assert_eq!(c.get("/health/live").unwrap().status, 200);
}

#[test]
fn framing_violations_are_400_and_close() {
    let h = start(&["--threads", "1"]);
    let cases: &[&[u8]] = &[
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc",
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc",
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET /x HTTP/1.1\nHost: t\n\n",
        b"GET /x HTTP/1.1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        // A Host value that is not host[:port] (RFC 9112 section 3.2).
        b"GET /health/live HTTP/1.1\r\nHost: \xc3\x28\xff\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x:80a\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: user@x\r\n\r\n",
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
    ];
    for case in cases {
        let mut c = Client::connect(h.addr).unwrap();
        c.send(case).unwrap();
        let r = c.response().unwrap();
        assert_error(&r, 400, "BAD_REQUEST");
        assert!(r.closes(), "{}", String::from_utf8_lossy(case));
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "{}",
            String::from_utf8_lossy(case)
        );
    }
}

#[test]
fn earlier_pipelined_requests_are_answered_before_the_bad_one() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    c.send(
        b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n\
          GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    assert_eq!(c.response().unwrap().status, 200);
    assert_eq!(c.response().unwrap().status, 400);
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn long_request_line_is_414() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    let path = "a".repeat(9000);
    c.send(format!("GET /{path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    assert_error(&c.response().unwrap(), 414, "URI_TOO_LONG");
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn large_or_many_headers_are_431() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    let big = "v".repeat(17 * 1024);
    c.send(format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .unwrap();
    assert_error(&c.response().unwrap(), 431, "HEADERS_TOO_LARGE");
    assert!(c.closed_within(Duration::from_secs(3)));

    let mut c = Client::connect(h.addr).unwrap();
    let mut many = String::from("GET / HTTP/1.1\r\nHost: t\r\n");
    for i in 0..101 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    c.send(many.as_bytes()).unwrap();
    assert_error(&c.response().unwrap(), 431, "HEADERS_TOO_LARGE");
}

#[test]
fn slow_head_is_408_then_closed() {
    let h = start(&["--threads", "1", "--header-timeout-ms", "300"]);
    let mut c = Client::connect(h.addr).unwrap();
    c.send(b"GET /health/live HTTP/1.1\r\nHo").unwrap();
    let started = std::time::Instant::now();
    let r = c.response().unwrap();
    assert_error(&r, 408, "REQUEST_TIMEOUT");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn expect_continue_accepted_then_body_read() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    c.send(format!("POST {BODY_ROUTE} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n").as_bytes())
        .unwrap();
    let interim = c.head().unwrap();
    assert_eq!(interim.status, 100);
    c.send(b"{}").unwrap();
    assert_error(&c.response().unwrap(), 400, "VALIDATION_ERROR");
}

#[test]
fn expect_continue_rejected_gets_the_final_status_at_once() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    let too_big = 2 * 1024 * 1024;
    c.send(format!("POST {BODY_ROUTE} HTTP/1.1\r\nHost: t\r\nContent-Length: {too_big}\r\nExpect: 100-continue\r\n\r\n").as_bytes())
        .unwrap();
    let r = c.response().unwrap();
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    assert!(r.closes());
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn one_byte_over_the_body_limit_is_413_before_the_body() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    c.send(
        format!("POST {BODY_ROUTE} HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let r = c.response().unwrap();
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn head_has_length_but_no_body() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    c.send(b"HEAD /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = c.head().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("15"));
    // The next response follows directly: no body bytes were sent for HEAD.
    let next = c.get("/health/live").unwrap();
    assert_eq!(next.status, 200);
}

#[test]
fn wrong_method_on_a_known_path_is_405_with_allow() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    c.send(b"DELETE /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = c.response().unwrap();
    assert_error(&r, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[test]
fn http10_closes_unless_it_asks_for_keep_alive() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    c.send(b"GET /health/live HTTP/1.0\r\n\r\n").unwrap();
    let r = c.response().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.closes());
    assert!(c.closed_within(Duration::from_secs(3)));

    let mut c = Client::connect(h.addr).unwrap();
    c.send(b"GET /health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let r = c.response().unwrap();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(c.get("/health/live").unwrap().status, 200);
}

#[test]
fn request_id_is_echoed_when_sane_and_made_otherwise() {
    let h = start(&["--threads", "1"]);
    let mut c = Client::connect(h.addr).unwrap();
    c.send(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc-123\r\n\r\n")
        .unwrap();
    assert_eq!(
        c.response().unwrap().header("x-request-id"),
        Some("abc-123")
    );
    c.send(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Request-Id: <bad id>\r\n\r\n")
        .unwrap();
    let id = c
        .response()
        .unwrap()
        .header("x-request-id")
        .unwrap()
        .to_string();
    assert!(id.starts_with("req_"), "{id}");
}

#[test]
fn a_thousand_concurrent_connections_are_served() {
    raise_fd_limit();
    let h = start(&["--threads", "2"]);
    let mut clients: Vec<Client> = (0..1000)
        .map(|_| Client::connect(h.addr).unwrap())
        .collect();
    for c in clients.iter_mut() {
        c.send(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    for c in clients.iter_mut() {
        assert_eq!(c.response().unwrap().status, 200);
    }
    let mut m = Client::connect(h.addr).unwrap();
    let metrics = m.get("/metrics").unwrap().text();
    assert!(
        metrics.contains("halyard_open_connections 1001"),
        "{metrics}"
    );
}

#[test]
fn connections_over_the_cap_are_closed_at_accept_and_counted() {
    let h = start(&["--threads", "1", "--max-connections", "2"]);
    let mut a = Client::connect(h.addr).unwrap();
    let mut b = Client::connect(h.addr).unwrap();
    assert_eq!(a.get("/health/live").unwrap().status, 200);
    assert_eq!(b.get("/health/live").unwrap().status, 200);
    let mut refused = Client::connect(h.addr).unwrap();
    assert!(refused.closed_within(Duration::from_secs(3)));
    let metrics = a.get("/metrics").unwrap().text();
    assert!(
        metrics.contains("halyard_accept_refused_total 1"),
        "{metrics}"
    );
}

#[test]
fn graceful_shutdown_finishes_the_request_in_flight() {
    let mut h = start(&["--threads", "1", "--shutdown-timeout-ms", "5000"]);
    let mut c = Client::connect(h.addr).unwrap();
    c.send(format!("POST {BODY_ROUTE} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{{\"a\"").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    h.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    // New connections are no longer accepted: refused, or closed without an answer.
    if let Ok(mut probe) = Client::connect(h.addr) {
        let _ = probe.send(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(probe.closed_within(Duration::from_secs(2)));
    }
    c.send(b":1234}").unwrap();
    let r = c.response().unwrap();
    assert_error(&r, 400, "VALIDATION_ERROR");
    assert!(r.closes());
    let status = h.wait_exit(Duration::from_secs(5)).expect("exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn shutdown_deadline_cuts_a_request_that_never_completes() {
    let mut h = start(&["--threads", "1", "--shutdown-timeout-ms", "300"]);
    let mut c = Client::connect(h.addr).unwrap();
    c.send(
        format!("POST {BODY_ROUTE} HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01").as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    h.signal(libc::SIGTERM);
    let status = h
        .wait_exit(Duration::from_secs(5))
        .expect("exits by the deadline");
    assert!(status.success());
    assert!(c.closed_within(Duration::from_secs(2)));
}

/// The option mimalloc prints for its arena commit mode, as the binary starts.
fn arena_eager_commit(env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(bin())
        .arg("--version")
        .env("MIMALLOC_VERBOSE", "1")
        .envs(env.iter().copied())
        .output()
        .expect("runs");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("option 'arena_eager_commit':"))
        .unwrap_or_else(|| panic!("mimalloc printed no arena option:\n{stderr}"));
    line.trim().to_owned()
}

#[test]
fn allocator_commits_its_arena_lazily_unless_the_operator_says_otherwise() {
    // Set before mimalloc's own constructor, or it would have no effect (src/main.rs).
    assert_eq!(arena_eager_commit(&[]), "option 'arena_eager_commit': 0");
    assert_eq!(
        arena_eager_commit(&[("MIMALLOC_ARENA_EAGER_COMMIT", "1")]),
        "option 'arena_eager_commit': 1"
    );
}

/// `halyard serve --threads 1` under an open-file limit of `soft`/`hard`, its stderr kept.
fn start_limited(soft: u32, hard: u32) -> Halyard {
    let prelude = format!("ulimit -S -n {soft} && ulimit -H -n {hard} || exit 1");
    let opts = halyard_testkit::StartOptions {
        args: &["--threads", "1", "--no-rate-limits"],
        prelude: Some(&prelude),
        capture_stderr: true,
        ..Default::default()
    };
    Halyard::start_fresh(bin(), opts)
}

/// The soft and hard open-file limits of process `pid`, from /proc.
fn open_file_limits(pid: &str) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit_and_a_low_one_is_reported() {
    // A hard limit may only be lowered without privileges: 4,096, or less if this
    // machine's is lower.
    let hard = match open_file_limits("self").1.as_str() {
        "unlimited" => 4096,
        n => n.parse::<u32>().expect("a number").min(4096),
    };
    assert!(
        hard > 64,
        "this machine's open-file hard limit is only {hard}"
    );
    let h = start_limited(64, hard);
    let raised = open_file_limits(&h.pid().to_string());
    assert_eq!(raised, (hard.to_string(), hard.to_string()));
    let stderr = h.stderr_until("open-file limit").join("\n");
    assert!(
        stderr.contains(&format!("the open-file limit is {hard}"))
            && stderr.contains("--max-connections"),
        "{stderr}"
    );
}

#[test]
fn out_of_descriptors_accepting_pauses_and_resumes_without_a_new_client() {
    // About 12 descriptors are the server's own (some 22 on PostgreSQL), so some 35 of these
    // 60 get accepted; the rest wait in the listen queue.
    let h = start_limited(48, 48);
    let mut clients: Vec<Client> = (0..60)
        .map(|_| Client::connect(h.addr).expect("connect"))
        .collect();
    assert_eq!(clients[0].get("/health/live").unwrap().status, 200);
    // Only once the server has run out: a slow server still accepting when clients close
    // would take every connection, each closed one freeing its descriptor, and never pause.
    let mut stderr = h.stderr_until("cannot accept connections");
    // Closing 40 frees descriptors; nobody new connects, and yet the last client, queued
    // all along, is served (within the client's 10 s timeout; the retry is 50 ms).
    let mut last = clients.pop().expect("last");
    drop(clients.drain(..40));
    assert_eq!(last.get("/health/live").unwrap().status, 200);
    stderr.extend(h.stderr_until("accepting connections again"));
    let paused = stderr
        .iter()
        .filter(|l| l.contains("cannot accept connections (Too many open files"))
        .count();
    let fds = std::fs::read_dir(format!("/proc/{}/fd", h.pid())).map_or(0, Iterator::count);
    assert_eq!(
        paused,
        1,
        "said once per pause: {stderr:#?}; the server holds {fds} descriptors; {}",
        last.get("/metrics").map(|r| r.text()).unwrap_or_default()
    );
    assert!(stderr
        .iter()
        .any(|l| l.contains("accepting connections again")));
    let metrics = last.get("/metrics").unwrap();
    assert!(
        metrics.text().contains("halyard_accept_paused_total 1\n"),
        "{}",
        metrics.text()
    );
}

#[test]
fn a_second_server_on_a_port_in_use_fails_to_start() {
    let h = start(&["--threads", "2"]);
    let listen = h.addr.to_string();
    let dir = halyard_testkit::temp_dir("port-in-use");
    let data_dir = dir.to_str().expect("utf-8 temp dir");
    let (status, stderr) = halyard_testkit::run_to_exit(
        bin(),
        &["serve", "--listen", &listen, "--data-dir", data_dir],
        &[],
        Duration::from_secs(20),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {listen}")) && stderr.contains("in use"),
        "{stderr}"
    );
    // Every connection still reaches the first server.
    for _ in 0..20 {
        let mut c = Client::connect(h.addr).unwrap();
        assert_eq!(c.get("/health/live").unwrap().status, 200);
    }
}
