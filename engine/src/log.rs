//! The server's own messages on stderr, as text or as JSON lines.
//!
//! Responsible for: one process-wide choice of format ([`set_format`], from `--log-format`),
//! writing one message per line ([`log`], and the [`log_info!`](crate::log_info),
//! [`log_warn!`](crate::log_warn) and [`log_error!`](crate::log_error) macros), JSON string
//! escaping and RFC 3339 timestamps (shared with the access log). Text is the historical
//! `halyard: message` (`halyard: warning: message`); JSON is `{"time","level","msg"}`.
//! Not responsible for: the access log (see `access_log`), or what is worth saying.

use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

/// How messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `halyard: message`, as the server always wrote.
    Text,
    /// `{"time":"…","level":"info","msg":"…"}`.
    Json,
}

/// How bad a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal operation.
    Info,
    /// Something the operator should look at; the server goes on.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Why a `--log-format` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFormatError(pub String);

impl std::fmt::Display for ParseFormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expected text or json, got {:?}", self.0)
    }
}

impl std::error::Error for ParseFormatError {}

impl std::str::FromStr for Format {
    type Err = ParseFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(ParseFormatError(other.to_string())),
        }
    }
}

/// 0 = text, 1 = json. A global: messages come from every thread, and the format is chosen
/// once at start.
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Chooses the format of every later message.
pub fn set_format(format: Format) {
    FORMAT.store(u8::from(format == Format::Json), Ordering::Relaxed);
}

/// The format in use.
pub fn format() -> Format {
    if FORMAT.load(Ordering::Relaxed) == 1 {
        Format::Json
    } else {
        Format::Text
    }
}

/// Writes one message on stderr, in one `write` so that lines of different threads do not
/// interleave.
pub fn log(level: Level, msg: &str) {
    let line = render(format(), level, msg, SystemTime::now());
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The line for a message (ending in a newline).
pub fn render(format: Format, level: Level, msg: &str, at: SystemTime) -> String {
    match format {
        Format::Text => match level {
            Level::Info => format!("halyard: {msg}\n"),
            Level::Warn => format!("halyard: warning: {msg}\n"),
            // As errors always read: the message says what failed.
            Level::Error => format!("halyard: {msg}\n"),
        },
        Format::Json => {
            let mut out = String::with_capacity(msg.len() + 64);
            out.push_str("{\"time\":\"");
            push_rfc3339(&mut out, at);
            out.push_str("\",\"level\":\"");
            out.push_str(level.as_str());
            out.push_str("\",\"msg\":\"");
            push_json_escaped(&mut out, msg);
            out.push_str("\"}\n");
            out
        }
    }
}

/// Appends `s` escaped for the inside of a JSON string.
pub fn push_json_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

/// Appends `at` as `2024-05-01T12:34:56.789Z`.
pub fn push_rfc3339(out: &mut String, at: SystemTime) {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (y, mo, d) = crate::date::civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let _ = std::fmt::Write::write_fmt(
        out,
        format_args!(
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            since.subsec_millis()
        ),
    );
}

/// Logs an informational message: `log_info!("listening on {addr}")`.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($arg)*)) };
}

/// Logs a warning (`halyard: warning: …` as text).
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($arg)*)) };
}

/// Logs an error (`halyard: …` as text).
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn text_keeps_the_historical_prefix() {
        let at = SystemTime::UNIX_EPOCH;
        assert_eq!(render(Format::Text, Level::Info, "hi", at), "halyard: hi\n");
        assert_eq!(
            render(Format::Text, Level::Warn, "hm", at),
            "halyard: warning: hm\n"
        );
    }

    #[test]
    fn json_is_one_escaped_object_per_line() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(784_111_777_042);
        let line = render(Format::Json, Level::Error, "bad \"x\"\n\u{1}", at);
        assert_eq!(
            line,
            "{\"time\":\"1994-11-06T08:49:37.042Z\",\"level\":\"error\",\
             \"msg\":\"bad \\\"x\\\"\\n\\u0001\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect("json");
        assert_eq!(v["msg"], "bad \"x\"\n\u{1}");
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert!("xml".parse::<Format>().is_err());
    }
}
