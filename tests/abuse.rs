//! Abuse tests against the real binary over loopback (issue 8): request smuggling patterns,
//! slowloris and slow bodies, 10,000 abandoned connections, a client that never reads, a
//! 4 GiB Content-Length, deeply nested JSON and huge numbers, invalid UTF-8. Each ends in a
//! clean error, and then the server must still answer `/health/live` within its normal
//! latency with its memory back near its idle value ([`assert_recovered`]).
//!
//! The basic CONVENTIONS section 3 list (CL+TE, CL≠CL, obs-fold, bare LF, 414/431/408, ...)
//! is in `tests/engine_http.rs`; this file adds the attack shapes. Every wait is bounded,
//! every loop counts, and each server is stopped by its guard's Drop (by PID).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use halyard_testkit::{raise_fd_limit, Client, Halyard, Response};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_halyard"))
}

/// A server without rate limits (these tests send many failing requests from one address),
/// with `--dev` so that a tenant key exists, and the extra `args`.
fn start(args: &[&str]) -> Server {
    let mut all = vec!["--no-rate-limits", "--dev", "--threads", "2"];
    all.extend_from_slice(args);
    let h = Halyard::start(bin(), &all);
    let key = std::fs::read_to_string(h.data_dir.join("dev-api-key"))
        .expect("dev key")
        .trim()
        .to_string();
    let mut s = Server {
        h,
        key,
        idle_rss_kib: 0,
        live_us: 0,
    };
    s.settle_baseline();
    s
}

struct Server {
    h: Halyard,
    key: String,
    /// RSS after start-up and a few requests.
    idle_rss_kib: u64,
    /// Slowest of a few `/health/live` round trips at rest, in microseconds.
    live_us: u64,
}

impl Server {
    fn addr(&self) -> std::net::SocketAddr {
        self.h.addr
    }

    fn settle_baseline(&mut self) {
        for _ in 0..20 {
            self.live_latency();
        }
        self.live_us = (0..10).map(|_| self.live_latency()).max().unwrap_or(0);
        self.idle_rss_kib = self.h.rss_kib().expect("rss");
    }

    /// One `/health/live` on a fresh connection, in microseconds.
    fn live_latency(&self) -> u64 {
        let started = Instant::now();
        let mut c = Client::connect(self.addr()).expect("connect");
        let r = c.get("/health/live").expect("live");
        assert_eq!(r.status, 200);
        started.elapsed().as_micros() as u64
    }

    fn open_connections(&self) -> i64 {
        let mut c = Client::connect(self.addr()).expect("connect");
        let text = c.get("/metrics").expect("metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix("halyard_open_connections "))
            .and_then(|v| v.trim().parse().ok())
            .expect("halyard_open_connections")
    }

    /// Waits until the server holds at most `n` connections (besides the probe's own).
    fn wait_open_at_most(&self, n: i64, within: Duration) -> i64 {
        let deadline = Instant::now() + within;
        loop {
            // The probe connection itself is open while the metrics are rendered.
            let open = self.open_connections() - 1;
            if open <= n || Instant::now() > deadline {
                return open;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server still answers `/health/live` within its normal latency (generously: the
    /// slowest of ten probes must stay under 20 times the baseline, with a 200 ms floor for
    /// a busy CI machine) and its RSS comes back near its idle value.
    #[track_caller]
    fn assert_recovered(&self, what: &str) {
        let slowest = (0..10).map(|_| self.live_latency()).max().unwrap_or(0);
        let bound = (self.live_us * 20).max(200_000);
        assert!(
            slowest <= bound,
            "{what}: /health/live took {slowest} us (baseline {} us)",
            self.live_us
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let allowed = self.idle_rss_kib + 48 * 1024;
        loop {
            let rss = self.h.rss_kib().expect("rss");
            if rss <= allowed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: RSS {rss} KiB stays above idle {} KiB + 48 MiB",
                self.idle_rss_kib
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Sends `bytes` on a new connection and reads everything until the server closes (bounded).
fn exchange_to_close(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // The server may close before reading it all: a failed write is fine, the answer counts.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "no close within 5 s ({e}); got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
        assert!(Instant::now() < deadline, "not closed in time");
    }
    out
}

/// The status codes of every response in `raw` (responses counted by their status lines).
fn statuses(raw: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(raw);
    text.match_indices("HTTP/1.1 ")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n') || text[..*i].ends_with('}'))
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

#[track_caller]
fn assert_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(
        r.text().contains(&format!("\"code\":\"{code}\"")),
        "{} lacks {code}",
        r.text()
    );
}

// ---------------------------------------------------------------------------------------
// Request smuggling
// ---------------------------------------------------------------------------------------

/// A request the server must never execute when it was smuggled: its response would show up
/// as a second status line.
const SMUGGLED: &str = "GET /api/v1/auth/me HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn smuggling_patterns_get_one_400_and_a_close() {
    let s = start(&[]);
    let route = "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "CL.TE",
            format!("{route}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE.CL",
            format!("{route}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\n{SMUGGLED}\r\n0\r\n\r\n"),
        ),
        (
            "TE list chunked, identity",
            format!("{route}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE list identity, chunked",
            format!("{route}Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE space before colon",
            format!("{route}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE vertical tab",
            format!("{route}Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE vertical tab after",
            format!("{route}Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE form feed",
            format!("{route}Transfer-Encoding:\x0cchunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE duplicate",
            format!("{route}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE duplicate with identity",
            format!("{route}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE xchunked",
            format!("{route}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE quoted",
            format!("{route}Transfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE on HTTP/1.0",
            format!("POST /api/v1/auth/login HTTP/1.0\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE folded",
            format!("{route}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "TE name with NUL",
            format!("{route}Transfer-Encoding\0: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "CL with a sign",
            format!("{route}Content-Length: +6\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "CL empty",
            format!("{route}Content-Length: \r\n\r\n{SMUGGLED}"),
        ),
        (
            "CL hex",
            format!("{route}Content-Length: 0x6\r\n\r\n{SMUGGLED}"),
        ),
        (
            "CL then CL 0",
            format!("{route}Content-Length: 41\r\nContent-Length: 0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "chunk size overflow",
            format!("{route}Transfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nx\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "chunk size with 0x",
            format!("{route}Transfer-Encoding: chunked\r\n\r\n0x2\r\n{{}}\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "chunk size empty",
            format!("{route}Transfer-Encoding: chunked\r\n\r\n\r\n{SMUGGLED}"),
        ),
        (
            "chunk LF-only lines",
            format!("{route}Transfer-Encoding: chunked\r\n\r\n2\n{{}}\n0\n\n{SMUGGLED}"),
        ),
        (
            "chunk data longer than its size",
            format!("{route}Transfer-Encoding: chunked\r\n\r\n1\r\n{{}}\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "chunk size line with bare CR",
            format!("{route}Transfer-Encoding: chunked\r\n\r\n2\r{{}}\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "last chunk with LF-only end",
            format!("{route}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\n{SMUGGLED}"),
        ),
    ];
    for (name, bytes) in &cases {
        let raw = exchange_to_close(s.addr(), bytes.as_bytes());
        let got = statuses(&raw);
        assert_eq!(
            got,
            vec![400],
            "{name}: {:?}",
            String::from_utf8_lossy(&raw)
        );
        assert!(
            String::from_utf8_lossy(&raw).contains("\"code\":\"BAD_REQUEST\""),
            "{name}"
        );
    }
    s.assert_recovered("smuggling");
}

#[test]
fn whitespace_around_chunked_is_ows_and_the_body_ends_at_the_last_chunk() {
    // SP and HTAB around a value are optional whitespace (RFC 9110 5.5): `\tchunked ` is
    // chunked, and the bytes after the last chunk are the next request, answered in turn.
    let s = start(&[]);
    for te in [
        "chunked",
        "\tchunked",
        "chunked\t",
        " chunked  ",
        "CHUNKED",
        "ChUnKeD",
    ] {
        let req = format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding:{te}\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n\
             GET /health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        );
        let raw = exchange_to_close(s.addr(), req.as_bytes());
        assert_eq!(
            statuses(&raw),
            vec![400, 200],
            "{te:?}: {}",
            String::from_utf8_lossy(&raw)
        );
        assert!(String::from_utf8_lossy(&raw).contains("VALIDATION_ERROR"));
    }
    s.assert_recovered("ows");
}

#[test]
fn chunk_extensions_and_trailers_are_bounded() {
    let s = start(&[]);
    let route = "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    // An extension that never ends: refused at 4 KiB of size line, not buffered.
    let mut c = Client::connect(s.addr()).unwrap();
    c.send(route.as_bytes()).unwrap();
    c.send(b"2;").unwrap();
    let ext = vec![b'x'; 1024];
    let mut refused = false;
    for _ in 0..64 {
        if c.send(&ext).is_err() {
            refused = true;
            break;
        }
    }
    let r = c.response().expect("an answer before 64 KiB of extension");
    assert_error(&r, 400, "BAD_REQUEST");
    assert!(
        r.text().contains("chunk size line too long"),
        "{}",
        r.text()
    );
    assert!(refused || c.closed_within(Duration::from_secs(3)));

    // Trailers without end.
    let mut c = Client::connect(s.addr()).unwrap();
    c.send(route.as_bytes()).unwrap();
    c.send(b"2\r\n{}\r\n0\r\n").unwrap();
    for i in 0..200 {
        if c.send(format!("X-T{i}: {}\r\n", "v".repeat(200)).as_bytes())
            .is_err()
        {
            break;
        }
    }
    assert_error(&c.response().unwrap(), 400, "BAD_REQUEST");

    // A chunk announced at 2^60 bytes: refused once the running total passes the limit.
    let mut c = Client::connect(s.addr()).unwrap();
    c.send(route.as_bytes()).unwrap();
    c.send(b"1000000000000000\r\n").unwrap();
    // A little over the 1 MiB limit: what follows the 413 stays within what the server
    // drains before closing, so the answer is not lost to a reset.
    let mb = vec![b' '; 64 * 1024];
    for _ in 0..18 {
        if c.send(&mb).is_err() {
            break;
        }
    }
    let r = c.response().unwrap();
    assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
    s.assert_recovered("chunk limits");
}

// ---------------------------------------------------------------------------------------
// Slow clients
// ---------------------------------------------------------------------------------------

#[test]
fn slowloris_heads_trickled_byte_by_byte_get_408_and_a_close() {
    let s = start(&["--header-timeout-ms", "500"]);
    let head =
        b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // 100 connections, one byte each every 50 ms: none completes its head in 500 ms.
    let mut conns: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(s.addr()).expect("connect"))
        .collect();
    let started = Instant::now();
    let mut answered = vec![None; conns.len()];
    for (i, byte) in head.iter().enumerate().take(40) {
        for (c, done) in conns.iter_mut().zip(&answered) {
            if done.is_none() {
                let _ = c.write_all(&[*byte]);
            }
        }
        // Meanwhile, ordinary requests are served as usual.
        if i % 10 == 0 {
            s.live_latency();
        }
        for (c, done) in conns.iter_mut().zip(answered.iter_mut()) {
            if done.is_none() {
                c.set_nonblocking(true).unwrap();
                let mut buf = [0u8; 512];
                if let Ok(n) = c.read(&mut buf) {
                    *done = Some((started.elapsed(), buf[..n].to_vec()));
                }
                c.set_nonblocking(false).unwrap();
            }
        }
        if answered.iter().all(Option::is_some) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (c, done) in conns.iter_mut().zip(answered.iter_mut()) {
        if done.is_none() {
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = [0u8; 512];
            let n = c.read(&mut buf).unwrap_or(0);
            *done = Some((started.elapsed(), buf[..n].to_vec()));
        }
    }
    for (at, bytes) in answered.iter().flatten() {
        let text = String::from_utf8_lossy(bytes);
        assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
        assert!(text.contains("REQUEST_TIMEOUT"));
        assert!(*at >= Duration::from_millis(400), "408 after {at:?}");
        assert!(*at < Duration::from_secs(3), "408 only after {at:?}");
    }
    // Each is then closed.
    for c in conns.iter_mut() {
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
    }
    drop(conns);
    assert!(s.wait_open_at_most(0, Duration::from_secs(5)) <= 0);
    s.assert_recovered("slowloris");
}

#[test]
fn a_body_trickled_one_byte_a_second_is_cut_by_the_body_timeout() {
    let s = start(&["--idle-timeout-ms", "1500"]);
    let mut c = Client::connect(s.addr()).unwrap();
    c.send(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
    )
    .unwrap();
    let started = Instant::now();
    let mut cut = false;
    for _ in 0..10 {
        if c.send(b" ").is_err() {
            cut = true;
            break;
        }
        if started.elapsed() > Duration::from_millis(1500) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let r = c.response().expect("an answer");
    assert_error(&r, 408, "REQUEST_TIMEOUT");
    let at = started.elapsed();
    assert!(
        at >= Duration::from_millis(1400) && at < Duration::from_secs(5),
        "{at:?}"
    );
    assert!(cut || c.closed_within(Duration::from_secs(3)));

    // Chunked, the same.
    let mut c = Client::connect(s.addr()).unwrap();
    c.send(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n",
    )
    .unwrap();
    for _ in 0..3 {
        let _ = c.send(b" ");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_error(&c.response().unwrap(), 408, "REQUEST_TIMEOUT");
    s.assert_recovered("slow body");
}

// ---------------------------------------------------------------------------------------
// Many connections, and a client that never reads
// ---------------------------------------------------------------------------------------

#[test]
fn ten_thousand_abandoned_connections_are_reaped_by_the_idle_timeout() {
    raise_fd_limit();
    let s = start(&["--idle-timeout-ms", "2000", "--header-timeout-ms", "2000"]);
    let mut conns = Vec::with_capacity(10_000);
    let started = Instant::now();
    for i in 0..10_000 {
        let mut c = match TcpStream::connect_timeout(&s.addr(), Duration::from_secs(5)) {
            Ok(c) => c,
            Err(e) => panic!("connection {i} failed: {e}"),
        };
        // A third say nothing, a third start a head, a third send a whole request and
        // never read the answer.
        match i % 3 {
            0 => {}
            1 => {
                let _ = c.write_all(b"GET /health/live HTTP/1.1\r\nHo");
            }
            _ => {
                let _ = c.write_all(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n");
            }
        }
        conns.push(c);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "connecting is too slow"
        );
    }
    // While they are all held open, the server answers at once.
    s.assert_recovered("10,000 open");
    let open = s.open_connections() - 1;
    eprintln!(
        "10,000 connections: opened in {:?}, {open} open at the server, RSS {} KiB (idle {} KiB)",
        started.elapsed(),
        s.h.rss_kib().unwrap_or(0),
        s.idle_rss_kib
    );
    assert!(open >= 5_000, "only {open} connections seen");
    // Nobody speaks: the header and idle timeouts reap them while the client still holds
    // its sockets.
    let left = s.wait_open_at_most(0, Duration::from_secs(20));
    assert!(
        left <= 0,
        "{left} connections still open after the idle timeout"
    );
    drop(conns);
    s.assert_recovered("10,000 abandoned");
}

#[test]
fn a_client_that_never_reads_cannot_grow_server_memory() {
    let s = start(&["--idle-timeout-ms", "2000"]);
    // The OpenAPI document is a large response; pipeline requests for it and never read.
    let mut c = TcpStream::connect(s.addr()).unwrap();
    c.set_nonblocking(true).unwrap();
    let req = b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: t\r\n\r\n";
    let batch: Vec<u8> = req.repeat(1000);
    let mut sent = 0usize;
    let started = Instant::now();
    let mut stalled_since = None;
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(8) && sent < 200 * 1024 * 1024 {
        match c.write(&batch) {
            Ok(n) => {
                sent += n;
                stalled_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(1500) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => break,
        }
        peak = peak.max(s.h.rss_kib().unwrap_or(0));
    }
    peak = peak.max(s.h.rss_kib().unwrap_or(0));
    eprintln!(
        "never reads: {sent} bytes of requests accepted in {:?}; RSS idle {} KiB, peak {peak} KiB",
        started.elapsed(),
        s.idle_rss_kib
    );
    // The kernel's socket buffers hold some requests; the server stopped reading once its
    // output passed the high-water mark, so its memory stayed flat.
    assert!(
        sent < 64 * 1024 * 1024,
        "the server kept reading: {sent} bytes accepted without a response read"
    );
    assert!(
        peak <= s.idle_rss_kib + 48 * 1024,
        "RSS grew to {peak} KiB from {} KiB",
        s.idle_rss_kib
    );
    // The stalled connection is closed after the idle timeout.
    let left = s.wait_open_at_most(0, Duration::from_secs(10));
    assert!(left <= 0, "a stalled connection was kept");
    drop(c);
    s.assert_recovered("never reads");
}

// ---------------------------------------------------------------------------------------
// Sizes and shapes of bodies
// ---------------------------------------------------------------------------------------

#[test]
fn a_4_gib_content_length_is_413_at_once() {
    let s = start(&[]);
    let cases = [
        ("POST /api/v1/auth/login", 4u64 << 30, ""),
        ("POST /api/projects", 4 << 30, "auth"),
        (
            "POST /api/projects/proj_x/project-io/import",
            4 << 30,
            "auth",
        ),
        ("POST /api/projects", u64::MAX, "auth"),
    ];
    for (line, len, auth) in cases {
        let mut c = Client::connect(s.addr()).unwrap();
        let auth = if auth.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {}\r\n", s.key)
        };
        let started = Instant::now();
        c.send(
            format!("{line} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n{{\"name\":")
                .as_bytes(),
        )
        .unwrap();
        let r = c.response().unwrap();
        assert_error(&r, 413, "PAYLOAD_TOO_LARGE");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{line}: {:?}",
            started.elapsed()
        );
        assert!(r.closes());
        assert!(c.closed_within(Duration::from_secs(3)), "{line}");
    }
    // One more than u64::MAX does not parse as a length at all.
    let raw = exchange_to_close(
        s.addr(),
        b"POST /api/projects HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551616\r\n\r\n",
    );
    assert_eq!(statuses(&raw), vec![400]);
    s.assert_recovered("4 GiB");
}

fn post_json(s: &Server, path: &str, body: &[u8]) -> Response {
    let mut c = Client::connect(s.addr()).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        s.key,
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    c.send(&req).unwrap();
    c.response().unwrap()
}

/// The dev project's id.
fn dev_project(s: &Server) -> String {
    let mut c = Client::connect(s.addr()).unwrap();
    c.send(
        format!(
            "GET /api/projects HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\r\n",
            s.key
        )
        .as_bytes(),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&c.response().unwrap().body).unwrap();
    let list = v["projects"].as_array().or(v["data"].as_array()).cloned();
    list.unwrap_or_default()
        .iter()
        .find(|p| p["slug"] == "demo")
        .and_then(|p| p["id"].as_str())
        .expect("demo project")
        .to_string()
}

#[test]
fn deeply_nested_json_is_400_without_a_crash() {
    let s = start(&[]);
    let pid = dev_project(&s);
    let import = format!("/api/projects/{pid}/project-io/import");
    let agents = format!("/api/projects/{pid}/agents");
    let deep_arrays = "[".repeat(100_000);
    let deep_objects = "{\"a\":".repeat(100_000);
    let mut closed = deep_arrays.clone();
    closed.push_str(&"]".repeat(100_000));
    for path in ["/api/projects", agents.as_str(), import.as_str()] {
        for body in [&deep_arrays, &deep_objects, &closed] {
            let r = post_json(&s, path, body.as_bytes());
            assert_error(&r, 400, "BAD_REQUEST");
            assert!(r.text().contains("byte"), "{}", r.text());
        }
        // Nesting inside a valid document too.
        let inner = format!("{{\"name\":\"x\",\"metadata\":{closed}}}");
        assert_error(&post_json(&s, path, inner.as_bytes()), 400, "BAD_REQUEST");
    }
    s.assert_recovered("deep JSON");
}

#[test]
fn huge_numbers_are_validation_errors_or_400() {
    let s = start(&[]);
    let pid = dev_project(&s);
    let agents = format!("/api/projects/{pid}/agents");
    let digits = "9".repeat(900_000);
    let cases: Vec<(String, u16)> = vec![
        (
            r#"{"name":"n1","model":{"maxTokens":1e999999}}"#.into(),
            400,
        ),
        (
            r#"{"name":"n2","model":{"maxTokens":18446744073709551616}}"#.into(),
            400,
        ),
        (r#"{"name":"n3","model":{"maxTokens":-1}}"#.into(), 400),
        (r#"{"name":"n4","model":{"maxTokens":1.5}}"#.into(), 400),
        (r#"{"name":"n5","model":{"temperature":1e308}}"#.into(), 400),
        (r#"{"name":"n6","model":{"temperature":-0.0}}"#.into(), 201),
        (
            r#"{"name":"n7","model":{"temperature":2.0000000000000000001}}"#.into(),
            201,
        ),
        (
            format!(r#"{{"name":"n8","model":{{"maxTokens":{digits}}}}}"#),
            400,
        ),
        (
            format!(r#"{{"name":"n9","model":{{"temperature":0.{digits}}}}}"#),
            201,
        ),
    ];
    for (body, want) in &cases {
        let r = post_json(&s, &agents, body.as_bytes());
        assert_eq!(
            r.status,
            *want,
            "{}: {}",
            &body[..40.min(body.len())],
            r.text()
        );
        if *want == 400 {
            assert!(
                r.text().contains("VALIDATION_ERROR") || r.text().contains("BAD_REQUEST"),
                "{}",
                r.text()
            );
        }
    }
    // The import path reads numbers the same way.
    let import = format!("/api/projects/{pid}/project-io/import/preview");
    let doc = r#"{"manifest":{"version":123456789012345678901234567890},"agents":[]}"#;
    assert_error(
        &post_json(&s, &import, doc.as_bytes()),
        400,
        "VALIDATION_ERROR",
    );
    s.assert_recovered("huge numbers");
}

#[test]
fn invalid_utf8_in_path_headers_and_body_is_a_clean_error() {
    let s = start(&[]);
    // Path: the head parser refuses it.
    let raw = exchange_to_close(
        s.addr(),
        b"GET /api/agents/\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(statuses(&raw), vec![400]);
    let raw = exchange_to_close(
        s.addr(),
        b"GET /api/agents/%ff%fe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(
        matches!(statuses(&raw)[..], [401] | [404]),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    // Credential headers: not a credential.
    for header in [
        &b"Authorization: Bearer \xff\xfe"[..],
        b"Authorization: \xc3\x28 abl_sk-x",
        b"X-API-Key: abl_sk-\xff",
        b"X-SDK-Token: sdk_\xff.\xfe",
        b"X-Request-Id: \xff\xfe",
    ] {
        let mut req = b"GET /api/projects HTTP/1.1\r\nHost: t\r\n".to_vec();
        req.extend_from_slice(header);
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let raw = exchange_to_close(s.addr(), &req);
        assert_eq!(
            statuses(&raw),
            vec![401],
            "{}",
            String::from_utf8_lossy(&raw)
        );
        let text = String::from_utf8_lossy(&raw);
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("X-Request-Id: "))
            .expect("request id");
        assert!(id.is_ascii() && !id.is_empty());
    }
    // Other headers with high bytes are carried, not fatal.
    let raw = exchange_to_close(
        s.addr(),
        b"GET /health/live HTTP/1.1\r\nHost: t\r\nUser-Agent: caf\xe9 \xff\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(statuses(&raw), vec![200]);
    // Body: 400 with the offset of the first bad byte.
    let pid = dev_project(&s);
    for (body, at) in [
        (&b"{\"name\":\"\xff\"}"[..], 9),
        (b"{\"name\":\"ok\xc3\"}", 11),
        (b"\xef\xbb\xbf{}", 0),
        (b"{\"name\":\"\xed\xa0\x80\"}", 9),
    ] {
        let r = post_json(&s, &format!("/api/projects/{pid}/agents"), body);
        assert_error(&r, 400, "BAD_REQUEST");
        if body.starts_with(b"\xef\xbb\xbf") {
            continue;
        }
        assert!(
            r.text().contains(&format!("Invalid UTF-8 at byte {at}")),
            "{}",
            r.text()
        );
    }
    s.assert_recovered("invalid UTF-8");
}
