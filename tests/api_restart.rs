//! Restarting the binary keeps every resource: the server is stopped with SIGTERM and
//! started again on the same data directory (twice, with writes in between), and every
//! list and credential answers as before.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use halyard_testkit::{temp_dir, Client, Halyard};
use serde_json::{json, Value};

/// Removes the data directory when the test ends, however it ends.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(dir: &Path) -> Halyard {
    Halyard::start_in_with_env(bin(), dir, SERVE_ARGS, ENV)
}

fn stop(mut h: Halyard) {
    h.signal(libc::SIGTERM);
    let status = h
        .wait_exit(Duration::from_secs(15))
        .expect("halyard did not stop on SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// Everything a client can read back, as JSON, for before/after comparison.
struct World {
    owner: Tenant,
    other: Tenant,
    pid: String,
    jwt: String,
    viewer: (String, String),
    service_key: String,
    restricted_key: String,
    revoked_key: String,
    pk: String,
    origin: String,
    sdk_token: String,
    sdk_session: String,
    secret_values: Vec<String>,
}

fn build(addr: SocketAddr) -> World {
    let owner = tenant_on(addr, true);
    let other = tenant_on(addr, false);
    ok(
        &req("PATCH", &format!("/api/v1/admin/tenants/{}", other.id))
            .bearer(ROOT_KEY)
            .json(&json!({"name": "patched", "limits": {"sessionMessagesPerMinute": 7}}))
            .send_to(addr),
        200,
    );
    let pid = owner.project_with(
        &json!({"name": "Durable", "description": "kept", "entryAgentName": "keeper"}),
    );
    owner.agent(&pid, "keeper");
    ok(
        &owner.post(
            &format!("/api/projects/{pid}/agents"),
            &json!({"name": "scribe", "model": {"provider": "openai", "model": "m", "baseUrl": "http://127.0.0.1:9/v1",
                     "temperature": 0.3, "pricing": {"inputPerMTok": 1.5, "outputPerMTok": 3}}, "dslContent": "dsl"}),
        ),
        201,
    );
    // A version, a deployment superseded by the next, and the next.
    let versions = format!("/api/projects/{pid}/agents/keeper/versions");
    ok(&owner.post(&versions, &json!({"label": "kept"})), 201);
    let deploy = json!({"environment": "production", "agentVersionManifest": {"keeper": 1, "scribe": "auto"}, "entryAgentName": "keeper"});
    for _ in 0..2 {
        ok(
            &owner.post(&format!("/api/projects/{pid}/deployments"), &deploy),
            201,
        );
    }
    let p2 = owner.project("Second");
    let s1 = owner.session(&pid)["id"].as_str().unwrap().to_string();
    let s2 = owner.session(&pid)["id"].as_str().unwrap().to_string();
    ok(
        &owner.delete(&format!("/api/projects/{pid}/sessions/{s2}")),
        200,
    );
    let _ = s1;
    let secret_values = vec![
        format!("restart-secret-{}-one", unique("v")),
        format!("restart-secret-{}-two", unique("v")),
    ];
    ok(
        &owner.post(
            &format!("/api/projects/{pid}/secrets"),
            &json!({"name": "API_TOKEN", "value": secret_values[0]}),
        ),
        201,
    );
    ok(
        &owner.post(
            &format!("/api/projects/{pid}/secrets/API_TOKEN/rotate"),
            &json!({"value": secret_values[1]}),
        ),
        200,
    );
    let viewer = owner.user("viewer");
    let (service_key, _) =
        owner.api_key(&json!({"name": "svc", "kind": "service", "scopes": ["project:read"]}));
    let (restricted_key, _) = owner.api_key(&json!({"name": "restricted", "projectIds": [p2]}));
    let (revoked_key, revoked_id) = owner.api_key(&json!({"name": "revoked"}));
    ok(
        &owner.delete(&format!("/api/v1/api-keys/{revoked_id}")),
        200,
    );
    let origin = format!("https://{}.example", unique("restart"));
    let (pk, _) = owner.public_key(&pid, &[&origin]);
    let sdk_token = sdk_init(addr, &pk, &origin, &pid);
    let sdk_session = ok(
        &req("POST", &format!("/api/projects/{pid}/sessions"))
            .header("X-SDK-Token", &sdk_token)
            .header("Origin", &origin)
            .json(&json!({"metadata": {"page": "/pricing"}}))
            .send_to(addr),
        201,
    )["session"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let jwt = owner.login();
    World {
        owner,
        other,
        pid,
        jwt,
        viewer,
        service_key,
        restricted_key,
        revoked_key,
        pk,
        origin,
        sdk_token,
        sdk_session,
        secret_values,
    }
}

/// What the world looks like through the API, at `addr`.
fn observe(w: &World, addr: SocketAddr) -> Value {
    let get = |path: &str| -> Value {
        let r = req("GET", path).bearer(&w.owner.key).send_to(addr);
        ok(&r, 200)
    };
    let pid = &w.pid;
    let mut tenants = ok(
        &req("GET", "/api/v1/admin/tenants?limit=200")
            .bearer(ROOT_KEY)
            .send_to(addr),
        200,
    )["tenants"]
        .clone();
    if let Some(list) = tenants.as_array_mut() {
        list.retain(|t| t["id"] == json!(w.owner.id) || t["id"] == json!(w.other.id));
    }
    let mut export = get(&format!("/api/projects/{pid}/project-io/export"));
    export["manifest"]["exportedAt"] = Value::Null;
    json!({
        "tenants": tenants,
        "users": get("/api/v1/users"),
        "apiKeys": get("/api/v1/api-keys"),
        "projects": get("/api/projects"),
        "project": get(&format!("/api/projects/{pid}")),
        "agents": get(&format!("/api/projects/{pid}/agents")),
        "directory": get("/api/agents"),
        "agentByName": get("/api/agents/scribe"),
        "sessions": get(&format!("/api/projects/{pid}/sessions")),
        "messages": get(&format!("/api/projects/{pid}/sessions/{}/messages", w.sdk_session)),
        "transcript": get(&format!("/api/v1/sessions/{}/transcripts", w.sdk_session)),
        "secrets": get(&format!("/api/projects/{pid}/secrets")),
        "publicKeys": get(&format!("/api/projects/{pid}/sdk-public-keys")),
        "versions": get(&format!("/api/projects/{pid}/agents/keeper/versions")),
        "deployments": get(&format!("/api/projects/{pid}/deployments")),
        "export": export,
    })
}

/// Every credential still does what it did.
fn credentials_work(w: &World, addr: SocketAddr) {
    let me = |r: halyard_testkit::Response| ok(&r, 200)["data"]["kind"].clone();
    assert_eq!(
        me(req("GET", "/api/v1/auth/me").bearer(&w.jwt).send_to(addr)),
        json!("jwt")
    );
    let (email, password) = w.owner.login.clone().unwrap();
    login(addr, &email, &password);
    let viewer = login(addr, &w.viewer.0, &w.viewer.1);
    err(
        &req("POST", "/api/projects")
            .bearer(&viewer)
            .json(&json!({"name": "x"}))
            .send_to(addr),
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        me(req("GET", "/api/v1/auth/me")
            .api_key(&w.service_key)
            .send_to(addr)),
        json!("service_key")
    );
    err(
        &req("POST", "/api/projects")
            .api_key(&w.service_key)
            .json(&json!({"name": "x"}))
            .send_to(addr),
        403,
        "FORBIDDEN",
    );
    err(
        &req("GET", &format!("/api/projects/{}", w.pid))
            .bearer(&w.restricted_key)
            .send_to(addr),
        404,
        "NOT_FOUND",
    );
    err(
        &req("GET", "/api/projects")
            .bearer(&w.revoked_key)
            .send_to(addr),
        401,
        "UNAUTHORIZED",
    );
    ok(
        &req("GET", "/api/projects")
            .bearer(&w.other.key)
            .send_to(addr),
        200,
    );
    // The public key and the SDK token issued before the restart.
    ok(
        &req("GET", &format!("/api/v1/sdk/config/{}", w.pid))
            .api_key(&w.pk)
            .header("Origin", &w.origin)
            .send_to(addr),
        200,
    );
    sdk_init(addr, &w.pk, &w.origin, &w.pid);
    let v = ok(
        &req("GET", &format!("/api/projects/{}/sessions", w.pid))
            .header("X-SDK-Token", &w.sdk_token)
            .header("Origin", &w.origin)
            .send_to(addr),
        200,
    );
    assert_eq!(ids(&v["sessions"]), std::slice::from_ref(&w.sdk_session));
    // Preflights still know the registered origin.
    let r = req("OPTIONS", "/api/v1/sdk/init")
        .header("Origin", &w.origin)
        .header("Access-Control-Request-Method", "POST")
        .send_to(addr);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(w.origin.as_str())
    );
}

fn no_secret_in(dir: &Path, values: &[String]) {
    let files = files_under(dir);
    assert!(!files.is_empty(), "empty data dir");
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for v in values {
            assert!(!contains(&bytes, v.as_bytes()), "{v} in {}", f.display());
        }
    }
}

#[test]
fn restart_keeps_every_resource() {
    let dir = temp_dir("restart");
    let _guard = DirGuard(dir.clone());

    let h = start(&dir);
    let w = build(h.addr);
    let before = observe(&w, h.addr);
    credentials_work(&w, h.addr);
    stop(h);
    no_secret_in(&dir, &w.secret_values);

    let h = start(&dir);
    let after = observe(&w, h.addr);
    assert_eq!(after, before, "first restart changed what the API shows");
    credentials_work(&w, h.addr);
    // Write more after a restart, then restart again (replay over what the first run left).
    let extra = w.owner.clone();
    let extra = Tenant {
        addr: h.addr,
        ..extra
    };
    let p3 = extra.project("After Restart");
    extra.agent(&p3, "late");
    ok(
        &extra.send(
            "PATCH",
            &format!("/api/projects/{}", w.pid),
            &json!({"description": "changed after restart"}),
        ),
        200,
    );
    let mut before2 = observe(&w, h.addr);
    stop(h);

    let h = start(&dir);
    let after2 = observe(&w, h.addr);
    assert_eq!(after2["projects"]["pagination"]["total"], json!(3));
    assert_eq!(
        after2["project"]["project"]["description"],
        json!("changed after restart")
    );
    assert_eq!(
        after2,
        std::mem::take(&mut before2),
        "second restart changed what the API shows"
    );
    ok(
        &req("GET", "/api/agents/late")
            .bearer(&w.owner.key)
            .send_to(h.addr),
        200,
    );
    credentials_work(&w, h.addr);
    stop(h);
    no_secret_in(&dir, &w.secret_values);
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = temp_dir("sigkill");
    let _guard = DirGuard(dir.clone());
    let mut h = start(&dir);
    let t = tenant_on(h.addr, true);
    let pid = t.project_with_agent("survivor");
    let sid = t.session(&pid)["id"].as_str().unwrap().to_string();
    ok(
        &t.post(
            &format!("/api/projects/{pid}/secrets"),
            &json!({"name": "KEPT", "value": "kept-value"}),
        ),
        201,
    );
    let (key, _) = t.api_key(&json!({"name": "k"}));
    let before = ok(&t.get(&format!("/api/projects/{pid}/sessions")), 200);
    // No graceful shutdown: whatever was acknowledged must already be on disk.
    h.signal(libc::SIGKILL);
    h.wait_exit(Duration::from_secs(10)).expect("killed");
    let h = start(&dir);
    let t = Tenant { addr: h.addr, ..t };
    assert_eq!(
        ok(&t.get(&format!("/api/projects/{pid}/sessions")), 200),
        before
    );
    ok(&t.get(&format!("/api/projects/{pid}/sessions/{sid}")), 200);
    ok(&t.get("/api/agents/survivor"), 200);
    let v = ok(&t.get(&format!("/api/projects/{pid}/secrets")), 200);
    assert_eq!(v["secrets"][0]["name"], json!("KEPT"));
    ok(
        &req("GET", "/api/projects").bearer(&key).send_to(h.addr),
        200,
    );
    t.login();
}

/// Runs `halyard ARGS` to its exit (killed and failed after 20 s); its status and stderr.
fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    halyard_testkit::run_to_exit(bin(), args, ENV, Duration::from_secs(20))
}

#[test]
fn a_data_directory_in_use_is_refused_to_a_second_process() {
    let dir = temp_dir("in-use");
    let _guard = DirGuard(dir.clone());
    let h = start(&dir);
    let path = dir.to_str().expect("utf-8 temp dir");
    let holder = format!("pid {}", h.pid());
    for args in [
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", path][..],
        &["tenant", "create", "intruder", "--data-dir", path],
        &["check", "--repair", "--data-dir", path],
    ] {
        let (status, stderr) = run_to_exit(args);
        assert!(!status.success(), "{args:?} succeeded: {stderr}");
        assert!(
            stderr.contains("in use by another process") && stderr.contains(&holder),
            "{args:?}: {stderr}"
        );
    }
    // Reading is harmless: a plain check runs beside the server.
    let (status, stderr) = run_to_exit(&["check", "--data-dir", path]);
    assert!(status.success(), "{stderr}");
    // The first server serves on, and no second writer got into its log.
    let listed = ok(
        &req("GET", "/api/v1/admin/tenants?limit=100")
            .bearer(ROOT_KEY)
            .send_to(h.addr),
        200,
    );
    let names: Vec<&str> = listed["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(!names.contains(&"intruder"), "{names:?}");
    stop(h);
    let (status, stderr) = run_to_exit(&["tenant", "create", "after", "--data-dir", path]);
    assert!(status.success(), "once the server is gone: {stderr}");
}

#[test]
fn a_failed_write_stops_writes_with_503_and_a_restart_keeps_what_was_acknowledged() {
    let dir = temp_dir("efbig");
    let _guard = DirGuard(dir.clone());
    // No file may grow past 256 KiB. SIGXFSZ is ignored, so the write that would pass the
    // limit fails (EFBIG), as a full disk's would (ENOSPC), instead of killing the process.
    let opts = halyard_testkit::StartOptions {
        args: SERVE_ARGS,
        env: ENV,
        prelude: Some("trap '' XFSZ && ulimit -f 256 || exit 1"),
        capture_stderr: true,
        ..Default::default()
    };
    let mut h = Halyard::start_opts(bin(), &dir, opts);
    let t = tenant_on(h.addr, false);
    let pid = t.project("full");
    let secrets = format!("/api/projects/{pid}/secrets");
    let value = "v".repeat(30_000);
    let mut acked = Vec::new();
    let refused = loop {
        let name = format!("S{}", acked.len());
        let r = t.post(&secrets, &json!({"name": name, "value": value}));
        if r.status != 201 {
            break r;
        }
        acked.push(name);
        assert!(acked.len() < 50, "the file never reached its limit");
    };
    err(&refused, 503, "SERVICE_UNAVAILABLE");
    assert!(acked.len() >= 2, "{acked:?}");
    // Writes stay stopped, the server says why once, and reads are still served.
    err(
        &t.post(&secrets, &json!({"name": "TINY", "value": "v"})),
        503,
        "SERVICE_UNAVAILABLE",
    );
    assert_eq!(req("GET", "/health/ready").send_to(h.addr).status, 503);
    ok(&t.get(&secrets), 200);
    let said = h.stderr_until("writes are stopped");
    assert!(
        said.iter()
            .any(|l| l.contains("File too large") && l.contains("writes are stopped")),
        "{said:#?}"
    );
    h.signal(libc::SIGKILL);
    h.wait_exit(Duration::from_secs(10)).expect("killed");
    // Without the limit, every acknowledged write is there and writing works again.
    let h = start(&dir);
    let t = Tenant { addr: h.addr, ..t };
    let listed = ok(&t.get(&format!("{secrets}?limit=100")), 200);
    let mut names: Vec<String> = listed["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    acked.sort();
    assert_eq!(names, acked);
    ok(
        &t.post(&secrets, &json!({"name": "AFTER", "value": "v"})),
        201,
    );
}

/// A log frame (format v2's shape, or v1's with `v1`) around a decodable transaction, every
/// byte ASCII: text any client can put in an agent's instructions.
fn frame_text(v1: bool) -> String {
    use halyard_storage::{codec::Encoder, record, record_v1, Mutation, Txn};
    for nonce in 0u32.. {
        let mut e = Encoder::default();
        let muts = [Mutation::DeleteProject {
            id: format!("proj_{nonce}"),
        }];
        Txn::encode_parts("ten_x", &muts, &mut e);
        let mut out = Vec::new();
        if v1 {
            record_v1::encode(record::RecordType::Txn, &e.into_bytes(), &mut out);
        } else {
            record::encode(record::RecordType::Txn, &e.into_bytes(), &mut out);
        }
        if out.iter().all(|&b| b < 0x80) {
            return String::from_utf8(out).expect("ASCII");
        }
    }
    unreachable!("some nonce gives an ASCII frame")
}

/// Creates agents `frame-agent-NNNN` with `text` back to back until the server is gone;
/// signals `started` after `first` acknowledgements; returns how many were acknowledged.
fn write_frame_agents(
    addr: SocketAddr,
    key: String,
    pid: String,
    text: String,
    first: usize,
    started: std::sync::mpsc::Sender<()>,
) -> usize {
    let mut acked = 0;
    loop {
        let body = json!({"name": format!("frame-agent-{acked:04}"), "instructions": text});
        let r = req("POST", &format!("/api/projects/{pid}/agents"))
            .bearer(&key)
            .json(&body);
        let Ok(mut c) = Client::connect(addr) else {
            break;
        };
        if c.send(&r.bytes()).is_err() {
            break;
        }
        match c.response() {
            Ok(resp) if resp.status == 201 => acked += 1,
            _ => break,
        }
        if acked == first {
            let _ = started.send(());
        }
    }
    acked
}

/// The crash the storage format v2 is for: agents whose instructions hold whole log frames
/// (v1 and v2 shapes) are written back to back, the server is killed with SIGKILL in the
/// middle of them, and the last segment is then cut inside the last such record, the torn
/// write a kill during it leaves. The restart must open the directory (a torn tail, not
/// corruption) and keep every agent written before the cut record.
#[test]
fn sigkill_while_writing_text_that_holds_log_frames_restarts() {
    let dir = temp_dir("sigkill-frames");
    let _guard = DirGuard(dir.clone());
    let mut h = start(&dir);
    let t = tenant_on(h.addr, true);
    let pid = t.project("Frames");
    let text = format!(
        "Answer briefly. {} and {} end.",
        frame_text(false),
        frame_text(true)
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let (addr, key, pid, text) = (h.addr, t.key.clone(), pid.clone(), text.clone());
        std::thread::spawn(move || write_frame_agents(addr, key, pid, text, 30, tx))
    };
    rx.recv_timeout(Duration::from_secs(30))
        .expect("30 agents written");
    h.signal(libc::SIGKILL);
    h.wait_exit(Duration::from_secs(10)).expect("killed");
    let acked = writer.join().expect("writer");
    assert!(acked >= 30);

    // Cut the newest segment inside the last record holding the text, just after its
    // frames: the whole frames stay in the file, after the damage, as v1 recovery saw them.
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    let seg = segs.last().expect("a segment").clone();
    let bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(text.len())
        .rposition(|w| w == text.as_bytes())
        .expect("the text is in the newest segment");
    let name_at = bytes[..at]
        .windows(12)
        .rposition(|w| w == b"frame-agent-")
        .expect("the agent's name precedes its text");
    let cut_agent: usize = std::str::from_utf8(&bytes[name_at + 12..name_at + 16])
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        cut_agent + 1 >= acked,
        "the newest record is the last agent"
    );
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len((at + text.len() - 3) as u64).unwrap();
    drop(f);

    let h = start(&dir);
    let t = Tenant { addr: h.addr, ..t };
    let v = ok(
        &t.get(&format!("/api/projects/{pid}/agents?limit=100")),
        200,
    );
    let mut got: Vec<(String, String)> = v["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let name = a["name"].as_str().unwrap().to_string();
            (name, a["instructions"].as_str().unwrap_or("").to_string())
        })
        .collect();
    got.sort();
    let want: Vec<(String, String)> = (0..cut_agent)
        .map(|i| (format!("frame-agent-{i:04}"), text.clone()))
        .collect();
    assert_eq!(got, want);
    stop(h);
}
