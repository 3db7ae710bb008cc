//! The widget SDK (ENDPOINTS section 6) and CORS (CONVENTIONS section 8) against the real
//! binary: public keys, `sdk/init`, `sdk/refresh`, `sdk/config`, SDK tokens bound to their
//! origin, project and own sessions, and preflights that never answer `*`.

mod common;

use common::*;
use halyard_testkit::Response;
use serde_json::json;

fn acao(r: &Response) -> Option<&str> {
    r.header("access-control-allow-origin")
}

fn no_cors_headers(r: &Response) {
    assert!(
        !r.headers
            .iter()
            .any(|(n, _)| n.to_ascii_lowercase().starts_with("access-control-")),
        "{:?}",
        r.headers
    );
}

fn never_a_wildcard(r: &Response) {
    assert!(
        !r.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("access-control-allow-origin") && v.contains('*')),
        "{:?}",
        r.headers
    );
}

fn vary_has_origin(r: &Response) -> bool {
    r.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("vary")
            && v.split(',')
                .any(|x| x.trim().eq_ignore_ascii_case("origin"))
    })
}

fn origin() -> String {
    format!("https://{}.example", unique("site"))
}

fn sdk(method: &str, path: &str, token: &str, origin: &str) -> common::Req {
    req(method, path)
        .header("X-SDK-Token", token)
        .header("Origin", origin)
}

#[test]
fn public_keys_are_created_listed_and_validated() {
    let t = tenant();
    let pid = t.project_with_agent("w");
    let base = format!("/api/projects/{pid}/sdk-public-keys");
    let o = origin();
    let r = t.post(
        &base,
        &json!({"name": "site", "allowedOrigins": [o, "http://localhost:5173"], "permissions": {"chat": true}}),
    );
    let v = ok(&r, 201);
    let pk = v["publicKey"].as_str().unwrap();
    assert!(pk.starts_with("pk_"), "{v}");
    let k = &v["key"];
    assert!(k["id"].as_str().unwrap().starts_with("pkey_"), "{v}");
    assert!(pk.starts_with(k["keyPrefix"].as_str().unwrap()), "{v}");
    assert_eq!(k["allowedOrigins"], json!([o, "http://localhost:5173"]));
    let r = t.get(&base);
    assert!(!contains(&r.body, pk.as_bytes()), "{}", r.text());
    let v = ok(&r, 200);
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    for bad in [
        json!({"name": "x"}),
        json!({"name": "x", "allowedOrigins": []}),
        json!({"name": "x", "allowedOrigins": ["https://a.example/path"]}),
        json!({"name": "x", "allowedOrigins": ["*"]}),
        json!({"name": "x", "allowedOrigins": (0..51).map(|i| format!("https://{i}.example")).collect::<Vec<_>>()}),
        json!({"allowedOrigins": [o]}),
    ] {
        err(&t.post(&base, &bad), 400, "VALIDATION_ERROR");
    }
    // A key:admin scope is needed.
    let (key, _) = t.api_key(&json!({"name": "no-admin"}));
    err(&req("GET", &base).bearer(&key).send(), 403, "FORBIDDEN");
}

#[test]
fn sdk_init_needs_the_public_key_and_an_allowed_origin() {
    let t = tenant();
    let pid = t.project_with_agent("concierge");
    let o = origin();
    let (pk, _) = t.public_key(&pid, &[&o]);
    let init = |pk: Option<&str>, origin: Option<&str>, pid: &str| {
        let mut r = req("POST", "/api/v1/sdk/init");
        if let Some(pk) = pk {
            r = r.header("X-Public-Key", pk);
        }
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        r.json(&json!({"projectId": pid, "userContext": {"userId": "visitor-1"}}))
            .send()
    };
    let r = init(Some(&pk), Some(&o), &pid);
    let v = ok(&r, 200);
    assert!(v["token"].as_str().unwrap().starts_with("sdk_"), "{v}");
    assert_eq!(v["expiresIn"], json!(14400));
    assert_eq!(v["tenantId"], json!(t.id));
    assert_eq!(v["projectId"], json!(pid));
    assert_eq!(v["permissions"], json!(["session:execute", "session:read"]));
    assert_eq!(v["widgetConfig"]["agentName"], json!("concierge"));
    assert_eq!(acao(&r), Some(o.as_str()));
    assert!(vary_has_origin(&r), "{:?}", r.headers);
    never_a_wildcard(&r);

    let r = init(Some(&pk), Some("https://other.example"), &pid);
    err(&r, 403, "FORBIDDEN");
    assert!(acao(&r).is_none(), "{:?}", r.headers);
    err(&init(Some(&pk), None, &pid), 403, "FORBIDDEN");
    err(&init(None, Some(&o), &pid), 401, "UNAUTHORIZED");
    err(
        &init(Some("pk_forged"), Some(&o), &pid),
        401,
        "UNAUTHORIZED",
    );
    err(&init(Some(&t.key), Some(&o), &pid), 401, "UNAUTHORIZED");
    // The key's own project only.
    let other = t.project("other");
    err(&init(Some(&pk), Some(&o), &other), 404, "NOT_FOUND");
    err(
        &req("POST", "/api/v1/sdk/init")
            .header("X-Public-Key", &pk)
            .header("Origin", &o)
            .json(&json!({}))
            .send(),
        400,
        "VALIDATION_ERROR",
    );
}

#[test]
fn preflights_answer_registered_origins_only_and_never_a_wildcard() {
    let t = tenant();
    let pid = t.project_with_agent("cors");
    let registered = origin();
    t.public_key(&pid, &[&registered]);
    let preflight = |path: &str, o: &str| {
        req("OPTIONS", path)
            .header("Origin", o)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type, x-public-key",
            )
            .send()
    };
    for path in [
        "/api/v1/sdk/init".to_string(),
        "/api/v1/sdk/refresh".to_string(),
        format!("/api/v1/sdk/config/{pid}"),
    ] {
        let r = preflight(&path, &registered);
        assert!(
            (200..300).contains(&r.status),
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert_eq!(acao(&r), Some(registered.as_str()), "{path}");
        assert!(vary_has_origin(&r), "{path}: {:?}", r.headers);
        never_a_wildcard(&r);
        let allow = r
            .header("access-control-allow-headers")
            .expect("Access-Control-Allow-Headers")
            .to_ascii_lowercase();
        for h in [
            "content-type",
            "x-public-key",
            "x-sdk-token",
            "x-api-key",
            "last-event-id",
        ] {
            assert!(allow.contains(h), "{h} not in {allow}");
        }
        let methods = r.header("access-control-allow-methods").unwrap_or("");
        assert!(methods.contains("POST"), "{methods}");

        // An origin no public key lists gets no CORS grant.
        let r = preflight(&path, "https://unregistered.example");
        assert!(acao(&r).is_none(), "{path}: {:?}", r.headers);
        never_a_wildcard(&r);
    }
    // Other endpoints send no CORS headers at all, preflight or real request, even for a
    // registered origin.
    let r = preflight("/api/projects", &registered);
    no_cors_headers(&r);
    let r = t
        .req("GET", "/api/projects")
        .header("Origin", &registered)
        .send();
    ok(&r, 200);
    no_cors_headers(&r);
    let r = t
        .req("GET", &format!("/api/projects/{pid}/sdk-public-keys"))
        .header("Origin", &registered)
        .send();
    ok(&r, 200);
    no_cors_headers(&r);
    // Unknown paths are 404 even as preflights.
    let r = preflight("/api/v2/sdk/init", &registered);
    err(&r, 404, "NOT_FOUND");
}

#[test]
fn sdk_tokens_see_only_the_sessions_they_created() {
    let t = tenant();
    let pid = t.project_with_agent("support");
    let o = origin();
    let (pk, _) = t.public_key(&pid, &[&o]);
    let mine = sdk_init(t.addr, &pk, &o, &pid);
    let theirs = sdk_init(t.addr, &pk, &o, &pid);
    let base = format!("/api/projects/{pid}/sessions");

    let api_session = t.session(&pid)["id"].as_str().unwrap().to_string();
    let r = sdk("POST", &base, &mine, &o).json(&json!({})).send();
    let v = ok(&r, 201);
    assert_eq!(acao(&r), None, "not an SDK path: no CORS headers");
    let my_session = v["session"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["session"]["channel"], json!("sdk"));
    assert_eq!(v["session"]["agentName"], json!("support"));
    let their_session = ok(
        &sdk("POST", &base, &theirs, &o).json(&json!({})).send(),
        201,
    )["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Its own session: every session route works.
    ok(
        &sdk("GET", &format!("{base}/{my_session}"), &mine, &o).send(),
        200,
    );
    let v = ok(
        &sdk("GET", &format!("{base}/{my_session}/messages"), &mine, &o).send(),
        200,
    );
    assert_eq!(
        v["pagination"],
        json!({"total": 0, "limit": 50, "offset": 0})
    );
    ok(
        &sdk(
            "GET",
            &format!("/api/v1/sessions/{my_session}/transcripts"),
            &mine,
            &o,
        )
        .send(),
        200,
    );
    ok(
        &sdk("POST", &format!("{base}/{my_session}/reset"), &mine, &o)
            .json(&json!({}))
            .send(),
        200,
    );
    // The list holds only its own.
    let v = ok(&sdk("GET", &base, &mine, &o).send(), 200);
    assert_eq!(ids(&v["sessions"]), std::slice::from_ref(&my_session));
    assert_eq!(v["pagination"]["total"], json!(1));
    // Another token's session, or one made with an API key: 404, as if missing.
    for other in [&their_session, &api_session] {
        for (m, p) in [
            ("GET", format!("{base}/{other}")),
            ("GET", format!("{base}/{other}/messages")),
            ("POST", format!("{base}/{other}/reset")),
            ("DELETE", format!("{base}/{other}")),
            ("GET", format!("/api/v1/sessions/{other}/transcripts")),
        ] {
            let r = sdk(m, &p, &mine, &o)
                .header("X-Request-Id", "sdk-probe")
                .send();
            let v = err(&r, 404, "NOT_FOUND");
            assert_eq!(
                v["error"]["message"],
                json!(format!("Session not found: {other}"))
            );
        }
    }
    // Those sessions were not ended by the attempts.
    let v = ok(&t.get(&format!("{base}/{their_session}")), 200);
    assert_eq!(v["session"]["status"], json!("active"));
    // The API key sees all three.
    let v = ok(&t.get(&base), 200);
    assert_eq!(v["pagination"]["total"], json!(3));
    // It may end its own.
    ok(
        &sdk("DELETE", &format!("{base}/{my_session}"), &mine, &o).send(),
        200,
    );
    let v = ok(&t.get(&format!("{base}/{my_session}")), 200);
    assert_eq!(v["session"]["status"], json!("ended"));
}

#[test]
fn sdk_tokens_are_bound_to_their_project_and_origin() {
    let t = tenant();
    let pid = t.project_with_agent("bound");
    let other = t.project_with_agent("elsewhere");
    let (o1, o2) = (origin(), origin());
    let (pk, _) = t.public_key(&pid, &[&o1, &o2]);
    let token = sdk_init(t.addr, &pk, &o1, &pid);
    let base = format!("/api/projects/{pid}/sessions");
    ok(&sdk("GET", &base, &token, &o1).send(), 200);
    // Another listed origin of the same key did not create this token.
    err(&sdk("GET", &base, &token, &o2).send(), 403, "FORBIDDEN");
    // Another project is missing to it.
    err(
        &sdk(
            "GET",
            &format!("/api/projects/{other}/sessions"),
            &token,
            &o1,
        )
        .send(),
        404,
        "NOT_FOUND",
    );
    err(
        &sdk(
            "POST",
            &format!("/api/projects/{other}/sessions"),
            &token,
            &o1,
        )
        .json(&json!({}))
        .send(),
        404,
        "NOT_FOUND",
    );
    // Another tenant's project too.
    let stranger = tenant();
    let foreign = stranger.project_with_agent("x");
    err(
        &sdk(
            "GET",
            &format!("/api/projects/{foreign}/sessions"),
            &token,
            &o1,
        )
        .send(),
        404,
        "NOT_FOUND",
    );
}

#[test]
fn sdk_refresh_issues_a_new_token_and_keeps_the_old_one() {
    let t = tenant();
    let pid = t.project_with_agent("fresh");
    let o = origin();
    let (pk, _) = t.public_key(&pid, &[&o]);
    let old = sdk_init(t.addr, &pk, &o, &pid);
    let base = format!("/api/projects/{pid}/sessions");
    let sid = ok(&sdk("POST", &base, &old, &o).json(&json!({})).send(), 201)["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = sdk("POST", "/api/v1/sdk/refresh", &old, &o)
        .json(&json!({}))
        .send();
    let v = ok(&r, 200);
    assert_eq!(acao(&r), Some(o.as_str()));
    assert!(vary_has_origin(&r));
    // Within the same second too, every refresh is a new token (its own id).
    let new = v["token"].as_str().unwrap().to_string();
    assert!(new.starts_with("sdk_"), "{v}");
    assert_ne!(new, old, "a refresh issues a new token");
    let again = ok(
        &sdk("POST", "/api/v1/sdk/refresh", &old, &o)
            .json(&json!({}))
            .send(),
        200,
    );
    assert_ne!(again["token"].as_str(), Some(new.as_str()));
    assert_eq!(v["expiresIn"], json!(14400));
    assert_eq!(v["projectId"], json!(pid));
    ok(&sdk("GET", &base, &old, &o).send(), 200);
    ok(&sdk("GET", &base, &new, &o).send(), 200);
    // The refreshed token is the same widget session: it still sees its sessions.
    ok(&sdk("GET", &format!("{base}/{sid}"), &new, &o).send(), 200);
    // Wrong origin, no token, or another credential: refused.
    err(
        &sdk("POST", "/api/v1/sdk/refresh", &old, "https://evil.example")
            .json(&json!({}))
            .send(),
        403,
        "FORBIDDEN",
    );
    err(
        &req("POST", "/api/v1/sdk/refresh")
            .header("Origin", &o)
            .json(&json!({}))
            .send(),
        401,
        "UNAUTHORIZED",
    );
    err(
        &req("POST", "/api/v1/sdk/refresh")
            .header("X-Public-Key", &pk)
            .header("Origin", &o)
            .json(&json!({}))
            .send(),
        401,
        "UNAUTHORIZED",
    );
}

#[test]
fn deleting_a_public_key_stops_it_and_its_tokens() {
    let t = tenant();
    let pid = t.project_with_agent("gone");
    let o = origin();
    let (pk, kid) = t.public_key(&pid, &[&o]);
    let (pk2, _) = t.public_key(&pid, &[&o]);
    let token = sdk_init(t.addr, &pk, &o, &pid);
    let token2 = sdk_init(t.addr, &pk2, &o, &pid);
    let base = format!("/api/projects/{pid}/sessions");
    ok(&sdk("GET", &base, &token, &o).send(), 200);
    ok(
        &t.delete(&format!("/api/projects/{pid}/sdk-public-keys/{kid}")),
        200,
    );
    err(&sdk("GET", &base, &token, &o).send(), 401, "UNAUTHORIZED");
    err(
        &req("GET", &format!("/api/v1/sdk/config/{pid}"))
            .api_key(&pk)
            .header("Origin", &o)
            .send(),
        401,
        "UNAUTHORIZED",
    );
    err(
        &req("POST", "/api/v1/sdk/init")
            .header("X-Public-Key", &pk)
            .header("Origin", &o)
            .json(&json!({"projectId": pid}))
            .send(),
        401,
        "UNAUTHORIZED",
    );
    // The other key and its token still work.
    ok(&sdk("GET", &base, &token2, &o).send(), 200);
    err(
        &t.delete(&format!("/api/projects/{pid}/sdk-public-keys/{kid}")),
        404,
        "NOT_FOUND",
    );
    let v = ok(&t.get(&format!("/api/projects/{pid}/sdk-public-keys")), 200);
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
}

#[test]
fn sdk_config_answers_with_cors_for_the_allowed_origin() {
    let t = tenant();
    let pid = t.project_with(&json!({"name": "Widget Home", "entryAgentName": "hello"}));
    t.agent(&pid, "hello");
    let o = origin();
    let (pk, _) = t.public_key(&pid, &[&o]);
    let r = req("GET", &format!("/api/v1/sdk/config/{pid}"))
        .api_key(&pk)
        .header("Origin", &o)
        .send();
    let v = ok(&r, 200);
    assert_eq!(v["config"]["projectName"], json!("Widget Home"));
    assert_eq!(v["config"]["agentName"], json!("hello"));
    assert_eq!(acao(&r), Some(o.as_str()));
    assert!(vary_has_origin(&r));
    never_a_wildcard(&r);
    let r = req("GET", &format!("/api/v1/sdk/config/{pid}"))
        .api_key(&pk)
        .header("Origin", "https://nope.example")
        .send();
    err(&r, 403, "FORBIDDEN");
    assert!(acao(&r).is_none());
}
