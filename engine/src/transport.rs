//! A connection's byte pipe: the non-blocking socket, plain or with a rustls session on it.
//!
//! Responsible for: turning socket readiness into plaintext for the HTTP connection and
//! plaintext from it into socket writes. For TLS that is rustls' non-blocking pattern
//! (`read_tls`, `process_new_packets`, `reader`; `writer`, `write_tls`), plus what only a TLS
//! port has: telling a plain HTTP request from a ClientHello by its first byte (and answering
//! it with a plain `400`), counting how each handshake ended, the last-gasp write of an alert
//! and the `close_notify` of a clean close. Not responsible for: HTTP (see `conn`), timers,
//! poll registration or lingering close (see `worker`, which asks [`Transport::wants_write`]).

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;
use rustls::{ClientConnection, Connection, ServerConnection};

use crate::metrics::{Handshake, LoopStats};
use crate::request::RequestId;

/// What one [`Transport::read`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// `n` plaintext bytes are in the caller's buffer.
    Data(usize),
    /// Bytes were read but carried no plaintext (handshake, alerts, tickets): read again.
    Progress,
    /// Nothing more to read now.
    WouldBlock,
    /// The peer closed its sending side.
    Eof,
    /// The TLS session failed (bad ClientHello, protocol error); rustls queued an alert.
    /// Nothing more is read or sent: close after a last flush.
    Failed,
    /// A plain HTTP request arrived on the TLS port: answer with
    /// [`Transport::refuse_plain_http`], then close.
    PlainHttp,
    /// The socket failed.
    Error,
}

/// A connection's socket and, on a TLS port, its session.
pub(crate) struct Transport {
    socket: TcpStream,
    tls: Option<Box<Tls>>,
    /// The last read emptied the socket and left no plaintext behind.
    drained: bool,
}

struct Tls {
    session: Connection,
    /// Why the session failed, as rustls said it.
    error: Option<String>,
    /// No byte read yet: the first one tells a ClientHello (`0x16`) from plain HTTP.
    fresh: bool,
    /// The session failed; only the queued alert may still be written.
    failed: bool,
    /// The `close_notify` alert was queued.
    close_sent: bool,
}

impl Transport {
    /// A plain connection.
    pub(crate) fn plain(socket: TcpStream) -> Self {
        Transport {
            socket,
            tls: None,
            drained: false,
        }
    }

    /// A TLS connection with a fresh server session.
    pub(crate) fn tls(socket: TcpStream, session: ServerConnection) -> Self {
        Self::with_session(socket, Connection::Server(session), true)
    }

    /// An outbound TLS connection (its ClientHello is queued, for [`flush`](Self::flush)).
    pub(crate) fn tls_client(socket: TcpStream, session: ClientConnection) -> Self {
        Self::with_session(socket, Connection::Client(session), false)
    }

    fn with_session(socket: TcpStream, session: Connection, fresh: bool) -> Self {
        Transport {
            socket,
            tls: Some(Box::new(Tls {
                session,
                error: None,
                fresh,
                failed: false,
                close_sent: false,
            })),
            drained: false,
        }
    }

    /// Why the TLS session failed, if it did.
    pub(crate) fn tls_error(&self) -> Option<&str> {
        self.tls.as_ref().and_then(|t| t.error.as_deref())
    }

    /// The socket alone (a plain transport becoming a TLS one).
    pub(crate) fn into_socket(self) -> TcpStream {
        self.socket
    }

    /// The socket, for poll registration and shutdown.
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// True while a TLS handshake is in progress.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| !t.failed && t.session.is_handshaking())
    }

    /// True once the TLS session failed: nothing more is read or sent but its alert.
    pub(crate) fn is_failed(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.failed)
    }

    /// True while bytes the transport holds (encrypted records, alerts) await the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.session.wants_write())
    }

    /// True if the last [`read`](Self::read) emptied the socket (the kernel gave fewer bytes
    /// than asked for) and, under TLS, left no decrypted bytes behind. With edge-triggered
    /// readiness another read would then only return EAGAIN: the next bytes raise an event.
    pub(crate) fn drained(&self) -> bool {
        self.drained
    }

    /// Reads plaintext into `buf`. Counts the raw bytes read and, on a TLS port, how the
    /// handshake ended, in `stats` (none for outbound connections).
    pub(crate) fn read(&mut self, buf: &mut [u8], stats: Option<&LoopStats>) -> Received {
        self.drained = false;
        let Some(tls) = self.tls.as_deref_mut() else {
            return match self.socket.read(buf) {
                Ok(0) => Received::Eof,
                Ok(n) => {
                    if let Some(s) = stats {
                        s.received(n);
                    }
                    self.drained = n < buf.len();
                    Received::Data(n)
                }
                Err(e) => io_outcome(&e),
            };
        };
        if tls.failed {
            return Received::Failed;
        }
        // Plaintext already decrypted (left over when `buf` filled up) goes first.
        if let Some(n) = tls.plaintext(buf) {
            return n;
        }
        if tls.fresh {
            let mut first = [0u8; 1];
            match self.socket.peek(&mut first) {
                Ok(0) => return Received::Eof,
                Ok(_) => tls.fresh = false,
                Err(e) => return io_outcome(&e),
            }
            if first[0].is_ascii_uppercase() {
                // "GET /...": a TLS record starts with its content type (22 for a handshake).
                tls.failed = true;
                if let Some(s) = stats {
                    s.handshake(Handshake::PlainHttp);
                }
                return Received::PlainHttp;
            }
        }
        let mut socket = ShortRead {
            socket: &mut self.socket,
            short: false,
        };
        match tls.session.read_tls(&mut socket) {
            Ok(0) => return Received::Eof,
            Ok(n) => {
                if let Some(s) = stats {
                    s.received(n);
                }
            }
            Err(e) => return io_outcome(&e),
        }
        let socket_drained = socket.short;
        let was_handshaking = tls.session.is_handshaking();
        if let Err(e) = tls.session.process_new_packets() {
            // rustls queued the alert that describes the error; it is flushed before close.
            tls.failed = true;
            tls.error = Some(e.to_string());
            if was_handshaking {
                if let Some(s) = stats {
                    s.handshake(Handshake::Failed);
                }
            }
            return Received::Failed;
        }
        if was_handshaking && !tls.session.is_handshaking() {
            if let Some(s) = stats {
                s.handshake(Handshake::Done);
            }
        }
        // `process_new_packets` decrypted every whole record read; what `plaintext` leaves
        // when it fills `buf` is the only thing a drained socket would not announce.
        let got = tls.plaintext(buf).unwrap_or(Received::Progress);
        self.drained = socket_drained && got != Received::Data(buf.len());
        got
    }

    /// Takes plaintext to send: writes it to the socket, or encrypts it into the session's
    /// buffer (bounded by rustls' buffer limit), which [`flush`](Self::flush) writes.
    /// `WouldBlock` when nothing could be taken.
    pub(crate) fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return match self.socket.write(data) {
                Ok(0) if !data.is_empty() => Err(io::ErrorKind::WriteZero.into()),
                r => r,
            };
        };
        if tls.failed || tls.close_sent {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        match tls.session.writer().write(data)? {
            0 if !data.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    /// Writes what the TLS session holds until it is empty or the socket would block; true
    /// if anything was written. A plain transport holds nothing.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(false);
        };
        let mut wrote = false;
        while tls.session.wants_write() {
            match tls.session.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => wrote = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(wrote)
    }

    /// Starts a clean close: queues TLS `close_notify` once and writes what can be written.
    /// True when everything is written and the socket's sending side may be shut.
    pub(crate) fn close_flushed(&mut self) -> bool {
        if let Some(tls) = self.tls.as_deref_mut() {
            if !tls.close_sent && !tls.failed {
                tls.close_sent = true;
                tls.session.send_close_notify();
            }
        }
        match self.flush() {
            Ok(_) => !self.wants_write(),
            Err(_) => true,
        }
    }

    /// Answers a plain HTTP request on the TLS port with a plain `400`, written at once: a
    /// fresh socket's send buffer takes these few bytes whole (if not, the client sees the
    /// close without them).
    pub(crate) fn refuse_plain_http(&mut self, id: RequestId) {
        const BODY: &str = "{\"success\":false,\"error\":{\"code\":\"BAD_REQUEST\",\
                            \"message\":\"This port speaks HTTPS: use https://\"}}";
        let head = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\nX-Request-Id: {}\r\n\r\n",
            BODY.len(),
            id.as_str()
        );
        let _ = self
            .socket
            .write_all(&[head.as_bytes(), BODY.as_bytes()].concat());
    }

    /// Shuts the socket's sending side (after [`close_flushed`](Self::close_flushed)).
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        self.socket.shutdown(Shutdown::Write)
    }

    /// Reads and discards raw bytes (lingering close): `Ok(0)` at EOF.
    pub(crate) fn discard(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.read(buf)
    }
}

impl Tls {
    /// Moves decrypted plaintext into `buf`: `None` when there is none.
    fn plaintext(&mut self, buf: &mut [u8]) -> Option<Received> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.session.reader().read(&mut buf[filled..]) {
                Ok(0) => {
                    // The peer sent close_notify and every byte before it was read.
                    return Some(if filled > 0 {
                        Received::Data(filled)
                    } else {
                        Received::Eof
                    });
                }
                Ok(n) => filled += n,
                // No plaintext buffered (WouldBlock), or the peer closed the TCP connection
                // without close_notify (UnexpectedEof: `read_tls` reports that EOF itself).
                Err(_) => break,
            }
        }
        (filled > 0).then_some(Received::Data(filled))
    }
}

/// The socket as rustls reads it, noting whether a read came back short.
struct ShortRead<'a> {
    socket: &'a mut TcpStream,
    short: bool,
}

impl Read for ShortRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.socket.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

fn io_outcome(e: &io::Error) -> Received {
    match e.kind() {
        io::ErrorKind::WouldBlock => Received::WouldBlock,
        io::ErrorKind::Interrupted => Received::Progress,
        _ => Received::Error,
    }
}
