//! Admission limits against the real binary over loopback (CONVENTIONS section 5): exact
//! token-bucket admission from one client and from eight at once, isolation between
//! tenants, rejection of a large upload before its body is read, `Retry-After` honoured,
//! rate-limit headers, per-tenant overrides, concurrent sessions, and the per-IP budget
//! of unauthenticated requests. Bounded in requests and time; servers stop on drop.

mod common;

use std::time::{Duration, Instant};

use common::{bin, err, ok, req, tenant_on, Tenant, ENV, ROOT_KEY};
use halyard_testkit::{Client, Halyard};
use serde_json::json;

fn start() -> Halyard {
    Halyard::start_with_env(bin(), &[], ENV)
}

fn set_limits(t: &Tenant, limits: serde_json::Value) {
    ok(
        &req("PATCH", &format!("/api/v1/admin/tenants/{}", t.id))
            .bearer(ROOT_KEY)
            .json(&json!({ "limits": limits }))
            .send_to(t.addr),
        200,
    );
}

/// Sends `n` requests back to back on one connection; returns how many were admitted and
/// the outer and inner time spans (first send to last answer; first answer to last send).
fn burst(t: &Tenant, n: usize) -> (usize, f64, f64) {
    let mut c = Client::connect(t.addr).unwrap();
    let get = t.req("GET", "/api/projects?limit=1").bytes();
    let outer = Instant::now();
    let mut first_answer = None;
    let mut last_send = outer;
    let mut admitted = 0;
    for _ in 0..n {
        last_send = Instant::now();
        c.send(&get).unwrap();
        let r = c.response().unwrap();
        first_answer.get_or_insert_with(Instant::now);
        match r.status {
            200 => admitted += 1,
            429 => {}
            s => panic!("unexpected {s}: {}", r.text()),
        }
    }
    let t_outer = outer.elapsed().as_secs_f64();
    let t_inner = last_send
        .duration_since(first_answer.unwrap_or(outer))
        .as_secs_f64();
    (admitted, t_outer, t_inner)
}

#[test]
fn one_client_is_admitted_burst_plus_rate_times_elapsed() {
    let h = start();
    let t = tenant_on(h.addr, false);
    set_limits(&t, json!({"requestsPerSecond": 20, "burst": 10}));
    let (admitted, outer, inner) = burst(&t, 300);
    let (lo, hi) = (10.0 + 20.0 * inner - 1.0, 10.0 + 20.0 * outer + 1.0);
    assert!(
        (admitted as f64) >= lo && (admitted as f64) <= hi,
        "admitted {admitted}, expected between {lo:.1} and {hi:.1}"
    );
}

#[test]
fn eight_clients_at_once_never_get_more_than_the_bucket_allows() {
    let h = start();
    let t = tenant_on(h.addr, false);
    set_limits(&t, json!({"requestsPerSecond": 50, "burst": 30}));
    let started = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || burst(&t, 80).0)
        })
        .collect();
    let admitted: usize = threads.into_iter().map(|th| th.join().unwrap()).sum();
    let elapsed = started.elapsed().as_secs_f64();
    let ceiling = 30.0 + 50.0 * elapsed + 1.0;
    assert!(
        admitted as f64 <= ceiling,
        "admitted {admitted} > {ceiling:.1}"
    );
    assert!(admitted >= 30, "at least the burst: {admitted}");
}

#[test]
fn a_rate_limited_60_mib_upload_is_refused_before_its_body() {
    let h = start();
    let t = tenant_on(h.addr, false);
    set_limits(&t, json!({"requestsPerSecond": 1, "burst": 1}));
    let pid = t.project("upload");
    let metrics = |addr| {
        let text = Client::connect(addr)
            .unwrap()
            .get("/metrics")
            .unwrap()
            .text();
        text.lines()
            .find_map(|l| l.strip_prefix("halyard_received_bytes_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    let before = metrics(h.addr);
    let mut c = Client::connect(t.addr).unwrap();
    let head = format!(
        "POST /api/projects/{pid}/project-io/import HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        t.key,
        60 * 1024 * 1024
    );
    c.send(head.as_bytes()).unwrap();
    // Keep sending while the answer is already on its way.
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..4 {
        if c.send(&chunk).is_err() {
            break;
        }
    }
    let r = c.response().unwrap();
    err(&r, 429, "RATE_LIMIT_EXCEEDED");
    assert!(r.closes());
    let received = metrics(h.addr) - before;
    assert!(
        received < 1024 * 1024,
        "the server read {received} bytes of the body"
    );
}

#[test]
fn retry_after_is_honoured_and_headers_are_sent() {
    let h = start();
    let t = tenant_on(h.addr, false);
    set_limits(&t, json!({"requestsPerSecond": 2, "burst": 2}));
    let r = t.get("/api/projects");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("1"));
    let reset: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(reset >= now && reset <= now + 2, "{reset} vs {now}");
    ok(&t.get("/api/projects"), 200);
    let limited = t.get("/api/projects");
    let v = err(&limited, 429, "RATE_LIMIT_EXCEEDED");
    let ms = v["retryAfterMs"].as_u64().unwrap();
    assert!((1..=500).contains(&ms), "{ms}");
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    std::thread::sleep(Duration::from_millis(ms));
    ok(&t.get("/api/projects"), 200);
}

#[test]
fn tenant_overrides_apply_at_once_and_survive_a_restart() {
    let dir = halyard_testkit::temp_dir("limits-restart");
    let opts = || halyard_testkit::StartOptions {
        args: &[],
        env: ENV,
        ..Default::default()
    };
    let mut h = Halyard::start_opts(bin(), &dir, opts());
    let t = tenant_on(h.addr, false);
    set_limits(&t, json!({"requestsPerSecond": 1, "burst": 3}));
    assert_eq!(
        t.get("/api/projects").header("x-ratelimit-limit"),
        Some("3")
    );
    h.signal(libc::SIGTERM);
    assert!(h.wait_exit(Duration::from_secs(10)).is_some());
    drop(h);
    let h2 = Halyard::start_opts(bin(), &dir, opts());
    let t2 = Tenant {
        addr: h2.addr,
        ..t.clone()
    };
    assert_eq!(
        t2.get("/api/projects").header("x-ratelimit-limit"),
        Some("3")
    );
    let listed = ok(
        &req("GET", "/api/v1/admin/tenants?limit=200")
            .bearer(ROOT_KEY)
            .send_to(h2.addr),
        200,
    );
    let mine = listed["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == json!(t.id))
        .cloned()
        .unwrap();
    assert_eq!(mine["limits"]["burst"], json!(3));
    drop(h2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concurrent_sessions_are_capped_and_freed_by_ending_one() {
    let h = start();
    let t = tenant_on(h.addr, false);
    set_limits(&t, json!({"maxConcurrentSessions": 2}));
    let pid = t.project_with_agent("bot");
    let s1 = t.session(&pid)["id"].as_str().unwrap().to_string();
    t.session(&pid);
    let r = t.post(&format!("/api/projects/{pid}/sessions"), &json!({}));
    let v = err(&r, 429, "RATE_LIMIT_EXCEEDED");
    assert_eq!(
        v["error"]["message"],
        json!("Concurrent session limit exceeded")
    );
    assert!(v["retryAfterMs"].as_u64().is_some());
    // A chat turn that would open a new session is refused the same way.
    err(
        &t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "message": "x"}),
        ),
        429,
        "RATE_LIMIT_EXCEEDED",
    );
    ok(
        &t.delete(&format!("/api/projects/{pid}/sessions/{s1}")),
        200,
    );
    t.session(&pid);
}

#[test]
fn failed_credentials_spend_a_per_ip_budget() {
    let h = start();
    let bad = req("GET", "/api/projects").bearer("abl_sk-not-a-real-key");
    let mut statuses = Vec::new();
    let mut c = Client::connect(h.addr).unwrap();
    for _ in 0..60 {
        statuses.push(bad.send_on(&mut c).status);
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(unauthorized + limited, 60);
    assert!(
        (40..=44).contains(&unauthorized),
        "{unauthorized} 401s before the IP budget ran out"
    );
    assert!(limited >= 16);
}
