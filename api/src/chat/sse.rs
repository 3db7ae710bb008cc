//! Server-sent event framing (CONVENTIONS section 7).
//!
//! Responsible for: one event as bytes (`id:`, `event:`, `data:`, blank line), the head
//! of an event-stream response, and parsing `Last-Event-ID`. Not responsible for: delivery.

use halyard_engine::Response;

/// One event: `id: N\nevent: NAME\ndata: DATA\n\n`. `data` must be one line (JSON text
/// from serde_json is).
pub fn frame(id: u64, event: &str, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + event.len() + data.len());
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    out.extend_from_slice(b"\nevent: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    for line in data.split('\n') {
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\n\n");
    out
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
