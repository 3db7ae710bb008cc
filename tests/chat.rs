//! Chat routes against the real binary over loopback: event sequences and byte-exact SSE
//! framing, heartbeats, resume (after a dropped connection and after a restart), cancel on
//! disconnect, queue full, session message rate, the `openai` provider against a fake
//! upstream on loopback, and what is stored. Every server is stopped by its guard.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sse::{names, open_stream, read_events, read_sse, Event};
use common::{bin, err, ok, ok_json, req, tenant_on, Tenant, ENV};
use halyard_testkit::{Client, Halyard};
use serde_json::{json, Value};

fn start(args: &[&str]) -> Halyard {
    Halyard::start_with_env(bin(), args, ENV)
}

fn assert_sequential(events: &[Event], first: u64) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id, first + i as u64, "{events:?}");
    }
}

fn messages(t: &Tenant, pid: &str, sid: &str) -> Vec<Value> {
    let v = ok(
        &t.get(&format!(
            "/api/projects/{pid}/sessions/{sid}/messages?limit=200"
        )),
        200,
    );
    v["messages"].as_array().unwrap().clone()
}

#[test]
fn agent_stream_events_are_framed_exactly_and_stored() {
    let h = start(&[]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let (mut c, head) = open_stream(
        &t,
        "/api/v1/chat/agent/stream",
        &json!({"projectId": pid, "message": "one two three"}),
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert!(head
        .header("x-stream-id")
        .is_some_and(|s| s.starts_with("str_")));
    assert!(head.header("x-ratelimit-limit").is_some());
    let (events, raw) = read_events(&mut c, |_| false);
    assert_eq!(
        names(&events),
        ["session", "token", "token", "token", "token", "done"]
    );
    assert_sequential(&events, 1);
    assert!(raw.starts_with("id: 1\nevent: session\ndata: {"), "{raw:?}");
    let sid = events[0].data["sessionId"].as_str().unwrap().to_string();
    let deltas: String = events[1..5]
        .iter()
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Echo: one two three");
    for (i, e) in events[1..5].iter().enumerate() {
        assert_eq!(e.data["index"], json!(i));
    }
    let done = &events[5].data;
    assert_eq!(done["sessionId"], json!(sid));
    assert_eq!(done["usage"]["outputTokens"], json!(4));
    // Both messages were stored before `done` was sent.
    let msgs = messages(&t, &pid, &sid);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["role"], json!("user"));
    assert_eq!(msgs[1]["content"], json!("Echo: one two three"));
    assert_eq!(msgs[1]["id"], done["messageId"]);
    assert_eq!(
        msgs[1]["usage"]["totalTokens"],
        done["usage"]["totalTokens"]
    );
}

#[test]
fn chat_stream_session_form_and_direct_form() {
    let h = start(&[]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let sid = t.session(&pid)["id"].as_str().unwrap().to_string();
    let (mut c, _) = open_stream(
        &t,
        "/api/v1/chat/stream",
        &json!({"sessionId": sid, "message": "hi"}),
    );
    let (events, _) = read_events(&mut c, |_| false);
    assert_eq!(
        names(&events),
        ["text_delta", "text_delta", "usage", "complete"]
    );
    assert_sequential(&events, 1);
    let complete = &events[3].data;
    assert_eq!(
        complete["totalTokens"],
        json!(complete["inputTokens"].as_u64().unwrap() + 2)
    );
    assert!(complete["latencyMs"].is_u64());
    assert_eq!(messages(&t, &pid, &sid).len(), 2);

    let direct =
        json!({"projectId": pid, "messages": [{"role": "user", "content": "direct hello"}]});
    let (mut c, _) = open_stream(&t, "/api/v1/chat/stream", &direct);
    let (events, _) = read_events(&mut c, |_| false);
    assert_eq!(
        names(&events),
        [
            "metadata",
            "text_delta",
            "text_delta",
            "text_delta",
            "usage",
            "complete"
        ]
    );
    assert_eq!(events[0].data, json!({"model": "echo", "provider": "echo"}));
}

#[test]
fn sync_turns_and_complete() {
    let h = start(&[]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let v = ok(
        &t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "message": "hi there"}),
        ),
        200,
    );
    assert_eq!(v["response"], json!("Echo: hi there"));
    assert!(v["latencyMs"].is_u64());
    let sid = v["sessionId"].as_str().unwrap().to_string();
    let v2 = ok(
        &t.post(
            "/api/v1/chat/send",
            &json!({"sessionId": sid, "message": "again"}),
        ),
        200,
    );
    assert_eq!(v2["response"], json!("Echo: again"));
    assert_eq!(messages(&t, &pid, &sid).len(), 4);
    let s = ok(&t.get(&format!("/api/projects/{pid}/sessions/{sid}")), 200);
    assert_eq!(s["session"]["messageCount"], json!(4));
    let c = ok(
        &t.post("/api/v1/chat/complete", &json!({"projectId": pid, "messages": [{"role": "user", "content": "x y"}], "modelId": "echo-2"})),
        200,
    );
    assert_eq!(
        (c["content"].clone(), c["model"].clone()),
        (json!("Echo: x y"), json!("echo-2"))
    );
    assert_eq!(c["toolCalls"], json!([]));
    assert!(c["usage"]["estimatedCost"].is_null());
    let u = ok(
        &t.get(&format!("/api/v1/chat/usage?projectId={pid}&groupBy=model")),
        200,
    );
    assert_eq!(u["summary"]["requestCount"], json!(2));
    assert_eq!(u["byModel"][0]["modelId"], json!("echo"));
    err(
        &t.post(
            "/api/v1/chat/send",
            &json!({"sessionId": "ses_nope", "message": "x"}),
        ),
        404,
        "NOT_FOUND",
    );
    err(
        &t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "message": ""}),
        ),
        400,
        "VALIDATION_ERROR",
    );
    err(&t.get("/api/v1/chat/usage"), 400, "BAD_REQUEST");
}

#[test]
fn a_slow_turn_gets_heartbeats() {
    let h = start(&["--echo-token-delay-ms", "300", "--sse-heartbeat-ms", "100"]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let (mut c, _) = open_stream(
        &t,
        "/api/v1/chat/agent/stream",
        &json!({"projectId": pid, "message": "a b"}),
    );
    let sse = read_sse(&mut c, |_| false);
    assert_eq!(names(&sse.events).last(), Some(&"done"));
    assert!(
        sse.heartbeats >= 3,
        "{} heartbeats between 300 ms tokens",
        sse.heartbeats
    );
    assert!(sse.raw.contains(": heartbeat\n\n"));
}

#[test]
fn streams_expire_after_the_retention() {
    let h = start(&["--stream-retention-secs", "1"]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let body = json!({"projectId": pid, "message": "a b"});
    let (mut c, head) = open_stream(&t, "/api/v1/chat/agent/stream", &body);
    let old = head.header("x-stream-id").unwrap().to_string();
    read_events(&mut c, |e| names(e).contains(&"done"));
    assert_eq!(t.get(&format!("/api/v1/chat/stream/{old}")).status, 200);
    std::thread::sleep(Duration::from_millis(1_200));
    // Turns sweep: this one finds the first stream past its retention.
    let (mut c, head) = open_stream(&t, "/api/v1/chat/agent/stream", &body);
    let new = head.header("x-stream-id").unwrap().to_string();
    read_events(&mut c, |e| names(e).contains(&"done"));
    err(
        &t.get(&format!("/api/v1/chat/stream/{old}")),
        404,
        "NOT_FOUND",
    );
    assert_eq!(t.get(&format!("/api/v1/chat/stream/{new}")).status, 200);
}

#[test]
fn resume_after_a_dropped_connection_replays_exactly_the_missing_events() {
    let h = start(&["--echo-token-delay-ms", "150"]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let (mut c, head) = open_stream(
        &t,
        "/api/v1/chat/agent/stream",
        &json!({"projectId": pid, "message": "a b c d e"}),
    );
    let stream_id = head.header("x-stream-id").unwrap().to_string();
    let (first, _) = read_events(&mut c, |e| e.len() >= 3);
    let last_seen = first.last().unwrap().id;
    drop(c);
    let mut r = Client::connect(h.addr).unwrap();
    r.send(
        &t.req("GET", &format!("/api/v1/chat/stream/{stream_id}"))
            .header("Last-Event-ID", &last_seen.to_string())
            .bytes(),
    )
    .unwrap();
    let head = r.head().unwrap();
    assert_eq!(head.status, 200);
    let (rest, _) = read_events(&mut r, |_| false);
    assert_sequential(&rest, last_seen + 1);
    let all: Vec<&str> = names(&first).into_iter().chain(names(&rest)).collect();
    assert_eq!(
        all,
        ["session", "token", "token", "token", "token", "token", "token", "done"]
    );
    // Another principal cannot resume it.
    let other = tenant_on(h.addr, false);
    err(
        &other.get(&format!("/api/v1/chat/stream/{stream_id}")),
        404,
        "NOT_FOUND",
    );
    err(
        &t.req("GET", &format!("/api/v1/chat/stream/{stream_id}"))
            .header("Last-Event-ID", "x")
            .send_to(h.addr),
        400,
        "BAD_REQUEST",
    );
}

#[test]
fn resume_after_a_restart_replays_from_the_log() {
    let dir = halyard_testkit::temp_dir("chat-restart");
    let mut h = Halyard::start_opts(
        bin(),
        &dir,
        halyard_testkit::StartOptions {
            args: &[],
            env: ENV,
            ..Default::default()
        },
    );
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let (mut c, head) = open_stream(
        &t,
        "/api/v1/chat/agent/stream",
        &json!({"projectId": pid, "message": "keep me"}),
    );
    let stream_id = head.header("x-stream-id").unwrap().to_string();
    let (events, _) = read_events(&mut c, |_| false);
    h.signal(libc::SIGTERM);
    assert!(h.wait_exit(Duration::from_secs(10)).is_some());
    drop(h);
    let h2 = Halyard::start_opts(
        bin(),
        &dir,
        halyard_testkit::StartOptions {
            args: &[],
            env: ENV,
            ..Default::default()
        },
    );
    let t2 = Tenant {
        addr: h2.addr,
        ..t.clone()
    };
    let mut r = Client::connect(h2.addr).unwrap();
    r.send(
        &t2.req("GET", &format!("/api/v1/chat/stream/{stream_id}"))
            .header("Last-Event-ID", "1")
            .bytes(),
    )
    .unwrap();
    assert_eq!(r.head().unwrap().status, 200);
    let (replayed, _) = read_events(&mut r, |_| false);
    assert_eq!(replayed, events[1..].to_vec());
    drop(h2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_that_disconnects_cancels_its_turn() {
    let h = start(&["--echo-token-delay-ms", "200"]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let words = "w ".repeat(40);
    let (mut c, _) = open_stream(
        &t,
        "/api/v1/chat/agent/stream",
        &json!({"projectId": pid, "message": words}),
    );
    let (events, _) = read_events(&mut c, |e| e.len() >= 2);
    let sid = events[0].data["sessionId"].as_str().unwrap().to_string();
    drop(c);
    // The whole answer would take 8 s; cancellation (1 s grace) stores the partial reply.
    let deadline = Instant::now() + Duration::from_secs(4);
    let partial = loop {
        let msgs = messages(&t, &pid, &sid);
        if msgs.len() == 2 {
            break msgs[1]["content"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "turn not cancelled in time");
        std::thread::sleep(Duration::from_millis(100));
    };
    let n = partial.split_whitespace().count();
    assert!(n < 20, "partial reply of {n} words");
}

#[test]
fn the_cap_on_running_turns_is_429_queue_full() {
    let h = start(&["--max-running-turns", "2", "--echo-token-delay-ms", "400"]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let body = json!({"projectId": pid, "message": "a b c"});
    let (_busy, _) = open_stream(&t, "/api/v1/chat/agent/stream", &body);
    let mut running = Client::connect(t.addr).unwrap();
    running
        .send(&t.req("POST", "/api/v1/chat/agent").json(&body).bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let r = t.post("/api/v1/chat/agent", &body);
    let v = err(&r, 429, "QUEUE_FULL");
    assert!(v["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0));
    assert!(r.header("retry-after").is_some());
    assert_eq!(running.response().unwrap().status, 200);
    // A finished turn frees its place.
    ok(&t.post("/api/v1/chat/agent", &body), 200);
}

#[test]
fn the_session_message_rate_is_enforced() {
    let h = start(&[]);
    let t = tenant_on(h.addr, false);
    ok(
        &req("PATCH", &format!("/api/v1/admin/tenants/{}", t.id))
            .bearer(common::ROOT_KEY)
            .json(&json!({"limits": {"sessionMessagesPerMinute": 2}}))
            .send_to(h.addr),
        200,
    );
    let pid = t.project_with_agent("bot");
    let sid = t.session(&pid)["id"].as_str().unwrap().to_string();
    for _ in 0..2 {
        ok(
            &t.post(
                "/api/v1/chat/send",
                &json!({"sessionId": sid, "message": "x"}),
            ),
            200,
        );
    }
    let r = t.post(
        "/api/v1/chat/send",
        &json!({"sessionId": sid, "message": "x"}),
    );
    let v = err(&r, 429, "RATE_LIMIT_EXCEEDED");
    assert_eq!(
        v["error"]["message"],
        json!("Session message rate limit exceeded")
    );
    let ms = v["retryAfterMs"].as_u64().unwrap();
    assert!((20_000..=30_000).contains(&ms), "{ms}");
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(secs, ms.div_ceil(1000));
    // Another session has its own budget.
    let other = t.session(&pid)["id"].as_str().unwrap().to_string();
    ok(
        &t.post(
            "/api/v1/chat/send",
            &json!({"sessionId": other, "message": "x"}),
        ),
        200,
    );
}

/// What the fake upstream does.
#[derive(Clone, Copy)]
enum Upstream {
    Stream,
    Fail500,
    Hang,
}

/// A fake OpenAI-compatible server on loopback; records the requests it got.
fn fake_openai(mode: Upstream) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().take(8) {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf).into_owned());
            match mode {
                Upstream::Hang => std::thread::sleep(Duration::from_secs(5)),
                Upstream::Fail500 => {
                    let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
                }
                Upstream::Stream => {
                    let body = "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n\
                                data: {\"choices\":[{\"delta\":{\"content\":\" from upstream\"},\"finish_reason\":\"stop\"}]}\n\n\
                                data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":3,\"total_tokens\":14}}\n\n\
                                data: [DONE]\n\n";
                    let _ = s.write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
                    );
                }
            }
        }
    });
    (addr, seen)
}

fn openai_project(t: &Tenant, upstream: SocketAddr) -> String {
    let pid = t.project_with(&json!({"name": common::unique("oa"), "entryAgentName": "gpt"}));
    ok(
        &t.post(
            &format!("/api/projects/{pid}/secrets"),
            &json!({"name": "OPENAI_KEY", "value": "sk-test-123"}),
        ),
        201,
    );
    ok(
        &t.post(
            &format!("/api/projects/{pid}/agents"),
            &json!({"name": "gpt", "instructions": "Be brief.", "model": {"provider": "openai", "model": "gpt-test", "baseUrl": format!("http://{upstream}/v1"), "apiKeySecret": "OPENAI_KEY", "pricing": {"inputPerMTok": 1.0, "outputPerMTok": 2.0}}}),
        ),
        201,
    );
    pid
}

#[test]
fn openai_provider_streams_from_an_upstream_and_stores_usage() {
    let h = start(&[]);
    let t = tenant_on(h.addr, false);
    let (up, seen) = fake_openai(Upstream::Stream);
    let pid = openai_project(&t, up);
    let v = ok(
        &t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "message": "hi"}),
        ),
        200,
    );
    assert_eq!(v["response"], json!("Hello from upstream"));
    assert_eq!(
        v["usage"],
        json!({"inputTokens": 11, "outputTokens": 3, "totalTokens": 14})
    );
    let req_text = seen.lock().unwrap()[0].clone();
    assert!(
        req_text.starts_with("POST /v1/chat/completions HTTP/1.1"),
        "{req_text}"
    );
    assert!(req_text.contains("Bearer sk-test-123"));
    assert!(req_text.contains("\"stream\":true"));
    assert!(
        req_text.contains("\"role\":\"system\",\"content\":\"Be brief.\"")
            || req_text.contains("\"content\":\"Be brief.\",\"role\":\"system\"")
    );
    let (mut c, _) = open_stream(
        &t,
        "/api/v1/chat/agent/stream",
        &json!({"projectId": pid, "message": "again"}),
    );
    let (events, _) = read_events(&mut c, |_| false);
    assert_eq!(names(&events), ["session", "token", "token", "done"]);
    assert_eq!(events[3].data["usage"]["totalTokens"], json!(14));
    let u = ok(&t.get(&format!("/api/v1/chat/usage?projectId={pid}")), 200);
    assert_eq!(u["summary"]["totalTokens"], json!(28));
    let cost = u["summary"]["totalCost"].as_f64().unwrap();
    assert!((cost - 2.0 * (11.0 + 6.0) / 1e6).abs() < 1e-12, "{cost}");
}

#[test]
fn an_upstream_error_is_503_before_the_stream() {
    let h = start(&[]);
    let t = tenant_on(h.addr, false);
    let (up, _) = fake_openai(Upstream::Fail500);
    let pid = openai_project(&t, up);
    err(
        &t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "message": "hi"}),
        ),
        503,
        "SERVICE_UNAVAILABLE",
    );
    let r = t.post(
        "/api/v1/chat/agent/stream",
        &json!({"projectId": pid, "message": "hi"}),
    );
    err(&r, 503, "SERVICE_UNAVAILABLE");
}

#[test]
fn an_upstream_that_hangs_times_out_as_503() {
    let h = start(&["--provider-timeout-ms", "400"]);
    let t = tenant_on(h.addr, false);
    let (up, _) = fake_openai(Upstream::Hang);
    let pid = openai_project(&t, up);
    let started = Instant::now();
    err(
        &t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "message": "hi"}),
        ),
        503,
        "SERVICE_UNAVAILABLE",
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_provider_without_its_secret_is_503() {
    let h = start(&[]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with(&json!({"name": common::unique("oa"), "entryAgentName": "gpt"}));
    ok(
        &t.post(&format!("/api/projects/{pid}/agents"), &json!({"name": "gpt", "model": {"provider": "openai", "model": "m", "baseUrl": "http://127.0.0.1:9/v1", "apiKeySecret": "MISSING"}})),
        201,
    );
    let v = err(
        &t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "message": "hi"}),
        ),
        503,
        "SERVICE_UNAVAILABLE",
    );
    assert!(!v.to_string().contains("sk-"));
}

/// Threads of process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("proc")
        .count()
}

#[test]
fn running_turns_hold_no_thread() {
    let h = start(&["--threads", "2", "--echo-token-delay-ms", "300"]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let idle = threads(h.pid());
    let body = json!({"projectId": pid, "message": "a b"});
    // Forty slow turns at once, all running (3 tokens, 300 ms each): no thread is added.
    let streams: Vec<_> = (0..40)
        .map(|_| open_stream(&t, "/api/v1/chat/agent/stream", &body))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let metrics = req("GET", "/metrics").send_to(h.addr);
    assert!(
        String::from_utf8_lossy(&metrics.body).contains("halyard_turns_running 40\n"),
        "the gauge counts the running turns"
    );
    assert_eq!(threads(h.pid()), idle, "threads while 40 turns run");
    for (mut c, head) in streams {
        assert_eq!(head.status, 200);
        let (events, _) = read_events(&mut c, |e| names(e).contains(&"done"));
        assert!(names(&events).contains(&"done"), "{:?}", names(&events));
    }
    assert_eq!(threads(h.pid()), idle);
}

#[test]
fn every_event_a_stream_sends_is_in_the_openapi_event_schema() {
    let h = start(&[]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    let sid = t.session(&pid)["id"].as_str().unwrap().to_string();
    let doc = ok_json(&req("GET", "/api/v1/openapi.json").send_to(h.addr));
    let documented: Vec<&str> = doc["components"]["schemas"]["Event"]["properties"]["event"]
        ["enum"]
        .as_array()
        .expect("the Event schema's names")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let bodies = [
        (
            "/api/v1/chat/agent/stream",
            json!({"projectId": pid, "message": "hi"}),
        ),
        (
            "/api/v1/chat/stream",
            json!({"sessionId": sid, "message": "hi"}),
        ),
        (
            "/api/v1/chat/stream",
            json!({"projectId": pid, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ];
    for (path, body) in bodies {
        let (mut c, _) = open_stream(&t, path, &body);
        let (events, _) = read_events(&mut c, |_| false);
        assert!(!events.is_empty(), "{path}");
        for name in names(&events) {
            assert!(
                documented.contains(&name),
                "{path} sent `{name}`, not in {documented:?}"
            );
        }
    }
}

#[test]
fn a_stream_resumed_as_soon_as_its_head_came_is_found_and_complete() {
    // On a shared store the stream's start is committed after the head is sent (a turn
    // never waits for the database): the node running it answers the resume from memory.
    let h = start(&["--echo-token-delay-ms", "20"]);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    for _ in 0..10 {
        let body = json!({"projectId": pid, "message": "one two three"});
        let (first, head) = open_stream(&t, "/api/v1/chat/agent/stream", &body);
        let sid = head.header("x-stream-id").expect("X-Stream-Id").to_string();
        let mut c = Client::connect(t.addr).unwrap();
        let resume = t
            .req("GET", &format!("/api/v1/chat/stream/{sid}"))
            .header("Last-Event-ID", "0");
        c.send(&resume.bytes()).unwrap();
        assert_eq!(c.head().unwrap().status, 200);
        let (events, _) = read_events(&mut c, |_| false);
        let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
        assert_eq!(names(&events).last(), Some(&"done"));
        drop(first);
    }
}
