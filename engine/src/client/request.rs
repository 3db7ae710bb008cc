//! Serialising one outbound HTTP/1.1 request.
//!
//! Responsible for: writing the request line, `Host`, the caller's headers, the framing
//! header and the body into a buffer, and refusing anything that could split the request
//! or smuggle a second one: a method or header name that is not a token, a CR, LF or NUL in
//! a value, and caller-given `Host`, `Content-Length` or `Transfer-Encoding` (this writer
//! owns the framing, so the length it writes is always the length of the body it writes).
//! Not responsible for: choosing headers (authentication, content type, `Connection`),
//! compression, chunked uploads, or sending the bytes.

use std::fmt;

use super::url::Url;

/// One request to write.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method token, as sent (`GET`, `POST`); methods are case-sensitive.
    pub method: &'a str,
    /// Where the request goes: the target of the request line and the `Host` header.
    pub url: &'a Url,
    /// Header fields in the order they are written, after `Host`.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body, sent with a `Content-Length`.
    pub body: &'a [u8],
}

/// Why a request was not written. Header values are never quoted: they may be secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The method is not a token.
    BadMethod,
    /// The URL's target does not start with `/` or holds a control, space or non-ASCII byte
    /// (possible only for a [`Url`] built by hand; [`Url::parse`] refuses those).
    BadTarget,
    /// The URL's host is empty or holds a control, space or non-ASCII byte.
    BadHost,
    /// The name of the header at this index (in [`Request::headers`]) is not a token.
    BadHeaderName {
        /// Index of the header in [`Request::headers`].
        index: usize,
    },
    /// The value of this header holds CR, LF or NUL.
    BadHeaderValue {
        /// The header's name.
        name: String,
    },
    /// The caller gave `Host`, `Content-Length` or `Transfer-Encoding`, which the writer
    /// sets itself.
    ReservedHeader {
        /// The header's name, as given.
        name: String,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::BadMethod => f.write_str("request method is not a token"),
            RequestError::BadTarget => f.write_str("request target is invalid"),
            RequestError::BadHost => f.write_str("request host is invalid"),
            RequestError::BadHeaderName { index } => {
                write!(f, "name of request header {index} is not a token")
            }
            RequestError::BadHeaderValue { name } => {
                write!(f, "value of request header {name} holds CR, LF or NUL")
            }
            RequestError::ReservedHeader { name } => {
                write!(f, "request header {name} is set by the client itself")
            }
        }
    }
}

impl std::error::Error for RequestError {}

/// Headers the writer owns: the host comes from the URL, the framing from the body.
const RESERVED: [&str; 3] = ["host", "content-length", "transfer-encoding"];

/// Appends the request (head + body) to `out`: request line `METHOD target HTTP/1.1`,
/// `Host` first (url.authority()), then the headers as given, then `Content-Length` when
/// the body is non-empty or the method is POST/PUT/PATCH. Refuses (RequestError enum) a
/// method that is not a token, a header name that is not a token, a value with CR, LF or
/// NUL (header injection), and caller-given `Host`, `Content-Length` or
/// `Transfer-Encoding` headers (the writer owns framing). On an error nothing is appended.
pub fn write_request(req: &Request<'_>, out: &mut Vec<u8>) -> Result<(), RequestError> {
    check(req)?;
    let host = req.url.authority();
    let head_len: usize = req.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    out.reserve(req.method.len() + req.url.target.len() + host.len() + head_len + 64);
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.url.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in req.headers {
        push_field(out, name.as_bytes(), value.as_bytes());
    }
    if needs_length(req) {
        let mut n = itoa::Buffer::new();
        push_field(out, b"Content-Length", n.format(req.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.body);
    Ok(())
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A body, or a method whose servers expect a length even for an empty body (some answer
/// `411 Length Required` to a POST without one).
fn needs_length(req: &Request<'_>) -> bool {
    !req.body.is_empty() || matches!(req.method, "POST" | "PUT" | "PATCH")
}

/// Everything is checked before the first byte is written, so a refused request leaves
/// `out` as it was.
fn check(req: &Request<'_>) -> Result<(), RequestError> {
    if !is_token(req.method) {
        return Err(RequestError::BadMethod);
    }
    let target = req.url.target.as_bytes();
    if target.first() != Some(&b'/') || !target.iter().all(|&b| is_visible_ascii(b)) {
        return Err(RequestError::BadTarget);
    }
    let host = req.url.host.as_bytes();
    if host.is_empty() || !host.iter().all(|&b| is_visible_ascii(b)) {
        return Err(RequestError::BadHost);
    }
    for (index, (name, value)) in req.headers.iter().enumerate() {
        check_header(index, name, value)?;
    }
    Ok(())
}

fn check_header(index: usize, name: &str, value: &str) -> Result<(), RequestError> {
    if !is_token(name) {
        return Err(RequestError::BadHeaderName { index });
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(RequestError::ReservedHeader {
            name: name.to_string(),
        });
    }
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(RequestError::BadHeaderValue {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// RFC 9110 section 5.6.2: one or more tchar.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_visible_ascii(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn write(
        method: &str,
        u: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<String, RequestError> {
        let mut out = b"before|".to_vec();
        let r = write_request(
            &Request {
                method,
                url: u,
                headers,
                body,
            },
            &mut out,
        );
        match r {
            Ok(()) => Ok(String::from_utf8(out[7..].to_vec()).unwrap()),
            Err(e) => {
                assert_eq!(out, b"before|", "a refused request wrote bytes");
                Err(e)
            }
        }
    }

    #[test]
    fn post_with_body() {
        let u = url("https://api.example:8443/v1/chat?x=1");
        let got = write(
            "POST",
            &u,
            &[
                ("Authorization", "Bearer sk-1"),
                ("Content-Type", "application/json"),
            ],
            b"{}",
        )
        .unwrap();
        assert_eq!(
            got,
            "POST /v1/chat?x=1 HTTP/1.1\r\nHost: api.example:8443\r\n\
             Authorization: Bearer sk-1\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn length_rules() {
        let u = url("http://h/");
        assert_eq!(
            write("GET", &u, &[], b"").unwrap(),
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        for m in ["POST", "PUT", "PATCH"] {
            let got = write(m, &u, &[], b"").unwrap();
            assert!(got.ends_with("\r\nContent-Length: 0\r\n\r\n"), "{got}");
        }
        let got = write("DELETE", &u, &[], b"abc").unwrap();
        assert!(got.ends_with("\r\nContent-Length: 3\r\n\r\nabc"), "{got}");
        // Methods are case-sensitive: `post` is not POST.
        assert!(!write("post", &u, &[], b"")
            .unwrap()
            .contains("Content-Length"));
    }

    #[test]
    fn host_is_first_and_bracketed() {
        let got = write("GET", &url("http://[::1]:8080/"), &[("A", "b")], b"").unwrap();
        assert_eq!(got, "GET / HTTP/1.1\r\nHost: [::1]:8080\r\nA: b\r\n\r\n");
    }

    #[test]
    fn refusals() {
        let u = url("http://h/");
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], RequestError);
        let cases: &[Case] = &[
            ("", &[], RequestError::BadMethod),
            ("GET /x", &[], RequestError::BadMethod),
            ("G\r\nET", &[], RequestError::BadMethod),
            ("GÉT", &[], RequestError::BadMethod),
            (
                "GET",
                &[("", "x")],
                RequestError::BadHeaderName { index: 0 },
            ),
            (
                "GET",
                &[("A", "1"), ("X Y", "x")],
                RequestError::BadHeaderName { index: 1 },
            ),
            (
                "GET",
                &[("X:", "x")],
                RequestError::BadHeaderName { index: 0 },
            ),
            (
                "GET",
                &[("X\r\nY", "x")],
                RequestError::BadHeaderName { index: 0 },
            ),
            (
                "GET",
                &[("X", "a\r\nEvil: 1")],
                RequestError::BadHeaderValue { name: "X".into() },
            ),
            (
                "GET",
                &[("X", "a\nb")],
                RequestError::BadHeaderValue { name: "X".into() },
            ),
            (
                "GET",
                &[("X", "a\rb")],
                RequestError::BadHeaderValue { name: "X".into() },
            ),
            (
                "GET",
                &[("X", "a\0b")],
                RequestError::BadHeaderValue { name: "X".into() },
            ),
            (
                "GET",
                &[("host", "evil")],
                RequestError::ReservedHeader {
                    name: "host".into(),
                },
            ),
            (
                "POST",
                &[("Content-Length", "0")],
                RequestError::ReservedHeader {
                    name: "Content-Length".into(),
                },
            ),
            (
                "POST",
                &[("TRANSFER-ENCODING", "chunked")],
                RequestError::ReservedHeader {
                    name: "TRANSFER-ENCODING".into(),
                },
            ),
        ];
        for (method, headers, want) in cases {
            assert_eq!(
                write(method, &u, headers, b"x").as_ref(),
                Err(want),
                "{method:?} {headers:?}"
            );
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn hand_built_urls_are_checked() {
        let mut u = url("http://h/");
        u.target = "/a b".into();
        assert_eq!(write("GET", &u, &[], b""), Err(RequestError::BadTarget));
        u.target = "x".into();
        assert_eq!(write("GET", &u, &[], b""), Err(RequestError::BadTarget));
        u.target = "/\r\n".into();
        assert_eq!(write("GET", &u, &[], b""), Err(RequestError::BadTarget));
        let mut u = url("http://h/");
        u.host = "h\r\nX: y".into();
        assert_eq!(write("GET", &u, &[], b""), Err(RequestError::BadHost));
        u.host = String::new();
        assert_eq!(write("GET", &u, &[], b""), Err(RequestError::BadHost));
    }

    #[test]
    fn values_keep_tabs_and_obs_text() {
        let got = write("GET", &url("http://h/"), &[("X", "a\tb \u{e9}")], b"").unwrap();
        assert!(got.contains("\r\nX: a\tb \u{e9}\r\n"));
    }

    proptest::proptest! {
        /// What is written is one request a strict parser reads back: same method, target,
        /// headers in order and body.
        #[test]
        fn written_requests_parse_back(
            method in "[A-Z]{1,8}",
            path in "(/[a-z0-9]{0,6}){1,3}",
            headers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,12}", "[ -~]{0,20}"), 0..6),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let headers: Vec<(String, String)> = headers
                .into_iter()
                .filter(|(n, _)| !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(n)))
                .map(|(n, v)| (n, v.trim().to_string()))
                .collect();
            let pairs: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let u = Url::parse(&format!("http://h.example:81{path}")).unwrap();
            let mut out = Vec::new();
            write_request(&Request { method: &method, url: &u, headers: &pairs, body: &body }, &mut out).unwrap();
            let mut slots = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut slots);
            let n = match req.parse(&out).unwrap() {
                httparse::Status::Complete(n) => n,
                httparse::Status::Partial => panic!("incomplete head"),
            };
            proptest::prop_assert_eq!(req.method, Some(method.as_str()));
            proptest::prop_assert_eq!(req.path, Some(path.as_str()));
            proptest::prop_assert_eq!(req.headers[0].name, "Host");
            proptest::prop_assert_eq!(req.headers[0].value, b"h.example:81");
            for (i, (name, value)) in pairs.iter().enumerate() {
                proptest::prop_assert_eq!(req.headers[i + 1].name, *name);
                proptest::prop_assert_eq!(req.headers[i + 1].value, value.as_bytes());
            }
            let lengths: Vec<&[u8]> = req.headers.iter()
                .filter(|h| h.name == "Content-Length").map(|h| h.value).collect();
            if needs_length(&Request { method: &method, url: &u, headers: &[], body: &body }) {
                let want = body.len().to_string();
                proptest::prop_assert_eq!(lengths, vec![want.as_bytes()]);
            } else {
                proptest::prop_assert!(lengths.is_empty());
            }
            proptest::prop_assert_eq!(&out[n..], &body[..]);
        }
    }
}
