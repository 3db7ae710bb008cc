//! A Model Context Protocol client over streamable HTTP, sans I/O: one session per use
//! (`initialize`, `notifications/initialized`, then one `tools/call` or `tools/list`).
//!
//! Responsible for: the JSON-RPC requests of each step with the session id and protocol
//! version the server gave, reading a step's answer whether the server sends JSON or an
//! event stream (the answer is the message with the step's id; the stream may stay open
//! after it), JSON-RPC errors, and what a tool call's `content` means for a model (its text
//! parts; `isError` makes it an error). Not responsible for: sockets (the caller fetches
//! [`McpSession::fetch`] and feeds the response) or the addresses it may reach.

use halyard_engine::client::sse::SseReader;
use halyard_engine::client::{Fetch, FetchTimeouts, Reach, ResponseHead, Url};
use serde_json::{json, Value};

/// The protocol version asked for.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// The largest answer read.
pub const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// What the session is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Call a tool with arguments.
    Call {
        /// The server's tool name.
        name: String,
        /// The arguments object.
        arguments: Value,
    },
    /// List the server's tools.
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Initialize,
    Initialized,
    Work,
}

/// One session's progress.
#[derive(Debug)]
pub struct McpSession {
    url: Url,
    headers: Vec<(String, String)>,
    work: Work,
    step: Step,
    session: Option<String>,
    reader: Reader,
}

#[derive(Debug)]
enum Reader {
    Json(Vec<u8>),
    Events(SseReader),
}

impl McpSession {
    /// A session with the server at `url` (auth headers in `headers`).
    pub fn new(url: Url, headers: Vec<(String, String)>, work: Work) -> McpSession {
        McpSession {
            url,
            headers,
            work,
            step: Step::Initialize,
            session: None,
            reader: Reader::Json(Vec::new()),
        }
    }

    fn id(&self) -> Option<u64> {
        match self.step {
            Step::Initialize => Some(1),
            Step::Initialized => None,
            Step::Work => Some(2),
        }
    }

    /// The request of the current step.
    pub fn fetch(&self, timeouts: FetchTimeouts, reach: Reach) -> Fetch {
        let body = match (&self.step, &self.work) {
            (Step::Initialize, _) => json!({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "halyard", "version": env!("CARGO_PKG_VERSION")},
                },
            }),
            (Step::Initialized, _) => {
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
            }
            (Step::Work, Work::Call { name, arguments }) => json!({
                "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": name, "arguments": arguments},
            }),
            (Step::Work, Work::List) => json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        };
        let mut headers = self.headers.clone();
        headers.push(("Content-Type".into(), "application/json".into()));
        headers.push((
            "Accept".into(),
            "application/json, text/event-stream".into(),
        ));
        if let Some(s) = &self.session {
            headers.push(("Mcp-Session-Id".into(), s.clone()));
            headers.push(("MCP-Protocol-Version".into(), PROTOCOL_VERSION.into()));
        }
        Fetch {
            method: "POST".into(),
            url: self.url.clone(),
            headers,
            body: body.to_string().into_bytes(),
            timeouts,
            max_body: MAX_ANSWER as u64,
            reach,
        }
    }

    /// The answer's head: its status, the session id, JSON or events.
    pub fn on_head(&mut self, head: &ResponseHead) -> Result<(), String> {
        if !(200..300).contains(&head.status) {
            return Err(format!("the MCP server answered HTTP {}", head.status));
        }
        if let Some(s) = head.header("mcp-session-id") {
            self.session = Some(String::from_utf8_lossy(s).into_owned());
        }
        let events = head
            .header("content-type")
            .is_some_and(|v| v.starts_with(b"text/event-stream"));
        self.reader = if events {
            Reader::Events(SseReader::new(MAX_ANSWER, MAX_ANSWER))
        } else {
            Reader::Json(Vec::new())
        };
        Ok(())
    }

    /// Body bytes; the step's result once it has come (the caller may close the stream).
    pub fn on_body(&mut self, bytes: &[u8]) -> Result<Option<Value>, String> {
        let want = self.id();
        match &mut self.reader {
            Reader::Json(buf) => {
                if buf.len() + bytes.len() > MAX_ANSWER {
                    return Err("the MCP server's answer is too large".into());
                }
                buf.extend_from_slice(bytes);
                Ok(None)
            }
            Reader::Events(sse) => {
                sse.feed(bytes)
                    .map_err(|e| format!("the MCP server's event stream is malformed: {e}"))?;
                while let Some(event) = sse.next_event() {
                    if let Some(found) = answer(event.data.as_bytes(), want)? {
                        return Ok(Some(found));
                    }
                }
                Ok(None)
            }
        }
    }

    /// The body ended: the step's result (`null` for the notification).
    pub fn on_end(&mut self) -> Result<Value, String> {
        if self.step == Step::Initialized {
            return Ok(Value::Null);
        }
        match &self.reader {
            Reader::Json(buf) => answer(buf, self.id())?
                .ok_or_else(|| "the MCP server's answer has no result".into()),
            Reader::Events(_) => Err("the MCP server ended its stream without an answer".into()),
        }
    }

    /// Moves on after a step's result; true while a step is left, false once the result
    /// is the work's.
    pub fn advance(&mut self) -> bool {
        self.step = match self.step {
            Step::Initialize => Step::Initialized,
            Step::Initialized => Step::Work,
            Step::Work => return false,
        };
        true
    }
}

/// The result of the JSON-RPC message in `data` answering `id`, if it is that message.
fn answer(data: &[u8], id: Option<u64>) -> Result<Option<Value>, String> {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return Err("the MCP server sent invalid JSON".into());
    };
    if v["id"].as_u64() != id {
        return Ok(None);
    }
    if let Some(e) = v.get("error") {
        let msg = e["message"].as_str().unwrap_or("error");
        return Err(format!("the MCP server refused: {msg}"));
    }
    Ok(Some(v.get("result").cloned().unwrap_or(Value::Null)))
}

/// A `tools/call` result as the model reads it: the text parts joined (other parts as
/// JSON); an `isError` result is an error with that text.
pub fn call_outcome(result: &Value) -> Result<String, String> {
    let parts: Vec<String> = result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match p["text"].as_str() {
            Some(t) if p["type"] == "text" => t.to_string(),
            _ => p.to_string(),
        })
        .collect();
    let text = parts.join("\n");
    if result["isError"] == true {
        Err(text)
    } else {
        Ok(text)
    }
}

/// An MCP tool's settings as stored (`Tool::config`), read back.
#[derive(Debug, Clone)]
pub struct McpTool {
    /// The server's endpoint.
    pub server_url: Url,
    /// The tool's name on the server.
    pub tool_name: String,
    /// How the credential is sent, if any.
    pub auth: Option<super::http_tool::Auth>,
    /// The most result bytes kept.
    pub response_limit: u64,
    /// Each request of the session's time limit.
    pub timeout: std::time::Duration,
}

impl McpTool {
    /// The settings of a stored config (JSON text written by the tool routes).
    pub fn from_config(config: &str) -> Result<McpTool, String> {
        let v: Value =
            serde_json::from_str(config).map_err(|_| "the tool's settings are damaged")?;
        let url = v["serverUrl"].as_str().ok_or("the tool has no serverUrl")?;
        Ok(McpTool {
            server_url: Url::parse(url).map_err(|e| format!("the tool's serverUrl: {e}"))?,
            tool_name: v["toolName"]
                .as_str()
                .ok_or("the tool has no toolName")?
                .into(),
            auth: super::http_tool::Auth::from_config(&v),
            response_limit: v["responseLimit"]
                .as_u64()
                .unwrap_or(super::http_tool::DEFAULT_RESPONSE_LIMIT),
            timeout: std::time::Duration::from_millis(
                v["timeoutMs"]
                    .as_u64()
                    .unwrap_or(super::http_tool::DEFAULT_TIMEOUT_MS),
            ),
        })
    }
}

/// One tool of a `tools/list` result.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Its name on the server.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// Its `inputSchema`.
    pub input_schema: Value,
}

/// The tools of a `tools/list` result.
pub fn listed(result: &Value) -> Vec<Listed> {
    result["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(Listed {
                name: t["name"].as_str()?.to_string(),
                description: t["description"].as_str().map(String::from),
                input_schema: t
                    .get("inputSchema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"})),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            http10: false,
        }
    }

    #[test]
    fn a_call_goes_through_initialize_initialized_and_the_call() {
        let url = Url::parse("http://127.0.0.1:9/mcp").unwrap();
        let work = Work::Call {
            name: "add".into(),
            arguments: json!({"a": 2, "b": 3}),
        };
        let mut s = McpSession::new(url, vec![], work);
        let f = s.fetch(FetchTimeouts::default(), Reach::Any);
        let body: Value = serde_json::from_slice(&f.body).unwrap();
        assert_eq!(body["method"], "initialize");
        assert!(!f.headers.iter().any(|(k, _)| k == "Mcp-Session-Id"));
        s.on_head(&head(
            200,
            &[
                ("content-type", "text/event-stream"),
                ("mcp-session-id", "abc"),
            ],
        ))
        .unwrap();
        let init = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-06-18\"}}\n\n";
        // Fed in two pieces: the answer is found once whole.
        assert_eq!(s.on_body(&init.as_bytes()[..20]).unwrap(), None);
        assert!(s.on_body(&init.as_bytes()[20..]).unwrap().is_some());
        assert!(s.advance());
        let f = s.fetch(FetchTimeouts::default(), Reach::Any);
        assert!(f.headers.contains(&("Mcp-Session-Id".into(), "abc".into())));
        s.on_head(&head(202, &[])).unwrap();
        assert_eq!(s.on_end().unwrap(), Value::Null);
        assert!(s.advance());
        let f = s.fetch(FetchTimeouts::default(), Reach::Any);
        let body: Value = serde_json::from_slice(&f.body).unwrap();
        assert_eq!(body["params"]["arguments"]["b"], 3);
        s.on_head(&head(200, &[("content-type", "application/json")]))
            .unwrap();
        s.on_body(br#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"5"}]}}"#)
            .unwrap();
        let result = s.on_end().unwrap();
        assert_eq!(call_outcome(&result), Ok("5".into()));
        assert!(!s.advance());
    }

    #[test]
    fn errors_are_told() {
        let url = Url::parse("http://127.0.0.1:9/mcp").unwrap();
        let mut s = McpSession::new(url, vec![], Work::List);
        assert!(s.on_head(&head(404, &[])).unwrap_err().contains("404"));
        s.on_head(&head(200, &[])).unwrap();
        s.on_body(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"bad"}}"#)
            .unwrap();
        assert_eq!(s.on_end().unwrap_err(), "the MCP server refused: bad");
        let failed = json!({"content": [{"type": "text", "text": "nope"}], "isError": true});
        assert_eq!(call_outcome(&failed), Err("nope".into()));
        let tools = listed(
            &json!({"tools": [{"name": "add", "inputSchema": {"type": "object"}}, {"x": 1}]}),
        );
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0].name, "add");
    }
}
