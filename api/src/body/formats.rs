//! The string formats a field may be declared with: names, emails, URLs, origins.
//!
//! Responsible for: each format's JSON Schema pattern, the check that means the same, and
//! the message of a value that fails it. Not responsible for: a field's length bounds
//! (see `spec::Text`).

/// A string format. Its pattern matches no empty string, so a format implies non-empty.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    /// The JSON Schema `pattern` (ECMA-262) stated in the OpenAPI document.
    pub pattern: &'static str,
    /// What the pattern accepts, as the handlers check it.
    pub check: fn(&str) -> bool,
    /// The validation message of a value the check refuses.
    pub message: &'static str,
}

/// An agent name: `[a-z0-9-]{1,64}`.
pub const AGENT_NAME: Format = Format {
    pattern: "^[a-z0-9-]{1,64}$",
    check: is_agent_name,
    message: "must match [a-z0-9-]{1,64}",
};

/// A tool name: `[a-z0-9_-]{1,64}` (what OpenAI function names allow, lower case).
pub const TOOL_NAME: Format = Format {
    pattern: "^[a-z0-9_-]{1,64}$",
    check: is_tool_name,
    message: "must match [a-z0-9_-]{1,64}",
};

/// A secret name: `[A-Z0-9_]{1,128}`.
pub const SECRET_NAME: Format = Format {
    pattern: "^[A-Z0-9_]{1,128}$",
    check: is_secret_name,
    message: "must match [A-Z0-9_]{1,128}",
};

/// An email address, as far as this server cares: it has an `@`.
pub const EMAIL: Format = Format {
    pattern: "@",
    check: is_email,
    message: "must be an email address",
};

/// An `http://` or `https://` URL (a model provider's base URL).
pub const HTTP_URL: Format = Format {
    pattern: "^https?://",
    check: is_http_url,
    message: "must be an http:// or https:// URL",
};

/// A web origin: `scheme://host[:port]` with no path.
pub const ORIGIN: Format = Format {
    pattern: "^https?://[^/?# ]{1,253}$",
    check: is_origin,
    message: "must be an origin (scheme://host[:port])",
};

/// A backup's name inside the server's backup directory: one plain path component, so that
/// a request can never name a file elsewhere (no `/`, no leading dot, so no `..`).
pub const BACKUP_NAME: Format = Format {
    pattern: "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$",
    check: is_backup_name,
    message: "must match [A-Za-z0-9_-][A-Za-z0-9._-]{0,127} (a name, not a path)",
};

/// Whether `s` is a backup name (see [`BACKUP_NAME`]).
pub fn is_backup_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `s` matches `[a-z0-9-]{1,64}` (agent names).
pub fn is_agent_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `s` matches `[a-z0-9_-]{1,64}` (tool names).
pub fn is_tool_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether `s` matches `[A-Z0-9_]{1,128}` (secret names).
pub fn is_secret_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `s` is an origin: `scheme://host[:port]` with no path.
pub fn is_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' '])
        && rest.len() <= 253
}

fn is_email(s: &str) -> bool {
    s.contains('@')
}

fn is_http_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(is_agent_name("my-agent-2"));
        assert!(!is_agent_name("My"));
        assert!(is_tool_name("get_weather-2"));
        assert!(!is_tool_name("Get"));
        assert!(is_secret_name("OPENAI_API_KEY"));
        assert!(!is_secret_name("lower"));
        assert!(is_origin("https://a.example:8443"));
        assert!(!is_origin("https://a.example/path"));
        assert!(!is_origin("ftp://a"));
        assert!((HTTP_URL.check)("https://api.example/v1"));
        assert!(!(HTTP_URL.check)("ftp://api.example"));
        assert!((EMAIL.check)("a@b"));
    }

    #[test]
    fn no_format_accepts_the_empty_string() {
        for f in [AGENT_NAME, TOOL_NAME, SECRET_NAME, EMAIL, HTTP_URL, ORIGIN] {
            assert!(!(f.check)(""), "{}", f.pattern);
        }
    }
}
