//! One client connection: non-blocking connect, TLS handshake, request batches written in one
//! go (pipelined when the batch holds several requests), and a minimal HTTP/1.1 response
//! parser (status code and Content-Length; the body is skipped).
//!
//! Everything is driven by [`Conn::drive`] on each (edge-triggered) readiness event. Reads
//! and writes go until the socket would block; a read that returns less than the space
//! offered has drained the socket too (a later arrival raises a new edge), which saves the
//! `EAGAIN` read per response.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::histogram::Histogram;

/// Read buffer per connection; a response head must fit in it.
const BUF_SIZE: usize = 16 * 1024;

/// Where and how to connect over TLS.
pub struct TlsTarget {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

/// What a worker counts over the timed window.
pub struct Stats {
    pub ok: u64,
    pub non_2xx: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Request latency in nanoseconds.
    pub latency: Histogram,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            ok: 0,
            non_2xx: 0,
            errors: 0,
            first_error: None,
            latency: Histogram::new(),
        }
    }

    pub fn error(&mut self, e: &Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        self.ok += other.ok;
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.latency.merge(&other.latency);
    }
}

/// What a worker shares with its connections.
pub struct Ctx {
    /// The timed window is running: responses count, and every connection keeps sending.
    /// Before it (warm-up), each connection sends one batch and then waits.
    pub measuring: bool,
    /// Connections whose warm-up batch completed.
    pub warmed: usize,
    /// One batch: the request, `depth` times.
    pub batch: Box<[u8]>,
    pub depth: u32,
    pub stats: Stats,
}

#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    Tls(rustls::Error),
    /// The server closed the connection.
    Closed,
    Protocol(&'static str),
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Self {
        Error::Tls(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Tls(e) => write!(f, "TLS error: {e}"),
            Error::Closed => f.write_str("connection closed by the server"),
            Error::Protocol(what) => write!(f, "bad response: {what}"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Handshaking,
    /// Connected, no request outstanding.
    Idle,
    /// A batch is being written or answered.
    Busy,
}

pub struct Conn {
    sock: TcpStream,
    tls: Option<ClientConnection>,
    state: State,
    /// The warm-up batch has been answered.
    warmed: bool,
    /// Responses of the current batch still to come.
    pending: u32,
    /// When the current batch was written.
    sent_at: Instant,
    /// Plain HTTP: bytes at the end of the batch not yet written.
    unsent: usize,
    inbox: Inbox,
}

impl Conn {
    /// Starts a non-blocking connect and registers the socket for read and write edges.
    pub fn connect(
        addr: SocketAddr,
        tls: Option<&TlsTarget>,
        registry: &Registry,
        token: Token,
    ) -> Result<Conn, Error> {
        let tls = match tls {
            Some(t) => Some(ClientConnection::new(t.config.clone(), t.name.clone())?),
            None => None,
        };
        let mut sock = TcpStream::connect(addr)?;
        sock.set_nodelay(true)?;
        registry.register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Conn {
            sock,
            tls,
            state: State::Connecting,
            warmed: false,
            pending: 0,
            sent_at: Instant::now(),
            unsent: 0,
            inbox: Inbox::new(),
        })
    }

    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut self.sock);
    }

    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Makes all the progress the socket allows; `now` is when the event arrived.
    pub fn drive(&mut self, ctx: &mut Ctx, now: Instant) -> Result<(), Error> {
        if self.state == State::Connecting {
            if !self.connected()? {
                return Ok(());
            }
            if self.tls.is_none() {
                return self.ready(ctx, now);
            }
            self.state = State::Handshaking;
        }
        self.flush(&ctx.batch)?;
        self.receive(ctx, now)?;
        let handshaken = self.tls.as_ref().is_some_and(|t| !t.is_handshaking());
        match self.state {
            State::Handshaking if handshaken => self.ready(ctx, now)?,
            State::Busy if self.pending == 0 => self.ready(ctx, now)?,
            _ => {}
        }
        if self.tls.as_ref().is_some_and(|t| t.wants_write()) {
            self.flush(&ctx.batch)?;
        }
        Ok(())
    }

    /// Writes the next batch; called when the window opens and after each answered batch.
    pub fn start_batch(&mut self, ctx: &Ctx, now: Instant) -> Result<(), Error> {
        self.state = State::Busy;
        self.pending = ctx.depth;
        self.sent_at = now;
        match &mut self.tls {
            Some(tls) => tls.writer().write_all(&ctx.batch)?,
            None => self.unsent = ctx.batch.len(),
        }
        self.flush(&ctx.batch)
    }

    /// Connected (or handshaken), or a batch was answered.
    fn ready(&mut self, ctx: &mut Ctx, now: Instant) -> Result<(), Error> {
        if self.state == State::Busy && !ctx.measuring && !self.warmed {
            self.warmed = true;
            ctx.warmed += 1;
        }
        self.state = State::Idle;
        if ctx.measuring || !self.warmed {
            self.start_batch(ctx, now)?;
        }
        Ok(())
    }

    fn connected(&mut self) -> Result<bool, Error> {
        if let Some(e) = self.sock.take_error()? {
            return Err(e.into());
        }
        match self.sock.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes what is pending until done or the socket would block.
    fn flush(&mut self, batch: &[u8]) -> Result<(), Error> {
        match &mut self.tls {
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            None => {
                while self.unsent > 0 {
                    match self.sock.write(&batch[batch.len() - self.unsent..]) {
                        Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                        Ok(n) => self.unsent -= n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads until the socket is drained, parsing and counting the responses.
    fn receive(&mut self, ctx: &mut Ctx, now: Instant) -> Result<(), Error> {
        let Some(tls) = &mut self.tls else {
            loop {
                let space = self.inbox.space();
                let room = space.len();
                match self.sock.read(space) {
                    Ok(0) => return Err(Error::Closed),
                    Ok(n) => {
                        self.inbox.end += n;
                        take_responses(&mut self.inbox, &mut self.pending, self.sent_at, ctx, now)?;
                        if n < room {
                            return Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
        };
        loop {
            let mut source = Source {
                sock: &mut self.sock,
                drained: false,
            };
            let eof = match tls.read_tls(&mut source) {
                Ok(n) => n == 0,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let drained = source.drained;
            let io_state = match tls.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    let _ = tls.write_tls(&mut self.sock); // the alert, if possible
                    return Err(e.into());
                }
            };
            let mut plaintext = io_state.plaintext_bytes_to_read();
            let closed = eof || io_state.peer_has_closed();
            while plaintext > 0 {
                let n = tls.reader().read(self.inbox.space())?;
                if n == 0 {
                    break;
                }
                plaintext = plaintext.saturating_sub(n);
                self.inbox.end += n;
                take_responses(&mut self.inbox, &mut self.pending, self.sent_at, ctx, now)?;
            }
            if closed {
                return Err(Error::Closed);
            }
            if drained {
                return Ok(());
            }
        }
    }
}

/// Counts the complete responses in the inbox against the outstanding batch.
fn take_responses(
    inbox: &mut Inbox,
    pending: &mut u32,
    sent_at: Instant,
    ctx: &mut Ctx,
    now: Instant,
) -> Result<(), Error> {
    while let Some(ok) = inbox.next_response()? {
        if *pending == 0 {
            return Err(Error::Protocol("response without a request"));
        }
        *pending -= 1;
        if ctx.measuring {
            let stats = &mut ctx.stats;
            if ok {
                stats.ok += 1;
            } else {
                stats.non_2xx += 1;
            }
            let latency = now.saturating_duration_since(sent_at);
            stats.latency.record(latency.as_nanos() as u64);
        }
    }
    Ok(())
}

/// The socket as a `Read` for rustls that notes a short read (the socket is drained).
struct Source<'a> {
    sock: &'a mut TcpStream,
    drained: bool,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.drained = n < buf.len();
        Ok(n)
    }
}

/// Received bytes not yet parsed, and where the parser is in the current response.
struct Inbox {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    in_body: bool,
    body_left: u64,
    body_ok: bool,
}

impl Inbox {
    fn new() -> Self {
        Inbox {
            buf: vec![0; BUF_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            in_body: false,
            body_left: 0,
            body_ok: false,
        }
    }

    /// Free space to read into; never empty (see `next_response`).
    fn space(&mut self) -> &mut [u8] {
        &mut self.buf[self.end..]
    }

    /// The next complete response (whether its status is 2xx), or None when more bytes are
    /// needed; then the unparsed bytes are moved to the front of the buffer.
    fn next_response(&mut self) -> Result<Option<bool>, Error> {
        loop {
            if self.in_body {
                let take = self.body_left.min((self.end - self.start) as u64);
                self.start += take as usize;
                self.body_left -= take;
                if self.body_left > 0 {
                    self.start = 0;
                    self.end = 0;
                    return Ok(None);
                }
                self.in_body = false;
                return Ok(Some(self.body_ok));
            }
            match parse_head(&self.buf[self.start..self.end])? {
                Some(head) => {
                    self.start += head.len;
                    self.in_body = true;
                    self.body_left = head.body_len;
                    self.body_ok = head.ok;
                }
                None => {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                    if self.end == self.buf.len() {
                        return Err(Error::Protocol("response head too large"));
                    }
                    return Ok(None);
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    /// Bytes up to and including the blank line.
    len: usize,
    ok: bool,
    body_len: u64,
}

/// Parses a response head if `data` holds all of it.
fn parse_head(data: &[u8]) -> Result<Option<Head>, Error> {
    let mut pos = 0;
    let mut status = 0;
    let mut body_len = 0;
    while let Some(nl) = memchr::memchr(b'\n', &data[pos..]) {
        let line = &data[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        if status == 0 {
            status = parse_status(line)?;
        } else if line.is_empty() {
            if matches!(status, 100..=199 | 204 | 304) {
                body_len = 0;
            }
            let ok = (200..300).contains(&status);
            return Ok(Some(Head {
                len: pos,
                ok,
                body_len,
            }));
        } else if let Some(value) = header_value(line, b"content-length:") {
            body_len = parse_length(value)?;
        } else if header_value(line, b"transfer-encoding:").is_some() {
            return Err(Error::Protocol("Transfer-Encoding is not supported"));
        }
    }
    Ok(None)
}

/// `HTTP/1.x NNN ...` -> NNN.
fn parse_status(line: &[u8]) -> Result<u16, Error> {
    match line {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', _, b' ', a, b, c, ..]
            if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() && *a != b'0' =>
        {
            Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => Err(Error::Protocol("bad status line")),
    }
}

/// The value of a header line if its name (with the colon, lower case) matches.
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let (head, value) = line.split_at_checked(name.len())?;
    head.eq_ignore_ascii_case(name).then_some(value)
}

fn parse_length(value: &[u8]) -> Result<u64, Error> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return Err(Error::Protocol("bad Content-Length"));
    }
    value.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return Err(Error::Protocol("bad Content-Length"));
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(Error::Protocol("bad Content-Length"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-type: x\r\nContent-Length: 12\r\n\r\nhello world!";
        let head = parse_head(r).unwrap().unwrap();
        assert_eq!(head.len, r.len() - 12);
        assert!(head.ok);
        assert_eq!(head.body_len, 12);
        assert_eq!(parse_head(&r[..20]).unwrap(), None);
        let head = parse_head(b"HTTP/1.1 404 Not Found\nCONTENT-LENGTH:3\n\nabc").unwrap();
        assert_eq!(head.unwrap().body_len, 3);
        let head = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.ok && head.body_len == 0);
        assert!(parse_head(b"HTTP/1.1 2x0 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }

    #[test]
    fn inbox_splits_and_pipelines() {
        let one = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let two = b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n";
        let stream: Vec<u8> = [&one[..], two, one].concat();
        let mut seen = Vec::new();
        for chunk in [1, 7, 100] {
            let mut inbox = Inbox::new();
            for part in stream.chunks(chunk) {
                inbox.space()[..part.len()].copy_from_slice(part);
                inbox.end += part.len();
                while let Some(ok) = inbox.next_response().unwrap() {
                    seen.push(ok);
                }
            }
            assert_eq!(seen, [true, false, true]);
            assert_eq!((inbox.start, inbox.end), (0, 0));
            seen.clear();
        }
    }
}
