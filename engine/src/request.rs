//! The owned request head handed to the application.
//!
//! Responsible for: one copy of the raw head bytes plus the offsets of its parts, so that
//! the application can look at method, path, query and headers (in `admit`, then in
//! `handle`, possibly on another thread) with two allocations per request whatever the
//! number of headers. Not responsible for: validation (done by `parse` before this is built)
//! or reading the clock (a head carries the instant it is given: the loop's, see `conn`).

use std::net::IpAddr;
use std::ops::Range;

use crate::parse::{Framing, Head, Version};

/// Request methods the API uses; anything else is `Other` (see [`RequestHead::method_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD (answered like GET, without the body)
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// Any other token.
    Other,
}

impl Method {
    /// The method for a token.
    pub fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    /// The token of a known method (`"OTHER"` for [`Method::Other`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }
}

/// Longest request id kept.
pub const REQUEST_ID_MAX: usize = 64;

/// A request id held inline (no allocation).
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; REQUEST_ID_MAX],
}

impl RequestId {
    /// A request id from sane bytes (truncated to [`REQUEST_ID_MAX`]).
    pub fn new(id: &[u8]) -> Self {
        let len = id.len().min(REQUEST_ID_MAX);
        let mut bytes = [0; REQUEST_ID_MAX];
        bytes[..len].copy_from_slice(&id[..len]);
        RequestId {
            len: len as u8,
            bytes,
        }
    }

    /// The id bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The id bytes, zero-padded to [`REQUEST_ID_MAX`], and the id's length: a fixed-size
    /// copy (no `memcpy` call) for the access log.
    pub fn padded(&self) -> (&[u8; REQUEST_ID_MAX], usize) {
        (&self.bytes, usize::from(self.len))
    }

    /// The id as text (ids are ASCII by construction).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Generates request ids for one loop: a per-loop prefix and a counter, rendered in hex
/// without allocation.
#[derive(Debug)]
pub struct RequestIds {
    /// `req_` and the prefix's 8 hex digits, rendered once; the counter's 16 follow.
    template: [u8; 28],
    next: u64,
}

/// Writes `v` as hex digits filling `out`, most significant first.
fn put_hex(out: &mut [u8], mut v: u64) {
    for slot in out.iter_mut().rev() {
        *slot = crate::response::HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

impl RequestIds {
    /// A generator whose ids start with `prefix` (distinct per loop and per process start).
    pub fn new(prefix: u32) -> Self {
        let mut template = *b"req_000000000000000000000000";
        put_hex(&mut template[4..12], u64::from(prefix));
        RequestIds { template, next: 0 }
    }

    /// The next id, e.g. `req_3f2a1b9c0000000000000001`.
    pub fn next_id(&mut self) -> RequestId {
        self.next += 1;
        let mut buf = self.template;
        put_hex(&mut buf[12..], self.next);
        RequestId::new(&buf)
    }
}

/// A parsed request head, owned.
#[derive(Debug, Clone)]
pub struct RequestHead {
    raw: Box<[u8]>,
    method: Method,
    method_range: Range<usize>,
    path: Range<usize>,
    query: Option<Range<usize>>,
    headers: Vec<(Range<usize>, Range<usize>)>,
    /// Protocol version.
    pub version: Version,
    /// `Content-Length` when the body is length-delimited.
    pub content_length: Option<u64>,
    /// Whether the body is chunked.
    pub chunked: bool,
    /// The request id echoed in `X-Request-Id`.
    pub request_id: RequestId,
    /// The client's IP address.
    pub peer: IpAddr,
    /// When the loop woke up to read this head (its cached clock: no read per request).
    pub received: std::time::Instant,
}

impl RequestHead {
    pub(crate) fn from_parsed(
        head: &Head<'_, '_>,
        buf: &[u8],
        id: RequestId,
        peer: IpAddr,
        received: std::time::Instant,
    ) -> Self {
        let raw: Box<[u8]> = buf[..head.len].into();
        let base = buf.as_ptr() as usize;
        let range_of = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let target = range_of(head.target.as_bytes());
        let (path, query) = match head.target.find('?') {
            Some(q) => (
                target.start..target.start + q,
                Some(target.start + q + 1..target.end),
            ),
            None => (target, None),
        };
        let headers = head
            .headers
            .iter()
            .map(|h| (range_of(h.name.as_bytes()), range_of(h.value)))
            .collect();
        let (content_length, chunked) = match head.framing {
            Framing::None => (None, false),
            Framing::Length(n) => (Some(n), false),
            Framing::Chunked => (None, true),
        };
        RequestHead {
            raw,
            method: Method::from_token(head.method),
            method_range: range_of(head.method.as_bytes()),
            path,
            query,
            headers,
            version: head.version,
            content_length,
            chunked,
            request_id: id,
            peer,
            received,
        }
    }

    /// Parses a whole head from `buf` (for tests, benchmarks and fuzzers that need a head
    /// without a connection), stamped as received at `received`; `Ok(None)` if `buf` holds
    /// no complete head.
    pub fn from_bytes_at(
        buf: &[u8],
        id: RequestId,
        peer: IpAddr,
        received: std::time::Instant,
    ) -> Result<Option<RequestHead>, crate::parse::ParseError> {
        let mut slots = crate::parse::header_slots();
        let head = crate::parse::parse(buf, &mut slots)?;
        Ok(head.map(|h| RequestHead::from_parsed(&h, buf, id, peer, received)))
    }

    /// [`from_bytes_at`](Self::from_bytes_at) stamped with the current instant: the one
    /// clock read of this module, for callers that have no loop clock to pass. Connections
    /// never use it; their heads carry the loop's instant (`Env::now`).
    pub fn from_bytes(
        buf: &[u8],
        id: RequestId,
        peer: IpAddr,
    ) -> Result<Option<RequestHead>, crate::parse::ParseError> {
        Self::from_bytes_at(buf, id, peer, std::time::Instant::now())
    }

    fn text(&self, r: &Range<usize>) -> &str {
        // The parser admitted only ASCII tokens and a UTF-8 target, so this cannot fail;
        // fall back to "" rather than panic on data from the network.
        std::str::from_utf8(&self.raw[r.clone()]).unwrap_or("")
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method token as sent.
    pub fn method_str(&self) -> &str {
        self.text(&self.method_range)
    }

    /// The path, without the query (still percent-encoded).
    pub fn path(&self) -> &str {
        self.text(&self.path)
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_ref().map(|q| self.text(q))
    }

    /// The first value of header `name` (case-insensitive), leading/trailing OWS removed.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| self.raw[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| crate::parse::trim_ows(&self.raw[v.clone()]))
    }

    /// The first value of header `name` as text, if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of header `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| self.raw[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| crate::parse::trim_ows(&self.raw[v.clone()]))
    }

    /// All header fields as (name, value) in order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.headers
            .iter()
            .map(|(n, v)| (self.text(n), &self.raw[v.clone()]))
    }

    /// Whether a body follows the head.
    pub fn has_body(&self) -> bool {
        self.chunked || self.content_length.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{header_slots, parse};

    #[test]
    fn exposes_parts() {
        let buf = b"PATCH /api/x?limit=5&a=b HTTP/1.1\r\nHost: h\r\nX-API-Key:  k1 \r\nx-api-key: k2\r\nContent-Length: 3\r\n\r\nabc";
        let mut slots = header_slots();
        let head = parse(buf, &mut slots).unwrap().unwrap();
        let h = RequestHead::from_parsed(
            &head,
            buf,
            RequestId::new(b"id"),
            [127, 0, 0, 1].into(),
            std::time::Instant::now(),
        );
        assert_eq!(h.method(), Method::Patch);
        assert_eq!(h.method_str(), "PATCH");
        assert_eq!(h.path(), "/api/x");
        assert_eq!(h.query(), Some("limit=5&a=b"));
        assert_eq!(h.header("X-Api-Key"), Some(&b"k1"[..]));
        assert_eq!(h.headers_named("x-api-key").count(), 2);
        assert_eq!(h.header_str("host"), Some("h"));
        assert_eq!(h.content_length, Some(3));
        assert!(h.has_body());
        assert_eq!(h.request_id.as_str(), "id");
    }

    #[test]
    fn a_head_carries_the_instant_it_is_given() {
        let at = std::time::Instant::now() + std::time::Duration::from_secs(3600);
        let buf = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let h = RequestHead::from_bytes_at(buf, RequestId::new(b"id"), [127, 0, 0, 1].into(), at)
            .unwrap()
            .unwrap();
        assert_eq!(h.received, at);
    }

    #[test]
    fn generated_ids_are_distinct_and_prefixed() {
        let mut ids = RequestIds::new(0xabcdef01);
        let a = ids.next_id();
        let b = ids.next_id();
        assert_eq!(a.as_str(), "req_abcdef010000000000000001");
        assert_ne!(a.as_str(), b.as_str());
    }
}
