//! `chatload`: many concurrent server-sent-event streams from one thread, for the chat
//! benchmarks in `benches/load/chat.sh` (Halyard's `POST /api/v1/chat/agent/stream`) and for
//! the fake OpenAI-compatible upstream on its own or behind a relay (nginx).
//!
//! Why Rust and not `streams.py`: ten thousand streams of twenty tokens in one second are
//! 200,000 SSE events a second into one client on the same core as the fake upstream.
//! asyncio spends tens of µs per `readline` and would be the bottleneck (and its loop lag
//! the TTFT error); this client does one `read` per arrival into a shared 64 KiB buffer, a
//! `memchr` line scan and a few compares, and allocates nothing per event.
//!
//! What it does: opens `--streams` connections (at most `--connect-batch` connecting at
//! once, so the listen queues do not overflow), waits until all are established, then
//! writes one request on each in a tight loop ("all at once") and reads the responses:
//! each stream runs `--rounds` requests one after the other on its keep-alive connection.
//! Per request it times, from the moment that request was written, the first token event
//! (TTFT) and the `done` event (turn), and counts the token events.
//!
//! - `--proto halyard`: a token is an `event: token` line, the end an `event: done` line
//!   (`event: error` is counted as an error).
//! - `--proto openai`: a token is a `data: {...}` line with `"content"`, the end
//!   `data: [DONE]`.
//! - `--proto json`: a plain answer (Halyard's sync `POST /api/v1/chat/agent`, a tool server's
//!   `GET`): no tokens; the request is done when its `Content-Length` body has arrived, and
//!   with `--expect TEXT` that body must contain TEXT (e.g. the echo provider's answer to a
//!   tool call: the call happened). With `--streams 1 --duration SECS` this is a sequential
//!   latency client: `turn_ms_*` are the request latencies.
//!
//! A streamed request is over at the chunked body's last chunk (`0`).
//!
//! `--watch NAME=PID` (repeatable) samples `/proc/PID/status` (Threads, VmRSS) every 10 ms
//! on a second thread: at start (before any connection), once all are connected, and the
//! peak while the requests run; and the CPU time (utime + stime, the process and its
//! children) from the first request to the end.
//!
//! Prints one JSON object on stdout; progress and errors go to stderr. Exits 0 when every
//! request ended with its `done`, 1 otherwise (the JSON says what happened), 2 on bad
//! arguments. Bounded: `--timeout` seconds for the whole run.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memchr::memmem;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "usage: chatload --port PORT --path PATH --body JSON
  [--proto halyard|openai|json] [--method POST|GET] [--expect TEXT]
  [--key KEY] [--streams N] [--rounds N | --duration SECS] [--connect-batch N]
  [--timeout SECS] [--watch NAME=PID]...
  --port PORT         127.0.0.1:PORT
  --path PATH         request target, e.g. /api/v1/chat/agent/stream
  --body JSON         request body (required unless --method GET)
  --method M          POST (default) or GET
  --proto P           halyard (event: token/done, default), openai (data: lines) or json
                      (a Content-Length answer, done when its body is in)
  --expect TEXT       with --proto json: every answer's body must contain TEXT
  --key KEY           sent as Authorization: Bearer KEY
  --streams N         concurrent streams (default 10000)
  --rounds N          requests per stream, one after the other (default 1)
  --duration SECS     instead: each stream loops requests until SECS have passed since the
                      first request (the last ones finish); turns_per_s is then reported
  --connect-batch N   connections being established at once (default 512)
  --timeout SECS      bound on the whole run (default 120)
  --watch NAME=PID    sample this process's threads, RSS and CPU";

const READ_BUF: usize = 64 * 1024;
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Halyard,
    OpenAi,
    Json,
}

struct Args {
    addr: SocketAddr,
    path: String,
    body: String,
    method: String,
    proto: Proto,
    expect: Option<String>,
    key: Option<String>,
    streams: usize,
    rounds: u32,
    duration: Option<Duration>,
    connect_batch: usize,
    timeout: Duration,
    watch: Vec<(String, u32)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not yet asked to connect.
    Idle,
    Connecting,
    /// Established, no request written yet.
    Connected,
    /// A request is written (or partly) and its response not finished.
    Busy,
    /// Every round ended.
    Finished,
    Failed,
}

struct Stream {
    sock: Option<TcpStream>,
    state: State,
    written: usize,
    sent_at: Instant,
    first_token: Option<Instant>,
    done_at: Option<Instant>,
    tokens: u32,
    in_head: bool,
    status_seen: bool,
    rounds_left: u32,
    /// The start of a line that a read cut.
    partial: Vec<u8>,
    /// `--proto json`: the answer's `Content-Length`, then the body bytes still to come.
    body_left: Option<usize>,
    /// `--proto json --expect`: the body so far.
    body: Vec<u8>,
}

/// What the run saw.
#[derive(Default)]
struct Totals {
    done: u64,
    errors: u64,
    error_kinds: Vec<String>,
    ttft_ns: Vec<u64>,
    turn_ns: Vec<u64>,
    tokens: Vec<u32>,
    first_write: Option<Instant>,
    last_write: Option<Instant>,
    /// With --duration: no request starts after this.
    stop_at: Option<Instant>,
    duration: Option<Duration>,
    last_done: Option<Instant>,
}

impl Totals {
    fn error(&mut self, kind: String) {
        self.errors += 1;
        if self.error_kinds.len() < 5 && !self.error_kinds.contains(&kind) {
            self.error_kinds.push(kind);
        }
    }
}

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chatload: {e}");
            std::process::exit(2);
        }
    };
    match run(&args) {
        Ok(all_done) => std::process::exit(if all_done { 0 } else { 1 }),
        Err(e) => {
            eprintln!("chatload: {e}");
            std::process::exit(1);
        }
    }
}

fn request(args: &Args) -> Vec<u8> {
    let accept = match args.proto {
        Proto::Json => "application/json",
        Proto::Halyard | Proto::OpenAi => "text/event-stream",
    };
    let mut r = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n",
        args.method, args.path, args.addr
    );
    if !args.body.is_empty() {
        let _ = write!(
            r,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            args.body.len()
        );
    }
    if let Some(k) = &args.key {
        let _ = write!(r, "Authorization: Bearer {k}\r\n");
    }
    r.push_str("\r\n");
    r.push_str(&args.body);
    r.into_bytes()
}

fn run(args: &Args) -> Result<bool, String> {
    let deadline = Instant::now() + args.timeout;
    let watcher = Watcher::start(&args.watch);
    let at_start = watcher.current();
    let req = request(args);
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; READ_BUF];
    let mut totals = Totals {
        duration: args.duration,
        ..Totals::default()
    };
    let now = Instant::now();
    let mut streams: Vec<Stream> = (0..args.streams)
        .map(|_| Stream {
            sock: None,
            state: State::Idle,
            written: 0,
            sent_at: now,
            first_token: None,
            done_at: None,
            tokens: 0,
            in_head: true,
            status_seen: false,
            rounds_left: if args.duration.is_some() {
                u32::MAX
            } else {
                args.rounds
            },
            partial: Vec::new(),
            body_left: None,
            body: Vec::new(),
        })
        .collect();

    // ---- connect, at most connect_batch at once
    let t_connect = Instant::now();
    let (mut next, mut connecting, mut connected, mut failed) = (0usize, 0usize, 0usize, 0usize);
    while connected + failed < args.streams {
        while next < args.streams && connecting < args.connect_batch {
            let s = &mut streams[next];
            match TcpStream::connect(args.addr) {
                Ok(mut sock) => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    poll.registry()
                        .register(&mut sock, Token(next), interest)
                        .map_err(|e| format!("register: {e}"))?;
                    s.sock = Some(sock);
                    s.state = State::Connecting;
                    connecting += 1;
                }
                Err(e) => {
                    s.state = State::Failed;
                    failed += 1;
                    totals.error(format!("connect: {e}"));
                }
            }
            next += 1;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out connecting: {connected} of {} connected",
                args.streams
            ));
        }
        poll_once(&mut poll, &mut events, Duration::from_millis(100))?;
        for ev in events.iter() {
            let s = &mut streams[ev.token().0];
            if s.state != State::Connecting {
                continue;
            }
            let sock = s.sock.as_ref().expect("a connecting stream has a socket");
            match sock.take_error() {
                Ok(Some(e)) | Err(e) => {
                    s.state = State::Failed;
                    connecting -= 1;
                    failed += 1;
                    totals.error(format!("connect: {e}"));
                    continue;
                }
                Ok(None) => {}
            }
            match sock.peer_addr() {
                Ok(_) => {
                    s.state = State::Connected;
                    connecting -= 1;
                    connected += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                Err(e) => {
                    s.state = State::Failed;
                    connecting -= 1;
                    failed += 1;
                    totals.error(format!("connect: {e}"));
                }
            }
        }
    }
    let connect_time = t_connect.elapsed();
    eprintln!(
        "chatload: {connected} connected, {failed} failed in {:.0} ms",
        connect_time.as_secs_f64() * 1e3
    );
    // Let the server accept the last ones before the "connected" sample.
    std::thread::sleep(Duration::from_millis(300));
    let at_connected = watcher.current();
    let cpu0 = watcher.cpu_ticks();
    let client_cpu0 = own_cpu();
    watcher.reset_peak();

    // ---- all requests at once
    for s in streams.iter_mut() {
        if s.state == State::Connected {
            start_request(s, &mut totals);
            if let Err(e) = write_more(s, &req) {
                fail(s, &mut totals, format!("write: {e}"));
            }
        }
    }
    eprintln!(
        "chatload: {} requests written in {:.1} ms",
        connected,
        totals
            .last_write
            .zip(totals.first_write)
            .map_or(0.0, |(l, f)| (l - f).as_secs_f64() * 1e3)
    );

    // ---- read
    let mut open = streams.iter().filter(|s| s.state == State::Busy).count();
    while open > 0 {
        let now = Instant::now();
        if now >= deadline {
            eprintln!("chatload: timed out with {open} streams unfinished");
            break;
        }
        poll_once(
            &mut poll,
            &mut events,
            (deadline - now).min(Duration::from_millis(200)),
        )?;
        for ev in events.iter() {
            let s = &mut streams[ev.token().0];
            if s.state != State::Busy {
                continue;
            }
            if ev.is_writable() && s.written < req.len() {
                if let Err(e) = write_more(s, &req) {
                    fail(s, &mut totals, format!("write: {e}"));
                    open -= 1;
                    continue;
                }
            }
            if let Err(e) = read_all(s, &mut buf, &req, args, &mut totals) {
                fail(s, &mut totals, e);
            }
            if s.state != State::Busy {
                open -= 1;
            }
        }
    }
    let end = Instant::now();
    let cpu1 = watcher.cpu_ticks();
    let client_cpu = own_cpu().saturating_sub(client_cpu0);
    let peak = watcher.stop();
    let unfinished = streams.iter().filter(|s| s.state == State::Busy).count();
    let expected = match args.duration {
        Some(_) => totals.done,
        None => args.streams as u64 * u64::from(args.rounds),
    };
    let all_done = totals.errors == 0 && unfinished == 0 && totals.done == expected;

    // ---- report
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"streams\":{},\"rounds\":{},\"connected\":{connected},\"connect_ms\":{:.1},",
        args.streams,
        args.rounds,
        ms(connect_time)
    );
    let first = totals.first_write.unwrap_or(end);
    let _ = write!(
        out,
        "\"write_spread_ms\":{:.1},\"done\":{},\"expected\":{},\"errors\":{},\"unfinished\":{unfinished},",
        ms(totals.last_write.unwrap_or(first) - first),
        totals.done,
        expected,
        totals.errors
    );
    out.push_str("\"error_kinds\":[");
    for (i, k) in totals.error_kinds.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(k));
    }
    out.push_str("],");
    let wall = totals.last_done.unwrap_or(end) - first;
    let _ = write!(
        out,
        "\"wall_ms\":{:.1},\"run_ms\":{:.1},\"turns_per_s\":{:.1},",
        ms(wall),
        ms(end - first),
        totals.done as f64 / wall.as_secs_f64().max(1e-9)
    );
    totals.tokens.sort_unstable();
    let tok_total: u64 = totals.tokens.iter().map(|&t| u64::from(t)).sum();
    let _ = write!(
        out,
        "\"tokens_min\":{},\"tokens_max\":{},\"tokens_total\":{tok_total},",
        totals.tokens.first().copied().unwrap_or(0),
        totals.tokens.last().copied().unwrap_or(0)
    );
    for (name, v) in [("ttft", &mut totals.ttft_ns), ("turn", &mut totals.turn_ns)] {
        v.sort_unstable();
        for (q, label) in [(0.0, "min"), (0.5, "p50"), (0.99, "p99"), (1.0, "max")] {
            let _ = write!(out, "\"{name}_ms_{label}\":{},", quantile_ms(v, q));
        }
    }
    let hz = clock_ticks();
    let _ = write!(
        out,
        "\"client_cpu_s\":{:.3},\"watch\":{{",
        client_cpu.as_secs_f64()
    );
    for (i, (name, _)) in args.watch.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let (s0, s1, p) = (&at_start[i], &at_connected[i], &peak[i]);
        let user = cpu1[i].0.saturating_sub(cpu0[i].0) as f64 / hz;
        let sys = cpu1[i].1.saturating_sub(cpu0[i].1) as f64 / hz;
        let cpu = user + sys;
        let _ = write!(
            out,
            "{}:{{\"threads_start\":{},\"threads_connected\":{},\"threads_peak\":{},\
             \"rss_start_kib\":{},\"rss_connected_kib\":{},\"rss_peak_kib\":{},\
             \"hwm_kib\":{},\"cpu_s\":{cpu:.2},\"cpu_user_s\":{user:.2},\"cpu_sys_s\":{sys:.2}}}",
            json_string(name),
            s0.threads,
            s1.threads,
            p.threads,
            s0.rss_kib,
            s1.rss_kib,
            p.rss_kib,
            p.hwm_kib
        );
    }
    out.push_str("}}");
    println!("{out}");
    Ok(all_done)
}

fn quantile_ms(sorted: &[u64], q: f64) -> String {
    if sorted.is_empty() {
        return "null".into();
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    format!("{:.3}", sorted[i] as f64 / 1e6)
}

fn json_string(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Duration) -> Result<(), String> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(e) => Err(format!("poll: {e}")),
    }
}

fn start_request(s: &mut Stream, totals: &mut Totals) {
    let now = Instant::now();
    s.state = State::Busy;
    s.written = 0;
    s.sent_at = now;
    s.first_token = None;
    s.done_at = None;
    s.tokens = 0;
    s.in_head = true;
    s.status_seen = false;
    s.partial.clear();
    s.body_left = None;
    s.body.clear();
    if totals.first_write.is_none() {
        totals.first_write = Some(now);
        totals.stop_at = totals.duration.map(|d| now + d);
    }
    totals.last_write = Some(now);
}

fn write_more(s: &mut Stream, req: &[u8]) -> io::Result<()> {
    let sock = s.sock.as_mut().expect("socket");
    while s.written < req.len() {
        match sock.write(&req[s.written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => s.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn fail(s: &mut Stream, totals: &mut Totals, kind: String) {
    s.state = State::Failed;
    s.sock = None;
    totals.error(kind);
}

/// Reads until the socket is drained (a short read drains it too: edge-triggered readiness
/// raises a new edge for later arrivals), feeding every line to [`on_line`].
fn read_all(
    s: &mut Stream,
    buf: &mut [u8],
    req: &[u8],
    args: &Args,
    totals: &mut Totals,
) -> Result<(), String> {
    let proto = args.proto;
    loop {
        let n = match s.sock.as_mut().expect("socket").read(buf) {
            Ok(0) => return Err("closed by the server".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        let now = Instant::now();
        let mut data = &buf[..n];
        while !data.is_empty() {
            if let (Proto::Json, false, Some(left)) = (proto, s.in_head, s.body_left) {
                // A plain answer's body: counted, kept for --expect, no lines.
                let take = left.min(data.len());
                if args.expect.is_some() {
                    s.body.extend_from_slice(&data[..take]);
                }
                data = &data[take..];
                s.body_left = Some(left - take);
                if left == take {
                    if let Some(want) = &args.expect {
                        if memmem::find(&s.body, want.as_bytes()).is_none() {
                            return Err(format!(
                                "answer without the expected text: {}",
                                String::from_utf8_lossy(&s.body[..s.body.len().min(200)])
                            ));
                        }
                    }
                    s.done_at = Some(now);
                    end_request(s, now, req, totals)?;
                    if s.state != State::Busy {
                        return Ok(());
                    }
                }
                continue;
            }
            let Some(nl) = memchr::memchr(b'\n', data) else {
                s.partial.extend_from_slice(data);
                break;
            };
            let line_end;
            if s.partial.is_empty() {
                line_end = on_line(s, &data[..nl], now, req, args, totals)?;
            } else {
                let mut line = std::mem::take(&mut s.partial);
                line.extend_from_slice(&data[..nl]);
                line_end = on_line(s, &line, now, req, args, totals)?;
                line.clear();
                s.partial = line;
            }
            data = &data[nl + 1..];
            if line_end && s.state != State::Busy {
                // Finished: ignore anything after the last chunk.
                return Ok(());
            }
        }
        if n < buf.len() {
            return Ok(());
        }
    }
}

/// One line of the response (without its `\n`). True when the response ended.
fn on_line(
    s: &mut Stream,
    line: &[u8],
    now: Instant,
    req: &[u8],
    args: &Args,
    totals: &mut Totals,
) -> Result<bool, String> {
    let proto = args.proto;
    if s.in_head {
        if line.starts_with(b"HTTP/1.") {
            s.status_seen = true;
            if line.get(9..12) != Some(b"200") {
                return Err(format!(
                    "status {}",
                    String::from_utf8_lossy(line.get(9..12).unwrap_or(b"?"))
                ));
            }
        } else if s.status_seen && (line == b"\r" || line.is_empty()) {
            // (Blank lines before the status line are the previous body's trailer end.)
            s.in_head = false;
            if proto == Proto::Json {
                match s.body_left {
                    None => return Err("a json answer without Content-Length".into()),
                    Some(0) => {
                        if args.expect.as_ref().is_some_and(|w| !w.is_empty()) {
                            return Err("an empty answer without the expected text".into());
                        }
                        s.done_at = Some(now);
                        end_request(s, now, req, totals)?;
                        return Ok(true);
                    }
                    Some(_) => {}
                }
            }
        } else if proto == Proto::Json && s.status_seen {
            if let Some((name, value)) = line.split_at_checked(15) {
                if name.eq_ignore_ascii_case(b"content-length:") {
                    let len = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .ok_or("a bad Content-Length")?;
                    s.body_left = Some(len);
                }
            }
        }
        return Ok(false);
    }
    let token = match proto {
        Proto::Halyard => {
            if line.starts_with(b"event: token") {
                true
            } else if line.starts_with(b"event: done") {
                s.done_at = Some(now);
                false
            } else if line.starts_with(b"event: error") {
                return Err("event: error".into());
            } else {
                false
            }
        }
        Proto::OpenAi => {
            if line.starts_with(b"data: [DONE]") {
                s.done_at = Some(now);
                false
            } else {
                line.starts_with(b"data: {") && memmem::find(line, b"\"content\"").is_some()
            }
        }
        // Its body is read by bytes in read_all, never as lines.
        Proto::Json => false,
    };
    if token {
        s.tokens += 1;
        s.first_token.get_or_insert(now);
        return Ok(false);
    }
    if line != b"0\r" {
        return Ok(false);
    }
    // The last chunk: this request is over.
    end_request(s, now, req, totals)?;
    Ok(true)
}

/// The response of the stream's request is complete (`done_at` set when it was a success):
/// counts it, then writes the next round's request or finishes the stream.
fn end_request(
    s: &mut Stream,
    now: Instant,
    req: &[u8],
    totals: &mut Totals,
) -> Result<(), String> {
    let Some(done) = s.done_at else {
        return Err("the response ended without its done event".into());
    };
    totals.done += 1;
    totals.last_done = Some(totals.last_done.map_or(done, |t| t.max(done)));
    totals.turn_ns.push((done - s.sent_at).as_nanos() as u64);
    if let Some(f) = s.first_token {
        totals.ttft_ns.push((f - s.sent_at).as_nanos() as u64);
    }
    totals.tokens.push(s.tokens);
    s.rounds_left -= 1;
    if s.rounds_left == 0 || totals.stop_at.is_some_and(|t| now >= t) {
        s.state = State::Finished;
        return Ok(());
    }
    // The trailer's blank line may still come; the next head starts with "HTTP/".
    start_request(s, totals);
    write_more(s, req).map_err(|e| format!("write: {e}"))
}

// ---- watching the server

#[derive(Clone, Copy, Default)]
struct Sample {
    threads: u64,
    rss_kib: u64,
    hwm_kib: u64,
}

struct Watcher {
    pids: Vec<u32>,
    peak: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(watch: &[(String, u32)]) -> Watcher {
        let pids: Vec<u32> = watch.iter().map(|(_, p)| *p).collect();
        let peak = Arc::new(Mutex::new(vec![Sample::default(); pids.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!pids.is_empty()).then(|| {
            let (pids, peak, stop) = (pids.clone(), peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (i, &pid) in pids.iter().enumerate() {
                        let s = sample(pid);
                        let mut p = peak.lock().expect("peak");
                        p[i].threads = p[i].threads.max(s.threads);
                        p[i].rss_kib = p[i].rss_kib.max(s.rss_kib);
                        p[i].hwm_kib = s.hwm_kib;
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        });
        Watcher {
            pids,
            peak,
            stop,
            thread,
        }
    }

    fn current(&self) -> Vec<Sample> {
        self.pids.iter().map(|&p| sample(p)).collect()
    }

    fn reset_peak(&self) {
        let now = self.current();
        *self.peak.lock().expect("peak") = now;
    }

    fn cpu_ticks(&self) -> Vec<(u64, u64)> {
        self.pids.iter().map(|&p| tree_cpu_ticks(p)).collect()
    }

    fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut p = self.peak.lock().expect("peak").clone();
        for (i, &pid) in self.pids.iter().enumerate() {
            let s = sample(pid);
            p[i].threads = p[i].threads.max(s.threads);
            p[i].rss_kib = p[i].rss_kib.max(s.rss_kib);
            p[i].hwm_kib = s.hwm_kib;
        }
        p
    }
}

fn sample(pid: u32) -> Sample {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Sample::default();
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Sample {
        threads: field("Threads:"),
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}

/// (utime, stime) of `pid` and of its direct children (nginx's workers), in clock ticks.
fn tree_cpu_ticks(pid: u32) -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in dir.flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        // Fields after the command: state (3), ppid (4), ..., utime (14), stime (15).
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ppid: u32 = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        if p == pid || ppid == pid {
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            total.0 += t(11);
            total.1 += t(12);
        }
    }
    total
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// This process's user + system CPU time.
fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

// ---- arguments

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut port: Option<u16> = None;
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        path: String::new(),
        body: String::new(),
        method: "POST".into(),
        proto: Proto::Halyard,
        expect: None,
        key: None,
        streams: 10_000,
        rounds: 1,
        duration: None,
        connect_batch: 512,
        timeout: Duration::from_secs(120),
        watch: Vec::new(),
    };
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num =
            |v: &str| -> Result<u64, String> { v.parse().map_err(|_| format!("bad {flag}: {v}")) };
        match flag.as_str() {
            "--port" => port = Some(num(&value)?.try_into().map_err(|_| "bad --port")?),
            "--path" => args.path = value,
            "--body" => args.body = value,
            "--key" => args.key = Some(value),
            "--proto" => {
                args.proto = match value.as_str() {
                    "halyard" => Proto::Halyard,
                    "openai" => Proto::OpenAi,
                    "json" => Proto::Json,
                    _ => return Err(format!("bad --proto: {value}")),
                }
            }
            "--method" => {
                if value != "POST" && value != "GET" {
                    return Err(format!("bad --method: {value}"));
                }
                args.method = value;
            }
            "--expect" => args.expect = Some(value),
            "--streams" => args.streams = num(&value)? as usize,
            "--rounds" => args.rounds = num(&value)? as u32,
            "--duration" => args.duration = Some(Duration::from_secs(num(&value)?)),
            "--connect-batch" => args.connect_batch = num(&value)? as usize,
            "--timeout" => args.timeout = Duration::from_secs(num(&value)?),
            "--watch" => {
                let (name, pid) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--watch NAME=PID, not {value}"))?;
                args.watch.push((name.to_string(), num(pid)? as u32));
            }
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    let port = port.ok_or_else(|| format!("--port is required\n{USAGE}"))?;
    args.addr.set_port(port);
    if args.path.is_empty() || (args.body.is_empty() && args.method != "GET") {
        return Err(format!("--path and --body are required\n{USAGE}"));
    }
    if args.expect.is_some() && args.proto != Proto::Json {
        return Err("--expect needs --proto json".into());
    }
    if args.streams == 0 || args.rounds == 0 || args.connect_batch == 0 {
        return Err("--streams, --rounds and --connect-batch must be at least 1".into());
    }
    Ok(args)
}
