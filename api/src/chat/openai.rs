//! The `openai` provider: any OpenAI-compatible `POST {baseUrl}/chat/completions` server
//! (OpenAI, vLLM, Ollama, llama.cpp) with `stream: true`, sans I/O.
//!
//! Responsible for: the request ([`request`]), the meaning of the response head (a non-2xx
//! status becomes a [`ProviderError`] that keeps the upstream's message and, on a `429`, its
//! `Retry-After`), and reading the streamed body ([`Relay`]): SSE `data:` lines until
//! `[DONE]` (each chunk's JSON read by [`super::openai_chunk`]), deltas, tool calls (assembled from their streamed fragments), the finish
//! reason and usage when the upstream reports it. Not
//! responsible for: sockets, timeouts or retries (the turn drives the engine's client), or
//! the API key (the runtime opens the project secret).

use halyard_engine::client::sse::SseReader;
use halyard_engine::client::{Fetch, FetchTimeouts, ResponseHead, Url};
use halyard_storage::Usage;

use serde_json::{json, Value};

use super::openai_chunk::{self, CallPart};
use super::provider::{words, Completion, Line, Prompt, ProviderError, Speaker, ToolCall};

/// Base URL used when an `openai` agent names none.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Longest SSE line accepted from an upstream (a chunk of one delta is far smaller).
pub const MAX_LINE: usize = 256 * 1024;
/// Largest error body read from an upstream (its message is quoted from it).
pub const MAX_ERROR_BODY: usize = 16 * 1024;
/// Most tool calls one model answer may ask for.
pub const MAX_TOOL_CALLS: usize = 32;

/// The request of a streamed chat completion.
pub fn request(
    base_url: &str,
    api_key: &str,
    prompt: &Prompt,
    timeouts: FetchTimeouts,
) -> Result<Fetch, ProviderError> {
    let url = Url::parse(base_url)
        .map_err(|e| ProviderError::NotConfigured(format!("baseUrl {base_url}: {e}")))?
        .join("chat/completions");
    let messages: Vec<Value> = prompt.messages.iter().map(message).collect();
    let mut body = json!({
        "model": prompt.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !prompt.tools.is_empty() {
        let tools: Vec<Value> = prompt
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name,
                    "description": t.description.as_deref().unwrap_or(""),
                    "parameters": t.parameters,
                }})
            })
            .collect();
        body["tools"] = Value::Array(tools);
        body["tool_choice"] = "auto".into();
    }
    if let Some(t) = prompt.temperature {
        body["temperature"] = t.into();
    }
    if let Some(m) = prompt.max_tokens {
        body["max_tokens"] = m.into();
    }
    Ok(Fetch {
        method: "POST".into(),
        url,
        headers: vec![
            ("Authorization".into(), format!("Bearer {api_key}")),
            ("Content-Type".into(), "application/json".into()),
            ("Accept".into(), "text/event-stream".into()),
        ],
        body: body.to_string().into_bytes(),
        timeouts,
        max_body: u64::MAX,
        reach: Default::default(),
    })
}

/// One line as an OpenAI chat message: an assistant's `tool_calls`, a tool's
/// `tool_call_id`.
fn message(line: &Line) -> Value {
    let mut m = json!({"role": line.speaker.name(), "content": line.text});
    if line.speaker == Speaker::Assistant && !line.tool_calls.is_empty() {
        m["tool_calls"] = tool_calls_json(&line.tool_calls);
    }
    if let Some(id) = &line.tool_call_id {
        m["tool_call_id"] = id.as_str().into();
    }
    m
}

/// Calls in OpenAI's shape: `[{id, type: "function", function: {name, arguments}}]`.
pub fn tool_calls_json(calls: &[ToolCall]) -> Value {
    calls
        .iter()
        .map(|c| {
            json!({"id": c.id, "type": "function",
                   "function": {"name": c.name, "arguments": c.arguments}})
        })
        .collect()
}

/// Calls read back from [`tool_calls_json`]'s shape (what a stored message keeps).
pub fn tool_calls_from_json(v: &Value) -> Vec<ToolCall> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|c| ToolCall {
            id: c["id"].as_str().unwrap_or_default().into(),
            name: c["function"]["name"].as_str().unwrap_or_default().into(),
            arguments: c["function"]["arguments"]
                .as_str()
                .unwrap_or_default()
                .into(),
        })
        .collect()
}

/// The error an upstream's non-2xx answer means, from its head and (up to
/// [`MAX_ERROR_BODY`] of) its body.
pub fn status_error(head: &ResponseHead, body: &[u8]) -> ProviderError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(String::from))
        .unwrap_or_default();
    let retry_after = head
        .header("retry-after")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    ProviderError::Status {
        status: head.status,
        retry_after,
        message,
    }
}

/// Reads a streamed completion from the body bytes as they come.
#[derive(Debug)]
pub struct Relay {
    sse: SseReader,
    text: String,
    usage: Option<Usage>,
    finish: String,
    input_words: u64,
    done: bool,
    /// Tool calls by their index in the stream, assembled from fragments.
    calls: Vec<ToolCall>,
}

impl Relay {
    /// A relay for the answer to `prompt` (whose words are the input count when the
    /// upstream reports no usage).
    pub fn new(prompt: &Prompt) -> Relay {
        Relay {
            sse: SseReader::new(MAX_LINE, MAX_LINE),
            text: String::new(),
            usage: None,
            finish: "stop".into(),
            input_words: prompt.words(),
            done: false,
            calls: Vec::new(),
        }
    }

    /// Feeds body bytes; each new delta goes to `on_delta`.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<(), ProviderError> {
        self.sse
            .feed(bytes)
            .map_err(|e| ProviderError::Upstream(format!("upstream stream is malformed: {e}")))?;
        while let Some(event) = self.sse.next_event() {
            if self.done {
                continue;
            }
            self.on_data(event.data.trim(), on_delta)?;
            self.sse.recycle(event);
        }
        Ok(())
    }

    fn on_data(&mut self, data: &str, on_delta: &mut dyn FnMut(&str)) -> Result<(), ProviderError> {
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        // A typed, borrowing parse (a `Value` tree per chunk was 7% of a relayed token's
        // CPU), of the usual shape without serde (see `openai_chunk`).
        let chunk = openai_chunk::parse(data)
            .map_err(|_| ProviderError::Upstream("upstream sent invalid JSON".into()))?;
        if let Some(err) = chunk.error {
            let msg = err.message.as_deref().unwrap_or("error");
            return Err(ProviderError::Upstream(format!("upstream error: {msg}")));
        }
        if let Some(u) = chunk.usage {
            let (input, output) = (
                u.prompt_tokens.unwrap_or(0),
                u.completion_tokens.unwrap_or(0),
            );
            self.usage = Some(Usage {
                input_tokens: input,
                output_tokens: output,
                total_tokens: u.total_tokens.unwrap_or(input + output),
                latency_ms: 0,
            });
        }
        let Some(choice) = chunk.choices.0 else {
            return Ok(());
        };
        if let Some(r) = choice.finish_reason {
            self.finish = r.into_owned();
        }
        let Some(delta) = choice.delta else {
            return Ok(());
        };
        for part in delta.tool_calls.into_iter().flatten() {
            self.add_call_part(part)?;
        }
        if let Some(content) = delta.content.filter(|d| !d.is_empty()) {
            self.text.push_str(&content);
            on_delta(&content);
        }
        Ok(())
    }

    /// Adds a streamed fragment of a tool call: the first names it, the rest extend its
    /// arguments.
    fn add_call_part(&mut self, part: CallPart<'_>) -> Result<(), ProviderError> {
        let index = part
            .index
            .unwrap_or(self.calls.len().saturating_sub(1) as u64) as usize;
        if index > self.calls.len() || index >= MAX_TOOL_CALLS {
            return Err(ProviderError::Upstream(
                "upstream sent tool calls out of order or too many".into(),
            ));
        }
        if index == self.calls.len() {
            self.calls.push(ToolCall {
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
        }
        let call = &mut self.calls[index];
        if let Some(id) = part.id {
            call.id.push_str(&id);
        }
        if let Some(f) = part.function {
            if let Some(name) = f.name {
                call.name.push_str(&name);
            }
            if let Some(args) = f.arguments {
                call.arguments.push_str(&args);
            }
        }
        Ok(())
    }

    /// The tool calls so far (their arguments may still grow).
    pub fn calls(&self) -> &[ToolCall] {
        &self.calls
    }

    /// Whether a delta or a tool call was relayed (after it, a failure is never retried).
    pub fn started(&self) -> bool {
        !self.text.is_empty() || !self.calls.is_empty()
    }

    /// The completion so far (all of it once the body ended), with `finish` as its reason
    /// when given (`cancelled`, ...).
    pub fn completion(&self, finish: Option<&str>) -> Completion {
        let usage = self.usage.unwrap_or_else(|| {
            let output = words(&self.text);
            Usage {
                input_tokens: self.input_words,
                output_tokens: output,
                total_tokens: self.input_words + output,
                latency_ms: 0,
            }
        });
        let tool_calls = (self.calls.iter().enumerate())
            .map(|(i, c)| ToolCall {
                id: super::call_events::call_id(i, c),
                ..c.clone()
            })
            .collect();
        Completion {
            text: self.text.clone(),
            usage,
            finish_reason: finish.unwrap_or(&self.finish).to_string(),
            tool_calls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt() -> Prompt {
        Prompt {
            messages: vec![Line::say(Speaker::User, "one two three")],
            model: "m".into(),
            temperature: None,
            max_tokens: None,
            tools: Vec::new(),
        }
    }

    fn relay(body: &str) -> (Result<Completion, ProviderError>, Vec<String>) {
        let mut r = Relay::new(&prompt());
        let mut seen = Vec::new();
        // Fed a byte at a time: the reader is incremental.
        for b in body.as_bytes().chunks(1) {
            if let Err(e) = r.feed(b, &mut |d| seen.push(d.to_string())) {
                return (Err(e), seen);
            }
        }
        (Ok(r.completion(None)), seen)
    }

    #[test]
    fn reads_deltas_usage_and_done() {
        let body = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                    : keep-alive\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
                    data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n\
                    data: [DONE]\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\"after done\"}}]}\n\n";
        let (c, seen) = relay(body);
        let c = c.unwrap();
        assert_eq!(seen, ["Hel", "lo"]);
        assert_eq!(c.text, "Hello");
        assert_eq!(c.usage.total_tokens, 9);
        assert_eq!(c.finish_reason, "stop");
    }

    #[test]
    fn error_chunks_bad_json_and_long_lines_fail() {
        let (e, _) = relay("data: {\"error\":{\"message\":\"quota\"}}\n\n");
        assert!(matches!(e, Err(ProviderError::Upstream(m)) if m.contains("quota")));
        assert!(relay("data: {nope\n\n").0.is_err());
        let long = format!("data: {}\n\n", "x".repeat(MAX_LINE + 1));
        assert!(
            matches!(relay(&long).0, Err(ProviderError::Upstream(m)) if m.contains("malformed"))
        );
    }

    #[test]
    fn tool_calls_are_assembled_from_their_fragments() {
        let body = "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"clock\",\"arguments\":\"{}\"}}]}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Oslo\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n\
                    data: [DONE]\n\n";
        let (c, seen) = relay(body);
        let c = c.unwrap();
        assert!(seen.is_empty());
        assert_eq!(c.finish_reason, "tool_calls");
        assert_eq!(c.tool_calls.len(), 2);
        assert_eq!(c.tool_calls[0].id, "call_a");
        assert_eq!(c.tool_calls[0].name, "get_weather");
        assert_eq!(c.tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
        assert_eq!(c.tool_calls[1].name, "clock");
        let skipped =
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":3,\"id\":\"x\"}]}}]}\n\n";
        assert!(relay(skipped).0.is_err());
        let json = tool_calls_json(&c.tool_calls);
        assert_eq!(tool_calls_from_json(&json), c.tool_calls);
    }

    #[test]
    fn the_request_offers_tools_and_replays_calls_and_results() {
        let mut p = prompt();
        p.tools.push(crate::chat::provider::ToolSpec {
            name: "clock".into(),
            description: None,
            parameters: json!({"type": "object"}),
        });
        let call = ToolCall {
            id: "call_1".into(),
            name: "clock".into(),
            arguments: "{}".into(),
        };
        p.messages.push(Line {
            tool_calls: vec![call],
            ..Line::say(Speaker::Assistant, "")
        });
        p.messages.push(Line {
            tool_call_id: Some("call_1".into()),
            ..Line::say(Speaker::Tool, "12:00")
        });
        let f = request("http://127.0.0.1:9/v1", "sk", &p, FetchTimeouts::default()).unwrap();
        let body: Value = serde_json::from_slice(&f.body).unwrap();
        assert_eq!(body["tools"][0]["function"]["name"], "clock");
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(body["messages"][1]["tool_calls"][0]["id"], "call_1");
        assert_eq!(body["messages"][2]["role"], "tool");
        assert_eq!(body["messages"][2]["tool_call_id"], "call_1");
    }

    #[test]
    fn only_the_first_choice_is_read_and_choices_may_be_null_or_empty() {
        let (c, seen) = relay(
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}},{\"delta\":{\"content\":\"b\"}},7]}\n\n\
             data: {\"choices\":null}\n\n\
             data: {\"choices\":[]}\n\n\
             data: {\"choices\":[{\"delta\":{\"content\":\"c\"}}]}\n\n",
        );
        assert_eq!(c.unwrap().text, "ac");
        assert_eq!(seen, ["a", "c"]);
        let (c, _) = relay("data: {\"choices\":{\"delta\":{}}}\n\n");
        assert_eq!(
            c.unwrap_err(),
            ProviderError::Upstream("upstream sent invalid JSON".into())
        );
    }

    #[test]
    fn usage_is_counted_when_the_upstream_does_not_report_it() {
        let (c, _) = relay("data: {\"choices\":[{\"delta\":{\"content\":\"a b\"}}]}\n\n");
        let c = c.unwrap();
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (3, 2));
    }

    #[test]
    fn status_errors_keep_the_message_and_retry_after() {
        let head = ResponseHead {
            status: 429,
            headers: vec![("retry-after".into(), b"7".to_vec())],
            http10: false,
        };
        let e = status_error(&head, br#"{"error":{"message":"slow down"}}"#);
        assert_eq!(
            e,
            ProviderError::Status {
                status: 429,
                retry_after: Some(7),
                message: "slow down".into()
            }
        );
        let head = ResponseHead {
            status: 500,
            headers: vec![],
            http10: false,
        };
        assert!(matches!(
            status_error(&head, b"<html>"),
            ProviderError::Status {
                status: 500,
                retry_after: None,
                ..
            }
        ));
    }

    #[test]
    fn the_request_joins_the_base_url_and_streams() {
        let f = request(
            "http://127.0.0.1:9/v1/",
            "sk",
            &prompt(),
            FetchTimeouts::default(),
        )
        .unwrap();
        assert_eq!(f.url.target, "/v1/chat/completions");
        let body: Value = serde_json::from_slice(&f.body).unwrap();
        assert_eq!(body["stream"], json!(true));
        assert!(f
            .headers
            .iter()
            .any(|(n, v)| n == "Authorization" && v == "Bearer sk"));
        assert!(request("ftp://x", "sk", &prompt(), FetchTimeouts::default()).is_err());
    }
}
