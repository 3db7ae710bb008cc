//! The access log: one JSON line per request, written off the event loops.
//!
//! Responsible for: the [`Entry`] a loop describes when an exchange ends, each loop's
//! [`LogSink`] (it renders the line into the loop's current buffer, about 70 ns, and hands
//! whole buffers to the writer: one channel send per ~600 lines, no per-line hand-off
//! between threads), the bound on what a loop may have waiting (a loop whose buffers are
//! all with the writer drops lines and counts them, `halyard_access_log_dropped_total`: a
//! slow disk never stalls a loop), the writer thread that writes the buffers to stdout or a
//! file, and reopening the file on request (SIGHUP, after logrotate moved it). What a line
//! holds is fixed here: route templates and tenant ids, never a raw path, query, header,
//! body or credential.
//! Not responsible for: deciding a request's route or tenant (the application's
//! [`describe`](crate::App::describe)), or signals (the binary's SIGHUP thread calls
//! [`ReopenHandle::reopen`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::app::Tenant;
use crate::log::push_rfc3339;
use crate::metrics::{LoopStats, UNMATCHED};
use crate::request::{Method, RequestId};

/// The size of one buffer of lines (one `write` of the writer): ~600 lines.
pub const BUFFER_BYTES: usize = 128 * 1024;
/// A buffer is handed over once it holds this much: room is left for one more line of
/// any length a request can produce (ids and tenants are bounded; escaping at most
/// sextuples them), so a buffer never reallocates.
const HAND_OVER_AT: usize = BUFFER_BYTES - 4 * 1024;
/// Buffers one loop may own, filled or being filled: ~6 MiB, allocated as load needs them.
/// About 25 ms of a loop at a million requests a second: the writer shares a core (with
/// the loop when pinned, with the load when not) and the scheduler sometimes leaves it off
/// the CPU for 10 ms or more. Past this, lines are dropped and counted.
pub const BUFFERS_PER_LOOP: usize = 48;
/// How long a line may wait in a loop's buffer that is not full: how late a line reaches the
/// file when requests are few.
pub const HAND_OVER_AFTER_MS: u64 = 50;
/// How long the writer sleeps at most (it wakes sooner for a buffer): how late a reopen may
/// be noticed.
const REOPEN_CHECK: Duration = Duration::from_millis(200);

/// Where the access log goes (`--access-log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// A file, appended to and reopened on [`ReopenHandle::reopen`].
    File(PathBuf),
}

impl Target {
    /// The target of a `--access-log` value: `None` for `off`.
    pub fn parse(value: &str) -> Option<Target> {
        match value {
            "off" | "" => None,
            "stdout" | "-" => Some(Target::Stdout),
            path => Some(Target::File(PathBuf::from(path))),
        }
    }
}

/// One finished request, as a loop describes it to its [`LogSink`].
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// When the exchange ended (the loop's clock).
    pub at: Instant,
    /// Request id (the client's `X-Request-Id` or a generated one).
    pub id: RequestId,
    /// Remote address.
    pub peer: IpAddr,
    /// Tenant, if the application named one.
    pub tenant: Tenant,
    /// Index into the route labels; `None` for no route.
    pub route: Option<u16>,
    /// Method.
    pub method: Method,
    /// Response status.
    pub status: u16,
    /// Head and body bytes read.
    pub bytes_in: u64,
    /// Head and body bytes written (chunk framing included).
    pub bytes_out: u64,
    /// From the head parsed to the response head written, in microseconds.
    pub latency_us: u64,
    /// How long a stream reply stayed open, in microseconds; `None` for other replies.
    pub stream_us: Option<u64>,
}

/// A filled buffer on its way to the writer, with the index of the loop it goes back to.
type Filled = (usize, Vec<u8>);

/// A loop's end of the access log: renders lines into the loop's current buffer and hands
/// buffers to the writer when full or [`HAND_OVER_AFTER_MS`] old. Handing over what is
/// left happens on drop, so a loop that ends loses no line.
#[derive(Debug)]
pub struct LogSink {
    index: usize,
    format: LineFormat,
    /// The buffer being filled; no capacity until a line needs one (after a hand-over, or
    /// while every buffer of the loop is with the writer).
    buf: Vec<u8>,
    /// When the oldest line in `buf` was written (loop milliseconds).
    oldest_ms: Option<u64>,
    /// Buffers this loop allocated so far (at most [`BUFFERS_PER_LOOP`]).
    owned: usize,
    to_writer: Sender<Filled>,
    /// Buffers the writer wrote and gave back, empty.
    free: Receiver<Vec<u8>>,
}

impl LogSink {
    /// Renders `e` into the current buffer at loop time `now_ms`, or drops it (and counts it
    /// in `stats`) when every buffer of this loop is waiting for the writer: never blocks.
    pub fn push(&mut self, e: &Entry, now_ms: u64, stats: &LoopStats) {
        if self.buf.capacity() == 0 {
            match self.take_buffer() {
                Some(b) => self.buf = b,
                None => return stats.access_log_dropped(),
            }
        }
        self.format.push(&mut self.buf, e);
        self.oldest_ms.get_or_insert(now_ms);
        if self.buf.len() >= HAND_OVER_AT {
            self.hand_over();
        }
    }

    /// When the current buffer is due to be handed over (loop milliseconds), if it holds
    /// a line: the loop must not sleep past it.
    pub fn due_ms(&self) -> Option<u64> {
        self.oldest_ms.map(|at| at + HAND_OVER_AFTER_MS)
    }

    /// Hands the current buffer over if it is due at `now_ms`.
    pub fn tick(&mut self, now_ms: u64) {
        if self.due_ms().is_some_and(|due| now_ms >= due) {
            self.hand_over();
        }
    }

    /// Sends the current buffer's lines to the writer; the next line takes a buffer.
    fn hand_over(&mut self) {
        self.oldest_ms = None;
        if self.buf.is_empty() {
            return;
        }
        let filled = std::mem::take(&mut self.buf);
        // A writer gone (only at exit) takes no more lines: they are dropped with it.
        let _ = self.to_writer.send((self.index, filled));
    }

    /// A buffer the writer gave back, or a new one while this loop owns fewer than
    /// [`BUFFERS_PER_LOOP`].
    fn take_buffer(&mut self) -> Option<Vec<u8>> {
        if let Ok(b) = self.free.try_recv() {
            return Some(b);
        }
        (self.owned < BUFFERS_PER_LOOP).then(|| {
            self.owned += 1;
            Vec::with_capacity(BUFFER_BYTES)
        })
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.hand_over();
    }
}

/// Asks the writer to reopen its file (after logrotate moved it) from any thread.
#[derive(Debug, Clone)]
pub struct ReopenHandle(Arc<AtomicBool>);

impl ReopenHandle {
    /// The file is reopened before the next lines are written (within a fraction of a
    /// second even when no request comes).
    pub fn reopen(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// An opened access log, not yet started.
#[derive(Debug)]
pub struct AccessLog {
    target: Target,
    out: Output,
    reopen: Arc<AtomicBool>,
}

/// The running writer; [`Running::finish`] waits for it to write what is left.
#[derive(Debug)]
pub struct Running {
    thread: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Opens `target` now (a file that cannot be opened fails the start, not the first
    /// request).
    pub fn open(target: Target) -> io::Result<AccessLog> {
        let out = Output::open(&target)?;
        Ok(AccessLog {
            target,
            out,
            reopen: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Where it writes.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// A handle that has the file reopened.
    pub fn reopen_handle(&self) -> ReopenHandle {
        ReopenHandle(self.reopen.clone())
    }

    /// Starts the writer thread for `loops` loops, naming routes with `labels` (the
    /// application's route templates). The writer ends once every sink is dropped and
    /// their lines are written.
    pub fn start(
        self,
        loops: usize,
        labels: Vec<&'static str>,
    ) -> io::Result<(Vec<LogSink>, Running)> {
        let (to_writer, filled) = crossbeam_channel::unbounded();
        let base = (Instant::now(), SystemTime::now());
        let (sinks, returns): (Vec<_>, Vec<_>) = (0..loops.max(1))
            .map(|index| {
                let (back, free) = crossbeam_channel::unbounded();
                let sink = LogSink {
                    index,
                    format: LineFormat::new(&labels, base),
                    buf: Vec::new(),
                    oldest_ms: None,
                    owned: 0,
                    to_writer: to_writer.clone(),
                    free,
                };
                (sink, back)
            })
            .unzip();
        let mut writer = Writer {
            target: self.target,
            out: self.out,
            reopen: self.reopen,
            returns,
        };
        let thread = std::thread::Builder::new()
            .name("halyard-access-log".into())
            .spawn(move || writer.run(filled))?;
        Ok((
            sinks,
            Running {
                thread: Some(thread),
            },
        ))
    }
}

impl Running {
    /// Waits for the writer to write every line handed over (call once the loops are gone).
    pub fn finish(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug)]
enum Output {
    Stdout,
    File(File),
}

impl Output {
    fn open(target: &Target) -> io::Result<Output> {
        match target {
            Target::Stdout => Ok(Output::Stdout),
            Target::File(path) => open_append(path).map(Output::File),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Output::File(f) => f.write_all(bytes),
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    target: Target,
    out: Output,
    reopen: Arc<AtomicBool>,
    /// Where each loop's buffers go back once written.
    returns: Vec<Sender<Vec<u8>>>,
}

impl Writer {
    fn run(&mut self, filled: Receiver<Filled>) {
        loop {
            self.check_reopen();
            match filled.recv_timeout(REOPEN_CHECK) {
                Ok((index, mut buf)) => {
                    if let Err(e) = self.out.write_all(&buf) {
                        crate::log_error!("cannot write the access log: {e}");
                    }
                    buf.clear();
                    if let Some(back) = self.returns.get(index) {
                        // A loop gone takes no buffer back: it is freed here.
                        let _ = back.send(buf);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn check_reopen(&mut self) {
        if !self.reopen.swap(false, Ordering::AcqRel) {
            return;
        }
        match Output::open(&self.target) {
            Ok(out) => self.out = out,
            // The old file stays in use: lines still go somewhere the operator can find.
            Err(e) => crate::log_error!("cannot reopen the access log: {e}"),
        }
    }
}

/// Renders [`Entry`] values as access log lines.
///
/// Every request's line is rendered on its loop, so a line is built from copies of bytes
/// rendered ahead: the route labels (escaped once, at start), the method names, and the time to the
/// second (rendered when the second changes); per line only the milliseconds, the integers
/// (`itoa`) and the remote address are rendered, and the request id and tenant are checked
/// for characters JSON must escape (escaped only when they have one, else copied at their
/// padded size).
#[derive(Debug)]
pub struct LineFormat {
    /// `,"route":"…","method":"` per route label, [`UNMATCHED`] last.
    routes: Vec<Box<[u8]>>,
    /// An instant and the time since the Unix epoch it was: entries carry instants.
    base: (Instant, Duration),
    /// The Unix second `prefix` renders (`u64::MAX`: none yet).
    second: u64,
    /// `{"time":"2024-05-01T12:34:56.` for `second` ([`PREFIX_LEN`] bytes until year 9999).
    prefix: Vec<u8>,
}

impl LineFormat {
    /// A formatter naming routes with `labels` (an entry's `route` indexes them), whose
    /// entries' instants are placed in wall-clock time by `base`: an instant and the
    /// wall-clock time it was.
    pub fn new(labels: &[&str], base: (Instant, SystemTime)) -> LineFormat {
        let routes = labels
            .iter()
            .chain(std::iter::once(&UNMATCHED))
            .map(|label| {
                let mut r = b",\"route\":\"".to_vec();
                push_json_str(&mut r, label.as_bytes());
                r.extend_from_slice(b"\",\"method\":\"");
                r.into_boxed_slice()
            })
            .collect();
        LineFormat {
            routes,
            base: (
                base.0,
                base.1
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
            second: u64::MAX,
            prefix: Vec::with_capacity(32),
        }
    }

    /// Appends the JSON line of `e` (with its newline) to `out`.
    pub fn push(&mut self, out: &mut Vec<u8>, e: &Entry) {
        let since_epoch = match e.at.checked_duration_since(self.base.0) {
            Some(d) => self.base.1 + d,
            None => self.base.1.saturating_sub(self.base.0.duration_since(e.at)),
        };
        let secs = since_epoch.as_secs();
        if secs != self.second {
            self.render_prefix(secs);
        }
        let mut num = itoa::Buffer::new();
        match <&[u8; PREFIX_LEN]>::try_from(self.prefix.as_slice()) {
            Ok(fixed) => out.extend_from_slice(fixed),
            Err(_) => out.extend_from_slice(&self.prefix),
        }
        push_millis(out, since_epoch.subsec_millis());
        out.extend_from_slice(b"Z\",\"requestId\":\"");
        let (id, len) = e.id.padded();
        push_json_padded(out, id, len);
        out.extend_from_slice(b"\",\"remoteAddr\":\"");
        push_ip(out, e.peer);
        if e.tenant.is_empty() {
            out.extend_from_slice(b"\",\"tenant\":null");
        } else {
            out.extend_from_slice(b"\",\"tenant\":\"");
            let (tenant, len) = e.tenant.padded();
            push_json_padded(out, tenant, len);
            out.push(b'"');
        }
        let unmatched = self.routes.len() - 1;
        let route = e.route.map_or(unmatched, |r| usize::from(r).min(unmatched));
        out.extend_from_slice(&self.routes[route]);
        out.extend_from_slice(method_tail(e.method));
        out.extend_from_slice(num.format(e.status).as_bytes());
        out.extend_from_slice(b",\"bytesIn\":");
        out.extend_from_slice(num.format(e.bytes_in).as_bytes());
        out.extend_from_slice(b",\"bytesOut\":");
        out.extend_from_slice(num.format(e.bytes_out).as_bytes());
        out.extend_from_slice(b",\"latencyUs\":");
        out.extend_from_slice(num.format(e.latency_us).as_bytes());
        out.extend_from_slice(b",\"streamUs\":");
        match e.stream_us {
            Some(us) => out.extend_from_slice(num.format(us).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}\n");
    }

    /// Renders `{"time":"…T…:…:….` for Unix second `secs` with the shared RFC 3339 renderer
    /// (the milliseconds and `Z` it adds are cut off), so both logs keep one time format.
    fn render_prefix(&mut self, secs: u64) {
        let mut s = String::with_capacity(32);
        s.push_str("{\"time\":\"");
        push_rfc3339(&mut s, SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        s.truncate(s.len() - "000Z".len());
        self.prefix.clear();
        self.prefix.extend_from_slice(s.as_bytes());
        self.second = secs;
    }
}

/// The length of `{"time":"2024-05-01T12:34:56.`.
const PREFIX_LEN: usize = 29;

/// Appends the first `len` bytes of `padded` by copying all `N` and cutting the padding
/// off: a copy of constant size is a few vector moves, where one of `len` bytes is a call to
/// `memcpy`.
fn push_padded<const N: usize>(out: &mut Vec<u8>, padded: &[u8; N], len: usize) {
    let end = out.len() + len.min(N);
    out.extend_from_slice(padded);
    out.truncate(end);
}

/// `METHOD","status":` for `m`.
fn method_tail(m: Method) -> &'static [u8] {
    match m {
        Method::Get => b"GET\",\"status\":",
        Method::Head => b"HEAD\",\"status\":",
        Method::Post => b"POST\",\"status\":",
        Method::Put => b"PUT\",\"status\":",
        Method::Patch => b"PATCH\",\"status\":",
        Method::Delete => b"DELETE\",\"status\":",
        Method::Options => b"OPTIONS\",\"status\":",
        Method::Other => b"OTHER\",\"status\":",
    }
}

/// Appends `ms` (below 1000) as three digits.
fn push_millis(out: &mut Vec<u8>, ms: u32) {
    let ms = ms.min(999);
    out.extend_from_slice(&[
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
    ]);
}

/// Appends `ip` as `Display` writes it (IPv4 rendered here: it is the common case).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut num = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(num.format(octet).as_bytes());
            }
        }
        // Writing to a `Vec` cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Appends the first `len` bytes of `padded` as [`push_json_text`] does. The common case
/// copies all `N` bytes and cuts the padding off: a copy of constant size is a few vector
/// moves, where one of the id's own length is a call to `memcpy`.
fn push_json_padded<const N: usize>(out: &mut Vec<u8>, padded: &[u8; N], len: usize) {
    let text = &padded[..len.min(N)];
    if needs_escaping(text) {
        return push_json_text(out, text);
    }
    push_padded(out, padded, len);
}

/// Whether `bytes` hold a byte JSON escapes, or one that is not ASCII; one pass that the
/// compiler vectorises (no early exit).
fn needs_escaping(bytes: &[u8]) -> bool {
    let special = bytes.iter().fold(0u8, |any, &b| {
        any | u8::from(b.wrapping_sub(0x20) >= 0x60) | u8::from(b == b'"') | u8::from(b == b'\\')
    });
    special != 0
}

/// Appends the text of `bytes` escaped for the inside of a JSON string, byte for byte as
/// `push_json_escaped(out, from_utf8(bytes).unwrap_or(""))` would (the ids' `as_str`).
/// Request ids (`[A-Za-z0-9._:-]` from the parser, or generated) and tenant ids are printable
/// ASCII, so the common case is one pass that the compiler vectorises (no early exit) and
/// one copy: no UTF-8 validation, no escaping.
fn push_json_text(out: &mut Vec<u8>, bytes: &[u8]) {
    if !needs_escaping(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    push_json_str(out, std::str::from_utf8(bytes).unwrap_or("").as_bytes());
}

/// Appends `s` (UTF-8) escaped for the inside of a JSON string, byte for byte as
/// [`push_json_escaped`](crate::log::push_json_escaped) would.
fn push_json_str(out: &mut Vec<u8>, s: &[u8]) {
    let plain = |b: &u8| *b >= 0x20 && *b != b'"' && *b != b'\\';
    if s.iter().all(plain) {
        out.extend_from_slice(s);
        return;
    }
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
            }
            // Bytes of multi-byte characters are all >= 0x80: copied as they are.
            b => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn entry() -> Entry {
        Entry {
            at: Instant::now(),
            id: RequestId::new(b"req_1"),
            peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tenant: Tenant::new("ten_abc"),
            route: Some(0),
            method: Method::Post,
            status: 201,
            bytes_in: 120,
            bytes_out: 340,
            latency_us: 77,
            stream_us: None,
        }
    }

    /// The formatter as it was before [`LineFormat`] (`write!` and the shared escaper and
    /// time renderer per line): the new one must write the same bytes.
    fn reference_line(out: &mut String, e: &Entry, wall: SystemTime, route: &str) {
        use crate::log::push_json_escaped;
        use std::fmt::Write as _;
        out.push_str("{\"time\":\"");
        push_rfc3339(out, wall);
        out.push_str("\",\"requestId\":\"");
        push_json_escaped(out, e.id.as_str());
        let _ = write!(out, "\",\"remoteAddr\":\"{}\",\"tenant\":", e.peer);
        if e.tenant.is_empty() {
            out.push_str("null");
        } else {
            out.push('"');
            push_json_escaped(out, e.tenant.as_str());
            out.push('"');
        }
        out.push_str(",\"route\":\"");
        push_json_escaped(out, route);
        let _ = write!(
            out,
            "\",\"method\":\"{}\",\"status\":{},\"bytesIn\":{},\"bytesOut\":{},\
             \"latencyUs\":{},\"streamUs\":",
            e.method.as_str(),
            e.status,
            e.bytes_in,
            e.bytes_out,
            e.latency_us
        );
        match e.stream_us {
            Some(us) => {
                let _ = write!(out, "{us}");
            }
            None => out.push_str("null"),
        }
        out.push_str("}\n");
    }

    /// The reference line of `e` as the old writer rendered it with `labels` and `base`.
    fn reference(e: &Entry, labels: &[&str], base: (Instant, SystemTime)) -> String {
        let wall = match e.at.checked_duration_since(base.0) {
            Some(d) => base.1 + d,
            None => base.1 - base.0.duration_since(e.at),
        };
        let route = match e.route {
            Some(r) => labels.get(usize::from(r)).copied().unwrap_or(UNMATCHED),
            None => UNMATCHED,
        };
        let mut s = String::new();
        reference_line(&mut s, e, wall, route);
        s
    }

    #[test]
    fn a_line_is_one_json_object() {
        let base = (
            Instant::now(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777),
        );
        let mut f = LineFormat::new(&["/api/projects/:projectId/agents"], base);
        let mut e = entry();
        e.at = base.0;
        let mut out = Vec::new();
        f.push(&mut out, &e);
        let s = String::from_utf8(out).expect("utf-8");
        assert!(s.ends_with("}\n") && s.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(s.trim_end()).expect("json");
        assert_eq!(v["time"], "1994-11-06T08:49:37.000Z");
        assert_eq!(v["requestId"], "req_1");
        assert_eq!(v["remoteAddr"], "127.0.0.1");
        assert_eq!(v["tenant"], "ten_abc");
        assert_eq!(v["route"], "/api/projects/:projectId/agents");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["status"], 201);
        assert_eq!(
            (v["bytesIn"].as_u64(), v["bytesOut"].as_u64()),
            (Some(120), Some(340))
        );
        assert_eq!(v["latencyUs"], 77);
        assert!(v["streamUs"].is_null());
        // The field order of docs/operations.md ("Access log").
        let keys: Vec<&str> = s
            .trim_end()
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .filter_map(|kv| kv.split(':').next())
            .collect();
        assert_eq!(
            keys,
            [
                "\"time\"",
                "\"requestId\"",
                "\"remoteAddr\"",
                "\"tenant\"",
                "\"route\"",
                "\"method\"",
                "\"status\"",
                "\"bytesIn\"",
                "\"bytesOut\"",
                "\"latencyUs\"",
                "\"streamUs\""
            ]
        );
    }

    #[test]
    fn lines_match_the_reference_across_seconds_and_odd_values() {
        let labels = ["/x", "/a\"b\\c\u{1}", "/é/:id"];
        // 23:59:59.999 on 2024-02-28, so that entries cross a second, a day and a month.
        let base = (
            Instant::now() + Duration::from_secs(10),
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_164_799_999),
        );
        let mut f = LineFormat::new(&labels, base);
        let offsets_ms: [i64; 7] = [-10_000, -1, 0, 1, 2, 86_400_000, 86_400_000 * 366];
        let ids: [&[u8]; 4] = [b"req_3f2a1b9c0000000000000001", b"a\"b", b"\x1f\n\t\\", b""];
        let tenants = ["", "ten_kg97djfeqr3j6j34dkqt", "t\u{7f}\u{1b}é\"", "x\r"];
        let peers: [IpAddr; 4] = [
            "0.0.0.0".parse().expect("ip"),
            "255.255.255.255".parse().expect("ip"),
            "2001:db8::1".parse().expect("ip"),
            "::ffff:10.0.0.1".parse().expect("ip"),
        ];
        let methods = [
            Method::Get,
            Method::Head,
            Method::Post,
            Method::Put,
            Method::Patch,
            Method::Delete,
            Method::Options,
            Method::Other,
        ];
        let mut n = 0u64;
        for (i, off) in offsets_ms.iter().enumerate() {
            for (j, id) in ids.iter().enumerate() {
                for (k, tenant) in tenants.iter().enumerate() {
                    for peer in peers {
                        n += 1;
                        let at = if *off >= 0 {
                            base.0 + Duration::from_millis(off.unsigned_abs())
                        } else {
                            base.0 - Duration::from_millis(off.unsigned_abs())
                        };
                        let e = Entry {
                            at,
                            id: RequestId::new(id),
                            peer,
                            tenant: Tenant::new(tenant),
                            route: [None, Some(0), Some(1), Some(2), Some(3), Some(u16::MAX)]
                                [(i + j + k) % 6],
                            method: methods[(n % 8) as usize],
                            status: [0, 200, 404, u16::MAX][(n % 4) as usize],
                            bytes_in: [0, 9, 10, u64::MAX][(n / 2 % 4) as usize],
                            bytes_out: n * 1_000_003,
                            latency_us: u64::MAX - n,
                            stream_us: [None, Some(0), Some(u64::MAX)][(n % 3) as usize],
                        };
                        let mut out = Vec::new();
                        f.push(&mut out, &e);
                        let want = reference(&e, &labels, base);
                        assert_eq!(String::from_utf8(out).expect("utf-8"), want);
                        let v: serde_json::Value =
                            serde_json::from_str(want.trim_end()).expect("json");
                        assert_eq!(v["requestId"].as_str(), e.id.as_str().into());
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn lines_match_the_reference(
            id in proptest::collection::vec(proptest::num::u8::ANY, 0..70),
            tenant in ".{0,50}",
            peer in proptest::prelude::any::<IpAddr>(),
            route in proptest::option::of(0u16..6),
            status in proptest::prelude::any::<u16>(),
            bytes in proptest::prelude::any::<(u64, u64, u64)>(),
            stream_us in proptest::option::of(proptest::prelude::any::<u64>()),
            after_ms in 0u64..10_000_000,
        ) {
            let labels = ["/health/live", "/api/projects/:projectId/agents", "/q\"\\"];
            let base = (Instant::now(), SystemTime::now());
            let mut f = LineFormat::new(&labels, base);
            let e = Entry {
                at: base.0 + Duration::from_millis(after_ms),
                // Ids from the parser are ASCII; anything else must still match.
                id: RequestId::new(&id),
                peer,
                tenant: Tenant::new(&tenant),
                route,
                method: Method::Get,
                status,
                bytes_in: bytes.0,
                bytes_out: bytes.1,
                latency_us: bytes.2,
                stream_us,
            };
            let mut out = Vec::new();
            f.push(&mut out, &e);
            proptest::prop_assert_eq!(
                String::from_utf8(out).expect("utf-8"),
                reference(&e, &labels, base)
            );
        }
    }

    /// A sink for loop 0 whose buffers come back through `free`, with no writer.
    fn sink_without_writer() -> (LogSink, Receiver<Filled>, Sender<Vec<u8>>) {
        let (to_writer, filled) = crossbeam_channel::unbounded();
        let (back, free) = crossbeam_channel::unbounded();
        let sink = LogSink {
            index: 0,
            format: LineFormat::new(&["/x"], (Instant::now(), SystemTime::now())),
            buf: Vec::new(),
            oldest_ms: None,
            owned: 0,
            to_writer,
            free,
        };
        (sink, filled, back)
    }

    fn dropped(m: &crate::metrics::Metrics) -> String {
        let mut s = String::new();
        m.render(&mut s);
        s.lines()
            .find(|l| l.starts_with("halyard_access_log_dropped_total "))
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn a_loop_whose_buffers_are_all_waiting_drops_and_counts() {
        // No writer: the loop fills every buffer it may own, then each line more is counted.
        let (mut sink, filled, back) = sink_without_writer();
        let m = crate::metrics::Metrics::new(1);
        let line = {
            let mut v = Vec::new();
            sink.format.push(&mut v, &entry());
            v.len()
        };
        let per_buffer = HAND_OVER_AT.div_ceil(line);
        let fit = per_buffer * BUFFERS_PER_LOOP;
        for _ in 0..fit + 5 {
            sink.push(&entry(), 0, m.loop_stats(0));
        }
        assert_eq!(dropped(&m), "halyard_access_log_dropped_total 5");
        assert_eq!(filled.len(), BUFFERS_PER_LOOP);
        // No buffer grew past its size: each `write` is one buffer.
        let (_, first) = filled.try_recv().expect("a buffer");
        assert!(first.capacity() == BUFFER_BYTES && first.len() >= HAND_OVER_AT);
        assert_eq!(first.split(|b| *b == b'\n').count() - 1, per_buffer);
        // A buffer given back is used again: lines are taken, not dropped.
        back.send(Vec::with_capacity(BUFFER_BYTES)).expect("back");
        sink.push(&entry(), 0, m.loop_stats(0));
        assert_eq!(dropped(&m), "halyard_access_log_dropped_total 5");
    }

    #[test]
    fn a_buffer_not_full_is_handed_over_when_due_and_on_drop() {
        let (mut sink, filled, _back) = sink_without_writer();
        let stats = LoopStats::default();
        assert_eq!(sink.due_ms(), None);
        sink.push(&entry(), 1_000, &stats);
        sink.push(&entry(), 1_020, &stats);
        assert_eq!(sink.due_ms(), Some(1_000 + HAND_OVER_AFTER_MS));
        sink.tick(1_000 + HAND_OVER_AFTER_MS - 1);
        assert!(filled.is_empty());
        sink.tick(1_000 + HAND_OVER_AFTER_MS);
        let (index, buf) = filled.try_recv().expect("handed over");
        assert_eq!((index, buf.split(|b| *b == b'\n').count() - 1), (0, 2));
        assert_eq!(sink.due_ms(), None);
        sink.push(&entry(), 2_000, &stats);
        drop(sink);
        let (_, last) = filled.try_recv().expect("handed over on drop");
        assert_eq!(last.split(|b| *b == b'\n').count() - 1, 1);
    }

    #[test]
    fn the_writer_writes_every_line_and_reopens() {
        let dir = std::env::temp_dir().join(format!("halyard-alog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("access.log");
        let log = AccessLog::open(Target::File(path.clone())).expect("open");
        let reopen = log.reopen_handle();
        let (mut sinks, running) = log.start(2, vec!["/x"]).expect("start");
        let stats = LoopStats::default();
        sinks[0].push(&entry(), 0, &stats);
        sinks[0].tick(HAND_OVER_AFTER_MS);
        // Moved away as logrotate does: the next lines go to a new file after the reopen.
        let rotated = dir.join("access.log.1");
        std::thread::sleep(Duration::from_millis(50));
        std::fs::rename(&path, &rotated).expect("rename");
        reopen.reopen();
        std::thread::sleep(REOPEN_CHECK * 2);
        sinks[1].push(&entry(), 0, &stats);
        sinks[1].push(&entry(), 0, &stats);
        drop(sinks);
        running.finish();
        let old = std::fs::read_to_string(&rotated).expect("rotated");
        let new = std::fs::read_to_string(&path).expect("reopened");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!((old.lines().count(), new.lines().count()), (1, 2));
        assert!(new.contains("\"route\":\"/x\""));
    }
}
