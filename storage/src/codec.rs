//! Binary payload encoding: LEB128 varints, length-prefixed byte strings and UTF-8
//! strings, fixed-width little-endian integers, and the [`Codec`] trait that gives every
//! stored type exactly one binary form.
//!
//! Responsible for: turning values into bytes and back, bounds-checked, without allocating
//! on the decode side unless the caller asks for an owned value; the one form of `Option`
//! (a byte 0/1, then the value), of `Vec` (a varint count, then the items) and of tag enums
//! (`codec_enum!`, one byte). Not responsible for: record framing or checksums
//! (`record`), or what the fields mean (`mutation`, `model`).
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
}

/// A value with exactly one binary form in the log, as rustls's `Codec` gives its wire
/// types: `decode` reads back what `encode` wrote. Structs list their fields once, in
/// format order (`codec_struct!`); tag enums are defined once with their tags
/// (`codec_enum!`). The golden files (`tests/fixtures/v2/golden`) pin the result.
///
/// Every encoding takes at least one byte: that lets `Vec<T>` refuse a count larger than
/// the bytes left before it allocates.
pub trait Codec<'a>: Sized {
    /// Appends the value.
    fn encode(&self, e: &mut Encoder);
    /// Reads one value; the decoder stays after it.
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError>;
}

impl Codec<'_> for u8 {
    fn encode(&self, e: &mut Encoder) {
        e.u8(*self)
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.u8()
    }
}

impl Codec<'_> for bool {
    fn encode(&self, e: &mut Encoder) {
        e.bool(*self)
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.bool()
    }
}

/// A varint that must fit in 32 bits.
impl Codec<'_> for u32 {
    fn encode(&self, e: &mut Encoder) {
        e.varint(u64::from(*self))
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.varint_u32()
    }
}

/// A varint.
impl Codec<'_> for u64 {
    fn encode(&self, e: &mut Encoder) {
        e.varint(*self)
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.varint()
    }
}

impl Codec<'_> for f64 {
    fn encode(&self, e: &mut Encoder) {
        e.f64(*self)
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.f64()
    }
}

impl Codec<'_> for String {
    fn encode(&self, e: &mut Encoder) {
        e.str(self)
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        d.string()
    }
}

/// The same bytes as `String`, borrowed from the payload.
impl<'a> Codec<'a> for &'a str {
    fn encode(&self, e: &mut Encoder) {
        e.str(self)
    }
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        d.str()
    }
}

/// A digest: 32 raw bytes, no length.
impl Codec<'_> for [u8; 32] {
    fn encode(&self, e: &mut Encoder) {
        e.raw(self)
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let mut a = [0u8; 32];
        a.copy_from_slice(d.take(32)?);
        Ok(a)
    }
}

/// A presence byte (0 or 1), then the value.
impl<'a, T: Codec<'a>> Codec<'a> for Option<T> {
    fn encode(&self, e: &mut Encoder) {
        match self {
            Some(v) => {
                e.u8(1);
                v.encode(e);
            }
            None => e.u8(0),
        }
    }
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        Ok(if d.bool()? { Some(T::decode(d)?) } else { None })
    }
}

/// A varint count, then the items (so `Vec<u8>` is a length-prefixed byte string).
impl<'a, T: Codec<'a>> Codec<'a> for Vec<T> {
    fn encode(&self, e: &mut Encoder) {
        encode_list(self, e)
    }
    fn decode(d: &mut Decoder<'a>) -> Result<Self, DecodeError> {
        let n = d.varint()?;
        // Each item takes at least one byte: a larger count is damage, refused before a
        // hostile count can reserve gigabytes.
        if n > d.remaining() as u64 {
            return Err(DecodeError::BadLength);
        }
        (0..n).map(|_| T::decode(d)).collect()
    }
}

/// Writes a slice in the form of `Vec<T>`.
pub fn encode_list<'a, T: Codec<'a>>(items: &[T], e: &mut Encoder) {
    e.varint(items.len() as u64);
    for item in items {
        item.encode(e);
    }
}

/// Implements [`Codec`] for a struct from its field list, written once: the fields are
/// encoded and decoded in the listed order, which is the format. Leaving a field out does
/// not compile.
macro_rules! codec_struct {
    ($name:ident { $($field:ident),+ $(,)? }) => {
        impl<'a> $crate::codec::Codec<'a> for $name {
            fn encode(&self, e: &mut $crate::codec::Encoder) {
                $( $crate::codec::Codec::encode(&self.$field, e); )+
            }
            fn decode(
                d: &mut $crate::codec::Decoder<'a>,
            ) -> Result<Self, $crate::codec::DecodeError> {
                // Struct expression fields are evaluated in the order written.
                Ok($name { $( $field: $crate::codec::Codec::decode(d)?, )+ })
            }
        }
    };
}
pub(crate) use codec_struct;

/// Defines a tag enum once, as rustls's `enum_builder!` does: the enum with its tag bytes
/// as discriminants, `tag`/`from_tag`/`ALL`, and a one-byte [`Codec`] whose unknown tags
/// are [`DecodeError::BadTag`] naming the enum. A tag keeps its meaning forever.
macro_rules! codec_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $tag:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $tag, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            #[allow(dead_code)] // tests use it; a private enum may not
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The byte that stands for this variant.
            pub const fn tag(self) -> u8 {
                self as u8
            }

            /// The variant a byte stands for, if any.
            pub const fn from_tag(tag: u8) -> Option<Self> {
                match tag {
                    $( $tag => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl<'a> $crate::codec::Codec<'a> for $name {
            fn encode(&self, e: &mut $crate::codec::Encoder) {
                e.u8(self.tag())
            }
            fn decode(
                d: &mut $crate::codec::Decoder<'a>,
            ) -> Result<Self, $crate::codec::DecodeError> {
                let tag = d.u8()?;
                Self::from_tag(tag).ok_or($crate::codec::DecodeError::BadTag {
                    what: $what,
                    tag: u64::from(tag),
                })
            }
        }
    };
}
pub(crate) use codec_enum;
