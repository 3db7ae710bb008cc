//! Responses and their encoding into a connection's output buffer.
//!
//! Responsible for: the [`Response`] value handlers return, the error envelope of
//! CONVENTIONS section 4, and writing a status line and head (with the cached `Date`,
//! `Content-Length`, `X-Request-Id` and `Connection` where needed) straight into the
//! output buffer without intermediate allocation. Not responsible for: deciding keep-alive
//! or which request a response belongs to (see `conn`).

use std::borrow::Cow;

/// A response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body (`Content-Length: 0`).
    Empty,
    /// A body known at compile time; costs no allocation.
    Static(&'static [u8]),
    /// An owned body.
    Owned(Vec<u8>),
}

impl Body {
    /// The body bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Empty => &[],
            Body::Static(b) => b,
            Body::Owned(b) => b,
        }
    }
}

/// An HTTP response produced by the application (or by the engine for its own errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`, if any.
    pub content_type: Option<&'static str>,
    /// Extra header fields, in order. `Date`, `Content-Length`, `X-Request-Id` and
    /// `Connection` are written by the engine and must not be set here.
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// The body.
    pub body: Body,
}

/// `Content-Type` of JSON bodies.
pub const JSON: &str = "application/json";

impl Response {
    /// A response with no body.
    pub fn empty(status: u16) -> Self {
        Response {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// A JSON response from serialized bytes.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: Some(JSON),
            headers: Vec::new(),
            body: Body::Owned(body),
        }
    }

    /// A JSON response whose body is a constant.
    pub fn static_json(status: u16, body: &'static [u8]) -> Self {
        Response {
            status,
            content_type: Some(JSON),
            headers: Vec::new(),
            body: Body::Static(body),
        }
    }

    /// The error envelope `{"success":false,"error":{"code":..,"message":..}}`.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let mut body = Vec::with_capacity(48 + code.len() + message.len());
        body.extend_from_slice(b"{\"success\":false,\"error\":{\"code\":");
        write_json_string(&mut body, code);
        body.extend_from_slice(b",\"message\":");
        write_json_string(&mut body, message);
        body.extend_from_slice(b"}}");
        Response::json(status, body)
    }

    /// Adds a header field.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of a header added with [`with_header`](Self::with_header), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// Appends `s` as a JSON string literal (quoted and escaped).
#[inline]
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let plain = plain_prefix(bytes);
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(&bytes[..plain]);
    escape_into(out, &bytes[plain..]);
    out.push(b'"');
}

/// Whether JSON needs `b` escaped inside a string.
#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// How many leading bytes need no escaping. Most strings in a response (ids, names,
/// timestamps) need none, so this checks eight bytes at a time: a list of 50 sessions
/// spent 13 % of its CPU time escaping byte by byte (benches/RESULTS.md, "API").
#[inline]
fn plain_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = ONES * 0x80;
    // Sets some high bit iff a byte of `w` is below `n` (n <= 128): "hasless" of Bit
    // Twiddling Hacks, exact as to whether any byte is.
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
    let mut at = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let hit = below(w, 0x20)
            | below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1);
        if hit != 0 {
            break;
        }
        at += 8;
    }
    let rest = &bytes[at..];
    at + rest
        .iter()
        .position(|&b| needs_escape(b))
        .unwrap_or(rest.len())
}

/// Appends `bytes` escaped for a JSON string, byte by byte.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Lower-case hex digits.
pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// The reason phrase written after a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// What the encoder needs besides the response.
#[derive(Debug, Clone, Copy)]
pub struct HeadContext<'a> {
    /// The cached IMF-fixdate.
    pub date: &'a [u8],
    /// The request id to echo.
    pub request_id: &'a [u8],
    /// Whether the connection stays open after this response.
    pub keep_alive: bool,
    /// Whether the request was HTTP/1.0 (then keep-alive must be announced).
    pub http10: bool,
}

/// How the body length is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// `Content-Length: n`.
    Fixed(u64),
    /// `Transfer-Encoding: chunked` (streams to HTTP/1.1 clients).
    Chunked,
    /// Neither: the body ends when the connection closes (streams to HTTP/1.0 clients).
    UntilClose,
    /// No body by definition (`1xx`, `204`, `304`): no length header at all.
    NoBody,
}

/// Writes the status line and header section of `resp` into `out`.
pub fn write_head(out: &mut Vec<u8>, resp: &Response, length: Length, cx: &HeadContext<'_>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(resp.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(resp.status).as_bytes());
    out.extend_from_slice(b"\r\nServer: halyard\r\nDate: ");
    out.extend_from_slice(cx.date);
    match length {
        Length::Fixed(n) => {
            out.extend_from_slice(b"\r\nContent-Length: ");
            out.extend_from_slice(num.format(n).as_bytes());
        }
        Length::Chunked => out.extend_from_slice(b"\r\nTransfer-Encoding: chunked"),
        Length::UntilClose | Length::NoBody => {}
    }
    if let Some(ct) = resp.content_type {
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(ct.as_bytes());
    }
    out.extend_from_slice(b"\r\nX-Request-Id: ");
    out.extend_from_slice(cx.request_id);
    if !cx.keep_alive {
        out.extend_from_slice(b"\r\nConnection: close");
    } else if cx.http10 {
        out.extend_from_slice(b"\r\nConnection: keep-alive");
    }
    for (name, value) in &resp.headers {
        out.extend_from_slice(b"\r\n");
        push_header_text(out, name);
        out.extend_from_slice(b": ");
        push_header_text(out, value);
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Copies header text, dropping CR and LF so a handler cannot split the response.
fn push_header_text(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b == b'\r' || b == b'\n') {
        out.extend(s.bytes().filter(|&b| b != b'\r' && b != b'\n'));
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Writes a whole response: head, then the body unless `head_only` (a `HEAD` request).
pub fn write_response(out: &mut Vec<u8>, resp: &Response, head_only: bool, cx: &HeadContext<'_>) {
    // RFC 9110 sections 8.6 and 15: 1xx, 204 and 304 carry no body and 204 no length.
    if matches!(resp.status, 100..=199 | 204 | 304) {
        write_head(out, resp, Length::NoBody, cx);
        return;
    }
    let body = resp.body.as_bytes();
    write_head(out, resp, Length::Fixed(body.len() as u64), cx);
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Appends one chunk of a chunked body (`len-hex CRLF data CRLF`); empty data is skipped,
/// since an empty chunk would end the body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut n = data.len();
    let mut i = hex.len();
    loop {
        i -= 1;
        hex[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&hex[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Strings rich in the bytes JSON escapes, and arbitrary ones.
    const STRINGS: &str = "\\PC*|[a-z\"\\\\\u{0}-\u{1f}\u{7f}-\u{ff}]{0,40}";

    proptest! {
        #[test]
        fn plain_prefix_stops_at_the_first_byte_to_escape(s in STRINGS) {
            let b = s.as_bytes();
            let want = b.iter().position(|&c| needs_escape(c)).unwrap_or(b.len());
            prop_assert_eq!(plain_prefix(b), want);
        }

        #[test]
        fn json_string_is_the_bytewise_escape(s in STRINGS) {
            let mut fast = Vec::new();
            write_json_string(&mut fast, &s);
            let mut slow = vec![b'"'];
            escape_into(&mut slow, s.as_bytes());
            slow.push(b'"');
            prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn json_string_escapes_quotes_backslashes_and_controls() {
        let mut out = Vec::new();
        write_json_string(&mut out, "abcdefgh\"ij\\k\nl\u{1}\u{7f}é");
        assert_eq!(out, "\"abcdefgh\\\"ij\\\\k\\nl\\u0001\u{7f}é\"".as_bytes());
    }

    fn cx(keep_alive: bool) -> HeadContext<'static> {
        HeadContext {
            date: b"Thu, 01 Jan 1970 00:00:00 GMT",
            request_id: b"r1",
            keep_alive,
            http10: false,
        }
    }

    #[test]
    fn encodes_a_json_response() {
        let mut out = Vec::new();
        let resp = Response::static_json(200, b"{}").with_header("X-A", "b");
        write_response(&mut out, &resp, false, &cx(true));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nServer: halyard\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
             Content-Length: 2\r\nContent-Type: application/json\r\nX-Request-Id: r1\r\n\
             X-A: b\r\n\r\n{}"
        );
    }

    #[test]
    fn head_only_keeps_length_drops_body() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            &Response::static_json(200, b"{}"),
            true,
            &cx(false),
        );
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("Content-Length: 2\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn error_envelope_escapes() {
        let r = Response::error(404, "NOT_FOUND", "Agent not found: \"a\"\n\u{1}");
        assert_eq!(
            r.body.as_bytes(),
            br#"{"success":false,"error":{"code":"NOT_FOUND","message":"Agent not found: \"a\"\n\u0001"}}"#
        );
    }

    #[test]
    fn header_injection_is_stripped() {
        let mut out = Vec::new();
        let resp = Response::empty(204).with_header("X-A", "a\r\nSet-Cookie: x");
        write_response(&mut out, &resp, false, &cx(true));
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("X-A: aSet-Cookie: x\r\n"));
    }

    #[test]
    fn no_body_statuses_have_no_length() {
        for status in [204, 304] {
            let mut out = Vec::new();
            let resp = Response::static_json(status, b"{}");
            write_response(&mut out, &resp, false, &cx(true));
            let s = String::from_utf8(out).unwrap();
            assert!(!s.contains("Content-Length"), "{s}");
            assert!(s.ends_with("\r\n\r\n"), "{s}");
        }
    }

    #[test]
    fn chunks() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"hello");
        write_chunk(&mut out, &[b'x'; 26]);
        write_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        let mut expect = b"5\r\nhello\r\n1a\r\n".to_vec();
        expect.extend_from_slice(&[b'x'; 26]);
        expect.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, expect);
    }
}
