//! Absolute `http` and `https` URLs, as the outbound client needs them.
//!
//! Responsible for: turning a configured URL (a model provider's `baseUrl`, a tool's
//! endpoint) into what a connection needs (TLS or not, host, port, request target), the
//! `Host` header value, the key connections are pooled under, and appending an API path to
//! a base URL. Parsing is strict on purpose: the URL comes from tenant configuration and ends
//! up in a request line and a `Host` header, so anything that could smuggle a line break,
//! credentials or a second host is refused rather than repaired.
//! Not responsible for: DNS, IDNA (a non-ASCII host is refused, not converted),
//! percent-decoding (the target is sent as written), relative references, or any scheme
//! other than `http` and `https`.

use std::fmt;
use std::net::Ipv6Addr;

/// An absolute http(s) URL as the client needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    /// The scheme is `https`: the connection runs TLS.
    pub tls: bool,
    /// The host, lowercased; an IPv6 address without its brackets, in its canonical form.
    pub host: String,
    /// The port; the scheme's default (80 or 443) when the URL gives none.
    pub port: u16,
    /// Path and query, starting with `/` (`/` when the URL has no path); never a fragment.
    pub target: String,
}

/// Why a URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    /// A control character, a space or a non-ASCII byte, at this byte offset.
    InvalidCharacter(usize),
    /// No `scheme://` in front.
    NotAbsolute,
    /// A scheme other than `http` or `https`.
    UnsupportedScheme,
    /// A `user@` or `user:password@` part.
    UserInfo,
    /// Nothing where the host should be.
    EmptyHost,
    /// A host that is neither a name (letters, digits, `-`, `.`, `_`) nor a bracketed IPv6
    /// address.
    BadHost,
    /// A port that is not a number from 1 to 65535.
    BadPort,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::InvalidCharacter(at) => {
                write!(
                    f,
                    "URL has a control, space or non-ASCII byte at offset {at}"
                )
            }
            UrlError::NotAbsolute => f.write_str("URL must start with http:// or https://"),
            UrlError::UnsupportedScheme => f.write_str("URL scheme must be http or https"),
            UrlError::UserInfo => f.write_str("URL must not contain user information (user@)"),
            UrlError::EmptyHost => f.write_str("URL has no host"),
            UrlError::BadHost => f.write_str("URL host is invalid"),
            UrlError::BadPort => f.write_str("URL port must be a number from 1 to 65535"),
        }
    }
}

impl std::error::Error for UrlError {}

/// The port a scheme uses when the URL names none.
fn default_port(tls: bool) -> u16 {
    if tls {
        443
    } else {
        80
    }
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL. The fragment (`#...`) is dropped.
    pub fn parse(s: &str) -> Result<Url, UrlError> {
        if let Some(at) = s.bytes().position(|b| !is_visible_ascii(b)) {
            return Err(UrlError::InvalidCharacter(at));
        }
        let (scheme, rest) = s.split_once("://").ok_or(UrlError::NotAbsolute)?;
        let tls = parse_scheme(scheme)?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        // Refused, not stripped: `http://good.example@evil.example` reads as the first host
        // to a person and connects to the second.
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = parse_authority(authority, tls)?;
        let without_fragment = tail.split_once('#').map_or(tail, |(t, _)| t);
        let target = if without_fragment.starts_with('/') {
            without_fragment.to_string()
        } else {
            format!("/{without_fragment}")
        };
        Ok(Url {
            tls,
            host,
            port,
            target,
        })
    }

    /// The Host header value: host, bracketed when IPv6, with ":port" unless the default
    /// port of the scheme.
    pub fn authority(&self) -> String {
        let mut out = self.bracketed_host();
        if self.port != default_port(self.tls) {
            out.push(':');
            out.push_str(itoa::Buffer::new().format(self.port));
        }
        out
    }

    /// `scheme://host:port` key used to pool connections (always with the port).
    pub fn origin(&self) -> String {
        format!(
            "{}://{}:{}",
            self.scheme(),
            self.bracketed_host(),
            self.port
        )
    }

    /// `self` with `path` appended to the target's path (used for
    /// "{baseUrl}/chat/completions": one '/' between them, whatever the trailing/leading
    /// slashes). A query in `path` is added to the base's query with `&`. Bytes of `path`
    /// that may not appear in a target (controls, space, non-ASCII, `#`) are
    /// percent-encoded, so the result is always safe to put in a request line.
    pub fn join(&self, path: &str) -> Url {
        let (base_path, base_query) = split_query(&self.target);
        let (add_path, add_query) = split_query(path);
        let mut target = String::with_capacity(self.target.len() + path.len() + 1);
        target.push_str(base_path.trim_end_matches('/'));
        target.push('/');
        push_encoded(&mut target, add_path.trim_start_matches('/'));
        let add_query = add_query.map(encode);
        let queries = [base_query, add_query.as_deref()];
        let mut sep = '?';
        for query in queries.iter().flatten() {
            target.push(sep);
            target.push_str(query);
            sep = '&';
        }
        Url {
            target,
            ..self.clone()
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for Url {
    /// The URL as it would be written: `scheme://authority/target`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority(), self.target)
    }
}

/// Printable ASCII: no control character, no space, nothing past 0x7e.
fn is_visible_ascii(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
}

fn parse_scheme(scheme: &str) -> Result<bool, UrlError> {
    // Something before "://" that is no scheme at all (`/x://y`) is a relative reference.
    let is_scheme = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !is_scheme {
        return Err(UrlError::NotAbsolute);
    }
    if scheme.eq_ignore_ascii_case("https") {
        Ok(true)
    } else if scheme.eq_ignore_ascii_case("http") {
        Ok(false)
    } else {
        Err(UrlError::UnsupportedScheme)
    }
}

/// Host and port of `host[:port]` or `[v6][:port]`.
fn parse_authority(authority: &str, tls: bool) -> Result<(String, u16), UrlError> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or(UrlError::BadHost)?;
            // Ipv6Addr refuses zone ids (`%25eth0`), which a Host header could not carry.
            let addr: Ipv6Addr = addr.parse().map_err(|_| UrlError::BadHost)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(UrlError::BadHost)?),
            };
            // Canonical, so that `[0::1]` and `[::1]` share a pool.
            (addr.to_string(), port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            (parse_host_name(host)?, port)
        }
    };
    let port = match port {
        // `http://h:/` has an empty port, which means the default (as browsers read it).
        None | Some("") => default_port(tls),
        Some(p) => parse_port(p)?,
    };
    Ok((host, port))
}

fn parse_host_name(host: &str) -> Result<String, UrlError> {
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    let ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !ok {
        return Err(UrlError::BadHost);
    }
    Ok(host.to_ascii_lowercase())
}

fn parse_port(p: &str) -> Result<u16, UrlError> {
    crate::parse::parse_digits(p.as_bytes())
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n != 0)
        .ok_or(UrlError::BadPort)
}

/// `(path, query)` of `path?query`.
fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (s, None),
    }
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_encoded(&mut out, s);
    out
}

/// Appends `s`, percent-encoding every byte a request target may not hold.
fn push_encoded(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if is_visible_ascii(b) && b != b'#' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn parses_the_parts() {
        let u = url("https://API.OpenAI.com/v1?x=1#frag");
        assert_eq!(
            u,
            Url {
                tls: true,
                host: "api.openai.com".into(),
                port: 443,
                target: "/v1?x=1".into(),
            }
        );
        let u = url("HTTP://localhost:8080");
        assert_eq!((u.tls, u.port, u.target.as_str()), (false, 8080, "/"));
        assert_eq!(url("http://h?q=1").target, "/?q=1");
        assert_eq!(url("http://h#top").target, "/");
        assert_eq!(url("http://h:/x").port, 80);
        assert_eq!(url("http://10.0.0.1:1/").host, "10.0.0.1");
    }

    #[test]
    fn ipv6_literals() {
        let u = url("http://[::1]:8080/x");
        assert_eq!((u.host.as_str(), u.port), ("::1", 8080));
        assert_eq!(u.authority(), "[::1]:8080");
        assert_eq!(u.origin(), "http://[::1]:8080");
        let u = url("https://[0:0::1]");
        assert_eq!((u.host.as_str(), u.port), ("::1", 443));
        assert_eq!(u.authority(), "[::1]");
        assert_eq!(u.to_string(), "https://[::1]/");
    }

    #[test]
    fn authority_and_origin() {
        assert_eq!(url("http://h:80/").authority(), "h");
        assert_eq!(url("http://h:443/").authority(), "h:443");
        assert_eq!(url("https://h:443/").authority(), "h");
        assert_eq!(url("https://h/").origin(), "https://h:443");
        assert_eq!(url("http://h/").origin(), "http://h:80");
        assert_eq!(url("http://h:81/a?b").to_string(), "http://h:81/a?b");
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, UrlError)] = &[
            ("", UrlError::NotAbsolute),
            ("api.example/v1", UrlError::NotAbsolute),
            ("http:/h", UrlError::NotAbsolute),
            ("/x://h", UrlError::NotAbsolute),
            ("ftp://h/", UrlError::UnsupportedScheme),
            ("httpx://h/", UrlError::UnsupportedScheme),
            ("http://user@h/", UrlError::UserInfo),
            ("http://u:p@h:80/", UrlError::UserInfo),
            ("http://good@evil/", UrlError::UserInfo),
            ("http:///x", UrlError::EmptyHost),
            ("http://:80/", UrlError::EmptyHost),
            ("http://", UrlError::EmptyHost),
            ("http://h!/", UrlError::BadHost),
            ("http://h\\@x/", UrlError::UserInfo),
            ("http://[::1/", UrlError::BadHost),
            ("http://[]/", UrlError::BadHost),
            ("http://[fe80::1%25eth0]/", UrlError::BadHost),
            ("http://[::1]x/", UrlError::BadHost),
            ("http://[1.2.3.4]/", UrlError::BadHost),
            ("http://h:0/", UrlError::BadPort),
            ("http://h:65536/", UrlError::BadPort),
            ("http://h:+80/", UrlError::BadPort),
            ("http://h:8o/", UrlError::BadPort),
            ("http://h:80:80/", UrlError::BadPort),
            ("http://::1/", UrlError::EmptyHost),
            ("http://h/a b", UrlError::InvalidCharacter(10)),
            ("http://h/\r\nX: y", UrlError::InvalidCharacter(9)),
            ("http://h/\0", UrlError::InvalidCharacter(9)),
            ("http://h/\x7f", UrlError::InvalidCharacter(9)),
            ("http://h\u{e9}/", UrlError::InvalidCharacter(8)),
            (" http://h/", UrlError::InvalidCharacter(0)),
        ];
        for (input, want) in cases {
            assert_eq!(Url::parse(input), Err(*want), "{input:?}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn join_puts_one_slash_between() {
        for base in ["http://h/v1", "http://h/v1/", "http://h/v1//"] {
            for path in [
                "chat/completions",
                "/chat/completions",
                "//chat/completions",
            ] {
                assert_eq!(url(base).join(path).target, "/v1/chat/completions");
            }
        }
        assert_eq!(url("http://h").join("/x").target, "/x");
        assert_eq!(url("http://h/").join("x").target, "/x");
        assert_eq!(url("http://h/v1").join("").target, "/v1/");
        let joined = url("https://h:8443/v1").join("x");
        assert_eq!((joined.tls, joined.port), (true, 8443));
    }

    #[test]
    fn join_keeps_queries_and_encodes() {
        assert_eq!(
            url("http://h/v1?api-version=2").join("/chat").target,
            "/v1/chat?api-version=2"
        );
        assert_eq!(
            url("http://h/v1?a=1").join("chat?b=2").target,
            "/v1/chat?a=1&b=2"
        );
        assert_eq!(url("http://h/v1").join("c?b=2").target, "/v1/c?b=2");
        assert_eq!(
            url("http://h/").join("a b/\r\n#\u{e9}").target,
            "/a%20b/%0D%0A%23%C3%A9"
        );
        assert_eq!(url("http://h/").join("x?a b#c").target, "/x?a%20b%23c");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,64}") {
            let _ = Url::parse(&s);
        }

        #[test]
        fn parts_survive_a_round_trip(
            tls in proptest::bool::ANY,
            host in "[a-zA-Z0-9][a-zA-Z0-9._-]{0,20}",
            port in proptest::option::of(1u16..),
            path in "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,8}){0,4}",
            query in proptest::option::of("[a-zA-Z0-9=&/?:@-]{0,16}"),
        ) {
            let mut s = format!("{}://{host}", if tls { "https" } else { "http" });
            if let Some(p) = port {
                s.push_str(&format!(":{p}"));
            }
            s.push_str(&path);
            if let Some(q) = &query {
                s.push('?');
                s.push_str(q);
            }
            let u = Url::parse(&s).unwrap();
            proptest::prop_assert_eq!(u.tls, tls);
            proptest::prop_assert_eq!(&u.host, &host.to_ascii_lowercase());
            proptest::prop_assert_eq!(u.port, port.unwrap_or(default_port(tls)));
            proptest::prop_assert!(u.target.starts_with('/'));
            // What it prints parses back to the same URL.
            proptest::prop_assert_eq!(Url::parse(&u.to_string()).unwrap(), u);
        }

        #[test]
        fn join_always_gives_a_valid_target(base in "/[a-z/]{0,8}", path in "\\PC{0,32}") {
            let u = Url::parse(&format!("http://h{base}")).unwrap().join(&path);
            proptest::prop_assert!(u.target.starts_with('/'));
            proptest::prop_assert!(u.target.bytes().all(|b| is_visible_ascii(b) && b != b'#'));
            proptest::prop_assert_eq!(Url::parse(&u.to_string()).unwrap(), u);
        }
    }
}
