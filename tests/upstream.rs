//! The `openai` provider against a misbehaving upstream: the real binary on loopback calls
//! the testkit's scriptable [`FakeUpstream`] (its script is the agent's model name) and the
//! tests check what the client of the API sees, what is stored and what happened to the
//! upstream connection: refused and reset connections (and their retries), TLS, timeouts,
//! error statuses, broken and endless streams, keep-alive, cancellation, graceful shutdown,
//! and a stream cut short by a crash.
//!
//! Tests that need no server flags share the binary's server (`common::server`), each with
//! its own tenant and upstream; the others start their own, stopped by its guard. Every wait
//! is bounded (the testkit client's read timeout, or a poll with a deadline).

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{bin, err, ok, tenant, tenant_on, unique, Tenant, ENV};
use halyard_testkit::{
    temp_dir, Client, FakeUpstream, Halyard, Response, StartOptions, UpstreamOptions,
};
use serde_json::{json, Value};

/// The project secret holding the upstream API key.
const KEY_SECRET: &str = "UPSTREAM_KEY";
/// Its value.
const API_KEY: &str = "sk-upstream-test";
/// The agent's system prompt.
const INSTRUCTIONS: &str = "Be brief.";

// ---- servers, projects, turns ----

/// A server of its own with `args` (stopped when the guard drops).
fn start(args: &[&str]) -> Halyard {
    Halyard::start_with_env(bin(), args, ENV)
}

/// A server of its own on `dir` (kept), with `args`.
fn start_in(dir: &std::path::Path, args: &[&str]) -> Halyard {
    Halyard::start_opts(
        bin(),
        dir,
        StartOptions {
            args,
            env: ENV,
            ..StartOptions::default()
        },
    )
}

/// Removes a directory when the test ends, however it ends.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The agent `gpt` calling `base_url` with `model` (the fake upstream's script).
fn agent_doc(base_url: &str, model: &str) -> Value {
    json!({
        "name": "gpt",
        "instructions": INSTRUCTIONS,
        "model": {"provider": "openai", "model": model, "baseUrl": base_url, "apiKeySecret": KEY_SECRET},
    })
}

/// A project whose entry agent `gpt` calls `base_url` with `model`; its id.
fn project(t: &Tenant, base_url: &str, model: &str) -> String {
    let pid = t.project_with(&json!({"name": unique("up"), "entryAgentName": "gpt"}));
    ok(
        &t.post(
            &format!("/api/projects/{pid}/secrets"),
            &json!({"name": KEY_SECRET, "value": API_KEY}),
        ),
        201,
    );
    ok(
        &t.post(
            &format!("/api/projects/{pid}/agents"),
            &agent_doc(base_url, model),
        ),
        201,
    );
    pid
}

/// Points agent `gpt` of `pid` at `model` (sessions keep their agent: their next turn uses
/// it).
fn set_model(t: &Tenant, pid: &str, base_url: &str, model: &str) {
    ok(
        &t.send(
            "PUT",
            &format!("/api/projects/{pid}/agents/gpt"),
            &agent_doc(base_url, model),
        ),
        200,
    );
}

/// A new session of `pid` (its entry agent); its id.
fn session(t: &Tenant, pid: &str) -> String {
    t.session(pid)["id"]
        .as_str()
        .expect("session id")
        .to_string()
}

/// The body of an agent turn: in session `sid` when given, else a new one.
fn turn_body(pid: &str, sid: Option<&str>, message: &str) -> Value {
    let mut body = json!({"projectId": pid, "message": message});
    if let Some(sid) = sid {
        body["sessionId"] = json!(sid);
    }
    body
}

/// A sync agent turn (`POST /api/v1/chat/agent`).
fn turn(t: &Tenant, pid: &str, sid: Option<&str>, message: &str) -> Response {
    t.post("/api/v1/chat/agent", &turn_body(pid, sid, message))
}

/// The `error.message` of an error envelope.
fn message_of(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {v}"))
        .to_string()
}

/// The session's messages as (role, content), oldest first.
fn messages(t: &Tenant, pid: &str, sid: &str) -> Vec<(String, String)> {
    let v = ok(
        &t.get(&format!(
            "/api/projects/{pid}/sessions/{sid}/messages?limit=200"
        )),
        200,
    );
    role_contents(&v)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(r, c)| (r.to_string(), c.to_string()))
        .collect()
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `within`.
fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback address nothing listens on (bound, then released).
fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

// ---- event streams ----

/// One SSE event.
#[derive(Debug, Clone, PartialEq)]
struct Event {
    id: u64,
    name: String,
    data: Value,
}

fn parse_event(block: &str) -> Event {
    let mut id = None;
    let mut name = None;
    let mut data = None;
    for line in block.split('\n') {
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().expect("event id"));
        } else if let Some(v) = line.strip_prefix("event: ") {
            name = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(v).expect("event data JSON"));
        }
    }
    match (id, name, data) {
        (Some(id), Some(name), Some(data)) => Event { id, name, data },
        _ => panic!("not an id/event/data block: {block:?}"),
    }
}

/// Reads events until the stream's last chunk, or until `stop` holds after an event.
/// Each read is bounded by the client's timeout.
fn read_events(c: &mut Client, mut stop: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
    let mut events = Vec::new();
    let mut pending = String::new();
    while let Some(chunk) = c.chunk().expect("a chunk of the event stream") {
        pending.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            let block = &block[..end];
            if !block.starts_with(':') {
                events.push(parse_event(block));
            }
        }
        if stop(&events) {
            break;
        }
    }
    events
}

/// Opens `POST /api/v1/chat/agent/stream`; the connection (after the head) and the head.
fn open_stream(t: &Tenant, body: &Value) -> (Client, Response) {
    let mut c = Client::connect(t.addr).expect("connect");
    c.send(
        &t.req("POST", "/api/v1/chat/agent/stream")
            .json(body)
            .bytes(),
    )
    .expect("send");
    let head = c.head().expect("stream head");
    (c, head)
}

/// Opens a stream that must start (200).
fn stream(t: &Tenant, body: &Value) -> (Client, Response) {
    let (c, head) = open_stream(t, body);
    assert_eq!(head.status, 200, "{:?}", head.headers);
    (c, head)
}

fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

fn tokens(events: &[Event]) -> usize {
    events.iter().filter(|e| e.name == "token").count()
}

/// The deltas of the `token` events, concatenated.
fn said(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.name == "token")
        .map(|e| e.data["delta"].as_str().expect("delta"))
        .collect()
}

fn session_of(events: &[Event]) -> String {
    assert_eq!(events.first().map(|e| e.name.as_str()), Some("session"));
    events[0].data["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_string()
}

fn assert_sequential(events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id, i as u64 + 1, "{events:?}");
    }
}

/// The `error` event that ends `events`: its code and message.
fn final_error(events: &[Event]) -> (String, String) {
    let last = events.last().expect("some events");
    assert_eq!(last.name, "error", "{events:?}");
    (
        last.data["code"].as_str().expect("code").to_string(),
        last.data["message"].as_str().expect("message").to_string(),
    )
}

// ---- connecting ----

#[test]
fn a_refused_connection_is_503_and_a_retry_reaches_an_upstream_that_came_up_later() {
    let t = tenant();
    let nobody = free_addr();
    let pid = project(&t, &format!("http://{nobody}/v1"), "fake:tokens=3");
    let sid = session(&t, &pid);
    let sent = Instant::now();
    let v = err(
        &turn(&t, &pid, Some(&sid), "hi"),
        503,
        "SERVICE_UNAVAILABLE",
    );
    let took = sent.elapsed();
    assert!(message_of(&v).contains("connection refused"), "{v}");
    // Tried three times: 100 ms, then 400 ms of backoff.
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // The user message is stored, no reply.
    assert_eq!(messages(&t, &pid, &sid), pairs(&[("user", "hi")]));

    // An upstream that comes up between the first attempt and the retries is reached.
    let later = free_addr();
    let pid = project(&t, &format!("http://{later}/v1"), "fake:tokens=3");
    let sid = session(&t, &pid);
    let mut c = Client::connect(t.addr).expect("connect");
    c.send(
        &t.req("POST", "/api/v1/chat/agent")
            .json(&turn_body(&pid, Some(&sid), "hi"))
            .bytes(),
    )
    .expect("send");
    // The user message is stored just before the first attempt: once it shows, that
    // attempt has been refused (nothing listens yet).
    wait_until(Duration::from_secs(5), "the turn started", || {
        !messages(&t, &pid, &sid).is_empty()
    });
    std::thread::sleep(Duration::from_millis(120));
    let up = FakeUpstream::bind(later, UpstreamOptions::default())
        .unwrap_or_else(|e| panic!("rebind the reserved port: {e}"));
    let r = c.response().expect("the turn's answer");
    let v = ok(&r, 200);
    assert_eq!(v["response"], json!("w0 w1 w2"));
    assert_eq!(up.connections(), 1);
    assert_eq!(up.requests().len(), 1);
}

/// `reset_after=0` writes the `200` head, then resets: nothing was relayed yet.
#[test]
fn a_reset_before_the_first_token_is_retried_twice_then_503() {
    let t = tenant();
    let up = FakeUpstream::start();
    let base = up.base_url();
    let pid = project(&t, &base, "fake:reset_after=0");
    let sid = session(&t, &pid);
    let v = err(
        &turn(&t, &pid, Some(&sid), "one"),
        503,
        "SERVICE_UNAVAILABLE",
    );
    assert!(message_of(&v).contains("connection reset"), "{v}");
    assert_eq!(up.connections(), 3, "the first attempt and two retries");
    assert_eq!(up.requests().len(), 3);
    // The session takes its next turn normally.
    set_model(&t, &pid, &base, "fake:tokens=3");
    let v = ok(&turn(&t, &pid, Some(&sid), "two"), 200);
    assert_eq!(v["response"], json!("w0 w1 w2"));
    assert_eq!(
        messages(&t, &pid, &sid),
        pairs(&[("user", "one"), ("user", "two"), ("assistant", "w0 w1 w2")])
    );
}

/// A self-signed certificate for 127.0.0.1 and localhost: PEM certificate, PEM key.
fn self_signed() -> (String, String) {
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).expect("certificate");
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

#[test]
fn an_untrusted_certificate_is_503_and_a_trusted_one_streams() {
    let (cert, key) = self_signed();
    let up = FakeUpstream::start_with(UpstreamOptions {
        tls: Some((cert.clone().into_bytes(), key.into_bytes())),
    });
    let base = up.base_url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    // The shared server trusts the platform roots only.
    let t = tenant();
    let pid = project(&t, &base, "fake:tokens=3");
    let v = err(&turn(&t, &pid, None, "hi"), 503, "SERVICE_UNAVAILABLE");
    assert!(message_of(&v).contains("TLS failed"), "{v}");
    assert!(up.requests().is_empty());

    // `SSL_CERT_FILE` names the roots (an empty `SSL_CERT_DIR` keeps the environment's
    // directory out, so the file is the only source).
    let dir = DirGuard(temp_dir("upstream-ca"));
    let pem = dir.0.join("ca.pem");
    std::fs::write(&pem, &cert).expect("write the certificate");
    let pem = pem.to_str().expect("utf-8 path");
    let env = [ENV[0], ("SSL_CERT_FILE", pem), ("SSL_CERT_DIR", "")];
    let h = Halyard::start_fresh(
        bin(),
        StartOptions {
            env: &env,
            ..StartOptions::default()
        },
    );
    let t = tenant_on(h.addr, false);
    let pid = project(&t, &base, "fake:tokens=3");
    let (mut c, _) = stream(&t, &turn_body(&pid, None, "hi"));
    let events = read_events(&mut c, |_| false);
    assert_eq!(
        names(&events),
        ["session", "token", "token", "token", "done"]
    );
    assert_eq!(said(&events), "w0 w1 w2");
    assert_eq!(up.requests().len(), 1);
}

// ---- timeouts ----

#[test]
fn no_response_head_within_the_provider_timeout_is_503_timed_out() {
    let h = start(&["--provider-timeout-ms", "300"]);
    let t = tenant_on(h.addr, false);
    let up = FakeUpstream::start();
    let pid = project(&t, &up.base_url(), "fake:head_delay_ms=5000");
    let sent = Instant::now();
    let v = err(&turn(&t, &pid, None, "hi"), 503, "SERVICE_UNAVAILABLE");
    let took = sent.elapsed();
    assert!(
        message_of(&v).contains("timed out waiting for the response"),
        "{v}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // A timeout is not retried.
    assert_eq!(up.connections(), 1);
}

#[test]
fn a_stream_that_never_ends_is_cut_at_the_total_timeout() {
    let h = start(&["--provider-total-timeout-ms", "800"]);
    let t = tenant_on(h.addr, false);
    let up = FakeUpstream::start();
    let pid = project(&t, &up.base_url(), "fake:forever;delay_ms=20");
    let sent = Instant::now();
    let (mut c, _) = stream(&t, &turn_body(&pid, None, "hi"));
    let events = read_events(&mut c, |_| false);
    let took = sent.elapsed();
    assert!(tokens(&events) >= 5, "{:?}", names(&events));
    let (code, message) = final_error(&events);
    assert_eq!(code, "SERVICE_UNAVAILABLE");
    assert!(message.contains("total time"), "{message}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_sequential(&events);
    wait_until(Duration::from_secs(4), "upstream connection closed", || {
        up.open_connections() == 0
    });
}

#[test]
fn a_slow_but_steady_upstream_is_not_cut() {
    // Every 5 ms a 7-byte piece: no silence reaches the 300 ms provider timeout, though the
    // whole answer takes longer than that.
    let h = start(&["--provider-timeout-ms", "300"]);
    let t = tenant_on(h.addr, false);
    let up = FakeUpstream::start();
    let pid = project(&t, &up.base_url(), "fake:trickle=7;delay_ms=5");
    let sent = Instant::now();
    let v = ok(&turn(&t, &pid, None, "hi"), 200);
    let took = sent.elapsed();
    assert_eq!(v["response"], json!("w0 w1 w2"));
    assert!(took > Duration::from_millis(300), "{took:?}");
}

// ---- error answers ----

#[test]
fn upstream_error_statuses_are_503_and_429_keeps_retry_after() {
    let t = tenant();
    let up = FakeUpstream::start();
    let base = up.base_url();
    let pid = project(&t, &base, "fake:tokens=3");
    for status in [401, 404, 500] {
        set_model(&t, &pid, &base, &format!("fake:status={status}"));
        let v = err(&turn(&t, &pid, None, "hi"), 503, "SERVICE_UNAVAILABLE");
        let m = message_of(&v);
        assert!(m.contains(&format!("HTTP {status}")), "{m}");
        assert!(m.contains(&format!("fake status {status}")), "{m}");
        // The stream route answers the same: its stream has not started.
        let r = t.post("/api/v1/chat/agent/stream", &turn_body(&pid, None, "hi"));
        let v = err(&r, 503, "SERVICE_UNAVAILABLE");
        assert!(message_of(&v).contains(&format!("HTTP {status}")), "{v}");
    }
    set_model(&t, &pid, &base, "fake:status=429;retry_after=7");
    let r = turn(&t, &pid, None, "hi");
    let v = err(&r, 429, "RATE_LIMIT_EXCEEDED");
    assert!(message_of(&v).contains("HTTP 429"), "{v}");
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(v["retryAfterMs"], json!(7000), "{v}");
}

// ---- broken streams ----

#[test]
fn a_malformed_or_overlong_line_after_a_token_ends_the_stream_with_an_error() {
    let t = tenant();
    let up = FakeUpstream::start();
    let base = up.base_url();
    // Both cases run before anything is asserted, so that a failure shows both.
    let seen: Vec<(&str, &str, Vec<Event>, Value)> = [
        ("fake:malformed", "invalid JSON"),
        ("fake:long_line=1048576", "malformed"),
    ]
    .into_iter()
    .map(|(model, why)| {
        let pid = project(&t, &base, model);
        let (mut c, _) = stream(&t, &turn_body(&pid, None, "one"));
        let events = read_events(&mut c, |_| false);
        // The session takes another turn.
        let sid = session_of(&events);
        set_model(&t, &pid, &base, "fake:tokens=3");
        let next = ok(&turn(&t, &pid, Some(&sid), "two"), 200);
        (model, why, events, next)
    })
    .collect();
    for (model, why, events, next) in seen {
        assert_eq!(names(&events), ["session", "token", "error"], "{model}");
        assert_sequential(&events);
        assert_eq!(
            events[1].data,
            json!({"delta": "w0", "index": 0}),
            "{model}"
        );
        let (code, message) = final_error(&events);
        assert_eq!(code, "SERVICE_UNAVAILABLE", "{model}");
        assert!(message.contains(why), "{model}: {message}");
        assert_eq!(next["response"], json!("w0 w1 w2"), "{model}");
    }
}

#[test]
fn a_connection_dropped_mid_stream_ends_with_an_error_and_stores_no_reply() {
    let t = tenant();
    let up = FakeUpstream::start();
    let base = up.base_url();
    let pid = project(&t, &base, "fake:tokens=5;drop_after=2");
    let (mut c, _) = stream(&t, &turn_body(&pid, None, "one"));
    let events = read_events(&mut c, |_| false);
    assert_eq!(names(&events), ["session", "token", "token", "error"]);
    assert_eq!(said(&events), "w0 w1");
    let (code, _) = final_error(&events);
    assert_eq!(code, "SERVICE_UNAVAILABLE");
    // Not retried: a token was relayed.
    assert_eq!(up.connections(), 1);
    let sid = session_of(&events);
    assert_eq!(messages(&t, &pid, &sid), pairs(&[("user", "one")]));
    set_model(&t, &pid, &base, "fake:tokens=3");
    let v = ok(&turn(&t, &pid, Some(&sid), "two"), 200);
    assert_eq!(v["response"], json!("w0 w1 w2"));
    assert_eq!(
        messages(&t, &pid, &sid),
        pairs(&[("user", "one"), ("user", "two"), ("assistant", "w0 w1 w2")])
    );
}

// ---- connections ----

/// The (role, content) of each item of `v["messages"]` (a stored session's, or a request's).
fn role_contents(v: &Value) -> Vec<(String, String)> {
    v["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages: {v}"))
        .iter()
        .map(|m| {
            (
                m["role"].as_str().expect("role").to_string(),
                m["content"].as_str().expect("content").to_string(),
            )
        })
        .collect()
}

/// The (role, content) of the messages of a request the upstream received.
fn sent_messages(body: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(body).expect("request body JSON");
    assert_eq!(v["stream"], json!(true), "{v}");
    role_contents(&v)
}

#[test]
fn sequential_turns_reuse_one_upstream_connection_and_send_the_growing_history() {
    let t = tenant();
    let up = FakeUpstream::start();
    let pid = project(&t, &up.base_url(), "fake:tokens=3");
    let sid = session(&t, &pid);
    // One client connection: its turns run on one event loop, and each loop has its own
    // pool of upstream connections.
    let mut c = Client::connect(t.addr).expect("connect");
    for m in ["one", "two", "three"] {
        let r = t
            .req("POST", "/api/v1/chat/agent")
            .json(&turn_body(&pid, Some(&sid), m))
            .send_on(&mut c);
        let v = ok(&r, 200);
        assert_eq!(v["response"], json!("w0 w1 w2"));
    }
    assert_eq!(up.connections(), 1, "keep-alive");
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    let reply = ("assistant", "w0 w1 w2");
    let want = [
        pairs(&[("system", INSTRUCTIONS), ("user", "one")]),
        pairs(&[
            ("system", INSTRUCTIONS),
            ("user", "one"),
            reply,
            ("user", "two"),
        ]),
        pairs(&[
            ("system", INSTRUCTIONS),
            ("user", "one"),
            reply,
            ("user", "two"),
            reply,
            ("user", "three"),
        ]),
    ];
    for (r, want) in seen.iter().zip(want) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/v1/chat/completions");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );
        assert_eq!(sent_messages(&r.body), want);
    }
}

#[test]
fn a_client_that_leaves_cancels_the_turn_and_closes_the_upstream_connection() {
    let t = tenant();
    let up = FakeUpstream::start();
    let pid = project(&t, &up.base_url(), "fake:forever;delay_ms=50");
    let (mut c, _) = stream(&t, &turn_body(&pid, None, "hi"));
    let events = read_events(&mut c, |e| tokens(e) >= 3);
    let sid = session_of(&events);
    let heard = said(&events);
    assert_eq!(up.open_connections(), 1);
    drop(c);
    let left = Instant::now();
    wait_until(Duration::from_secs(4), "upstream connection closed", || {
        up.open_connections() == 0
    });
    // Not before the grace period.
    assert!(
        left.elapsed() >= Duration::from_millis(900),
        "{:?}",
        left.elapsed()
    );
    // What was said is stored as the reply.
    let mut stored = Vec::new();
    wait_until(Duration::from_secs(4), "the partial reply stored", || {
        stored = messages(&t, &pid, &sid);
        stored.len() == 2
    });
    assert_eq!(stored[0], ("user".to_string(), "hi".to_string()));
    assert_eq!(stored[1].0, "assistant");
    assert!(
        stored[1].1.starts_with(&heard),
        "{:?} does not start with {heard:?}",
        stored[1].1
    );
    assert_eq!(up.connections(), 1);
}

// ---- shutdown and crash ----

#[test]
fn shutdown_ends_a_stream_with_shutting_down_and_keeps_what_was_said() {
    let dir = DirGuard(temp_dir("upstream-shutdown"));
    let mut h = start_in(&dir.0, &["--shutdown-timeout-ms", "3000"]);
    let t = tenant_on(h.addr, false);
    let up = FakeUpstream::start();
    let pid = project(&t, &up.base_url(), "fake:forever;delay_ms=50");
    let (mut c, _) = stream(&t, &turn_body(&pid, None, "hi"));
    let mut events = read_events(&mut c, |e| tokens(e) >= 3);
    h.signal(libc::SIGTERM);
    events.extend(read_events(&mut c, |_| false));
    assert_sequential(&events);
    let (code, _) = final_error(&events);
    assert_eq!(code, "SHUTTING_DOWN");
    // The stream's response is over; the server would keep the connection open until its
    // shutdown deadline.
    drop(c);
    let status = h
        .wait_exit(Duration::from_secs(10))
        .expect("halyard did not stop on SIGTERM");
    assert!(status.success(), "{status:?}");
    drop(h);
    wait_until(Duration::from_secs(4), "upstream connection closed", || {
        up.open_connections() == 0
    });
    let sid = session_of(&events);
    let text = said(&events);
    assert!(text.starts_with("w0 w1 w2"), "{text}");

    let h = start_in(&dir.0, &[]);
    let t = Tenant {
        addr: h.addr,
        ..t.clone()
    };
    assert_eq!(
        messages(&t, &pid, &sid),
        pairs(&[("user", "hi"), ("assistant", &text)])
    );
}

#[test]
fn a_stream_cut_short_by_a_crash_resumes_to_stream_interrupted() {
    let dir = DirGuard(temp_dir("upstream-crash"));
    let mut h = start_in(&dir.0, &["--echo-token-delay-ms", "100"]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let words: Vec<String> = (1..=20).map(|i| format!("word{i}")).collect();
    let (mut c, head) = stream(&t, &turn_body(&pid, None, &words.join(" ")));
    let stream_id = head.header("x-stream-id").expect("X-Stream-Id").to_string();
    let read = read_events(&mut c, |e| tokens(e) >= 5);
    h.signal(libc::SIGKILL);
    assert!(h.wait_exit(Duration::from_secs(5)).is_some(), "not killed");
    drop(h);
    drop(c);

    // On a shared store (HALYARD_TEST_STORAGE) the restarted node follows the stream until
    // the node that ran it is gone (no heartbeat for 5 s, docs/scaleout.md); the default
    // provider timeout (60 s) must not matter.
    let h = start_in(&dir.0, &[]);
    let t = Tenant {
        addr: h.addr,
        ..t.clone()
    };
    let mut r = Client::connect(h.addr).expect("connect");
    r.send(
        &t.req("GET", &format!("/api/v1/chat/stream/{stream_id}"))
            .header("Last-Event-ID", "0")
            .bytes(),
    )
    .expect("send");
    let head = r.head().expect("resume head");
    assert_eq!(head.status, 200);
    let events = read_events(&mut r, |_| false);
    assert_sequential(&events);
    let (code, _) = final_error(&events);
    assert_eq!(code, "STREAM_INTERRUPTED");
    let k = events.len() - 1;
    // Events are flushed to the log every 20 ms: all but the newest of those read (the
    // last token came under 100 ms before the kill) were stored.
    assert!(k + 2 >= read.len(), "{} read, {k} stored", read.len());
    // What was stored is what was sent, up to the cut.
    for (stored, sent) in events[..k].iter().zip(&read) {
        assert_eq!(stored, sent);
    }
    assert!(names(&events[..k]).iter().all(|n| *n != "done"));
}
