//! The web widget against the real binary: `GET /sdk/widget.js` (cache headers, `ETag`,
//! `304`, `HEAD`), the `--dev` demo page on its own origin and its public key, and the
//! browser tests of `sdk/widget/test/widget.test.mjs`, run with `node --test` in Debian's
//! headless Chromium (driven by playwright-core) against `halyard serve --dev`.
//!
//! The browser test needs Node.js (20 or later), `/usr/bin/chromium` (or `$CHROMIUM`) and
//! `npm ci` in `sdk/widget/test`; `.ci/run` installs all three. Without them it fails and
//! says what is missing: it is never skipped.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{bin, ok, req, ENV, ROOT_KEY};
use halyard_testkit::{Client, Halyard};
use serde_json::json;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn start_dev(args: &[&str]) -> Halyard {
    let mut all = vec!["--dev"];
    all.extend_from_slice(args);
    Halyard::start_with_env(bin(), &all, ENV)
}

/// The demo page's address, from the `demo page: http://127.0.0.1:PORT/` line.
fn demo_addr(h: &Halyard) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = h
            .stdout
            .recv_timeout(left)
            .expect("halyard serve --dev printed no `demo page:` line");
        if let Some(rest) = line.strip_prefix("demo page: http://") {
            let addr = rest.split('/').next().unwrap_or("");
            return addr.parse().expect("demo page address");
        }
    }
}

fn dev_file(h: &Halyard, name: &str) -> String {
    let path = h.data_dir.join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

fn demo_project(h: &Halyard) -> String {
    let key = dev_file(h, "dev-api-key");
    let v = ok(
        &req("GET", "/api/projects").bearer(&key).send_to(h.addr),
        200,
    );
    v["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["slug"] == "demo")
        .and_then(|p| p["id"].as_str())
        .expect("demo project")
        .to_string()
}

fn sdk_init_status(h: &Halyard, pk: &str, origin: &str, pid: &str) -> u16 {
    req("POST", "/api/v1/sdk/init")
        .header("X-Public-Key", pk)
        .header("Origin", origin)
        .json(&json!({"projectId": pid, "userContext": {"userId": "u-1"}}))
        .send_to(h.addr)
        .status
}

#[test]
fn widget_js_is_served_with_a_long_cache_and_an_etag() {
    let h = Halyard::start_with_env(bin(), &[], ENV);
    let source = std::fs::read(repo().join("sdk/widget/widget.js")).unwrap();
    let r = req("GET", "/sdk/widget.js").send_to(h.addr);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(r.header("cache-control"), Some("public, max-age=86400"));
    // Module scripts load in CORS mode; the file is public and sent without credentials.
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.body, source, "the binary serves the file of the repo");
    let etag = r.header("etag").expect("ETag").to_string();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag}"
    );

    // Revalidation: the current tag (also weak, also in a list) is 304 without a body.
    for tag in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"old\", {etag}"),
        "*".into(),
    ] {
        let r = req("GET", "/sdk/widget.js")
            .header("If-None-Match", &tag)
            .send_to(h.addr);
        assert_eq!(r.status, 304, "{tag}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("cache-control"), Some("public, max-age=86400"));
    }
    let r = req("GET", "/sdk/widget.js")
        .header("If-None-Match", "\"old\"")
        .send_to(h.addr);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), source.len());

    // HEAD: the same head, no body (the next response on the connection parses).
    let mut c = Client::connect(h.addr).unwrap();
    c.send(b"HEAD /sdk/widget.js HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = c.head().unwrap();
    assert_eq!(head.status, 200);
    let source_len = source.len().to_string();
    assert_eq!(head.header("content-length"), Some(source_len.as_str()));
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    let next = c.get("/health/live").unwrap();
    assert_eq!(next.status, 200);

    // No credential needed, other methods are 405, and it is in the OpenAPI document.
    let r = req("POST", "/sdk/widget.js")
        .json(&json!({}))
        .send_to(h.addr);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    let doc = common::body(&req("GET", "/api/v1/openapi.json").send_to(h.addr));
    assert!(doc["paths"]["/sdk/widget.js"]["get"].is_object());
}

#[test]
fn dev_serves_a_demo_page_on_another_origin_with_its_own_public_key() {
    let h = start_dev(&[]);
    let demo = demo_addr(&h);
    assert_eq!(demo.ip().to_string(), "127.0.0.1");
    assert_ne!(demo.port(), h.addr.port());
    let pk = dev_file(&h, "dev-public-key");
    assert!(pk.starts_with("pk_"), "{pk}");
    let mode = std::fs::metadata(h.data_dir.join("dev-public-key"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let pid = demo_project(&h);

    let page = req("GET", "/").send_to(demo);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    let tag = format!(
        "<script type=\"module\" src=\"http://{}/sdk/widget.js\"\n        data-public-key=\"{pk}\" data-project-id=\"{pid}\"></script>",
        h.addr
    );
    assert!(html.contains(&tag), "{html}");
    assert_eq!(req("GET", "/nope").send_to(demo).status, 404);
    assert_eq!(req("POST", "/").json(&json!({})).send_to(demo).status, 405);

    // The key allows the demo page's origins, and no other.
    let port = demo.port();
    assert_eq!(
        sdk_init_status(&h, &pk, &format!("http://127.0.0.1:{port}"), &pid),
        200
    );
    assert_eq!(
        sdk_init_status(&h, &pk, &format!("http://localhost:{port}"), &pid),
        200
    );
    assert_eq!(sdk_init_status(&h, &pk, "http://127.0.0.1:1", &pid), 403);
}

#[test]
fn a_restart_keeps_the_demo_key_or_replaces_it_when_the_demo_origin_moved() {
    let dir = halyard_testkit::temp_dir("widget-restart");
    let opts = halyard_testkit::StartOptions {
        args: &["--dev"],
        env: ENV,
        ..Default::default()
    };
    let h = Halyard::start_opts(bin(), &dir, opts);
    let first_port = demo_addr(&h).port();
    let first_pk = dev_file(&h, "dev-public-key");
    drop(h);
    let h = Halyard::start_opts(bin(), &dir, opts);
    let port = demo_addr(&h).port();
    let pk = dev_file(&h, "dev-public-key");
    let pid = demo_project(&h);
    let origin = |p: u16| format!("http://127.0.0.1:{p}");
    assert_eq!(sdk_init_status(&h, &pk, &origin(port), &pid), 200);
    if port == first_port {
        assert_eq!(pk, first_pk, "same origin, same key");
    } else {
        assert_ne!(pk, first_pk, "a moved demo page gets a new key");
        assert_eq!(
            sdk_init_status(&h, &first_pk, &origin(first_port), &pid),
            401,
            "the replaced key is gone"
        );
    }
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Node.js, Chromium and playwright-core, or a panic that says what to install.
fn browser_prerequisites() -> (PathBuf, PathBuf) {
    let tests = repo().join("sdk/widget/test");
    let how = "`.ci/run` installs them: apt-get install -y chromium nodejs npm; \
               then `npm ci` in sdk/widget/test";
    let node = std::env::var_os("NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let version = Command::new(&node)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| {
            panic!("the widget browser test needs Node.js 20+ (`node` not found); {how}")
        });
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "the widget browser test needs Node.js 20+, found {version}; {how}"
    );
    let chromium = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.is_file(),
        "the widget browser test needs Chromium at {} (or $CHROMIUM); {how}",
        chromium.display()
    );
    assert!(
        tests
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "the widget browser test needs playwright-core in {}/node_modules; {how}",
        tests.display()
    );
    (node, chromium)
}

#[test]
fn the_widget_works_in_a_real_browser() {
    let (node, chromium) = browser_prerequisites();
    let h = start_dev(&["--echo-token-delay-ms", "20"]);
    let demo = demo_addr(&h);
    let artifacts = repo().join("test-artifacts");
    // Screenshots of failures of an earlier run would mislead.
    for e in std::fs::read_dir(&artifacts)
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with("failed-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let mut child = Command::new(&node)
        .args(["--test", "--test-reporter=spec", "widget.test.mjs"])
        .current_dir(repo().join("sdk/widget/test"))
        .env("HALYARD_API_URL", format!("http://{}", h.addr))
        .env("HALYARD_DEMO_URL", format!("http://{demo}/"))
        .env("HALYARD_ROOT_KEY", ROOT_KEY)
        .env("HALYARD_DEV_KEY", dev_file(&h, "dev-api-key"))
        .env("HALYARD_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let pipe = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = pipe(Box::new(child.stdout.take().unwrap()));
    let err = pipe(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for node") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    println!("{out}\n{err}");
    let status =
        status.unwrap_or_else(|| panic!("the browser tests took over 180 s:\n{out}\n{err}"));
    assert!(status.success(), "the browser tests failed:\n{out}\n{err}");
    assert!(
        out.contains("# pass") || out.contains("ℹ pass"),
        "no test ran:\n{out}"
    );
    assert!(
        artifacts.join("widget-open.png").is_file(),
        "no screenshot in {}",
        artifacts.display()
    );
}
