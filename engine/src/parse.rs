//! Request-head parsing and the framing rules of CONVENTIONS section 3.
//!
//! Responsible for: turning the bytes at the front of a connection's input into a parsed
//! head (zero-copy, over `httparse`) and rejecting everything the conventions call
//! ambiguous or oversized: bare LF, NUL, obs-fold, a request line over 8 KiB (414), a header
//! section over 16 KiB or 100 headers (431), duplicate or non-digit `Content-Length`, any
//! `Transfer-Encoding` other than one `chunked`, both framings at once, and an HTTP/1.1
//! request without exactly one `Host`. `httparse` accepts bare LF and enforces no byte
//! limits, and `str::parse::<u64>` accepts `+5`, so those checks live here.
//! Not responsible for: reading sockets, bodies (see `chunked`), or routing.

use std::fmt;
use std::mem::MaybeUninit;

/// Longest request line accepted, without its CRLF; longer is `414`.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest header section (after the request line) accepted; larger is `431`.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields accepted; more is `431`.
pub const MAX_HEADERS: usize = 100;

/// Header slots for one parse, left uninitialized so a parse does not clear 100 slots.
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Fresh header slots for [`parse`].
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Why a request head was refused. Every variant closes the connection after its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The request line is longer than [`MAX_REQUEST_LINE`].
    UriTooLong,
    /// The header section is larger than [`MAX_HEADER_BYTES`].
    HeadersTooLarge,
    /// More than [`MAX_HEADERS`] header fields.
    TooManyHeaders,
    /// A line ends in LF without CR.
    BareLineFeed,
    /// A NUL byte in the head.
    NulByte,
    /// Not HTTP/1.x syntax (includes obs-fold, whitespace before a colon, bare CR).
    Malformed(&'static str),
    /// The request target is neither origin-form nor `*` for OPTIONS, or not UTF-8.
    BadTarget,
    /// HTTP/1.1 without exactly one `Host`, HTTP/1.0 with several, or a `Host` value that is
    /// not a URI host with an optional port (RFC 9112 section 3.2).
    BadHost,
    /// `Content-Length` repeated, listed, or not plain digits.
    BadContentLength,
    /// `Transfer-Encoding` repeated or other than `chunked`, or sent with HTTP/1.0.
    BadTransferEncoding,
    /// Both `Content-Length` and `Transfer-Encoding`.
    AmbiguousFraming,
}

impl ParseError {
    /// The HTTP status this error is answered with.
    pub fn status(self) -> u16 {
        match self {
            ParseError::UriTooLong => 414,
            ParseError::HeadersTooLarge | ParseError::TooManyHeaders => 431,
            _ => 400,
        }
    }

    /// The `error.code` of the response envelope.
    pub fn code(self) -> &'static str {
        match self {
            ParseError::UriTooLong => "URI_TOO_LONG",
            ParseError::HeadersTooLarge | ParseError::TooManyHeaders => "HEADERS_TOO_LARGE",
            _ => "BAD_REQUEST",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UriTooLong => {
                write!(f, "request line longer than {MAX_REQUEST_LINE} bytes")
            }
            ParseError::HeadersTooLarge => {
                write!(f, "headers larger than {MAX_HEADER_BYTES} bytes")
            }
            ParseError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} headers"),
            ParseError::BareLineFeed => f.write_str("line ending without CR"),
            ParseError::NulByte => f.write_str("NUL byte in request head"),
            ParseError::Malformed(what) => write!(f, "malformed request head: {what}"),
            ParseError::BadTarget => f.write_str("request target must be an absolute path"),
            ParseError::BadHost => {
                f.write_str("exactly one Host header, a valid host[:port], is required")
            }
            ParseError::BadContentLength => f.write_str("invalid Content-Length"),
            ParseError::BadTransferEncoding => {
                f.write_str("Transfer-Encoding must be a single 'chunked'")
            }
            ParseError::AmbiguousFraming => {
                f.write_str("both Content-Length and Transfer-Encoding present")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes (never 0: a zero length is `None`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: closes unless it asks for keep-alive.
    Http10,
    /// HTTP/1.1.
    Http11,
}

/// A parsed head, borrowing the input and the header slots.
#[derive(Debug)]
pub struct Head<'b, 'h> {
    /// Bytes of input the head occupies, including the blank line.
    pub len: usize,
    /// The method token.
    pub method: &'b str,
    /// The request target (path and query), valid UTF-8.
    pub target: &'b str,
    /// The protocol version.
    pub version: Version,
    /// Body framing.
    pub framing: Framing,
    /// Whether the connection stays open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// The client's `X-Request-Id`, when it is sane (1 to 64 of `[A-Za-z0-9._:-]`).
    pub request_id: Option<&'b [u8]>,
    /// The header fields in order.
    pub headers: &'h [httparse::Header<'b>],
}

/// Parses the head at the front of `buf`. `Ok(None)` means more bytes are needed (and the
/// limits are not yet exceeded).
pub fn parse<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
) -> Result<Option<Head<'b, 'h>>, ParseError> {
    let mut req = httparse::Request::new(&mut []);
    let status = req
        .parse_with_uninit_headers(buf, slots)
        .map_err(map_httparse)?;
    let len = match status {
        httparse::Status::Partial => return check_partial(buf).map(|()| None),
        httparse::Status::Complete(len) => len,
    };
    check_complete(&buf[..len])?;
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let (method, path) = match (req.method, req.path) {
        (Some(m), Some(p)) => (m, p),
        _ => return Err(ParseError::Malformed("incomplete request line")),
    };
    let target = check_target(method, path)?;
    let fields = scan_fields(req.headers, version)?;
    Ok(Some(Head {
        len,
        method,
        target,
        version,
        framing: fields.framing,
        keep_alive: fields.keep_alive,
        expect_continue: fields.expect_continue,
        request_id: fields.request_id,
        headers: req.headers,
    }))
}

fn map_httparse(e: httparse::Error) -> ParseError {
    match e {
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        httparse::Error::HeaderName => ParseError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => ParseError::Malformed("invalid header value"),
        httparse::Error::NewLine => ParseError::Malformed("invalid line ending"),
        httparse::Error::Version => ParseError::Malformed("unsupported HTTP version"),
        httparse::Error::Token => ParseError::Malformed("invalid token"),
        httparse::Error::Status => ParseError::Malformed("invalid status"),
    }
}

/// Limits that can be decided before the head is complete.
fn check_partial(buf: &[u8]) -> Result<(), ParseError> {
    match memchr::memchr(b'\n', buf) {
        None if buf.len() > MAX_REQUEST_LINE + 1 => Err(ParseError::UriTooLong),
        None => Ok(()),
        Some(eol) if eol > MAX_REQUEST_LINE + 1 => Err(ParseError::UriTooLong),
        Some(eol) if buf.len() - eol - 1 > MAX_HEADER_BYTES + 2 => Err(ParseError::HeadersTooLarge),
        Some(_) => Ok(()),
    }
}

/// Byte-level rules over a complete head: limits, bare LF, NUL.
fn check_complete(head: &[u8]) -> Result<(), ParseError> {
    if memchr::memchr(0, head).is_some() {
        return Err(ParseError::NulByte);
    }
    let mut line_start = 0;
    let mut first_line_end = None;
    for eol in memchr::memchr_iter(b'\n', head) {
        if eol == 0 || head[eol - 1] != b'\r' {
            return Err(ParseError::BareLineFeed);
        }
        if first_line_end.is_none() {
            first_line_end = Some(eol);
            if eol - 1 > MAX_REQUEST_LINE {
                return Err(ParseError::UriTooLong);
            }
        }
        line_start = eol + 1;
    }
    debug_assert_eq!(line_start, head.len());
    let header_bytes = head.len() - first_line_end.map_or(0, |e| e + 1);
    if header_bytes > MAX_HEADER_BYTES + 2 {
        return Err(ParseError::HeadersTooLarge);
    }
    Ok(())
}

fn check_target<'b>(method: &str, path: &'b str) -> Result<&'b str, ParseError> {
    // httparse hands back `&str` only for bytes it accepted; still insist on origin-form.
    if path.starts_with('/') || (path == "*" && method == "OPTIONS") {
        Ok(path)
    } else {
        Err(ParseError::BadTarget)
    }
}

struct Fields<'b> {
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    request_id: Option<&'b [u8]>,
}

/// Whether `v` is a `Host` value: `uri-host [ ":" port ]` (RFC 9110 section 7.2, RFC 3986
/// section 3.2.2): an IP-literal in brackets, or a reg-name (which covers IPv4) of
/// unreserved characters, sub-delims and percent-escapes; the port is digits. Empty is
/// allowed (a target without an authority).
pub fn is_valid_host(v: &[u8]) -> bool {
    let (host, port) = match v.first() {
        Some(b'[') => match v.iter().position(|&b| b == b']') {
            Some(end) => (&v[..=end], &v[end + 1..]),
            None => return false,
        },
        _ => match v.iter().position(|&b| b == b':') {
            Some(colon) => (&v[..colon], &v[colon..]),
            None => (v, &v[v.len()..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    port_ok
        && if host.first() == Some(&b'[') {
            is_ip_literal(&host[1..host.len() - 1])
        } else {
            is_reg_name(host)
        }
}

fn is_reg_name(v: &[u8]) -> bool {
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'%' if v.len() > i + 2
                && v[i + 1].is_ascii_hexdigit()
                && v[i + 2].is_ascii_hexdigit() =>
            {
                i += 3;
                continue;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// An IPv6 address, or an `IPvFuture` (`v` hex `.` then unreserved, sub-delims or `:`).
fn is_ip_literal(v: &[u8]) -> bool {
    if let Some(rest) = v.strip_prefix(b"v").or_else(|| v.strip_prefix(b"V")) {
        let dot = rest.iter().position(|&b| b == b'.').unwrap_or(0);
        let (ver, tail) = (&rest[..dot], &rest[dot.min(rest.len())..]);
        return !ver.is_empty()
            && ver.iter().all(u8::is_ascii_hexdigit)
            && tail.len() > 1
            && tail[1..]
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b));
    }
    std::str::from_utf8(v).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

fn scan_fields<'b>(
    headers: &[httparse::Header<'b>],
    version: Version,
) -> Result<Fields<'b>, ParseError> {
    let mut content_length = None;
    let mut chunked = false;
    let mut hosts = 0;
    let mut keep_alive = version == Version::Http11;
    let mut expect_continue = false;
    let mut request_id = None;
    for h in headers {
        let name = h.name.as_bytes();
        let value = trim_ows(h.value);
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Err(ParseError::BadContentLength);
            }
            content_length = Some(parse_digits(value).ok_or(ParseError::BadContentLength)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked || version == Version::Http10 || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(ParseError::BadTransferEncoding);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            if !is_valid_host(value) {
                return Err(ParseError::BadHost);
            }
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            keep_alive = connection_keeps_alive(value, keep_alive);
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"x-request-id") && is_sane_request_id(value) {
            request_id = Some(value);
        }
    }
    let host_ok = match version {
        Version::Http11 => hosts == 1,
        Version::Http10 => hosts <= 1,
    };
    if !host_ok {
        return Err(ParseError::BadHost);
    }
    let framing = match (content_length, chunked) {
        (Some(_), true) => return Err(ParseError::AmbiguousFraming),
        (Some(0) | None, false) => Framing::None,
        (Some(n), false) => Framing::Length(n),
        (None, true) => Framing::Chunked,
    };
    Ok(Fields {
        framing,
        keep_alive,
        expect_continue,
        request_id,
    })
}

/// Strips optional whitespace (SP, HTAB) around a field value.
pub fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// A non-empty run of ASCII digits as a `u64`; `None` on anything else or on overflow
/// (so `+5`, `-1`, `0x10`, `5, 5` and `` are all refused).
pub fn parse_digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

fn connection_keeps_alive(value: &[u8], default: bool) -> bool {
    let mut keep = default;
    for token in value.split(|&b| b == b',').map(trim_ows) {
        if token.eq_ignore_ascii_case(b"close") {
            return false;
        }
        if token.eq_ignore_ascii_case(b"keep-alive") {
            keep = true;
        }
    }
    keep
}

fn is_sane_request_id(v: &[u8]) -> bool {
    (1..=64).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_follow_the_uri_host_grammar() {
        for ok in [
            &b""[..],
            b"x",
            b"localhost:8080",
            b"127.0.0.1",
            b"127.0.0.1:",
            b"[::1]:443",
            b"[2001:db8::7]",
            b"[v1.fe80::a+en1]",
            b"a.b-c_d~e",
            b"ex%41mple.com",
            b"sub!$&'()*+,;=",
        ] {
            assert!(is_valid_host(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"\xc3\x28\xff"[..],
            b"a b",
            b"x:80a",
            b"x:80:90",
            b"[::1",
            b"[::g]",
            b"[::1]x",
            b"user@host",
            b"ex%4",
            b"ex%zz",
            b"/path",
            b"[v.x]",
        ] {
            assert!(!is_valid_host(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        let r = b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n";
        assert_eq!(run(r), Err(ParseError::BadHost));
        let r = b"GET / HTTP/1.1\r\nHost: \xc3\x28\xff\r\n\r\n";
        assert_eq!(run(r), Err(ParseError::BadHost));
    }

    fn run(input: &[u8]) -> Result<Option<(usize, Framing, bool)>, ParseError> {
        let mut slots = header_slots();
        parse(input, &mut slots).map(|h| h.map(|h| (h.len, h.framing, h.keep_alive)))
    }

    #[test]
    fn simple_get() {
        let req = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\nGET";
        assert_eq!(run(req), Ok(Some((38, Framing::None, true))));
    }

    #[test]
    fn partial_needs_more() {
        assert_eq!(run(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(run(b"GE"), Ok(None));
    }

    #[test]
    fn fragmented_at_every_offset_parses_the_same() {
        let req =
            b"POST /a?b=c HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nX-Request-Id: abc\r\n\r\n";
        for cut in 0..req.len() {
            assert_eq!(run(&req[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(run(req), Ok(Some((req.len(), Framing::Length(12), true))));
    }

    #[test]
    fn http10_closes_unless_asked() {
        assert_eq!(
            run(b"GET / HTTP/1.0\r\n\r\n"),
            Ok(Some((18, Framing::None, false)))
        );
        let ka = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        assert_eq!(run(ka).map(|h| h.map(|h| h.2)), Ok(Some(true)));
    }

    #[test]
    fn connection_close_wins() {
        let r = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n";
        assert_eq!(run(r).map(|h| h.map(|h| h.2)), Ok(Some(false)));
    }

    #[test]
    fn framing_violations() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::AmbiguousFraming),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", ParseError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", ParseError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", ParseError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", ParseError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", ParseError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", ParseError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", ParseError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", ParseError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", ParseError::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", ParseError::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::BadTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,chunked\r\n\r\n", ParseError::BadTransferEncoding),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ParseError::BadTransferEncoding),
            (b"GET / HTTP/1.1\r\n\r\n", ParseError::BadHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", ParseError::BadHost),
            (b"GET / HTTP/1.1\nHost: x\n\n", ParseError::BareLineFeed),
            (b"GET / HTTP/1.1\r\nHost: x\n\r\n", ParseError::BareLineFeed),
            (b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", ParseError::BadTarget),
        ];
        for (input, want) in cases {
            assert_eq!(run(input), Err(*want), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn httparse_level_rejections_are_bad_requests() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x0bb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        ];
        for input in cases {
            let err = run(input).expect_err(&String::from_utf8_lossy(input));
            assert_eq!(err.status(), 400, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn limits() {
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(run(long.as_bytes()), Err(ParseError::UriTooLong));
        let no_eol = "a".repeat(MAX_REQUEST_LINE + 10);
        assert_eq!(run(no_eol.as_bytes()), Err(ParseError::UriTooLong));
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "v".repeat(MAX_HEADER_BYTES)
        );
        assert_eq!(run(big.as_bytes()), Err(ParseError::HeadersTooLarge));
        let big_partial = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}",
            "v".repeat(MAX_HEADER_BYTES)
        );
        assert_eq!(
            run(big_partial.as_bytes()),
            Err(ParseError::HeadersTooLarge)
        );
        let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(run(many.as_bytes()), Err(ParseError::TooManyHeaders));
    }

    #[test]
    fn line_at_the_limit_is_accepted() {
        let path = "a".repeat(MAX_REQUEST_LINE - "GET / HTTP/1.1".len());
        let req = format!("GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(run(req.as_bytes()), Ok(Some(_))));
    }

    #[test]
    fn digits() {
        assert_eq!(parse_digits(b"0"), Some(0));
        assert_eq!(parse_digits(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_digits(b"18446744073709551616"), None);
        assert_eq!(parse_digits(b" 5"), None);
        assert_eq!(trim_ows(b" \t5\t "), b"5");
        assert_eq!(trim_ows(b"  "), b"");
    }

    #[test]
    fn request_id_sanity() {
        let mut slots = header_slots();
        let ok = b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: req-1.2:3_\r\n\r\n";
        let head = parse(ok, &mut slots).unwrap().unwrap();
        assert_eq!(head.request_id, Some(&b"req-1.2:3_"[..]));
        let mut slots = header_slots();
        let bad = b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: <script>\r\n\r\n";
        assert_eq!(parse(bad, &mut slots).unwrap().unwrap().request_id, None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = run(&input);
        }
    }
}
