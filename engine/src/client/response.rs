//! Incremental reader of one HTTP/1.1 response, fed the bytes of a connection.
//!
//! Responsible for: finding and parsing the response head (over `httparse`, within a byte
//! and a header-count limit), skipping interim `1xx` responses, choosing the body framing by
//! RFC 9112 section 6.3 (no body for HEAD, 1xx, 204 and 304; `Transfer-Encoding` ending in
//! `chunked`, decoded by [`ChunkedDecoder`]; `Content-Length`; otherwise until EOF),
//! bounding the body, and telling whether the connection may carry another request. Any
//! split of the input gives the same head, body, completion and error.
//! Not responsible for: I/O, timeouts, decompression, redirects, or what the status means.
//!
//! The head is handed to `httparse` only once a blank line is seen, and always cut right
//! after that blank line, so that a head dripping in one byte at a time is not re-parsed on
//! every byte, and so that the prefix `httparse` sees (hence its verdict) does not depend
//! on how the input was split.

use std::fmt;

use crate::chunked::{ChunkError, ChunkedDecoder};
use crate::parse::{parse_digits, trim_ows};

/// Limits on one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Largest head (status line, headers, blank line, and any empty lines before the
    /// status line), in bytes; each interim `1xx` head is counted on its own.
    pub max_head: usize,
    /// Most header fields in one head.
    pub max_headers: usize,
    /// Largest body, in decoded bytes.
    pub max_body: u64,
}

impl Default for ResponseLimits {
    /// 64 KiB of head, 100 headers, no body limit.
    fn default() -> Self {
        ResponseLimits {
            max_head: 64 * 1024,
            max_headers: 100,
            max_body: u64::MAX,
        }
    }
}

/// The status and headers of a final (non-1xx) response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code, 200 to 999.
    pub status: u16,
    /// Header fields in order: names lowercased, values as received (`httparse` trims the
    /// whitespace around them).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The status line said `HTTP/1.0`.
    pub http10: bool,
}

impl ResponseHead {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Why a response was refused. The reader stays failed: every later call returns the same
/// error, and the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// The head is larger than [`ResponseLimits::max_head`].
    HeadTooLarge,
    /// The head is not HTTP/1.x syntax (or its status is below 100), with `httparse`'s
    /// reason.
    BadHead(httparse::Error),
    /// More header fields than [`ResponseLimits::max_headers`].
    TooManyHeaders,
    /// `101 Switching Protocols`: this client never asks for an upgrade.
    Upgrade,
    /// A `Content-Length` that is not plain digits, or several that differ.
    BadContentLength,
    /// The chunked body is malformed.
    Chunked(ChunkError),
    /// The body is larger than [`ResponseLimits::max_body`].
    BodyTooLarge,
    /// The connection ended before the response did.
    Truncated,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::HeadTooLarge => f.write_str("response head too large"),
            ResponseError::BadHead(e) => write!(f, "malformed response head: {e}"),
            ResponseError::TooManyHeaders => f.write_str("too many response headers"),
            ResponseError::Upgrade => f.write_str("unexpected 101 Switching Protocols"),
            ResponseError::BadContentLength => f.write_str("invalid response Content-Length"),
            ResponseError::Chunked(e) => write!(f, "malformed chunked response body: {e}"),
            ResponseError::BodyTooLarge => f.write_str("response body too large"),
            ResponseError::Truncated => f.write_str("connection closed before the response ended"),
        }
    }
}

impl std::error::Error for ResponseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResponseError::BadHead(e) => Some(e),
            ResponseError::Chunked(e) => Some(e),
            _ => None,
        }
    }
}

/// How the body of the final response is delimited.
#[derive(Debug, Clone)]
enum Body {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the connection ends.
    Close,
}

#[derive(Debug, Clone)]
enum State {
    Head,
    Body(Body),
    Done,
    Failed(ResponseError),
}

/// Where the search for the blank line ending the head stands.
enum HeadEnd {
    /// The head ends here (just past its blank line).
    At(usize),
    /// Not seen yet; the search resumes here.
    Resume(usize),
}

/// Incremental reader of one response.
#[derive(Debug, Clone)]
pub struct ResponseReader {
    head_request: bool,
    limits: ResponseLimits,
    state: State,
    /// The bytes of the current head so far (and whatever came with them), after any
    /// interim heads not yet dropped.
    buf: Vec<u8>,
    /// Where the current head starts in `buf` (past the interim heads before it).
    base: usize,
    /// Where its status line starts in `buf`, past empty lines.
    start: usize,
    /// Where the search for the blank line resumes in `buf`.
    scan: usize,
    /// Decoded body bytes so far.
    body_len: u64,
    /// The head allows another request on the connection (version, `Connection`,
    /// framing).
    keep_alive: bool,
    /// Bytes arrived after the end of the response.
    extra: bool,
    /// The connection reached EOF.
    eof: bool,
}

impl ResponseReader {
    /// `head_request`: the request was HEAD (no body whatever the headers say).
    pub fn new(head_request: bool, limits: ResponseLimits) -> Self {
        ResponseReader {
            head_request,
            limits,
            state: State::Head,
            buf: Vec::new(),
            base: 0,
            start: 0,
            scan: 0,
            body_len: 0,
            keep_alive: false,
            extra: false,
            eof: false,
        }
    }

    /// Feeds bytes read from the connection. Decoded body bytes are appended to `body`.
    /// Returns the head once, in the call that completes it (1xx interim responses such as
    /// 100 Continue are skipped silently; 101 is an error). When the body turns out bad in
    /// the same call that completed the head, the error is returned and the head is not.
    pub fn receive(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
    ) -> Result<Option<ResponseHead>, ResponseError> {
        let result = match self.state {
            State::Failed(e) => return Err(e),
            State::Done => {
                self.extra |= !input.is_empty();
                Ok(None)
            }
            State::Body(_) => self.read_body(input, body).map(|()| None),
            State::Head => self.read_head(input, body),
        };
        if let Err(e) = result {
            self.fail(e);
        }
        result
    }

    /// The connection reached EOF: completes a close-delimited body; otherwise an
    /// incomplete response is `ResponseError::Truncated`.
    pub fn on_eof(&mut self) -> Result<(), ResponseError> {
        self.eof = true;
        match self.state {
            State::Failed(e) => Err(e),
            State::Done => Ok(()),
            State::Body(Body::Close) => {
                self.state = State::Done;
                Ok(())
            }
            State::Head | State::Body(_) => {
                self.fail(ResponseError::Truncated);
                Err(ResponseError::Truncated)
            }
        }
    }

    /// The whole response has been read.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The connection may carry another request: complete, not close-delimited, no
    /// `Connection: close`, HTTP/1.1 (or 1.0 with `Connection: keep-alive`), and no bytes
    /// arrived after the end of the response.
    pub fn reusable(&self) -> bool {
        self.is_complete() && self.keep_alive && !self.extra && !self.eof
    }

    fn fail(&mut self, e: ResponseError) {
        self.state = State::Failed(e);
        self.buf = Vec::new();
    }

    fn read_head(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
    ) -> Result<Option<ResponseHead>, ResponseError> {
        self.buf.extend_from_slice(input);
        loop {
            let end = match self.head_end()? {
                HeadEnd::At(end) => end,
                HeadEnd::Resume(at) => {
                    self.scan = at;
                    self.drop_interim_heads();
                    return Ok(None);
                }
            };
            let Some((head, end)) = self.parse_head(end)? else {
                // httparse wants more even past a blank line: look for the next one.
                self.scan = end - 1;
                continue;
            };
            if (100..200).contains(&head.status) {
                // An interim response (100 Continue, 103 Early Hints): the final one follows.
                (self.base, self.start, self.scan) = (end, end, end);
                continue;
            }
            let rest = std::mem::take(&mut self.buf);
            self.start_body(&head)?;
            self.read_body(&rest[end..], body)?;
            return Ok(Some(head));
        }
    }

    /// Drops interim heads from `buf` once per call, rather than once each, so that a read
    /// full of `100 Continue` costs one move of the bytes after them.
    fn drop_interim_heads(&mut self) {
        if self.base > 0 {
            self.buf.drain(..self.base);
            self.start -= self.base;
            self.scan -= self.base;
            self.base = 0;
        }
    }

    /// Finds the end of the head in `buf`, or says it is too large.
    fn head_end(&mut self) -> Result<HeadEnd, ResponseError> {
        // Empty lines before the status line are skipped (httparse does too) so that each
        // cannot pass for the blank line ending the head and cost a parse of its own.
        self.start = skip_empty_lines(&self.buf, self.start);
        let from = self.scan.max(self.start);
        let (max, len) = (self.limits.max_head, self.buf.len() - self.base);
        match find_blank_line(&self.buf, from) {
            HeadEnd::At(end) if end - self.base <= max => Ok(HeadEnd::At(end)),
            HeadEnd::At(_) => Err(ResponseError::HeadTooLarge),
            // The earliest the head could still end is past `max`.
            HeadEnd::Resume(_) if len > 0 && len >= max => Err(ResponseError::HeadTooLarge),
            resume => Ok(resume),
        }
    }

    /// Parses the head in `buf[base..end]`; `None` when httparse wants more. Returns the
    /// head and where it ends in `buf`.
    fn parse_head(&self, end: usize) -> Result<Option<(ResponseHead, usize)>, ResponseError> {
        let mut slots = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let mut resp = httparse::Response::new(&mut slots);
        let len = match resp.parse(&self.buf[self.base..end]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyHeaders),
            Err(e) => return Err(ResponseError::BadHead(e)),
        };
        let status = resp.code.unwrap_or(0);
        if status < 100 {
            return Err(ResponseError::BadHead(httparse::Error::Status));
        }
        if status == 101 {
            return Err(ResponseError::Upgrade);
        }
        let headers = resp
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        let head = ResponseHead {
            status,
            headers,
            http10: resp.version == Some(0),
        };
        Ok(Some((head, self.base + len)))
    }

    /// Chooses the framing of the final response's body (RFC 9112 section 6.3).
    fn start_body(&mut self, head: &ResponseHead) -> Result<(), ResponseError> {
        // Checked even where there is no body: a server that cannot write its own length
        // is not trusted with the next response on the connection either.
        let fields = Fields::of(head)?;
        // HTTP/1.0 closes unless asked not to; `close` wins over everything.
        self.keep_alive = !fields.close && (!head.http10 || fields.keep_alive);
        if self.head_request || matches!(head.status, 204 | 304) {
            // Framing headers here describe a body that is not sent.
            self.state = State::Done;
            return Ok(());
        }
        self.state = match self.framing(head, &fields)? {
            Body::Length(0) => State::Done,
            body => State::Body(body),
        };
        Ok(())
    }

    /// The framing of a response that has a body; clears `keep_alive` where the framing
    /// forbids reuse.
    fn framing(&mut self, head: &ResponseHead, fields: &Fields) -> Result<Body, ResponseError> {
        if fields.transfer_encoding {
            // Both framings, or chunking from an HTTP/1.0 peer, may mean a response split
            // by something in between: read this one, then close.
            self.keep_alive &= fields.length.is_none() && !head.http10 && fields.chunked;
            return Ok(if fields.chunked {
                Body::Chunked(ChunkedDecoder::new())
            } else {
                Body::Close
            });
        }
        match fields.length {
            Some(n) if n > self.limits.max_body => Err(ResponseError::BodyTooLarge),
            Some(n) => Ok(Body::Length(n)),
            None => {
                self.keep_alive = false;
                Ok(Body::Close)
            }
        }
    }

    fn read_body(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<(), ResponseError> {
        let State::Body(framing) = &mut self.state else {
            self.extra |= !input.is_empty();
            return Ok(());
        };
        match framing {
            Body::Length(left) => {
                let take = usize::try_from(*left).map_or(input.len(), |l| l.min(input.len()));
                *left -= take as u64;
                let done = *left == 0;
                self.append(&input[..take], body)?;
                self.extra |= take < input.len();
                if done {
                    self.state = State::Done;
                }
            }
            Body::Chunked(decoder) => {
                let before = body.len();
                let decoded = decoder.decode(input, body);
                let done = decoder.is_done();
                // Bytes decoded before a framing error come first in the stream, so the size
                // limit is checked first: the same error whatever the split.
                self.count(body, before)?;
                let used = decoded.map_err(ResponseError::Chunked)?;
                self.extra |= used < input.len();
                if done {
                    self.state = State::Done;
                }
            }
            Body::Close => self.append(input, body)?,
        }
        Ok(())
    }

    /// Appends raw body bytes, within the body limit.
    fn append(&mut self, bytes: &[u8], body: &mut Vec<u8>) -> Result<(), ResponseError> {
        let before = body.len();
        body.extend_from_slice(bytes);
        self.count(body, before)
    }

    /// Counts the bytes appended to `body` since `before`; past the limit, keeps exactly
    /// `max_body` bytes in all and fails (so the body seen does not depend on the split).
    fn count(&mut self, body: &mut Vec<u8>, before: usize) -> Result<(), ResponseError> {
        let added = (body.len() - before) as u64;
        let room = self.limits.max_body - self.body_len;
        if added > room {
            body.truncate(before + room as usize);
            self.body_len = self.limits.max_body;
            return Err(ResponseError::BodyTooLarge);
        }
        self.body_len += added;
        Ok(())
    }
}

/// The header fields that decide framing and reuse.
struct Fields {
    /// `Transfer-Encoding` is present.
    transfer_encoding: bool,
    /// Its last coding is `chunked`.
    chunked: bool,
    length: Option<u64>,
    close: bool,
    keep_alive: bool,
}

impl Fields {
    fn of(head: &ResponseHead) -> Result<Fields, ResponseError> {
        let mut f = Fields {
            transfer_encoding: false,
            chunked: false,
            length: None,
            close: false,
            keep_alive: false,
        };
        for (name, value) in &head.headers {
            match name.as_str() {
                "transfer-encoding" => {
                    f.transfer_encoding = true;
                    // Several fields form one list; the last coding applied decides.
                    if let Some(coding) = list(value).last() {
                        f.chunked = coding.eq_ignore_ascii_case(b"chunked");
                    }
                }
                "content-length" => f.add_length(value)?,
                "connection" => {
                    for token in list(value) {
                        f.close |= token.eq_ignore_ascii_case(b"close");
                        f.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
                _ => {}
            }
        }
        Ok(f)
    }

    /// `Content-Length: 5`, `Content-Length: 5, 5` and two fields of 5 are all 5 (RFC 9110
    /// section 8.6 lets a recipient accept identical values); anything else is an error.
    fn add_length(&mut self, value: &[u8]) -> Result<(), ResponseError> {
        for element in value.split(|&b| b == b',').map(trim_ows) {
            let n = parse_digits(element).ok_or(ResponseError::BadContentLength)?;
            if self.length.is_some_and(|l| l != n) {
                return Err(ResponseError::BadContentLength);
            }
            self.length = Some(n);
        }
        Ok(())
    }
}

/// The non-empty elements of a comma-separated field value.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

/// Skips complete empty lines (CRLF or LF) from `from`.
fn skip_empty_lines(buf: &[u8], mut from: usize) -> usize {
    loop {
        match buf.get(from..from + 2) {
            Some(b"\r\n") => from += 2,
            _ if buf.get(from) == Some(&b'\n') => from += 1,
            _ => return from,
        }
    }
}

/// Finds the first LF followed by an empty line (LF or CRLF) at or after `from`.
fn find_blank_line(buf: &[u8], from: usize) -> HeadEnd {
    for lf in memchr::memchr_iter(b'\n', &buf[from..]).map(|i| i + from) {
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return HeadEnd::At(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return HeadEnd::At(lf + 3),
            // Cannot tell yet: look at this LF again when more bytes are in.
            (None, _) | (Some(b'\r'), None) => return HeadEnd::Resume(lf),
            _ => {}
        }
    }
    HeadEnd::Resume(buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reader made of a whole exchange.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Outcome {
        /// The head, when no error came (an error may or may not follow a returned head).
        head: Option<ResponseHead>,
        body: Vec<u8>,
        complete: bool,
        reusable: bool,
        error: Option<ResponseError>,
        eof: Result<(), ResponseError>,
    }

    fn run(input: &[u8], cuts: &[usize], head_request: bool, limits: ResponseLimits) -> Outcome {
        let mut r = ResponseReader::new(head_request, limits);
        let mut body = Vec::new();
        let mut head = None;
        let mut error = None;
        let mut at = 0;
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
        bounds.sort_unstable();
        bounds.push(input.len());
        for end in bounds {
            match r.receive(&input[at..end], &mut body) {
                Ok(Some(h)) => {
                    assert!(head.is_none(), "the head came twice");
                    head = Some(h);
                }
                Ok(None) => {}
                Err(e) => {
                    error = Some(e);
                    // Stays failed.
                    assert_eq!(r.receive(b"x", &mut body), Err(e));
                    break;
                }
            }
            at = end;
        }
        let (complete, reusable) = (r.is_complete(), r.reusable());
        let eof = r.on_eof();
        if error.is_some() {
            head = None;
        }
        Outcome {
            head,
            body,
            complete,
            reusable,
            error,
            eof,
        }
    }

    fn whole(input: &[u8]) -> Outcome {
        run(input, &[], false, ResponseLimits::default())
    }

    fn status_of(o: &Outcome) -> u16 {
        o.head.as_ref().expect("a head").status
    }

    #[test]
    fn content_length() {
        let o = whole(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
        assert_eq!(status_of(&o), 200);
        let head = o.head.as_ref().unwrap();
        assert_eq!(head.header("X-a"), Some(&b"b"[..]));
        assert_eq!(head.header("content-length"), Some(&b"5"[..]));
        assert_eq!(head.header("missing"), None);
        assert!(!head.http10);
        assert_eq!(o.body, b"hello");
        assert!(o.complete && o.reusable);
        assert_eq!(o.eof, Ok(()));
    }

    #[test]
    fn head_alone_is_returned_before_the_body() {
        let mut r = ResponseReader::new(false, ResponseLimits::default());
        let mut body = Vec::new();
        let head = r
            .receive(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", &mut body)
            .unwrap();
        assert_eq!(head.map(|h| h.status), Some(200));
        assert!(!r.is_complete() && !r.reusable());
        assert_eq!(r.receive(b"ab", &mut body), Ok(None));
        assert_eq!(r.receive(b"c", &mut body), Ok(None));
        assert!(r.is_complete() && r.reusable());
        assert_eq!(body, b"abc");
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let o = whole(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=\"x\"\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        );
        assert_eq!(o.body, b"hello world");
        assert!(o.complete && o.reusable);
        let o = whole(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n0\r\n\r\n");
        assert!(o.complete && o.reusable);
        // Several fields are one list: the last coding of the last field decides.
        let o = whole(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\
              Transfer-Encoding: ,\r\n\r\n0\r\n\r\n",
        );
        assert!(o.complete && o.reusable);
        let o = whole(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
        );
        assert_eq!(o.body, b"0\r\n\r\n");
        assert!(!o.complete);
    }

    #[test]
    fn close_delimited() {
        let o = whole(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end");
        assert_eq!(o.body, b"until the end");
        assert!(!o.complete && !o.reusable);
        assert_eq!(o.eof, Ok(()));
        let mut r = ResponseReader::new(false, ResponseLimits::default());
        let mut body = Vec::new();
        r.receive(b"HTTP/1.0 200 OK\r\n\r\nab", &mut body).unwrap();
        assert_eq!(r.on_eof(), Ok(()));
        assert!(r.is_complete() && !r.reusable());
        assert_eq!(body, b"ab");
        // Transfer-Encoding that does not end in chunked: read until EOF.
        let o = whole(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n");
        assert_eq!(o.body, b"0\r\n\r\n");
        assert!(!o.complete && !o.reusable);
        assert_eq!(o.eof, Ok(()));
    }

    #[test]
    fn interim_responses_are_skipped() {
        let o = whole(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        );
        assert_eq!(status_of(&o), 200);
        assert_eq!(o.head.as_ref().unwrap().header("link"), None);
        assert_eq!(o.body, b"ok");
        assert!(o.complete && o.reusable);
        let o = whole(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(o.head.is_none() && !o.complete);
        assert_eq!(o.eof, Err(ResponseError::Truncated));
    }

    #[test]
    fn each_interim_head_has_its_own_limit() {
        let limits = ResponseLimits {
            max_head: 64,
            ..ResponseLimits::default()
        };
        let mut input = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(1000);
        input.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
        for cuts in [
            vec![],
            vec![30, 31, 7000],
            (0..input.len()).step_by(7).collect(),
        ] {
            let o = run(&input, &cuts, false, limits);
            assert_eq!(status_of(&o), 200);
            assert!(o.complete && o.reusable && o.body == b"x");
        }
    }

    #[test]
    fn responses_without_a_body() {
        let r = run(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            &[],
            true,
            ResponseLimits::default(),
        );
        assert_eq!(status_of(&r), 200);
        assert!(r.body.is_empty() && r.complete && r.reusable);
        // A HEAD response's framing headers describe a body that is not sent.
        let r = run(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &[],
            true,
            ResponseLimits::default(),
        );
        assert!(r.complete && r.reusable);
        for status in [204, 304] {
            let o = whole(format!("HTTP/1.1 {status} X\r\nContent-Length: 4\r\n\r\n").as_bytes());
            assert_eq!(status_of(&o), status);
            assert!(o.complete && o.reusable && o.body.is_empty());
        }
        let o = whole(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(o.complete && o.reusable);
        // No body, but a broken length is still refused.
        let o = whole(b"HTTP/1.1 204 No Content\r\nContent-Length: x\r\n\r\n");
        assert_eq!(o.error, Some(ResponseError::BadContentLength));
    }

    #[test]
    fn reuse_rules() {
        let reusable = |input: &[u8]| whole(input).reusable;
        assert!(reusable(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!reusable(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!reusable(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!reusable(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(reusable(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
        ));
        // Both framings: Transfer-Encoding wins, and the connection is not reused.
        let o = whole(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
              2\r\nab\r\n0\r\n\r\n",
        );
        assert_eq!(o.body, b"ab");
        assert!(o.complete && !o.reusable);
        // Chunked from an HTTP/1.0 peer: read, not reused.
        let o = whole(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        );
        assert!(o.complete && !o.reusable);
        // Bytes after the end of the response, in the same read or a later one.
        assert!(!reusable(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab"));
        assert!(!reusable(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP"
        ));
        assert!(!reusable(b"HTTP/1.1 204 No Content\r\n\r\nx"));
        let mut r = ResponseReader::new(false, ResponseLimits::default());
        let mut body = Vec::new();
        r.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", &mut body)
            .unwrap();
        assert!(r.reusable());
        r.receive(b"", &mut body).unwrap();
        assert!(r.reusable());
        r.receive(b"x", &mut body).unwrap();
        assert!(r.is_complete() && !r.reusable());
        // A connection that reached EOF is gone, complete or not.
        let mut r = ResponseReader::new(false, ResponseLimits::default());
        r.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut body)
            .unwrap();
        assert_eq!(r.on_eof(), Ok(()));
        assert!(r.is_complete() && !r.reusable());
    }

    #[test]
    fn leniencies() {
        // Empty lines before the status line, bare LF line ends, no reason phrase, a list
        // of equal lengths, repeated equal lengths.
        let o = whole(b"\r\n\nHTTP/1.1 200\nContent-Length: 2, 2\nContent-Length: 2\n\nok");
        assert_eq!(status_of(&o), 200);
        assert_eq!(o.body, b"ok");
        assert!(o.complete && o.reusable);
        let o = whole(b"HTTP/1.1 599 Whatever\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(status_of(&o), 599);
        let o = whole(b"HTTP/1.1 200 OK\r\nX: \xff\xfe\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(o.head.unwrap().header("x"), Some(&b"\xff\xfe"[..]));
    }

    #[test]
    fn every_error() {
        let d = ResponseLimits::default();
        let small = ResponseLimits {
            max_head: 64,
            max_headers: 2,
            max_body: 4,
        };
        let cases: &[(&[u8], ResponseLimits, ResponseError)] = &[
            (
                b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
                small,
                ResponseError::TooManyHeaders,
            ),
            (&[b'x'; 64], small, ResponseError::HeadTooLarge),
            (
                b"HTTP/1.1 200 OK\r\nX: 0123456789012345678901234567890123456789012\r\n\r\n",
                small,
                ResponseError::HeadTooLarge,
            ),
            (
                b"HTTP/2 200 OK\r\n\r\n",
                d,
                ResponseError::BadHead(httparse::Error::Version),
            ),
            (
                b"HTTP/1.1 2000 OK\r\n\r\n",
                d,
                ResponseError::BadHead(httparse::Error::Status),
            ),
            (
                b"HTTP/1.1 099 Low\r\n\r\n",
                d,
                ResponseError::BadHead(httparse::Error::Status),
            ),
            (
                b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
                d,
                ResponseError::BadHead(httparse::Error::HeaderName),
            ),
            (
                b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
                d,
                ResponseError::BadHead(httparse::Error::HeaderName),
            ),
            (
                b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
                d,
                ResponseError::BadHead(httparse::Error::HeaderValue),
            ),
            (
                b"garbage\r\n\r\n",
                d,
                ResponseError::BadHead(httparse::Error::Version),
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                d,
                ResponseError::Upgrade,
            ),
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching\r\n\r\n",
                d,
                ResponseError::Upgrade,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                d,
                ResponseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
                d,
                ResponseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
                d,
                ResponseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n",
                d,
                ResponseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
                d,
                ResponseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                d,
                ResponseError::BadContentLength,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                d,
                ResponseError::Chunked(ChunkError::BadSize),
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX",
                d,
                ResponseError::Chunked(ChunkError::BadLineEnding),
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                small,
                ResponseError::BodyTooLarge,
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\nhello",
                small,
                ResponseError::BodyTooLarge,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                small,
                ResponseError::BodyTooLarge,
            ),
        ];
        for (input, limits, want) in cases {
            let o = run(input, &[], false, *limits);
            assert_eq!(o.error, Some(*want), "{:?}", String::from_utf8_lossy(input));
            assert_eq!(o.eof, Err(*want), "stays failed");
            assert!(!o.complete && !o.reusable);
            assert!(!want.to_string().is_empty());
        }
        let truncated: &[&[u8]] = &[
            b"",
            b"HTTP/1.1 200 OK\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhell",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ];
        for input in truncated {
            let o = whole(input);
            assert_eq!((o.error, o.eof), (None, Err(ResponseError::Truncated)));
        }
    }

    #[test]
    fn body_limit_keeps_exactly_the_limit() {
        let limits = ResponseLimits {
            max_body: 4,
            ..ResponseLimits::default()
        };
        let input =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n";
        for cut in 0..input.len() {
            let o = run(input, &[cut], false, limits);
            assert_eq!(o.error, Some(ResponseError::BodyTooLarge));
            assert_eq!(o.body, b"abcd");
        }
        let exact = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd";
        assert_eq!(run(exact, &[], false, limits).body, b"abcd");
    }

    #[test]
    fn head_dripping_in_is_parsed_once_at_its_end() {
        let input = b"\r\nHTTP/1.1 200 OK\r\nA: b\r\nContent-Length: 1\r\n\r\nx";
        let mut r = ResponseReader::new(false, ResponseLimits::default());
        let mut body = Vec::new();
        let head_len = input.len() - 1;
        for (i, b) in input.iter().enumerate() {
            let got = r.receive(std::slice::from_ref(b), &mut body).unwrap();
            assert_eq!(got.is_some(), i + 1 == head_len, "byte {i}");
        }
        assert!(r.is_complete() && r.reusable());
    }

    /// Responses the proptest cuts up: every framing, interim responses, errors.
    const SAMPLES: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
        b"HTTP/1.1 100 Continue\r\n\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2, 2\r\n\r\nokEXTRA",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n\
          1a;x=y\r\ndata: {\"a\":1}\r\n\r\ndata: [DO\r\n5\r\nNE]\n\n\r\n0\r\nT: 1\r\n\r\n",
        b"HTTP/1.0 200 OK\nConnection: keep-alive\n\nclose delimited\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n",
        b"\n\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    ];

    fn limits_for(small: bool) -> ResponseLimits {
        if small {
            ResponseLimits {
                max_head: 48,
                max_headers: 3,
                max_body: 8,
            }
        } else {
            ResponseLimits::default()
        }
    }

    proptest::proptest! {
        #[test]
        fn any_split_gives_the_same_outcome(
            sample in 0..SAMPLES.len(),
            cuts in proptest::collection::vec(0usize..200, 0..6),
            head_request in proptest::bool::ANY,
            small in proptest::bool::ANY,
        ) {
            let input = SAMPLES[sample];
            let limits = limits_for(small);
            let want = run(input, &[], head_request, limits);
            proptest::prop_assert_eq!(run(input, &cuts, head_request, limits), want);
        }

        #[test]
        fn any_split_of_any_bytes_gives_the_same_outcome(
            prefix in 0..SAMPLES.len(),
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            at in 0usize..400,
            cuts in proptest::collection::vec(0usize..400, 1..6),
            small in proptest::bool::ANY,
        ) {
            // A real response with random bytes spliced in somewhere.
            let sample = SAMPLES[prefix];
            let at = at % (sample.len() + 1);
            let mut input = sample[..at].to_vec();
            input.extend_from_slice(&noise);
            input.extend_from_slice(&sample[at..]);
            let limits = limits_for(small);
            let want = run(&input, &[], false, limits);
            let one_by_one: Vec<usize> = (0..input.len()).collect();
            proptest::prop_assert_eq!(&run(&input, &cuts, false, limits), &want);
            proptest::prop_assert_eq!(&run(&input, &one_by_one, false, limits), &want);
        }
    }
}
