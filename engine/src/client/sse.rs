//! Incremental reader of a `text/event-stream` body (the "event stream interpretation" of
//! the WHATWG HTML standard), for streamed answers from an upstream (a model provider's
//! `stream: true` chat completion).
//!
//! Responsible for: splitting the body into lines (CRLF, LF or CR, also when a CRLF is split
//! between two reads), skipping one leading BOM, applying the field rules (`data`, `event`,
//! `id`; comments and unknown fields ignored; `retry` ignored as there is no reconnection
//! here), dispatching an event on each blank line, and bounding what one line or one event
//! may cost. Any split of the input gives the same events and the same error.
//! Not responsible for: reconnection, `retry`, interpreting `data` (JSON or `[DONE]`), or the
//! HTTP framing around the stream (see `response`).
//!
//! Where the standard replaces invalid UTF-8 with U+FFFD, this reader refuses it: an
//! upstream sending broken text is broken, and a silently altered token is worse than an
//! error.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field; `"message"` when not given (borrowed then: no allocation for
    /// the usual event).
    pub event: Cow<'static, str>,
    /// The `data` lines of the event, joined with `\n`.
    pub data: String,
    /// The last event ID: the value of the latest `id` field of the stream so far (it
    /// carries over to later events, as the standard says); `None` when no `id` was given or
    /// the latest was empty.
    pub id: Option<String>,
}

/// Why an event stream was refused. The reader stays failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseError {
    /// A line is longer than the reader's `max_line`.
    LineTooLong,
    /// The data of one event is larger than the reader's `max_event`.
    EventTooLarge,
    /// A line is not UTF-8.
    InvalidUtf8,
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SseError::LineTooLong => "event stream line too long",
            SseError::EventTooLarge => "event stream event too large",
            SseError::InvalidUtf8 => "event stream line is not UTF-8",
        })
    }
}

impl std::error::Error for SseError {}

/// The UTF-8 byte order mark, skipped once at the start of the stream.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// Incremental `text/event-stream` reader.
#[derive(Debug, Clone)]
pub struct SseReader {
    max_line: usize,
    max_event: usize,
    /// The current line so far, without its end.
    line: Vec<u8>,
    /// The last byte fed was a CR: an LF first in the next feed ends no other line.
    after_cr: bool,
    /// Bytes of the BOM matched so far at the start of the stream; `None` once decided.
    bom: Option<usize>,
    /// The data buffer of the standard: each data line followed by LF.
    data: String,
    /// The event type buffer.
    event: String,
    /// The last event ID buffer.
    last_id: String,
    events: VecDeque<SseEvent>,
    /// A data buffer given back by [`SseReader::recycle`], for the next event's data.
    spare: String,
    failed: Option<SseError>,
}

impl SseReader {
    /// `max_line`: longest line accepted, in bytes (without its end); `max_event`: largest
    /// data of one event.
    pub fn new(max_line: usize, max_event: usize) -> Self {
        SseReader {
            max_line,
            max_event,
            line: Vec::new(),
            after_cr: false,
            bom: Some(0),
            data: String::new(),
            event: String::new(),
            last_id: String::new(),
            events: VecDeque::new(),
            spare: String::new(),
            failed: None,
        }
    }

    /// Feeds body bytes. Lines end in CRLF, LF or CR (a CR at the end of one feed followed
    /// by LF at the start of the next is ONE line end). A line longer than max_line is
    /// `SseError::LineTooLong` as soon as it is known (do not buffer a 1 MiB line first),
    /// data past max_event is `EventTooLarge`, a line that is not UTF-8 is `InvalidUtf8`.
    /// After an error the reader stays failed; events dispatched before the error can still
    /// be taken with [`next_event`](Self::next_event).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.feed_lines(bytes);
        if let Err(e) = result {
            self.failed = Some(e);
            self.line = Vec::new();
            self.data = String::new();
        }
        result
    }

    /// The next complete event (dispatched by a blank line), in order.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.events.pop_front()
    }

    /// Gives an event's data back once read, to hold a later event's data: a reader fed
    /// and drained in turn then allocates nothing per event (a relayed token is one).
    pub fn recycle(&mut self, event: SseEvent) {
        let mut data = event.data;
        if data.capacity() <= self.max_event {
            data.clear();
            self.spare = data;
        }
    }

    fn feed_lines(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        let mut rest = self.skip_bom(bytes)?;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
            if self.line.is_empty() {
                // The whole line is in this feed: read in place, not copied first.
                self.whole_line(&rest[..i])?;
            } else {
                self.append(&rest[..i])?;
                self.end_line()?;
            }
            let cr = rest[i] == b'\r';
            rest = &rest[i + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.append(rest)
    }

    /// Drops a BOM at the start of the stream, however it is split between feeds.
    fn skip_bom<'b>(&mut self, bytes: &'b [u8]) -> Result<&'b [u8], SseError> {
        let Some(held) = self.bom else {
            return Ok(bytes);
        };
        let matched = bytes
            .iter()
            .zip(&BOM[held..])
            .take_while(|(a, b)| a == b)
            .count();
        if held + matched == BOM.len() {
            self.bom = None;
            return Ok(&bytes[matched..]);
        }
        if matched == bytes.len() {
            self.bom = Some(held + matched);
            return Ok(&[]);
        }
        // Not a BOM after all: the bytes held back from earlier feeds start the first line.
        self.bom = None;
        self.append(&BOM[..held])?;
        Ok(bytes)
    }

    /// Adds bytes to the current line, failing as soon as it grows past `max_line`.
    fn append(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.max_line {
            return Err(SseError::LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn whole_line(&mut self, line: &[u8]) -> Result<(), SseError> {
        if line.len() > self.max_line {
            return Err(SseError::LineTooLong);
        }
        let text = std::str::from_utf8(line).map_err(|_| SseError::InvalidUtf8)?;
        self.process(text)
    }

    fn end_line(&mut self) -> Result<(), SseError> {
        let line = std::mem::take(&mut self.line);
        let text = std::str::from_utf8(&line).map_err(|_| SseError::InvalidUtf8)?;
        self.process(text)?;
        // Keep the allocation for the next line.
        self.line = line;
        self.line.clear();
        Ok(())
    }

    fn process(&mut self, line: &str) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch();
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        // `memchr`, not `split_once(':')`: the generic char search was 3% of a relayed token.
        let (field, value) = match memchr::memchr(b':', line.as_bytes()) {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line, ""),
        };
        match field {
            "data" => self.add_data(value)?,
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            "id" if !value.contains('\0') => {
                self.last_id.clear();
                self.last_id.push_str(value);
            }
            // `retry`, an `id` with NUL, and unknown fields.
            _ => {}
        }
        Ok(())
    }

    fn add_data(&mut self, value: &str) -> Result<(), SseError> {
        // `data` holds each earlier line and its LF, so the joined data would be this long.
        if self.data.len() + value.len() > self.max_event {
            return Err(SseError::EventTooLarge);
        }
        self.data.push_str(value);
        self.data.push('\n');
        Ok(())
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::replace(&mut self.data, std::mem::take(&mut self.spare));
        data.pop();
        self.events.push_back(SseEvent {
            event: if event.is_empty() {
                Cow::Borrowed("message")
            } else {
                Cow::Owned(event)
            },
            data,
            id: (!self.last_id.is_empty()).then(|| self.last_id.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: Cow::Owned(event.into()),
            data: data.into(),
            id: id.map(str::to_string),
        }
    }

    /// Feeds `input` in pieces ending at `cuts`; the events and the first error.
    fn run(
        input: &[u8],
        cuts: &[usize],
        max_line: usize,
        max_event: usize,
    ) -> (Vec<SseEvent>, Option<SseError>) {
        let mut r = SseReader::new(max_line, max_event);
        let mut events = Vec::new();
        let mut error = None;
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
        bounds.sort_unstable();
        bounds.push(input.len());
        let mut at = 0;
        for end in bounds {
            if let Err(e) = r.feed(&input[at..end]) {
                error = Some(e);
                assert_eq!(r.feed(b"data: x\n\n"), Err(e), "stays failed");
                break;
            }
            at = end;
            while let Some(e) = r.next_event() {
                events.push(e);
            }
        }
        while let Some(e) = r.next_event() {
            events.push(e);
        }
        (events, error)
    }

    fn events(input: &str) -> Vec<SseEvent> {
        let (events, error) = run(input.as_bytes(), &[], 1024, 4096);
        assert_eq!(error, None);
        events
    }

    #[test]
    fn a_recycled_buffer_holds_the_next_events_data() {
        let mut r = SseReader::new(64, 64);
        // Two buffers take turns: one being filled while the other is read.
        r.feed(b"data: first\n\n").unwrap();
        let first = r.next_event().unwrap();
        let buffer = first.data.as_ptr();
        r.recycle(first);
        r.feed(b"data: second\n\n").unwrap();
        let second = r.next_event().unwrap();
        assert_ne!(second.data.as_ptr(), buffer);
        r.recycle(second);
        r.feed(b"data: thi\ndata: rd\n\n").unwrap();
        let e = r.next_event().unwrap();
        assert_eq!(e, ev("message", "thi\nrd", None));
        assert_eq!(e.data.as_ptr(), buffer, "the same allocation");
    }

    #[test]
    fn openai_style_stream() {
        let got = events(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n\
             : keep-alive\n\n\
             data: [DONE]\n\n",
        );
        assert_eq!(
            got,
            vec![
                ev(
                    "message",
                    "{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}",
                    None
                ),
                ev("message", "[DONE]", None),
            ]
        );
    }

    #[test]
    fn field_rules() {
        let got = events(
            "event: delta\nid: 7\ndata:a\ndata:  b\ndata\nretry: 10\nfoo: bar\n\n\
             data: second\n\n\
             id\ndata: third\n\n\
             id: x\0y\ndata: fourth\n\n\
             event: empty\ndata\n\n\
             data:x:y\n\n",
        );
        assert_eq!(
            got,
            vec![
                ev("delta", "a\n b\n", Some("7")),
                // The last event ID carries over; `event` does not.
                ev("message", "second", Some("7")),
                // An empty id resets it.
                ev("message", "third", None),
                // An id with NUL is ignored.
                ev("message", "fourth", None),
                ev("empty", "", None),
                ev("message", "x:y", None),
            ]
        );
    }

    #[test]
    fn events_without_data_are_not_dispatched() {
        let got = events("event: ping\n\nid: 3\n\n: comment\n\n\n\ndata: d\n\n");
        // The id of a data-less event still sets the last event ID.
        assert_eq!(got, vec![ev("message", "d", Some("3"))]);
    }

    #[test]
    fn line_ends() {
        let want = vec![ev("message", "a\nb", None), ev("message", "c", None)];
        for input in [
            "data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n",
            "data: a\rdata: b\r\rdata: c\r\r",
            "data: a\ndata: b\r\n\rdata: c\n\r\n",
        ] {
            assert_eq!(events(input), want, "{input:?}");
        }
        // A CR at the end of one feed and an LF at the start of the next: one line end.
        let mut r = SseReader::new(64, 64);
        r.feed(b"data: a\r").unwrap();
        r.feed(b"").unwrap();
        r.feed(b"\n").unwrap();
        assert_eq!(r.next_event(), None);
        r.feed(b"\r").unwrap();
        assert_eq!(r.next_event(), Some(ev("message", "a", None)));
        r.feed(b"\ndata: b\n").unwrap();
        assert_eq!(r.next_event(), None, "the LF after CR is no blank line");
    }

    #[test]
    fn incomplete_event_is_not_dispatched() {
        assert_eq!(
            events("data: a\n\ndata: b\n"),
            vec![ev("message", "a", None)]
        );
        assert_eq!(events("data: a"), vec![]);
    }

    #[test]
    fn leading_bom_is_skipped_once() {
        let input = "\u{feff}data: a\n\n\u{feff}data: b\n\n";
        let got = events(input);
        // The second BOM starts a line whose field is "\u{feff}data": unknown, ignored.
        assert_eq!(got, vec![ev("message", "a", None)]);
        for cut in 0..4 {
            assert_eq!(run(input.as_bytes(), &[cut], 64, 64).0, got);
            assert_eq!(run(input.as_bytes(), &[1, 2, cut], 64, 64).0, got);
        }
        // Something that only starts like a BOM is line content.
        let (got, error) = run(b"\xEF\xBBdata: a\n\n", &[1], 64, 64);
        assert_eq!((got, error), (vec![], Some(SseError::InvalidUtf8)));
        let got = events("\u{feff}\ndata: a\n\n");
        assert_eq!(got, vec![ev("message", "a", None)]);
    }

    #[test]
    fn line_limit_is_enforced_without_buffering() {
        let mut r = SseReader::new(16, 1024);
        r.feed(b"data: 0123456789").unwrap();
        assert_eq!(r.feed(b"x"), Err(SseError::LineTooLong));
        assert_eq!(r.feed(b"\n\n"), Err(SseError::LineTooLong));
        // A huge line fails in the feed that brings the first byte too many.
        let mut r = SseReader::new(1024, 1024);
        assert_eq!(r.feed(&vec![b'a'; 1 << 20]), Err(SseError::LineTooLong));
        assert!(r.line.capacity() < 4096);
        // Exactly the limit is fine, with any line end.
        for end in ["\n", "\r", "\r\n"] {
            let line = format!("data: {}{end}{end}", "x".repeat(10));
            assert_eq!(
                run(line.as_bytes(), &[], 16, 64).0,
                vec![ev("message", &"x".repeat(10), None)]
            );
        }
    }

    #[test]
    fn event_limit() {
        let (got, error) = run(
            b"data: 1234\ndata: 5678\n\ndata: 1234\ndata: 56789\n\n",
            &[],
            64,
            9,
        );
        assert_eq!(got, vec![ev("message", "1234\n5678", None)]);
        assert_eq!(error, Some(SseError::EventTooLarge));
        for e in [
            SseError::EventTooLarge,
            SseError::LineTooLong,
            SseError::InvalidUtf8,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn invalid_utf8() {
        let (got, error) = run(b"data: ok\n\ndata: \xff\n\n", &[], 64, 64);
        assert_eq!(got, vec![ev("message", "ok", None)]);
        assert_eq!(error, Some(SseError::InvalidUtf8));
        // A character split between feeds is fine.
        let input = "data: caf\u{e9} \u{1f600}\n\n".as_bytes();
        for cut in 0..input.len() {
            assert_eq!(
                run(input, &[cut], 64, 64),
                (vec![ev("message", "caf\u{e9} \u{1f600}", None)], None)
            );
        }
    }

    /// One generated event: (event type, data lines, id), and the line end to use.
    type Gen = (Option<String>, Vec<String>, Option<String>);

    fn write_stream(events: &[Gen], ends: &[u8]) -> (Vec<u8>, Vec<SseEvent>) {
        let mut out = Vec::new();
        let mut want = Vec::new();
        let mut last_id: Option<String> = None;
        let mut n = 0;
        let mut end = |out: &mut Vec<u8>| {
            n += 1;
            let end: &[u8] = match ends[n % ends.len()] % 3 {
                // After a CR, an LF would join it into one line end: a writer sends CRLF.
                0 if out.last() == Some(&b'\r') => b"\r\n",
                0 => b"\n",
                1 => b"\r",
                _ => b"\r\n",
            };
            out.extend_from_slice(end);
        };
        for (event, data, id) in events {
            if let Some(e) = event {
                out.extend_from_slice(format!("event: {e}").as_bytes());
                end(&mut out);
            }
            if let Some(i) = id {
                out.extend_from_slice(format!("id:{i}").as_bytes());
                end(&mut out);
                last_id = (!i.is_empty()).then(|| i.clone());
            }
            out.extend_from_slice(b": a comment");
            end(&mut out);
            for line in data {
                out.extend_from_slice(format!("data: {line}").as_bytes());
                end(&mut out);
            }
            end(&mut out);
            if !data.is_empty() {
                want.push(SseEvent {
                    event: event
                        .clone()
                        .filter(|e| !e.is_empty())
                        .unwrap_or_else(|| "message".into())
                        .into(),
                    data: data.join("\n"),
                    id: last_id.clone(),
                });
            }
        }
        (out, want)
    }

    proptest::proptest! {
        #[test]
        fn written_streams_read_back_whatever_the_split(
            gen in proptest::collection::vec((
                proptest::option::of("[a-z_]{0,8}"),
                proptest::collection::vec("[^\r\n]{0,12}", 0..4),
                proptest::option::of("[0-9a-z]{0,4}"),
            ), 0..6),
            ends in proptest::collection::vec(proptest::num::u8::ANY, 1..8),
            cuts in proptest::collection::vec(0usize..400, 0..8),
            bom in proptest::bool::ANY,
        ) {
            let (mut input, want) = write_stream(&gen, &ends);
            if bom {
                input.splice(0..0, BOM.iter().copied());
            }
            proptest::prop_assert_eq!(run(&input, &[], 1024, 4096), (want.clone(), None));
            proptest::prop_assert_eq!(run(&input, &cuts, 1024, 4096), (want, None));
        }

        #[test]
        fn any_split_of_any_bytes_gives_the_same_result(
            input in proptest::collection::vec(proptest::sample::select(b"da:t \r\n\xEF\xBB\xBF\xffie".to_vec()), 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..8),
            max_line in 0usize..16,
            max_event in 0usize..16,
        ) {
            let whole = run(&input, &[], max_line, max_event);
            let one_by_one: Vec<usize> = (0..input.len()).collect();
            proptest::prop_assert_eq!(&run(&input, &cuts, max_line, max_event), &whole);
            proptest::prop_assert_eq!(&run(&input, &one_by_one, max_line, max_event), &whole);
        }
    }
}
