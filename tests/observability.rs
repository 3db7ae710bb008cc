//! Observability of the real binary over loopback: `/metrics` parsed with a Prometheus
//! text-format parser after traffic (a chat turn with the echo provider, a route with ids
//! in its path, a query with a token, refused credentials), its families present, its
//! labels bounded (route templates and fixed reasons, never a raw path, id or secret) and
//! its counts moved; the access log (one JSON line per request, templates not paths, no
//! query, no credential) and `--log-format json`. The server is stopped by its guard.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use halyard_testkit::{Halyard, StartOptions};
use prometheus_parse::{Scrape, Value};
use serde_json::{json, Value as Json};

/// A credential that must never show up in a metric label or a log line.
const SECRET_QUERY: &str = "token=sk-query-secret-123";

fn scrape(addr: std::net::SocketAddr) -> Scrape {
    let r = req("GET", "/metrics").send_to(addr);
    assert_eq!(r.status, 200);
    let text = r.text();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The value of the counter or gauge `name` whose labels include `labels` (0 if absent).
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(_) | Value::Summary(_) => 0.0,
        })
        .sum()
}

/// The `+Inf` count of the histogram `name` with `labels`.
fn histogram_count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .filter_map(|x| match &x.value {
            Value::Histogram(b) => b
                .iter()
                .find(|c| c.less_than.is_infinite())
                .map(|c| c.count),
            _ => None,
        })
        .sum()
}

/// Whether `text` declares the family `name` (it may have no sample, as the snapshot age
/// before the first snapshot).
fn text_has_type(text: &str, name: &str) -> bool {
    text.lines()
        .any(|l| l.strip_prefix("# TYPE ").and_then(|r| r.split(' ').next()) == Some(name))
}

/// Every template the route table has, plus the engine's own labels.
fn allowed_routes() -> Vec<&'static str> {
    let mut all = vec!["unmatched", "/health/live", "/health/ready", "/metrics"];
    all.extend(halyard_api::route::ROUTES.iter().map(|d| d.pattern));
    all
}

#[test]
fn metrics_and_access_log_after_traffic() {
    let dir = halyard_testkit::process::temp_dir("obs-log");
    std::fs::create_dir_all(&dir).expect("log dir");
    let log_path = dir.join("access.log");
    let log_arg = log_path.to_str().expect("utf-8 path").to_string();
    let h = Halyard::start_fresh(
        bin(),
        StartOptions {
            args: &["--access-log", &log_arg, "--log-format", "json"],
            env: ENV,
            capture_stderr: true,
            ..StartOptions::default()
        },
    );
    // --log-format json: the server's own messages are JSON objects, one per line.
    let said = h.stderr_until("storage");
    assert!(!said.is_empty(), "no message on stderr");
    for line in &said {
        let v: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(v["time"].is_string() && v["level"].is_string() && v["msg"].is_string());
    }

    let before = scrape(h.addr);
    let t = tenant_on(h.addr, false);
    let pid = t.project_with_agent("bot");
    ok(&t.get(&format!("/api/projects/{pid}")), 200);
    let chat = t.post(
        "/api/v1/chat/agent",
        &json!({"projectId": pid, "message": "one two three"}),
    );
    ok(&chat, 200);
    let r = t.get(&format!("/no/such/{pid}?{SECRET_QUERY}"));
    assert_eq!(r.status, 404);
    // Bad credentials from one address: past the per-address budget they are refused.
    let mut refused = 0;
    for _ in 0..60 {
        let r = req("GET", "/api/projects")
            .bearer("abl_sk-not-a-real-key")
            .send_to(h.addr);
        refused += usize::from(r.status == 429);
    }
    assert!(refused > 0, "the per-address limit never refused");
    let after_text = req("GET", "/metrics").send_to(h.addr).text();
    let after = scrape(h.addr);

    // Every family an operator's dashboard reads is there.
    let names: std::collections::HashSet<&str> =
        after.samples.iter().map(|s| s.metric.as_str()).collect();
    for family in [
        "halyard_http_requests_total",
        "halyard_http_route_requests_total",
        "halyard_http_route_duration_seconds",
        "halyard_access_log_dropped_total",
        "halyard_rate_limit_refusals_total",
        "halyard_turns_running",
        "halyard_turns_max_running",
        "halyard_turns_started_total",
        "halyard_turns_finished_total",
        "halyard_turns_failed_total",
        "halyard_tokens_total",
        "halyard_provider_first_token_seconds",
        "halyard_provider_duration_seconds",
        "halyard_storage_commit_batch_records",
        "halyard_storage_fsync_seconds",
        "halyard_storage_appended_bytes_total",
        "halyard_storage_log_segments",
        "halyard_storage_log_bytes",
        "halyard_storage_snapshots_total",
    ] {
        assert!(names.contains(family), "no {family} in /metrics");
    }

    // The Grafana dashboard reads only families the server exports.
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/grafana-halyard.json"),
    )
    .expect("contrib/grafana-halyard.json");
    let mut referenced = 0;
    for (i, _) in dashboard.match_indices("halyard_") {
        let name: String = dashboard[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| names.contains(f)))
            .unwrap_or(&name);
        let typed = text_has_type(&after_text, family);
        assert!(
            names.contains(family) || typed,
            "the dashboard reads {name}"
        );
        referenced += 1;
    }
    assert!(referenced >= 20, "the dashboard reads {referenced} series");

    // Labels are bounded: route templates of the table, fixed reasons and providers; no id,
    // path or secret anywhere.
    let routes = allowed_routes();
    let mut label_values: HashMap<String, Vec<String>> = HashMap::new();
    for s in &after.samples {
        for (k, v) in s.labels.iter() {
            for bad in [pid.as_str(), t.id.as_str(), "sk-query-secret", "/no/such"] {
                assert!(!v.contains(bad), "{}{{{k}={v:?}}} holds {bad}", s.metric);
            }
            if k == "route" {
                assert!(routes.contains(&v.as_str()), "route label {v:?}");
            }
            label_values.entry(k.clone()).or_default().push(v.clone());
        }
    }
    for (k, allowed) in [
        ("provider", &["echo", "openai", "other"][..]),
        (
            "reason",
            &[
                "tenant_rate",
                "ip_rate",
                "session_rate",
                "concurrent_sessions",
                "queue_full",
            ][..],
        ),
        ("direction", &["in", "out"][..]),
        ("class", &["1xx", "2xx", "3xx", "4xx", "5xx"][..]),
    ] {
        for v in label_values.get(k).into_iter().flatten() {
            assert!(allowed.contains(&v.as_str()), "{k}={v:?}");
        }
    }

    // The counts moved.
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let project = [
        ("route", "/api/projects/:projectId"),
        ("method", "GET"),
        ("class", "2xx"),
    ];
    assert!(moved("halyard_http_route_requests_total", &project) >= 1.0);
    assert!(
        moved(
            "halyard_http_route_requests_total",
            &[("route", "unmatched"), ("class", "4xx")]
        ) >= 1.0
    );
    let labels = [("route", "/api/projects/:projectId"), ("method", "GET")];
    assert!(histogram_count(&after, "halyard_http_route_duration_seconds", &labels) >= 1.0);
    let echo = [("provider", "echo")];
    assert!(moved("halyard_turns_started_total", &echo) >= 1.0);
    assert!(moved("halyard_turns_finished_total", &echo) >= 1.0);
    let out = [("provider", "echo"), ("direction", "out")];
    assert!(moved("halyard_tokens_total", &out) >= 3.0);
    assert!(histogram_count(&after, "halyard_provider_first_token_seconds", &echo) >= 1.0);
    assert!(histogram_count(&after, "halyard_provider_duration_seconds", &echo) >= 1.0);
    let ip = [("reason", "ip_rate")];
    assert!(moved("halyard_rate_limit_refusals_total", &ip) >= refused as f64);
    assert!(moved("halyard_storage_appends_total", &[]) >= 3.0);
    assert!(histogram_count(&after, "halyard_storage_fsync_seconds", &[]) >= 1.0);
    assert!(histogram_count(&after, "halyard_storage_commit_batch_records", &[]) >= 1.0);
    assert!(value(&after, "halyard_storage_log_segments", &[]) >= 1.0);
    assert!(value(&after, "halyard_storage_log_bytes", &[]) > 0.0);
    assert_eq!(value(&after, "halyard_access_log_dropped_total", &[]), 0.0);

    // The access log: one JSON line per request, within a moment (each loop hands its
    // lines over within 50 ms, so lines of different loops are not in time order: wait for
    // every one looked at below).
    let deadline = Instant::now() + Duration::from_secs(5);
    let logged = |lines: &[Json]| {
        let has = |route: &str, method: &str, status: u16| {
            lines
                .iter()
                .any(|l| l["route"] == route && l["method"] == method && l["status"] == status)
        };
        has("/api/v1/chat/agent", "POST", 200)
            && has("/api/projects/:projectId", "GET", 200)
            && lines.iter().any(|l| l["status"] == 404)
    };
    let lines = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<Json> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect();
        if logged(&lines) || Instant::now() > deadline {
            assert!(!text.contains("sk-query-secret") && !text.contains(&t.key));
            assert!(!text.contains("/no/such"), "a raw path in the access log");
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let project_get = lines
        .iter()
        .find(|l| l["route"] == "/api/projects/:projectId" && l["method"] == "GET")
        .expect("the project GET is logged");
    assert_eq!(project_get["tenant"], t.id.as_str());
    assert_eq!(project_get["status"], 200);
    assert_eq!(project_get["remoteAddr"], "127.0.0.1");
    assert!(project_get["requestId"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(project_get["bytesIn"].as_u64().is_some_and(|n| n > 0));
    assert!(project_get["bytesOut"].as_u64().is_some_and(|n| n > 0));
    assert!(project_get["latencyUs"].is_u64() && project_get["streamUs"].is_null());
    let unmatched = lines
        .iter()
        .find(|l| l["status"] == 404)
        .expect("the 404 is logged");
    assert_eq!(unmatched["route"], "unmatched");
    for l in &lines {
        assert!(routes.contains(&l["route"].as_str().unwrap_or("?")), "{l}");
    }
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}
