//! The `openai` provider: any OpenAI-compatible `POST {baseUrl}/chat/completions` server
//! (OpenAI, vLLM, Ollama, llama.cpp) with `stream: true`.
//!
//! Responsible for: the request, connect and read timeouts, the status check (so that a
//! failing upstream is a `503` before any event is streamed), and reading the SSE `data:`
//! lines until `[DONE]`, with usage when the upstream reports it. Runs on agent worker
//! threads (blocking I/O through `ureq`, with rustls). Not responsible for: the API key
//! (the runtime opens the project secret) or what happens to the deltas.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use halyard_storage::Usage;
use serde_json::{json, Value};

use super::provider::{words, Completion, Flow, Prompt, ProviderError};

/// Base URL used when an `openai` agent names none.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Timeouts of upstream calls.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To establish the connection.
    pub connect: Duration,
    /// From the request to the response head.
    pub read: Duration,
    /// For the whole streamed body.
    pub body: Duration,
}

/// An HTTP client for OpenAI-compatible servers.
pub struct OpenAi {
    agent: ureq::Agent,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenAi")
    }
}

/// An upstream that answered `200` and is streaming.
pub struct Upstream {
    reader: BufReader<Box<dyn Read + Send>>,
    input_words: u64,
}

impl OpenAi {
    /// A client with `t`.
    pub fn new(t: Timeouts) -> OpenAi {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(t.connect))
            .timeout_recv_response(Some(t.read))
            .timeout_recv_body(Some(t.body))
            .http_status_as_error(false)
            .build()
            .into();
        OpenAi { agent }
    }

    /// Sends the request; `Ok` once the upstream answered `200`.
    pub fn start(
        &self,
        base_url: &str,
        api_key: &str,
        prompt: &Prompt,
    ) -> Result<Upstream, ProviderError> {
        let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
        let messages: Vec<Value> = prompt
            .messages
            .iter()
            .map(|(who, text)| json!({"role": who.name(), "content": text}))
            .collect();
        let mut body = json!({
            "model": prompt.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(t) = prompt.temperature {
            body["temperature"] = t.into();
        }
        if let Some(m) = prompt.max_tokens {
            body["max_tokens"] = m.into();
        }
        let resp = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {api_key}"))
            .header("Content-Type", "application/json")
            .header("Accept", "text/event-stream")
            .send(body.to_string())
            .map_err(describe)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(ProviderError::Upstream(format!(
                "upstream answered HTTP {status}"
            )));
        }
        let reader: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
        Ok(Upstream {
            reader: BufReader::new(reader),
            input_words: prompt.messages.iter().map(|(_, t)| words(t)).sum(),
        })
    }
}

fn describe(e: ureq::Error) -> ProviderError {
    match e {
        ureq::Error::Timeout(_) => ProviderError::Upstream("upstream timed out".into()),
        ureq::Error::Io(io) => {
            ProviderError::Upstream(format!("upstream unreachable: {}", io.kind()))
        }
        other => ProviderError::Upstream(format!("upstream request failed: {other}")),
    }
}

impl Upstream {
    /// Reads deltas until `[DONE]` (or the end of the body, or a `Stop` from `on_delta`).
    pub fn run(
        mut self,
        on_delta: &mut dyn FnMut(&str) -> Flow,
    ) -> Result<Completion, ProviderError> {
        let mut text = String::new();
        let mut usage = None;
        let mut finish = String::from("stop");
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line).map_err(|e| {
                ProviderError::Upstream(format!("upstream stream broke: {}", e.kind()))
            })?;
            if n == 0 {
                break;
            }
            let Some(data) = line.trim_end().strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                break;
            }
            let chunk: Value = serde_json::from_str(data)
                .map_err(|_| ProviderError::Upstream("upstream sent invalid JSON".into()))?;
            if let Some(err) = chunk.get("error") {
                let msg = err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error");
                return Err(ProviderError::Upstream(format!("upstream error: {msg}")));
            }
            if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
                usage = Some(read_usage(u));
            }
            let choice = &chunk["choices"][0];
            if let Some(r) = choice["finish_reason"].as_str() {
                finish = r.to_string();
            }
            if let Some(delta) = choice["delta"]["content"]
                .as_str()
                .filter(|d| !d.is_empty())
            {
                text.push_str(delta);
                if on_delta(delta) == Flow::Stop {
                    finish = "cancelled".into();
                    break;
                }
            }
        }
        let usage = usage.unwrap_or_else(|| {
            let output = words(&text);
            Usage {
                input_tokens: self.input_words,
                output_tokens: output,
                total_tokens: self.input_words + output,
                latency_ms: 0,
            }
        });
        Ok(Completion {
            text,
            usage,
            finish_reason: finish,
        })
    }
}

fn read_usage(u: &Value) -> Usage {
    let get = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (get("prompt_tokens"), get("completion_tokens"));
    let total = u
        .get("total_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(input + output);
    Usage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: total,
        latency_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(body: &'static str) -> Upstream {
        let reader: Box<dyn Read + Send> = Box::new(body.as_bytes());
        Upstream {
            reader: BufReader::new(reader),
            input_words: 3,
        }
    }

    #[test]
    fn reads_deltas_usage_and_done() {
        let body = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                    : keep-alive\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
                    data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}\n\n\
                    data: [DONE]\n\n";
        let mut seen = Vec::new();
        let c = upstream(body)
            .run(&mut |d| {
                seen.push(d.to_string());
                Flow::Continue
            })
            .unwrap();
        assert_eq!(seen, ["Hel", "lo"]);
        assert_eq!(c.text, "Hello");
        assert_eq!(c.usage.total_tokens, 9);
        assert_eq!(c.finish_reason, "stop");
    }

    #[test]
    fn error_chunks_and_bad_json_fail() {
        let e =
            upstream("data: {\"error\":{\"message\":\"quota\"}}\n\n").run(&mut |_| Flow::Continue);
        assert!(matches!(e, Err(ProviderError::Upstream(m)) if m.contains("quota")));
        let e = upstream("data: {nope\n\n").run(&mut |_| Flow::Continue);
        assert!(e.is_err());
    }

    #[test]
    fn usage_is_counted_when_the_upstream_does_not_report_it() {
        let c = upstream("data: {\"choices\":[{\"delta\":{\"content\":\"a b\"}}]}\n\n")
            .run(&mut |_| Flow::Continue)
            .unwrap();
        assert_eq!((c.usage.input_tokens, c.usage.output_tokens), (3, 2));
    }
}
