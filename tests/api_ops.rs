//! Operations of issue #18: online backup and restore (the `halyard backup` command beside
//! a running server, and `POST /api/v1/admin/backup`), and the end of a tenant (`DELETE
//! /api/v1/admin/tenants/:id`, `GET /api/v1/admin/tenants/:id/export`).
//!
//! Servers run on loopback and are stopped by PID when their guard drops; every wait is
//! bounded.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use halyard_testkit::{run_to_exit, temp_dir, Halyard};
use serde_json::{json, Value};

/// A server of its own (these tests stop it, restore its data and start another).
fn own_server(extra: &[&str]) -> Halyard {
    let mut args: Vec<&str> = SERVE_ARGS.to_vec();
    args.extend_from_slice(extra);
    Halyard::start_with_env(bin(), &args, ENV)
}

/// Creates projects from a thread until stopped; records each acknowledged (201) id.
struct Load {
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(t: &Tenant) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s, t) = (acked.clone(), stop.clone(), t.clone());
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                let r = t.post("/api/projects", &json!({ "name": unique("load") }));
                if r.status == 201 {
                    let v = body(&r);
                    if let Some(id) = v["project"]["id"].as_str() {
                        a.lock().expect("acked").push(id.to_string());
                    }
                }
            }
        });
        Load {
            acked,
            stop,
            handle: Some(handle),
        }
    }

    fn acked(&self) -> Vec<String> {
        self.acked.lock().expect("acked").clone()
    }

    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acked().len() < n {
            assert!(Instant::now() < deadline, "the load did not get going");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Runs `halyard ARGS` to its end (bounded); returns whether it succeeded and its stderr.
fn halyard(args: &[&str]) -> (bool, String) {
    let (status, stderr) = run_to_exit(bin(), args, &[], Duration::from_secs(120));
    (status.success(), stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Restores `backup` into a fresh directory, checks it with `halyard check`, starts a
/// server on it and asserts every project in `expected` is there for `t`'s key.
fn restore_check_and_open(backup: &Path, t: &Tenant, expected: &[String]) {
    let root = temp_dir("ops-restore");
    let data = root.join("data");
    let (done, stderr) = halyard(&["restore", "--from", s(backup), "--data-dir", s(&data)]);
    assert!(done, "restore failed: {stderr}");
    let (done, stderr) = halyard(&["check", "--data-dir", s(&data)]);
    assert!(done, "the restored directory fails check: {stderr}");
    // A second restore into the now non-empty directory is refused.
    let (done, stderr) = halyard(&["restore", "--from", s(backup), "--data-dir", s(&data)]);
    assert!(
        !done && stderr.contains("not an empty directory"),
        "{stderr}"
    );
    let h = Halyard::start_in_with_env(bin(), &data, SERVE_ARGS, ENV);
    let on_restored = Tenant {
        addr: h.addr,
        ..t.clone()
    };
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| on_restored.get(&format!("/api/projects/{id}")).status != 200)
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before the backup began, missing after restore: {missing:?}"
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_cli_backup_of_a_running_server_under_load_restores_every_acknowledged_write() {
    let h = own_server(&[]);
    let t = tenant_on(h.addr, false);
    let load = Load::start(&t);
    load.wait_for(20);
    let before = load.acked();
    let root = temp_dir("ops-cli-backup");
    let out = root.join("backup");
    let (done, stderr) = halyard(&["backup", "--data-dir", s(&h.data_dir), "--to", s(&out)]);
    assert!(done, "backup failed: {stderr}");
    load.wait_for(before.len() + 5);
    drop(load);
    assert!(out.join("MANIFEST").is_file());
    assert!(!root.join("backup.tmp").exists());
    // The server still runs and still writes: the backup took nothing from it.
    ok_json(&req("GET", "/health/ready").send_to(h.addr));
    ok(
        &t.post("/api/projects", &json!({"name": unique("after")})),
        201,
    );
    // Never over an existing backup.
    let (done, stderr) = halyard(&["backup", "--data-dir", s(&h.data_dir), "--to", s(&out)]);
    assert!(!done && stderr.contains("exists already"), "{stderr}");
    restore_check_and_open(&out, &t, &before);
    let _ = std::fs::remove_dir_all(&root);
}

fn post_backup(addr: SocketAddr, doc: &Value) -> halyard_testkit::Response {
    req("POST", "/api/v1/admin/backup")
        .bearer(ROOT_KEY)
        .json(doc)
        .send_to(addr)
}

#[test]
fn the_admin_backup_route_writes_a_checked_backup_inside_the_backup_dir_only() {
    let backups = temp_dir("ops-backups");
    let h = own_server(&["--backup-dir", s(&backups)]);
    let t = tenant_on(h.addr, false);
    let load = Load::start(&t);
    load.wait_for(20);
    let before = load.acked();
    let v = ok(&post_backup(h.addr, &json!({"to": "nightly-1"})), 200);
    load.wait_for(before.len() + 5);
    drop(load);
    let b = &v["backup"];
    let path = PathBuf::from(b["path"].as_str().expect("path"));
    let dir = std::fs::canonicalize(&backups).expect("canonical");
    assert_eq!(path, dir.join("nightly-1"), "{v}");
    assert!(b["bytes"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(b["files"].as_u64().is_some_and(|n| n >= 1), "{v}");
    assert!(b["lastSegment"].as_u64().is_some_and(|n| n >= 1), "{v}");
    assert!(
        b["createdAt"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{v}"
    );
    // The master key file goes with the data, so that the restore opens secrets.
    assert!(path.join("master.key").is_file());
    err(
        &post_backup(h.addr, &json!({"to": "nightly-1"})),
        409,
        "CONFLICT",
    );
    for bad in ["../escape", "/tmp/abs", "a/b", ".hidden", ""] {
        err(
            &post_backup(h.addr, &json!({ "to": bad })),
            400,
            "VALIDATION_ERROR",
        );
    }
    assert!(!backups.join("..").join("escape").exists());
    // Without a name, one is made from the time.
    let v = ok(&post_backup(h.addr, &json!({})), 200);
    let named = v["backup"]["path"].as_str().expect("path");
    assert!(named.contains("/backup-"), "{v}");
    // Operators only.
    err(
        &req("POST", "/api/v1/admin/backup")
            .bearer(&t.key)
            .json(&json!({"to": "x"}))
            .send_to(h.addr),
        401,
        "UNAUTHORIZED",
    );
    restore_check_and_open(&path, &t, &before);
    drop(h);
    let _ = std::fs::remove_dir_all(&backups);
}

#[test]
fn the_admin_backup_route_is_off_without_a_backup_dir() {
    err(
        &req("POST", "/api/v1/admin/backup")
            .bearer(ROOT_KEY)
            .json(&json!({"to": "x"}))
            .send(),
        503,
        "SERVICE_UNAVAILABLE",
    );
}

fn admin(method: &str, path: &str) -> halyard_testkit::Response {
    req(method, path).bearer(ROOT_KEY).send()
}

/// Every string anywhere in `v`, and every object key.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                out.push(k.clone());
                strings(x, out);
            }
        }
        _ => {}
    }
}

#[test]
fn a_tenant_export_has_all_its_data_and_no_credentials_or_secret_values() {
    let t = tenant_with_owner();
    let pid = t.project_with_agent("bot");
    let value = format!("export-secret-{}", unique("v"));
    ok(
        &t.post(
            &format!("/api/projects/{pid}/secrets"),
            &json!({"name": "EXPORTED", "value": value}),
        ),
        201,
    );
    let sid = t.session(&pid)["id"].as_str().expect("sid").to_string();
    let (_, key_id) = t.api_key(&json!({"name": unique("k")}));
    let (_, pk_id) = t.public_key(&pid, &["https://export.example"]);
    let v = ok(
        &admin("GET", &format!("/api/v1/admin/tenants/{}/export", t.id)),
        200,
    );
    assert_eq!(v["manifest"]["tenant"]["id"], json!(t.id), "{v}");
    assert_eq!(v["manifest"]["version"], json!(1));
    assert_eq!(v["users"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(ids(&v["apiKeys"]).contains(&key_id), "{v}");
    let p = &v["projects"][0];
    assert_eq!(p["project"]["id"], json!(pid));
    assert_eq!(names(&p["agents"]), vec!["bot".to_string()]);
    assert_eq!(p["manifest"]["project"]["entryAgentName"], json!("bot"));
    assert_eq!(ids(&p["sessions"]), vec![sid]);
    assert!(p["sessions"][0]["messages"].is_array(), "{v}");
    assert_eq!(names(&p["secrets"]), vec!["EXPORTED".to_string()]);
    assert_eq!(ids(&p["publicKeys"]), vec![pk_id]);
    // A project entry is a project export document: it imports as it is.
    let other = t.project(&unique("copy"));
    ok(
        &t.post(&format!("/api/projects/{other}/project-io/import"), p),
        200,
    );
    let mut all = Vec::new();
    strings(&v, &mut all);
    for forbidden in ["passwordHash", "password", "digest", "ciphertext", "value"] {
        assert!(!all.iter().any(|s| s == forbidden), "{forbidden} in {v}");
    }
    assert!(
        !all.iter().any(|s| s.contains(&value)),
        "the secret value leaked: {v}"
    );
    assert!(
        !all.iter().any(|s| s.contains("$argon2")),
        "a password hash leaked: {v}"
    );
    err(
        &admin("GET", "/api/v1/admin/tenants/ten_missing/export"),
        404,
        "NOT_FOUND",
    );
    err(
        &t.get(&format!("/api/v1/admin/tenants/{}/export", t.id)),
        401,
        "UNAUTHORIZED",
    );
}

#[test]
fn deleting_a_tenant_removes_it_and_everything_it_owns() {
    let t = tenant_with_owner();
    let kept = tenant();
    let pid = t.project_with_agent("bot");
    let sid = t.session(&pid)["id"].as_str().expect("sid").to_string();
    ok(
        &t.post(
            &format!("/api/projects/{pid}/secrets"),
            &json!({"name": "GONE", "value": "v"}),
        ),
        201,
    );
    let (pk, _) = t.public_key(&pid, &["https://gone-tenant.example"]);
    let (email, password) = t.login.clone().expect("login");
    let jwt = t.login();
    err(
        &t.req("DELETE", &format!("/api/v1/admin/tenants/{}", t.id))
            .send_to(t.addr),
        401,
        "UNAUTHORIZED",
    );
    ok(
        &admin("DELETE", &format!("/api/v1/admin/tenants/{}", t.id)),
        200,
    );
    // Gone for the operator...
    err(
        &admin("DELETE", &format!("/api/v1/admin/tenants/{}", t.id)),
        404,
        "NOT_FOUND",
    );
    err(
        &admin("GET", &format!("/api/v1/admin/tenants/{}/export", t.id)),
        404,
        "NOT_FOUND",
    );
    let listed = ok(&admin("GET", "/api/v1/admin/tenants?limit=200"), 200);
    assert!(!ids(&listed["tenants"]).contains(&t.id));
    // ...and every credential it had stops working.
    err(&t.get("/api/projects"), 401, "UNAUTHORIZED");
    err(
        &req("GET", "/api/projects").bearer(&jwt).send(),
        401,
        "UNAUTHORIZED",
    );
    err(
        &req("POST", "/api/v1/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send(),
        401,
        "UNAUTHORIZED",
    );
    let r = req("POST", "/api/v1/sdk/init")
        .header("X-Public-Key", &pk)
        .header("Origin", "https://gone-tenant.example")
        .json(&json!({"projectId": pid}))
        .send();
    assert!(
        r.status == 401 || r.status == 403,
        "{} {}",
        r.status,
        r.text()
    );
    err(
        &kept.get(&format!("/api/projects/{pid}/sessions/{sid}")),
        404,
        "NOT_FOUND",
    );
    // Another tenant is untouched.
    ok(&kept.get("/api/projects"), 200);
    err(
        &admin("DELETE", "/api/v1/admin/tenants/ten_missing"),
        404,
        "NOT_FOUND",
    );
}
