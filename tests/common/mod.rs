//! Shared support of the black-box API tests (`tests/api_*.rs`): one `halyard` server per
//! test binary (started on first use, stopped when the test process exits), a small JSON
//! request builder over the raw testkit client, and helpers that give each test its own
//! tenant so that tests sharing the server never see each other's data.
//!
//! Every request opens its own loopback connection and every wait is bounded by
//! `halyard_testkit::client::TIMEOUT`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub mod sse;

use halyard_testkit::{Client, Response, Shared};
use serde_json::{json, Value};

/// The operator root key every test server is started with.
pub const ROOT_KEY: &str = "test-root-key-0123456789abcdef";

/// The environment of every test server.
pub const ENV: &[(&str, &str)] = &[("HALYARD_ROOT_KEY", ROOT_KEY)];

/// Arguments of every test server. Rate limits (CONVENTIONS section 5, their own issue
/// and tests) are off: these tests deliberately send bursts of failing credentials from
/// one address, which the per-address budget would turn into 429s for every test sharing
/// the server.
pub const SERVE_ARGS: &[&str] = &["--no-rate-limits"];

/// The binary under test.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_halyard"))
}

/// The server shared by the tests of this binary.
pub fn server() -> &'static Shared {
    static SERVER: OnceLock<Shared> = OnceLock::new();
    SERVER.get_or_init(|| halyard_testkit::Halyard::start_shared(bin(), SERVE_ARGS, ENV))
}

/// A server whose tool calls may reach loopback (`--tool-allow-cidr 127.0.0.0/8`: the
/// tests' tool and MCP servers listen there), shared by the tests of a binary.
pub fn loopback_tools_server() -> &'static Shared {
    static SERVER: OnceLock<Shared> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut args = SERVE_ARGS.to_vec();
        args.extend(["--tool-allow-cidr", "127.0.0.0/8"]);
        halyard_testkit::Halyard::start_shared(bin(), &args, ENV)
    })
}

/// The shared server's address.
pub fn addr() -> SocketAddr {
    server().addr
}

/// A name no other test of this process uses.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One request, built up and then sent on a fresh connection.
#[derive(Debug, Clone)]
pub struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

/// A request with `method` and `path`.
pub fn req(method: &str, path: &str) -> Req {
    Req {
        method: method.into(),
        path: path.into(),
        headers: Vec::new(),
        body: None,
    }
}

impl Req {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// `Authorization: Bearer token`.
    pub fn bearer(self, token: &str) -> Req {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// `X-API-Key: key`.
    pub fn api_key(self, key: &str) -> Req {
        self.header("X-API-Key", key)
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json(self, v: &Value) -> Req {
        self.raw_json(serde_json::to_vec(v).expect("json"))
    }

    /// Raw bytes as a JSON body (`Content-Type: application/json`).
    pub fn raw_json(self, bytes: Vec<u8>) -> Req {
        self.header("Content-Type", "application/json").body(bytes)
    }

    /// A raw body with whatever headers were set.
    pub fn body(mut self, bytes: Vec<u8>) -> Req {
        self.body = Some(bytes);
        self
    }

    /// The bytes of the request.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\nHost: t\r\n", self.method, self.path).into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        if let Some(b) = &self.body {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
        } else {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Sends on `c` and reads the response.
    pub fn send_on(&self, c: &mut Client) -> Response {
        c.send(&self.bytes()).expect("send request");
        c.response().expect("read response")
    }

    /// Sends on a new connection to `addr` and reads the response.
    pub fn send_to(&self, addr: SocketAddr) -> Response {
        let mut c = Client::connect(addr).expect("connect");
        self.send_on(&mut c)
    }

    /// Sends to the shared server.
    pub fn send(&self) -> Response {
        self.send_to(addr())
    }
}

/// The body of `r` as JSON (panics with the body if it is not).
pub fn body(r: &Response) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", r.status, r.text()))
}

/// Asserts `r` is a 200 and returns its JSON body, for documents outside the envelope (the
/// OpenAPI document, health).
#[track_caller]
pub fn ok_json(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    body(r)
}

/// Asserts `r` is a success with `status` and returns its JSON body.
#[track_caller]
pub fn ok(r: &Response, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let v = body(r);
    assert_eq!(v["success"], json!(true), "{v}");
    v
}

/// Asserts `r` is the error envelope with `status` and `code`; returns the body.
#[track_caller]
pub fn err(r: &Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let v = body(r);
    assert_eq!(v["success"], json!(false), "{v}");
    assert_eq!(v["error"]["code"], json!(code), "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    assert!(r.header("x-request-id").is_some(), "{:?}", r.headers);
    v
}

/// A tenant of the shared server (or of `addr`), with its owner's API key.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The server.
    pub addr: SocketAddr,
    /// Tenant id.
    pub id: String,
    /// The owner API key (`abl_sk-`, every scope).
    pub key: String,
    /// The owner's email and password, when created with a login.
    pub login: Option<(String, String)>,
}

/// Creates a tenant on `addr` with the root key; with a login when `with_owner`.
pub fn tenant_on(addr: SocketAddr, with_owner: bool) -> Tenant {
    let name = unique("tenant");
    let mut doc = json!({ "name": name });
    let login = with_owner.then(|| (format!("{name}@example.test"), format!("pw-{name}-long")));
    if let Some((e, p)) = &login {
        doc["ownerEmail"] = json!(e);
        doc["ownerPassword"] = json!(p);
    }
    let r = req("POST", "/api/v1/admin/tenants")
        .bearer(ROOT_KEY)
        .json(&doc)
        .send_to(addr);
    let v = ok(&r, 201);
    let key = v["owner"]["apiKey"]
        .as_str()
        .expect("owner key")
        .to_string();
    assert!(key.starts_with("abl_sk-"), "{key}");
    Tenant {
        addr,
        id: v["tenant"]["id"].as_str().expect("tenant id").to_string(),
        key,
        login,
    }
}

/// A new tenant on the shared server, without a login.
pub fn tenant() -> Tenant {
    tenant_on(addr(), false)
}

/// A new tenant on the shared server, with an owner login.
pub fn tenant_with_owner() -> Tenant {
    tenant_on(addr(), true)
}

impl Tenant {
    /// A request authenticated with the owner key (Bearer).
    pub fn req(&self, method: &str, path: &str) -> Req {
        req(method, path).bearer(&self.key)
    }

    /// GET with the owner key.
    pub fn get(&self, path: &str) -> Response {
        self.req("GET", path).send_to(self.addr)
    }

    /// DELETE with the owner key.
    pub fn delete(&self, path: &str) -> Response {
        self.req("DELETE", path).send_to(self.addr)
    }

    /// `method` with a JSON body and the owner key.
    pub fn send(&self, method: &str, path: &str, v: &Value) -> Response {
        self.req(method, path).json(v).send_to(self.addr)
    }

    /// POST with a JSON body and the owner key.
    pub fn post(&self, path: &str, v: &Value) -> Response {
        self.send("POST", path, v)
    }

    /// Creates the project secret `name` holding `value`.
    pub fn secret(&self, pid: &str, name: &str, value: &str) {
        let doc = json!({"name": name, "value": value});
        ok(
            &self.post(&format!("/api/projects/{pid}/secrets"), &doc),
            201,
        );
    }

    /// Creates a project; returns its id.
    pub fn project(&self, name: &str) -> String {
        self.project_with(&json!({ "name": name }))
    }

    /// Creates a project from `doc`; returns its id.
    pub fn project_with(&self, doc: &Value) -> String {
        let v = ok(&self.post("/api/projects", doc), 201);
        let id = v["project"]["id"].as_str().expect("project id").to_string();
        assert!(id.starts_with("proj_"), "{id}");
        id
    }

    /// Creates an echo agent `name` in project `pid`; returns the agent object.
    pub fn agent(&self, pid: &str, name: &str) -> Value {
        let v = ok(
            &self.post(
                &format!("/api/projects/{pid}/agents"),
                &json!({"name": name, "instructions": format!("You are {name}.")}),
            ),
            201,
        );
        v["agent"].clone()
    }

    /// A project with an entry agent `name`; returns the project id.
    pub fn project_with_agent(&self, name: &str) -> String {
        let pid = self.project_with(&json!({"name": unique("proj"), "entryAgentName": name}));
        self.agent(&pid, name);
        pid
    }

    /// Creates a session in `pid` (entry agent); returns the session object.
    pub fn session(&self, pid: &str) -> Value {
        let v = ok(
            &self.post(&format!("/api/projects/{pid}/sessions"), &json!({})),
            201,
        );
        v["session"].clone()
    }

    /// Creates an API key from `doc`; returns (key in clear, key id).
    pub fn api_key(&self, doc: &Value) -> (String, String) {
        let v = ok(&self.post("/api/v1/api-keys", doc), 201);
        (
            v["key"].as_str().expect("key").to_string(),
            v["apiKey"]["id"].as_str().expect("key id").to_string(),
        )
    }

    /// Creates a widget public key on `pid` for `origins`; returns (pk_ key, key id).
    pub fn public_key(&self, pid: &str, origins: &[&str]) -> (String, String) {
        let v = ok(
            &self.post(
                &format!("/api/projects/{pid}/sdk-public-keys"),
                &json!({"name": unique("pk"), "allowedOrigins": origins}),
            ),
            201,
        );
        (
            v["publicKey"].as_str().expect("publicKey").to_string(),
            v["key"]["id"].as_str().expect("key id").to_string(),
        )
    }

    /// Logs the owner in; returns the JWT.
    pub fn login(&self) -> String {
        let (email, password) = self.login.clone().expect("tenant has no owner login");
        login(self.addr, &email, &password)
    }

    /// Creates a user with `role`; returns (email, password).
    pub fn user(&self, role: &str) -> (String, String) {
        let email = format!("{}@example.test", unique(role));
        let password = format!("pw-{}-long-enough", unique("u"));
        ok(
            &self.post(
                "/api/v1/users",
                &json!({"email": email, "password": password, "role": role}),
            ),
            201,
        );
        (email, password)
    }
}

/// Logs in on `addr`; returns the JWT.
pub fn login(addr: SocketAddr, email: &str, password: &str) -> String {
    let r = req("POST", "/api/v1/auth/login")
        .json(&json!({"email": email, "password": password}))
        .send_to(addr);
    let v = ok(&r, 200);
    let token = v["data"]["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("eyJ"), "{token}");
    token
}

/// `POST /api/v1/sdk/init` with public key `pk` from `origin` for `pid`; returns the SDK
/// token.
pub fn sdk_init(addr: SocketAddr, pk: &str, origin: &str, pid: &str) -> String {
    let r = req("POST", "/api/v1/sdk/init")
        .header("X-Public-Key", pk)
        .header("Origin", origin)
        .json(&json!({"projectId": pid, "userContext": {"userId": "u-1"}}))
        .send_to(addr);
    let v = ok(&r, 200);
    let token = v["token"].as_str().expect("sdk token").to_string();
    assert!(token.starts_with("sdk_"), "{token}");
    token
}

/// The ids of the objects of a list.
pub fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|x| x["id"].as_str().expect("id").to_string())
        .collect()
}

/// The names of the objects of a list.
pub fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|x| x["name"].as_str().expect("name").to_string())
        .collect();
    v.sort();
    v
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// An RFC 3339 UTC timestamp `ms_from_now` milliseconds from now (for `expiresAt`).
pub fn iso_from_now(ms_from_now: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let t = now + ms_from_now;
    let (secs, ms) = (t.div_euclid(1000), t.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// The response's head and body with the lines that depend only on the clock or the
/// tenant's request budget removed (`Date`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`),
/// for byte-for-byte comparison of two answers sent with the same `X-Request-Id`.
pub fn wire_bytes(r: &Response) -> Vec<u8> {
    let head: Vec<&str> = std::str::from_utf8(&r.raw_head)
        .expect("ascii head")
        .split("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !(l.starts_with("date:")
                || l.starts_with("x-ratelimit-remaining:")
                || l.starts_with("x-ratelimit-reset:"))
        })
        .collect();
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(&r.body);
    out
}
