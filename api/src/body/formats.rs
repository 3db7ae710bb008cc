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

/// An `http://` or `https://` URL with a host (a model provider's base URL, a tool's URL
/// template) as the outbound client takes it: a name or a bracketed IPv6 address, an
/// optional port, no `user@` part, visible ASCII throughout.
pub const HTTP_URL: Format = Format {
    pattern: r#"^https?://(\[[0-9A-Fa-f:.]+\]|[!-"$-.0-9;->A-Z\\^-~]+)(:[0-9]{1,5})?([/?#][!-~]*)?$"#,
    check: is_http_url,
    message: "must be an http:// or https:// URL with a host, in visible ASCII",
};

/// A web origin: `scheme://host[:port]` with no path.
pub const ORIGIN: Format = Format {
    pattern: r#"^https?://(\[[0-9A-Fa-f:.]+\]|[!-"$-.0-9;->A-Z\\^-~]+)(:[0-9]{1,5})?$"#,
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
    matches!(scheme, "http" | "https") && rest.len() <= 253 && is_authority(rest)
}

fn is_email(s: &str) -> bool {
    s.contains('@')
}

fn is_http_url(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
    else {
        return false;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    is_authority(authority) && tail.bytes().all(|b| b.is_ascii_graphic())
}

/// `host[:port]` as the outbound client takes it: a name in visible ASCII (no `[]@/?#:`) or
/// a bracketed IPv6 address, and a port of 1 to 5 digits.
fn is_authority(authority: &str) -> bool {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((inner, port)) => (is_ipv6_text(inner), port),
            None => return false,
        },
        None => {
            let (host, port) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
            let name = |b: u8| b.is_ascii_graphic() && !b"[]@/?#".contains(&b);
            (!host.is_empty() && host.bytes().all(name), port)
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// As the outbound client reads a bracketed host (`std`'s parser, no zone id).
fn is_ipv6_text(s: &str) -> bool {
    s.parse::<std::net::Ipv6Addr>().is_ok()
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
        assert!((HTTP_URL.check)("http://127.0.0.1:8080?q=1"));
        assert!((HTTP_URL.check)("https://{region}.api.example/v1/{city}"));
        assert!((HTTP_URL.check)("http://[::1]:11434/v1"));
        assert!((HTTP_URL.check)("https://api.example:443"));
        for bad in [
            "http://",
            "https:///v1",
            "http://user@host",
            "http://a b/",
            "http://?x",
            "https://\u{c9}t\u{e9}.example",
            "https://a.example/\u{85}",
            "https://[",
            "https://[::1",
            "https://[zz]/",
            "http://[0]",
            "http://a:",
            "http://a:123456",
            "http://a:b",
        ] {
            assert!(!(HTTP_URL.check)(bad), "{bad}");
        }
        assert!((EMAIL.check)("a@b"));
    }

    #[test]
    fn no_format_accepts_the_empty_string() {
        for f in [AGENT_NAME, TOOL_NAME, SECRET_NAME, EMAIL, HTTP_URL, ORIGIN] {
            assert!(!(f.check)(""), "{}", f.pattern);
        }
    }
}
