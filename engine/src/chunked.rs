//! Decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 section 7.1).
//!
//! Responsible for: turning chunked bytes into body bytes, incrementally (any split of the
//! input gives the same result), with the limits of CONVENTIONS section 3: a chunk-size line
//! (hex digits, then extensions) longer than 4 KiB or a size that overflows is an error, as is
//! anything but CRLF after a size line or chunk data. Trailers are read and ignored (bounded).
//! Not responsible for: the body size limit (the caller checks the running total) or I/O.

use std::fmt;

/// Longest chunk-size line (size, extensions), without its CRLF.
pub const MAX_SIZE_LINE: usize = 4 * 1024;
/// Largest trailer section accepted (and ignored).
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A size line with no hex digit, or another byte where a digit was expected.
    BadSize,
    /// The size does not fit in 64 bits.
    SizeOverflow,
    /// The size line is longer than [`MAX_SIZE_LINE`].
    SizeLineTooLong,
    /// Something other than CRLF ended a line or chunk data.
    BadLineEnding,
    /// The trailer section is larger than [`MAX_TRAILER_BYTES`].
    TrailersTooLarge,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkError::BadSize => "invalid chunk size",
            ChunkError::SizeOverflow => "chunk size overflows",
            ChunkError::SizeLineTooLong => "chunk size line too long",
            ChunkError::BadLineEnding => "chunk lines must end in CRLF",
            ChunkError::TrailersTooLarge => "chunked trailers too large",
        })
    }
}

impl std::error::Error for ChunkError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits; `digits` seen so far.
    Size { digits: usize },
    /// After the digits: `;` extensions up to CR.
    Extension,
    /// Expecting LF after the size line's CR.
    SizeLf,
    /// Inside chunk data with this many bytes left.
    Data(u64),
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// Expecting LF after a trailer line's CR; `last` when the line was empty.
    TrailerLf { last: bool },
    /// The body is complete.
    Done,
}

/// Incremental chunked decoder.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    line_len: usize,
    trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            line_len: 0,
            trailer_bytes: 0,
        }
    }

    /// True once the terminating chunk and trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input`, appending body bytes to `out`. Returns how many input bytes were
    /// consumed; it stops right after the end of the body, so the rest is the next request.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let take = left.min((input.len() - i) as u64) as usize;
                out.extend_from_slice(&input[i..i + take]);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        self.state = match self.state {
            State::Size { digits } => self.size_byte(b, digits)?,
            State::Extension => {
                self.bump_line()?;
                if b == b'\r' {
                    State::SizeLf
                } else if b == b'\n' {
                    return Err(ChunkError::BadLineEnding);
                } else {
                    State::Extension
                }
            }
            State::SizeLf => self.after_size_line(b)?,
            State::DataCr => expect(b, b'\r', State::DataLf)?,
            State::DataLf => expect(b, b'\n', State::Size { digits: 0 })?,
            State::TrailerStart if b == b'\r' => State::TrailerLf { last: true },
            State::TrailerStart | State::Trailer => {
                self.bump_trailer()?;
                match b {
                    b'\r' => State::TrailerLf { last: false },
                    b'\n' => return Err(ChunkError::BadLineEnding),
                    _ => State::Trailer,
                }
            }
            State::TrailerLf { last } => {
                let next = if last {
                    State::Done
                } else {
                    State::TrailerStart
                };
                expect(b, b'\n', next)?
            }
            State::Data(_) | State::Done => self.state,
        };
        Ok(())
    }

    fn size_byte(&mut self, b: u8, digits: usize) -> Result<State, ChunkError> {
        if digits == 0 {
            self.size = 0;
            self.line_len = 0;
        }
        self.bump_line()?;
        if let Some(d) = hex_value(b) {
            if self.size >> 60 != 0 {
                return Err(ChunkError::SizeOverflow);
            }
            self.size = (self.size << 4) | u64::from(d);
            return Ok(State::Size { digits: digits + 1 });
        }
        match (digits, b) {
            (0, _) => Err(ChunkError::BadSize),
            (_, b';') => Ok(State::Extension),
            (_, b'\r') => Ok(State::SizeLf),
            (_, b'\n') => Err(ChunkError::BadLineEnding),
            _ => Err(ChunkError::BadSize),
        }
    }

    fn after_size_line(&mut self, b: u8) -> Result<State, ChunkError> {
        if b != b'\n' {
            return Err(ChunkError::BadLineEnding);
        }
        Ok(if self.size == 0 {
            State::TrailerStart
        } else {
            State::Data(self.size)
        })
    }

    fn bump_line(&mut self) -> Result<(), ChunkError> {
        self.line_len += 1;
        if self.line_len > MAX_SIZE_LINE + 1 {
            return Err(ChunkError::SizeLineTooLong);
        }
        Ok(())
    }

    fn bump_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ChunkError::TrailersTooLarge);
        }
        Ok(())
    }
}

fn expect(b: u8, want: u8, next: State) -> Result<State, ChunkError> {
    if b == want {
        Ok(next)
    } else {
        Err(ChunkError::BadLineEnding)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let n = d.decode(input, &mut out)?;
        Ok((out, n, d.is_done()))
    }

    #[test]
    fn decodes_and_stops_at_the_end() {
        let input = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: y\r\n\r\nGET /";
        let (out, n, done) = decode_all(input).unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(&input[n..], b"GET /");
    }

    #[test]
    fn any_split_gives_the_same_body() {
        let input = b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
        for cut in 0..input.len() {
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let a = d.decode(&input[..cut], &mut out).unwrap();
            assert_eq!(a, cut);
            let b = d.decode(&input[cut..], &mut out).unwrap();
            assert_eq!(a + b, input.len());
            assert!(d.is_done());
            assert_eq!(out, b"abc0123456789");
        }
    }

    #[test]
    fn rejections() {
        let cases: &[(&[u8], ChunkError)] = &[
            (b"\r\n", ChunkError::BadSize),
            (b"0x5\r\n", ChunkError::BadSize),
            (b"+5\r\n", ChunkError::BadSize),
            (b" 5\r\n", ChunkError::BadSize),
            (b"5\nhello\r\n", ChunkError::BadLineEnding),
            (b"5\r\nhello\n0\r\n\r\n", ChunkError::BadLineEnding),
            (b"5\r\nhelloXY", ChunkError::BadLineEnding),
            (b"0\r\n\n", ChunkError::BadLineEnding),
            (b"10000000000000000\r\n", ChunkError::SizeOverflow),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_all(input).map(|_| ()),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn largest_size_is_accepted_as_a_size() {
        let mut d = ChunkedDecoder::new();
        let n = d
            .decode(b"ffffffffffffffff\r\nab", &mut Vec::new())
            .unwrap();
        assert_eq!(n, 20);
    }

    #[test]
    fn unbounded_extension_is_refused() {
        let mut input = b"5;".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_SIZE_LINE));
        assert_eq!(
            decode_all(&input).map(|_| ()),
            Err(ChunkError::SizeLineTooLong)
        );
        let mut ok = b"5;".to_vec();
        ok.extend(std::iter::repeat_n(b'x', MAX_SIZE_LINE - 3));
        ok.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(decode_all(&ok).unwrap().0, b"hello");
    }

    #[test]
    fn trailers_are_bounded() {
        let mut input = b"0\r\nX: ".to_vec();
        input.extend(std::iter::repeat_n(b'y', MAX_TRAILER_BYTES));
        assert_eq!(
            decode_all(&input).map(|_| ()),
            Err(ChunkError::TrailersTooLarge)
        );
    }

    proptest::proptest! {
        #[test]
        fn round_trip(chunks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 1..64), 0..8),
                      split in 0usize..1000) {
            let mut wire = Vec::new();
            let mut body = Vec::new();
            for c in &chunks {
                wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
                body.extend_from_slice(c);
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let cut = split % (wire.len() + 1);
            let mut d = ChunkedDecoder::new();
            let mut out = Vec::new();
            let a = d.decode(&wire[..cut], &mut out).unwrap();
            let b = d.decode(&wire[cut..], &mut out).unwrap();
            proptest::prop_assert_eq!(a + b, wire.len());
            proptest::prop_assert!(d.is_done());
            proptest::prop_assert_eq!(out, body);
        }

        #[test]
        fn never_panics(input in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut d = ChunkedDecoder::new();
            let _ = d.decode(&input, &mut Vec::new());
        }
    }
}
