//! Authentication and tenancy (CONVENTIONS section 2) against the real binary: one test
//! per credential kind, the root key, revocation and expiry, scopes, roles, `projectIds`,
//! and the cross-tenant `404` that is byte-for-byte a missing resource's.

mod common;

use std::time::{Duration, Instant};

use common::*;
use halyard_testkit::{Client, Halyard, Response};
use serde_json::{json, Value};

fn me(r: &Response) -> Value {
    ok(r, 200)["data"].clone()
}

fn scopes(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

const ALL_SCOPES: [&str; 11] = [
    "agent:read",
    "agent:write",
    "deployment:create",
    "key:admin",
    "project:export",
    "project:import",
    "project:read",
    "project:write",
    "secret:write",
    "session:execute",
    "session:read",
];

#[test]
fn jwt_from_login_authenticates_as_the_user() {
    let t = tenant_with_owner();
    let (email, password) = t.login.clone().unwrap();
    let r = req("POST", "/api/v1/auth/login")
        .json(&json!({"email": email.to_uppercase(), "password": password, "tenantId": t.id}))
        .send();
    let v = ok(&r, 200);
    let data = &v["data"];
    assert_eq!(data["expiresIn"], json!(3600), "{v}");
    assert_eq!(data["user"]["email"], json!(email), "{v}");
    assert_eq!(data["user"]["role"], json!("owner"), "{v}");
    assert!(data["user"].get("passwordHash").is_none(), "{v}");
    assert!(!r.text().contains("argon2"), "{}", r.text());
    let jwt = data["token"].as_str().unwrap();
    assert!(jwt.starts_with("eyJ"), "{jwt}");
    let m = me(&req("GET", "/api/v1/auth/me").bearer(jwt).send());
    assert_eq!(m["kind"], json!("jwt"));
    assert_eq!(m["tenantId"], json!(t.id));
    assert_eq!(m["principal"], data["user"]["id"]);
    assert_eq!(scopes(&m), ALL_SCOPES);
    // The JWT works on resources, and a tampered one does not.
    ok(
        &req("POST", "/api/projects")
            .bearer(jwt)
            .json(&json!({"name": "via jwt"}))
            .send(),
        201,
    );
    let mut bad = jwt.to_string();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    err(
        &req("GET", "/api/projects").bearer(&bad).send(),
        401,
        "UNAUTHORIZED",
    );
}

#[test]
fn login_does_not_tell_unknown_emails_from_wrong_passwords() {
    let t = tenant_with_owner();
    let (email, password) = t.login.clone().unwrap();
    let attempt = |email: &str, password: &str| {
        req("POST", "/api/v1/auth/login")
            .header("X-Request-Id", "login-probe")
            .json(&json!({"email": email, "password": password}))
            .send()
    };
    let wrong_password = attempt(&email, &format!("{password}-wrong"));
    let unknown_email = attempt(&format!("nobody-{email}"), &password);
    err(&wrong_password, 401, "UNAUTHORIZED");
    err(&unknown_email, 401, "UNAUTHORIZED");
    assert_eq!(
        String::from_utf8_lossy(&wire_bytes(&wrong_password)),
        String::from_utf8_lossy(&wire_bytes(&unknown_email))
    );
    // Missing fields are a validation error, not a 401.
    let v = err(
        &req("POST", "/api/v1/auth/login")
            .json(&json!({"email": email}))
            .send(),
        400,
        "VALIDATION_ERROR",
    );
    assert_eq!(v["error"]["details"][0]["field"], json!("password"));
}

#[test]
fn user_key_works_as_bearer_and_as_x_api_key() {
    let t = tenant();
    let (key, id) = t.api_key(&json!({"name": "user key"}));
    assert!(key.starts_with("abl_sk-"), "{key}");
    for r in [
        req("GET", "/api/v1/auth/me").bearer(&key).send(),
        req("GET", "/api/v1/auth/me").api_key(&key).send(),
    ] {
        let m = me(&r);
        assert_eq!(m["kind"], json!("api_key"));
        assert_eq!(m["principal"], json!(id));
        assert_eq!(m["tenantId"], json!(t.id));
        // A key created without scopes holds all but key:admin.
        let want: Vec<&str> = ALL_SCOPES
            .iter()
            .copied()
            .filter(|s| *s != "key:admin")
            .collect();
        assert_eq!(scopes(&m), want);
    }
    ok(&req("GET", "/api/projects").api_key(&key).send(), 200);
    // The owner key of a new tenant holds key:admin too.
    assert_eq!(scopes(&me(&t.get("/api/v1/auth/me"))), ALL_SCOPES);
}

#[test]
fn service_key_works_as_x_api_key_and_as_bearer() {
    let t = tenant();
    let v = ok(
        &t.post(
            "/api/v1/api-keys",
            &json!({"name": "svc", "kind": "service", "scopes": ["project:read", "project:write"]}),
        ),
        201,
    );
    let key = v["key"].as_str().unwrap();
    assert!(key.starts_with("ak_"), "{key}");
    assert_eq!(v["apiKey"]["kind"], json!("service"));
    for r in [
        req("GET", "/api/v1/auth/me").api_key(key).send(),
        req("GET", "/api/v1/auth/me").bearer(key).send(),
    ] {
        let m = me(&r);
        assert_eq!(m["kind"], json!("service_key"));
        assert_eq!(m["tenantId"], json!(t.id));
        assert_eq!(scopes(&m), ["project:read", "project:write"]);
    }
    ok(
        &req("POST", "/api/projects")
            .api_key(key)
            .json(&json!({"name": "by service"}))
            .send(),
        201,
    );
    err(
        &req("GET", "/api/agents").api_key(key).send(),
        403,
        "FORBIDDEN",
    );
}

#[test]
fn sdk_token_works_with_x_sdk_token_and_its_origin() {
    let t = tenant();
    let pid = t.project_with_agent("widget-bot");
    let origin = format!("https://{}.example", unique("sdk"));
    let (pk, _) = t.public_key(&pid, &[&origin]);
    let token = sdk_init(t.addr, &pk, &origin, &pid);
    let r = req("GET", "/api/v1/auth/me")
        .header("X-SDK-Token", &token)
        .header("Origin", &origin)
        .send();
    let m = me(&r);
    assert_eq!(m["kind"], json!("sdk_token"));
    assert_eq!(m["tenantId"], json!(t.id));
    assert_eq!(scopes(&m), ["session:execute", "session:read"]);
    let r = req("POST", &format!("/api/projects/{pid}/sessions"))
        .header("X-SDK-Token", &token)
        .header("Origin", &origin)
        .json(&json!({}))
        .send();
    let v = ok(&r, 201);
    assert_eq!(v["session"]["channel"], json!("sdk"));
    assert_eq!(v["session"]["agentName"], json!("widget-bot"));
    // Without its origin, or from another one: 403.
    for o in [None, Some("https://evil.example")] {
        let mut r = req("GET", "/api/v1/auth/me").header("X-SDK-Token", &token);
        if let Some(o) = o {
            r = r.header("Origin", o);
        }
        err(&r.send(), 403, "FORBIDDEN");
    }
    // An SDK token holds only the session permissions.
    let r = req("GET", &format!("/api/projects/{pid}/agents"))
        .header("X-SDK-Token", &token)
        .header("Origin", &origin)
        .send();
    err(&r, 403, "FORBIDDEN");
    // It is not an API key.
    err(
        &req("GET", "/api/v1/auth/me").bearer(&token).send(),
        401,
        "UNAUTHORIZED",
    );
}

#[test]
fn public_key_reads_sdk_config_with_x_api_key_and_origin() {
    let t = tenant();
    let pid = t.project_with_agent("greeter");
    let origin = format!("https://{}.example:8443", unique("pk"));
    let (pk, _) = t.public_key(&pid, &[&origin, "http://localhost:3000"]);
    assert!(pk.starts_with("pk_"), "{pk}");
    let path = format!("/api/v1/sdk/config/{pid}");
    let r = req("GET", &path)
        .api_key(&pk)
        .header("Origin", &origin)
        .send();
    let v = ok(&r, 200);
    let c = &v["config"];
    assert_eq!(c["projectId"], json!(pid));
    assert_eq!(c["agentName"], json!("greeter"));
    assert!(
        c["projectName"].is_string() && c["greeting"].is_string(),
        "{v}"
    );
    assert!(c["theme"].is_object(), "{v}");
    assert_eq!(c["features"], json!({"chat": true, "voice": false}));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(origin.as_str())
    );
    // The other listed origin works too; a wrong one, a near miss or none is 403.
    ok(
        &req("GET", &path)
            .api_key(&pk)
            .header("Origin", "http://localhost:3000")
            .send(),
        200,
    );
    for o in [
        Some("https://evil.example".to_string()),
        Some(format!("{origin}/")),
        Some(origin.replace("https://", "http://")),
        None,
    ] {
        let mut r = req("GET", &path).api_key(&pk);
        if let Some(o) = &o {
            r = r.header("Origin", o);
        }
        let resp = r.send();
        err(&resp, 403, "FORBIDDEN");
        assert!(
            resp.header("access-control-allow-origin").is_none(),
            "{o:?}"
        );
    }
    // A public key is not a tenant credential.
    err(
        &req("GET", "/api/projects")
            .api_key(&pk)
            .header("Origin", &origin)
            .send(),
        401,
        "UNAUTHORIZED",
    );
    // Another project of the same tenant is a 404 to it.
    let other = t.project("other");
    err(
        &req("GET", &format!("/api/v1/sdk/config/{other}"))
            .api_key(&pk)
            .header("Origin", &origin)
            .send(),
        404,
        "NOT_FOUND",
    );
    // An unknown public key is a 401.
    err(
        &req("GET", &path)
            .api_key("pk_unknownunknownunknown")
            .header("Origin", &origin)
            .send(),
        401,
        "UNAUTHORIZED",
    );
}

#[test]
fn root_key_owns_admin_and_tenant_credentials_are_401_there() {
    let t = tenant_with_owner();
    let jwt = t.login();
    let v = ok(
        &req("GET", "/api/v1/admin/tenants?limit=200")
            .bearer(ROOT_KEY)
            .send(),
        200,
    );
    assert!(ids(&v["tenants"]).contains(&t.id), "{v}");
    let v = ok(
        &req("PATCH", &format!("/api/v1/admin/tenants/{}", t.id))
            .bearer(ROOT_KEY)
            .json(&json!({"name": "renamed", "limits": {"requestsPerSecond": 5000, "burst": 9000}}))
            .send(),
        200,
    );
    assert_eq!(v["tenant"]["name"], json!("renamed"));
    assert_eq!(v["tenant"]["limits"]["burst"], json!(9000));
    assert_eq!(v["tenant"]["limits"]["requestsPerSecond"], json!(5000));
    err(
        &req("PATCH", "/api/v1/admin/tenants/ten_missing")
            .bearer(ROOT_KEY)
            .json(&json!({"name": "x"}))
            .send(),
        404,
        "NOT_FOUND",
    );
    let admin = [
        ("GET", "/api/v1/admin/tenants"),
        ("POST", "/api/v1/admin/tenants"),
    ];
    for (method, path) in admin {
        let tries = [
            req(method, path).bearer(&t.key),
            req(method, path).api_key(&t.key),
            req(method, path).bearer(&jwt),
            req(method, path).bearer(&format!("{ROOT_KEY}x")),
            req(method, path).api_key(ROOT_KEY),
            req(method, path),
        ];
        for r in tries {
            err(
                &r.json(&json!({"name": "nope"})).send(),
                401,
                "UNAUTHORIZED",
            );
        }
    }
    // The root key is only for admin routes.
    err(
        &req("GET", "/api/projects").bearer(ROOT_KEY).send(),
        401,
        "UNAUTHORIZED",
    );
}

#[test]
fn a_revoked_key_is_401_on_the_next_request() {
    let t = tenant();
    let (key, id) = t.api_key(&json!({"name": "short-lived"}));
    let mut c = Client::connect(t.addr).unwrap();
    ok(
        &req("GET", "/api/projects").bearer(&key).send_on(&mut c),
        200,
    );
    let v = ok(&t.delete(&format!("/api/v1/api-keys/{id}")), 200);
    assert_eq!(v, json!({"success": true}));
    // On the same keep-alive connection, and on a new one.
    err(
        &req("GET", "/api/projects").bearer(&key).send_on(&mut c),
        401,
        "UNAUTHORIZED",
    );
    err(
        &req("GET", "/api/projects").api_key(&key).send(),
        401,
        "UNAUTHORIZED",
    );
    // Revoking again is a 404; the list shows it revoked, never the secret.
    err(
        &t.delete(&format!("/api/v1/api-keys/{id}")),
        404,
        "NOT_FOUND",
    );
    let r = t.get("/api/v1/api-keys");
    assert!(!contains(&r.body, key.as_bytes()));
    let v = ok(&r, 200);
    let listed = v["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == json!(id))
        .cloned()
        .expect("revoked key listed");
    assert_eq!(listed["revoked"], json!(true));
    // A revoked key cannot revoke anything either.
    let (admin_key, admin_id) = t.api_key(&json!({"name": "admin", "scopes": ["key:admin"]}));
    ok(
        &req("DELETE", &format!("/api/v1/api-keys/{admin_id}"))
            .bearer(&admin_key)
            .send(),
        200,
    );
    err(
        &req("GET", "/api/v1/api-keys").bearer(&admin_key).send(),
        401,
        "UNAUTHORIZED",
    );
}

#[test]
fn an_expired_key_is_401() {
    let t = tenant();
    let (key, _) = t.api_key(&json!({"name": "expiring", "expiresAt": iso_from_now(1500)}));
    ok(&req("GET", "/api/projects").bearer(&key).send(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let r = req("GET", "/api/projects").bearer(&key).send();
        if r.status == 401 {
            err(&r, 401, "UNAUTHORIZED");
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(Instant::now() < deadline, "key did not expire");
    }
    // A past expiry is refused at creation.
    let v = err(
        &t.post(
            "/api/v1/api-keys",
            &json!({"name": "past", "expiresAt": "2001-01-01T00:00:00Z"}),
        ),
        400,
        "VALIDATION_ERROR",
    );
    assert_eq!(v["error"]["details"][0]["field"], json!("expiresAt"));
}

#[test]
fn an_expired_jwt_is_401() {
    let h = Halyard::start_with_env(bin(), &["--jwt-ttl-secs", "1", "--no-rate-limits"], ENV);
    let t = tenant_on(h.addr, true);
    let jwt = t.login();
    let r = req("GET", "/api/projects").bearer(&jwt).send_to(h.addr);
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let r = req("GET", "/api/projects").bearer(&jwt).send_to(h.addr);
        if r.status == 401 {
            err(&r, 401, "UNAUTHORIZED");
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(Instant::now() < deadline, "JWT did not expire");
    }
}

#[test]
fn a_key_without_the_scope_is_403() {
    let t = tenant();
    let pid = t.project_with_agent("scoped");
    let (key, _) = t.api_key(&json!({"name": "reader", "scopes": ["project:read"]}));
    let as_key = |m: &str, p: &str| req(m, p).bearer(&key);
    err(
        &as_key("POST", "/api/projects")
            .json(&json!({"name": "x"}))
            .send(),
        403,
        "FORBIDDEN",
    );
    err(
        &as_key("DELETE", &format!("/api/projects/{pid}")).send(),
        403,
        "FORBIDDEN",
    );
    err(
        &as_key("GET", &format!("/api/projects/{pid}/agents")).send(),
        403,
        "FORBIDDEN",
    );
    err(&as_key("GET", "/api/v1/api-keys").send(), 403, "FORBIDDEN");
    err(
        &as_key("GET", &format!("/api/projects/{pid}/project-io/export")).send(),
        403,
        "FORBIDDEN",
    );
    ok(&as_key("GET", &format!("/api/projects/{pid}")).send(), 200);
    // Unknown scopes are refused at creation.
    err(
        &t.post(
            "/api/v1/api-keys",
            &json!({"name": "bad", "scopes": ["root:all"]}),
        ),
        400,
        "VALIDATION_ERROR",
    );
    // The project is still there.
    ok(&t.get(&format!("/api/projects/{pid}")), 200);
}

#[test]
fn roles_limit_what_a_user_may_do() {
    let t = tenant();
    let pid = t.project_with_agent("roles");
    let (viewer_email, viewer_pw) = t.user("viewer");
    let (dev_email, dev_pw) = t.user("developer");
    let viewer = login(t.addr, &viewer_email, &viewer_pw);
    let developer = login(t.addr, &dev_email, &dev_pw);

    let m = me(&req("GET", "/api/v1/auth/me").bearer(&viewer).send());
    assert_eq!(scopes(&m), ["agent:read", "project:read", "session:read"]);
    // A viewer reads but never writes.
    ok(&req("GET", "/api/projects").bearer(&viewer).send(), 200);
    ok(
        &req("GET", &format!("/api/projects/{pid}/agents"))
            .bearer(&viewer)
            .send(),
        200,
    );
    for r in [
        req("POST", "/api/projects").json(&json!({"name": "nope"})),
        req("PATCH", &format!("/api/projects/{pid}")).json(&json!({"name": "nope"})),
        req("POST", &format!("/api/projects/{pid}/agents")).json(&json!({"name": "nope"})),
        req("POST", &format!("/api/projects/{pid}/sessions")).json(&json!({})),
        req("DELETE", &format!("/api/projects/{pid}")),
    ] {
        err(&r.bearer(&viewer).send(), 403, "FORBIDDEN");
    }
    // A developer writes but does not administer keys or users.
    ok(
        &req("POST", "/api/projects")
            .bearer(&developer)
            .json(&json!({"name": "by developer"}))
            .send(),
        201,
    );
    err(
        &req("POST", "/api/v1/api-keys")
            .bearer(&developer)
            .json(&json!({"name": "k"}))
            .send(),
        403,
        "FORBIDDEN",
    );
    err(
        &req("GET", "/api/v1/users").bearer(&developer).send(),
        403,
        "FORBIDDEN",
    );
    // The project survived the viewer's attempts, unrenamed.
    let v = ok(&t.get(&format!("/api/projects/{pid}")), 200);
    assert_ne!(v["project"]["name"], json!("nope"));
}

#[test]
fn a_key_restricted_to_projects_sees_others_as_missing() {
    let t = tenant();
    let p1 = t.project_with_agent("one");
    let p2 = t.project_with_agent("two");
    let (key, _) = t.api_key(&json!({"name": "p1 only", "projectIds": [p1]}));
    let as_key = |p: &str| {
        req("GET", p)
            .bearer(&key)
            .header("X-Request-Id", "restricted")
            .send()
    };
    ok(&as_key(&format!("/api/projects/{p1}")), 200);
    let v = ok(&as_key("/api/projects"), 200);
    assert_eq!(ids(&v["projects"]), std::slice::from_ref(&p1));
    assert_eq!(v["pagination"]["total"], json!(1));
    let v = ok(&as_key("/api/agents"), 200);
    assert_eq!(names(&v["agents"]), ["one"]);
    err(&as_key("/api/agents/two"), 404, "NOT_FOUND");
    let paths = [
        format!("/api/projects/{p2}"),
        format!("/api/projects/{p2}/agents"),
        format!("/api/projects/{p2}/sessions"),
    ];
    let hidden: Vec<Response> = paths.iter().map(|p| as_key(p)).collect();
    for r in &hidden {
        err(r, 404, "NOT_FOUND");
    }
    // Restricting to an unknown project is refused.
    err(
        &t.post(
            "/api/v1/api-keys",
            &json!({"name": "ghost", "projectIds": ["proj_nope"]}),
        ),
        400,
        "VALIDATION_ERROR",
    );
    // Byte for byte what a project that does not exist looks like.
    ok(&t.delete(&format!("/api/projects/{p2}")), 200);
    for (p, before) in paths.iter().zip(&hidden) {
        let after = as_key(p);
        assert_eq!(
            String::from_utf8_lossy(&wire_bytes(before)),
            String::from_utf8_lossy(&wire_bytes(&after)),
            "{p}"
        );
    }
}

#[test]
fn another_tenants_resources_are_byte_for_byte_missing() {
    let a = tenant();
    let b = tenant();
    let pa = a.project_with_agent("a-agent");
    let pb = b.project_with_agent("only-in-b");
    let session = b.session(&pb)["id"].as_str().unwrap().to_string();
    ok(
        &b.post(
            &format!("/api/projects/{pb}/secrets"),
            &json!({"name": "B_SECRET", "value": "b-value"}),
        ),
        201,
    );
    let (_, b_key_id) = b.api_key(&json!({"name": "b-key"}));
    let (_, b_pk_id) = b.public_key(&pb, &["https://b.example"]);
    let probes: Vec<(&str, String)> = vec![
        ("GET", format!("/api/projects/{pb}")),
        ("PATCH", format!("/api/projects/{pb}")),
        ("DELETE", format!("/api/projects/{pb}")),
        ("GET", format!("/api/projects/{pb}/agents")),
        ("GET", format!("/api/projects/{pb}/agents/only-in-b")),
        ("POST", format!("/api/projects/{pb}/agents")),
        ("GET", format!("/api/projects/{pb}/sessions")),
        ("POST", format!("/api/projects/{pb}/sessions")),
        ("GET", format!("/api/projects/{pb}/sessions/{session}")),
        (
            "GET",
            format!("/api/projects/{pb}/sessions/{session}/messages"),
        ),
        (
            "POST",
            format!("/api/projects/{pb}/sessions/{session}/reset"),
        ),
        ("GET", format!("/api/v1/sessions/{session}/transcripts")),
        ("GET", format!("/api/projects/{pb}/secrets")),
        (
            "POST",
            format!("/api/projects/{pb}/secrets/B_SECRET/rotate"),
        ),
        ("GET", format!("/api/projects/{pb}/sdk-public-keys")),
        ("GET", format!("/api/projects/{pb}/project-io/export")),
        (
            "POST",
            format!("/api/projects/{pb}/project-io/import/preview"),
        ),
        ("POST", format!("/api/projects/{pb}/project-io/import")),
        ("GET", "/api/agents/only-in-b".to_string()),
        ("DELETE", format!("/api/v1/api-keys/{b_key_id}")),
        (
            "DELETE",
            format!("/api/projects/{pa}/sdk-public-keys/{b_pk_id}"),
        ),
    ];
    let probe = |method: &str, path: &str| {
        let mut r = a.req(method, path).header("X-Request-Id", "cross-tenant");
        if method != "GET" && method != "DELETE" {
            r = r.json(&json!({"name": "intruder", "value": "x", "agents": []}));
        }
        r.send()
    };
    let foreign: Vec<Response> = probes.iter().map(|(m, p)| probe(m, p)).collect();
    for (r, (m, p)) in foreign.iter().zip(&probes) {
        assert_eq!(r.status, 404, "{m} {p}: {}", r.text());
        err(r, 404, "NOT_FOUND");
    }
    // Nothing of B's was touched by A's writes.
    let v = ok(&b.get(&format!("/api/projects/{pb}")), 200);
    assert_ne!(v["project"]["name"], json!("intruder"));
    let v = ok(&b.get(&format!("/api/projects/{pb}/agents")), 200);
    assert_eq!(names(&v["agents"]), ["only-in-b"]);
    let v = ok(&b.get(&format!("/api/projects/{pb}/sessions")), 200);
    assert_eq!(v["pagination"]["total"], json!(1));
    let v = ok(&b.get(&format!("/api/projects/{pb}/secrets")), 200);
    assert_eq!(v["secrets"][0]["version"], json!(1));
    let v = ok(&b.get("/api/v1/api-keys"), 200);
    assert!(v["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["id"] == json!(b_key_id) && k["revoked"] == json!(false)));
    assert_eq!(
        ok(&b.get(&format!("/api/projects/{pb}/sdk-public-keys")), 200)["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Now make every one of them really missing, and ask again: the same bytes.
    ok(&b.delete(&format!("/api/v1/api-keys/{b_key_id}")), 200);
    ok(
        &b.delete(&format!("/api/projects/{pb}/sdk-public-keys/{b_pk_id}")),
        200,
    );
    ok(&b.delete(&format!("/api/projects/{pb}")), 200);
    for (before, (m, p)) in foreign.iter().zip(&probes) {
        let after = probe(m, p);
        assert_eq!(
            String::from_utf8_lossy(&wire_bytes(before)),
            String::from_utf8_lossy(&wire_bytes(&after)),
            "{m} {p}"
        );
    }
}

#[test]
fn dev_seed_prints_a_working_curl_line() {
    let h = Halyard::start_with_env(bin(), &["--dev", "--no-rate-limits"], ENV);
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = h.stdout.recv_timeout(left).expect("the curl line");
        if line.contains("curl ") {
            break line;
        }
    };
    let key = line
        .split("Bearer ")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("key in the curl line")
        .to_string();
    assert!(key.starts_with("abl_sk-"), "{line}");
    let url = line.rsplit(' ').next().unwrap();
    assert_eq!(url, format!("http://{}/api/agents/assistant", h.addr));
    let kept = std::fs::read_to_string(h.data_dir.join("dev-api-key")).unwrap();
    assert_eq!(kept.trim(), key);
    let r = req("GET", "/api/agents/assistant")
        .bearer(&key)
        .send_to(h.addr);
    let v = ok(&r, 200);
    assert_eq!(v["agent"]["name"], json!("assistant"));
    assert_eq!(v["agent"]["model"]["provider"], json!("echo"));
    assert_eq!(r.header("cache-control"), Some("private, max-age=300"));
    let v = ok(
        &req("GET", "/api/projects").bearer(&key).send_to(h.addr),
        200,
    );
    assert_eq!(v["projects"][0]["name"], json!("demo"));
    assert_eq!(v["projects"][0]["entryAgentName"], json!("assistant"));
}

#[test]
fn login_with_tenant_id_picks_the_tenant_of_a_shared_email() {
    let a = tenant();
    let b = tenant();
    let email = format!("{}@example.test", unique("shared"));
    for (t, pw) in [(&a, "password-of-a-1"), (&b, "password-of-b-1")] {
        ok(
            &t.post(
                "/api/v1/users",
                &json!({"email": email, "password": pw, "role": "viewer"}),
            ),
            201,
        );
    }
    for (t, pw) in [(&a, "password-of-a-1"), (&b, "password-of-b-1")] {
        let r = req("POST", "/api/v1/auth/login")
            .json(&json!({"email": email, "password": pw, "tenantId": t.id}))
            .send();
        let v = ok(&r, 200);
        let jwt = v["data"]["token"].as_str().unwrap();
        let m = me(&req("GET", "/api/v1/auth/me").bearer(jwt).send());
        assert_eq!(m["tenantId"], json!(t.id));
    }
    // One tenant's password does not open the other's account.
    err(
        &req("POST", "/api/v1/auth/login")
            .json(&json!({"email": email, "password": "password-of-a-1", "tenantId": b.id}))
            .send(),
        401,
        "UNAUTHORIZED",
    );
}

#[test]
fn a_project_restricted_key_admin_cannot_reach_other_projects_through_new_credentials() {
    let t = tenant();
    let p1 = t.project("mine");
    let p2 = t.project("not mine");
    let (admin, _) = t.api_key(&json!({"name": "p1 admin", "projectIds": [p1], "scopes": [
        "key:admin", "project:read", "project:write", "agent:read", "agent:write",
        "session:read", "session:execute", "secret:write", "project:export", "project:import"]}));
    let as_admin = |m: &str, p: &str, body: &Value| {
        req(m, p)
            .bearer(&admin)
            .header("X-Request-Id", "restricted-admin")
            .json(body)
            .send()
    };
    // A key for the hidden project: refused exactly as for a project that does not exist.
    let hidden = as_admin(
        "POST",
        "/api/v1/api-keys",
        &json!({"name": "escape", "projectIds": [p2]}),
    );
    assert!(
        hidden.status >= 400,
        "a key for a hidden project was created: {}",
        hidden.text()
    );
    // A key without projectIds stays within the creator's projects.
    let r = as_admin("POST", "/api/v1/api-keys", &json!({"name": "child"}));
    let child = ok(&r, 201)["key"].as_str().unwrap().to_string();
    err(
        &req("GET", &format!("/api/projects/{p2}"))
            .bearer(&child)
            .send(),
        404,
        "NOT_FOUND",
    );
    ok(
        &req("GET", &format!("/api/projects/{p1}"))
            .bearer(&child)
            .send(),
        200,
    );
    // A user (whose JWT sees every project) cannot be made by a restricted key.
    let r = as_admin(
        "POST",
        "/api/v1/users",
        &json!({"email": format!("{}@example.test", unique("esc")), "password": "long-enough-password", "role": "owner"}),
    );
    err(&r, 403, "FORBIDDEN");
    // The refusal for the hidden project is byte-for-byte the one for a missing project.
    ok(&t.delete(&format!("/api/projects/{p2}")), 200);
    let missing = as_admin(
        "POST",
        "/api/v1/api-keys",
        &json!({"name": "escape", "projectIds": [p2]}),
    );
    assert_eq!(
        String::from_utf8_lossy(&wire_bytes(&hidden)),
        String::from_utf8_lossy(&wire_bytes(&missing))
    );
}

#[test]
fn a_key_admin_cannot_grant_scopes_it_does_not_hold() {
    let t = tenant();
    let pid = t.project("scoped admin");
    let (admin, _) =
        t.api_key(&json!({"name": "key admin", "scopes": ["key:admin", "project:read"]}));
    let create = |body: &Value| {
        req("POST", "/api/v1/api-keys")
            .bearer(&admin)
            .json(body)
            .send()
    };
    err(
        &create(&json!({"name": "wider", "scopes": ["project:write"]})),
        403,
        "FORBIDDEN",
    );
    ok(
        &create(&json!({"name": "same", "scopes": ["project:read"]})),
        201,
    );
    // Without scopes: the default, but never more than the creator holds.
    let v = ok(&create(&json!({"name": "default"})), 201);
    let key = v["key"].as_str().unwrap();
    let m = me(&req("GET", "/api/v1/auth/me").bearer(key).send());
    assert_eq!(scopes(&m), ["project:read"]);
    err(
        &req("POST", "/api/projects")
            .bearer(key)
            .json(&json!({"name": "x"}))
            .send(),
        403,
        "FORBIDDEN",
    );
    // Nor create a user whose role holds more.
    for role in ["owner", "developer"] {
        let r = req("POST", "/api/v1/users")
            .bearer(&admin)
            .json(&json!({"email": format!("{}@example.test", unique(role)), "password": "long-enough-password", "role": role}))
            .send();
        err(&r, 403, "FORBIDDEN");
    }
    ok(
        &req("GET", &format!("/api/projects/{pid}"))
            .bearer(&admin)
            .send(),
        200,
    );
    // The owner key still creates keys with the default scopes (all but key:admin).
    let (k, _) = t.api_key(&json!({"name": "from owner"}));
    let m = me(&req("GET", "/api/v1/auth/me").bearer(&k).send());
    assert_eq!(scopes(&m).len(), ALL_SCOPES.len() - 1);
}
