//! The deployment-scoped runtime against the real binary: turns on
//! `/api/v1/project/:projectSlug/:env/agent/:agentSlug/chat|stream|complete` run the version
//! the environment's active deployment pins (seen in each turn's trace: the model an echo
//! agent's version names), a session keeps its deployment for its life and gets `410 GONE`
//! once it is retired, legacy routes take `deploymentId`/`environment`, and
//! `POST /api/v1/chat/session` opens a session ready for turns.

mod common;

use common::sse::{names, open_stream, read_events};
use common::*;
use serde_json::{json, Value};

/// A project with an echo agent `helper` whose model is named `model`; (id, slug).
fn project(t: &Tenant, model: &str) -> (String, String) {
    let v = ok(
        &t.post(
            "/api/projects",
            &json!({"name": unique("deployed"), "entryAgentName": "helper"}),
        ),
        201,
    );
    let pid = v["project"]["id"].as_str().unwrap().to_string();
    let slug = v["project"]["slug"].as_str().unwrap().to_string();
    let agent = json!({"name": "helper", "model": {"provider": "echo", "model": model}});
    ok(&t.post(&format!("/api/projects/{pid}/agents"), &agent), 201);
    (pid, slug)
}

fn set_model(t: &Tenant, pid: &str, model: &str) {
    let agent = json!({"name": "helper", "model": {"provider": "echo", "model": model}});
    ok_json(&t.send("PUT", &format!("/api/projects/{pid}/agents/helper"), &agent));
}

fn deploy(t: &Tenant, pid: &str, env: &str, extra: Value) -> String {
    let mut doc = json!({"environment": env, "agentVersionManifest": {"helper": "auto"}, "entryAgentName": "helper"});
    if let (Value::Object(d), Value::Object(e)) = (&mut doc, extra) {
        d.extend(e);
    }
    let v = ok(
        &t.post(&format!("/api/projects/{pid}/deployments"), &doc),
        201,
    );
    v["deployment"]["id"].as_str().unwrap().to_string()
}

/// The model of the last model call of a session's turns.
fn last_model(t: &Tenant, pid: &str, sid: &str) -> String {
    let v = ok_json(&t.get(&format!(
        "/api/projects/{pid}/sessions/{sid}/traces?eventType=llm_call"
    )));
    let calls = v["traces"].as_array().expect("traces");
    calls.last().expect("a model call")["name"]
        .as_str()
        .unwrap()
        .to_string()
}

fn chat(t: &Tenant, path: &str, body: &Value) -> (String, Value) {
    let v = ok_json(&t.post(path, body));
    (v["sessionId"].as_str().expect("sessionId").to_string(), v)
}

#[test]
fn deployed_routes_run_the_pinned_version_for_a_sessions_life() {
    let t = tenant();
    let (pid, slug) = project(&t, "echo-v1");
    let first = deploy(&t, &pid, "production", json!({}));
    set_model(&t, &pid, "echo-v2");
    let route = |what: &str| format!("/api/v1/project/{slug}/production/agent/helper/{what}");

    // The deployed agent answers with the version pinned, the legacy route with the agent.
    let (sid, v) = chat(&t, &route("chat"), &json!({"message": "hi"}));
    assert_eq!(v["response"], "Echo: hi", "{v}");
    assert_eq!(last_model(&t, &pid, &sid), "echo-v1");
    let legacy = json!({"projectId": pid, "message": "hi"});
    let (plain, _) = chat(&t, "/api/v1/chat/agent", &legacy);
    assert_eq!(last_model(&t, &pid, &plain), "echo-v2");

    // A new production deployment: new sessions run it, the old session keeps its own.
    let second = deploy(
        &t,
        &pid,
        "production",
        json!({"modelOverrides": {"model": "echo-tuned"}}),
    );
    let (fresh, _) = chat(&t, &route("chat"), &json!({"message": "hi"}));
    assert_eq!(last_model(&t, &pid, &fresh), "echo-tuned");
    let again = json!({"sessionId": sid, "message": "again"});
    chat(&t, &route("chat"), &again);
    assert_eq!(last_model(&t, &pid, &sid), "echo-v1");
    let send = json!({"sessionId": sid, "message": "via send"});
    ok_json(&t.post("/api/v1/chat/send", &send));
    assert_eq!(last_model(&t, &pid, &sid), "echo-v1");

    // /complete uses the active deployment's agent and its overrides.
    let msgs = json!({"messages": [{"role": "user", "content": "x"}]});
    let v = ok_json(&t.post(&route("complete"), &msgs));
    assert_eq!(v["model"], "echo-tuned", "{v}");

    // Retired: the session's turns are gone, on every route.
    let retire = format!("/api/projects/{pid}/deployments/{first}/retire");
    ok_json(&t.post(&retire, &json!({})));
    err(&t.post(&route("chat"), &again), 410, "GONE");
    err(&t.post("/api/v1/chat/send", &send), 410, "GONE");
    let legacy_turn = json!({"projectId": pid, "sessionId": sid, "message": "x"});
    err(&t.post("/api/v1/chat/agent", &legacy_turn), 410, "GONE");
    let named = json!({"projectId": pid, "deploymentId": first, "message": "x"});
    err(&t.post("/api/v1/chat/agent", &named), 410, "GONE");
    // The newer deployment's sessions are untouched.
    chat(
        &t,
        &route("chat"),
        &json!({"sessionId": fresh, "message": "still"}),
    );
    let _ = second;
}

#[test]
fn the_stream_route_and_legacy_routes_name_the_deployment() {
    let t = tenant();
    let (pid, slug) = project(&t, "echo-stream");
    let dep = deploy(&t, &pid, "staging", json!({}));
    set_model(&t, &pid, "echo-later");

    let path = format!("/api/v1/project/{slug}/staging/agent/helper/stream");
    let (mut c, head) = open_stream(&t, &path, &json!({"message": "one two"}));
    assert_eq!(head.status, 200);
    let (events, _) = read_events(&mut c, |e| e.last().is_some_and(|e| e.name == "done"));
    assert_eq!(names(&events).first(), Some(&"session"));
    let session = &events[0].data;
    assert_eq!(session["deploymentId"], dep.as_str());
    assert_eq!(session["environment"], "staging");
    let sid = session["sessionId"].as_str().unwrap();
    assert_eq!(last_model(&t, &pid, sid), "echo-stream");

    // Legacy /chat/agent/stream with `environment`.
    let body = json!({"projectId": pid, "environment": "staging", "message": "x"});
    let (mut c, _) = open_stream(&t, "/api/v1/chat/agent/stream", &body);
    let (events, _) = read_events(&mut c, |e| e.last().is_some_and(|e| e.name == "done"));
    assert_eq!(events[0].data["deploymentId"], dep.as_str());
    let sid = events[0].data["sessionId"].as_str().unwrap();
    assert_eq!(last_model(&t, &pid, sid), "echo-stream");
    // Without one, the session event names none and the turn runs the agent as it is.
    let body = json!({"projectId": pid, "message": "x"});
    let (mut c, _) = open_stream(&t, "/api/v1/chat/agent/stream", &body);
    let (events, _) = read_events(&mut c, |e| e.last().is_some_and(|e| e.name == "done"));
    assert!(
        events[0].data.get("deploymentId").is_none(),
        "{:?}",
        events[0]
    );
}

#[test]
fn chat_session_opens_a_ready_session() {
    let t = tenant();
    let (pid, _) = project(&t, "echo-session");
    let dep = deploy(&t, &pid, "dev", json!({}));
    set_model(&t, &pid, "echo-after");

    let v = ok(
        &t.post(
            "/api/v1/chat/session",
            &json!({"projectId": pid, "environment": "dev", "sessionMetadata": {"k": 1}}),
        ),
        201,
    );
    assert_eq!(v["status"], "ready");
    assert_eq!(v["agentName"], "helper");
    assert_eq!(v["deploymentId"], dep.as_str());
    assert_eq!(v["environment"], "dev");
    let sid = v["sessionId"].as_str().unwrap();
    // Stored before the answer: readable at once, and turns run the pinned version.
    let s = ok_json(&t.get(&format!("/api/projects/{pid}/sessions/{sid}")));
    assert_eq!(s["session"]["status"], "active");
    ok_json(&t.post(
        "/api/v1/chat/send",
        &json!({"sessionId": sid, "message": "m"}),
    ));
    assert_eq!(last_model(&t, &pid, sid), "echo-session");

    // Without a deployment: the agent as it is.
    let v = ok(
        &t.post("/api/v1/chat/session", &json!({"projectId": pid})),
        201,
    );
    assert!(v.get("deploymentId").is_none(), "{v}");
    let sid = v["sessionId"].as_str().unwrap();
    ok_json(&t.post(
        "/api/v1/chat/send",
        &json!({"sessionId": sid, "message": "m"}),
    ));
    assert_eq!(last_model(&t, &pid, sid), "echo-after");

    // Errors: no such deployment, an environment with none, a mismatch, a bad environment.
    let post = |body: Value| t.post("/api/v1/chat/session", &body);
    err(
        &post(json!({"projectId": pid, "deploymentId": "dep_nope"})),
        404,
        "NOT_FOUND",
    );
    err(
        &post(json!({"projectId": pid, "environment": "production"})),
        404,
        "NOT_FOUND",
    );
    let mismatch = json!({"projectId": pid, "deploymentId": dep, "environment": "staging"});
    err(&post(mismatch), 400, "VALIDATION_ERROR");
    err(
        &post(json!({"projectId": pid, "environment": "qa"})),
        400,
        "VALIDATION_ERROR",
    );
    err(&post(json!({})), 400, "VALIDATION_ERROR");
}

#[test]
fn deployed_routes_404_on_what_does_not_exist() {
    let t = tenant();
    let (pid, slug) = project(&t, "echo-404");
    deploy(&t, &pid, "production", json!({}));
    let msg = json!({"message": "x"});
    for path in [
        format!("/api/v1/project/{slug}/qa/agent/helper/chat"),
        format!("/api/v1/project/{slug}/staging/agent/helper/chat"),
        format!("/api/v1/project/{slug}/production/agent/nobody/chat"),
        format!("/api/v1/project/no-such-{slug}/production/agent/helper/stream"),
    ] {
        err(&t.post(&path, &msg), 404, "NOT_FOUND");
    }
    // Another tenant's project is not found either.
    let other = tenant();
    let path = format!("/api/v1/project/{slug}/production/agent/helper/chat");
    err(&other.post(&path, &msg), 404, "NOT_FOUND");
    // A bad body is a validation error; the route needs a credential.
    err(&t.post(&path, &json!({})), 400, "VALIDATION_ERROR");
    err(&req("POST", &path).json(&msg).send(), 401, "UNAUTHORIZED");
}
