//! An HTTP tool's call, sans I/O: the request built from the tool's settings and the
//! model's arguments, and the result read from the response.
//!
//! Responsible for: `{param}` placeholders (percent-encoded in the URL and the query,
//! typed values where a body string is exactly `"{param}"`, text elsewhere), where
//! arguments go when the tool names no place for them (the query of a `GET` or `DELETE`,
//! the JSON body otherwise), the credential of `auth` (from a project secret the caller
//! opened), the response cut at `responseLimit` and marked, and redirects (a `Location` to
//! fetch again, at most [`MAX_REDIRECTS`]). Not responsible for: sockets, the addresses a
//! call may reach (the fetch carries a [`Reach`]) or the secret's value (the turn opens it).

use std::time::Duration;

use base64::Engine as _;
use halyard_engine::client::{Fetch, FetchTimeouts, Reach, ResponseHead, Url};
use serde_json::{Map, Value};

/// Redirects followed at most, each under the same reach.
pub const MAX_REDIRECTS: u32 = 3;
/// The most bytes of a tool's result kept when the tool names no `responseLimit`.
pub const DEFAULT_RESPONSE_LIMIT: u64 = 256 * 1024;
/// A call's time limit when the tool names no `timeoutMs`.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// Every deadline of an exchange at `limit`: a tool's `timeoutMs` bounds the whole call.
pub fn every_deadline(limit: Duration) -> FetchTimeouts {
    FetchTimeouts {
        connect: limit,
        first_byte: limit,
        idle: limit,
        total: limit,
    }
}

/// A tool's settings as stored (`Tool::config`), read back.
#[derive(Debug, Clone)]
pub struct HttpTool {
    method: String,
    url: String,
    headers: Map<String, Value>,
    query: Map<String, Value>,
    body: Option<Value>,
    auth: Option<Auth>,
    /// The most response bytes kept.
    pub response_limit: u64,
    /// The call's time limit.
    pub timeout: Duration,
}

/// How the credential is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// `bearer`, `header` or `basic`.
    pub kind: String,
    /// The project secret holding it.
    pub secret: String,
    /// The header of kind `header`.
    pub header: Option<String>,
}

impl HttpTool {
    /// The settings of a stored config (JSON text written by the tool routes).
    pub fn from_config(config: &str) -> Result<HttpTool, String> {
        let v: Value =
            serde_json::from_str(config).map_err(|_| "the tool's settings are damaged")?;
        let text = |k: &str| v[k].as_str().map(String::from);
        let object = |k: &str| v[k].as_object().cloned().unwrap_or_default();
        let auth = Auth::from_config(&v);
        Ok(HttpTool {
            method: text("method").unwrap_or_else(|| "GET".into()),
            url: text("url").ok_or("the tool has no url")?,
            headers: object("headers"),
            query: object("query"),
            body: v.get("body").filter(|b| !b.is_null()).cloned(),
            auth,
            response_limit: v["responseLimit"]
                .as_u64()
                .unwrap_or(DEFAULT_RESPONSE_LIMIT),
            timeout: Duration::from_millis(v["timeoutMs"].as_u64().unwrap_or(DEFAULT_TIMEOUT_MS)),
        })
    }

    /// The header that carries the credential, if the tool has one.
    pub fn auth_header(&self) -> Option<String> {
        self.auth.as_ref().map(|a| a.header_for("").0)
    }

    /// The secret `auth` names, if any.
    pub fn secret_name(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.secret.as_str())
    }

    /// The request for `args` (an object), with `secret` the opened value of
    /// [`secret_name`](Self::secret_name).
    pub fn request(
        &self,
        args: &Value,
        secret: Option<&str>,
        reach: Reach,
    ) -> Result<Fetch, String> {
        let empty = Map::new();
        let args = args.as_object().unwrap_or(&empty);
        let mut used = Vec::new();
        let mut url = fill(&self.url, args, &mut used, true)?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.query {
            let v = fill(v.as_str().unwrap_or_default(), args, &mut used, false)?;
            pairs.push((k.clone(), v));
        }
        let has_body = !matches!(self.method.as_str(), "GET" | "DELETE");
        let rest = || args.iter().filter(|(k, _)| !used.contains(k));
        if !has_body && self.query.is_empty() {
            pairs.extend(rest().map(|(k, v)| (k.clone(), plain(v))));
        }
        if !pairs.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            let encoded: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", component(k), component(v)))
                .collect();
            url.push_str(&encoded.join("&"));
        }
        let url = Url::parse(&url).map_err(|e| format!("the tool's url: {e}"))?;
        let body = match (&self.body, has_body) {
            (Some(template), true) => fill_json(template, args),
            (None, true) => Value::Object(rest().map(|(k, v)| (k.clone(), v.clone())).collect()),
            (_, false) => Value::Null,
        };
        let mut headers = Vec::new();
        for (name, v) in &self.headers {
            let value = fill(v.as_str().unwrap_or_default(), args, &mut Vec::new(), false)?;
            headers.push((name.clone(), value));
        }
        if let (Some(auth), Some(secret)) = (&self.auth, secret) {
            headers.push(auth.header_for(secret));
        }
        let body = if body.is_null() {
            Vec::new()
        } else {
            headers.push(("Content-Type".into(), "application/json".into()));
            body.to_string().into_bytes()
        };
        Ok(Fetch {
            method: self.method.clone(),
            url,
            headers,
            body,
            timeouts: every_deadline(self.timeout),
            max_body: u64::MAX,
            reach,
        })
    }
}

impl Auth {
    /// The `auth` object of a tool's settings, if it has one.
    pub fn from_config(config: &Value) -> Option<Auth> {
        config["auth"].as_object().map(|a| Auth {
            kind: a["type"].as_str().unwrap_or("bearer").into(),
            secret: a["secret"].as_str().unwrap_or_default().into(),
            header: a.get("header").and_then(Value::as_str).map(String::from),
        })
    }

    /// The header carrying `secret`.
    pub fn header_for(&self, secret: &str) -> (String, String) {
        match self.kind.as_str() {
            "header" => (
                self.header.clone().unwrap_or_else(|| "X-API-Key".into()),
                secret.into(),
            ),
            "basic" => (
                "Authorization".into(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(secret)
                ),
            ),
            _ => ("Authorization".into(), format!("Bearer {secret}")),
        }
    }
}

/// `template` with each `{name}` replaced by argument `name` (component-encoded when
/// `encode`); `used` collects the names. A placeholder without its argument is an error
/// the model can act on.
fn fill(
    template: &str,
    args: &Map<String, Value>,
    used: &mut Vec<String>,
    encode: bool,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        let name = &rest[open + 1..close];
        out.push_str(&rest[..open]);
        match args.get(name) {
            Some(v) if encode => out.push_str(&component(&plain(v))),
            Some(v) => out.push_str(&plain(v)),
            None => return Err(format!("argument {name} is missing")),
        }
        used.push(name.to_string());
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A body template with its placeholders filled: a string that is exactly `"{name}"`
/// takes the argument's JSON value; other strings are filled as text (a missing argument
/// leaves its placeholder).
fn fill_json(template: &Value, args: &Map<String, Value>) -> Value {
    match template {
        Value::String(s) => {
            let exact = s.strip_prefix('{').and_then(|r| r.strip_suffix('}'));
            if let Some(v) = exact.and_then(|name| args.get(name)) {
                return v.clone();
            }
            Value::String(fill(s, args, &mut Vec::new(), false).unwrap_or_else(|_| s.clone()))
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_json(v, args)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_json(v, args)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// An argument as text: a string as it is, anything else as JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a call's response is becoming: the status, and the body up to the limit.
#[derive(Debug)]
pub struct Collected {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
    limit: usize,
    cut: bool,
}

/// What a finished response means for the call.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The result for the model (text, cut and marked when over the limit).
    Result(String),
    /// The tool failed; the message goes to the model as the error.
    Error(String),
    /// Fetch this URL (absolute) next.
    Redirect(String),
}

impl Collected {
    /// A response whose body is kept up to `limit` bytes.
    pub fn new(head: &ResponseHead, limit: u64) -> Collected {
        let location = head
            .header("location")
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(String::from);
        Collected {
            status: head.status,
            location,
            body: Vec::new(),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            cut: false,
        }
    }

    /// Adds body bytes; false once the limit is reached (the rest is not needed).
    pub fn push(&mut self, bytes: &[u8]) -> bool {
        let room = self.limit.saturating_sub(self.body.len());
        self.body.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if bytes.len() > room {
            self.cut = true;
        }
        !self.cut
    }

    /// The outcome, relative redirects resolved against `url`.
    pub fn outcome(self, url: &Url) -> Outcome {
        if (300..400).contains(&self.status) && self.status != 304 {
            if let Some(loc) = self.location {
                return Outcome::Redirect(absolute(url, &loc));
            }
        }
        let mut text = String::from_utf8_lossy(&self.body).into_owned();
        if self.cut {
            text.push_str(&truncated_mark(self.limit));
        }
        if (200..300).contains(&self.status) {
            Outcome::Result(text)
        } else {
            let excerpt: String = text.chars().take(500).collect();
            Outcome::Error(format!("HTTP {}: {excerpt}", self.status))
        }
    }
}

/// The mark after a result cut at `limit` bytes.
fn truncated_mark(limit: usize) -> String {
    format!("\n[truncated: the response is over {limit} bytes]")
}

/// `text` cut to at most `limit` bytes (on a character boundary) and marked, if longer.
pub fn cut(mut text: String, limit: u64) -> String {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&truncated_mark(limit));
    text
}

/// `location` as an absolute URL against `base`.
fn absolute(base: &Url, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme = if base.tls { "https" } else { "http" };
    let origin = format!("{scheme}://{}", base.authority());
    if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        let dir = base.target.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{origin}{dir}/{location}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(config: Value) -> HttpTool {
        HttpTool::from_config(&config.to_string()).unwrap()
    }

    #[test]
    fn placeholders_are_encoded_in_the_url_and_query() {
        let t = tool(json!({
            "method": "GET", "url": "https://w.example/v1/{city}/now",
            "query": {"units": "{units}", "lang": "en"},
            "headers": {"X-Trace": "t-{units}"},
            "auth": {"type": "bearer", "secret": "K"}
        }));
        let f = t
            .request(
                &json!({"city": "São Paulo/../x", "units": "c&f"}),
                Some("sk-1"),
                Reach::Any,
            )
            .unwrap();
        assert_eq!(f.url.host, "w.example");
        assert!(
            f.url
                .target
                .starts_with("/v1/S%C3%A3o%20Paulo%2F..%2Fx/now?"),
            "{}",
            f.url.target
        );
        assert!(f.url.target.contains("units=c%26f") && f.url.target.contains("lang=en"));
        assert!(f.headers.contains(&("X-Trace".into(), "t-c&f".into())));
        assert!(f
            .headers
            .contains(&("Authorization".into(), "Bearer sk-1".into())));
        assert!(f.body.is_empty());
        let missing = t.request(&json!({"units": "c"}), None, Reach::Any);
        assert_eq!(missing.unwrap_err(), "argument city is missing");
    }

    #[test]
    fn unplaced_arguments_go_to_the_query_of_a_get_and_the_body_of_a_post() {
        let get = tool(json!({"url": "http://a.example/s"}));
        let f = get
            .request(&json!({"q": "a b", "n": 3}), None, Reach::Any)
            .unwrap();
        assert_eq!(f.method, "GET");
        assert!(
            f.url.target == "/s?n=3&q=a%20b" || f.url.target == "/s?q=a%20b&n=3",
            "{}",
            f.url.target
        );
        let post = tool(json!({"method": "POST", "url": "http://a.example/{id}"}));
        let f = post
            .request(&json!({"id": "x1", "n": 3}), None, Reach::Any)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&f.body).unwrap(),
            json!({"n": 3})
        );
        let templated = tool(json!({
            "method": "POST", "url": "http://a.example/",
            "body": {"query": "{q}", "size": "{n}", "label": "n={n}"},
            "auth": {"type": "header", "secret": "K", "header": "X-Key"}
        }));
        let f = templated
            .request(&json!({"q": "hi", "n": 3}), Some("v"), Reach::Any)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&f.body).unwrap(),
            json!({"query": "hi", "size": 3, "label": "n=3"})
        );
        assert!(f.headers.contains(&("X-Key".into(), "v".into())));
        let basic =
            tool(json!({"url": "http://a.example/", "auth": {"type": "basic", "secret": "K"}}));
        let f = basic.request(&json!({}), Some("u:p"), Reach::Any).unwrap();
        assert!(f
            .headers
            .contains(&("Authorization".into(), "Basic dTpw".into())));
    }

    fn head(status: u16, location: Option<&str>) -> ResponseHead {
        ResponseHead {
            status,
            headers: location
                .map(|l| vec![("location".into(), l.as_bytes().to_vec())])
                .unwrap_or_default(),
            http10: false,
        }
    }

    #[test]
    fn responses_are_cut_at_the_limit_and_errors_and_redirects_are_told_apart() {
        let url = Url::parse("https://a.example/v1/x").unwrap();
        let mut c = Collected::new(&head(200, None), 4);
        assert!(c.push(b"ab"));
        assert!(!c.push(b"cdef"));
        assert_eq!(
            c.outcome(&url),
            Outcome::Result("abcd\n[truncated: the response is over 4 bytes]".into())
        );
        let mut e = Collected::new(&head(500, None), 100);
        e.push(b"boom");
        assert_eq!(e.outcome(&url), Outcome::Error("HTTP 500: boom".into()));
        let r = Collected::new(&head(302, Some("/other")), 100);
        assert_eq!(
            r.outcome(&url),
            Outcome::Redirect("https://a.example/other".into())
        );
        let r = Collected::new(&head(301, Some("y")), 100);
        assert_eq!(
            r.outcome(&url),
            Outcome::Redirect("https://a.example/v1/y".into())
        );
        let r = Collected::new(&head(307, Some("http://127.0.0.1/")), 100);
        assert_eq!(
            r.outcome(&url),
            Outcome::Redirect("http://127.0.0.1/".into())
        );
    }
}
