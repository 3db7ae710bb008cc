//! Three Halyard nodes on loopback ports over one PostgreSQL database (issue 16): a write
//! acknowledged by one node is read on the others at once, a key revoked on one node is
//! refused by every node from the next request on, and a node killed with SIGKILL under
//! write load loses no acknowledged write.
//!
//! Needs `HALYARD_TEST_PG`, a `postgres://` URL whose role may create databases:
//! `scripts/test` starts a PostgreSQL server of its own and sets it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bin, err, ok, tenant_on, Tenant, ENV, SERVE_ARGS};
use halyard_testkit::{Halyard, StartOptions};
use serde_json::json;

/// The key every node seals secrets with: nodes of one cluster must share it.
const MASTER_KEY: &str = "4f1c2a9d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f";

fn database(tag: &str) -> String {
    let base = std::env::var("HALYARD_TEST_PG").expect(
        "tests/cluster.rs needs HALYARD_TEST_PG, a postgres:// URL whose role may create \
         databases: run scripts/test, which starts a PostgreSQL server and sets it",
    );
    let name = format!("halyard_cluster_{tag}_{}", std::process::id());
    halyard_testkit::pg::fresh_database(&base, &name)
}

/// A node of the cluster on `url`, on a data directory of its own.
fn node(url: &str) -> Halyard {
    let mut args = SERVE_ARGS.to_vec();
    args.extend(["--storage", url]);
    node_with(&args)
}

/// A node started with `args` (its `--storage` among them) and the cluster's master key.
fn node_with(args: &[&str]) -> Halyard {
    let mut env = ENV.to_vec();
    env.push(("HALYARD_MASTER_KEY", MASTER_KEY));
    Halyard::start_fresh(
        bin(),
        StartOptions {
            args,
            env: &env,
            ..StartOptions::default()
        },
    )
}

/// Fails unless `halyard check --storage url` finds every transaction applies, in an
/// unbroken numbering.
fn assert_replays(url: &str) {
    let (status, out) = halyard_testkit::run_to_exit(
        bin(),
        &["check", "--storage", url],
        &[],
        Duration::from_secs(60),
    );
    assert!(status.success(), "check failed: {out}");
}

fn cluster(tag: &str, n: usize) -> (String, Vec<Halyard>) {
    let url = database(tag);
    let nodes = (0..n).map(|_| node(&url)).collect();
    (url, nodes)
}

/// `t` speaking to `node` instead.
fn on(t: &Tenant, node: &Halyard) -> Tenant {
    Tenant {
        addr: node.addr,
        ..t.clone()
    }
}

/// Waits until `t`'s key works on every node: a credential made on one node reaches the
/// others' admission within the listener's bound (a notification, else the 2 s poll).
fn await_key(t: &Tenant, nodes: &[Halyard]) {
    for node in nodes {
        let deadline = Instant::now() + Duration::from_millis(2_500);
        while on(t, node).get("/api/projects").status != 200 {
            assert!(
                Instant::now() < deadline,
                "the key never worked on {}",
                node.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_write_on_one_node_is_read_on_every_other_at_once() {
    let (_, nodes) = cluster("rw", 3);
    let t = tenant_on(nodes[0].addr, false);
    await_key(&t, &nodes);
    for i in 0..12 {
        let writer = on(&t, &nodes[i % 3]);
        let pid = writer.project_with_agent(&format!("p{i}"));
        let session = writer.session(&pid);
        let sid = session["id"].as_str().expect("session id");
        for reader in &nodes {
            let r = on(&t, reader);
            ok(&r.get(&format!("/api/projects/{pid}")), 200);
            ok(&r.get(&format!("/api/projects/{pid}/sessions/{sid}")), 200);
        }
    }
    // A uniqueness rule holds across nodes: a slug taken on another node is a 409.
    let one = json!({"name": "one"});
    ok(&on(&t, &nodes[1]).post("/api/projects", &one), 201);
    err(
        &on(&t, &nodes[2]).post("/api/projects", &one),
        409,
        "CONFLICT",
    );
}

#[test]
fn a_key_revoked_on_one_node_is_refused_by_every_node_from_the_next_request() {
    let (_, nodes) = cluster("revoke", 3);
    let t = tenant_on(nodes[0].addr, false);
    let (key, id) = t.api_key(&json!({"name": "short-lived"}));
    let with_key = |node: &Halyard| Tenant {
        addr: node.addr,
        key: key.clone(),
        ..t.clone()
    };
    await_key(&with_key(&nodes[0]), &nodes);
    ok(
        &on(&t, &nodes[0]).delete(&format!("/api/v1/api-keys/{id}")),
        200,
    );
    for node in &nodes {
        err(&with_key(node).get("/api/projects"), 401, "UNAUTHORIZED");
    }
}

/// Sends `req` to `t`'s node; `None` when the connection fails or closes without an answer.
fn try_send(req: &common::Req, t: &Tenant) -> Option<halyard_testkit::Response> {
    let mut c = halyard_testkit::Client::connect(t.addr).ok()?;
    c.send(&req.bytes()).ok()?;
    c.response().ok()
}

#[test]
fn sigkill_of_a_node_under_write_load_loses_no_acknowledged_write() {
    let (url, mut nodes) = cluster("kill", 2);
    let t = tenant_on(nodes[0].addr, false);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (t, acked, stop) = (t.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0..2_000 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let doc = json!({"name": format!("w{w}-{i}")});
                    let Some(r) = try_send(&t.req("POST", "/api/projects").json(&doc), &t) else {
                        return; // the node died: this write may or may not have committed
                    };
                    if r.status != 201 {
                        return;
                    }
                    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
                    let id = v["project"]["id"].as_str().expect("id").to_string();
                    acked.lock().expect("acked").push(id);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().expect("acked").len() < 100 {
        assert!(Instant::now() < deadline, "fewer than 100 writes in 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    nodes[0].signal(libc::SIGKILL);
    let _ = nodes[0].wait_exit(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().expect("acked").clone();
    let survivor = on(&t, &nodes[1]);
    for id in &acked {
        ok(&survivor.get(&format!("/api/projects/{id}")), 200);
    }
    // A node started after the kill loads the same data from the database.
    let late_node = node(&url);
    let late = on(&t, &late_node);
    let listed = ok(&late.get("/api/projects?limit=100"), 200);
    assert!(listed["pagination"]["total"].as_u64().unwrap_or(0) >= acked.len() as u64);
    // And the database replays whole: every transaction applies, no gap in any numbering.
    assert_replays(&url);
}

#[test]
fn migrate_brings_a_database_up_to_date_and_refuses_a_newer_schema() {
    let url = database("migrate");
    let migrate = |url: &str| {
        halyard_testkit::run_to_exit(
            bin(),
            &["migrate", "--storage", url],
            &[],
            Duration::from_secs(60),
        )
    };
    let (status, out) = migrate(&url);
    assert!(status.success(), "{out}");
    let (status, out) = migrate(&url);
    assert!(status.success(), "a second run changes nothing: {out}");
    halyard_testkit::pg::execute(&url, "INSERT INTO halyard_schema (version) VALUES (999)");
    let (status, out) = migrate(&url);
    assert!(!status.success());
    assert!(out.contains("version 999, newer than this binary"), "{out}");
    let dir = halyard_testkit::temp_dir("migrate");
    let dir = dir.to_str().expect("utf-8 path");
    let serve = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir,
        "--storage",
        &url,
    ];
    let (status, out) = halyard_testkit::run_to_exit(bin(), &serve, &[], Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(dir);
    assert!(!status.success(), "serve started on a newer schema");
    assert!(out.contains("newer than this binary"), "{out}");
}

#[test]
fn a_store_moves_from_a_data_directory_into_postgresql_and_back() {
    let url = database("move");
    let env = [ENV[0], ("HALYARD_MASTER_KEY", MASTER_KEY)];
    let dir = halyard_testkit::temp_dir("move-from");
    let (t, pid, sid) = {
        let h = Halyard::start_in_with_env(bin(), &dir, SERVE_ARGS, &env);
        let t = tenant_on(h.addr, false);
        let pid = t.project_with_agent("bot");
        t.secret(&pid, "OPENAI", "sk-moved");
        let sid = t.session(&pid)["id"]
            .as_str()
            .expect("session id")
            .to_string();
        for m in ["one", "two"] {
            let turn = json!({"projectId": pid, "sessionId": sid, "message": m});
            ok(&t.post("/api/v1/chat/agent", &turn), 200);
        }
        (t, pid, sid)
    };
    let reads = |t: &Tenant| {
        [
            format!("/api/projects/{pid}"),
            format!("/api/projects/{pid}/agents"),
            format!("/api/projects/{pid}/secrets"),
            format!("/api/projects/{pid}/sessions/{sid}/messages"),
        ]
        .map(|path| ok(&t.get(&path), 200))
    };
    let before = {
        let h = Halyard::start_in_with_env(bin(), &dir, SERVE_ARGS, &env);
        reads(&on(&t, &h))
    };
    let run =
        |args: &[&str]| halyard_testkit::run_to_exit(bin(), args, &[], Duration::from_secs(120));
    let dir_arg = dir.to_str().expect("utf-8 path");
    let (status, out) = run(&["export-store", "--data-dir", dir_arg, "--to", &url]);
    assert!(status.success(), "{out}");
    let (status, out) = run(&["export-store", "--data-dir", dir_arg, "--to", &url]);
    assert!(!status.success() && out.contains("not empty"), "{out}");
    {
        let n = node(&url);
        assert_eq!(reads(&on(&t, &n)), before, "in PostgreSQL");
    }
    let back = halyard_testkit::temp_dir("move-back");
    let back_arg = back.to_str().expect("utf-8 path");
    let (status, out) = run(&["import-store", "--from", &url, "--data-dir", back_arg]);
    assert!(status.success(), "{out}");
    {
        let h = Halyard::start_in_with_env(bin(), &back, SERVE_ARGS, &env);
        assert_eq!(reads(&on(&t, &h)), before, "back in a data directory");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&back);
}

/// A TCP relay between a node and PostgreSQL that the test can cut and mend (what a
/// database that goes away and comes back looks like from the node), or stall (one that
/// stops answering without closing anything).
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

/// Copies `from` into `into` until either closes, holding each chunk while `stalled`.
fn pump(mut from: std::net::TcpStream, mut into: std::net::TcpStream, stalled: &AtomicBool) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        while stalled.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if into.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = into.shutdown(std::net::Shutdown::Both);
}

impl Relay {
    fn start(to: std::net::SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (c, o, st) = (cut.clone(), open.clone(), stalled.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let Ok(server) = std::net::TcpStream::connect(to) else {
                    continue;
                };
                let mut open = o.lock().expect("relay sockets");
                for (from, into) in [(&client, &server), (&server, &client)] {
                    let (from, into) = (from.try_clone().unwrap(), into.try_clone().unwrap());
                    let st = st.clone();
                    std::thread::spawn(move || pump(from, into, &st));
                }
                open.extend([client, server]);
            }
        });
        Relay {
            port,
            cut,
            stalled,
            open,
        }
    }

    /// Holds everything sent either way until [`Relay::flow`].
    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    fn flow(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().expect("relay sockets").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn mend(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// A fresh database `name`: its URL, a relay in front of it (that a test can cut), and the
/// URL that goes through the relay.
fn relayed_database(name: &str) -> (String, Relay, String) {
    let url = database(name);
    let (_, pg) = through(&url, 0);
    let relay = Relay::start(pg);
    let (relayed, _) = through(&url, relay.port);
    (url, relay, relayed)
}

/// `url` with its host and port replaced by `127.0.0.1:port`, and the address it named.
fn through(url: &str, port: u16) -> (String, std::net::SocketAddr) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').expect("a database name");
    let (user, host) = authority.rsplit_once('@').expect("a user");
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    };
    let addr = host.parse().expect("a numeric host and port");
    (format!("{scheme}://{user}@127.0.0.1:{port}/{path}"), addr)
}

fn ready(node: &Halyard) -> u16 {
    common::req("GET", "/health/ready")
        .send_to(node.addr)
        .status
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn readiness_follows_the_database_going_away_and_coming_back() {
    let (_, relay, relayed) = relayed_database("ready");
    let n = node(&relayed);
    let t = tenant_on(n.addr, false);
    assert_eq!(ready(&n), 200);
    relay.cut();
    until("ready turns 503", || ready(&n) == 503);
    err(&t.get("/api/projects"), 503, "SERVICE_UNAVAILABLE");
    assert_eq!(
        common::req("GET", "/health/live").send_to(n.addr).status,
        200
    );
    relay.mend();
    until("ready turns 200 again", || ready(&n) == 200);
    until("reads work again", || t.get("/api/projects").status == 200);
    ok(&t.post("/api/projects", &json!({"name": "after"})), 201);
}

#[test]
fn a_stalled_database_stalls_no_event_loop() {
    let (_, relay, relayed) = relayed_database("stall");
    let mut args = SERVE_ARGS.to_vec();
    args.extend(["--threads", "1", "--echo-token-delay-ms", "40"]);
    args.extend(["--storage", &relayed]);
    let n = node_with(&args);
    let t = tenant_on(n.addr, false);
    let pid = t.project_with_agent("bot");
    let body = json!({"projectId": pid, "message": words(60)});
    let (mut c, _) = common::sse::open_stream(&t, "/api/v1/chat/agent/stream", &body);
    let (first, _) = common::sse::read_events(&mut c, |e| e.len() >= 3);

    // The database stops answering while the turn streams: its batches (every 250 ms)
    // wait for it, the one loop does not.
    relay.stall();
    let stalled = Instant::now();
    let (more, _) = common::sse::read_events(&mut c, |e| e.len() >= 20);
    assert!(
        more.len() >= 20,
        "the stream went on: {} events",
        more.len()
    );
    for _ in 0..5 {
        let asked = Instant::now();
        let live = common::req("GET", "/health/live").send_to(n.addr);
        assert_eq!(live.status, 200);
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "the loop answered in {:?}",
            asked.elapsed()
        );
    }
    assert!(
        stalled.elapsed() > Duration::from_millis(600),
        "past a batch"
    );
    relay.flow();

    // Once it answers again, the reply is stored and the stream ends as usual.
    let (rest, _) = common::sse::read_events(&mut c, |_| false);
    let all: Vec<_> = first.iter().chain(&more).chain(&rest).collect();
    assert_eq!(all.last().map(|e| e.name.as_str()), Some("done"));
    let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    let sid = all[0].data["sessionId"].as_str().expect("session id");
    let stored = ok(
        &t.get(&format!("/api/projects/{pid}/sessions/{sid}/messages")),
        200,
    );
    assert_eq!(stored["messages"].as_array().map(Vec::len), Some(2));
}

/// Resumes `stream_id` on `node` after `last` and reads it to its end.
fn resume_on(t: &Tenant, node: &Halyard, stream_id: &str, last: u64) -> Vec<common::sse::Event> {
    let mut c = halyard_testkit::Client::connect(node.addr).expect("connect");
    let req = t
        .req("GET", &format!("/api/v1/chat/stream/{stream_id}"))
        .header("Last-Event-ID", &last.to_string());
    c.send(&req.bytes()).expect("send");
    assert_eq!(c.head().expect("head").status, 200);
    common::sse::read_events(&mut c, |_| false).0
}

/// `w0 w1 ... w{n-1}`: a message the echo agent answers with `n` tokens.
fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The ids of `events` are `after + 1`, `after + 2`, ... with no gap.
fn assert_follows(events: &[common::sse::Event], after: u64) {
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    let want: Vec<u64> = (after + 1..after + 1 + ids.len() as u64).collect();
    assert_eq!(ids, want, "ids after {after}");
}

#[test]
fn a_stream_is_resumed_on_another_node_while_its_node_runs_and_after_it_died() {
    let url = database("streams");
    // The default provider timeout (60 s): B must tell that A is gone from its heartbeat,
    // not wait for a silence longer than a turn may take.
    let args = ["--echo-token-delay-ms", "40"];
    let mut start = SERVE_ARGS.to_vec();
    start.extend(args);
    start.extend(["--storage", &url]);
    let (mut a, b) = (node_with(&start), node_with(&start));
    let t = tenant_on(a.addr, false);
    await_key(&t, std::slice::from_ref(&b));
    let pid = t.project_with_agent("bot");
    let body = json!({"projectId": pid, "message": words(40)});

    // While A runs it: the resume on B gets the rest, the same events as A's client.
    let (mut on_a, head) = common::sse::open_stream(&t, "/api/v1/chat/agent/stream", &body);
    let sid = head.header("x-stream-id").expect("stream id").to_string();
    let (first, _) = common::sse::read_events(&mut on_a, |e| e.len() >= 3);
    let seen = first.last().expect("events").id;
    let rest = resume_on(&t, &b, &sid, seen);
    assert_follows(&rest, seen);
    assert_eq!(rest.last().map(|e| e.name.as_str()), Some("done"));
    let (all_on_a, _) = common::sse::read_events(&mut on_a, |_| false);
    let a_rest: Vec<_> = first
        .iter()
        .chain(&all_on_a)
        .filter(|e| e.id > seen)
        .collect();
    assert_eq!(a_rest.len(), rest.len());
    for (x, y) in a_rest.iter().zip(&rest) {
        assert_eq!((x.id, &x.name, &x.data), (y.id, &y.name, &y.data));
    }

    // After A died: B replays what A stored, then says the stream was cut short.
    let (mut on_a, head) = common::sse::open_stream(&t, "/api/v1/chat/agent/stream", &body);
    let sid = head.header("x-stream-id").expect("stream id").to_string();
    let (first, _) = common::sse::read_events(&mut on_a, |e| e.len() >= 10);
    let seen = first[2].id;
    // Past a flush, so that some events after `seen` are in the database.
    std::thread::sleep(Duration::from_millis(600));
    a.signal(libc::SIGKILL);
    let _ = a.wait_exit(Duration::from_secs(5));
    let began = Instant::now();
    let rest = resume_on(&t, &b, &sid, seen);
    assert_follows(&rest, seen);
    assert!(
        rest.len() >= 8,
        "the flushed events are replayed: {}",
        rest.len()
    );
    let end = rest.last().expect("an end");
    assert_eq!(end.name, "error");
    assert_eq!(
        end.data["code"],
        json!("STREAM_INTERRUPTED"),
        "{:?}",
        end.data
    );
    assert!(
        began.elapsed() < Duration::from_secs(12),
        "{:?}",
        began.elapsed()
    );
}

#[test]
fn a_tenant_flooded_through_every_node_gets_no_more_than_the_stated_bound() {
    let url = database("flood");
    // Rate limits on: these nodes do not get SERVE_ARGS.
    let start = ["--storage", url.as_str()];
    let nodes = [node_with(&start), node_with(&start)];
    let t = tenant_on(nodes[0].addr, false);
    let limits = json!({"limits": {"requestsPerSecond": 100, "burst": 100}});
    let patch = common::req("PATCH", &format!("/api/v1/admin/tenants/{}", t.id))
        .bearer(common::ROOT_KEY)
        .json(&limits);
    ok(&patch.send_to(nodes[0].addr), 200);
    await_key(&t, &nodes);
    // The limits reach the other node's admission like any write.
    std::thread::sleep(Duration::from_millis(300));
    let flood = Duration::from_secs(3);
    let began = Instant::now();
    let admitted: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|i| {
                let t = on(&t, &nodes[i % 2]);
                s.spawn(move || {
                    let mut c = halyard_testkit::Client::connect(t.addr).expect("connect");
                    let mut ok = 0;
                    while began.elapsed() < flood {
                        match t.req("GET", "/api/projects").send_on(&mut c).status {
                            200 => ok += 1,
                            429 => {}
                            other => panic!("status {other}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    let secs = began.elapsed().as_secs_f64();
    // One bucket would admit r·t + b; the shared buckets of N = 2 nodes at most
    // 2(N−1)·q + N·⌈r·Δ⌉ more, q = ⌈b/N⌉ + ⌈r·Δ⌉ = 50 + 2 (docs/scaleout.md): 108.
    let bound = (100.0 * secs + 100.0 + 108.0).ceil() as usize;
    assert!(
        admitted <= bound,
        "{admitted} admitted in {secs:.2} s, bound {bound}"
    );
    // And the limit is a rate, not a wall: the sustained rate gets through.
    let floor = (100.0 * (secs - 0.5)) as usize;
    assert!(
        admitted >= floor,
        "{admitted} admitted in {secs:.2} s, expected at least {floor}"
    );
}

#[test]
fn writes_to_one_tenant_through_two_nodes_at_once_are_all_kept_in_one_order() {
    let (url, nodes) = cluster("race", 2);
    let t = tenant_on(nodes[0].addr, false);
    await_key(&t, &nodes);
    let ids: Vec<String> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let t = on(&t, &nodes[w % 2]);
                s.spawn(move || {
                    (0..40)
                        .map(|i| t.project(&format!("race-{w}-{i}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|w| w.join().expect("writer"))
            .collect()
    });
    assert_eq!(ids.len(), 240);
    for node in &nodes {
        let listed = ok(&on(&t, node).get("/api/projects?limit=1"), 200);
        assert_eq!(listed["pagination"]["total"], json!(240));
    }
    assert_replays(&url);
}

#[test]
fn session_limits_are_exact_across_three_nodes() {
    let url = database("exact");
    // Rate limits on: these nodes do not get SERVE_ARGS.
    let start = ["--storage", url.as_str()];
    let nodes = [node_with(&start), node_with(&start), node_with(&start)];
    let t = tenant_on(nodes[0].addr, false);
    let limits = json!({"limits": {"sessionMessagesPerMinute": 3, "maxConcurrentSessions": 4}});
    let patch = common::req("PATCH", &format!("/api/v1/admin/tenants/{}", t.id))
        .bearer(common::ROOT_KEY)
        .json(&limits);
    ok(&patch.send_to(nodes[0].addr), 200);
    await_key(&t, &nodes);
    let pid = t.project_with_agent("bot");

    // Nine creations at once through three nodes: exactly the cap gets a session.
    let created: Vec<u16> = std::thread::scope(|s| {
        let path = format!("/api/projects/{pid}/sessions");
        let tries: Vec<_> = (0..9)
            .map(|i| {
                let (t, path) = (on(&t, &nodes[i % 3]), path.clone());
                s.spawn(move || t.post(&path, &json!({})).status)
            })
            .collect();
        tries.into_iter().map(|w| w.join().expect("try")).collect()
    });
    let won = created.iter().filter(|s| **s == 201).count();
    assert_eq!(won, 4, "statuses {created:?}");
    assert_eq!(created.iter().filter(|s| **s == 429).count(), 5);
    // A chat turn that would open one more session is refused on any node.
    let open = json!({"projectId": pid, "message": "x"});
    err(
        &on(&t, &nodes[2]).post("/api/v1/chat/agent", &open),
        429,
        "RATE_LIMIT_EXCEEDED",
    );

    // A session's messages, sent through each node in turn: exactly its rate gets through.
    let listed = ok(&t.get(&format!("/api/projects/{pid}/sessions")), 200);
    let sid = listed["sessions"][0]["id"]
        .as_str()
        .expect("a session")
        .to_string();
    let sent: Vec<u16> = (0..9)
        .map(|i| {
            let body = json!({"sessionId": sid, "message": "x"});
            on(&t, &nodes[i % 3])
                .post("/api/v1/chat/send", &body)
                .status
        })
        .collect();
    assert_eq!(sent[..3], [200, 200, 200], "statuses {sent:?}");
    assert!(sent[3..].iter().all(|s| *s == 429), "statuses {sent:?}");
}

#[test]
fn a_standby_promoted_under_write_load_loses_no_acknowledged_write() {
    use halyard_testkit::pg_cluster::{binaries, LocalPg};
    let bin = binaries().expect("PostgreSQL's binaries (scripts/test installs them)");
    // Every commit waits for the standby to have it: what was acknowledged survives.
    let mut primary = LocalPg::primary(&bin, "failover-a", &["synchronous_standby_names='*'"]);
    let standby = LocalPg::standby_of(&primary, "failover-b", &[]);
    let synced = Instant::now();
    while primary.scalar("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")
        != "1"
    {
        assert!(
            synced.elapsed() < Duration::from_secs(20),
            "no sync standby"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!(
        "postgres://halyard@{},{}/postgres?target_session_attrs=read-write",
        primary.host(),
        standby.host()
    );
    let n = node(&url);
    let t = tenant_on(n.addr, false);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let promoted: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let (acked, after_promotion): (Vec<String>, usize) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (t, stop, promoted) = (&t, &stop, &promoted);
                s.spawn(move || {
                    let (mut acked, mut after) = (Vec::new(), 0);
                    for i in 0.. {
                        if stop.load(std::sync::atomic::Ordering::Acquire) {
                            break;
                        }
                        let r = t.post("/api/projects", &json!({"name": format!("f-{w}-{i}")}));
                        match r.status {
                            201 => {
                                let v: serde_json::Value =
                                    serde_json::from_str(&r.text()).expect("json");
                                acked.push(v["project"]["id"].as_str().expect("id").to_string());
                                after += usize::from(promoted.get().is_some());
                            }
                            // The database is away, or the node has not reconnected yet.
                            503 => std::thread::sleep(Duration::from_millis(20)),
                            other => panic!("status {other}: {}", r.text()),
                        }
                    }
                    (acked, after)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        primary.crash();
        standby.promote();
        let _ = promoted.set(Instant::now());
        std::thread::sleep(Duration::from_secs(4));
        stop.store(true, std::sync::atomic::Ordering::Release);
        writers.into_iter().map(|w| w.join().expect("writer")).fold(
            (Vec::new(), 0),
            |(mut all, n), (ids, after)| {
                all.extend(ids);
                (all, n + after)
            },
        )
    });
    eprintln!(
        "failover: {} writes acknowledged, {after_promotion} of them after the promotion",
        acked.len()
    );
    assert!(acked.len() > after_promotion, "writes before the failover");
    assert!(after_promotion > 0, "no write after the promotion");

    // A node that never saw the old primary reads every acknowledged write.
    let fresh = node(&format!("postgres://halyard@{}/postgres", standby.host()));
    let listed = ok(&on(&t, &fresh).get("/api/projects?limit=1"), 200);
    let total = listed["pagination"]["total"].as_u64().expect("total") as usize;
    assert!(
        total >= acked.len(),
        "{total} stored, {} acknowledged",
        acked.len()
    );
    for id in &acked {
        ok(&on(&t, &fresh).get(&format!("/api/projects/{id}")), 200);
    }
    assert_replays(&format!("postgres://halyard@{}/postgres", standby.host()));
}

#[test]
fn a_node_reaches_the_database_over_tls_and_verifies_its_certificate() {
    use halyard_testkit::pg_cluster::{binaries, LocalPg};
    let pg_bin = binaries().expect("PostgreSQL's binaries (scripts/test installs them)");
    let pg = LocalPg::primary(&pg_bin, "tls", &[]);
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).expect("certificate");
    let cert = pg.put_file("server.crt", ck.cert.pem().as_bytes(), false);
    let key = pg.put_file(
        "server.key",
        ck.signing_key.serialize_pem().as_bytes(),
        true,
    );
    for (name, value) in [("ssl_cert_file", &cert), ("ssl_key_file", &key)] {
        pg.scalar(&format!("ALTER SYSTEM SET {name} = '{}'", value.display()));
    }
    pg.scalar("ALTER SYSTEM SET ssl = on");
    pg.scalar("SELECT pg_reload_conf()");
    let base = format!(
        "postgres://halyard@{}/postgres?sslmode=verify-full",
        pg.host()
    );

    // A certificate no trusted root signed: refused, and the error says why.
    let migrate = ["migrate", "--storage", base.as_str()];
    let (status, out) = halyard_testkit::run_to_exit(bin(), &migrate, &[], Duration::from_secs(60));
    assert!(!status.success(), "migrated over an unverified connection");
    assert!(out.contains("certificate"), "{out}");

    // Its root given: the node works, and each of its connections is encrypted.
    let ca = halyard_testkit::temp_dir("tls-ca").with_extension("pem");
    std::fs::write(&ca, ck.cert.pem()).expect("write the root");
    let url = format!("{base}&sslrootcert={}", ca.display());
    let n = node(&url);
    let t = tenant_on(n.addr, false);
    t.project("over-tls");
    let plain = pg.scalar(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'halyard' AND NOT s.ssl",
    );
    let encrypted = pg.scalar(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'halyard' AND s.ssl",
    );
    assert_eq!(plain, "0");
    assert!(
        encrypted.parse::<u32>().expect("a count") >= 2,
        "{encrypted}"
    );
    drop(n);
    let _ = std::fs::remove_file(ca);
}

#[test]
fn reads_answered_from_memory_never_miss_an_acknowledged_write() {
    let (url, relay, relayed) = relayed_database("leases");
    let (a, b) = (node(&url), node(&relayed));
    let t = tenant_on(a.addr, false);
    await_key(&t, std::slice::from_ref(&b));
    let (on_a, on_b) = (on(&t, &a), on(&t, &b));

    // Each write acknowledged by A is read at once by B, whose reads of the tenant are
    // answered from memory (its lease is renewed while it reads).
    for i in 0..100 {
        let id = on_a.project(&format!("rw-{i}"));
        ok(&on_b.get(&format!("/api/projects/{id}")), 200);
        if i % 10 == 9 {
            ok(&on_a.delete(&format!("/api/projects/{id}")), 200);
            err(&on_b.get(&format!("/api/projects/{id}")), 404, "NOT_FOUND");
        }
    }

    // The database stops answering B: B goes on answering from memory while its lease
    // lasts, and A's next write waits until that lease ran out (B cannot acknowledge it).
    let known = on_a.project("before-the-stall");
    ok(&on_b.get(&format!("/api/projects/{known}")), 200);
    relay.stall();
    for _ in 0..5 {
        let asked = Instant::now();
        ok(&on_b.get(&format!("/api/projects/{known}")), 200);
        assert!(
            asked.elapsed() < Duration::from_millis(300),
            "{:?}",
            asked.elapsed()
        );
    }
    let wrote = Instant::now();
    let late = on_a.project("during-the-stall");
    let waited = wrote.elapsed();
    assert!(
        waited < Duration::from_secs(4),
        "A waited {waited:?} for a lease of 2 s"
    );
    // B's lease is over: its read goes to the database (held by the stall), and finds the
    // write once the database answers again, never a stale 404.
    let read = std::thread::scope(|s| {
        let r = s.spawn(|| on_b.get(&format!("/api/projects/{late}")).status);
        std::thread::sleep(Duration::from_millis(300));
        relay.flow();
        r.join().expect("reader")
    });
    assert_eq!(read, 200);
}
