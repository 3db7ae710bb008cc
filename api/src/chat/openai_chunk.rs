//! One chunk of a streamed chat completion (the JSON of one SSE `data:` line), as far as
//! the `openai` provider reads it.
//!
//! Responsible for: the chunk's types and reading them, with serde ([`parse_with_serde`]) and
//! first with a reader for the shape nearly every token comes in ([`scan`]):
//! `{"id":..,"choices":[{"index":0,"delta":{"content":".."},"finish_reason":null}]}` with
//! any simple members beside. Serde's generic reader was a third of the instructions of a
//! relayed token (callgrind); this one reads the same bytes in one pass. Not responsible for:
//! any other shape. [`scan`] declines (returns `None`) on tool calls, usage, an error, a
//! second choice, an unknown member that is an object or array, a duplicate member, a key
//! with an escape, anything invalid; [`parse`] then reads the chunk with serde, so what
//! [`scan`] accepts is exactly what serde accepts, with the same result (a property test and
//! the `openai_chunk` fuzz target compare the two).

use std::borrow::Cow;

use serde::Deserialize;

/// One streamed chunk, as far as it is read.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct Chunk<'a> {
    /// Its first choice.
    #[serde(borrow, default)]
    pub choices: First<Choice<'a>>,
    /// Token counts (the last chunk, when the upstream reports them).
    #[serde(default)]
    pub usage: Option<UsageIn>,
    /// An error the upstream reports mid-stream.
    #[serde(borrow, default)]
    pub error: Option<ErrorIn<'a>>,
}

/// The first element of a JSON array (none for `[]` or `null`), the others read past: a
/// chunk has one choice, and a `Vec` for it was an allocation per relayed token.
#[derive(Debug, PartialEq)]
pub struct First<T>(pub Option<T>);

impl<T> Default for First<T> {
    fn default() -> Self {
        First(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_option(FirstVisitor(std::marker::PhantomData))
    }
}

struct FirstVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for FirstVisitor<T> {
    type Value = First<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(First(None))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(First(None))
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let first = seq.next_element()?;
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(First(first))
    }
}

/// A choice: what it adds, and why it ended.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct Choice<'a> {
    /// What this chunk adds.
    #[serde(borrow, default)]
    pub delta: Option<Delta<'a>>,
    /// Why the answer ended (its last chunk).
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// What a chunk adds to the answer.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct Delta<'a> {
    /// Text.
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    /// Fragments of tool calls.
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<CallPart<'a>>>,
}

/// A streamed fragment of a tool call.
#[derive(Debug, PartialEq, Deserialize)]
pub struct CallPart<'a> {
    /// Which call of the answer (its position).
    #[serde(default)]
    pub index: Option<u64>,
    /// The call's id (its first fragment).
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    /// Name and arguments so far.
    #[serde(borrow, default)]
    pub function: Option<FunctionPart<'a>>,
}

/// A fragment of a tool call's function.
#[derive(Debug, PartialEq, Deserialize)]
pub struct FunctionPart<'a> {
    /// The name (its first fragment).
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    /// More of the JSON arguments.
    #[serde(borrow, default)]
    pub arguments: Option<Cow<'a, str>>,
}

/// Token counts an upstream reports.
#[derive(Debug, PartialEq, Deserialize)]
pub struct UsageIn {
    /// Input tokens.
    pub prompt_tokens: Option<u64>,
    /// Output tokens.
    pub completion_tokens: Option<u64>,
    /// Both.
    pub total_tokens: Option<u64>,
}

/// An error an upstream reports in its stream.
#[derive(Debug, PartialEq, Deserialize)]
pub struct ErrorIn<'a> {
    /// Its message.
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
}

/// Reads a chunk: [`scan`] first, serde when it declines.
pub fn parse(data: &str) -> Result<Chunk<'_>, serde_json::Error> {
    match scan(data) {
        Some(chunk) => Ok(chunk),
        None => parse_with_serde(data),
    }
}

/// Reads a chunk with serde (any shape).
pub fn parse_with_serde(data: &str) -> Result<Chunk<'_>, serde_json::Error> {
    serde_json::from_str(data)
}

/// Reads a chunk of the usual shape in one pass; `None` for any other (see the module doc).
pub fn scan(data: &str) -> Option<Chunk<'_>> {
    let mut c = Cursor { s: data, i: 0 };
    let mut chunk = Chunk::default();
    let mut seen = [false; 3];
    c.object(|c, key| match key {
        "choices" => {
            once(&mut seen[0])?;
            chunk.choices = First(c.first_choice()?);
            Some(())
        }
        // Serde reads a present value for these two; only `null` is read here.
        "usage" => once(&mut seen[1]).and_then(|()| c.null()),
        "error" => once(&mut seen[2]).and_then(|()| c.null()),
        _ => c.skip_simple(),
    })?;
    c.ws();
    // Serde refuses trailing characters.
    (c.i == data.len()).then_some(chunk)
}

/// Marks a member seen; `None` the second time (serde refuses a duplicate member).
fn once(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

/// A position in a chunk's text.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    /// Skips JSON whitespace.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.i).copied()
    }

    /// Consumes `b` (after whitespace).
    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }

    /// Consumes the literal `word` when it comes next.
    fn literal(&mut self, word: &str) -> Option<()> {
        self.ws();
        let rest = self.bytes().get(self.i..)?;
        rest.starts_with(word.as_bytes())
            .then(|| self.i += word.len())
    }

    fn null(&mut self) -> Option<()> {
        self.literal("null")
    }

    /// Whether `null` comes next (consumed if so).
    fn is_null(&mut self) -> bool {
        self.null().is_some()
    }

    /// An object's members, each key handed to `member` with the cursor before its value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.key()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A member's key: a string without escapes (serde would unescape one to match it).
    fn key(&mut self) -> Option<&'a str> {
        match self.string()? {
            Cow::Borrowed(k) => Some(k),
            Cow::Owned(_) => None,
        }
    }

    /// A string. One without escapes is borrowed; one with them is read by serde, whose
    /// escape rules (and refusals) then apply to it alone.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let (b, start) = (self.bytes(), self.i);
        let (mut i, mut escaped) = (start, false);
        loop {
            let run = b.get(i..)?.iter().position(|&c| STOPS[c as usize])?;
            i += run;
            match b[i] {
                b'"' => break,
                // A backslash: the byte it escapes is passed over (serde checks the escape).
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                // Serde refuses control characters in a string.
                _ => return None,
            }
        }
        self.i = i + 1;
        if !escaped {
            return Some(Cow::Borrowed(&self.s[start..self.i - 1]));
        }
        serde_json::from_str::<String>(&self.s[start - 1..self.i])
            .ok()
            .map(Cow::Owned)
    }

    /// A string or `null`.
    fn opt_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.is_null() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A string, number, `true`, `false` or `null`, read past.
    fn skip_simple(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.null(),
            _ => self.number(),
        }
    }

    /// A JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        self.ws();
        let b = self.bytes();
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(b, i),
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            let end = digits(b, i + 1);
            if end == i + 1 {
                return None;
            }
            i = end;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let end = digits(b, i);
            if end == i {
                return None;
            }
            i = end;
        }
        self.i = i;
        Some(())
    }

    /// The first choice of `choices` (an array of one object, or `null`, or `[]`).
    fn first_choice(&mut self) -> Option<Option<Choice<'a>>> {
        if self.is_null() {
            return Some(None);
        }
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(None);
        }
        let choice = self.choice()?;
        // A second choice: serde reads it past (any value); not done here.
        self.eat(b']')?;
        Some(Some(choice))
    }

    fn choice(&mut self) -> Option<Choice<'a>> {
        let mut choice = Choice::default();
        let mut seen = [false; 2];
        self.object(|c, key| match key {
            "delta" => {
                once(&mut seen[0])?;
                choice.delta = if c.is_null() { None } else { Some(c.delta()?) };
                Some(())
            }
            "finish_reason" => {
                once(&mut seen[1])?;
                choice.finish_reason = c.opt_string()?;
                Some(())
            }
            _ => c.skip_simple(),
        })?;
        Some(choice)
    }

    fn delta(&mut self) -> Option<Delta<'a>> {
        let mut delta = Delta::default();
        let mut seen = [false; 2];
        self.object(|c, key| match key {
            "content" => {
                once(&mut seen[0])?;
                delta.content = c.opt_string()?;
                Some(())
            }
            // Tool calls are read by serde; only `null` is read here.
            "tool_calls" => once(&mut seen[1]).and_then(|()| c.null()),
            _ => c.skip_simple(),
        })?;
        Some(delta)
    }
}

/// The bytes that stop a string's run: its end, an escape, a control character.
static STOPS: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The end of the run of ASCII digits starting at `i`.
fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const USUAL: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_4","usage":null,"choices":[{"index":0,"delta":{"role":"assistant","content":"Hello","refusal":null},"logprobs":null,"finish_reason":null}]}"#;

    #[test]
    fn the_usual_chunk_is_scanned_as_serde_reads_it() {
        let chunk = scan(USUAL).expect("the usual shape");
        assert_eq!(Ok(&chunk), parse_with_serde(USUAL).as_ref().map_err(|_| ()));
        let delta = chunk.choices.0.and_then(|c| c.delta).expect("a delta");
        assert_eq!(delta.content.as_deref(), Some("Hello"));
        assert!(matches!(delta.content, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn escapes_in_a_value_are_read_as_serde_reads_them() {
        let data = r#"{"choices":[{"delta":{"content":"a\n\"b\" \u00e9\ud83d\ude00"},"finish_reason":"st\u006fp"}]}"#;
        let chunk = scan(data).expect("escapes in values are read");
        assert_eq!(Ok(chunk), parse_with_serde(data).map_err(|_| ()));
    }

    #[test]
    fn other_shapes_are_left_to_serde() {
        for data in [
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
            r#"{"error":{"message":"overloaded"}}"#,
            r#"{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}"#,
            r#"{"x":{"nested":1},"choices":[]}"#,
            r#"{"choices":[],"choices":[]}"#,
            r#"{"cho\u0069ces":[{"delta":{"content":"a"}}]}"#,
            r#"{"choices":[{"delta":{"content":"a"}}]} x"#,
            r#"{"choices":[{"delta":{"content":"a"},"index":01}]}"#,
            "{\"choices\":[{\"delta\":{\"content\":\"a\u{1}\"}}]}",
            r#"[{"delta":{"content":"a"}}]"#,
        ] {
            assert!(scan(data).is_none(), "{data}");
        }
    }

    #[test]
    fn members_may_be_null_empty_or_spaced() {
        for data in [
            "{}",
            r#"{"choices":null}"#,
            r#"{"choices":[]}"#,
            r#" { "choices" : [ { "delta" : null , "finish_reason" : "stop" } ] } "#,
            r#"{"choices":[{"delta":{"content":null,"tool_calls":null}}],"error":null}"#,
            r#"{"n":-0.5e+10,"m":0,"t":true,"f":false,"choices":[{"index":12,"delta":{}}]}"#,
        ] {
            let chunk = scan(data).unwrap_or_else(|| panic!("scanned: {data}"));
            assert_eq!(Ok(chunk), parse_with_serde(data).map_err(|_| ()), "{data}");
        }
    }

    /// A value among those chunks hold, valid or not.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null"),
            Just("nul"),
            Just("true"),
            Just("false"),
            Just("0"),
            Just("-1.5e3"),
            Just("01"),
            Just("1."),
            Just("2E+"),
            Just("-"),
            Just("\"a b\""),
            Just("\"é\""),
            Just("\"\\n\\\"\""),
            Just("\"\\u00e9\""),
            Just("\"\\ud800\""),
            Just("\"\\q\""),
            Just("\"\u{7}\""),
            Just("\"unterminated"),
            Just("{}"),
            Just("[]"),
            Just("[1]"),
        ]
        .prop_map(str::to_string)
    }

    /// An object of `members` (each a key and a value), in any order, any repeated, with
    /// whitespace anywhere and sometimes a broken separator.
    fn object(members: Vec<(&'static str, BoxedStrategy<String>)>) -> BoxedStrategy<String> {
        let member = proptest::sample::select((0..members.len()).collect::<Vec<_>>());
        let values: Vec<_> = members.iter().map(|(_, v)| v.clone()).collect();
        let keys: Vec<_> = members.iter().map(|(k, _)| *k).collect();
        proptest::collection::vec((member, any::<u8>()), 0..5)
            .prop_flat_map(move |picks| {
                let parts: Vec<_> = picks
                    .iter()
                    .map(|&(i, ws)| (Just((keys[i], ws)), values[i].clone()))
                    .collect();
                parts
            })
            .prop_map(|parts| {
                let sep = |ws: u8| match ws % 16 {
                    0 => " ",
                    1 => "\n\t",
                    2 => ";",
                    _ => "",
                };
                let body: Vec<String> = parts
                    .iter()
                    .map(|((k, ws), v)| format!("{}\"{k}\"{}:{v}", sep(*ws), sep(ws / 16)))
                    .collect();
                format!("{{{}}}", body.join(","))
            })
            .boxed()
    }

    /// Text shaped like a chunk, valid or not.
    fn chunk_like() -> impl Strategy<Value = String> {
        let v = || value().boxed();
        let delta = object(vec![
            ("content", v()),
            ("content", Just("\"tok \"".to_string()).boxed()),
            ("role", v()),
            (
                "tool_calls",
                prop_oneof![
                    Just("null".to_string()),
                    Just(r#"[{"index":0}]"#.to_string())
                ]
                .boxed(),
            ),
        ]);
        let choice = object(vec![
            ("delta", prop_oneof![delta.clone(), v()].boxed()),
            ("delta", delta),
            ("finish_reason", v()),
            ("index", v()),
        ]);
        let choices = prop_oneof![
            choice.clone().prop_map(|c| format!("[{c}]")),
            (choice.clone(), choice).prop_map(|(a, b)| format!("[{a},{b}]")),
            v(),
        ]
        .boxed();
        let top = object(vec![
            ("choices", choices.clone()),
            ("choices", choices),
            ("id", v()),
            (
                "usage",
                prop_oneof![
                    Just("null".to_string()),
                    Just(r#"{"prompt_tokens":1}"#.to_string())
                ]
                .boxed(),
            ),
            ("error", v()),
        ]);
        (
            top,
            prop_oneof![Just(""), Just(" \n"), Just(" x"), Just("}")],
        )
            .prop_map(|(t, tail)| format!("{t}{tail}"))
    }

    fn usual_with(content: &str, finish: &str) -> String {
        format!(
            r#"{{"id":"c","choices":[{{"index":0,"delta":{{"content":{content}}},"finish_reason":{finish}}}]}}"#
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Whatever the scan accepts, serde accepts with the same chunk.
        #[test]
        fn the_scan_agrees_with_serde(data in chunk_like()) {
            if let Some(chunk) = scan(&data) {
                prop_assert_eq!(Ok(chunk), parse_with_serde(&data).map_err(|e| e.to_string()), "{}", data);
            }
        }

        /// The usual shape with any content and finish reason is scanned, as serde reads it.
        #[test]
        fn any_text_in_the_usual_shape_is_scanned(text in any::<String>(), stop in proptest::option::of("[a-z_]{0,12}")) {
            let content = serde_json::to_string(&text).unwrap();
            let finish = stop.map_or("null".to_string(), |s| serde_json::to_string(&s).unwrap());
            let data = usual_with(&content, &finish);
            let chunk = scan(&data);
            prop_assert!(chunk.is_some(), "{}", data);
            prop_assert_eq!(Ok(chunk.unwrap()), parse_with_serde(&data).map_err(|e| e.to_string()));
        }
    }
}
