//! Agent versions and deployments against the real binary: versions numbered and frozen
//! while the agent changes; deployments created (pinned and `auto`), listed with filters,
//! promoted, rolled back and retired, one active per environment; the `400`s, `404`s and
//! `409`s of each route; the `deployment:create` scope; deleting a deployed agent; both
//! kept across a restart.

mod common;

use common::*;
use halyard_testkit::Response;
use serde_json::{json, Value};

fn version(t: &Tenant, pid: &str, agent: &str, label: Option<&str>) -> Value {
    let path = format!("/api/projects/{pid}/agents/{agent}/versions");
    ok(&t.post(&path, &json!({"label": label})), 201)["version"].clone()
}

fn deploy(t: &Tenant, pid: &str, doc: &Value) -> Value {
    let path = format!("/api/projects/{pid}/deployments");
    ok(&t.post(&path, doc), 201)["deployment"].clone()
}

fn deployment(t: &Tenant, pid: &str, id: &str) -> Value {
    ok_json(&t.get(&format!("/api/projects/{pid}/deployments/{id}")))["deployment"].clone()
}

fn action(t: &Tenant, pid: &str, id: &str, what: &str, doc: &Value) -> Response {
    t.post(&format!("/api/projects/{pid}/deployments/{id}/{what}"), doc)
}

fn set_instructions(t: &Tenant, pid: &str, agent: &str, text: &str) {
    let path = format!("/api/projects/{pid}/agents/{agent}");
    let doc = json!({"name": agent, "instructions": text});
    ok_json(&t.send("PUT", &path, &doc));
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

fn statuses(t: &Tenant, pid: &str, query: &str) -> Vec<(String, String)> {
    let v = ok_json(&t.get(&format!("/api/projects/{pid}/deployments{query}")));
    v["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .map(|d| (id(d), d["status"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn versions_are_numbered_and_keep_the_agent_as_it_was() {
    let t = tenant();
    let pid = t.project_with_agent("helper");
    let v1 = version(&t, &pid, "helper", Some("first"));
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["label"], "first");
    assert_eq!(v1["agentName"], "helper");
    assert_eq!(v1["agent"]["instructions"], "You are helper.");
    let hash = v1["contentHash"].as_str().unwrap();
    assert!(hash.starts_with("sha256:") && hash.len() == 71, "{hash}");

    // The same content hashes alike; a change hashes differently and v1 stays as it was.
    let again = version(&t, &pid, "helper", None);
    assert_eq!(again["version"], 2);
    assert_eq!(again["contentHash"], v1["contentHash"]);
    set_instructions(&t, &pid, "helper", "Be brief.");
    let v3 = version(&t, &pid, "helper", None);
    assert_eq!(v3["version"], 3);
    assert_ne!(v3["contentHash"], v1["contentHash"]);
    let got = ok_json(&t.get(&format!("/api/projects/{pid}/agents/helper/versions/1")));
    assert_eq!(got["version"], v1);

    let list = ok_json(&t.get(&format!(
        "/api/projects/{pid}/agents/helper/versions?limit=2"
    )));
    let numbers: Vec<&Value> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["version"])
        .collect();
    assert_eq!(numbers, [&json!(3), &json!(2)], "newest first");
    assert_eq!(list["pagination"]["total"], 3);

    let base = format!("/api/projects/{pid}/agents");
    err(
        &t.get(&format!("{base}/helper/versions/4")),
        404,
        "NOT_FOUND",
    );
    err(
        &t.get(&format!("{base}/helper/versions/x")),
        404,
        "NOT_FOUND",
    );
    err(
        &t.post(&format!("{base}/nobody/versions"), &json!({})),
        404,
        "NOT_FOUND",
    );
    let long = "x".repeat(129);
    let path = format!("{base}/helper/versions");
    err(
        &t.post(&path, &json!({"label": long})),
        400,
        "VALIDATION_ERROR",
    );
}

#[test]
fn a_deployment_pins_versions_and_supersedes_the_one_before() {
    let t = tenant();
    let pid = t.project_with_agent("helper");
    t.agent(&pid, "second");
    version(&t, &pid, "helper", None);

    let d1 = deploy(
        &t,
        &pid,
        &json!({
            "environment": "production",
            "agentVersionManifest": {"helper": 1, "second": "auto"},
            "entryAgentName": "helper",
            "label": "launch",
            "modelOverrides": {"temperature": 0.2},
        }),
    );
    assert!(id(&d1).starts_with("dep_"), "{d1}");
    assert_eq!(d1["status"], "active");
    assert_eq!(d1["environment"], "production");
    assert_eq!(
        d1["agentVersionManifest"],
        json!({"helper": 1, "second": 1})
    );
    assert_eq!(d1["modelOverrides"], json!({"temperature": 0.2}));
    let slug = d1["endpointSlug"].as_str().unwrap();
    assert!(slug.ends_with("/production/helper"), "{slug}");
    assert!(d1["createdBy"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(d1["retiredAt"], Value::Null);
    // `auto` made version 1 of `second`; a second `auto` with nothing changed reuses it.
    let v = ok_json(&t.get(&format!("/api/projects/{pid}/agents/second/versions")));
    assert_eq!(v["pagination"]["total"], 1);

    let d2 = deploy(
        &t,
        &pid,
        &json!({
            "environment": "production",
            "agentVersionManifest": {"helper": "auto", "second": "auto"},
            "entryAgentName": "second",
        }),
    );
    assert_eq!(
        d2["agentVersionManifest"],
        json!({"helper": 1, "second": 1})
    );
    assert_eq!(deployment(&t, &pid, &id(&d1))["status"], "superseded");
    assert_eq!(
        statuses(&t, &pid, "?environment=production&status=active"),
        [(id(&d2), "active".to_string())]
    );
    assert_eq!(statuses(&t, &pid, "?environment=staging"), []);
    assert_eq!(statuses(&t, &pid, "").len(), 2);

    // The agent changes; the deployments keep what they pinned, `auto` takes the change.
    set_instructions(&t, &pid, "helper", "Changed.");
    let d3 = deploy(
        &t,
        &pid,
        &json!({"environment": "dev", "agentVersionManifest": {"helper": "auto"}, "entryAgentName": "helper"}),
    );
    assert_eq!(d3["agentVersionManifest"], json!({"helper": 2}));
    assert_eq!(
        deployment(&t, &pid, &id(&d2))["status"],
        "active",
        "other environment"
    );
}

#[test]
fn promote_rollback_and_retire() {
    let t = tenant();
    let pid = t.project_with_agent("helper");
    let manifest = json!({"helper": "auto"});
    let doc = |env: &str| json!({"environment": env, "agentVersionManifest": manifest, "entryAgentName": "helper"});
    let staging = deploy(&t, &pid, &doc("staging"));
    let prod1 = deploy(&t, &pid, &doc("production"));

    // Promote staging to production: a new deployment, active there; staging keeps its own.
    let promoted = ok(
        &action(
            &t,
            &pid,
            &id(&staging),
            "promote",
            &json!({"targetEnvironment": "production"}),
        ),
        201,
    )["deployment"]
        .clone();
    assert_ne!(id(&promoted), id(&staging));
    assert_eq!(promoted["environment"], "production");
    assert_eq!(promoted["status"], "active");
    assert_eq!(
        promoted["agentVersionManifest"],
        staging["agentVersionManifest"]
    );
    assert_eq!(deployment(&t, &pid, &id(&prod1))["status"], "superseded");
    assert_eq!(deployment(&t, &pid, &id(&staging))["status"], "active");

    // Roll back: prod1 serves again; the promoted one is never rolled back to.
    let back = ok_json(&action(&t, &pid, &id(&promoted), "rollback", &json!({})));
    assert_eq!(back["deployment"]["id"], prod1["id"]);
    assert_eq!(back["deployment"]["status"], "active");
    let rolled = deployment(&t, &pid, &id(&promoted));
    assert_eq!(rolled["status"], "superseded");
    assert!(rolled["rolledBackAt"].is_string(), "{rolled}");
    let again = action(&t, &pid, &id(&prod1), "rollback", &json!({}));
    err(&again, 409, "CONFLICT");
    err(
        &action(&t, &pid, &id(&promoted), "rollback", &json!({})),
        409,
        "CONFLICT",
    );

    // Retire: withdrawn, the environment has no active deployment, a retired one is not
    // promoted; retiring twice changes nothing.
    let retired = ok_json(&action(&t, &pid, &id(&prod1), "retire", &json!({})));
    assert_eq!(retired["deployment"]["status"], "retired");
    let at = retired["deployment"]["retiredAt"].clone();
    assert!(at.is_string(), "{retired}");
    assert_eq!(
        statuses(&t, &pid, "?environment=production&status=active"),
        []
    );
    let twice = ok_json(&action(&t, &pid, &id(&prod1), "retire", &json!({})));
    assert_eq!(twice["deployment"]["retiredAt"], at);
    let target = json!({"targetEnvironment": "dev"});
    err(
        &action(&t, &pid, &id(&prod1), "promote", &target),
        409,
        "CONFLICT",
    );
    let own = json!({"targetEnvironment": "staging"});
    err(
        &action(&t, &pid, &id(&staging), "promote", &own),
        400,
        "VALIDATION_ERROR",
    );
    err(
        &action(&t, &pid, "dep_nope", "retire", &json!({})),
        404,
        "NOT_FOUND",
    );
}

#[test]
fn bad_deployments_are_refused_with_the_field() {
    let t = tenant();
    let pid = t.project_with_agent("helper");
    let path = format!("/api/projects/{pid}/deployments");
    let bad = |doc: Value, field: &str| {
        let v = err(&t.post(&path, &doc), 400, "VALIDATION_ERROR");
        let details = v["error"]["details"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            details.iter().any(|d| d["field"] == field),
            "{field} not named in {v}"
        );
    };
    let entry = "helper";
    bad(
        json!({"agentVersionManifest": {"helper": 1}, "entryAgentName": entry}),
        "environment",
    );
    bad(
        json!({"environment": "qa", "agentVersionManifest": {"helper": "auto"}, "entryAgentName": entry}),
        "environment",
    );
    bad(
        json!({"environment": "dev", "entryAgentName": entry}),
        "agentVersionManifest",
    );
    for manifest in [
        json!([]),
        json!({}),
        json!({"helper": 0}),
        json!({"helper": "latest"}),
        json!({"Bad Name": 1}),
    ] {
        let doc = json!({"environment": "dev", "agentVersionManifest": manifest, "entryAgentName": entry});
        bad(doc, "agentVersionManifest");
    }
    // An entry agent outside the manifest; no such version, no such agent to snapshot (404).
    let doc = json!({"environment": "dev", "agentVersionManifest": {"helper": 7}, "entryAgentName": entry});
    err(&t.post(&path, &doc), 404, "NOT_FOUND");
    let doc = json!({"environment": "dev", "agentVersionManifest": {"ghost": "auto"}, "entryAgentName": "ghost"});
    err(&t.post(&path, &doc), 404, "NOT_FOUND");
    let doc = json!({"environment": "dev", "agentVersionManifest": {"helper": "auto"}, "entryAgentName": "other"});
    bad(doc, "entryAgentName");
    err(&t.get(&format!("{path}?status=gone")), 400, "BAD_REQUEST");
    err(&t.get(&format!("{path}/dep_nope")), 404, "NOT_FOUND");
    assert_eq!(statuses(&t, &pid, ""), [], "nothing was stored");
}

#[test]
fn deploying_needs_its_scope_and_a_deployed_agent_stays() {
    let t = tenant();
    let pid = t.project_with_agent("helper");
    let doc = json!({"environment": "production", "agentVersionManifest": {"helper": "auto"}, "entryAgentName": "helper"});
    let (reader, _) = t.api_key(&json!({"name": unique("ro"), "scopes": ["agent:read"]}));
    let path = format!("/api/projects/{pid}/deployments");
    let denied = req("POST", &path).api_key(&reader).json(&doc).send();
    err(&denied, 403, "FORBIDDEN");
    ok_json(&req("GET", &path).api_key(&reader).send());
    let (deployer, _) = t.api_key(&json!({"name": unique("dep"), "scopes": ["deployment:create"]}));
    let made = req("POST", &path).api_key(&deployer).json(&doc).send();
    let d = ok(&made, 201)["deployment"].clone();

    // An agent an active deployment pins is not deleted; once retired, it is.
    let agent_path = format!("/api/projects/{pid}/agents/helper");
    let v = err(&t.delete(&agent_path), 409, "CONFLICT");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&id(&d)),
        "{v}"
    );
    ok_json(&action(&t, &pid, &id(&d), "retire", &json!({})));
    ok_json(&t.delete(&agent_path));
    // Its versions outlive it.
    let v = ok_json(&t.get(&format!("{agent_path}/versions")));
    assert_eq!(v["pagination"]["total"], 1);
}

#[test]
fn versions_and_deployments_travel_in_export_and_import() {
    let t = tenant();
    let pid = t.project_with_agent("helper");
    version(&t, &pid, "helper", Some("one"));
    set_instructions(&t, &pid, "helper", "Two.");
    let manifest = json!({"helper": "auto"});
    let doc = |env: &str| json!({"environment": env, "agentVersionManifest": manifest, "entryAgentName": "helper"});
    let old = deploy(&t, &pid, &doc("production"));
    let live = deploy(&t, &pid, &doc("production"));
    let export = ok_json(&t.get(&format!("/api/projects/{pid}/project-io/export")));
    let versions = export["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{export}");
    assert_eq!(versions[0]["label"], "one");
    assert_eq!(versions[1]["agent"]["instructions"], "Two.");
    let deps = export["deployments"].as_array().expect("deployments");
    let ids: Vec<&Value> = deps.iter().map(|d| &d["id"]).collect();
    assert_eq!(ids, [&old["id"], &live["id"]], "oldest first");

    // Into a new project: the same history, the new project's slug.
    let slug = unique("copy");
    let copy = t.project_with(&json!({"name": slug}));
    let import = format!("/api/projects/{copy}/project-io/import");
    ok_json(&t.post(&import, &export));
    let got = ok_json(&t.get(&format!("/api/projects/{copy}/agents/helper/versions")));
    assert_eq!(got["pagination"]["total"], 2);
    assert_eq!(
        got["versions"][0]["contentHash"],
        versions[1]["contentHash"]
    );
    let copied = deployment(&t, &copy, &id(&live));
    assert_eq!(copied["status"], "active");
    assert_eq!(copied["agentVersionManifest"], json!({"helper": 2}));
    let copied_slug = copied["endpointSlug"].as_str().unwrap();
    assert!(copied_slug.ends_with("/production/helper") && copied_slug != live["endpointSlug"]);
    assert_eq!(deployment(&t, &copy, &id(&old))["status"], "superseded");

    // Again, and into the source: nothing new.
    ok_json(&t.post(&import, &export));
    ok_json(&t.post(&format!("/api/projects/{pid}/project-io/import"), &export));
    for p in [&pid, &copy] {
        let v = ok_json(&t.get(&format!("/api/projects/{p}/agents/helper/versions")));
        assert_eq!(v["pagination"]["total"], 2);
        assert_eq!(statuses(&t, p, "").len(), 2);
    }

    // A project whose version 1 holds other content refuses the document, whole.
    let other = t.project_with_agent("helper");
    set_instructions(&t, &other, "helper", "Different.");
    version(&t, &other, "helper", None);
    let r = t.post(&format!("/api/projects/{other}/project-io/import"), &export);
    err(&r, 409, "CONFLICT");
    assert_eq!(statuses(&t, &other, ""), [], "nothing was applied");
    // A record pinning a version the document does not bring is a 400 naming it.
    let mut broken = export.clone();
    broken["versions"] = json!([]);
    let fresh = t.project(&unique("fresh"));
    let r = t.post(&format!("/api/projects/{fresh}/project-io/import"), &broken);
    let v = err(&r, 400, "VALIDATION_ERROR");
    assert!(
        v.to_string()
            .contains("deployments[0].agentVersionManifest"),
        "{v}"
    );
}
