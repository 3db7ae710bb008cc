//! The access log: one JSON line per request, written off the event loops.
//!
//! Responsible for: the [`Entry`] a loop hands over when an exchange ends (a fixed-size
//! value: no allocation, no formatting, no clock read on the loop), one bounded buffer per
//! loop (a full buffer drops the entry and counts it, `halyard_access_log_dropped_total`:
//! a slow disk never stalls a loop), the writer thread that formats and writes the lines
//! to stdout or a file, and reopening the file on request (SIGHUP, after logrotate moved
//! it). What a line holds is fixed here: route templates and tenant ids, never a raw path,
//! query, header, body or credential.
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

use crossbeam_channel::{Receiver, Select, Sender, TrySendError};

use crate::app::Tenant;
use crate::log::{push_json_escaped, push_rfc3339};
use crate::metrics::{LoopStats, UNMATCHED};
use crate::request::{Method, RequestId};

/// Entries one loop may have waiting for the writer; more are dropped and counted.
pub const BUFFER_PER_LOOP: usize = 8192;
/// How long the writer sleeps at most (it wakes sooner for entries): how late a reopen may
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

/// One finished request, as a loop hands it to the writer.
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

/// A loop's end of the access log.
#[derive(Debug, Clone)]
pub struct LogSender(Sender<Entry>);

impl LogSender {
    /// Hands `entry` to the writer, or drops it (and counts it in `stats`) when the buffer
    /// is full: never blocks.
    pub fn send(&self, entry: Entry, stats: &LoopStats) {
        match self.0.try_send(entry) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => stats.access_log_dropped(),
        }
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
    /// application's route templates). The loops' senders end the writer when all are
    /// dropped.
    pub fn start(
        self,
        loops: usize,
        labels: Vec<&'static str>,
    ) -> io::Result<(Vec<LogSender>, Running)> {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..loops.max(1))
            .map(|_| crossbeam_channel::bounded(BUFFER_PER_LOOP))
            .unzip();
        let mut writer = Writer {
            target: self.target,
            out: self.out,
            reopen: self.reopen,
            labels,
            base: (Instant::now(), SystemTime::now()),
            line: String::with_capacity(512),
            batch: Vec::with_capacity(64 * 1024),
        };
        let thread = std::thread::Builder::new()
            .name("halyard-access-log".into())
            .spawn(move || writer.run(receivers))?;
        Ok((
            senders.into_iter().map(LogSender).collect(),
            Running {
                thread: Some(thread),
            },
        ))
    }
}

impl Running {
    /// Waits for the writer to write every entry sent (call once the loops are gone).
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
    labels: Vec<&'static str>,
    /// An instant and the wall-clock time it was: entries carry instants.
    base: (Instant, SystemTime),
    line: String,
    batch: Vec<u8>,
}

impl Writer {
    fn run(&mut self, mut receivers: Vec<Receiver<Entry>>) {
        while !receivers.is_empty() {
            self.wait(&receivers);
            self.check_reopen();
            let mut open = Vec::with_capacity(receivers.len());
            for rx in receivers {
                let mut alive = true;
                loop {
                    match rx.try_recv() {
                        Ok(e) => self.push(&e),
                        Err(crossbeam_channel::TryRecvError::Empty) => break,
                        Err(crossbeam_channel::TryRecvError::Disconnected) => {
                            alive = false;
                            break;
                        }
                    }
                    if self.batch.len() >= 64 * 1024 {
                        self.flush();
                    }
                }
                if alive {
                    open.push(rx);
                }
            }
            receivers = open;
            self.flush();
        }
    }

    /// Sleeps until a loop sends something (or hangs up), or the reopen check is due.
    fn wait(&self, receivers: &[Receiver<Entry>]) {
        let mut sel = Select::new();
        for rx in receivers {
            sel.recv(rx);
        }
        let _ = sel.ready_timeout(REOPEN_CHECK);
    }

    fn check_reopen(&mut self) {
        if !self.reopen.swap(false, Ordering::AcqRel) {
            return;
        }
        self.flush();
        match Output::open(&self.target) {
            Ok(out) => self.out = out,
            // The old file stays in use: lines still go somewhere the operator can find.
            Err(e) => crate::log_error!("cannot reopen the access log: {e}"),
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if let Err(e) = self.out.write_all(&self.batch) {
            crate::log_error!("cannot write the access log: {e}");
        }
        self.batch.clear();
    }

    fn push(&mut self, e: &Entry) {
        self.line.clear();
        let wall = match e.at.checked_duration_since(self.base.0) {
            Some(d) => self.base.1 + d,
            None => self.base.1 - self.base.0.duration_since(e.at),
        };
        let route = match e.route {
            Some(r) => self
                .labels
                .get(usize::from(r))
                .copied()
                .unwrap_or(UNMATCHED),
            None => UNMATCHED,
        };
        format_line(&mut self.line, e, wall, route);
        self.batch.extend_from_slice(self.line.as_bytes());
    }
}

/// Appends the JSON line of `e` (with its newline) to `out`.
pub fn format_line(out: &mut String, e: &Entry, wall: SystemTime, route: &str) {
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
        "\",\"method\":\"{}\",\"status\":{},\"bytesIn\":{},\"bytesOut\":{},\"latencyUs\":{},\
         \"streamUs\":",
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

    #[test]
    fn a_line_is_one_json_object() {
        let mut s = String::new();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        format_line(&mut s, &entry(), wall, "/api/projects/:projectId/agents");
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
    }

    #[test]
    fn a_full_buffer_drops_and_counts() {
        // No writer: a buffer of the real size fills up, then every entry more is counted.
        let (tx, _rx) = crossbeam_channel::bounded(BUFFER_PER_LOOP);
        let sender = LogSender(tx);
        let m = crate::metrics::Metrics::new(1);
        for _ in 0..BUFFER_PER_LOOP + 5 {
            sender.send(entry(), m.loop_stats(0));
        }
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("halyard_access_log_dropped_total 5\n"));
    }

    #[test]
    fn the_writer_writes_every_line_and_reopens() {
        let dir = std::env::temp_dir().join(format!("halyard-alog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("access.log");
        let log = AccessLog::open(Target::File(path.clone())).expect("open");
        let reopen = log.reopen_handle();
        let (senders, running) = log.start(2, vec!["/x"]).expect("start");
        let stats = LoopStats::default();
        senders[0].send(entry(), &stats);
        // Moved away as logrotate does: the next lines go to a new file after the reopen.
        let rotated = dir.join("access.log.1");
        std::thread::sleep(Duration::from_millis(50));
        std::fs::rename(&path, &rotated).expect("rename");
        reopen.reopen();
        std::thread::sleep(REOPEN_CHECK * 2);
        senders[1].send(entry(), &stats);
        drop(senders);
        running.finish();
        let old = std::fs::read_to_string(&rotated).expect("rotated");
        let new = std::fs::read_to_string(&path).expect("reopened");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!((old.lines().count(), new.lines().count()), (1, 1));
        assert!(new.contains("\"route\":\"/x\""));
    }
}
