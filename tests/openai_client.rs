//! The OpenAI-compatible endpoint driven by a client no one here wrote: the official
//! `openai` package from PyPI (`tests/openai/client.py`, which `scripts/test` installs)
//! lists the models, completes, streams with usage, gets tool calls (plain and streamed)
//! and reads the errors as OpenAI's own. Then the same routes by hand: the credentials they
//! refuse and OpenAI's error shape.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// A project with a deployed echo agent; (tenant, project id, model id).
fn deployed() -> (Tenant, String, String) {
    let t = tenant();
    let v = ok(
        &t.post(
            "/api/projects",
            &json!({"name": unique("openai"), "entryAgentName": "helper"}),
        ),
        201,
    );
    let pid = v["project"]["id"].as_str().unwrap().to_string();
    let slug = v["project"]["slug"].as_str().unwrap().to_string();
    t.agent(&pid, "helper");
    let doc = json!({"environment": "production", "agentVersionManifest": {"helper": "auto"}, "entryAgentName": "helper"});
    ok(
        &t.post(&format!("/api/projects/{pid}/deployments"), &doc),
        201,
    );
    (t, pid, format!("{slug}/production/helper"))
}

#[test]
fn the_official_openai_client_talks_to_a_deployed_agent() {
    let (t, pid, model) = deployed();
    let (key, _) = t.api_key(&json!({"name": unique("oa"), "projectIds": [pid]}));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai/client.py");
    let base = format!("http://{}/v1", t.addr);
    let out = Command::new("python3")
        .args([script, &base, &key, &model])
        .output()
        .expect("python3 runs tests/openai/client.py (scripts/test installs the openai package)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("the client's JSON");
    assert_eq!(v["models"], json!([model]), "{v}");
    assert_eq!(v["text"], "Echo: hello there", "{v}");
    assert_eq!(v["finish_reason"], "stop");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], model.as_str());
    assert!(v["usage"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["streamed"], "Echo: one two three", "{v}");
    assert_eq!(v["stream_reasons"], json!(["stop"]));
    assert!(v["stream_usage"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["tool_finish"], "tool_calls");
    assert_eq!(
        v["tool_call"],
        json!({"name": "lookup", "arguments": {"word": "halyard"}})
    );
    assert_eq!(v["streamed_tool_calls"], json!(["lookup"]));
    assert_eq!(
        v["unknown_model"],
        json!({"status": 404, "type": "invalid_request_error"})
    );
    assert_eq!(
        v["bad_key"],
        json!({"status": 401, "type": "authentication_error"})
    );
}

#[test]
fn only_keys_restricted_to_the_project_are_taken_and_errors_are_openais() {
    let (t, pid, model) = deployed();
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let shape = |r: &halyard_testkit::Response, status: u16, kind: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        let v: Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
        assert!(v.get("success").is_none(), "OpenAI's shape only: {v}");
    };
    // The owner's unrestricted key, and a key of another project, are refused or see nothing.
    let r = t.post("/v1/chat/completions", &body);
    shape(&r, 403, "permission_error");
    let other = t.project(&unique("other"));
    let (elsewhere, _) = t.api_key(&json!({"name": unique("el"), "projectIds": [other]}));
    let r = req("POST", "/v1/chat/completions")
        .bearer(&elsewhere)
        .json(&body)
        .send();
    shape(&r, 404, "invalid_request_error");
    let r = req("GET", "/v1/models").bearer(&elsewhere).send();
    assert_eq!(body_of(&r)["data"], json!([]));
    // No credential, a bad body, a model that is not projectSlug/env/agent.
    shape(
        &req("GET", "/v1/models").send(),
        401,
        "authentication_error",
    );
    let (key, _) = t.api_key(&json!({"name": unique("oa"), "projectIds": [pid]}));
    let r = req("POST", "/v1/chat/completions")
        .bearer(&key)
        .json(&json!({"model": model}))
        .send();
    shape(&r, 400, "invalid_request_error");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["param"], "messages");
    let gpt = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let r = req("POST", "/v1/chat/completions")
        .bearer(&key)
        .json(&gpt)
        .send();
    shape(&r, 404, "invalid_request_error");
    // A retired deployment's model is gone from the list.
    let deps = ok_json(&t.get(&format!("/api/projects/{pid}/deployments")));
    let id = deps["deployments"][0]["id"].as_str().unwrap().to_string();
    ok_json(&t.post(
        &format!("/api/projects/{pid}/deployments/{id}/retire"),
        &json!({}),
    ));
    let r = req("GET", "/v1/models").bearer(&key).send();
    assert_eq!(body_of(&r)["data"], json!([]));
    let r = req("POST", "/v1/chat/completions")
        .bearer(&key)
        .json(&body)
        .send();
    shape(&r, 404, "invalid_request_error");
}

fn body_of(r: &halyard_testkit::Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("JSON")
}
