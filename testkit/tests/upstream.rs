//! The fake OpenAI-compatible upstream from the outside: plain `std::net::TcpStream`
//! clients (most through `halyard_testkit::Client`) and a rustls client check every script
//! directive, keep-alive and pipelining, the connection counters, TLS and the `fake-upstream`
//! binary. Every wait is bounded. (Ten thousand concurrent streams are a benchmark:
//! `benches/load/chat.sh --only upstream`.)

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_testkit::{Client, FakeUpstream, Response, UpstreamOptions};
use serde_json::{json, Value};

/// Bound on any single wait.
const TIMEOUT: Duration = Duration::from_secs(10);

// ---- helpers ----

/// A chat-completions request body with one user message.
fn body(model: &str, user: &str) -> String {
    json!({
        "model": model,
        "stream": true,
        "messages": [{ "role": "user", "content": user }],
    })
    .to_string()
}

/// The raw bytes of `POST /v1/chat/completions` with `body` and extra header lines.
fn post(body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends a chat request for `model` (user message "one two three") and reads the response.
fn chat_on(client: &mut Client, model: &str) -> Response {
    client
        .send(&post(&body(model, "one two three"), ""))
        .expect("send");
    client.response().expect("response")
}

/// One chat request on a new connection.
fn chat(up: &FakeUpstream, model: &str) -> Response {
    chat_on(&mut Client::connect(up.addr()).expect("connect"), model)
}

/// What a stream carried: the text of its deltas, each chunk's finish reason, the usage,
/// the raw `data:` payloads, and whether `[DONE]` came last.
#[derive(Debug, Default)]
struct Sse {
    text: String,
    finish: Vec<Value>,
    usage: Option<Value>,
    data: Vec<String>,
    done: bool,
}

fn sse(body: &[u8]) -> Sse {
    let text = String::from_utf8_lossy(body);
    let mut out = Sse::default();
    for payload in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        out.data.push(payload.to_string());
        out.done = payload == "[DONE]";
        let Ok(v) = serde_json::from_str::<Value>(payload) else {
            continue;
        };
        if let Some(u) = v.get("usage") {
            out.usage = Some(u.clone());
        }
        if let Some(choice) = v["choices"].get(0) {
            out.finish.push(choice["finish_reason"].clone());
            if let Some(t) = choice["delta"]["content"].as_str() {
                out.text.push_str(t);
            }
        }
    }
    out
}

/// Polls `check` until it holds or 5 s have passed.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "not within 5 s: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads a raw stream to its end; the bytes and the error that ended it, if any.
fn read_all(stream: &mut TcpStream) -> (Vec<u8>, Option<io::Error>) {
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (got, Some(e)),
        }
    }
}

fn split_head(raw: &[u8]) -> (String, Vec<u8>) {
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..at]).into_owned();
    (head, raw[at + 4..].to_vec())
}

// ---- the defaults and the connection ----

#[test]
fn default_model_streams_three_words_then_usage_then_done() {
    let up = FakeUpstream::start();
    assert_eq!(up.base_url(), format!("http://{}/v1", up.addr()));
    let resp = chat(&up, "gpt-4o-mini");
    assert_eq!(resp.status, 200);
    assert!(resp.raw_head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    let s = sse(&resp.body);
    assert_eq!(s.text, "w0 w1 w2");
    assert_eq!(s.finish, [Value::Null, Value::Null, json!("stop")]);
    let first: Value = serde_json::from_str(&s.data[0]).expect("JSON chunk");
    assert_eq!(first["id"], "chatcmpl-fake");
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["index"], 0);
    assert_eq!(
        s.usage,
        Some(json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}))
    );
    assert!(s.done, "[DONE] last: {:?}", s.data);
}

#[test]
fn requests_are_recorded_with_lowercased_headers() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    let b = body("fake:tokens=1", "hi");
    c.send(&post(&b, "Authorization: Bearer sk-test\r\n"))
        .expect("send");
    assert_eq!(c.response().expect("response").status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(
        (r.method.as_str(), r.target.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    assert!(r.headers.iter().any(|(n, _)| n == "content-type"));
    assert!(r.headers.iter().all(|(n, _)| *n == n.to_lowercase()));
    assert_eq!(r.body, b);
}

#[test]
fn keep_alive_serves_sequential_requests_on_one_connection() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    for tokens in 1..=3 {
        let resp = chat_on(&mut c, &format!("fake:tokens={tokens}"));
        assert_eq!(resp.status, 200);
        assert_eq!(sse(&resp.body).finish.len(), tokens);
    }
    assert_eq!(up.connections(), 1);
    assert_eq!(up.open_connections(), 1);
    assert_eq!(up.requests().len(), 3);
    drop(Client::connect(up.addr()).expect("second connection"));
    eventually("a second connection counted", || up.connections() == 2);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    let mut both = post(&body("fake:tokens=1;delay_ms=20", "a"), "");
    both.extend(post(&body("fake:tokens=2", "a"), ""));
    c.send(&both).expect("send");
    assert_eq!(sse(&c.response().expect("first").body).text, "w0");
    assert_eq!(sse(&c.response().expect("second").body).text, "w0 w1");
    assert_eq!(up.connections(), 1);
}

#[test]
fn other_requests_are_404_and_keep_the_connection() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    let resp = c.get("/v1/models").expect("GET");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.text(), r#"{"error":{"message":"not found"}}"#);
    c.send(b"POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
        .expect("send");
    assert_eq!(c.response().expect("response").status, 404);
    assert_eq!(chat_on(&mut c, "gpt").status, 200);
    assert_eq!(up.connections(), 1);
}

#[test]
fn a_request_without_content_length_has_no_body() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let s = sse(&c.response().expect("response").body);
    assert_eq!(s.text, "w0 w1 w2");
    assert_eq!(s.usage.expect("usage")["prompt_tokens"], 0);
    assert_eq!(up.requests()[0].body, "");
}

#[test]
fn bad_scripts_and_bodies_answer_400() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    for (model, message) in [
        ("fake:tokens=2;wobble", "unknown directive `wobble`"),
        ("fake:tokens=many", "bad value in directive `tokens=many`"),
        ("fake:framing=gzip", "bad value in directive `framing=gzip`"),
    ] {
        let resp = chat_on(&mut c, model);
        assert_eq!(resp.status, 400, "{model}");
        let v: Value = serde_json::from_slice(&resp.body).expect("JSON");
        assert_eq!(v["error"]["message"], message);
    }
    c.send(&post("{not json", "")).expect("send");
    assert_eq!(c.response().expect("response").status, 400);
}

// ---- the directives ----

#[test]
fn tokens_and_delay_pace_the_stream() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    let start = Instant::now();
    c.send(&post(&body("fake:tokens=3;delay_ms=300", "x"), ""))
        .expect("send");
    let head = c.head().expect("head");
    assert_eq!(head.status, 200);
    let head_at = start.elapsed();
    assert!(
        head_at < Duration::from_millis(250),
        "the head waits for no token"
    );
    let mut at = Vec::new();
    let mut text = Vec::new();
    while let Some(chunk) = c.chunk().expect("chunk") {
        at.push(start.elapsed());
        text.extend(chunk);
    }
    assert_eq!(sse(&text).text, "w0 w1 w2");
    assert!(
        at[0] >= Duration::from_millis(295),
        "one delay first: {at:?}"
    );
    assert!(at[2] >= Duration::from_millis(895), "three delays: {at:?}");
    assert!(at[2] < Duration::from_secs(5), "{at:?}");
}

#[test]
fn status_answers_a_json_error_with_retry_after() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    let resp = chat_on(&mut c, "fake:status=429;retry_after=7");
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("7"));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&resp.body).expect("JSON");
    assert_eq!(
        v,
        json!({"error": {"message": "fake status 429", "type": "fake", "code": "fake_429"}})
    );
    let resp = chat_on(&mut c, "fake:status=503");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), None);
    assert_eq!(up.connections(), 1, "errors keep the connection");
}

#[test]
fn head_delay_holds_the_head() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    let start = Instant::now();
    c.send(&post(&body("fake:head_delay_ms=300", "x"), ""))
        .expect("send");
    assert_eq!(c.head().expect("head").status, 200);
    assert!(start.elapsed() >= Duration::from_millis(295));
}

#[test]
fn malformed_follows_the_first_token() {
    let up = FakeUpstream::start();
    let s = sse(&chat(&up, "fake:malformed").body);
    assert_eq!(s.data[1], "{not json");
    assert!(s.data[0].contains("\"w0\""));
    assert_eq!(s.text, "w0 w1 w2");
}

#[test]
fn long_line_is_one_line_of_x() {
    let up = FakeUpstream::start();
    let resp = chat(&up, "fake:long_line=200000");
    let body = String::from_utf8(resp.body).expect("utf-8");
    let line = body.lines().nth(2).expect("the line after the first event");
    assert_eq!(line.len(), "data: ".len() + 200_000);
    assert!(line
        .strip_prefix("data: ")
        .expect("data")
        .bytes()
        .all(|b| b == b'x'));
    assert_eq!(sse(body.as_bytes()).text, "w0 w1 w2");
}

#[test]
fn drop_after_closes_with_a_fin_mid_body() {
    let up = FakeUpstream::start();
    let mut s = TcpStream::connect(up.addr()).expect("connect");
    s.write_all(&post(&body("fake:tokens=5;drop_after=2", "x"), ""))
        .expect("send");
    let (raw, err) = read_all(&mut s);
    assert!(err.is_none(), "a FIN, not {err:?}");
    let (head, body) = split_head(&raw);
    assert!(head.contains("Transfer-Encoding: chunked"));
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("\"w0\"") && text.contains("\" w1\""));
    assert!(!text.contains("w2") && !text.contains("[DONE]") && !text.ends_with("0\r\n\r\n"));
    eventually("connection gone", || up.open_connections() == 0);
}

#[test]
fn drop_after_zero_with_length_framing_sends_only_the_head() {
    let up = FakeUpstream::start();
    let mut s = TcpStream::connect(up.addr()).expect("connect");
    s.write_all(&post(&body("fake:framing=length;drop_after=0", "x"), ""))
        .expect("send");
    let (raw, err) = read_all(&mut s);
    assert!(err.is_none());
    let (head, body) = split_head(&raw);
    assert!(head.contains("Content-Length: "), "{head}");
    assert!(body.is_empty());
}

#[test]
fn reset_after_resets_the_connection() {
    let up = FakeUpstream::start();
    let mut s = TcpStream::connect(up.addr()).expect("connect");
    s.write_all(&post(
        &body("fake:tokens=5;delay_ms=20;reset_after=1", "x"),
        "",
    ))
    .expect("send");
    let (_, err) = read_all(&mut s);
    let kind = err.expect("an error, not a FIN").kind();
    assert_eq!(kind, io::ErrorKind::ConnectionReset);
}

#[test]
fn forever_streams_until_the_client_leaves() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    c.send(&post(&body("fake:forever;delay_ms=2", "x"), ""))
        .expect("send");
    assert_eq!(c.head().expect("head").status, 200);
    for _ in 0..50 {
        let chunk = c.chunk().expect("chunk").expect("not the last chunk");
        assert!(String::from_utf8_lossy(&chunk).contains("\"finish_reason\":null"));
    }
    assert_eq!(up.open_connections(), 1);
    drop(c);
    eventually("the cancelled stream closed", || up.open_connections() == 0);
}

#[test]
fn forever_defaults_to_one_token_per_50_ms() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    c.send(&post(&body("fake:forever", "x"), "")).expect("send");
    c.head().expect("head");
    let start = Instant::now();
    for _ in 0..4 {
        c.chunk().expect("chunk");
    }
    // Three full delays at least between the first and the fourth token.
    assert!(start.elapsed() >= Duration::from_millis(145));
}

#[test]
fn trickle_writes_small_pieces() {
    let up = FakeUpstream::start();
    let mut s = TcpStream::connect(up.addr()).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s.write_all(&post(
        &body("fake:trickle=16;delay_ms=10;framing=close", "x"),
        "",
    ))
    .expect("send");
    let start = Instant::now();
    let (mut raw, mut reads) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        reads.push(n);
        raw.extend_from_slice(&buf[..n]);
    }
    let pieces = raw.len().div_ceil(16);
    // Pieces pile up only when this thread is late to read; most arrive alone.
    let small = reads.iter().filter(|&&n| n <= 16).count();
    assert!(small * 2 >= reads.len(), "{reads:?}");
    assert!(start.elapsed() >= Duration::from_millis(10 * (pieces as u64 - 2)));
    let (head, body) = split_head(&raw);
    assert!(head.starts_with("HTTP/1.1 200 OK"));
    assert_eq!(sse(&body).text, "w0 w1 w2");
}

#[test]
fn usage_0_sends_no_usage_chunk() {
    let up = FakeUpstream::start();
    let s = sse(&chat(&up, "fake:usage=0").body);
    assert!(s.usage.is_none());
    assert!(s.done);
    assert!(!s.data.iter().any(|d| d.contains("usage")));
}

#[test]
fn length_framing_sends_a_content_length_and_keeps_alive() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    for model in [
        "fake:framing=length;tokens=4;delay_ms=5",
        "fake:framing=length",
    ] {
        let resp = chat_on(&mut c, model);
        let len: usize = resp
            .header("content-length")
            .expect("Content-Length")
            .parse()
            .expect("a number");
        assert_eq!(resp.header("transfer-encoding"), None);
        assert_eq!(resp.body.len(), len);
        assert!(sse(&resp.body).done);
    }
    assert_eq!(up.connections(), 1);
}

#[test]
fn close_framing_ends_the_body_with_the_connection() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    let resp = chat_on(&mut c, "fake:framing=close;tokens=2");
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.header("transfer-encoding"), None);
    assert!(resp.closes());
    assert_eq!(sse(&resp.body).text, "w0 w1");
    eventually("closed", || up.open_connections() == 0);
}

#[test]
fn close_answers_connection_close_after_a_chunked_body() {
    let up = FakeUpstream::start();
    let mut c = Client::connect(up.addr()).expect("connect");
    let resp = chat_on(&mut c, "fake:close");
    assert!(resp.closes());
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(sse(&resp.body).text, "w0 w1 w2");
    assert!(c.closed_within(Duration::from_secs(2)));
    // A client that says it closes is answered the same way.
    let mut c = Client::connect(up.addr()).expect("connect");
    c.send(&post(&body("gpt", "x"), "Connection: close\r\n"))
        .expect("send");
    assert!(c.response().expect("response").closes());
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn echo_streams_the_last_user_message() {
    let up = FakeUpstream::start();
    let b = json!({
        "model": "fake:echo;tokens=9",
        "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": "first question" },
            { "role": "assistant", "content": "answer" },
            { "role": "user", "content": "hello  big \"world\"" },
        ],
    })
    .to_string();
    let mut c = Client::connect(up.addr()).expect("connect");
    c.send(&post(&b, "")).expect("send");
    let s = sse(&c.response().expect("response").body);
    assert_eq!(s.text, "hello big \"world\"");
    assert_eq!(
        s.usage,
        Some(json!({"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}))
    );
}

#[test]
fn dropping_the_upstream_closes_its_connections_and_port() {
    let up = FakeUpstream::start();
    let addr = up.addr();
    let mut c = Client::connect(addr).expect("connect");
    c.send(&post(&body("fake:forever", "x"), "")).expect("send");
    c.head().expect("head");
    drop(up);
    let mut rest = Vec::new();
    if let Err(e) = c.stream().read_to_end(&mut rest) {
        let timed_out = matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        assert!(!timed_out, "the stream did not end");
    }
    assert!(TcpStream::connect_timeout(&addr, TIMEOUT).is_err());
}

// ---- TLS ----

/// A self-signed certificate for `localhost` and 127.0.0.1: PEM chain, PEM key, DER.
fn self_signed() -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).expect("certificate");
    (
        ck.cert.pem(),
        ck.signing_key.serialize_pem(),
        ck.cert.der().clone(),
    )
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr, ca: &rustls::pki_types::CertificateDer<'static>) -> TlsStream {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("trust the certificate");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let sock = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    rustls::StreamOwned::new(conn, sock)
}

/// Reads one `Content-Length` response off a TLS stream: the head and the body.
fn tls_response(tls: &mut TlsStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).expect("head byte");
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .expect("a number");
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body).expect("body");
    (head, body)
}

#[test]
fn tls_serves_the_same_streams() {
    let (cert, key, der) = self_signed();
    let up = FakeUpstream::start_with(UpstreamOptions {
        tls: Some((cert.into_bytes(), key.into_bytes())),
    });
    assert_eq!(up.base_url(), format!("https://{}/v1", up.addr()));
    let mut tls = tls_connect(up.addr(), &der);
    for (model, text) in [
        ("fake:framing=length;tokens=4;delay_ms=5", "w0 w1 w2 w3"),
        ("fake:framing=length;echo", "one two three"),
    ] {
        tls.write_all(&post(&body(model, "one two three"), ""))
            .expect("send");
        let (head, body) = tls_response(&mut tls);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(sse(&body).text, text);
    }
    assert_eq!(up.connections(), 1);
    // A chunked stream that ends with the connection: close_notify, then EOF.
    let mut tls = tls_connect(up.addr(), &der);
    tls.write_all(&post(&body("fake:close;tokens=2", "x"), ""))
        .expect("send");
    let mut raw = Vec::new();
    tls.read_to_end(&mut raw).expect("a clean TLS end");
    let (_, body) = split_head(&raw);
    assert!(String::from_utf8_lossy(&body).contains("data: [DONE]"));
    assert_eq!(up.requests().len(), 3);
}

#[test]
fn tls_rejects_a_bad_key() {
    let (cert, _, _) = self_signed();
    let opts = UpstreamOptions {
        tls: Some((cert.into_bytes(), b"not a key".to_vec())),
    };
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let err = FakeUpstream::bind(any, opts).expect_err("a bad key");
    assert!(err.to_string().contains("private key"), "{err}");
}

// ---- the binary ----

/// A running `fake-upstream`, killed on drop if still running.
struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fake-upstream"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn fake-upstream");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("not a listening line: {line:?}"))
            .parse()
            .expect("an address");
        Proc { child, addr }
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "fake-upstream did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn binary_serves_until_stdin_ends() {
    let mut p = Proc::spawn(&["--listen", "127.0.0.1:0"]);
    let mut c = Client::connect(p.addr).expect("connect");
    assert_eq!(sse(&chat_on(&mut c, "gpt").body).text, "w0 w1 w2");
    drop(p.child.stdin.take());
    assert!(p.wait().success());
}

#[test]
fn binary_stops_on_sigterm() {
    let mut p = Proc::spawn(&[]);
    let pid = i32::try_from(p.child.id()).expect("pid");
    // SAFETY: kill(2) on the positive pid of our own child has no memory effects.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    assert!(p.wait().success());
}

#[test]
fn binary_refuses_bad_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-upstream"))
        .args(["--tls-cert", "only-a-cert.pem"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-cert and --tls-key go together"),
        "{err}"
    );
}
