//! The `openai` provider: any OpenAI-compatible `POST {baseUrl}/chat/completions` server
//! (OpenAI, vLLM, Ollama, llama.cpp) with `stream: true`, sans I/O.
//!
//! Responsible for: the request ([`request`]), the meaning of the response head (a non-2xx
//! status becomes a [`ProviderError`] that keeps the upstream's message and, on a `429`, its
//! `Retry-After`), and reading the streamed body ([`Relay`]): SSE `data:` lines until
//! `[DONE]`, deltas, the finish reason and usage when the upstream reports it. Not
//! responsible for: sockets, timeouts or retries (the turn drives the engine's client), or
//! the API key (the runtime opens the project secret).

use halyard_engine::client::sse::SseReader;
use halyard_engine::client::{Fetch, FetchTimeouts, ResponseHead, Url};
use halyard_storage::Usage;
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value};

use super::provider::{words, Completion, Prompt, ProviderError};

/// Base URL used when an `openai` agent names none.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Longest SSE line accepted from an upstream (a chunk of one delta is far smaller).
pub const MAX_LINE: usize = 256 * 1024;
/// Largest error body read from an upstream (its message is quoted from it).
pub const MAX_ERROR_BODY: usize = 16 * 1024;

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
            input_words: prompt.messages.iter().map(|(_, t)| words(t)).sum(),
            done: false,
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
        }
        Ok(())
    }

    fn on_data(&mut self, data: &str, on_delta: &mut dyn FnMut(&str)) -> Result<(), ProviderError> {
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        // A typed, borrowing parse: a `Value` tree per chunk was 7% of a relayed token's CPU.
        let chunk: Chunk<'_> = serde_json::from_str(data)
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
        let Some(choice) = chunk.choices.into_iter().flatten().next() else {
            return Ok(());
        };
        if let Some(r) = choice.finish_reason {
            self.finish = r.into_owned();
        }
        if let Some(delta) = choice
            .delta
            .and_then(|d| d.content)
            .filter(|d| !d.is_empty())
        {
            self.text.push_str(&delta);
            on_delta(&delta);
        }
        Ok(())
    }

    /// Whether a delta was relayed (after it, a failure is never retried).
    pub fn started(&self) -> bool {
        !self.text.is_empty()
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
        Completion {
            text: self.text.clone(),
            usage,
            finish_reason: finish.unwrap_or(&self.finish).to_string(),
        }
    }
}

/// One streamed chunk, as far as it is read.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<UsageIn>,
    #[serde(borrow, default)]
    error: Option<ErrorIn<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct UsageIn {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorIn<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::provider::Speaker;

    fn prompt() -> Prompt {
        Prompt {
            messages: vec![(Speaker::User, "one two three".into())],
            model: "m".into(),
            temperature: None,
            max_tokens: None,
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
