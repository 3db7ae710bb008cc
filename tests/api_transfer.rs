//! Project export and import (ENDPOINTS section 8) against the real binary: the export
//! document, preview, prune, the round trip, atomicity on a bad document, and a 2 MiB
//! import on the route whose limit is 60 MiB.

mod common;

use common::*;
use serde_json::{json, Value};

fn export(t: &Tenant, pid: &str) -> Value {
    ok(
        &t.get(&format!("/api/projects/{pid}/project-io/export")),
        200,
    )
}

/// The export without its timestamp, agents sorted by name.
fn comparable(mut doc: Value) -> Value {
    doc["manifest"]["exportedAt"] = Value::Null;
    let mut agents = doc["agents"].as_array().cloned().unwrap_or_default();
    agents.sort_by_key(|a| a["name"].as_str().unwrap_or("").to_string());
    doc["agents"] = Value::Array(agents);
    doc
}

fn import_path(pid: &str, suffix: &str) -> String {
    format!("/api/projects/{pid}/project-io/import{suffix}")
}

fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn export_holds_the_project_and_its_agents_only() {
    let t = tenant();
    let pid =
        t.project_with(&json!({"name": "Exported", "description": "d", "entryAgentName": "alpha"}));
    t.agent(&pid, "alpha");
    ok(
        &t.post(
            &format!("/api/projects/{pid}/agents"),
            &json!({"name": "beta", "model": {"provider": "echo", "temperature": 0.2}, "dslContent": "x"}),
        ),
        201,
    );
    t.session(&pid);
    ok(
        &t.post(
            &format!("/api/projects/{pid}/secrets"),
            &json!({"name": "HIDDEN", "value": "hidden-value-123"}),
        ),
        201,
    );
    t.public_key(&pid, &["https://export.example"]);
    let r = t.get(&format!("/api/projects/{pid}/project-io/export"));
    let doc = ok(&r, 200);
    assert_eq!(
        doc["manifest"]["project"],
        json!({"name": "Exported", "description": "d", "entryAgentName": "alpha"})
    );
    assert_eq!(doc["manifest"]["version"], json!(1));
    assert!(doc["manifest"]["exportedAt"].is_string(), "{doc}");
    assert_eq!(names(&doc["agents"]), ["alpha", "beta"]);
    let beta = doc["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == json!("beta"))
        .unwrap();
    assert_eq!(beta["model"]["temperature"], json!(0.2));
    assert_eq!(beta["dslContent"], json!("x"));
    let text = r.text();
    for absent in [
        "hidden-value-123",
        "HIDDEN",
        "ses_",
        "pk_",
        "pkey_",
        "abl_sk-",
    ] {
        assert!(!text.contains(absent), "{absent} in the export: {text}");
    }
    // The export scope is needed.
    let (key, _) = t.api_key(&json!({"name": "ro", "scopes": ["project:read"]}));
    err(
        &req("GET", &format!("/api/projects/{pid}/project-io/export"))
            .bearer(&key)
            .send(),
        403,
        "FORBIDDEN",
    );
}

#[test]
fn export_then_import_round_trips() {
    let t = tenant();
    let src = t.project_with(
        &json!({"name": "Source", "description": "from here", "entryAgentName": "one"}),
    );
    t.agent(&src, "one");
    ok(
        &t.post(
            &format!("/api/projects/{src}/agents"),
            &json!({"name": "two", "description": "second", "instructions": "Two.",
                    "model": {"provider": "openai", "model": "m", "baseUrl": "http://127.0.0.1:9/v1",
                              "apiKeySecret": "K", "maxTokens": 9, "pricing": {"inputPerMTok": 1, "outputPerMTok": 2}},
                    "dslContent": "dsl two"}),
        ),
        201,
    );
    let doc = export(&t, &src);
    let dst = t.project("Destination");
    let r = t.post(&import_path(&dst, ""), &doc);
    let v = ok(&r, 200);
    assert_eq!(sorted(&v["applied"]["created"]), ["one", "two"]);
    assert_eq!(v["applied"]["updated"], json!([]));
    assert_eq!(v["applied"]["deleted"], json!([]));
    let mut want = comparable(doc.clone());
    // The target keeps its own name.
    want["manifest"]["project"]["name"] = json!("Destination");
    assert_eq!(comparable(export(&t, &dst)), want);
    let v = ok(&t.get(&format!("/api/projects/{dst}")), 200);
    assert_eq!(v["project"]["name"], json!("Destination"));
    assert_eq!(v["project"]["slug"], json!("destination"));
    assert_eq!(v["project"]["description"], json!("from here"));
    assert_eq!(v["project"]["entryAgentName"], json!("one"));
    // Sessions work on the imported entry agent.
    assert_eq!(t.session(&dst)["agentName"], json!("one"));
    // Importing the same document again updates in place, keeping ids.
    let before = ok(&t.get(&format!("/api/projects/{dst}/agents/one")), 200)["agent"]["id"].clone();
    let v = ok(&t.post(&import_path(&dst, ""), &doc), 200);
    assert_eq!(sorted(&v["applied"]["updated"]), ["one", "two"]);
    assert_eq!(v["applied"]["created"], json!([]));
    let after = ok(&t.get(&format!("/api/projects/{dst}/agents/one")), 200)["agent"]["id"].clone();
    assert_eq!(before, after);
}

#[test]
fn preview_reports_the_plan_and_changes_nothing() {
    let t = tenant();
    let pid = t.project_with(&json!({"name": "Preview", "description": "old"}));
    t.agent(&pid, "keep");
    t.agent(&pid, "drop");
    let before = export(&t, &pid);
    let doc = json!({
        "manifest": {"project": {"name": "ignored", "description": "new", "entryAgentName": "add"}, "version": 1},
        "agents": [{"name": "keep", "instructions": "changed"}, {"name": "add"}],
    });
    let v = ok(&t.post(&import_path(&pid, "/preview"), &doc), 200);
    assert_eq!(v["preview"]["create"], json!(["add"]));
    assert_eq!(v["preview"]["update"], json!(["keep"]));
    assert_eq!(v["preview"]["delete"], json!([]));
    let v = ok(
        &t.post(&import_path(&pid, "/preview?prune=true"), &doc),
        200,
    );
    assert_eq!(v["preview"]["delete"], json!(["drop"]));
    // A bad document is refused by the preview too.
    err(
        &t.post(
            &import_path(&pid, "/preview"),
            &json!({"agents": [{"name": "BAD"}]}),
        ),
        400,
        "VALIDATION_ERROR",
    );
    assert_eq!(comparable(export(&t, &pid)), comparable(before));
}

#[test]
fn import_with_prune_deletes_absent_agents() {
    let t = tenant();
    let pid = t.project_with(&json!({"name": "Prune", "entryAgentName": "stay"}));
    t.agent(&pid, "stay");
    t.agent(&pid, "go");
    let doc = json!({
        "manifest": {"project": {"name": "x", "description": "pruned", "entryAgentName": "stay"}, "version": 1},
        "agents": [{"name": "stay", "instructions": "v2"}, {"name": "new-one"}],
    });
    // Without prune, nothing is deleted.
    let v = ok(&t.post(&import_path(&pid, ""), &doc), 200);
    assert_eq!(v["applied"]["deleted"], json!([]));
    let agents = ok(&t.get(&format!("/api/projects/{pid}/agents")), 200);
    assert_eq!(names(&agents["agents"]), ["go", "new-one", "stay"]);
    // With prune, absent agents go.
    let v = ok(&t.post(&import_path(&pid, "?prune=true"), &doc), 200);
    assert_eq!(v["applied"]["deleted"], json!(["go"]));
    assert_eq!(sorted(&v["applied"]["updated"]), ["new-one", "stay"]);
    let agents = ok(&t.get(&format!("/api/projects/{pid}/agents")), 200);
    assert_eq!(names(&agents["agents"]), ["new-one", "stay"]);
    err(
        &t.get(&format!("/api/projects/{pid}/agents/go")),
        404,
        "NOT_FOUND",
    );
    let v = ok(&t.get(&format!("/api/projects/{pid}/agents/stay")), 200);
    assert_eq!(v["agent"]["instructions"], json!("v2"));
    let v = ok(&t.get(&format!("/api/projects/{pid}")), 200);
    assert_eq!(v["project"]["description"], json!("pruned"));
    assert_eq!(v["project"]["name"], json!("Prune"));
}

#[test]
fn import_is_atomic_on_a_bad_document() {
    let t = tenant();
    let pid = t.project_with(
        &json!({"name": "Atomic", "description": "untouched", "entryAgentName": "a"}),
    );
    t.agent(&pid, "a");
    t.agent(&pid, "b");
    let before = export(&t, &pid);
    let bad_docs = [
        // One invalid agent among valid ones.
        json!({
            "manifest": {"project": {"description": "changed", "entryAgentName": "c"}, "version": 1},
            "agents": [{"name": "a", "instructions": "changed"}, {"name": "c"}, {"name": "Not Valid"}],
        }),
        // A duplicate name.
        json!({"agents": [{"name": "c"}, {"name": "c"}]}),
        // An invalid model deep inside.
        json!({"agents": [{"name": "c"}, {"name": "d", "model": {"provider": "nope"}}]}),
        // Not an agent list.
        json!({"agents": {"name": "c"}}),
        json!({"manifest": {"version": 99}, "agents": []}),
    ];
    for (i, doc) in bad_docs.iter().enumerate() {
        let r = t.post(&import_path(&pid, "?prune=true"), doc);
        let v = err(&r, 400, "VALIDATION_ERROR");
        assert!(
            v["error"]["details"]
                .as_array()
                .is_some_and(|d| !d.is_empty()),
            "doc {i}: {v}"
        );
        assert_eq!(
            comparable(export(&t, &pid)),
            comparable(before.clone()),
            "doc {i}"
        );
    }
    let v = err(
        &t.post(&import_path(&pid, ""), &bad_docs[0]),
        400,
        "VALIDATION_ERROR",
    );
    let fields: Vec<&str> = v["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["agents[2].name"]);
    // Malformed JSON changes nothing either.
    let r = t
        .req("POST", &import_path(&pid, ""))
        .raw_json(br#"{"agents": [{"name": "c"},"#.to_vec())
        .send();
    err(&r, 400, "BAD_REQUEST");
    assert_eq!(comparable(export(&t, &pid)), comparable(before));
    let v = ok(&t.get(&format!("/api/projects/{pid}")), 200);
    assert_eq!(v["project"]["description"], json!("untouched"));
    assert_eq!(v["project"]["entryAgentName"], json!("a"));
}

#[test]
fn a_two_mib_import_is_accepted() {
    let t = tenant();
    let pid = t.project("Big Import");
    let instructions = "x".repeat(95_000);
    let agents: Vec<Value> = (0..23)
        .map(|i| json!({"name": format!("bulk-{i:02}"), "instructions": instructions}))
        .collect();
    let doc = json!({
        "manifest": {"project": {"name": "n", "description": "big", "entryAgentName": "bulk-00"}, "version": 1},
        "agents": agents,
    });
    let bytes = serde_json::to_vec(&doc).unwrap();
    assert!(bytes.len() > 2 * 1024 * 1024, "{}", bytes.len());
    // Over the 1 MiB limit of the preview route, within the import route's. Refused from the
    // head alone (admission): only the head is sent, because the server closes after its
    // answer and a client still writing 2 MiB could see the close before the answer.
    let full = t
        .req("POST", &import_path(&pid, "/preview"))
        .raw_json(bytes.clone())
        .bytes();
    let head_end = full.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut c = halyard_testkit::Client::connect(t.addr).unwrap();
    c.send(&full[..head_end]).unwrap();
    err(&c.response().unwrap(), 413, "PAYLOAD_TOO_LARGE");
    let r = t.req("POST", &import_path(&pid, "")).raw_json(bytes).send();
    let v = ok(&r, 200);
    assert_eq!(v["applied"]["created"].as_array().unwrap().len(), 23);
    let v = ok(
        &t.get(&format!("/api/projects/{pid}/agents?limit=200")),
        200,
    );
    assert_eq!(v["pagination"]["total"], json!(23));
    let one = ok(&t.get(&format!("/api/projects/{pid}/agents/bulk-22")), 200);
    assert_eq!(one["agent"]["instructions"].as_str().unwrap().len(), 95_000);
}

#[test]
fn import_needs_its_scope_and_the_caller_s_project() {
    let t = tenant();
    let pid = t.project("Guarded");
    let doc = json!({"agents": [{"name": "z"}]});
    let (key, _) = t.api_key(&json!({"name": "exporter", "scopes": ["project:export"]}));
    for suffix in ["", "/preview"] {
        err(
            &req("POST", &import_path(&pid, suffix))
                .bearer(&key)
                .json(&doc)
                .send(),
            403,
            "FORBIDDEN",
        );
    }
    let v = ok(&t.get(&format!("/api/projects/{pid}/agents")), 200);
    assert_eq!(v["pagination"]["total"], json!(0));
    let other = tenant();
    err(&other.post(&import_path(&pid, ""), &doc), 404, "NOT_FOUND");
    err(
        &t.post(&import_path("proj_missing", ""), &doc),
        404,
        "NOT_FOUND",
    );
}

#[test]
fn concurrent_imports_of_one_project_apply_whole_documents_or_409() {
    let t = tenant();
    let pid = t.project("Contended");
    let docs: Vec<Value> = (0..6)
        .map(|i| {
            let agents: Vec<Value> = (0..40)
                .map(|j| json!({"name": format!("doc{i}-agent{j:02}"), "instructions": "y".repeat(20_000)}))
                .collect();
            json!({"manifest": {"project": {"description": format!("doc {i}")}, "version": 1}, "agents": agents})
        })
        .collect();
    let path = import_path(&pid, "?prune=true");
    let results: Vec<halyard_testkit::Response> = std::thread::scope(|s| {
        let handles: Vec<_> = docs
            .iter()
            .map(|d| {
                let r = t.req("POST", &path).json(d);
                let addr = t.addr;
                s.spawn(move || r.send_to(addr))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut applied = 0;
    for r in &results {
        match r.status {
            200 => applied += 1,
            409 => {
                err(r, 409, "CONFLICT");
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert!(applied >= 1);
    // The project holds exactly one whole document, never a mix.
    let v = ok(
        &t.get(&format!("/api/projects/{pid}/agents?limit=200")),
        200,
    );
    let got = names(&v["agents"]);
    assert_eq!(got.len(), 40, "{got:?}");
    let prefix = got[0].split('-').next().unwrap().to_string();
    assert!(
        got.iter().all(|n| n.starts_with(&format!("{prefix}-"))),
        "{got:?}"
    );
    let p = ok(&t.get(&format!("/api/projects/{pid}")), 200);
    assert_eq!(
        p["project"]["description"],
        json!(format!("doc {}", &prefix[3..]))
    );
}
