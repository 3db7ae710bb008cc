//! The v1 resources (ENDPOINTS sections 2 to 4 and 7) against the real binary: users and
//! keys, projects, agents and discovery, sessions, and secrets (whose values never appear
//! in a response or in the data directory).

mod common;

use common::*;
use halyard_testkit::Response;
use serde_json::{json, Value};

fn is_iso(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() >= 20 && s.ends_with('Z') && s.as_bytes()[10] == b'T')
}

#[test]
fn users_are_created_listed_and_never_show_their_password() {
    let t = tenant_with_owner();
    let password = "a-very-long-password-123";
    let r = t.post(
        "/api/v1/users",
        &json!({"email": "New.User@Example.Test", "password": password, "role": "viewer"}),
    );
    let v = ok(&r, 201);
    assert_eq!(v["user"]["email"], json!("new.user@example.test"));
    assert_eq!(v["user"]["role"], json!("viewer"));
    assert!(v["user"]["id"].as_str().unwrap().starts_with("usr_"));
    assert!(is_iso(&v["user"]["createdAt"]), "{v}");
    let r = t.get("/api/v1/users");
    let v = ok(&r, 200);
    assert_eq!(v["pagination"]["total"], json!(2), "{v}");
    for body in [r.text(), v.to_string()] {
        assert!(
            !body.contains(password) && !body.contains("argon2"),
            "{body}"
        );
    }
    // The new user can log in; default role is developer.
    login(t.addr, "new.user@example.test", password);
    let v = ok(
        &t.post(
            "/api/v1/users",
            &json!({"email": unique("dev") + "@example.test", "password": "0123456789ab"}),
        ),
        201,
    );
    assert_eq!(v["user"]["role"], json!("developer"));
    // Validation: short password, bad email, unknown role, all at once.
    let v = err(
        &t.post(
            "/api/v1/users",
            &json!({"email": "not-an-email", "password": "short", "role": "king"}),
        ),
        400,
        "VALIDATION_ERROR",
    );
    let mut fields: Vec<&str> = v["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["email", "password", "role"]);
}

#[test]
fn api_keys_show_their_secret_once() {
    let t = tenant();
    let pid = t.project("keyed");
    let r = t.post(
        "/api/v1/api-keys",
        &json!({"name": "ci", "scopes": ["project:read", "agent:read"], "projectIds": [pid]}),
    );
    let v = ok(&r, 201);
    let key = v["key"].as_str().unwrap();
    let meta = &v["apiKey"];
    assert!(meta["id"].as_str().unwrap().starts_with("key_"), "{v}");
    assert_eq!(meta["name"], json!("ci"));
    assert_eq!(meta["kind"], json!("user"));
    assert!(key.starts_with(meta["prefix"].as_str().unwrap()), "{v}");
    assert!(key.ends_with(meta["last4"].as_str().unwrap()), "{v}");
    assert_eq!(meta["last4"].as_str().unwrap().len(), 4);
    assert_eq!(meta["projectIds"], json!([pid]));
    let mut scopes: Vec<&str> = meta["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["agent:read", "project:read"]);
    assert!(
        meta.get("key").is_none() && meta.get("digest").is_none(),
        "{v}"
    );
    let r = t.get("/api/v1/api-keys");
    assert!(!contains(&r.body, key.as_bytes()), "{}", r.text());
    let v = ok(&r, 200);
    assert_eq!(v["pagination"]["total"], json!(2)); // owner + ci
                                                    // Newest first.
    assert_eq!(v["apiKeys"][0]["name"], json!("ci"));
    // Validation: no name, unknown kind.
    let v = err(
        &t.post("/api/v1/api-keys", &json!({"kind": "robot"})),
        400,
        "VALIDATION_ERROR",
    );
    assert_eq!(v["error"]["details"].as_array().unwrap().len(), 2, "{v}");
}

#[test]
fn projects_are_created_read_patched_and_deleted() {
    let t = tenant();
    let r = t.post(
        "/api/projects",
        &json!({"name": "My Shop Bot!", "description": "sells things", "entryAgentName": "clerk"}),
    );
    let v = ok(&r, 201);
    let p = &v["project"];
    let pid = p["id"].as_str().unwrap().to_string();
    assert!(pid.starts_with("proj_") && pid.len() <= 64, "{pid}");
    assert_eq!(p["name"], json!("My Shop Bot!"));
    assert_eq!(p["slug"], json!("my-shop-bot"));
    assert_eq!(p["description"], json!("sells things"));
    assert_eq!(p["entryAgentName"], json!("clerk"));
    assert!(is_iso(&p["createdAt"]) && is_iso(&p["updatedAt"]), "{v}");
    let path = format!("/api/projects/{pid}");
    assert_eq!(ok(&t.get(&path), 200)["project"], *p);
    // PATCH: fields given change, null clears, absent stays.
    let v = ok(
        &t.send(
            "PATCH",
            &path,
            &json!({"name": "Renamed", "description": null}),
        ),
        200,
    );
    assert_eq!(v["project"]["name"], json!("Renamed"));
    assert_eq!(v["project"]["description"], Value::Null);
    assert_eq!(v["project"]["entryAgentName"], json!("clerk"));
    assert_eq!(v["project"]["slug"], json!("my-shop-bot"));
    assert_eq!(ok(&t.get(&path), 200)["project"], v["project"]);
    err(
        &t.send("PATCH", &path, &json!({"entryAgentName": "Bad Name"})),
        400,
        "VALIDATION_ERROR",
    );
    // Delete takes its agents, sessions and secrets with it.
    t.agent(&pid, "clerk");
    let sid = t.session(&pid)["id"].as_str().unwrap().to_string();
    ok(
        &t.post(
            &format!("{path}/secrets"),
            &json!({"name": "K", "value": "v"}),
        ),
        201,
    );
    assert_eq!(ok(&t.delete(&path), 200), json!({"success": true}));
    let v = err(&t.get(&path), 404, "NOT_FOUND");
    assert_eq!(
        v["error"]["message"],
        json!(format!("Project not found: {pid}"))
    );
    err(&t.delete(&path), 404, "NOT_FOUND");
    err(&t.get("/api/agents/clerk"), 404, "NOT_FOUND");
    err(
        &t.get(&format!("/api/v1/sessions/{sid}/transcripts")),
        404,
        "NOT_FOUND",
    );
    let v = ok(&t.get("/api/projects"), 200);
    assert_eq!(v["pagination"]["total"], json!(0));
    // The slug is free again.
    t.project("My Shop Bot!");
}

#[test]
fn agents_are_created_replaced_and_deleted() {
    let t = tenant();
    let pid = t.project("agents");
    let base = format!("/api/projects/{pid}/agents");
    let r = t.post(
        &base,
        &json!({
            "name": "helper-1",
            "description": "helps",
            "instructions": "Be brief.",
            "model": {"provider": "openai", "model": "gpt-4o-mini", "baseUrl": "http://127.0.0.1:9/v1",
                      "apiKeySecret": "OPENAI_KEY", "temperature": 0.5, "maxTokens": 256,
                      "pricing": {"inputPerMTok": 0.15, "outputPerMTok": 0.6}},
            "dslContent": "agent helper-1 {}",
        }),
    );
    let v = ok(&r, 201);
    let a = &v["agent"];
    assert!(a["id"].as_str().unwrap().starts_with("agt_"), "{v}");
    assert_eq!(a["projectId"], json!(pid));
    assert_eq!(a["model"]["provider"], json!("openai"));
    assert_eq!(a["model"]["model"], json!("gpt-4o-mini"));
    assert_eq!(a["model"]["temperature"], json!(0.5));
    assert_eq!(a["model"]["maxTokens"], json!(256));
    assert_eq!(a["model"]["pricing"]["outputPerMTok"], json!(0.6));
    assert_eq!(a["dslContent"], json!("agent helper-1 {}"));
    let one = format!("{base}/helper-1");
    assert_eq!(ok(&t.get(&one), 200)["agent"], *a);
    // The default model is echo.
    let v = ok(&t.post(&base, &json!({"name": "plain"})), 201);
    assert_eq!(v["agent"]["model"]["provider"], json!("echo"));
    // PUT replaces the whole agent, keeping id and createdAt.
    let v = ok(
        &t.send("PUT", &one, &json!({"instructions": "New prompt."})),
        200,
    );
    assert_eq!(v["agent"]["id"], a["id"]);
    assert_eq!(v["agent"]["createdAt"], a["createdAt"]);
    assert_eq!(v["agent"]["name"], json!("helper-1"));
    assert_eq!(v["agent"]["instructions"], json!("New prompt."));
    assert_eq!(v["agent"]["description"], Value::Null);
    assert_eq!(v["agent"]["model"]["provider"], json!("echo"));
    // PUT .../dsl sets only the DSL.
    let v = ok(
        &t.send("PUT", &format!("{one}/dsl"), &json!({"dslContent": "v2"})),
        200,
    );
    assert!(is_iso(&v["updatedAt"]), "{v}");
    let got = ok(&t.get(&one), 200);
    assert_eq!(got["agent"]["dslContent"], json!("v2"));
    assert_eq!(got["agent"]["instructions"], json!("New prompt."));
    err(
        &t.send("PUT", &format!("{one}/dsl"), &json!({})),
        400,
        "VALIDATION_ERROR",
    );
    // Names are validated; openai needs a model.
    for bad in [
        json!({"name": "UPPER"}),
        json!({"name": "a".repeat(65)}),
        json!({"name": "ok-name", "model": {"provider": "openai"}}),
        json!({"name": "ok-name", "model": {"baseUrl": "ftp://x"}}),
    ] {
        err(&t.post(&base, &bad), 400, "VALIDATION_ERROR");
    }
    let v = ok(&t.get(&base), 200);
    assert_eq!(names(&v["agents"]), ["helper-1", "plain"]);
    // Delete, then it is gone.
    assert_eq!(ok(&t.delete(&one), 200), json!({"success": true}));
    let v = err(&t.get(&one), 404, "NOT_FOUND");
    assert_eq!(v["error"]["message"], json!("Agent not found: helper-1"));
    err(&t.send("PUT", &one, &json!({})), 404, "NOT_FOUND");
    err(&t.delete(&one), 404, "NOT_FOUND");
}

#[test]
fn agent_discovery_by_name_is_cacheable_and_404s_with_the_name() {
    let t = tenant();
    let p1 = t.project_with_agent("finder");
    let p2 = t.project("second");
    t.agent(&p2, "twin");
    let p3 = t.project("third");
    t.agent(&p3, "twin");

    let r = t.get("/api/agents/finder");
    let v = ok(&r, 200);
    assert_eq!(v["agent"]["name"], json!("finder"));
    assert_eq!(v["agent"]["projectId"], json!(p1));
    assert_eq!(r.header("cache-control"), Some("private, max-age=300"));

    let r = t.get("/api/agents/no-such-agent");
    let v = err(&r, 404, "NOT_FOUND");
    assert_eq!(
        v,
        json!({"success": false, "error": {"code": "NOT_FOUND", "message": "Agent not found: no-such-agent"}})
    );
    assert!(r
        .header("cache-control")
        .is_none_or(|c| !c.contains("max-age=300")));

    // A name in several projects needs ?projectId=.
    err(&t.get("/api/agents/twin"), 400, "BAD_REQUEST");
    let v = ok(&t.get(&format!("/api/agents/twin?projectId={p3}")), 200);
    assert_eq!(v["agent"]["projectId"], json!(p3));
    err(
        &t.get(&format!("/api/agents/finder?projectId={p2}")),
        404,
        "NOT_FOUND",
    );

    // The directory lists every project's agents.
    let v = ok(&t.get("/api/agents"), 200);
    assert_eq!(names(&v["agents"]), ["finder", "twin", "twin"]);
    assert_eq!(v["pagination"]["total"], json!(3));
}

#[test]
fn sessions_are_created_ended_reset_and_read() {
    let t = tenant();
    let pid = t.project_with_agent("entry");
    let other = t.agent(&pid, "other");
    let base = format!("/api/projects/{pid}/sessions");

    // Default: the entry agent.
    let v = ok(&t.post(&base, &json!({"metadata": {"customer": 7}})), 201);
    let s = v["session"].clone();
    let sid = s["id"].as_str().unwrap().to_string();
    assert!(sid.starts_with("ses_"), "{v}");
    assert_eq!(s["agentName"], json!("entry"));
    assert_eq!(s["status"], json!("active"));
    assert_eq!(s["channel"], json!("api"));
    assert!(s["agentId"].as_str().unwrap().starts_with("agt_"), "{v}");
    assert!(is_iso(&s["createdAt"]), "{v}");
    // By name and by id.
    let v = ok(&t.post(&base, &json!({"agentName": "other"})), 201);
    assert_eq!(v["session"]["agentId"], other["id"]);
    let v = ok(&t.post(&base, &json!({"agentId": other["id"]})), 201);
    assert_eq!(v["session"]["agentName"], json!("other"));
    let v = err(
        &t.post(&base, &json!({"agentName": "ghost"})),
        404,
        "NOT_FOUND",
    );
    assert_eq!(v["error"]["message"], json!("Agent not found: ghost"));
    // A project without an entry agent needs one named.
    let bare = t.project("bare");
    err(
        &t.post(&format!("/api/projects/{bare}/sessions"), &json!({})),
        400,
        "VALIDATION_ERROR",
    );

    let one = format!("{base}/{sid}");
    let v = ok(&t.get(&one), 200);
    assert_eq!(v["session"]["id"], json!(sid));
    assert_eq!(v["session"]["messageCount"], json!(0));

    // Messages: empty, paginated, oldest first.
    let v = ok(&t.get(&format!("{one}/messages")), 200);
    assert_eq!(v["messages"], json!([]));
    assert_eq!(
        v["pagination"],
        json!({"total": 0, "limit": 50, "offset": 0})
    );
    let v = ok(&t.get(&format!("{one}/messages?limit=500&offset=3")), 200);
    assert_eq!(
        v["pagination"],
        json!({"total": 0, "limit": 200, "offset": 3})
    );
    err(
        &t.get(&format!("{one}/messages?limit=-1")),
        400,
        "BAD_REQUEST",
    );
    let v = ok(&t.get(&format!("/api/v1/sessions/{sid}/transcripts")), 200);
    assert_eq!(v["messages"], json!([]));

    // Reset keeps the id.
    let v = ok(&t.post(&format!("{one}/reset"), &json!({})), 200);
    assert_eq!(v["session"]["id"], json!(sid));
    assert_eq!(v["session"]["messageCount"], json!(0));

    // End: status ended, history kept, filters see it.
    assert_eq!(ok(&t.delete(&one), 200), json!({"success": true}));
    let v = ok(&t.get(&one), 200);
    assert_eq!(v["session"]["status"], json!("ended"));
    let v = ok(&t.get(&format!("{base}?status=ended")), 200);
    assert_eq!(ids(&v["sessions"]), std::slice::from_ref(&sid));
    let v = ok(&t.get(&format!("{base}?status=active")), 200);
    assert_eq!(v["pagination"]["total"], json!(2));
    let v = ok(&t.get(&format!("{base}?channel=sdk")), 200);
    assert_eq!(v["pagination"]["total"], json!(0));
    let v = ok(&t.get(&base), 200);
    assert_eq!(v["pagination"]["total"], json!(3));
    for s in v["sessions"].as_array().unwrap() {
        for field in [
            "id",
            "agentName",
            "status",
            "channel",
            "messageCount",
            "tokenCount",
            "createdAt",
            "lastActivityAt",
        ] {
            assert!(s.get(field).is_some(), "{field} missing in {s}");
        }
    }
    ok(&t.get(&format!("/api/v1/sessions/{sid}/transcripts")), 200);

    // Unknown sessions.
    let v = err(&t.get(&format!("{base}/ses_nope")), 404, "NOT_FOUND");
    assert_eq!(v["error"]["message"], json!("Session not found: ses_nope"));
    err(&t.delete(&format!("{base}/ses_nope")), 404, "NOT_FOUND");
    err(
        &t.post(&format!("{base}/ses_nope/reset"), &json!({})),
        404,
        "NOT_FOUND",
    );
    err(
        &t.get(&format!("{base}/ses_nope/messages")),
        404,
        "NOT_FOUND",
    );
    err(
        &t.get("/api/v1/sessions/ses_nope/transcripts"),
        404,
        "NOT_FOUND",
    );
    // A session of another project of the same tenant is not under this one.
    let p2 = t.project_with_agent("elsewhere");
    err(
        &t.get(&format!("/api/projects/{p2}/sessions/{sid}")),
        404,
        "NOT_FOUND",
    );
}

#[test]
fn secret_values_never_leave_the_server() {
    let t = tenant();
    let pid = t.project("vault");
    let v1 = format!("sv1-{}-7f3a9c", unique("secret"));
    let v2 = format!("sv2-{}-b81e44", unique("secret"));
    let base = format!("/api/projects/{pid}/secrets");
    let mut seen: Vec<Response> = Vec::new();

    let r = t.post(
        &base,
        &json!({"name": "OPENAI_API_KEY", "value": v1, "expiresAt": iso_from_now(86_400_000)}),
    );
    let v = ok(&r, 201);
    assert_eq!(v["secret"]["name"], json!("OPENAI_API_KEY"));
    assert_eq!(v["secret"]["version"], json!(1));
    assert!(
        v["secret"]["id"].as_str().unwrap().starts_with("sec_"),
        "{v}"
    );
    assert!(is_iso(&v["secret"]["expiresAt"]), "{v}");
    assert!(v["secret"].get("value").is_none(), "{v}");
    seen.push(r);

    let r = t.get(&base);
    let v = ok(&r, 200);
    assert_eq!(v["pagination"]["total"], json!(1));
    seen.push(r);

    let r = t.post(
        &format!("{base}/OPENAI_API_KEY/rotate"),
        &json!({"value": v2}),
    );
    let v = ok(&r, 200);
    assert_eq!(v["secret"]["version"], json!(2));
    seen.push(r);
    let r = t.get(&base);
    assert_eq!(ok(&r, 200)["secrets"][0]["version"], json!(2));
    seen.push(r);

    // Errors that involve the values do not echo them either.
    let r = t.post(&base, &json!({"name": "OPENAI_API_KEY", "value": v1}));
    err(&r, 409, "CONFLICT");
    seen.push(r);
    let r = t.post(&base, &json!({"name": "lower-case", "value": v2}));
    err(&r, 400, "VALIDATION_ERROR");
    seen.push(r);
    let r = t.post(
        &base,
        &json!({"name": "BIG", "value": "x".repeat(64 * 1024 + 1)}),
    );
    err(&r, 400, "VALIDATION_ERROR");
    let r = t.post(&base, &json!({"name": "NOVALUE"}));
    err(&r, 400, "VALIDATION_ERROR");
    seen.push(r);
    let r = t.post(&format!("{base}/MISSING/rotate"), &json!({"value": v2}));
    err(&r, 404, "NOT_FOUND");
    seen.push(r);
    seen.push(t.get(&format!("/api/projects/{pid}/project-io/export")));
    seen.push(t.get(&format!("/api/projects/{pid}")));

    for r in &seen {
        for v in [&v1, &v2] {
            assert!(!contains(&r.raw_head, v.as_bytes()), "{v} in a head");
            assert!(!contains(&r.body, v.as_bytes()), "{v} in {}", r.text());
        }
    }
    // Not in any file of the data directory either (the writes were acknowledged, so
    // they are on disk).
    let files = files_under(&server().data_dir);
    assert!(!files.is_empty());
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        for v in [&v1, &v2] {
            assert!(!contains(&bytes, v.as_bytes()), "{v} in {}", f.display());
        }
    }

    // Delete, then it is gone.
    ok(&t.delete(&format!("{base}/OPENAI_API_KEY")), 200);
    err(
        &t.delete(&format!("{base}/OPENAI_API_KEY")),
        404,
        "NOT_FOUND",
    );
    let v = ok(&t.get(&base), 200);
    assert_eq!(v["secrets"], json!([]));
}

#[test]
fn me_describes_the_credential() {
    let t = tenant();
    let pid = t.project("me");
    let (key, id) =
        t.api_key(&json!({"name": "me", "scopes": ["session:read"], "projectIds": [pid]}));
    let v = ok(&req("GET", "/api/v1/auth/me").bearer(&key).send(), 200);
    assert_eq!(v["data"]["tenantId"], json!(t.id));
    assert_eq!(v["data"]["principal"], json!(id));
    assert_eq!(v["data"]["kind"], json!("api_key"));
    assert_eq!(v["data"]["scopes"], json!(["session:read"]));
}

/// One echo turn in session `sid`; returns the reply body.
fn turn(t: &Tenant, pid: &str, sid: &str, message: &str) -> Value {
    ok(
        &t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "sessionId": sid, "message": message}),
        ),
        200,
    )
}

#[test]
fn messages_are_oldest_first_and_reset_clears_the_conversation() {
    let t = tenant();
    let pid = t.project_with_agent("talker");
    let sid = t.session(&pid)["id"].as_str().unwrap().to_string();
    let first = turn(&t, &pid, &sid, "hello there");
    for i in 0..4 {
        turn(&t, &pid, &sid, &format!("message {i}"));
    }
    let one = format!("/api/projects/{pid}/sessions/{sid}");
    let v = ok(&t.get(&format!("{one}/messages")), 200);
    assert_eq!(
        v["pagination"],
        json!({"total": 10, "limit": 50, "offset": 0})
    );
    let msgs = v["messages"].as_array().unwrap();
    let contents: Vec<&str> = msgs
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents[0], "hello there");
    assert_eq!(contents[2], "message 0");
    assert_eq!(contents[8], "message 3");
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles[..4], ["user", "assistant", "user", "assistant"]);
    for m in msgs {
        assert!(m["id"].as_str().unwrap().starts_with("msg_"), "{m}");
        assert!(is_iso(&m["createdAt"]), "{m}");
    }
    assert_eq!(msgs[1]["id"], first["messageId"]);
    assert!(msgs[1]["usage"]["totalTokens"].is_number(), "{}", msgs[1]);
    // Pages of the same order.
    let v = ok(&t.get(&format!("{one}/messages?limit=3&offset=2")), 200);
    assert_eq!(
        v["pagination"],
        json!({"total": 10, "limit": 3, "offset": 2})
    );
    assert_eq!(ids(&v["messages"]), ids(&json!(msgs[2..5])));
    // The transcript is the whole conversation.
    let v = ok(&t.get(&format!("/api/v1/sessions/{sid}/transcripts")), 200);
    assert_eq!(ids(&v["messages"]), ids(&json!(msgs)));
    let s = ok(&t.get(&one), 200);
    assert_eq!(s["session"]["messageCount"], json!(10));

    // Reset: same session, no messages, and the next turn starts from an empty context.
    let v = ok(&t.post(&format!("{one}/reset"), &json!({})), 200);
    assert_eq!(v["session"]["id"], json!(sid));
    assert_eq!(v["session"]["messageCount"], json!(0));
    let s = ok(&t.get(&one), 200);
    assert_eq!(s["session"]["messageCount"], json!(0));
    assert_eq!(s["session"]["status"], json!("active"));
    let v = ok(&t.get(&format!("{one}/messages")), 200);
    assert_eq!(v["messages"], json!([]));
    assert_eq!(v["pagination"]["total"], json!(0));
    let v = ok(&t.get(&format!("/api/v1/sessions/{sid}/transcripts")), 200);
    assert_eq!(v["messages"], json!([]));
    let again = turn(&t, &pid, &sid, "hello there");
    assert_eq!(again["sessionId"], json!(sid));
    assert_eq!(again["usage"]["inputTokens"], first["usage"]["inputTokens"]);
    let v = ok(&t.get(&format!("{one}/messages")), 200);
    assert_eq!(v["pagination"]["total"], json!(2));
}
