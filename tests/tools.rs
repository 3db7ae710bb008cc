//! Tool resources (`/api/projects/:pid/tools`) against the real binary: create, list, get,
//! replace, delete; the `400`s of a bad definition (schema, credentials, fields of the other
//! type); `409` for a taken name and for a tool in use; agents naming tools; tools in
//! project export and import.

mod common;

use common::*;
use serde_json::{json, Value};

fn weather(name: &str) -> Value {
    json!({
        "name": name,
        "description": "Weather by city",
        "toolType": "http",
        "url": "https://weather.example/v1/{city}",
        "query": {"units": "metric"},
        "headers": {"Accept": "application/json"},
        "auth": {"type": "bearer", "secret": "WEATHER_KEY"},
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"]
        }
    })
}

fn create_tool(t: &Tenant, pid: &str, doc: &Value) -> Value {
    ok(&t.post(&format!("/api/projects/{pid}/tools"), doc), 201)["tool"].clone()
}

fn field_errors(v: &Value) -> Vec<String> {
    v["error"]["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|e| format!("{}: {}", e["field"].as_str().unwrap_or(""), e["message"]))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn tools_are_created_listed_read_replaced_and_deleted() {
    let t = tenant();
    let pid = t.project(&unique("tools"));
    let tool = create_tool(&t, &pid, &weather("get_weather"));
    let id = tool["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("tool_"), "{tool}");
    assert_eq!(tool["toolType"], "http");
    assert_eq!(tool["method"], "GET", "the effective method is stored");
    assert_eq!(tool["timeoutMs"], 30_000);
    assert_eq!(tool["responseLimit"], 256 * 1024);
    assert_eq!(
        tool["auth"],
        json!({"type": "bearer", "secret": "WEATHER_KEY"})
    );
    assert_eq!(tool["parameters"]["required"], json!(["city"]));

    let mcp = json!({
        "name": "search", "toolType": "mcp",
        "serverUrl": "http://127.0.0.1:9/mcp", "toolName": "search"
    });
    let search = create_tool(&t, &pid, &mcp);
    assert_eq!(
        search["parameters"],
        json!({"type": "object", "properties": {}})
    );

    let list = ok(&t.get(&format!("/api/projects/{pid}/tools")), 200);
    assert_eq!(list["pagination"]["total"], 2, "{list}");
    let names: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    // Newest first; two made within the same millisecond are ordered by id (descending).
    let mut made = [&tool, &search];
    made.sort_by_key(|x| std::cmp::Reverse((x["createdAt"].to_string(), x["id"].to_string())));
    let newest_first: Vec<&str> = made.iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, newest_first, "newest first, ties by id");

    let got = ok(&t.get(&format!("/api/projects/{pid}/tools/{id}")), 200);
    assert_eq!(got["tool"], tool);

    let mut doc = weather("get_weather");
    doc["method"] = json!("POST");
    doc["body"] = json!({"city": "{city}"});
    doc["timeoutMs"] = json!(5_000);
    let put = ok(
        &t.send("PUT", &format!("/api/projects/{pid}/tools/{id}"), &doc),
        200,
    );
    assert_eq!(put["tool"]["id"], tool["id"]);
    assert_eq!(put["tool"]["createdAt"], tool["createdAt"]);
    assert_eq!(put["tool"]["method"], "POST");
    assert_eq!(put["tool"]["timeoutMs"], 5_000);

    ok(&t.delete(&format!("/api/projects/{pid}/tools/{id}")), 200);
    err(
        &t.get(&format!("/api/projects/{pid}/tools/{id}")),
        404,
        "NOT_FOUND",
    );
    err(
        &t.delete(&format!("/api/projects/{pid}/tools/{id}")),
        404,
        "NOT_FOUND",
    );
}

#[test]
fn a_taken_name_is_409() {
    let t = tenant();
    let pid = t.project(&unique("tools"));
    create_tool(&t, &pid, &weather("dup"));
    err(
        &t.post(&format!("/api/projects/{pid}/tools"), &weather("dup")),
        409,
        "CONFLICT",
    );
    // Another project may use the name.
    let other = t.project(&unique("tools"));
    create_tool(&t, &other, &weather("dup"));
}

#[test]
fn bad_definitions_are_400_with_each_problem_named() {
    let t = tenant();
    let pid = t.project(&unique("tools"));
    let path = format!("/api/projects/{pid}/tools");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "Bad Name", "toolType": "http", "url": "https://a.example"}),
            "name",
        ),
        (json!({"name": "x", "toolType": "ftp"}), "toolType"),
        (json!({"name": "x", "toolType": "http"}), "url"),
        (
            json!({"name": "x", "toolType": "mcp", "serverUrl": "http://a.example"}),
            "toolName",
        ),
        (
            json!({"name": "x", "toolType": "http", "url": "https://user:pw@a.example/"}),
            "url",
        ),
        (
            json!({"name": "x", "toolType": "http", "url": "https://a.example",
                   "headers": {"Authorization": "Bearer sk-live"}}),
            "headers",
        ),
        (
            json!({"name": "x", "toolType": "http", "url": "https://a.example",
                   "headers": {"X-Count": 3}}),
            "headers",
        ),
        (
            json!({"name": "x", "toolType": "http", "url": "https://a.example",
                   "parameters": {"type": "string"}}),
            "parameters",
        ),
        (
            json!({"name": "x", "toolType": "http", "url": "https://a.example",
                   "parameters": {"type": "object", "properties": {"a": {"$ref": "#/x"}}}}),
            "parameters",
        ),
        (
            json!({"name": "x", "toolType": "mcp", "serverUrl": "http://a.example",
                   "toolName": "t", "url": "https://a.example"}),
            "url",
        ),
        (
            json!({"name": "x", "toolType": "http", "url": "https://a.example",
                   "auth": {"type": "bearer", "secret": "lower"}}),
            "auth.secret",
        ),
        (
            json!({"name": "x", "toolType": "http", "url": "https://a.example",
                   "timeoutMs": 10}),
            "timeoutMs",
        ),
    ];
    for (doc, field) in cases {
        let v = err(&t.post(&path, &doc), 400, "VALIDATION_ERROR");
        let errors = field_errors(&v);
        assert!(
            errors.iter().any(|e| e.starts_with(&format!("{field}:"))),
            "{doc}: no error on {field}: {errors:?}"
        );
    }
    let listed = ok(&t.get(&path), 200);
    assert_eq!(listed["pagination"]["total"], 0, "nothing was stored");
}

#[test]
fn agents_name_tools_and_deleting_a_tool_in_use_is_409_unless_forced() {
    let t = tenant();
    let pid = t.project(&unique("tools"));
    let tool = create_tool(&t, &pid, &weather("get_weather"));
    let id = tool["id"].as_str().unwrap();
    let agents = format!("/api/projects/{pid}/agents");

    let v = err(
        &t.post(&agents, &json!({"name": "a1", "tools": ["nope"]})),
        400,
        "VALIDATION_ERROR",
    );
    assert!(field_errors(&v)[0].contains("nope"), "{v}");
    err(
        &t.post(&agents, &json!({"name": "a1", "maxToolIterations": 0})),
        400,
        "VALIDATION_ERROR",
    );
    let a = ok(
        &t.post(
            &agents,
            &json!({"name": "a1", "tools": ["get_weather"], "maxToolIterations": 3}),
        ),
        201,
    );
    assert_eq!(a["agent"]["tools"], json!(["get_weather"]));
    assert_eq!(a["agent"]["maxToolIterations"], 3);
    let plain = ok(&t.post(&agents, &json!({"name": "a2"})), 201);
    assert_eq!(plain["agent"]["tools"], json!([]));
    assert_eq!(plain["agent"]["maxToolIterations"], 8);

    // Renaming the tool carries the new name into the agent.
    let tool_path = format!("/api/projects/{pid}/tools/{id}");
    ok(&t.send("PUT", &tool_path, &weather("weather_now")), 200);
    let a1 = ok(&t.get(&format!("{agents}/a1")), 200);
    assert_eq!(a1["agent"]["tools"], json!(["weather_now"]));

    let v = err(&t.delete(&tool_path), 409, "CONFLICT");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("a1"),
        "the agents are named: {v}"
    );
    ok(&t.delete(&format!("{tool_path}?force=true")), 200);
    let a1 = ok(&t.get(&format!("{agents}/a1")), 200);
    assert_eq!(a1["agent"]["tools"], json!([]), "detached");
}

#[test]
fn tools_travel_in_export_and_import() {
    let t = tenant();
    let pid = t.project(&unique("tools"));
    create_tool(&t, &pid, &weather("get_weather"));
    ok(
        &t.post(
            &format!("/api/projects/{pid}/agents"),
            &json!({"name": "planner", "tools": ["get_weather"], "maxToolIterations": 2}),
        ),
        201,
    );
    let doc = ok(
        &t.get(&format!("/api/projects/{pid}/project-io/export")),
        200,
    );
    assert_eq!(doc["tools"][0]["name"], "get_weather", "{doc}");
    assert!(doc["tools"][0].get("id").is_none(), "ids stay home: {doc}");
    assert_eq!(doc["agents"][0]["tools"], json!(["get_weather"]));

    let other = t.project(&unique("tools"));
    let import = format!("/api/projects/{other}/project-io/import");
    let body = json!({"manifest": doc["manifest"], "agents": doc["agents"], "tools": doc["tools"]});
    ok(&t.post(&import, &body), 200);
    let tools = ok(&t.get(&format!("/api/projects/{other}/tools")), 200);
    assert_eq!(
        tools["tools"][0]["url"],
        "https://weather.example/v1/{city}"
    );
    assert_eq!(tools["tools"][0]["auth"]["secret"], "WEATHER_KEY");
    let agent = ok(
        &t.get(&format!("/api/projects/{other}/agents/planner")),
        200,
    );
    assert_eq!(agent["agent"]["tools"], json!(["get_weather"]));
    assert_eq!(agent["agent"]["maxToolIterations"], 2);

    // An agent naming a tool neither the project nor the document has is refused whole.
    let third = t.project(&unique("tools"));
    let body = json!({"agents": doc["agents"]});
    let v = err(
        &t.post(&format!("/api/projects/{third}/project-io/import"), &body),
        400,
        "VALIDATION_ERROR",
    );
    assert!(field_errors(&v)[0].starts_with("agents[0].tools"), "{v}");
    let agents = ok(&t.get(&format!("/api/projects/{third}/agents")), 200);
    assert_eq!(agents["pagination"]["total"], 0);
}
