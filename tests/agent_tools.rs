//! Agents calling HTTP tools, against the real binary and the testkit's [`ToolServer`] on
//! loopback: the echo provider's tool-calling mode (`call NAME {json}`) asks for the calls,
//! the turn runs them, stores calls and results as messages, streams `tool_call` and
//! `tool_result`, and the model answers from the results. Failures (a 500, a timeout, a
//! 10 MiB answer, invalid arguments) go back to the model as error results; addresses that
//! are not public are refused unless the operator allows them; a resume in the middle of a
//! tool call misses nothing.
//!
//! Loopback is not public, so the servers here allow `127.0.0.0/8` (`--tool-allow-cidr`),
//! except the one that checks the default refusal.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::sse::{names, open_stream, read_events, Event};
use common::{bin, loopback_tools_server, ok, tenant_on, unique, Tenant, ENV, SERVE_ARGS};
use halyard_testkit::{Client, Halyard, ToolServer};
use serde_json::{json, Value};

/// The tool's bearer credential, in a project secret.
const TOOL_KEY: &str = "sk-tool-credential";

fn tools() -> &'static ToolServer {
    static S: OnceLock<ToolServer> = OnceLock::new();
    S.get_or_init(ToolServer::start)
}

/// A project whose entry agent `planner` (echo) may call `tool_docs`; its id.
fn project(t: &Tenant, tool_docs: &[Value], iterations: u32) -> String {
    let pid = t.project_with(&json!({"name": unique("tools"), "entryAgentName": "planner"}));
    t.secret(&pid, "TOOL_KEY", TOOL_KEY);
    let mut names = Vec::new();
    for doc in tool_docs {
        ok(&t.post(&format!("/api/projects/{pid}/tools"), doc), 201);
        names.push(doc["name"].clone());
    }
    ok(
        &t.post(
            &format!("/api/projects/{pid}/agents"),
            &json!({"name": "planner", "tools": names, "maxToolIterations": iterations}),
        ),
        201,
    );
    pid
}

/// An HTTP tool `name` calling `path` on the tool server.
fn http_tool(name: &str, path: &str) -> Value {
    json!({
        "name": name,
        "toolType": "http",
        "url": format!("{}{path}", tools().base_url()),
        "auth": {"type": "bearer", "secret": "TOOL_KEY"},
        "timeoutMs": 2_000,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
    })
}

fn sync_turn(t: &Tenant, pid: &str, message: &str) -> Value {
    ok(
        &t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "message": message}),
        ),
        200,
    )
}

fn messages(t: &Tenant, pid: &str, sid: &str) -> Vec<Value> {
    let v = ok(
        &t.get(&format!(
            "/api/projects/{pid}/sessions/{sid}/messages?limit=100"
        )),
        200,
    );
    v["messages"].as_array().cloned().unwrap_or_default()
}

fn stream_turn(t: &Tenant, pid: &str, message: &str) -> Vec<Event> {
    let body = json!({"projectId": pid, "message": message});
    let (mut c, head) = open_stream(t, "/api/v1/chat/agent/stream", &body);
    assert_eq!(head.status, 200);
    read_events(&mut c, |_| false).0
}

fn event<'a>(events: &'a [Event], name: &str) -> &'a Value {
    &events
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name} in {events:?}"))
        .data
}

#[test]
fn an_echo_agent_calls_an_http_tool_and_answers_from_its_result() {
    let t = tenant_on(loopback_tools_server().addr, false);
    let pid = project(&t, &[http_tool("get_weather", "/echo/{city}")], 8);
    let v = sync_turn(&t, &pid, r#"call get_weather {"city": "São Paulo"}"#);
    let reply = v["response"].as_str().unwrap();
    assert!(reply.starts_with("Echo: "), "{v}");
    let result: Value = serde_json::from_str(&reply["Echo: ".len()..]).expect("the tool's JSON");
    assert_eq!(result["method"], "GET");
    assert_eq!(result["path"], "/echo/S%C3%A3o%20Paulo");
    let sent = tools()
        .requests()
        .into_iter()
        .find(|r| r.target == "/echo/S%C3%A3o%20Paulo")
        .expect("the tool server got the call");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {TOOL_KEY}").as_str())
    );
    // Two model calls: the usage is the turn's.
    assert!(v["usage"]["totalTokens"].as_u64().unwrap() > 0);

    let sid = v["sessionId"].as_str().unwrap();
    let stored = messages(&t, &pid, sid);
    let roles: Vec<&str> = stored.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    let call = &stored[1]["toolCalls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(stored[2]["toolCallId"], call["id"]);
    assert_eq!(stored[3]["content"], reply);
    assert!(
        stored[0].get("toolCalls").is_none(),
        "plain messages keep their shape"
    );

    // The next turn sees the whole history (calls and results) and echoes the new message.
    let again = sync_turn(&t, &pid, "thanks");
    assert_eq!(again["response"], "Echo: thanks");
    // The secret's value reaches no answer: not the transcript, not the traces.
    for path in [
        format!("/api/v1/sessions/{sid}/transcripts"),
        format!("/api/projects/{pid}/sessions/{sid}/traces"),
    ] {
        let r = t.get(&path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !String::from_utf8_lossy(&r.body).contains(TOOL_KEY),
            "{path}"
        );
    }
}

#[test]
fn a_stream_shows_each_call_and_result_then_the_answer() {
    let t = tenant_on(loopback_tools_server().addr, false);
    let pid = project(
        &t,
        &[
            http_tool("get_weather", "/echo/{city}"),
            http_tool("fails", "/status/500"),
        ],
        8,
    );
    let events = stream_turn(
        &t,
        &pid,
        "call get_weather {\"city\": \"Oslo\"}\ncall fails {}",
    );
    let n = names(&events);
    assert_eq!(
        &n[..5],
        [
            "session",
            "tool_call",
            "tool_call",
            "tool_result",
            "tool_result"
        ],
        "{n:?}"
    );
    assert_eq!(n.last(), Some(&"done"));
    let calls: Vec<&Event> = events.iter().filter(|e| e.name == "tool_call").collect();
    assert_eq!(calls[0].data["name"], "get_weather");
    assert_eq!(calls[0].data["arguments"], "{\"city\": \"Oslo\"}");
    let results: Vec<&Event> = events.iter().filter(|e| e.name == "tool_result").collect();
    assert_eq!(results[0].data["id"], calls[0].data["id"]);
    assert!(results[0].data["result"]
        .as_str()
        .unwrap()
        .contains("/echo/Oslo"));
    assert!(results[0].data["durationMs"].is_u64());
    assert_eq!(results[1].data["result"], Value::Null);
    assert_eq!(results[1].data["error"], "HTTP 500: boom 500");
    let text: String = events
        .iter()
        .filter(|e| e.name == "token")
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    assert!(text.contains("Error: HTTP 500: boom 500"), "{text}");
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());
}

#[test]
fn calls_of_one_answer_run_at_once() {
    let t = tenant_on(loopback_tools_server().addr, false);
    let slow = |name: &str| http_tool(name, "/slow/1500");
    let pid = project(&t, &[slow("slow_a"), slow("slow_b")], 8);
    let before = tools().requests().len();
    let started = std::time::Instant::now();
    let v = sync_turn(&t, &pid, "call slow_a {}\ncall slow_b {}");
    assert_eq!(v["response"], "Echo: slow slow");
    let seen = tools().requests();
    let mine: Vec<_> = seen[before..]
        .iter()
        .filter(|r| r.target == "/slow/1500")
        .collect();
    assert_eq!(mine.len(), 2);
    // Run one after the other, the two calls would take 3 s.
    assert!(
        started.elapsed() < Duration::from_millis(2_900),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn failures_and_bad_arguments_go_back_to_the_model() {
    let t = tenant_on(loopback_tools_server().addr, false);
    let mut hang = http_tool("hang", "/hang");
    hang["timeoutMs"] = json!(1_000);
    let mut big = http_tool("big", "/big/10485760");
    big["responseLimit"] = json!(1_000);
    let mut strict = http_tool("strict", "/echo");
    strict["parameters"] = json!({"type": "object", "properties": {"city": {"type": "string"}},
                                  "required": ["city"], "additionalProperties": false});
    let pid = project(&t, &[hang, big, strict], 8);
    let events = stream_turn(
        &t,
        &pid,
        "call hang {}\ncall big {}\ncall strict {\"city\": 7}\ncall strict {nope",
    );
    let results: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "tool_result")
        .map(|e| &e.data)
        .collect();
    assert_eq!(results.len(), 4, "{events:?}");
    assert!(
        results[0]["error"].as_str().unwrap().contains("timed out"),
        "{}",
        results[0]
    );
    let cut = results[1]["result"].as_str().unwrap();
    assert_eq!(
        cut.len(),
        1_000 + "\n[truncated: the response is over 1000 bytes]".len()
    );
    assert!(results[2]["error"]
        .as_str()
        .unwrap()
        .contains("$.city: must be of type string"));
    assert!(results[3]["error"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    assert_eq!(names(&events).last(), Some(&"done"));
}

#[test]
fn the_iteration_cap_ends_the_turn() {
    let t = tenant_on(loopback_tools_server().addr, false);
    let pid = project(&t, &[http_tool("capped", "/echo/capped")], 1);
    let before = tools().requests().len();
    let v = sync_turn(&t, &pid, "call capped {}");
    assert_eq!(
        v["response"], "",
        "the one model call asked for a tool: no answer"
    );
    assert!(
        tools().requests()[before..]
            .iter()
            .all(|r| !r.target.starts_with("/echo/capped")),
        "no call past the cap"
    );
}

#[test]
fn a_resume_in_the_middle_of_a_tool_call_misses_nothing() {
    let t = tenant_on(loopback_tools_server().addr, false);
    let pid = project(&t, &[http_tool("slowly", "/slow/800")], 8);
    let body = json!({"projectId": pid, "message": "call slowly {}"});
    let (mut c, head) = open_stream(&t, "/api/v1/chat/agent/stream", &body);
    let stream_id = head.header("x-stream-id").unwrap().to_string();
    let (first, _) = read_events(&mut c, |e| e.iter().any(|e| e.name == "tool_call"));
    drop(c);
    let last = first.last().unwrap().id;
    let mut c = Client::connect(t.addr).unwrap();
    let resume = t
        .req("GET", &format!("/api/v1/chat/stream/{stream_id}"))
        .header("Last-Event-ID", &last.to_string());
    c.send(&resume.bytes()).unwrap();
    assert_eq!(c.head().unwrap().status, 200);
    let (rest, _) = read_events(&mut c, |_| false);
    assert_eq!(rest[0].id, last + 1, "no gap");
    let n = names(&rest);
    assert_eq!(n[0], "tool_result");
    assert_eq!(n.last(), Some(&"done"));
    assert_eq!(event(&rest, "tool_result")["result"], "slow");
}

#[test]
fn addresses_that_are_not_public_are_refused_by_default() {
    let strict = Halyard::start_with_env(bin(), SERVE_ARGS, ENV);
    let t = tenant_on(strict.addr, false);
    let port = tools().base_url().rsplit(':').next().unwrap().to_string();
    // A path of this test's own: the tool server is shared with tests running beside it.
    let path = "/echo/refused-by-default";
    let docs: Vec<Value> = [
        ("loopback", format!("http://127.0.0.1:{port}{path}")),
        ("loopback6", format!("http://[::1]:{port}{path}")),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data".to_string(),
        ),
        ("by_name", format!("http://localhost:{port}{path}")),
    ]
    .into_iter()
    .map(|(name, url)| json!({"name": name, "toolType": "http", "url": url, "timeoutMs": 2000}))
    .collect();
    let pid = project(&t, &docs, 8);
    let events = stream_turn(
        &t,
        &pid,
        "call loopback {}\ncall loopback6 {}\ncall metadata {}\ncall by_name {}",
    );
    let errors: Vec<&str> = events
        .iter()
        .filter(|e| e.name == "tool_result")
        .map(|e| e.data["error"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(errors.len(), 4, "{events:?}");
    for e in &errors {
        assert!(e.contains("not a public address"), "{errors:?}");
    }
    let reached = tools()
        .requests()
        .iter()
        .filter(|r| r.target == path)
        .count();
    assert_eq!(reached, 0, "nothing reached the tool server");

    // Allowed for the first hop, a redirect to another loopback address is refused.
    let t = tenant_on(loopback_tools_server().addr, false);
    let to = format!("http://[::1]:{port}/echo");
    let hop = http_tool("hop", &format!("/redirect?to={}", to.replace(':', "%3A")));
    let pid = project(&t, &[hop], 8);
    let events = stream_turn(&t, &pid, "call hop {}");
    let err = event(&events, "tool_result")["error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(err.contains("not a public address"), "{err}");
    drop(strict);
}

#[test]
fn a_tool_is_tested_with_an_input_and_a_time_limit() {
    let t = tenant_on(loopback_tools_server().addr, false);
    let pid = project(
        &t,
        &[
            http_tool("get_weather", "/echo/{city}"),
            http_tool("hang", "/hang"),
        ],
        8,
    );
    let list = ok(&t.get(&format!("/api/projects/{pid}/tools")), 200);
    let id_of = |name: &str| {
        list["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .map(|x| x["id"].as_str().unwrap().to_string())
            .unwrap()
    };
    let test = |id: &str, body: Value| {
        ok(
            &t.post(&format!("/api/projects/{pid}/tools/{id}/test"), &body),
            200,
        )["data"]
            .clone()
    };
    let weather = id_of("get_weather");
    let d = test(&weather, json!({"input": {"city": "Lima"}}));
    let out: Value = serde_json::from_str(d["output"].as_str().unwrap()).unwrap();
    assert_eq!(out["path"], "/echo/Lima");
    assert_eq!(out["method"], "GET");
    assert!(d["durationMs"].is_u64() && d.get("error").is_none(), "{d}");
    let d = test(&weather, json!({"input": {"city": 5}}));
    assert_eq!(d["output"], Value::Null);
    assert!(
        d["error"].as_str().unwrap().contains("invalid arguments"),
        "{d}"
    );
    let d = test(&id_of("hang"), json!({"timeoutMs": 1000}));
    assert_eq!(d["error"], "the call timed out after 1000 ms");
    common::err(
        &t.post(
            &format!("/api/projects/{pid}/tools/{weather}/test"),
            &json!({"timeoutMs": 5}),
        ),
        400,
        "VALIDATION_ERROR",
    );
    common::err(
        &t.post(
            &format!("/api/projects/{pid}/tools/tool_nope/test"),
            &json!({}),
        ),
        404,
        "NOT_FOUND",
    );
}

#[test]
fn an_openai_agent_gets_tools_offered_and_its_streamed_calls_run() {
    let up = halyard_testkit::FakeUpstream::start();
    let t = tenant_on(loopback_tools_server().addr, false);
    let pid = t.project_with(&json!({"name": unique("tools"), "entryAgentName": "gpt"}));
    t.secret(&pid, "TOOL_KEY", TOOL_KEY);
    t.secret(&pid, "UPSTREAM_KEY", "sk-up");
    ok(
        &t.post(
            &format!("/api/projects/{pid}/tools"),
            &http_tool("get_weather", "/echo/{city}"),
        ),
        201,
    );
    let model = r#"fake:call=get_weather;args={"city": "Rome"}"#;
    ok(
        &t.post(
            &format!("/api/projects/{pid}/agents"),
            &json!({"name": "gpt", "tools": ["get_weather"],
                    "model": {"provider": "openai", "model": model, "baseUrl": up.base_url(),
                              "apiKeySecret": "UPSTREAM_KEY"}}),
        ),
        201,
    );
    let events = stream_turn(&t, &pid, "what is the weather in Rome?");
    let call = event(&events, "tool_call");
    assert_eq!(call["id"], "call_fake");
    assert_eq!(
        call["arguments"], r#"{"city": "Rome"}"#,
        "assembled from two fragments"
    );
    let result = event(&events, "tool_result")["result"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(result.contains("/echo/Rome"), "{result}");
    let text: String = events
        .iter()
        .filter(|e| e.name == "token")
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    assert!(
        text.contains("/echo/Rome"),
        "the model answered from the result: {text}"
    );
    assert_eq!(names(&events).last(), Some(&"done"));

    // What the upstream was sent: the tools offered, then the call and its result.
    let seen = up.requests();
    assert_eq!(seen.len(), 2, "two model calls");
    let first: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(first["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        first["tools"][0]["function"]["parameters"]["type"],
        "object"
    );
    let second: Value = serde_json::from_str(&seen[1].body).unwrap();
    let msgs = second["messages"].as_array().unwrap();
    let n = msgs.len();
    assert_eq!(msgs[n - 2]["tool_calls"][0]["id"], "call_fake");
    assert_eq!(msgs[n - 1]["role"], "tool");
    assert_eq!(msgs[n - 1]["tool_call_id"], "call_fake");
}

#[test]
fn direct_calls_pass_tools_and_results_through_and_stream_the_calls() {
    let t = tenant_on(loopback_tools_server().addr, false);
    let pid = t.project_with(&json!({"name": unique("direct"), "entryAgentName": "bot"}));
    ok(
        &t.post(
            &format!("/api/projects/{pid}/agents"),
            &json!({"name": "bot"}),
        ),
        201,
    );
    let tools = json!([{"type": "function", "function": {"name": "clock",
                        "parameters": {"type": "object", "properties": {}}}}]);
    // /chat/complete: the (echo) model asks for the call; the client runs it and sends the
    // result back in `messages`.
    let v = ok(
        &t.post(
            "/api/v1/chat/complete",
            &json!({"projectId": pid, "tools": tools,
                    "messages": [{"role": "user", "content": "call clock {}"}]}),
        ),
        200,
    );
    assert_eq!(v["toolCalls"][0]["function"]["name"], "clock", "{v}");
    assert_eq!(v["toolCalls"][0]["type"], "function");
    assert_eq!(v["finishReason"], "tool_calls");
    let call = v["toolCalls"][0].clone();
    let v = ok(
        &t.post(
            "/api/v1/chat/complete",
            &json!({"projectId": pid, "tools": tools, "messages": [
                {"role": "user", "content": "call clock {}"},
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "content": "12:00", "tool_call_id": call["id"]},
            ]}),
        ),
        200,
    );
    assert_eq!(v["content"], "Echo: 12:00");
    assert_eq!(v["toolCalls"], json!([]));
    common::err(
        &t.post(
            "/api/v1/chat/complete",
            &json!({"projectId": pid, "messages": [{"role": "tool", "content": "x"}]}),
        ),
        400,
        "VALIDATION_ERROR",
    );

    // /chat/stream against an upstream that streams a call in fragments.
    let up = halyard_testkit::FakeUpstream::start();
    t.secret(&pid, "UPSTREAM_KEY", "sk-up");
    let gpt = ok(
        &t.post(
            &format!("/api/projects/{pid}/agents"),
            &json!({"name": "gpt", "model": {"provider": "openai",
                    "model": r#"fake:call=clock;args={"tz": "UTC"}"#,
                    "baseUrl": up.base_url(), "apiKeySecret": "UPSTREAM_KEY"}}),
        ),
        201,
    );
    let body = json!({"projectId": pid, "agentId": gpt["agent"]["id"], "tools": tools,
                      "messages": [{"role": "user", "content": "time?"}]});
    let (mut c, head) = open_stream(&t, "/api/v1/chat/stream", &body);
    assert_eq!(head.status, 200);
    let (events, _) = read_events(&mut c, |_| false);
    let n = names(&events);
    assert_eq!(n.first(), Some(&"metadata"), "{n:?}");
    assert_eq!(
        &n[n.len() - 3..],
        ["tool_call_end", "usage", "complete"],
        "{n:?}"
    );
    assert_eq!(event(&events, "tool_call_start")["name"], "clock");
    let args: String = events
        .iter()
        .filter(|e| e.name == "tool_call_delta")
        .map(|e| e.data["arguments"].as_str().unwrap())
        .collect();
    assert_eq!(args, r#"{"tz": "UTC"}"#);
    assert_eq!(
        event(&events, "tool_call_end")["arguments"],
        r#"{"tz": "UTC"}"#
    );
    assert_eq!(event(&events, "tool_call_end")["id"], "call_fake");
    let first: Value = serde_json::from_str(&up.requests()[0].body).unwrap();
    assert_eq!(first["tools"][0]["function"]["name"], "clock");
}

#[test]
fn a_turn_with_two_tool_calls_leaves_a_trace_and_session_metrics() {
    let t = tenant_on(loopback_tools_server().addr, false);
    let pid = project(
        &t,
        &[
            http_tool("get_weather", "/echo/{city}"),
            http_tool("fails", "/status/503"),
        ],
        8,
    );
    let v = sync_turn(
        &t,
        &pid,
        "call get_weather {\"city\": \"Oslo\"}\ncall fails {}",
    );
    let sid = v["sessionId"].as_str().unwrap();
    let traces = ok(
        &t.get(&format!("/api/projects/{pid}/sessions/{sid}/traces")),
        200,
    );
    let events = traces["traces"].as_array().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "llm_call",
            "tool_call",
            "tool_call",
            "tool_result",
            "tool_result",
            "llm_call",
            "response"
        ]
    );
    let root = &events[6];
    assert_eq!(root["parentSpanId"], Value::Null);
    assert_eq!(events[0]["parentSpanId"], root["spanId"]);
    assert_eq!(events[5]["parentSpanId"], root["spanId"]);
    assert_eq!(
        events[1]["parentSpanId"], events[0]["spanId"],
        "calls under the model call"
    );
    assert_eq!(
        events[3]["spanId"], events[1]["spanId"],
        "a result in its call's span"
    );
    assert_eq!(events[1]["name"], "get_weather");
    assert_eq!(events[4]["data"]["error"], "HTTP 503: boom 503");
    assert_eq!(root["data"]["messageId"], v["messageId"]);
    assert_eq!(root["tokens"]["input"], v["usage"]["inputTokens"]);
    assert!(root["durationMs"].as_u64().unwrap() >= events[3]["durationMs"].as_u64().unwrap());

    let only = ok(
        &t.get(&format!(
            "/api/projects/{pid}/sessions/{sid}/traces?eventType=tool_result"
        )),
        200,
    );
    assert_eq!(only["pagination"]["total"], 2);
    let span = events[1]["spanId"].as_str().unwrap();
    let one = ok(
        &t.get(&format!(
            "/api/projects/{pid}/sessions/{sid}/traces?spanId={span}"
        )),
        200,
    );
    assert_eq!(one["pagination"]["total"], 2, "the call and its result");
    common::err(
        &t.get(&format!(
            "/api/projects/{pid}/sessions/{sid}/traces?eventType=nope"
        )),
        400,
        "BAD_REQUEST",
    );

    ok(
        &t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "sessionId": sid, "message": "no tools this time"}),
        ),
        200,
    );
    let m = ok(
        &t.get(&format!("/api/projects/{pid}/sessions/{sid}/metrics")),
        200,
    )["metrics"]
        .clone();
    assert_eq!(m["turns"], 2);
    assert_eq!(m["toolCalls"], 2);
    assert_eq!(m["toolSuccessRate"], 0.5);
    assert_eq!(m["perTurn"][0]["llmCalls"], 2);
    assert_eq!(m["perTurn"][0]["toolErrors"], 1);
    assert_eq!(m["perTurn"][1]["toolCalls"], 0);
    assert!(m["latency"]["maxMs"].is_u64());
    assert!(m["tokens"]["total"].as_u64().unwrap() > 0);
    common::err(
        &t.get(&format!("/api/projects/{pid}/sessions/ses_nope/metrics")),
        404,
        "NOT_FOUND",
    );
}
