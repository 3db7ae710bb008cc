//! Analytics against the real binary: turns (answered and failed) and ratings counted by
//! agent, environment, hour and overall from the rollups, the asked-for metrics only, the
//! turn events with their filters and pages, and the refusals of bad queries.

mod common;

use common::*;
use serde_json::{json, Value};

/// A project with agents `helper` (deployed to production) and `broken` (an openai agent
/// whose provider refuses connections); 3 turns of helper on the deployment, 2 of helper
/// without one, 1 failed turn of broken; one positive and one negative rating.
fn world(t: &Tenant) -> String {
    let v = ok(
        &t.post(
            "/api/projects",
            &json!({"name": unique("analytics"), "entryAgentName": "helper"}),
        ),
        201,
    );
    let pid = v["project"]["id"].as_str().unwrap().to_string();
    let slug = v["project"]["slug"].as_str().unwrap().to_string();
    t.agent(&pid, "helper");
    let broken = json!({"name": "broken", "model": {"provider": "openai", "model": "m", "baseUrl": "http://127.0.0.1:9/v1"}});
    ok(
        &t.post(&format!("/api/projects/{pid}/agents"), &broken),
        201,
    );
    let doc = json!({"environment": "production", "agentVersionManifest": {"helper": "auto"}, "entryAgentName": "helper"});
    ok(
        &t.post(&format!("/api/projects/{pid}/deployments"), &doc),
        201,
    );
    let deployed = format!("/api/v1/project/{slug}/production/agent/helper/chat");
    let mut replies = Vec::new();
    for _ in 0..3 {
        let v = ok_json(&t.post(&deployed, &json!({"message": "one two"})));
        replies.push((v["sessionId"].clone(), v["messageId"].clone()));
    }
    for _ in 0..2 {
        ok_json(&t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "message": "x"}),
        ));
    }
    let broken_id =
        ok_json(&t.get(&format!("/api/projects/{pid}/agents/broken")))["agent"]["id"].clone();
    let r = t.post(
        "/api/v1/chat/agent",
        &json!({"projectId": pid, "agentId": broken_id, "message": "x"}),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    for (i, rating) in ["positive", "negative"].iter().enumerate() {
        let (sid, mid) = &replies[i];
        let fb = json!({"sessionId": sid, "messageId": mid, "rating": rating});
        ok(&t.post("/api/v1/feedback", &fb), 201);
    }
    pid
}

fn metrics(t: &Tenant, pid: &str, query: &str) -> Vec<Value> {
    let v = ok_json(&t.get(&format!("/api/projects/{pid}/analytics/metrics{query}")));
    v["data"]["buckets"].as_array().expect("buckets").clone()
}

fn bucket(buckets: &[Value], key: Value) -> &Value {
    buckets
        .iter()
        .find(|b| b["key"] == key)
        .unwrap_or_else(|| panic!("no bucket {key} in {buckets:?}"))
}

#[test]
fn metrics_count_turns_errors_and_ratings_by_group() {
    let t = tenant();
    let pid = world(&t);
    let all = metrics(&t, &pid, "");
    assert_eq!(all.len(), 1);
    let b = &all[0];
    assert_eq!(b["key"], Value::Null);
    assert_eq!(b["count"], 6, "{b}");
    assert!(
        (b["error_rate"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-9,
        "{b}"
    );
    assert_eq!(b["positive_rate"], 0.5);
    assert!(b["sum_tokens"].as_u64().unwrap() > 0, "{b}");
    assert!(b["avg_duration"].as_f64().is_some(), "{b}");
    assert!(b["p95_duration"].as_u64().is_some_and(|p| p >= 50), "{b}");

    let by_agent = metrics(&t, &pid, "?groupBy=agent_name");
    assert_eq!(bucket(&by_agent, json!("helper"))["count"], 5);
    let broken = bucket(&by_agent, json!("broken"));
    assert_eq!(
        (broken["count"].clone(), broken["error_rate"].clone()),
        (json!(1), json!(1.0))
    );
    assert_eq!(broken["avg_duration"], Value::Null, "no answered turn");
    assert_eq!(broken["positive_rate"], Value::Null, "no rating");
    let by_env = metrics(&t, &pid, "?groupBy=environment");
    assert_eq!(bucket(&by_env, json!("production"))["count"], 3);
    assert_eq!(bucket(&by_env, Value::Null)["count"], 3);
    assert_eq!(metrics(&t, &pid, "?groupBy=hour").len(), 1);
    assert_eq!(metrics(&t, &pid, "?groupBy=channel")[0]["key"], "api");

    let picked = metrics(&t, &pid, "?metrics=count,sum_tokens");
    let mut keys: Vec<&String> = picked[0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["count", "key", "sum_tokens"]);
    // A window in the past holds nothing.
    let past = metrics(
        &t,
        &pid,
        "?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z&groupBy=day",
    );
    assert_eq!(past, Vec::<Value>::new());
}

#[test]
fn events_list_the_turns_with_filters_and_pages() {
    let t = tenant();
    let pid = world(&t);
    let get = |q: &str| {
        ok_json(&t.get(&format!("/api/projects/{pid}/analytics/events{q}")))["data"].clone()
    };
    let all = get("");
    assert_eq!(all["total"], 6);
    assert_eq!(all["hasMore"], false);
    let errors = get("?eventType=error");
    assert_eq!(errors["total"], 1);
    let e = &errors["events"][0];
    assert_eq!(
        (e["agentName"].clone(), e["error"].clone()),
        (json!("broken"), json!("SERVICE_UNAVAILABLE"))
    );
    assert_eq!(get("?environment=production")["total"], 3);
    assert_eq!(get("?agentName=helper&channel=api")["total"], 5);
    assert_eq!(get("?channel=sdk")["total"], 0);
    let page = get("?limit=2&offset=1");
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["hasMore"], true);
    let times: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["startedAt"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
}

#[test]
fn bad_analytics_queries_are_400() {
    let t = tenant();
    let pid = t.project_with_agent("helper");
    for q in [
        "metrics?groupBy=week",
        "metrics?metrics=count,median",
        "metrics?from=yesterday",
        "metrics?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
        "events?eventType=llm_call",
        "events?environment=qa",
        "events?limit=x",
    ] {
        err(
            &t.get(&format!("/api/projects/{pid}/analytics/{q}")),
            400,
            "BAD_REQUEST",
        );
    }
    err(
        &t.get("/api/projects/proj_nope/analytics/metrics"),
        404,
        "NOT_FOUND",
    );
}
