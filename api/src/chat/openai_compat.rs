//! The shapes of the OpenAI-compatible endpoint (`/v1/chat/completions`, `/v1/models`):
//! completions, stream chunks, model ids and errors as OpenAI's clients read them.
//!
//! Responsible for: a `chat.completion` object, one `chat.completion.chunk` frame (`data:`
//! and a blank line, no `id:` or `event:`), the closing `data: [DONE]`, the `error` object of
//! an [`ApiError`] (type by status) and splitting a model id `projectSlug/env/agentSlug`.
//! Not responsible for: running the call (a direct call of the turn task) or routing.

use halyard_engine::Response;
use serde_json::{json, Value};

use super::provider::ToolCall;
use crate::error::ApiError;

/// The last frame of a stream.
pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// What a completion is called by and reports: its id, creation time and model id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionId {
    /// `chatcmpl-...`
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id as the client sent it.
    pub model: String,
    /// Whether a streamed answer ends with a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// A model id's parts: project slug, environment, agent.
pub fn split_model(model: &str) -> Option<(&str, &str, &str)> {
    let mut parts = model.split('/');
    let (Some(p), Some(e), Some(a), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!p.is_empty() && !e.is_empty() && !a.is_empty()).then_some((p, e, a))
}

/// OpenAI's `tool_calls` of an assistant message (or of a delta, with `index`).
fn tool_calls(calls: &[ToolCall], indexed: bool) -> Value {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut v = json!({
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            });
            if indexed {
                v["index"] = i.into();
            }
            v
        })
        .collect()
}

/// OpenAI's `usage`.
pub fn usage(input: u64, output: u64) -> Value {
    json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output})
}

/// The finish reason OpenAI's clients know (`stop`, `length`, `tool_calls`, ...): a model's
/// own is kept, a missing one is `stop`, or `tool_calls` when there are calls.
fn finish_reason(reason: Option<&str>, calls: &[ToolCall]) -> String {
    match reason {
        Some(r) if !r.is_empty() => r.to_string(),
        _ if !calls.is_empty() => "tool_calls".into(),
        _ => "stop".into(),
    }
}

/// A whole `chat.completion`.
pub fn completion(
    id: &CompletionId,
    text: &str,
    calls: &[ToolCall],
    reason: Option<&str>,
    usage: Value,
) -> Value {
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        message["tool_calls"] = tool_calls(calls, false);
    }
    json!({
        "id": id.id,
        "object": "chat.completion",
        "created": id.created,
        "model": id.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reason, calls)}],
        "usage": usage,
    })
}

/// One `chat.completion.chunk` frame with `delta`, and the finish reason of the last one.
fn chunk(id: &CompletionId, delta: Value, finish: Option<String>, usage: Option<Value>) -> Vec<u8> {
    let choices = match &usage {
        Some(_) => json!([]),
        None => json!([{"index": 0, "delta": delta, "finish_reason": finish}]),
    };
    let mut body = json!({
        "id": id.id,
        "object": "chat.completion.chunk",
        "created": id.created,
        "model": id.model,
        "choices": choices,
    });
    if let Some(u) = usage {
        body["usage"] = u;
    }
    frame(&body)
}

/// `data: JSON` and a blank line.
fn frame(body: &Value) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(body.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

/// The first chunk: the assistant's role.
pub fn first_chunk(id: &CompletionId) -> Vec<u8> {
    chunk(id, json!({"role": "assistant", "content": ""}), None, None)
}

/// A chunk of text.
pub fn text_chunk(id: &CompletionId, text: &str) -> Vec<u8> {
    chunk(id, json!({"content": text}), None, None)
}

/// The end of a stream: the tool calls (if any), the finish reason, the usage when asked
/// for, and `[DONE]`.
pub fn last_chunks(
    id: &CompletionId,
    calls: &[ToolCall],
    reason: Option<&str>,
    usage: Value,
) -> Vec<u8> {
    let mut out = Vec::new();
    if !calls.is_empty() {
        out.extend(chunk(
            id,
            json!({"tool_calls": tool_calls(calls, true)}),
            None,
            None,
        ));
    }
    out.extend(chunk(
        id,
        json!({}),
        Some(finish_reason(reason, calls)),
        None,
    ));
    if id.include_usage {
        out.extend(chunk(id, Value::Null, None, Some(usage)));
    }
    out.extend_from_slice(DONE_FRAME);
    out
}

/// OpenAI's error object for `e`.
pub fn error_body(e: &ApiError) -> Value {
    let kind = match e.status() {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    };
    let param = match e {
        ApiError::Validation(d) => d.first().map(|f| Value::from(f.field.clone())),
        _ => None,
    };
    json!({"error": {
        "message": e.to_string(),
        "type": kind,
        "param": param,
        "code": e.code().to_ascii_lowercase(),
    }})
}

/// `e` as a response in OpenAI's shape (its status and `Retry-After` kept).
pub fn error_response(e: ApiError) -> Response {
    let body = error_body(&e);
    let standard = e.into_response();
    let mut resp = Response::json(standard.status, body.to_string().into_bytes());
    resp.headers = standard.headers;
    resp
}

/// A stream's last frame after a failure: the error object.
pub fn error_frame(e: &ApiError) -> Vec<u8> {
    let mut out = frame(&error_body(e));
    out.extend_from_slice(DONE_FRAME);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(include_usage: bool) -> CompletionId {
        CompletionId {
            id: "chatcmpl-1".into(),
            created: 1_700_000_000,
            model: "shop/production/support".into(),
            include_usage,
        }
    }

    fn frames(bytes: &[u8]) -> Vec<String> {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.ends_with("\n\n"), "{text:?}");
        text.trim_end()
            .split("\n\n")
            .map(|f| f.strip_prefix("data: ").expect("data line").to_string())
            .collect()
    }

    #[test]
    fn model_ids_have_three_parts() {
        assert_eq!(
            split_model("shop/production/support"),
            Some(("shop", "production", "support"))
        );
        for bad in ["", "a/b", "a/b/c/d", "a//c", "/b/c", "gpt-4o"] {
            assert_eq!(split_model(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_completion_has_the_fields_clients_read() {
        let calls = [ToolCall {
            id: "call_1".into(),
            name: "lookup".into(),
            arguments: "{}".into(),
        }];
        let v = completion(&id(false), "", &calls, None, usage(3, 4));
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "lookup"
        );
        assert_eq!(v["usage"]["total_tokens"], 7);
        let v = completion(&id(false), "hi", &[], Some("length"), usage(1, 1));
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    }

    #[test]
    fn a_stream_ends_with_the_reason_usage_when_asked_and_done() {
        let out = last_chunks(&id(true), &[], None, usage(2, 5));
        let f = frames(&out);
        assert_eq!(f.len(), 3, "{f:?}");
        let last: Value = serde_json::from_str(&f[0]).unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        let counted: Value = serde_json::from_str(&f[1]).unwrap();
        assert_eq!(counted["choices"], json!([]));
        assert_eq!(counted["usage"]["completion_tokens"], 5);
        assert_eq!(f[2], "[DONE]");
        assert_eq!(
            frames(&last_chunks(&id(false), &[], None, usage(2, 5))).len(),
            2
        );
        let first: Value = serde_json::from_str(&frames(&first_chunk(&id(false)))[0]).unwrap();
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    }

    #[test]
    fn errors_take_openais_type_by_status() {
        let cases = [
            (ApiError::Unauthorized("no"), "authentication_error"),
            (ApiError::Forbidden("no".into()), "permission_error"),
            (ApiError::NotFound("no".into()), "invalid_request_error"),
            (
                ApiError::RateLimited("slow".into(), 1500),
                "rate_limit_error",
            ),
            (ApiError::Unavailable("down".into()), "server_error"),
        ];
        for (e, kind) in cases {
            assert_eq!(error_body(&e)["error"]["type"], kind);
        }
        let r = error_response(ApiError::RateLimited("slow".into(), 1500));
        assert_eq!(r.status, 429);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("retry-after") && v == "2"));
        let v = error_body(&ApiError::invalid("messages", "is required"));
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["code"], "validation_error");
    }
}
