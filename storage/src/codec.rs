//! Binary payload encoding primitives: LEB128 varints, length-prefixed byte strings and
//! UTF-8 strings, fixed-width little-endian integers.
//!
//! Responsible for: turning scalar values into bytes and back, bounds-checked, without
//! allocating on the decode side unless the caller asks for an owned value.
//! Not responsible for: record framing or checksums (`record`), or what the fields mean
//! (`mutation`, `model`).
//!
//! Why this encoding: replay speed is bounded by decoding, and a varint + length-prefixed
//! layout decodes in one forward pass with no lookahead, no escaping and no field names.

use std::fmt;

/// A decoding failure: the bytes do not form a value of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended in the middle of a value.
    UnexpectedEnd,
    /// A varint ran over 10 bytes or over 64 bits.
    VarintOverflow,
    /// A string field was not valid UTF-8.
    InvalidUtf8,
    /// An enum tag or flag byte had a value this version does not know.
    BadTag {
        /// Which field carried the tag.
        what: &'static str,
        /// The tag value found.
        tag: u64,
    },
    /// A length prefix larger than the remaining input.
    BadLength,
    /// Bytes were left over after the value was complete.
    TrailingBytes,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnexpectedEnd => write!(f, "payload ends in the middle of a value"),
            DecodeError::VarintOverflow => write!(f, "varint longer than 64 bits"),
            DecodeError::InvalidUtf8 => write!(f, "string field is not valid UTF-8"),
            DecodeError::BadTag { what, tag } => write!(f, "unknown {what} tag {tag}"),
            DecodeError::BadLength => write!(f, "length prefix runs past the payload"),
            DecodeError::TrailingBytes => write!(f, "trailing bytes after the value"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Appends encoded values to a byte vector.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An encoder writing into `buf` (appending; existing bytes are kept).
    pub fn with_buffer(buf: Vec<u8>) -> Self {
        Encoder { buf }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Number of bytes in the buffer.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// One raw byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A boolean as one byte, 0 or 1.
    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    /// An unsigned LEB128 varint (1 to 10 bytes).
    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// A 64-bit float by its IEEE-754 bits, 8 bytes little-endian.
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    /// Raw bytes with no length prefix (the reader must know the length).
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// An optional string: a presence byte, then the string.
    pub fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }

    /// An optional varint: a presence byte, then the value.
    pub fn opt_varint(&mut self, v: Option<u64>) {
        match v {
            Some(x) => {
                self.u8(1);
                self.varint(x);
            }
            None => self.u8(0),
        }
    }

    /// A list of strings: a count, then each string.
    pub fn str_list(&mut self, v: &[String]) {
        self.varint(v.len() as u64);
        for s in v {
            self.str(s);
        }
    }
}

/// Reads encoded values from a byte slice, front to back.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not consumed yet (bounds element counts before allocating for them).
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    /// Exactly `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::BadLength)?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(DecodeError::UnexpectedEnd)?;
        self.pos = end;
        Ok(s)
    }

    /// One raw byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::UnexpectedEnd)?;
        self.pos += 1;
        Ok(b)
    }

    /// A boolean byte; anything but 0 or 1 is an error.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(DecodeError::BadTag {
                what: "bool",
                tag: t as u64,
            }),
        }
    }

    /// An unsigned LEB128 varint.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError::VarintOverflow);
            }
        }
    }

    /// A varint that must fit in a u32.
    pub fn varint_u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::VarintOverflow)
    }

    /// A 64-bit float.
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_bits(u64::from_le_bytes(a)))
    }

    /// A length-prefixed byte string, borrowed.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::BadLength)?;
        if n > self.buf.len() - self.pos {
            return Err(DecodeError::BadLength);
        }
        self.take(n)
    }

    /// A length-prefixed UTF-8 string, borrowed.
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// A length-prefixed UTF-8 string, owned.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    /// An optional owned string.
    pub fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        Ok(if self.bool()? {
            Some(self.string()?)
        } else {
            None
        })
    }

    /// An optional varint.
    pub fn opt_varint(&mut self) -> Result<Option<u64>, DecodeError> {
        Ok(if self.bool()? {
            Some(self.varint()?)
        } else {
            None
        })
    }

    /// A list of owned strings.
    pub fn str_list(&mut self) -> Result<Vec<String>, DecodeError> {
        let n = self.varint()?;
        // Each string takes at least one byte, so a count past the remaining input is corrupt;
        // checking first keeps a hostile count from reserving gigabytes.
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(DecodeError::BadLength);
        }
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            v.push(self.string()?);
        }
        Ok(v)
    }

    /// A 32-byte digest (SHA-256), raw.
    pub fn digest(&mut self) -> Result<[u8; 32], DecodeError> {
        let mut d = [0u8; 32];
        d.copy_from_slice(self.take(32)?);
        Ok(d)
    }
}
