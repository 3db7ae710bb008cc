//! A scriptable fake OpenAI-compatible model provider: `POST {base}/chat/completions`
//! answered as a server-sent-event stream whose shape the request's `model` field scripts,
//! so tests get an upstream that misbehaves on demand and benchmarks get thousands of slow
//! streams from one thread.
//!
//! Responsible for: one `mio` event-loop thread that accepts connections (plain HTTP, or
//! HTTPS with rustls), reads HTTP/1.1 requests (keep-alive, pipelining, bodies by
//! `Content-Length`), turns the `model` into a script, and writes the scripted response from
//! timers, one `write` per token; counting connections and keeping the last [`MAX_SEEN`]
//! requests for tests to look at.
//! Not responsible for: the rest of the OpenAI API (every other request is `404`), chunked
//! request bodies (refused with `400`), authentication, or raising the open-file limit (the
//! caller does, before it opens ten thousand streams).
//!
//! # Scripts
//!
//! A model named `fake:` followed by `;`-separated directives scripts the response, e.g.
//! `fake:tokens=5;delay_ms=20;drop_after=2`; any other model streams the defaults (three
//! tokens at once). Delta `i` is `w{i}` for the first token and ` w{i}` after, so three tokens
//! read `w0 w1 w2`. An unknown directive or a bad value answers `400`.
//!
//! | directive | effect |
//! |---|---|
//! | `tokens=N` | stream N tokens (default 3, at most 1,000,000) |
//! | `delay_ms=D` | wait D ms before each token (default 0; 50 with `forever`) |
//! | `status=S` | answer status S (200..=599) with a JSON error body instead of a stream |
//! | `retry_after=N` | add `Retry-After: N` |
//! | `head_delay_ms=D` | wait D ms before the response head |
//! | `malformed` | after the first token, send `data: {not json` |
//! | `long_line=B` | after the first token (and `malformed`), one `data: ` line of B bytes of `x`, newline only at its end (then the blank line ending the event) |
//! | `drop_after=K` | after K tokens close the connection (FIN), body unfinished |
//! | `reset_after=K` | the same with an RST (`SO_LINGER` 0) |
//! | `forever` | never stop sending tokens |
//! | `trickle=B` | write the whole response B bytes at a time, one piece per `delay_ms` (default 10) |
//! | `usage=0` | send no usage chunk (`usage=1` is the default) |
//! | `framing=chunked\|length\|close` | body framing (default chunked; error bodies use length) |
//! | `close` | answer `Connection: close` and close after the response |
//! | `echo` | the deltas are the words of the last user message (`tokens=` ignored) |
//! | `call=NAME` | unless the last message is a tool result: stream a call of tool NAME (its id `call_fake`, its arguments in two fragments) with `finish_reason` `tool_calls`; after a tool result, echo the words of the last tool message |
//! | `args=JSON` | the arguments of `call` (default `{}`; no `;` in it) |
//!
//! A finished stream ends with a chunk whose `finish_reason` is `"stop"` (the last token's,
//! or an empty delta when there were no tokens), then the usage chunk (prompt tokens are the
//! whitespace-separated words of all message contents, completion tokens the tokens sent),
//! then `data: [DONE]`. Cut streams (`drop_after`, `reset_after`) never reach that end, and
//! with `framing=length` their `Content-Length` still counts the whole body.
//!
//! A client that closes its side while a response is in progress has cancelled it: the
//! connection closes at once (as [`FakeUpstream::open_connections`] lets a test see). One
//! that half-closes right after a request still gets its response.
//!
//! Memory per connection is bounded: a response is generated from a cursor, never held
//! whole; a connection stops generating while more than [`HIGH_WATER`] bytes wait for the
//! peer, and stops reading ahead while a response is in progress.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use serde_json::Value;
use slab::Slab;

/// Requests kept for [`FakeUpstream::requests`]; older ones are forgotten.
pub const MAX_SEEN: usize = 1000;
/// Unsent response bytes above which a connection stops generating until the peer reads.
pub const HIGH_WATER: usize = 64 * 1024;
/// Request heads larger than this are refused with `431` and the connection closed.
const MAX_HEAD: usize = 64 * 1024;
/// Request bodies larger than this are refused with `413` and the connection closed.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Request bytes read ahead while a response is still being written (pipelining); past
/// this the connection is not read until the response ends.
const READ_AHEAD: usize = 64 * 1024;
/// Largest piece of a `long_line` generated at once.
const LONG_PIECE: u64 = 16 * 1024;
/// Largest `tokens=N`: a `framing=length` body is generated once to measure it.
const MAX_TOKENS: u64 = 1_000_000;
/// Time before accept is tried again after it failed for lack of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Delay per token of a `forever` stream without `delay_ms`.
const FOREVER_DELAY_MS: u64 = 50;
/// Time between pieces of a `trickle` response without `delay_ms`.
const TRICKLE_EVERY_MS: u64 = 10;
/// Listen backlog: ten thousand clients connecting at once overflow the usual 128, and a
/// dropped SYN is retried only after a second.
const BACKLOG: i32 = 4096;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Connection `k` of the slab is registered as `Token(k + FIRST_CONN)`.
const FIRST_CONN: usize = 2;
/// Timer key of the accept retry (no connection has this slab key).
const ACCEPT_TIMER: usize = usize::MAX;

// ---- public API ----

/// How to start a [`FakeUpstream`].
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    /// Serve HTTPS with this PEM certificate chain (end-entity first) and PEM private key;
    /// `None` serves plain HTTP.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
}

/// One request as the fake upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// The method, as sent.
    pub method: String,
    /// The request target, as sent (`/v1/chat/completions`).
    pub target: String,
    /// Header fields in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, decoded as UTF-8 (lossily).
    pub body: String,
}

impl SeenRequest {
    /// The first value of header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a fake upstream could not start.
#[derive(Debug)]
pub enum UpstreamError {
    /// The listening socket could not be opened on this address.
    Bind(SocketAddr, io::Error),
    /// The certificate chain or the key (named) is not valid PEM or holds no such item.
    Pem(&'static str, pem::Error),
    /// rustls refused the certificate chain or the key.
    Tls(rustls::Error),
    /// The event loop could not be set up (poll, waker, thread).
    Setup(io::Error),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            UpstreamError::Pem(what, e) => write!(f, "{what}: not usable PEM: {e}"),
            UpstreamError::Tls(e) => write!(f, "certificate or key refused: {e}"),
            UpstreamError::Setup(e) => write!(f, "cannot set up the event loop: {e}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

/// A fake OpenAI-compatible provider on its own event-loop thread; dropping it stops the
/// thread (and so closes every connection) and waits for it.
#[derive(Debug)]
pub struct FakeUpstream {
    addr: SocketAddr,
    https: bool,
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts a plain-HTTP upstream on `127.0.0.1` and a free port.
    pub fn start() -> FakeUpstream {
        FakeUpstream::start_with(UpstreamOptions::default())
    }

    /// Starts an upstream on `127.0.0.1` and a free port; panics if it cannot (a bad
    /// certificate, no descriptors left).
    pub fn start_with(opts: UpstreamOptions) -> FakeUpstream {
        let any_port = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        FakeUpstream::bind(any_port, opts).unwrap_or_else(|e| panic!("fake upstream: {e}"))
    }

    /// Starts an upstream listening on `addr` (port 0 picks a free one).
    pub fn bind(addr: SocketAddr, opts: UpstreamOptions) -> Result<FakeUpstream, UpstreamError> {
        let tls = match &opts.tls {
            Some((cert, key)) => Some(server_config(cert, key)?),
            None => None,
        };
        let https = tls.is_some();
        let listener = listen(addr).map_err(|e| UpstreamError::Bind(addr, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| UpstreamError::Bind(addr, e))?;
        let shared = Arc::new(Shared::default());
        let (event_loop, waker) =
            EventLoop::new(listener, tls, shared.clone()).map_err(UpstreamError::Setup)?;
        let thread = std::thread::Builder::new()
            .name("fake-upstream".into())
            .spawn(move || event_loop.run())
            .map_err(UpstreamError::Setup)?;
        Ok(FakeUpstream {
            addr,
            https,
            shared,
            waker,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a provider configuration takes: `http://127.0.0.1:PORT/v1` (`https`
    /// with TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/v1", self.addr)
    }

    /// The requests received so far, oldest first (the last [`MAX_SEEN`]).
    pub fn requests(&self) -> Vec<SeenRequest> {
        let seen = self.shared.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().cloned().collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Acquire)
    }

    /// TCP connections open now.
    pub fn open_connections(&self) -> u64 {
        self.shared.open.load(Ordering::Acquire)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // If the wake fails the loop still sees the flag at its next timer or event.
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// State the loop thread shares with its [`FakeUpstream`] handle.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    accepted: AtomicU64,
    open: AtomicU64,
    seen: Mutex<VecDeque<SeenRequest>>,
}

impl Shared {
    fn record(&self, req: SeenRequest) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() == MAX_SEEN {
            seen.pop_front();
        }
        seen.push_back(req);
    }
}

/// A non-blocking listener with a backlog deep enough for a burst of connects.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(TcpListener::from_std(sock.into()))
}

/// A rustls server configuration (aws-lc-rs, safe default versions, ALPN `http/1.1`).
fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, UpstreamError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UpstreamError::Pem("certificate chain", e))?;
    if chain.is_empty() {
        return Err(UpstreamError::Pem(
            "certificate chain",
            pem::Error::NoItemsFound,
        ));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| UpstreamError::Pem("private key", e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(UpstreamError::Tls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(UpstreamError::Tls)?;
    // A client that offers h2 as well must not pick it: this server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

// ---- scripts ----

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length,
    Close,
}

/// Where a stream is cut short: after `after` tokens, with a FIN or (`reset`) an RST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    after: u64,
    reset: bool,
}

/// One response's script, read from the request's `model` by [`parse_script`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Script {
    tokens: u64,
    delay_ms: Option<u64>,
    status: Option<u16>,
    retry_after: Option<u64>,
    head_delay_ms: u64,
    malformed: bool,
    long_line: Option<u64>,
    cut: Option<Cut>,
    forever: bool,
    trickle: Option<usize>,
    usage: bool,
    framing: Framing,
    close: bool,
    echo: bool,
    call: Option<String>,
    args: Option<String>,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            tokens: 3,
            delay_ms: None,
            status: None,
            retry_after: None,
            head_delay_ms: 0,
            malformed: false,
            long_line: None,
            cut: None,
            forever: false,
            trickle: None,
            usage: true,
            framing: Framing::Chunked,
            close: false,
            echo: false,
            call: None,
            args: None,
        }
    }
}

impl Script {
    /// The wait before each token.
    fn token_delay(&self) -> Duration {
        let default = if self.forever { FOREVER_DELAY_MS } else { 0 };
        Duration::from_millis(self.delay_ms.unwrap_or(default))
    }

    /// The wait between two pieces of a trickled response (at least 1 ms, so a trickle to
    /// a peer that does not read never spins the loop).
    fn trickle_every(&self) -> Duration {
        Duration::from_millis(self.delay_ms.unwrap_or(TRICKLE_EVERY_MS).max(1))
    }
}

/// Why a `fake:` model is not a script.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ScriptError {
    /// No directive has this name (or a flag was given a value).
    Unknown(String),
    /// The directive's value is missing or out of range.
    BadValue(String),
    /// Two directives cannot go together.
    Conflict(&'static str),
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScriptError::Unknown(d) => write!(f, "unknown directive `{d}`"),
            ScriptError::BadValue(d) => write!(f, "bad value in directive `{d}`"),
            ScriptError::Conflict(why) => f.write_str(why),
        }
    }
}

/// The script a model names: the defaults unless it starts with `fake:`.
fn parse_script(model: &str) -> Result<Script, ScriptError> {
    let mut script = Script::default();
    let Some(directives) = model.strip_prefix("fake:") else {
        return Ok(script);
    };
    for directive in directives.split(';').map(str::trim) {
        if !directive.is_empty() {
            apply(&mut script, directive)?;
        }
    }
    if script.forever && script.framing == Framing::Length {
        return Err(ScriptError::Conflict(
            "`forever` has no length: it cannot go with `framing=length`",
        ));
    }
    Ok(script)
}

/// Applies one directive (`name` or `name=value`) to `script`.
fn apply(script: &mut Script, directive: &str) -> Result<(), ScriptError> {
    let (name, value) = match directive.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (directive, None),
    };
    let bad = || ScriptError::BadValue(directive.to_string());
    let number =
        || -> Result<u64, ScriptError> { value.and_then(|v| v.parse().ok()).ok_or_else(bad) };
    let bounded = |lo: u64, hi: u64| {
        number().and_then(|n| (lo..=hi).contains(&n).then_some(n).ok_or_else(bad))
    };
    // Flags take no value: `malformed=1` is more likely a typo than a wish.
    let flag = || match value {
        None => Ok(true),
        Some(_) => Err(ScriptError::Unknown(directive.to_string())),
    };
    // The `as` casts below are of values `bounded` has already range-checked.
    match name {
        "tokens" => script.tokens = bounded(0, MAX_TOKENS)?,
        "delay_ms" => script.delay_ms = Some(number()?),
        "status" => script.status = Some(bounded(200, 599)? as u16),
        "retry_after" => script.retry_after = Some(number()?),
        "head_delay_ms" => script.head_delay_ms = number()?,
        "malformed" => script.malformed = flag()?,
        "long_line" => script.long_line = Some(number()?),
        "drop_after" => {
            script.cut = Some(Cut {
                after: number()?,
                reset: false,
            })
        }
        "reset_after" => {
            script.cut = Some(Cut {
                after: number()?,
                reset: true,
            })
        }
        "forever" => script.forever = flag()?,
        "trickle" => script.trickle = Some(bounded(1, u32::MAX.into())? as usize),
        "usage" => {
            script.usage = match value {
                Some("0") => false,
                Some("1") => true,
                _ => return Err(bad()),
            }
        }
        "framing" => {
            script.framing = match value {
                Some("chunked") => Framing::Chunked,
                Some("length") => Framing::Length,
                Some("close") => Framing::Close,
                _ => return Err(bad()),
            }
        }
        "close" => script.close = flag()?,
        "echo" => script.echo = flag()?,
        "call" => script.call = Some(value.ok_or_else(bad)?.to_string()),
        "args" => script.args = Some(value.ok_or_else(bad)?.to_string()),
        _ => return Err(ScriptError::Unknown(directive.to_string())),
    }
    Ok(())
}

// ---- responses ----

const CHUNK_HEAD: &[u8] = b"data: {\"id\":\"chatcmpl-fake\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":";
const CHUNK_MORE: &[u8] = b",\"finish_reason\":null}]}\n\n";
const CHUNK_STOP: &[u8] = b",\"finish_reason\":\"stop\"}]}\n\n";
const MALFORMED: &[u8] = b"data: {not json\n\n";
const DONE: &[u8] = b"data: [DONE]\n\n";
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How the connection goes on once a response is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Read the next request.
    KeepAlive,
    /// Close after the response (`Connection: close`, `framing=close`).
    Close,
    /// Close with a FIN, body unfinished (`drop_after`).
    Fin,
    /// Close with an RST, body unfinished (`reset_after`).
    Reset,
}

/// What [`Response::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Appended bytes to the output, `body` of them body bytes (before framing).
    Wrote { body: u64 },
    /// The response waits this long before its next step.
    Wait(Duration),
    /// The response is over.
    End(Ending),
}

/// Where a response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    HeadDelay,
    Head,
    ErrorBody,
    BeforeToken,
    Token,
    Malformed,
    LongLine,
    Trailer,
    Finish,
    Over,
    Cut,
}

/// A response produced step by step from its script, so that a stream of any length
/// needs only this cursor in memory.
#[derive(Debug, Clone)]
struct Response {
    script: Script,
    status: u16,
    /// The JSON body of an error answer; `None` for a stream.
    error: Option<String>,
    /// `echo`: the words of the last user message.
    words: Vec<String>,
    /// `call`: the tool call streamed instead of tokens (name, arguments).
    tool_call: Option<(String, String)>,
    prompt_tokens: u64,
    /// The request asked for `Connection: close` (or could not be read further).
    close: bool,
    content_length: u64,
    stage: Stage,
    sent: u64,
    long_done: u64,
}

impl Response {
    /// An error answer outside any script (`404`, `400`, `413`): JSON, `Content-Length`.
    fn error(status: u16, message: &str, close: bool) -> Response {
        let body = serde_json::json!({ "error": { "message": message } }).to_string();
        Response::new(Script::default(), status, Some(body), Vec::new(), 0, close)
    }

    /// The response a script asks for.
    fn scripted(script: Script, prompt_tokens: u64, words: Vec<String>, close: bool) -> Response {
        let (status, error) = match script.status {
            Some(s) => {
                let body = serde_json::json!({ "error": {
                    "message": format!("fake status {s}"),
                    "type": "fake",
                    "code": format!("fake_{s}"),
                }});
                (s, Some(body.to_string()))
            }
            None => (200, None),
        };
        Response::new(script, status, error, words, prompt_tokens, close)
    }

    fn new(
        script: Script,
        status: u16,
        error: Option<String>,
        words: Vec<String>,
        prompt_tokens: u64,
        close: bool,
    ) -> Response {
        let mut resp = Response {
            script,
            status,
            error,
            words,
            tool_call: None,
            prompt_tokens,
            close,
            content_length: 0,
            stage: Stage::HeadDelay,
            sent: 0,
            long_done: 0,
        };
        if resp.framing() == Framing::Length {
            resp.content_length = resp.measure();
        }
        resp
    }

    /// The framing on the wire: error bodies are short and known, so they take a length
    /// unless the script asks for `framing=close`.
    fn framing(&self) -> Framing {
        match (self.script.framing, &self.error) {
            (Framing::Chunked, Some(_)) => Framing::Length,
            (framing, _) => framing,
        }
    }

    fn closes(&self) -> bool {
        self.close || self.script.close || self.framing() == Framing::Close
    }

    /// Tokens a finished stream has.
    fn planned(&self) -> u64 {
        if self.tool_call.is_some() {
            2
        } else if self.script.echo {
            self.words.len() as u64
        } else {
            self.script.tokens
        }
    }

    /// The body length, found by running a copy of the response to its end uncut.
    fn measure(&self) -> u64 {
        let mut probe = self.clone();
        probe.script.cut = None;
        (probe.sent, probe.long_done) = (0, 0);
        probe.stage = match probe.error {
            Some(_) => Stage::ErrorBody,
            None => Stage::BeforeToken,
        };
        let (mut out, mut scratch, mut total) = (Vec::new(), Vec::new(), 0);
        loop {
            out.clear();
            match probe.step(&mut out, &mut scratch) {
                Step::Wrote { body } => total += body,
                Step::Wait(_) => {}
                Step::End(_) => return total,
            }
        }
    }

    /// Appends the next piece of the response to `out` (`scratch` holds a body piece
    /// before it is framed), or says to wait, or that the response is over.
    fn step(&mut self, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Step {
        scratch.clear();
        loop {
            match self.stage {
                Stage::HeadDelay => {
                    self.stage = Stage::Head;
                    if self.script.head_delay_ms > 0 {
                        return Step::Wait(Duration::from_millis(self.script.head_delay_ms));
                    }
                }
                Stage::Head => {
                    self.write_head(out);
                    self.stage = match self.error {
                        Some(_) => Stage::ErrorBody,
                        None => Stage::BeforeToken,
                    };
                    return Step::Wrote { body: 0 };
                }
                Stage::ErrorBody => {
                    scratch.extend_from_slice(self.error.as_deref().unwrap_or("").as_bytes());
                    self.stage = Stage::Finish;
                    return self.frame(out, scratch);
                }
                Stage::BeforeToken => {
                    if let Some(wait) = self.before_token() {
                        return wait;
                    }
                }
                Stage::Token => {
                    self.write_token(scratch);
                    self.sent += 1;
                    self.stage = self.after_first(Stage::Token);
                    return self.frame(out, scratch);
                }
                Stage::Malformed => {
                    scratch.extend_from_slice(MALFORMED);
                    self.stage = self.after_first(Stage::Malformed);
                    return self.frame(out, scratch);
                }
                Stage::LongLine => {
                    if self.long_piece(scratch) {
                        self.stage = Stage::BeforeToken;
                    }
                    return self.frame(out, scratch);
                }
                Stage::Trailer => {
                    self.write_trailer(scratch);
                    self.stage = Stage::Finish;
                    return self.frame(out, scratch);
                }
                Stage::Finish => {
                    if self.framing() == Framing::Chunked {
                        out.extend_from_slice(LAST_CHUNK);
                    }
                    self.stage = Stage::Over;
                }
                Stage::Over => {
                    return Step::End(if self.closes() {
                        Ending::Close
                    } else {
                        Ending::KeepAlive
                    });
                }
                Stage::Cut => {
                    let reset = self.script.cut.is_some_and(|c| c.reset);
                    return Step::End(if reset { Ending::Reset } else { Ending::Fin });
                }
            }
        }
    }

    /// Decides what comes before the next token: a cut, the trailer, or the token (after
    /// its delay, which is returned as a wait; a trickle paces pieces instead).
    fn before_token(&mut self) -> Option<Step> {
        if self.script.cut.is_some_and(|c| self.sent >= c.after) {
            self.stage = Stage::Cut;
            return None;
        }
        if !self.script.forever && self.sent >= self.planned() {
            self.stage = Stage::Trailer;
            return None;
        }
        self.stage = Stage::Token;
        let delay = self.script.token_delay();
        (self.script.trickle.is_none() && !delay.is_zero()).then_some(Step::Wait(delay))
    }

    /// The stage after `done`, where the extras that follow the first token come in order.
    fn after_first(&self, done: Stage) -> Stage {
        let first = self.sent == 1;
        match done {
            Stage::Token if first && self.script.malformed => Stage::Malformed,
            Stage::Token | Stage::Malformed if first && self.script.long_line.is_some() => {
                Stage::LongLine
            }
            _ => Stage::BeforeToken,
        }
    }

    /// Frames the body piece in `scratch` onto `out`.
    fn frame(&self, out: &mut Vec<u8>, scratch: &[u8]) -> Step {
        if self.framing() == Framing::Chunked {
            let _ = write!(out, "{:x}\r\n", scratch.len());
            out.extend_from_slice(scratch);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(scratch);
        }
        Step::Wrote {
            body: scratch.len() as u64,
        }
    }

    fn write_head(&self, out: &mut Vec<u8>) {
        let (ctype, cache) = match self.error {
            Some(_) => ("application/json", ""),
            None => ("text/event-stream", "Cache-Control: no-cache\r\n"),
        };
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nContent-Type: {ctype}\r\n{cache}",
            self.status,
            reason(self.status)
        );
        match self.framing() {
            Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            Framing::Length => {
                let _ = write!(out, "Content-Length: {}\r\n", self.content_length);
            }
            Framing::Close => {}
        }
        if let Some(secs) = self.script.retry_after {
            let _ = write!(out, "Retry-After: {secs}\r\n");
        }
        if self.closes() {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The SSE event of token `self.sent`.
    fn write_token(&self, buf: &mut Vec<u8>) {
        let i = self.sent;
        if let Some((name, args)) = &self.tool_call {
            return write_call_part(buf, i, name, args);
        }
        let sep = if i == 0 { "" } else { " " };
        buf.extend_from_slice(CHUNK_HEAD);
        buf.extend_from_slice(b"{\"content\":");
        let word = match self.words.len() {
            // `echo` with `forever` goes round the words again.
            n if self.script.echo && n > 0 => Some(&self.words[(i % n as u64) as usize]),
            _ => None,
        };
        match word {
            // Words come from the request: JSON-escape them.
            Some(w) => {
                let _ = serde_json::to_writer(&mut *buf, &format!("{sep}{w}"));
            }
            None => {
                let _ = write!(buf, "\"{sep}w{i}\"");
            }
        }
        buf.push(b'}');
        let last = !self.script.forever && i + 1 == self.planned();
        buf.extend_from_slice(if last { CHUNK_STOP } else { CHUNK_MORE });
    }

    /// The end of a finished stream: a stop chunk if no token carried it, usage, `[DONE]`.
    fn write_trailer(&self, buf: &mut Vec<u8>) {
        if self.planned() == 0 {
            buf.extend_from_slice(CHUNK_HEAD);
            buf.extend_from_slice(b"{}");
            buf.extend_from_slice(CHUNK_STOP);
        }
        if self.script.usage {
            let (p, n) = (self.prompt_tokens, self.sent);
            let _ = write!(
                buf,
                "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{p},\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\n",
                p + n
            );
        }
        buf.extend_from_slice(DONE);
    }

    /// The next piece of the `long_line` (`data: `, B bytes of `x`, a newline, and the
    /// blank line that ends the event); true when it was the last.
    fn long_piece(&mut self, buf: &mut Vec<u8>) -> bool {
        const PREFIX: &[u8] = b"data: ";
        let xs = self.script.long_line.unwrap_or(0);
        let total = PREFIX.len() as u64 + xs + 2;
        let end = (self.long_done + LONG_PIECE).min(total);
        for p in self.long_done..end {
            buf.push(match p {
                p if p < PREFIX.len() as u64 => PREFIX[p as usize],
                p if p < PREFIX.len() as u64 + xs => b'x',
                _ => b'\n',
            });
        }
        self.long_done = end;
        end == total
    }
}

/// The reason phrase of a status code.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Fake Status",
    }
}

/// The response to a complete request.
fn respond(req: &SeenRequest, close: bool) -> Response {
    let path = req.target.split('?').next().unwrap_or("");
    if req.method != "POST" || !path.ends_with("/chat/completions") {
        return Response::error(404, "not found", close);
    }
    // No body at all (no Content-Length) is a request for the defaults.
    let body: Value = match req.body.trim() {
        "" => Value::Null,
        text => match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => return Response::error(400, "request body is not JSON", close),
        },
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let script = match parse_script(model) {
        Ok(s) => s,
        Err(e) => return Response::error(400, &e.to_string(), close),
    };
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let prompt_tokens = messages
        .iter()
        .map(|m| content_text(m).split_whitespace().count() as u64)
        .sum();
    let mut script = script;
    let after_tool = messages
        .last()
        .is_some_and(|m| m.get("role").and_then(Value::as_str) == Some("tool"));
    let mut tool_call = None;
    if let Some(name) = script.call.clone() {
        if after_tool {
            script.echo = true;
        } else {
            tool_call = Some((name, script.args.clone().unwrap_or_else(|| "{}".into())));
        }
    }
    let words = match (script.echo, after_tool) {
        (true, true) => words_of(messages.last()),
        (true, false) => last_user_words(messages),
        (false, _) => Vec::new(),
    };
    let mut resp = Response::scripted(script, prompt_tokens, words, close);
    resp.tool_call = tool_call;
    if resp.framing() == Framing::Length {
        resp.content_length = resp.measure();
    }
    resp
}

/// Chunk `i` (0 or 1) of a streamed tool call: the first names the call and carries half
/// the arguments, the second the rest and the finish reason.
fn write_call_part(buf: &mut Vec<u8>, i: u64, name: &str, args: &str) {
    let mut half = args.len() / 2;
    while !args.is_char_boundary(half) {
        half -= 1;
    }
    let part = if i == 0 { &args[..half] } else { &args[half..] };
    let mut call = serde_json::json!({"index": 0, "function": {"arguments": part}});
    if i == 0 {
        call["id"] = "call_fake".into();
        call["type"] = "function".into();
        call["function"]["name"] = name.into();
    }
    buf.extend_from_slice(CHUNK_HEAD);
    let delta = serde_json::json!({"tool_calls": [call]});
    let _ = serde_json::to_writer(&mut *buf, &delta);
    buf.extend_from_slice(if i == 0 {
        CHUNK_MORE
    } else {
        b",\"finish_reason\":\"tool_calls\"}]}\n\n"
    });
}

fn words_of(message: Option<&Value>) -> Vec<String> {
    message
        .map(content_text)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A message's text: its `content` string, or the `text` of its content parts.
fn content_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn last_user_words(messages: &[Value]) -> Vec<String> {
    words_of(
        messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user")),
    )
}

// ---- requests ----

/// A complete request off the wire.
#[derive(Debug)]
struct Request {
    seen: SeenRequest,
    /// The client will not send another request (`Connection: close`, or HTTP/1.0
    /// without keep-alive).
    close: bool,
}

/// What the buffered bytes hold.
#[derive(Debug)]
enum Parse {
    /// Not yet a whole request.
    Partial,
    /// A request, and how many bytes it took.
    Done(Request, usize),
    /// A request this server will not read: answer this status and close.
    Refuse(u16, &'static str),
}

/// Reads one request (head by `httparse`, body by `Content-Length`) from the front of `buf`.
fn parse_request(buf: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Parse::Partial,
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Parse::Refuse(431, "request head too large")
        }
        Err(_) => return Parse::Refuse(400, "malformed request head"),
    };
    let mut close = req.version == Some(0);
    let mut length = 0;
    let mut fields = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).into_owned();
        match name.as_str() {
            "content-length" => match value.trim().parse() {
                Ok(n) => length = n,
                Err(_) => return Parse::Refuse(400, "bad Content-Length"),
            },
            "transfer-encoding" => {
                return Parse::Refuse(400, "request bodies must have a Content-Length")
            }
            "connection" => {
                let has = |t: &str| value.split(',').any(|v| v.trim().eq_ignore_ascii_case(t));
                close = has("close") || (close && !has("keep-alive"));
            }
            _ => {}
        }
        fields.push((name, value));
    }
    if length > MAX_BODY {
        return Parse::Refuse(413, "request body too large");
    }
    let Some(body) = buf.get(head_len..head_len + length) else {
        return Parse::Partial;
    };
    let seen = SeenRequest {
        method: req.method.unwrap_or("").to_string(),
        target: req.path.unwrap_or("").to_string(),
        headers: fields,
        body: String::from_utf8_lossy(body).into_owned(),
    };
    Parse::Done(Request { seen, close }, head_len + length)
}

// ---- connections ----

/// Whether a connection stays open after it was driven, and if not, how it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Open,
    /// Close after a complete response (TLS sends `close_notify` first).
    Close,
    /// Close with a FIN and nothing more.
    Fin,
    /// Close with an RST.
    Reset,
}

/// How a read from the peer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// Nothing more to read now.
    Blocked,
    /// Enough is buffered; read again once the response is over.
    Paused,
    /// The peer closed its side.
    Eof,
}

/// Timer entries: when, which connection, and that connection's stamp (a slab key is
/// reused once its connection closes).
type Timers = BinaryHeap<Reverse<(Instant, usize, u64)>>;

/// What the loop lends a connection while it is driven.
struct Ctx<'a> {
    now: Instant,
    scratch: &'a mut Vec<u8>,
    timers: &'a mut Timers,
    shared: &'a Shared,
}

/// One accepted connection and the response it is writing, if any.
struct Conn {
    key: usize,
    stamp: u64,
    sock: TcpStream,
    tls: Option<Box<ServerConnection>>,
    inbuf: Vec<u8>,
    /// Response bytes; those in `out_pos..out_limit` may be written now (a trickle
    /// releases them a piece at a time), the rest wait.
    out: Vec<u8>,
    out_pos: usize,
    out_limit: usize,
    resp: Option<Response>,
    ending: Option<Ending>,
    /// The pending timer, if any: the response must not step before it fires.
    timer_at: Option<Instant>,
    /// When the response last stepped on time; delays count from here, so a stream keeps
    /// its cadence however late the loop runs.
    last_tick: Instant,
    read_paused: bool,
    peer_closed: bool,
}

impl Conn {
    fn new(key: usize, stamp: u64, sock: TcpStream, tls: Option<Box<ServerConnection>>) -> Conn {
        Conn {
            key,
            stamp,
            sock,
            tls,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            out_limit: 0,
            resp: None,
            ending: None,
            timer_at: None,
            last_tick: Instant::now(),
            read_paused: false,
            peer_closed: false,
        }
    }

    /// The socket is ready: readable (or closed, or in error) when `readable`, else only
    /// writable. Either way pending bytes are written and the response moves on.
    fn on_ready(&mut self, cx: &mut Ctx<'_>, readable: bool) -> Fate {
        let was_busy = self.resp.is_some();
        // After an end of stream the socket stays readable: reading again would only
        // find the same end and cut the response a half-closed client still waits for.
        if readable && !self.peer_closed {
            match self.read_in() {
                Err(_) => return Fate::Fin,
                // A client that goes away mid-response cancelled it: close at once, as a
                // real provider's connection would end.
                Ok(ReadEnd::Eof) if was_busy => return Fate::Fin,
                Ok(ReadEnd::Eof) => self.peer_closed = true,
                Ok(_) => {}
            }
        }
        if self.flush().is_err() {
            return Fate::Fin;
        }
        self.drive(cx)
    }

    /// The connection's timer, due at `at`, fired.
    fn on_timer(&mut self, cx: &mut Ctx<'_>, at: Instant) -> Fate {
        self.timer_at = None;
        self.last_tick = at;
        self.drive(cx)
    }

    /// Moves the connection on as far as it can go without waiting: responses, then the
    /// requests buffered after them.
    fn drive(&mut self, cx: &mut Ctx<'_>) -> Fate {
        loop {
            if self.timer_at.is_some() {
                return Fate::Open;
            }
            if self.resp.is_none() && !self.next_request(cx) {
                return if self.peer_closed {
                    Fate::Fin
                } else {
                    Fate::Open
                };
            }
            match self.advance(cx) {
                Err(_) => return Fate::Fin,
                Ok(None) => return Fate::Open,
                Ok(Some(Ending::KeepAlive)) => (self.resp, self.ending) = (None, None),
                Ok(Some(Ending::Close)) => return Fate::Close,
                Ok(Some(Ending::Fin)) => return Fate::Fin,
                Ok(Some(Ending::Reset)) => return Fate::Reset,
            }
        }
    }

    /// Starts the response to the next buffered request; false if there is none yet.
    fn next_request(&mut self, cx: &mut Ctx<'_>) -> bool {
        if self.read_paused {
            match self.read_in() {
                Ok(ReadEnd::Eof) => self.peer_closed = true,
                Ok(_) => {}
                Err(_) => self.peer_closed = true,
            }
        }
        let resp = match parse_request(&self.inbuf) {
            Parse::Partial => return false,
            Parse::Refuse(status, message) => {
                self.inbuf.clear();
                Response::error(status, message, true)
            }
            Parse::Done(req, used) => {
                self.inbuf.drain(..used);
                let resp = respond(&req.seen, req.close || self.peer_closed);
                cx.shared.record(req.seen);
                resp
            }
        };
        if self.inbuf.is_empty() && self.inbuf.capacity() > READ_AHEAD {
            self.inbuf = Vec::new();
        }
        self.resp = Some(resp);
        self.last_tick = cx.now;
        true
    }

    /// Steps the response until it waits or ends; the ending once its bytes are written.
    fn advance(&mut self, cx: &mut Ctx<'_>) -> io::Result<Option<Ending>> {
        let Some(mut resp) = self.resp.take() else {
            return Ok(None);
        };
        let result = match resp.script.trickle {
            Some(piece) => self.trickle(&mut resp, cx, piece),
            None => self.pace(&mut resp, cx),
        };
        self.resp = Some(resp);
        result
    }

    /// Normal pacing: everything up to the next wait goes out in one write, so a token
    /// costs one `write`.
    fn pace(&mut self, resp: &mut Response, cx: &mut Ctx<'_>) -> io::Result<Option<Ending>> {
        loop {
            if let Some(ending) = self.ending {
                self.flush()?;
                return Ok(self.flushed().then_some(ending));
            }
            if self.unsent() > HIGH_WATER {
                self.flush()?;
                if self.unsent() > HIGH_WATER {
                    return Ok(None); // the next writable event resumes
                }
            }
            let step = resp.step(&mut self.out, cx.scratch);
            self.out_limit = self.out.len();
            match step {
                Step::Wrote { .. } => {}
                Step::Wait(delay) => {
                    self.flush()?;
                    self.arm(cx, delay);
                    return Ok(None);
                }
                Step::End(ending) => self.ending = Some(ending),
            }
        }
    }

    /// Trickle pacing: one piece of `piece` bytes per tick, whatever the response holds.
    fn trickle(
        &mut self,
        resp: &mut Response,
        cx: &mut Ctx<'_>,
        piece: usize,
    ) -> io::Result<Option<Ending>> {
        while self.unsent() < piece && self.ending.is_none() {
            match resp.step(&mut self.out, cx.scratch) {
                Step::Wrote { .. } => {}
                // Only the head delay waits here, before any byte is out.
                Step::Wait(delay) if self.unsent() == 0 => {
                    self.arm(cx, delay);
                    return Ok(None);
                }
                Step::Wait(_) => {}
                Step::End(ending) => self.ending = Some(ending),
            }
        }
        self.out_limit = self.out.len().min(self.out_pos + piece);
        self.flush()?;
        if self.ending.is_some() && self.flushed() {
            return Ok(self.ending);
        }
        self.arm(cx, resp.script.trickle_every());
        Ok(None)
    }

    /// Sets the connection's timer `delay` after its last tick (not before now).
    fn arm(&mut self, cx: &mut Ctx<'_>, delay: Duration) {
        let at = (self.last_tick + delay).max(cx.now);
        self.timer_at = Some(at);
        cx.timers.push(Reverse((at, self.key, self.stamp)));
    }

    /// Response bytes generated but not yet written.
    fn unsent(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Everything generated has gone to the socket (TLS records included).
    fn flushed(&self) -> bool {
        self.unsent() == 0 && self.tls.as_ref().is_none_or(|t| !t.wants_write())
    }

    /// Writes what may be written until the socket would block.
    fn flush(&mut self) -> io::Result<()> {
        let ready = &self.out[self.out_pos..self.out_limit];
        let written = match self.tls.as_deref_mut() {
            None => write_plain(&mut self.sock, ready)?,
            Some(tls) => write_tls(tls, &mut self.sock, ready)?,
        };
        self.out_pos += written;
        if self.out_pos == self.out.len() {
            self.out.clear();
            (self.out_pos, self.out_limit) = (0, 0);
            // A long line or a trickle may have grown the buffer: give it back.
            if self.out.capacity() > HIGH_WATER {
                self.out = Vec::new();
            }
        } else if self.out_pos > HIGH_WATER {
            self.out.drain(..self.out_pos);
            self.out_limit -= self.out_pos;
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Reads what the peer sent into `inbuf`, up to a bound that depends on whether a
    /// response is in progress.
    fn read_in(&mut self) -> io::Result<ReadEnd> {
        let cap = match self.resp {
            Some(_) => READ_AHEAD,
            None => MAX_HEAD + MAX_BODY,
        };
        let end = match self.tls.as_deref_mut() {
            None => read_plain(&mut self.sock, &mut self.inbuf, cap)?,
            Some(tls) => read_tls(tls, &mut self.sock, &mut self.inbuf, cap)?,
        };
        self.read_paused = end == ReadEnd::Paused;
        Ok(end)
    }

    /// Closes the socket the way `fate` says.
    fn close(mut self, fate: Fate) {
        match fate {
            Fate::Close => {
                if let Some(tls) = self.tls.as_deref_mut() {
                    tls.send_close_notify();
                    let _ = tls.write_tls(&mut self.sock);
                }
            }
            // With a zero linger time, close(2) sends an RST instead of a FIN.
            Fate::Reset => {
                let _ = socket2::SockRef::from(&self.sock).set_linger(Some(Duration::ZERO));
            }
            Fate::Fin | Fate::Open => {}
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Writes `bytes` until done or the socket would block; how many went.
fn write_plain(sock: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match sock.write(&bytes[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if would_block(&e) => break,
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Hands `bytes` to rustls as far as its buffer takes them and writes its records until
/// the socket would block; how many plaintext bytes rustls took.
fn write_tls(tls: &mut ServerConnection, sock: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    loop {
        if done < bytes.len() {
            done += tls.writer().write(&bytes[done..])?;
        }
        if !tls.wants_write() {
            return Ok(done);
        }
        match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if would_block(&e) => return Ok(done),
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads into `inbuf` until the socket would block, the peer closes, or `cap` is reached.
fn read_plain(sock: &mut TcpStream, inbuf: &mut Vec<u8>, cap: usize) -> io::Result<ReadEnd> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if inbuf.len() >= cap {
            return Ok(ReadEnd::Paused);
        }
        match sock.read(&mut buf) {
            Ok(0) => return Ok(ReadEnd::Eof),
            Ok(n) => inbuf.extend_from_slice(&buf[..n]),
            Err(e) if would_block(&e) => return Ok(ReadEnd::Blocked),
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// [`read_plain`] through rustls: records in, plaintext out (handshake replies are left
/// for the next flush).
fn read_tls(
    tls: &mut ServerConnection,
    sock: &mut TcpStream,
    inbuf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<ReadEnd> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        // Plaintext rustls already holds comes first, so its buffer never fills up.
        loop {
            if inbuf.len() >= cap {
                return Ok(ReadEnd::Paused);
            }
            match tls.reader().read(&mut buf) {
                Ok(0) => return Ok(ReadEnd::Eof), // close_notify
                Ok(n) => inbuf.extend_from_slice(&buf[..n]),
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(ReadEnd::Eof),
                Err(e) => return Err(e),
            }
        }
        match tls.read_tls(sock) {
            Ok(0) => return Ok(ReadEnd::Eof),
            Ok(_) => {}
            Err(e) if would_block(&e) => return Ok(ReadEnd::Blocked),
            Err(e) if interrupted(&e) => continue,
            Err(e) => return Err(e),
        }
        if let Err(e) = tls.process_new_packets() {
            // Tell the peer why (the alert), then give up on the connection.
            let _ = tls.write_tls(sock);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

// ---- the event loop ----

/// The loop thread's state: the listener, every connection, and their timers.
struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    shared: Arc<Shared>,
    conns: Slab<Conn>,
    timers: Timers,
    /// Timers due in this turn, taken off the heap before any runs, so a timer armed for
    /// "now" waits for the next turn instead of spinning this one.
    due: Vec<(Instant, usize, u64)>,
    scratch: Vec<u8>,
    next_stamp: u64,
    accept_retry_armed: bool,
}

impl EventLoop {
    fn new(
        mut listener: TcpListener,
        tls: Option<Arc<ServerConfig>>,
        shared: Arc<Shared>,
    ) -> io::Result<(EventLoop, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let event_loop = EventLoop {
            poll,
            listener,
            tls,
            shared,
            conns: Slab::new(),
            timers: BinaryHeap::new(),
            due: Vec::new(),
            scratch: Vec::new(),
            next_stamp: 0,
            accept_retry_armed: false,
        };
        Ok((event_loop, waker))
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        while !self.shared.stop.load(Ordering::Acquire) {
            let timeout = self
                .timers
                .peek()
                .map(|Reverse((at, _, _))| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if interrupted(&e) {
                    continue;
                }
                eprintln!("fake upstream: poll failed, stopping: {e}");
                return;
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(now),
                    WAKER => {}
                    Token(t) => {
                        // Errors and hang-ups surface through the read.
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        self.ready(t - FIRST_CONN, readable, now);
                    }
                }
            }
            self.fire_timers();
        }
    }

    fn ready(&mut self, key: usize, readable: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut cx = Ctx {
            now,
            scratch: &mut self.scratch,
            timers: &mut self.timers,
            shared: &self.shared,
        };
        let fate = conn.on_ready(&mut cx, readable);
        if fate != Fate::Open {
            self.close(key, fate);
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse(entry)) = self.timers.peek() {
            if entry.0 > now {
                break;
            }
            self.timers.pop();
            self.due.push(entry);
        }
        let mut due = std::mem::take(&mut self.due);
        for (at, key, stamp) in due.drain(..) {
            if key == ACCEPT_TIMER {
                self.accept_retry_armed = false;
                self.accept_all(now);
            } else {
                self.fire(at, key, stamp, now);
            }
        }
        self.due = due;
    }

    fn fire(&mut self, at: Instant, key: usize, stamp: u64, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        // A stale entry: the connection closed and its key went to a new one.
        if conn.stamp != stamp || conn.timer_at != Some(at) {
            return;
        }
        let mut cx = Ctx {
            now,
            scratch: &mut self.scratch,
            timers: &mut self.timers,
            shared: &self.shared,
        };
        let fate = conn.on_timer(&mut cx, at);
        if fate != Fate::Open {
            self.close(key, fate);
        }
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => self.add(sock),
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) || e.kind() == io::ErrorKind::ConnectionAborted => {}
                // Out of descriptors (or memory): the listener reports no new edge for
                // connections already queued, so try again on a timer.
                Err(_) => {
                    if !self.accept_retry_armed {
                        self.accept_retry_armed = true;
                        let at = now + ACCEPT_RETRY;
                        self.timers.push(Reverse((at, ACCEPT_TIMER, 0)));
                    }
                    return;
                }
            }
        }
    }

    fn add(&mut self, mut sock: TcpStream) {
        // Tokens are small writes that must leave at once, not wait for an ACK (Nagle).
        let _ = sock.set_nodelay(true);
        let tls = match &self.tls {
            Some(config) => match ServerConnection::new(config.clone()) {
                Ok(conn) => Some(Box::new(conn)),
                Err(_) => return,
            },
            None => None,
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // Both interests once, edge-triggered: no re-registration per response.
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut sock, Token(key + FIRST_CONN), interest)
            .is_err()
        {
            return;
        }
        self.next_stamp += 1;
        entry.insert(Conn::new(key, self.next_stamp, sock, tls));
        self.shared.accepted.fetch_add(1, Ordering::AcqRel);
        self.shared.open.fetch_add(1, Ordering::AcqRel);
    }

    fn close(&mut self, key: usize, fate: Fate) {
        if let Some(conn) = self.conns.try_remove(key) {
            conn.close(fate);
            self.shared.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_models_get_the_defaults() {
        for model in ["gpt-4o", "", "fake", "fakes:tokens=9"] {
            assert_eq!(parse_script(model), Ok(Script::default()), "{model}");
        }
        assert_eq!(parse_script("fake:"), Ok(Script::default()));
    }

    #[test]
    fn every_directive_parses() {
        let s = parse_script(
            "fake:tokens=7;delay_ms=5;status=503;retry_after=2;head_delay_ms=9;malformed;\
             long_line=100;drop_after=4;trickle=3;usage=0;framing=close;close;echo;\
             call=get_weather;args={\"a\": 1}",
        )
        .expect("script");
        let want = Script {
            tokens: 7,
            delay_ms: Some(5),
            status: Some(503),
            retry_after: Some(2),
            head_delay_ms: 9,
            malformed: true,
            long_line: Some(100),
            cut: Some(Cut {
                after: 4,
                reset: false,
            }),
            forever: false,
            trickle: Some(3),
            usage: false,
            framing: Framing::Close,
            close: true,
            echo: true,
            call: Some("get_weather".into()),
            args: Some("{\"a\": 1}".into()),
        };
        assert_eq!(s, want);
        let s = parse_script("fake: reset_after=2 ; forever ;framing=chunked").expect("script");
        assert_eq!(
            s.cut,
            Some(Cut {
                after: 2,
                reset: true
            })
        );
        assert!(s.forever);
        assert_eq!(s.token_delay(), Duration::from_millis(FOREVER_DELAY_MS));
    }

    #[test]
    fn bad_scripts_are_refused() {
        let unknown = |d: &str| Err(ScriptError::Unknown(d.to_string()));
        let bad = |d: &str| Err(ScriptError::BadValue(d.to_string()));
        assert_eq!(parse_script("fake:tokens=2;nope"), unknown("nope"));
        assert_eq!(parse_script("fake:malformed=1"), unknown("malformed=1"));
        assert_eq!(parse_script("fake:tokens=x"), bad("tokens=x"));
        assert_eq!(parse_script("fake:tokens"), bad("tokens"));
        assert_eq!(parse_script("fake:tokens=-1"), bad("tokens=-1"));
        assert_eq!(parse_script("fake:tokens=1000001"), bad("tokens=1000001"));
        assert_eq!(parse_script("fake:status=99"), bad("status=99"));
        assert_eq!(parse_script("fake:status=600"), bad("status=600"));
        assert_eq!(parse_script("fake:trickle=0"), bad("trickle=0"));
        assert_eq!(parse_script("fake:usage=2"), bad("usage=2"));
        assert_eq!(parse_script("fake:framing=gzip"), bad("framing=gzip"));
        assert!(matches!(
            parse_script("fake:forever;framing=length"),
            Err(ScriptError::Conflict(_))
        ));
        let msg = parse_script("fake:nope").unwrap_err().to_string();
        assert_eq!(msg, "unknown directive `nope`");
    }

    /// Runs a response to its end with no waits; the wire bytes and the ending.
    fn run(resp: &mut Response) -> (String, Ending) {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        loop {
            if let Step::End(e) = resp.step(&mut out, &mut scratch) {
                return (String::from_utf8(out).expect("utf-8"), e);
            }
        }
    }

    fn scripted(model: &str, prompt: u64, words: &[&str]) -> Response {
        let words = words.iter().map(|w| w.to_string()).collect();
        Response::scripted(parse_script(model).expect("script"), prompt, words, false)
    }

    #[test]
    fn default_stream_bytes() {
        let (wire, end) = run(&mut scripted("gpt", 4, &[]));
        assert_eq!(end, Ending::KeepAlive);
        let (head, body) = wire.split_once("\r\n\r\n").expect("head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains("Content-Type: text/event-stream"));
        assert!(head.contains("Transfer-Encoding: chunked"));
        assert!(body.contains("\"delta\":{\"content\":\"w0\"},\"finish_reason\":null"));
        assert!(body.contains("\"delta\":{\"content\":\" w2\"},\"finish_reason\":\"stop\""));
        assert!(body.contains(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3,\"total_tokens\":7}}\n\n"
        ));
        assert!(body.ends_with("data: [DONE]\n\n\r\n0\r\n\r\n"));
    }

    #[test]
    fn length_framing_counts_the_body_it_sends() {
        for model in [
            "fake:framing=length;tokens=12;malformed;long_line=40000",
            "fake:framing=length;echo",
            "fake:framing=length;status=429",
            "fake:framing=length;drop_after=1",
        ] {
            let mut resp = scripted(model, 2, &["a\"b", "c"]);
            let (wire, _) = run(&mut resp);
            let (head, body) = wire.split_once("\r\n\r\n").expect("head");
            assert_eq!(resp.measure(), resp.content_length, "{model}");
            let want = format!("Content-Length: {}", resp.content_length);
            assert!(head.lines().any(|l| l == want), "{model}: {head}");
            if !model.contains("drop_after") {
                assert_eq!(body.len() as u64, resp.content_length, "{model}");
            }
        }
    }

    #[test]
    fn extras_follow_the_first_token_and_cuts_end_early() {
        let (wire, end) = run(&mut scripted(
            "fake:framing=close;malformed;long_line=5;drop_after=2",
            0,
            &[],
        ));
        assert_eq!(end, Ending::Fin);
        let body = wire.split_once("\r\n\r\n").expect("head").1;
        let w0 = body.find("\"w0\"").expect("w0");
        let bad = body.find("data: {not json\n\n").expect("malformed");
        let long = body.find("data: xxxxx\n\n").expect("long line");
        let w1 = body.find("\" w1\"").expect("w1");
        assert!(w0 < bad && bad < long && long < w1);
        assert!(!body.contains("w2") && !body.contains("[DONE]"));
        let (_, end) = run(&mut scripted("fake:reset_after=0", 0, &[]));
        assert_eq!(end, Ending::Reset);
    }

    #[test]
    fn echo_streams_the_words_escaped() {
        let (wire, _) = run(&mut scripted(
            "fake:echo;tokens=9;framing=close",
            5,
            &["say", "\"hi\""],
        ));
        assert!(wire.contains("{\"content\":\"say\"},\"finish_reason\":null"));
        assert!(wire.contains("{\"content\":\" \\\"hi\\\"\"},\"finish_reason\":\"stop\""));
        assert!(wire.contains("\"completion_tokens\":2"));
    }

    #[test]
    fn no_tokens_still_stop() {
        let (wire, _) = run(&mut scripted("fake:tokens=0;usage=0;framing=close", 0, &[]));
        assert!(wire.contains("\"delta\":{},\"finish_reason\":\"stop\""));
        assert!(!wire.contains("usage"));
    }

    #[test]
    fn delays_are_waits_and_trickles_have_none() {
        let mut resp = scripted("fake:tokens=2;delay_ms=30;head_delay_ms=7", 0, &[]);
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let mut waits = Vec::new();
        loop {
            match resp.step(&mut out, &mut scratch) {
                Step::Wait(d) => waits.push(d.as_millis()),
                Step::End(_) => break,
                Step::Wrote { .. } => {}
            }
        }
        assert_eq!(waits, [7, 30, 30]);
        let mut resp = scripted("fake:tokens=2;delay_ms=30;trickle=5", 0, &[]);
        assert!(!matches!(resp.step(&mut out, &mut scratch), Step::Wait(_)));
    }

    #[test]
    fn requests_parse_with_and_without_bodies() {
        let raw = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Key: V\r\n\r\n{}GET";
        let Parse::Done(req, used) = parse_request(raw) else {
            panic!("not parsed")
        };
        assert_eq!(used, raw.len() - 3);
        assert_eq!(req.seen.body, "{}");
        assert_eq!(req.seen.header("x-key"), Some("V"));
        assert_eq!(req.seen.headers[2].0, "x-key");
        assert!(!req.close);
        assert!(matches!(
            parse_request(&raw[..raw.len() - 4]),
            Parse::Partial
        ));
        let raw = b"GET /x HTTP/1.0\r\n\r\n";
        assert!(matches!(
            parse_request(raw),
            Parse::Done(Request { close: true, .. }, 19)
        ));
        let raw = b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert!(matches!(
            parse_request(raw),
            Parse::Done(Request { close: true, .. }, _)
        ));
    }

    #[test]
    fn unreadable_requests_are_refused() {
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse_request(chunked), Parse::Refuse(400, _)));
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            parse_request(big.as_bytes()),
            Parse::Refuse(413, _)
        ));
        let long = vec![b'a'; MAX_HEAD + 1];
        assert!(matches!(parse_request(&long), Parse::Refuse(400 | 431, _)));
        assert!(matches!(
            parse_request(b"\x01\x02 / HTTP/1.1\r\n\r\n"),
            Parse::Refuse(400, _)
        ));
    }

    #[test]
    fn prompt_words_count_every_message() {
        let req = SeenRequest {
            method: "POST".into(),
            target: "/v1/chat/completions?x=1".into(),
            headers: Vec::new(),
            body: r#"{"model":"fake:echo","messages":[
                {"role":"system","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"one two"},{"type":"text","text":"three"}]},
                {"role":"assistant","content":"ok"}]}"#
                .into(),
        };
        let resp = respond(&req, false);
        assert_eq!(resp.prompt_tokens, 6);
        assert_eq!(resp.words, ["one", "two", "three"]);
        let get = SeenRequest {
            method: "GET".into(),
            ..req
        };
        assert_eq!(respond(&get, false).status, 404);
    }
}
