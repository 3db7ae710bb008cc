//! MCP tools against a real Model Context Protocol server: `tests/mcp/server.py`, built on
//! the `mcp` package from PyPI (FastMCP over streamable HTTP, which `scripts/test` installs),
//! started on a loopback port and stopped by its PID. Its tools are imported into a project,
//! called by an echo agent's turn and by the tool test route, and a failing tool's error
//! goes back to the model.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::sse::{open_stream, read_events};
use common::{addr, err, loopback_tools_server, ok, tenant_on, unique, Tenant};
use serde_json::{json, Value};

/// The MCP server, killed (by its PID) when the test process is done with it.
struct McpServer {
    child: Child,
    addr: SocketAddr,
}

impl McpServer {
    fn start() -> McpServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/server.py");
        let child = Command::new("python3")
            .args([script, &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs tests/mcp/server.py (scripts/test installs the mcp package)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the MCP server did not start in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        McpServer { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn import(t: &Tenant, pid: &str, url: &str) -> Value {
    ok(
        &t.post(
            &format!("/api/projects/{pid}/tools/import-mcp"),
            &json!({"serverUrl": url, "timeoutMs": 10_000}),
        ),
        201,
    )
}

#[test]
fn an_mcp_servers_tools_are_imported_and_called_by_turns_and_tests() {
    let mcp = McpServer::start();
    let t = tenant_on(loopback_tools_server().addr, false);
    let pid = t.project_with(&json!({"name": unique("mcp"), "entryAgentName": "planner"}));

    let v = import(&t, &pid, &mcp.url());
    let mut names: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["add", "fail", "shout"], "{v}");
    let add = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "add")
        .unwrap()
        .clone();
    assert_eq!(add["toolType"], "mcp");
    assert_eq!(add["toolName"], "add");
    assert_eq!(add["serverUrl"], mcp.url());
    assert_eq!(add["parameters"]["required"], json!(["a", "b"]));
    assert_eq!(add["description"], "Add two integers.");
    // Importing again replaces the same tools, it does not duplicate them.
    let again = import(&t, &pid, &mcp.url());
    let same = again["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "add");
    assert_eq!(same.unwrap()["id"], add["id"]);
    let listed = ok(&t.get(&format!("/api/projects/{pid}/tools")), 200);
    assert_eq!(listed["pagination"]["total"], 3);

    // The tool test route.
    let id = add["id"].as_str().unwrap();
    let d = ok(
        &t.post(
            &format!("/api/projects/{pid}/tools/{id}/test"),
            &json!({"input": {"a": 20, "b": 22}}),
        ),
        200,
    )["data"]
        .clone();
    assert_eq!(d["output"], "42", "{d}");

    // A turn: the echo agent asks for the calls, the model answers from the results.
    ok(
        &t.post(
            &format!("/api/projects/{pid}/agents"),
            &json!({"name": "planner", "tools": ["add", "shout", "fail"]}),
        ),
        201,
    );
    let body = json!({"projectId": pid,
        "message": "call add {\"a\": 2, \"b\": 3}\ncall shout {\"text\": \"hi\"}\ncall fail {\"reason\": \"nope\"}"});
    let (mut c, head) = open_stream(&t, "/api/v1/chat/agent/stream", &body);
    assert_eq!(head.status, 200);
    let (events, _) = read_events(&mut c, |_| false);
    let results: Vec<&Value> = events
        .iter()
        .filter(|e| e.name == "tool_result")
        .map(|e| &e.data)
        .collect();
    assert_eq!(results.len(), 3, "{events:?}");
    assert_eq!(results[0]["result"], "5");
    assert_eq!(results[1]["result"], "HI");
    assert!(
        results[2]["error"].as_str().unwrap().contains("nope"),
        "{}",
        results[2]
    );
    let done = events.last().unwrap();
    assert_eq!(done.name, "done");

    // An openai agent: the (fake) model streams the call, the MCP server answers it.
    let up = halyard_testkit::FakeUpstream::start();
    t.secret(&pid, "UPSTREAM_KEY", "sk-up");
    ok(
        &t.post(
            &format!("/api/projects/{pid}/agents"),
            &json!({"name": "gpt", "tools": ["add"], "model": {"provider": "openai",
                    "model": r#"fake:call=add;args={"a": 40, "b": 2}"#,
                    "baseUrl": up.base_url(), "apiKeySecret": "UPSTREAM_KEY"}}),
        ),
        201,
    );
    let session = ok(
        &t.post(
            &format!("/api/projects/{pid}/sessions"),
            &json!({"agentName": "gpt"}),
        ),
        201,
    );
    let sid = session["session"]["id"].as_str().unwrap();
    let v = ok(
        &t.post(
            "/api/v1/chat/agent",
            &json!({"projectId": pid, "sessionId": sid, "message": "add them"}),
        ),
        200,
    );
    assert_eq!(v["response"], "42", "the model echoed the MCP result: {v}");
}

#[test]
fn an_unreachable_mcp_server_is_503_and_a_bad_url_400() {
    let t = tenant_on(loopback_tools_server().addr, false);
    let pid = t.project(&unique("mcp"));
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let v = err(
        &t.post(
            &format!("/api/projects/{pid}/tools/import-mcp"),
            &json!({"serverUrl": format!("http://{free}/mcp"), "timeoutMs": 2_000}),
        ),
        503,
        "SERVICE_UNAVAILABLE",
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{v}"
    );
    // Without a time limit of its own (the default applies).
    err(
        &t.post(
            &format!("/api/projects/{pid}/tools/import-mcp"),
            &json!({"serverUrl": format!("http://{free}/mcp")}),
        ),
        503,
        "SERVICE_UNAVAILABLE",
    );
    err(
        &t.post(
            &format!("/api/projects/{pid}/tools/import-mcp"),
            &json!({"serverUrl": "ftp://x"}),
        ),
        400,
        "VALIDATION_ERROR",
    );
    // On a server whose tools may not reach loopback, the address is refused before any
    // connection: the request's fault (400), not an unavailable server (503).
    let strict = tenant_on(addr(), false);
    let pid = strict.project(&unique("mcp"));
    let v = err(
        &strict.post(
            &format!("/api/projects/{pid}/tools/import-mcp"),
            &json!({"serverUrl": format!("http://{free}/mcp")}),
        ),
        400,
        "BAD_REQUEST",
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("not a public address"), "{v}");
}
