//! `POST /api/v1/feedback` against the real binary: a rating per message and rater (a
//! second replaces the first), raters told apart, an SDK token rating its own session's
//! messages only, and each refusal.

mod common;

use common::*;
use serde_json::{json, Value};

/// A turn in a new session of `pid`; (session id, reply message id).
fn turn(t: &Tenant, pid: &str) -> (String, String) {
    let v = ok_json(&t.post(
        "/api/v1/chat/agent",
        &json!({"projectId": pid, "message": "rate me"}),
    ));
    (
        v["sessionId"].as_str().unwrap().to_string(),
        v["messageId"].as_str().unwrap().to_string(),
    )
}

fn give(t: &Tenant, doc: &Value) -> Value {
    ok(&t.post("/api/v1/feedback", doc), 201)["feedback"].clone()
}

#[test]
fn one_rating_per_message_and_rater() {
    let t = tenant();
    let pid = t.project_with_agent("helper");
    let (sid, mid) = turn(&t, &pid);
    let first = give(
        &t,
        &json!({"sessionId": sid, "messageId": mid, "rating": "positive"}),
    );
    let id = first["id"].as_str().unwrap();
    assert!(id.starts_with("fb_"), "{first}");
    assert_eq!(first["rating"], "positive");
    assert_eq!(first["comment"], Value::Null);
    let second = give(
        &t,
        &json!({"sessionId": sid, "messageId": mid, "rating": "negative", "comment": "too long"}),
    );
    assert_eq!(second["id"], first["id"], "the same rater replaces");
    assert_eq!(second["createdAt"], first["createdAt"]);
    assert_eq!(second["rating"], "negative");
    assert_eq!(second["comment"], "too long");
    // Another rater (another key of the tenant) has a rating of their own.
    let (key, _) = t.api_key(&json!({"name": unique("rater")}));
    let other = ok(
        &req("POST", "/api/v1/feedback")
            .bearer(&key)
            .json(&json!({"sessionId": sid, "messageId": mid, "rating": "positive"}))
            .send(),
        201,
    );
    assert_ne!(other["feedback"]["id"], first["id"]);
}

#[test]
fn an_sdk_token_rates_its_own_sessions_only() {
    let t = tenant();
    let pid = t.project_with_agent("helper");
    let origin = format!("https://{}.example", unique("fb"));
    let (pk, _) = t.public_key(&pid, &[&origin]);
    let token = sdk_init(t.addr, &pk, &origin, &pid);
    let sdk = |path: &str, body: &Value| {
        req("POST", path)
            .header("X-SDK-Token", &token)
            .header("Origin", &origin)
            .json(body)
            .send()
    };
    let v = ok_json(&sdk(
        "/api/v1/chat/agent",
        &json!({"projectId": pid, "message": "hi"}),
    ));
    let (sid, mid) = (
        v["sessionId"].as_str().unwrap(),
        v["messageId"].as_str().unwrap(),
    );
    let mine = json!({"sessionId": sid, "messageId": mid, "rating": "positive"});
    ok(&sdk("/api/v1/feedback", &mine), 201);
    let (theirs, their_msg) = turn(&t, &pid);
    let not_mine = json!({"sessionId": theirs, "messageId": their_msg, "rating": "negative"});
    err(&sdk("/api/v1/feedback", &not_mine), 404, "NOT_FOUND");
}

#[test]
fn bad_feedback_is_refused() {
    let t = tenant();
    let pid = t.project_with_agent("helper");
    let (sid, mid) = turn(&t, &pid);
    let post = |doc: Value| t.post("/api/v1/feedback", &doc);
    err(
        &post(json!({"sessionId": sid, "messageId": mid})),
        400,
        "VALIDATION_ERROR",
    );
    err(
        &post(json!({"sessionId": sid, "messageId": mid, "rating": "meh"})),
        400,
        "VALIDATION_ERROR",
    );
    let long = "x".repeat(2001);
    let doc = json!({"sessionId": sid, "messageId": mid, "rating": "positive", "comment": long});
    err(&post(doc), 400, "VALIDATION_ERROR");
    err(
        &post(json!({"sessionId": sid, "messageId": "msg_nope", "rating": "positive"})),
        404,
        "NOT_FOUND",
    );
    err(
        &post(json!({"sessionId": "ses_nope", "messageId": mid, "rating": "positive"})),
        404,
        "NOT_FOUND",
    );
    // Another tenant's session is not found either.
    let other = tenant();
    let r = other.post(
        "/api/v1/feedback",
        &json!({"sessionId": sid, "messageId": mid, "rating": "positive"}),
    );
    err(&r, 404, "NOT_FOUND");
    err(
        &req("POST", "/api/v1/feedback").json(&json!({})).send(),
        401,
        "UNAUTHORIZED",
    );
}
