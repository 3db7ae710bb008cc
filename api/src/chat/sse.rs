//! Server-sent event framing (CONVENTIONS section 7).
//!
//! Responsible for: one event as bytes (`id:`, `event:`, `data:`, blank line), the head
//! of an event-stream response, and parsing `Last-Event-ID`. Not responsible for: delivery.

use halyard_engine::Response;

/// `/chat/agent/stream`: the turn's session, first.
pub const SESSION: &str = "session";
/// `/chat/agent/stream`: one delta of the reply.
pub const TOKEN: &str = "token";
/// `/chat/agent/stream`: the reply is stored; last.
pub const DONE: &str = "done";
/// `/chat/stream` direct call: the model used, first.
pub const METADATA: &str = "metadata";
/// `/chat/stream`: one delta of the reply.
pub const TEXT_DELTA: &str = "text_delta";
/// `/chat/stream`: token counts, before `complete`.
pub const USAGE: &str = "usage";
/// `/chat/stream`: the call (and a turn's stored reply) is over; last.
pub const COMPLETE: &str = "complete";
/// Any stream: a failure after the stream started; last.
pub const ERROR: &str = "error";
/// A model asked for a tool call.
pub const TOOL_CALL: &str = "tool_call";
/// A tool call's result.
pub const TOOL_RESULT: &str = "tool_result";
/// A direct call's model began a tool call.
pub const TOOL_CALL_START: &str = "tool_call_start";
/// More of a direct call's tool call arguments.
pub const TOOL_CALL_DELTA: &str = "tool_call_delta";
/// A direct call's tool call is complete.
pub const TOOL_CALL_END: &str = "tool_call_end";

/// One kind of event a chat stream sends: what the OpenAPI document's `Event` schema
/// enumerates and the reference (`docs`) describes.
#[derive(Debug, Clone, Copy)]
pub struct EventKind {
    /// The `event:` name.
    pub name: &'static str,
    /// The `data:` JSON object's fields.
    pub data: &'static str,
    /// Which routes send it.
    pub routes: &'static str,
    /// When it is sent.
    pub when: &'static str,
}

/// Every event a chat stream may send, agent-turn events first.
pub const EVENTS: &[EventKind] = &[
    EventKind {
        name: SESSION,
        data: "`{sessionId}`",
        routes: "`/chat/agent/stream`",
        when: "first: the session of the turn (a new one when the body named none)",
    },
    EventKind {
        name: TOKEN,
        data: "`{delta, index}`",
        routes: "`/chat/agent/stream`",
        when: "each delta of the reply; `index` counts from 0",
    },
    EventKind {
        name: DONE,
        data: "`{sessionId, messageId, usage: {inputTokens, outputTokens, totalTokens}}`",
        routes: "`/chat/agent/stream`",
        when: "last: the reply is stored (durable) under `messageId`",
    },
    EventKind {
        name: TOOL_CALL,
        data: "`{id, name, arguments}` (`arguments` as the model wrote them, JSON text)",
        routes: "`/chat/agent/stream`",
        when: "for each tool call the model asks for, before any runs (all of one answer's calls run at once)",
    },
    EventKind {
        name: TOOL_RESULT,
        data: "`{id, result, error?, durationMs}` (`result` is `null` when `error` is set)",
        routes: "`/chat/agent/stream`",
        when: "once every call of a round has ended, in the order the model asked; then the model is called again",
    },
    EventKind {
        name: TOOL_CALL_START,
        data: "`{id, name}`",
        routes: "`/chat/stream` (direct call with `tools`)",
        when: "the model began a tool call (the client runs it, and sends its result back in `messages`)",
    },
    EventKind {
        name: TOOL_CALL_DELTA,
        data: "`{id, arguments}`",
        routes: "`/chat/stream` (direct call with `tools`)",
        when: "each new piece of the call's arguments (JSON text, in order)",
    },
    EventKind {
        name: TOOL_CALL_END,
        data: "`{id, name, arguments}`",
        routes: "`/chat/stream` (direct call with `tools`)",
        when: "once the model is done, for each call, before `usage` and `complete`",
    },
    EventKind {
        name: METADATA,
        data: "`{model, provider}`",
        routes: "`/chat/stream` (direct call only)",
        when: "first, on a direct model call (`messages[]`); a turn on a session has none",
    },
    EventKind {
        name: TEXT_DELTA,
        data: "`{delta}`",
        routes: "`/chat/stream`",
        when: "each delta of the reply",
    },
    EventKind {
        name: USAGE,
        data: "`{inputTokens, outputTokens}`",
        routes: "`/chat/stream`",
        when: "after the last delta",
    },
    EventKind {
        name: COMPLETE,
        data: "`{inputTokens, outputTokens, totalTokens, latencyMs}`",
        routes: "`/chat/stream`",
        when: "last: the call is over (a turn's reply is stored first)",
    },
    EventKind {
        name: ERROR,
        data: "`{code, message}`",
        routes: "every stream, and resumes",
        when: "last: a failure after the stream started (see the stream error codes)",
    },
];

/// An `event: error` code that only streams send (the others are the API's error codes).
#[derive(Debug, Clone, Copy)]
pub struct StreamErrorCode {
    /// The `code`.
    pub code: &'static str,
    /// When it is sent.
    pub when: &'static str,
}

/// A listener's buffer (`STREAM_BUFFER`) filled up: it is ended, the turn goes on.
pub const SLOW_CONSUMER: &str = "SLOW_CONSUMER";
/// A resumed stream whose last events a restart lost: it will never end otherwise.
pub const STREAM_INTERRUPTED: &str = "STREAM_INTERRUPTED";
/// The server is shutting down: a running turn stores what was said and ends.
pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";

/// The codes of [`ERROR`] events beyond the API's error codes.
pub const STREAM_ERROR_CODES: &[StreamErrorCode] = &[
    StreamErrorCode {
        code: SLOW_CONSUMER,
        when: "the client read too slowly (256 KiB unread); its response ends, the turn goes on: resume with `Last-Event-ID`",
    },
    StreamErrorCode {
        code: STREAM_INTERRUPTED,
        when: "on a resume: the server restarted before the stream ended, and its last events were not stored",
    },
    StreamErrorCode {
        code: SHUTTING_DOWN,
        when: "the server is shutting down (SIGTERM/SIGINT); what was said is stored",
    },
];

/// The `data` of an `event: error` with `code` and `message`.
pub fn error_data(code: &str, message: &str) -> String {
    serde_json::json!({"code": code, "message": message}).to_string()
}

/// One event: `id: N\nevent: NAME\ndata: DATA\n\n`. `data` must be one line (JSON text
/// from serde_json is).
pub fn frame(id: u64, event: &str, data: &str) -> Vec<u8> {
    let mut out = Vec::new();
    frame_into(&mut out, id, event, data);
    out
}

/// Appends the frame of [`frame`] to `out`.
pub fn frame_into(out: &mut Vec<u8>, id: u64, event: &str, data: &str) {
    out.reserve(32 + event.len() + data.len());
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    out.extend_from_slice(b"\nevent: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    for line in data.split('\n') {
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\n\n");
}

/// The head of an event stream, carrying its resumable id.
pub fn head(stream_id: &str) -> Response {
    let mut r = Response::empty(200)
        .with_header("Cache-Control", "no-cache")
        .with_header("X-Stream-Id", stream_id.to_string())
        .with_header("X-Accel-Buffering", "no");
    r.content_type = Some("text/event-stream");
    r
}

/// The id in a `Last-Event-ID` header: plain digits (surrounding spaces allowed);
/// anything else is `None`.
pub fn parse_last_event_id(value: &[u8]) -> Option<u64> {
    let v = halyard_engine::parse::trim_ows(value);
    halyard_engine::parse::parse_digits(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_exact() {
        assert_eq!(
            frame(3, "token", r#"{"delta":"hi"}"#),
            b"id: 3\nevent: token\ndata: {\"delta\":\"hi\"}\n\n"
        );
        // A stray newline cannot end the event early.
        assert_eq!(frame(1, "e", "a\nb"), b"id: 1\nevent: e\ndata: ab\n\n");
    }

    #[test]
    fn last_event_id() {
        assert_eq!(parse_last_event_id(b" 42 "), Some(42));
        assert_eq!(parse_last_event_id(b"+1"), None);
        assert_eq!(parse_last_event_id(b""), None);
        assert_eq!(parse_last_event_id(b"99999999999999999999999"), None);
    }
}
