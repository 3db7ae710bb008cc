//! CONVENTIONS.md against the real binary: the error envelope and one test per error code
//! reachable in the v1 API (408/414/431 are in `engine_http.rs`), body limits, request ids,
//! pagination, and the OpenAPI document. One server per test binary; each test has its own
//! tenant.

mod common;

use std::time::Duration;

use common::*;
use halyard_testkit::Client;
use serde_json::json;

#[test]
fn malformed_json_is_400_with_the_byte_offset() {
    let t = tenant();
    let r = t
        .req("POST", "/api/projects")
        .raw_json(br#"{"name": x}"#.to_vec())
        .send();
    let v = err(&r, 400, "BAD_REQUEST");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("at byte 9"), "{msg}");
    // A multi-line body: the offset counts bytes, not columns of the last line.
    let r = t
        .req("POST", "/api/projects")
        .raw_json(b"{\n  \"name\": \"a\",\n  \"x\": ]\n}".to_vec())
        .send();
    let v = err(&r, 400, "BAD_REQUEST");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("at byte 24"), "{msg}");
    // Multi-byte characters before the error count as bytes.
    let r = t
        .req("POST", "/api/projects")
        .raw_json("{\"a\":\"\u{e9}\u{e9}\",x}".as_bytes().to_vec())
        .send();
    let v = err(&r, 400, "BAD_REQUEST");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("at byte 12"), "{msg}");
    // Deep nesting is an error, not a crash.
    let mut deep = b"{\"name\": ".to_vec();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    let r = t.req("POST", "/api/projects").raw_json(deep).send();
    err(&r, 400, "BAD_REQUEST");
    // Trailing bytes after the document.
    let r = t
        .req("POST", "/api/projects")
        .raw_json(br#"{"name": "a"} x"#.to_vec())
        .send();
    err(&r, 400, "BAD_REQUEST");
    // Truncated document.
    let r = t
        .req("POST", "/api/projects")
        .raw_json(br#"{"name": "a""#.to_vec())
        .send();
    err(&r, 400, "BAD_REQUEST");
    // Nothing was created by any of them.
    let v = ok(&t.get("/api/projects"), 200);
    assert_eq!(v["pagination"]["total"], json!(0), "{v}");
}

#[test]
fn invalid_utf8_is_400_with_the_byte_offset() {
    let t = tenant();
    let mut bytes = br#"{"name":""#.to_vec();
    bytes.push(0xff);
    bytes.extend_from_slice(br#""}"#);
    let r = t.req("POST", "/api/projects").raw_json(bytes).send();
    let v = err(&r, 400, "BAD_REQUEST");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("byte 9"), "{msg}");
    assert!(msg.to_ascii_lowercase().contains("utf-8"), "{msg}");
}

#[test]
fn bad_query_parameters_are_400() {
    let t = tenant();
    for q in [
        "limit=-1",
        "limit=1.5",
        "limit=abc",
        "limit=",
        "offset=-1",
        "offset=2.0",
        "offset=x",
        "limit=99999999999999999999999",
    ] {
        let r = t.get(&format!("/api/projects?{q}"));
        let v = err(&r, 400, "BAD_REQUEST");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("'"),
            "{q}: {v}"
        );
    }
    let pid = t.project_with_agent("bot");
    let r = t.get(&format!("/api/projects/{pid}/sessions?status=sleeping"));
    err(&r, 400, "BAD_REQUEST");
    let r = t.get(&format!("/api/projects/{pid}/sessions?channel=fax"));
    err(&r, 400, "BAD_REQUEST");
}

#[test]
fn validation_error_lists_every_bad_field_in_details() {
    let t = tenant();
    let pid = t.project("validation");
    let r = t.post(
        &format!("/api/projects/{pid}/agents"),
        &json!({
            "name": "Not A Name",
            "instructions": 42,
            "model": {"provider": "nope", "temperature": 5, "maxTokens": 0},
            "someFutureField": {"ignored": true},
        }),
    );
    let v = err(&r, 400, "VALIDATION_ERROR");
    let details = v["error"]["details"].as_array().expect("details[]");
    let fields: Vec<&str> = details
        .iter()
        .map(|d| {
            assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
            d["field"].as_str().unwrap()
        })
        .collect();
    for want in [
        "name",
        "instructions",
        "model.provider",
        "model.temperature",
        "model.maxTokens",
    ] {
        assert!(fields.contains(&want), "{want} missing from {fields:?}");
    }
    assert!(
        !fields.iter().any(|f| f.contains("someFutureField")),
        "{fields:?}"
    );
    // A missing required field, and a body that is not an object.
    let v = err(
        &t.post("/api/projects", &json!({"description": "no name"})),
        400,
        "VALIDATION_ERROR",
    );
    assert_eq!(v["error"]["details"][0]["field"], json!("name"), "{v}");
    let v = err(
        &t.post("/api/projects", &json!([1, 2])),
        400,
        "VALIDATION_ERROR",
    );
    assert!(v["error"]["details"].is_array(), "{v}");
    // Unknown fields are ignored on a valid body.
    ok(
        &t.post(
            "/api/projects",
            &json!({"name": "ok", "bogus": [1, {"x": 2}]}),
        ),
        201,
    );
    // Nothing else was created.
    let v = ok(&t.get(&format!("/api/projects/{pid}/agents")), 200);
    assert_eq!(v["pagination"]["total"], json!(0), "{v}");
}

#[test]
fn missing_or_unknown_credential_is_401() {
    let t = tenant();
    // Decided from the head: the server does not wait for a body it will not read.
    let mut c = Client::connect(addr()).unwrap();
    c.send(
        b"POST /api/projects HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer abl_sk-nope\r\n\
          Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n",
    )
    .unwrap();
    err(&c.response().unwrap(), 401, "UNAUTHORIZED");
    let cases = [
        req("GET", "/api/projects"),
        req("GET", "/api/projects").bearer("abl_sk-not-a-real-key"),
        req("GET", "/api/projects").api_key("ak_not-a-real-key"),
        req("GET", "/api/projects").bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"),
        req("GET", "/api/projects").header("Authorization", "Basic dXNlcjpwYXNz"),
        req("GET", "/api/projects").bearer(""),
        req("GET", "/api/projects").header("X-SDK-Token", "sdk_forged.token"),
        // A valid key with one character changed.
        req("GET", "/api/projects").bearer(&format!("{}x", &t.key[..t.key.len() - 1])),
    ];
    for c in cases {
        let r = c.send();
        err(&r, 401, "UNAUTHORIZED");
    }
    // The real key works, so the 401s were about the credential.
    ok(&t.get("/api/projects"), 200);
}

#[test]
fn valid_credential_without_the_scope_is_403() {
    let t = tenant();
    let (key, _) = t.api_key(&json!({"name": "reader", "scopes": ["project:read"]}));
    let r = req("POST", "/api/projects")
        .bearer(&key)
        .json(&json!({"name": "nope"}))
        .send();
    let v = err(&r, 403, "FORBIDDEN");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("project:write"),
        "{v}"
    );
    ok(&req("GET", "/api/projects").bearer(&key).send(), 200);
    // Nothing was created.
    let v = ok(&t.get("/api/projects"), 200);
    assert_eq!(v["pagination"]["total"], json!(0), "{v}");
}

#[test]
fn unknown_paths_and_versions_are_404() {
    let t = tenant();
    for path in [
        "/api/v2/projects",
        "/api/v2/auth/me",
        "/api/v0/openapi.json",
        "/api/v1/nothing-here",
        "/api/projects/",
        "/api/projects//agents",
        "/nope",
    ] {
        let r = t.get(path);
        err(&r, 404, "NOT_FOUND");
    }
    // Without a credential too: an unknown path is not an auth question.
    err(&req("GET", "/api/v2/projects").send(), 404, "NOT_FOUND");
    // A resource that does not exist.
    let v = err(&t.get("/api/projects/proj_doesnotexist"), 404, "NOT_FOUND");
    assert_eq!(
        v["error"]["message"],
        json!("Project not found: proj_doesnotexist")
    );
}

#[test]
fn wrong_method_is_405_with_allow() {
    let cases = [
        ("PUT", "/api/projects", "GET, POST, HEAD, OPTIONS"),
        ("DELETE", "/api/v1/auth/login", "POST, OPTIONS"),
        ("POST", "/api/v1/openapi.json", "GET, HEAD, OPTIONS"),
        (
            "POST",
            "/api/projects/proj_x",
            "GET, PATCH, DELETE, HEAD, OPTIONS",
        ),
        (
            "GET",
            "/api/projects/proj_x/sessions/ses_x/reset",
            "POST, OPTIONS",
        ),
    ];
    for (method, path, allow) in cases {
        let r = req(method, path).send();
        err(&r, 405, "METHOD_NOT_ALLOWED");
        let got = r
            .header("allow")
            .unwrap_or_else(|| panic!("no Allow on {path}"));
        let mut got: Vec<&str> = got.split(',').map(str::trim).collect();
        let mut want: Vec<&str> = allow.split(", ").collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{method} {path}");
        // OPTIONS on the same path names the same methods, and no CORS grant.
        let r = req("OPTIONS", path).send();
        assert!(
            (200..300).contains(&r.status),
            "OPTIONS {path}: {}",
            r.status
        );
        let mut opts: Vec<&str> = r
            .header("allow")
            .unwrap_or_else(|| panic!("no Allow on OPTIONS {path}"))
            .split(',')
            .map(str::trim)
            .collect();
        opts.sort_unstable();
        assert_eq!(opts, want, "OPTIONS {path}");
        assert!(r.header("access-control-allow-origin").is_none());
    }
}

#[test]
fn duplicates_are_409() {
    let t = tenant();
    let pid = t.project_with_agent("dup");
    // An agent name.
    let r = t.post(
        &format!("/api/projects/{pid}/agents"),
        &json!({"name": "dup"}),
    );
    let v = err(&r, 409, "CONFLICT");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("dup"),
        "{v}"
    );
    // A secret name.
    let path = format!("/api/projects/{pid}/secrets");
    ok(
        &t.post(&path, &json!({"name": "TOKEN", "value": "one"})),
        201,
    );
    err(
        &t.post(&path, &json!({"name": "TOKEN", "value": "two"})),
        409,
        "CONFLICT",
    );
    // A key name.
    t.api_key(&json!({"name": "ci"}));
    err(
        &t.post("/api/v1/api-keys", &json!({"name": "ci"})),
        409,
        "CONFLICT",
    );
    // A project slug.
    t.project("Same Name");
    err(
        &t.post("/api/projects", &json!({"name": "same  name!"})),
        409,
        "CONFLICT",
    );
    // A user email.
    let (email, _) = t.user("viewer");
    err(
        &t.post(
            "/api/v1/users",
            &json!({"email": email, "password": "another-long-password"}),
        ),
        409,
        "CONFLICT",
    );
    // The same names in another tenant are fine.
    let other = tenant();
    other.project("Same Name");
    other.api_key(&json!({"name": "ci"}));
}

#[test]
fn body_over_one_mib_is_413_before_it_is_read_and_closes() {
    let t = tenant();
    let mut c = Client::connect(addr()).unwrap();
    // Only the head: the server must answer from Content-Length alone.
    c.send(
        format!(
            "POST /api/projects HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 1048577\r\n\r\n",
            t.key
        )
        .as_bytes(),
    )
    .unwrap();
    let r = c.response().unwrap();
    err(&r, 413, "PAYLOAD_TOO_LARGE");
    assert!(r.closes(), "{:?}", r.headers);
    assert!(c.closed_within(Duration::from_secs(3)));
    // The import route takes more, but not more than 60 MiB.
    let pid = t.project("big");
    let mut c = Client::connect(addr()).unwrap();
    c.send(
        format!(
            "POST /api/projects/{pid}/project-io/import HTTP/1.1\r\nHost: t\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: 62914561\r\n\r\n",
            t.key
        )
        .as_bytes(),
    )
    .unwrap();
    let r = c.response().unwrap();
    err(&r, 413, "PAYLOAD_TOO_LARGE");
    assert!(c.closed_within(Duration::from_secs(3)));
    // The preview is a normal route: 1 MiB.
    let r = t
        .req(
            "POST",
            &format!("/api/projects/{pid}/project-io/import/preview"),
        )
        .raw_json(vec![b' '; 1_048_577])
        .send();
    err(&r, 413, "PAYLOAD_TOO_LARGE");
}

#[test]
fn body_of_exactly_one_mib_is_accepted() {
    let t = tenant();
    let head = br#"{"name":"exactly one mib","padding":""#;
    let tail = br#""}"#;
    let mut doc = head.to_vec();
    doc.resize(1_048_576 - tail.len(), b'a');
    doc.extend_from_slice(tail);
    assert_eq!(doc.len(), 1_048_576);
    let r = t.req("POST", "/api/projects").raw_json(doc).send();
    let v = ok(&r, 201);
    assert_eq!(v["project"]["name"], json!("exactly one mib"));
}

#[test]
fn a_body_that_is_not_json_is_415() {
    let t = tenant();
    let r = t
        .req("POST", "/api/projects")
        .header("Content-Type", "text/plain")
        .body(b"name=x".to_vec())
        .send();
    err(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    let r = t
        .req("POST", "/api/projects")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(b"name=x".to_vec())
        .send();
    err(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    // No Content-Type at all, with a body.
    let r = t
        .req("POST", "/api/projects")
        .body(br#"{"name":"x"}"#.to_vec())
        .send();
    err(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    // JSON with parameters and the +json suffix are JSON.
    let r = t
        .req("POST", "/api/projects")
        .header("Content-Type", "application/json; charset=utf-8")
        .body(br#"{"name":"charset"}"#.to_vec())
        .send();
    ok(&r, 201);
    let v = ok(&t.get("/api/projects"), 200);
    assert_eq!(v["pagination"]["total"], json!(1), "{v}");
}

#[test]
fn every_response_carries_a_request_id() {
    let t = tenant();
    let r = t
        .req("GET", "/api/projects")
        .header("X-Request-Id", "client-id-42")
        .send();
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));
    let r = req("GET", "/api/projects")
        .header("X-Request-Id", "client-id-43")
        .send();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-request-id"), Some("client-id-43"));
    let a = t.get("/api/projects");
    let b = t.get("/api/projects");
    let (a, b) = (
        a.header("x-request-id").expect("generated id").to_string(),
        b.header("x-request-id").expect("generated id").to_string(),
    );
    assert!(!a.is_empty() && a != b, "{a} {b}");
    // A non-sane id is replaced.
    let r = t
        .req("GET", "/api/projects")
        .header("X-Request-Id", &"x".repeat(1000))
        .send();
    let id = r.header("x-request-id").expect("id");
    assert!(id.len() < 1000, "{id}");
}

/// Creates `n` sessions in `pid` on one pipelined connection; returns their ids in
/// creation order.
fn create_sessions(t: &Tenant, pid: &str, n: usize) -> Vec<String> {
    let one = t
        .req("POST", &format!("/api/projects/{pid}/sessions"))
        .json(&json!({"metadata": {"k": "v"}}));
    let mut c = Client::connect(t.addr).unwrap();
    let mut out = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(50) {
        let k = 50.min(n - batch * 50);
        let mut bytes = Vec::new();
        for _ in 0..k {
            bytes.extend_from_slice(&one.bytes());
        }
        c.send(&bytes).unwrap();
        for _ in 0..k {
            let r = c.response().unwrap();
            let v = ok(&r, 201);
            out.push(v["session"]["id"].as_str().unwrap().to_string());
        }
    }
    out
}

#[test]
fn pagination_default_max_clamp_order_and_total() {
    let t = tenant();
    let pid = t.project_with_agent("pager");
    let created = create_sessions(&t, &pid, 205);
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    let list = |q: &str| ok(&t.get(&format!("/api/projects/{pid}/sessions{q}")), 200);

    let v = list("");
    assert_eq!(
        v["pagination"],
        json!({"total": 205, "limit": 50, "offset": 0})
    );
    assert_eq!(ids(&v["sessions"]), newest_first[..50]);

    let v = list("?limit=200");
    assert_eq!(
        v["pagination"],
        json!({"total": 205, "limit": 200, "offset": 0})
    );
    assert_eq!(ids(&v["sessions"]), newest_first[..200]);

    let v = list("?limit=500");
    assert_eq!(
        v["pagination"],
        json!({"total": 205, "limit": 200, "offset": 0})
    );
    assert_eq!(v["sessions"].as_array().unwrap().len(), 200);

    let v = list("?limit=10&offset=200");
    assert_eq!(
        v["pagination"],
        json!({"total": 205, "limit": 10, "offset": 200})
    );
    assert_eq!(ids(&v["sessions"]), newest_first[200..]);

    let v = list("?offset=1000");
    assert_eq!(v["sessions"], json!([]));
    assert_eq!(v["pagination"]["total"], json!(205));

    // Pages are disjoint and cover the list in order.
    let mut walked = Vec::new();
    for off in (0..205).step_by(60) {
        walked.extend(ids(&list(&format!("?limit=60&offset={off}"))["sessions"]));
    }
    assert_eq!(walked, newest_first);

    for bad in [
        "?limit=-1",
        "?limit=1.5",
        "?limit=abc",
        "?offset=-5",
        "?offset=1e3",
    ] {
        err(
            &t.get(&format!("/api/projects/{pid}/sessions{bad}")),
            400,
            "BAD_REQUEST",
        );
    }
}

#[test]
fn every_list_has_its_domain_key_and_pagination() {
    let t = tenant();
    let pid = t.project_with_agent("lister");
    t.session(&pid);
    ok(
        &t.post(
            &format!("/api/projects/{pid}/secrets"),
            &json!({"name": "S", "value": "v"}),
        ),
        201,
    );
    t.user("viewer");
    for (path, key, total) in [
        ("/api/projects".to_string(), "projects", 1),
        (format!("/api/projects/{pid}/agents"), "agents", 1),
        ("/api/agents".to_string(), "agents", 1),
        (format!("/api/projects/{pid}/sessions"), "sessions", 1),
        (format!("/api/projects/{pid}/secrets"), "secrets", 1),
        ("/api/v1/users".to_string(), "users", 1),
        ("/api/v1/api-keys".to_string(), "apiKeys", 1),
    ] {
        let v = ok(&t.get(&format!("{path}?limit=7")), 200);
        assert!(v[key].is_array(), "{path}: {v}");
        assert_eq!(
            v["pagination"],
            json!({"total": total, "limit": 7, "offset": 0}),
            "{path}"
        );
        err(&t.get(&format!("{path}?limit=x")), 400, "BAD_REQUEST");
    }
    let v = ok(
        &req("GET", "/api/v1/admin/tenants?limit=3")
            .bearer(ROOT_KEY)
            .send(),
        200,
    );
    assert!(v["tenants"].is_array(), "{v}");
    assert_eq!(v["pagination"]["limit"], json!(3));
    assert!(v["pagination"]["total"].as_u64().unwrap() >= 1);
}

#[test]
fn openapi_document_lists_every_route() {
    let r = req("GET", "/api/v1/openapi.json").send();
    let doc = ok_json(&r);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let routes: &[(&str, &str)] = &[
        ("get", "/api/v1/openapi.json"),
        ("post", "/api/v1/admin/tenants"),
        ("get", "/api/v1/admin/tenants"),
        ("patch", "/api/v1/admin/tenants/{tenantId}"),
        ("post", "/api/v1/auth/login"),
        ("get", "/api/v1/auth/me"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/api-keys"),
        ("get", "/api/v1/api-keys"),
        ("delete", "/api/v1/api-keys/{keyId}"),
        ("get", "/api/projects"),
        ("post", "/api/projects"),
        ("get", "/api/projects/{projectId}"),
        ("patch", "/api/projects/{projectId}"),
        ("delete", "/api/projects/{projectId}"),
        ("get", "/api/projects/{projectId}/agents"),
        ("post", "/api/projects/{projectId}/agents"),
        ("get", "/api/projects/{projectId}/agents/{name}"),
        ("put", "/api/projects/{projectId}/agents/{name}"),
        ("put", "/api/projects/{projectId}/agents/{name}/dsl"),
        ("delete", "/api/projects/{projectId}/agents/{name}"),
        ("get", "/api/agents"),
        ("get", "/api/agents/{name}"),
        ("post", "/api/projects/{projectId}/sessions"),
        ("get", "/api/projects/{projectId}/sessions"),
        ("get", "/api/projects/{projectId}/sessions/{sessionId}"),
        ("delete", "/api/projects/{projectId}/sessions/{sessionId}"),
        (
            "post",
            "/api/projects/{projectId}/sessions/{sessionId}/reset",
        ),
        (
            "get",
            "/api/projects/{projectId}/sessions/{sessionId}/messages",
        ),
        ("get", "/api/v1/sessions/{sessionId}/transcripts"),
        ("post", "/api/projects/{projectId}/sdk-public-keys"),
        ("get", "/api/projects/{projectId}/sdk-public-keys"),
        (
            "delete",
            "/api/projects/{projectId}/sdk-public-keys/{keyId}",
        ),
        ("post", "/api/v1/sdk/init"),
        ("post", "/api/v1/sdk/refresh"),
        ("get", "/api/v1/sdk/config/{projectId}"),
        ("post", "/api/projects/{projectId}/secrets"),
        ("get", "/api/projects/{projectId}/secrets"),
        ("post", "/api/projects/{projectId}/secrets/{name}/rotate"),
        ("delete", "/api/projects/{projectId}/secrets/{name}"),
        ("get", "/api/projects/{projectId}/project-io/export"),
        (
            "post",
            "/api/projects/{projectId}/project-io/import/preview",
        ),
        ("post", "/api/projects/{projectId}/project-io/import"),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    let mut missing = Vec::new();
    for (method, path) in routes {
        if paths.get(*path).and_then(|p| p.get(*method)).is_none() {
            missing.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert!(missing.is_empty(), "missing from openapi.json: {missing:?}");
    // And every documented operation answers something other than 404 (it is routed).
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let concrete = path
                .split('/')
                .map(|s| if s.starts_with('{') { "x_1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let r = req(&method.to_uppercase(), &concrete).send();
            let routed = r.status != 404
                || body(&r)["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.starts_with("No route"));
            assert!(routed, "{method} {path} is documented but not routed");
        }
    }
}

#[test]
fn operations_routes_need_no_credential() {
    assert_eq!(req("GET", "/health/live").send().status, 200);
    assert_eq!(req("GET", "/health/ready").send().status, 200);
    assert_eq!(req("GET", "/api/v1/openapi.json").send().status, 200);
}

#[test]
fn a_chunked_body_over_one_mib_is_413() {
    let t = tenant();
    let mut c = Client::connect(addr()).unwrap();
    c.send(
        format!(
            "POST /api/projects HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            t.key
        )
        .as_bytes(),
    )
    .unwrap();
    // 17 chunks of 64 KiB: the running total passes 1 MiB on the last one. The server may
    // answer and close before everything is written; a failed write is fine then.
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..17 {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if c.send(&frame).is_err() {
            break;
        }
    }
    let _ = c.send(b"0\r\n\r\n");
    let r = c.response().unwrap();
    err(&r, 413, "PAYLOAD_TOO_LARGE");
    let v = ok(&t.get("/api/projects"), 200);
    assert_eq!(v["pagination"]["total"], json!(0));
}

#[test]
fn expect_continue_comes_only_after_auth_and_the_size_check() {
    let t = tenant();
    let body = br#"{"name":"continued"}"#;
    let head = |auth: &str, len: usize| {
        format!(
            "POST /api/projects HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {auth}\r\n\
             Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {len}\r\n\r\n"
        )
    };
    // A good request: 100, then the body, then 201.
    let mut c = Client::connect(addr()).unwrap();
    c.send(head(&t.key, body.len()).as_bytes()).unwrap();
    let r = c.response().unwrap();
    assert_eq!(r.status, 100);
    c.send(body).unwrap();
    ok(&c.response().unwrap(), 201);
    // A bad credential: the final 401 at once, no 100.
    let mut c = Client::connect(addr()).unwrap();
    c.send(head("abl_sk-wrong", body.len()).as_bytes()).unwrap();
    err(&c.response().unwrap(), 401, "UNAUTHORIZED");
    // Too large: the final 413 at once.
    let mut c = Client::connect(addr()).unwrap();
    c.send(head(&t.key, 2 * 1024 * 1024).as_bytes()).unwrap();
    err(&c.response().unwrap(), 413, "PAYLOAD_TOO_LARGE");
    let v = ok(&t.get("/api/projects"), 200);
    assert_eq!(v["pagination"]["total"], json!(1));
}

#[test]
fn malformed_chunked_framing_on_an_api_route_is_400_and_closes() {
    let t = tenant();
    for bad_body in [
        &b"5\nhello\r\n0\r\n\r\n"[..],
        &b"10000000000000000\r\n"[..],
        &b"zz\r\n"[..],
    ] {
        let mut c = Client::connect(addr()).unwrap();
        let mut bytes = format!(
            "POST /api/projects HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            t.key
        )
        .into_bytes();
        bytes.extend_from_slice(bad_body);
        c.send(&bytes).unwrap();
        let r = c.response().unwrap();
        err(&r, 400, "BAD_REQUEST");
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "{}",
            String::from_utf8_lossy(bad_body)
        );
    }
    let v = ok(&t.get("/api/projects"), 200);
    assert_eq!(v["pagination"]["total"], json!(0));
}

/// The smallest value a request schema of the OpenAPI document accepts: required fields
/// only, shortest strings, lowest numbers, fewest items. Patterns get a sample from a fixed
/// table, so that a new pattern fails here until it has one.
fn smallest(schema: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    if let Some(first) = schema["anyOf"].get(0) {
        return smallest(first);
    }
    if let Some(first) = schema["enum"].get(0) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds[0].as_str().unwrap_or("object"),
        other => other.as_str().unwrap_or("object"),
    };
    match kind {
        "string" => match schema["pattern"].as_str() {
            Some("^[a-z0-9-]{1,64}$") => json!("schema-agent"),
            Some("^[a-z0-9_-]{1,64}$") => json!(unique("schema_tool")),
            Some("^[A-Z0-9_]{1,128}$") => json!("SCHEMA_SECRET"),
            Some(p) if p.starts_with("^https?://(") && p.ends_with("{1,5})?$") => {
                json!("https://schema.example")
            }
            Some(p) if p.starts_with("^https?://(") => {
                json!("https://schema.example/api")
            }
            Some("^(19[7-9][0-9]|[2-9][0-9]{3})-") if schema["format"] == "date" => {
                json!("2999-01-01")
            }
            Some("^(19[7-9][0-9]|[2-9][0-9]{3})-") => json!("2999-01-01T00:00:00Z"),
            Some("@") => json!(format!("{}@example.test", unique("schema"))),
            Some(p) => panic!("no sample for the pattern {p}"),
            None => json!("x".repeat(schema["minLength"].as_u64().unwrap_or(0) as usize)),
        },
        "integer" | "number" => schema["minimum"].clone(),
        "boolean" => json!(false),
        "array" => {
            let n = schema["minItems"].as_u64().unwrap_or(0) as usize;
            json!(vec![smallest(&schema["items"]); n])
        }
        _ => {
            let mut body = serde_json::Map::new();
            // A map (a deployment's manifest): the fewest entries it allows.
            if let Some(min) = schema["minProperties"].as_u64() {
                for i in 0..min {
                    let key = smallest(&schema["propertyNames"]);
                    let key = format!(
                        "{}{}",
                        key.as_str().expect("a name"),
                        "x".repeat(i as usize)
                    );
                    let value = &schema["additionalProperties"]["oneOf"][0];
                    body.insert(key, smallest(value));
                }
            }
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().expect("field name");
                body.insert(name.into(), smallest(&schema["properties"][name]));
            }
            // Fields required by a condition (`if`/`then`, alone or in `allOf`) that the
            // body chosen so far meets.
            let conditions =
                std::iter::once(schema).chain(schema["allOf"].as_array().into_iter().flatten());
            for c in conditions.filter(|c| c.get("if").is_some()) {
                let holds = c["if"]["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .all(|(field, rule)| body.get(field) == Some(&rule["const"]));
                for name in c["then"]["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|_| holds)
                {
                    let name = name.as_str().expect("field name");
                    body.insert(name.into(), smallest(&schema["properties"][name]));
                }
            }
            Value::Object(body)
        }
    }
}

#[test]
fn the_smallest_body_each_request_schema_allows_passes_validation() {
    let doc = ok_json(&req("GET", "/api/v1/openapi.json").send());
    let t = tenant_with_owner();
    let pid = t.project_with_agent("bot");
    let secret = "KEPT";
    ok(
        &t.post(
            &format!("/api/projects/{pid}/secrets"),
            &json!({"name": secret, "value": "v"}),
        ),
        201,
    );
    let sid = t.session(&pid)["id"]
        .as_str()
        .expect("session id")
        .to_string();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            let Some(required) = schema["required"]
                .as_array()
                .or_else(|| schema["anyOf"][0]["required"].as_array())
            else {
                continue;
            };
            // Credentials of another kind (a public key and Origin, an SDK token) are
            // checked before the body; their own tests cover these.
            if path.starts_with("/api/v1/sdk/") || required.is_empty() {
                continue;
            }
            let url = path
                .replace("{projectId}", &pid)
                .replace("{tenantId}", &t.id)
                .replace("{sessionId}", &sid)
                .replace(
                    "{name}",
                    if path.contains("/secrets/") {
                        secret
                    } else {
                        "bot"
                    },
                );
            let body = smallest(schema);
            let r = if path.starts_with("/api/v1/admin/") {
                req(&method.to_uppercase(), &url)
                    .bearer(ROOT_KEY)
                    .json(&body)
                    .send()
            } else {
                t.req(&method.to_uppercase(), &url).json(&body).send()
            };
            let text = String::from_utf8_lossy(&r.body).into_owned();
            assert!(
                !text.contains("\"VALIDATION_ERROR\"") && r.status != 400,
                "{method} {path} refused the smallest body its schema allows, {body}: {} {text}",
                r.status
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} operations had a body schema");
}
