//! One loop's outbound connections: the I/O half of the client.
//!
//! Responsible for: carrying each exchange a task starts over a connection of this loop
//! (resolve through the resolver thread unless the host is known, non-blocking connect
//! trying each address, TLS with SNI and ALPN `http/1.1`, writing the request, reading the
//! response through [`ResponseReader`]), turning what happens into [`HttpEvent`]s for the
//! owning task, the exchange's deadlines on the loop's wheel (one lazily re-armed entry per
//! connection, like the server's connections), and keeping a connection whose response ended
//! cleanly in a per-origin pool for the next exchange (idle ones close after
//! [`POOL_IDLE_MS`]). A pooled connection that fails before the first response byte was
//! probably closed by the upstream while idle: the exchange moves to a fresh connection once.
//! Not responsible for: what a response means, retry policy, or when tasks run (see `task`
//! and `worker`).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::request::{write_request, Request};
use super::resolve::Resolver;
use super::response::{ResponseLimits, ResponseReader};
use super::{roots, ExchangeId, Fetch, FetchError, FetchTimeouts, HttpEvent, Reach, TimeoutKind};
use crate::reply::{Mailbox, Post};
use crate::timer::{LoopTimer, TimerKind};
use crate::transport::{Received, Transport};
use crate::wheel::{TimerKey, Wheel};

/// Set in the mio token of every outbound socket (server connections never have it).
pub(crate) const OUT_BIT: usize = 1 << 63;
/// How long a pooled connection may stay idle before it is closed.
pub const POOL_IDLE_MS: u64 = 30_000;
/// Idle connections kept per origin at most.
pub const POOL_PER_ORIGIN: usize = 64;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 16 * 1024;
/// Reads per readiness event before the loop serves others (edge-triggered: the rest is
/// read on the connection's next turn, see `Driver::again`).
const READ_ROUNDS: usize = 16;

/// The task that owns an exchange: its slot key and generation.
pub(crate) type Owner = (usize, u32);

/// One exchange in flight.
struct Exchange {
    id: ExchangeId,
    owner: Owner,
    /// The whole request, kept until the first response byte in case it must move to a
    /// fresh connection.
    request: Vec<u8>,
    sent: usize,
    reader: ResponseReader,
    head_request: bool,
    max_body: u64,
    timeouts: FetchTimeouts,
    started_ms: u64,
    /// When the connection carrying it was ready (connected, handshake done).
    ready_ms: Option<u64>,
    /// When the last response byte came (`None` until the first).
    read_ms: Option<u64>,
    /// Carried by a connection taken from the pool.
    reused: bool,
    /// The head was handed to the owner.
    head_sent: bool,
    /// Where it may connect.
    reach: Reach,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Resolving,
    Connecting,
    Open,
    Idle,
}

/// One outbound connection.
struct Outbound {
    gen: u32,
    origin: String,
    host: String,
    port: u16,
    tls: bool,
    phase: Phase,
    io: Option<Transport>,
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    /// Where it may connect: the reach of the exchange that opened it (pooled connections
    /// are kept apart by reach).
    reach: Reach,
    ex: Option<Exchange>,
    idle_since: u64,
    deadline: Option<(TimerKey, u64)>,
    /// The peer closed its side: read until EOF, not until a short read (its EOF raises
    /// no further readiness edge).
    peer_hup: bool,
}

impl Outbound {
    fn deadline(&self) -> Option<(u64, TimeoutKind)> {
        if self.phase == Phase::Idle {
            return Some((self.idle_since + POOL_IDLE_MS, TimeoutKind::Idle));
        }
        let ex = self.ex.as_ref()?;
        let t = ex.timeouts;
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        let total = (ex.started_ms + ms(t.total), TimeoutKind::Total);
        let phase = match (ex.ready_ms, ex.read_ms) {
            (None, _) => (ex.started_ms + ms(t.connect), TimeoutKind::Connect),
            (Some(ready), None) => (ready + ms(t.first_byte), TimeoutKind::FirstByte),
            (Some(_), Some(read)) => (read + ms(t.idle), TimeoutKind::Idle),
        };
        // On a tie the total deadline is named: it is the one the caller set for the whole.
        Some(if phase.0 < total.0 { phase } else { total })
    }
}

/// What the driver borrows from its loop for one call.
pub(crate) struct Io<'a> {
    pub(crate) now_ms: u64,
    pub(crate) wheel: &'a mut Wheel<LoopTimer>,
    pub(crate) registry: &'a Registry,
}

/// The outbound connections of one loop.
pub(crate) struct Driver {
    conns: Slab<Outbound>,
    pool: HashMap<String, Vec<(usize, u32)>>,
    by_id: HashMap<u64, usize>,
    next_gen: u32,
    next_seq: u64,
    mailbox: Arc<Mailbox>,
    resolver: Arc<Resolver>,
    /// News for tasks, taken by the loop after each call.
    events: Vec<(Owner, ExchangeId, HttpEvent)>,
    /// Connections with more to read than one turn allowed.
    again: Vec<(usize, u32)>,
    buf: Box<[u8]>,
    /// Body buffers given back by tasks ([`crate::task::Cx::give_back`]), reused for the
    /// next [`HttpEvent::Body`]: a relay would otherwise allocate one a token.
    spare: Vec<Vec<u8>>,
}

/// At most this many body buffers are kept, each of at most [`SPARE_CAPACITY`] bytes.
const SPARE_BUFFERS: usize = 16;
const SPARE_CAPACITY: usize = 16 * 1024;

fn keep_spare(spare: &mut Vec<Vec<u8>>, mut body: Vec<u8>) {
    if spare.len() < SPARE_BUFFERS && body.capacity() <= SPARE_CAPACITY {
        body.clear();
        spare.push(body);
    }
}

fn token(key: usize, gen: u32) -> Token {
    Token(OUT_BIT | key | ((gen as usize & 0x7fff_ffff) << 32))
}

impl Driver {
    /// A driver posting resolver answers to `mailbox`.
    pub(crate) fn new(mailbox: Arc<Mailbox>, resolver: Arc<Resolver>) -> Self {
        Driver {
            conns: Slab::new(),
            pool: HashMap::new(),
            by_id: HashMap::new(),
            next_gen: 0,
            next_seq: 0,
            mailbox,
            resolver,
            events: Vec::new(),
            again: Vec::new(),
            buf: vec![0; READ_CHUNK].into_boxed_slice(),
            spare: Vec::new(),
        }
    }

    /// Keeps `body` (an event's buffer a task is done with) for a later event.
    pub(crate) fn give_back(&mut self, body: Vec<u8>) {
        keep_spare(&mut self.spare, body);
    }

    /// Takes the news for tasks.
    pub(crate) fn take_events(&mut self, into: &mut Vec<(Owner, ExchangeId, HttpEvent)>) {
        into.append(&mut self.events);
    }

    /// Whether exchange `id` is still in flight.
    pub(crate) fn is_open(&self, id: ExchangeId) -> bool {
        self.by_id.contains_key(&id.0)
    }

    /// Starts an exchange for `owner`.
    pub(crate) fn start(
        &mut self,
        fetch: Fetch,
        owner: Owner,
        now_ms: u64,
        wheel: &mut Wheel<LoopTimer>,
        registry: &Registry,
    ) -> ExchangeId {
        self.next_seq += 1;
        let id = ExchangeId(self.next_seq);
        let mut request = Vec::with_capacity(256 + fetch.body.len());
        let headers: Vec<(&str, &str)> = fetch
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let req = Request {
            method: &fetch.method,
            url: &fetch.url,
            headers: &headers,
            body: &fetch.body,
        };
        if let Err(e) = write_request(&req, &mut request) {
            let err = FetchError::Request(e.to_string());
            self.events.push((owner, id, HttpEvent::Failed(err)));
            return id;
        }
        let ex = Exchange {
            id,
            owner,
            request,
            sent: 0,
            reader: ResponseReader::new(false, ResponseLimits::default()),
            head_request: fetch.method.eq_ignore_ascii_case("HEAD"),
            max_body: fetch.max_body,
            timeouts: fetch.timeouts,
            started_ms: now_ms,
            ready_ms: None,
            read_ms: None,
            reused: false,
            head_sent: false,
            reach: fetch.reach.clone(),
        };
        let mut io = Io {
            now_ms,
            wheel,
            registry,
        };
        self.carry(ex, &fetch.url, &mut io);
        id
    }

    /// Puts `ex` on a pooled connection to its origin, or on a new one.
    fn carry(&mut self, mut ex: Exchange, url: &super::Url, io: &mut Io<'_>) {
        ex.reader = ResponseReader::new(
            ex.head_request,
            ResponseLimits {
                max_body: ex.max_body,
                ..ResponseLimits::default()
            },
        );
        let origin = format!("{}{}", url.origin(), ex.reach.pool_tag());
        let id = ex.id.0;
        if let Some(key) = self.take_pooled(&origin) {
            ex.reused = true;
            ex.ready_ms = Some(io.now_ms);
            let c = &mut self.conns[key];
            c.phase = Phase::Open;
            c.ex = Some(ex);
            self.by_id.insert(id, key);
            return self.drive(key, io);
        }
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let key = self.conns.insert(Outbound {
            gen,
            origin,
            host: url.host.clone(),
            port: url.port,
            tls: url.tls,
            phase: Phase::Resolving,
            io: None,
            addrs: Vec::new(),
            next_addr: 0,
            reach: ex.reach.clone(),
            ex: Some(ex),
            idle_since: 0,
            deadline: None,
            peer_hup: false,
        });
        self.by_id.insert(id, key);
        match self.resolver.known(&url.host, url.port) {
            Some(addrs) => self.on_addresses(key, Ok(addrs), io),
            None => {
                let mailbox = self.mailbox.clone();
                let answer = Box::new(move |result| {
                    mailbox.post(Post::Resolved { key, gen, result });
                });
                self.resolver.ask(&url.host, url.port, answer);
                self.arm(key, io);
            }
        }
    }

    fn take_pooled(&mut self, origin: &str) -> Option<usize> {
        let idle = self.pool.get_mut(origin)?;
        while let Some((key, gen)) = idle.pop() {
            if matches!(self.conns.get(key), Some(c) if c.gen == gen && c.phase == Phase::Idle) {
                return Some(key);
            }
        }
        None
    }

    /// The resolver answered for connection `key` of generation `gen`.
    pub(crate) fn on_resolved(
        &mut self,
        key: usize,
        gen: u32,
        result: Result<Vec<SocketAddr>, String>,
        io: &mut Io<'_>,
    ) {
        if matches!(self.conns.get(key), Some(c) if c.gen == gen && c.phase == Phase::Resolving) {
            self.on_addresses(key, result, io);
        }
    }

    fn on_addresses(
        &mut self,
        key: usize,
        result: Result<Vec<SocketAddr>, String>,
        io: &mut Io<'_>,
    ) {
        match result {
            Ok(addrs) => {
                let c = &mut self.conns[key];
                let refused = addrs.iter().find(|a| !c.reach.allows(a.ip())).copied();
                c.addrs = addrs
                    .into_iter()
                    .filter(|a| c.reach.allows(a.ip()))
                    .collect();
                match refused {
                    Some(a) if c.addrs.is_empty() => {
                        self.fail(key, FetchError::Forbidden(a.ip()), io)
                    }
                    _ => self.connect_next(key, None, io),
                }
            }
            Err(e) => self.fail(key, FetchError::Resolve(e), io),
        }
    }

    /// Connects to the next address; `last` is why the previous one failed.
    fn connect_next(&mut self, key: usize, last: Option<FetchError>, io: &mut Io<'_>) {
        let c = &mut self.conns[key];
        if let Some(mut old) = c.io.take() {
            let _ = io.registry.deregister(old.socket());
        }
        let Some(&addr) = c.addrs.get(c.next_addr) else {
            let err = last.unwrap_or(FetchError::Refused);
            return self.fail(key, err, io);
        };
        c.next_addr += 1;
        c.phase = Phase::Connecting;
        let registered = TcpStream::connect(addr).and_then(|mut s| {
            io.registry.register(
                &mut s,
                token(key, c.gen),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        match registered {
            Ok(s) => {
                c.io = Some(Transport::plain(s));
                self.arm(key, io);
            }
            Err(e) => self.connect_next(key, Some(e.into()), io),
        }
    }

    /// Readiness of the outbound socket with mio token `t`.
    pub(crate) fn on_ready(&mut self, t: usize, hup: bool, io: &mut Io<'_>) {
        let key = t & 0xffff_ffff;
        let gen = ((t & !OUT_BIT) >> 32) as u32;
        match self.conns.get_mut(key) {
            Some(c) if c.gen & 0x7fff_ffff == gen => c.peer_hup |= hup,
            _ => return,
        }
        if self.conns[key].phase == Phase::Connecting {
            self.finish_connect(key, io);
        }
        if self.conns.contains(key) {
            self.drive(key, io);
        }
    }

    fn finish_connect(&mut self, key: usize, io: &mut Io<'_>) {
        let c = &mut self.conns[key];
        let Some(t) = c.io.as_mut() else { return };
        let sock = t.socket();
        match sock.take_error() {
            Ok(Some(e)) | Err(e) => return self.connect_next(key, Some(e.into()), io),
            Ok(None) => {}
        }
        match sock.peer_addr() {
            Ok(_) => {}
            // Not connected yet: a spurious event.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return self.connect_next(key, Some(e.into()), io),
        }
        let _ = sock.set_nodelay(true);
        c.phase = Phase::Open;
        if !c.tls {
            if let Some(ex) = c.ex.as_mut() {
                ex.ready_ms = Some(io.now_ms);
            }
        } else if let Err(e) = self.start_tls(key) {
            self.fail(key, e, io);
        }
    }

    fn start_tls(&mut self, key: usize) -> Result<(), FetchError> {
        let c = &mut self.conns[key];
        let config = roots::client_config().map_err(FetchError::Tls)?;
        let name = rustls::pki_types::ServerName::try_from(c.host.clone())
            .map_err(|e| FetchError::Tls(e.to_string()))?;
        let session = rustls::ClientConnection::new(config, name)
            .map_err(|e| FetchError::Tls(e.to_string()))?;
        let Some(plain) = c.io.take() else {
            return Err(FetchError::Io(io::ErrorKind::NotConnected));
        };
        c.io = Some(Transport::tls_client(plain.into_socket(), session));
        Ok(())
    }

    /// Writes and reads what can be, then re-arms the deadline.
    fn drive(&mut self, key: usize, io: &mut Io<'_>) {
        if !matches!(self.conns[key].phase, Phase::Open | Phase::Idle) {
            return self.arm(key, io);
        }
        if let Err(e) = self.write(key) {
            return self.fail(key, e, io);
        }
        let mut more = false;
        for _ in 0..READ_ROUNDS {
            match self.read_once(key, io) {
                Ok(m) => more = m && self.conns.contains(key),
                Err(e) => return self.fail(key, e, io),
            }
            if !more {
                break;
            }
        }
        if !self.conns.contains(key) {
            return;
        }
        if more {
            self.again.push((key, self.conns[key].gen));
        }
        self.note_handshake(key, io.now_ms);
        if let Err(e) = self.write(key) {
            return self.fail(key, e, io);
        }
        self.arm(key, io);
    }

    fn note_handshake(&mut self, key: usize, now_ms: u64) {
        let c = &mut self.conns[key];
        let handshaking = c.io.as_ref().is_some_and(|t| t.is_handshaking());
        if let Some(ex) = c.ex.as_mut() {
            if c.phase == Phase::Open && !handshaking && ex.ready_ms.is_none() {
                ex.ready_ms = Some(now_ms);
            }
        }
    }

    fn write(&mut self, key: usize) -> Result<(), FetchError> {
        let c = &mut self.conns[key];
        if c.phase != Phase::Open {
            return Ok(());
        }
        let (Some(t), Some(ex)) = (c.io.as_mut(), c.ex.as_mut()) else {
            return Ok(());
        };
        loop {
            t.flush().map_err(FetchError::from)?;
            if ex.sent == ex.request.len() {
                return Ok(());
            }
            match t.send(&ex.request[ex.sent..]) {
                Ok(n) => ex.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One read; true if another may find more.
    fn read_once(&mut self, key: usize, io: &mut Io<'_>) -> Result<bool, FetchError> {
        let c = &mut self.conns[key];
        let Some(t) = c.io.as_mut() else {
            return Ok(false);
        };
        match t.read(&mut self.buf, None) {
            Received::Data(n) => {
                let more = !t.drained() || c.peer_hup;
                self.on_bytes(key, n, io)?;
                Ok(more)
            }
            Received::Progress => Ok(true),
            Received::WouldBlock => Ok(false),
            Received::Eof => {
                self.on_eof(key, io)?;
                Ok(false)
            }
            Received::Failed | Received::PlainHttp => {
                let why = t.tls_error().unwrap_or("the TLS session failed");
                Err(FetchError::Tls(why.to_string()))
            }
            Received::Error => Err(FetchError::Reset),
        }
    }

    fn on_bytes(&mut self, key: usize, n: usize, io: &mut Io<'_>) -> Result<(), FetchError> {
        let c = &mut self.conns[key];
        let Some(ex) = c.ex.as_mut() else {
            // An idle pooled connection got bytes: it cannot carry another exchange.
            self.close(key, io);
            return Ok(());
        };
        ex.read_ms = Some(io.now_ms);
        // The response began: the request can no longer move to another connection, and
        // what of it is unsent stays unsent.
        ex.request = Vec::new();
        ex.sent = 0;
        let mut body = self.spare.pop().unwrap_or_default();
        let head = ex
            .reader
            .receive(&self.buf[..n], &mut body)
            .map_err(FetchError::Response)?;
        let (owner, id) = (ex.owner, ex.id);
        if let Some(head) = head {
            ex.head_sent = true;
            self.events.push((owner, id, HttpEvent::Head(head)));
        }
        if body.is_empty() {
            keep_spare(&mut self.spare, body);
        } else {
            self.events.push((owner, id, HttpEvent::Body(body)));
        }
        if ex.reader.is_complete() {
            self.complete(key, io);
        }
        Ok(())
    }

    fn on_eof(&mut self, key: usize, io: &mut Io<'_>) -> Result<(), FetchError> {
        let c = &mut self.conns[key];
        let Some(ex) = c.ex.as_mut() else {
            self.close(key, io);
            return Ok(());
        };
        if ex.read_ms.is_none() {
            return Err(FetchError::Reset);
        }
        ex.reader.on_eof().map_err(FetchError::Response)?;
        self.complete(key, io);
        Ok(())
    }

    /// The response is complete: tell the owner, then pool or close the connection.
    fn complete(&mut self, key: usize, io: &mut Io<'_>) {
        let c = &mut self.conns[key];
        let Some(ex) = c.ex.take() else { return };
        self.by_id.remove(&ex.id.0);
        self.events.push((ex.owner, ex.id, HttpEvent::End));
        let idle = self.pool.entry(c.origin.clone()).or_default();
        if !ex.reader.reusable() || idle.len() >= POOL_PER_ORIGIN {
            return self.close(key, io);
        }
        c.phase = Phase::Idle;
        c.idle_since = io.now_ms;
        idle.push((key, c.gen));
        self.arm(key, io);
    }

    /// Ends the exchange on `key` with `err` (or moves it to a fresh connection when a
    /// pooled one failed before answering), and closes the connection.
    fn fail(&mut self, key: usize, err: FetchError, io: &mut Io<'_>) {
        let ex = self.conns.get_mut(key).and_then(|c| c.ex.take());
        let url = self.conns.get(key).map(|c| super::Url {
            tls: c.tls,
            host: c.host.clone(),
            port: c.port,
            target: String::new(),
        });
        self.close(key, io);
        let Some(mut ex) = ex else { return };
        let stale = ex.reused && ex.read_ms.is_none() && !ex.request.is_empty();
        if let (true, Some(url)) = (stale, url) {
            ex.reused = false;
            ex.sent = 0;
            ex.ready_ms = None;
            return self.carry(ex, &url, io);
        }
        self.by_id.remove(&ex.id.0);
        self.events.push((ex.owner, ex.id, HttpEvent::Failed(err)));
    }

    /// Ends exchange `id` without an event, closing its connection.
    pub(crate) fn cancel(
        &mut self,
        id: ExchangeId,
        wheel: &mut Wheel<LoopTimer>,
        registry: &Registry,
    ) {
        let Some(key) = self.by_id.remove(&id.0) else {
            return;
        };
        let mut io = Io {
            now_ms: 0,
            wheel,
            registry,
        };
        self.close(key, &mut io);
    }

    fn close(&mut self, key: usize, io: &mut Io<'_>) {
        let Some(mut c) = self.conns.try_remove(key) else {
            return;
        };
        if let Some(ex) = &c.ex {
            self.by_id.remove(&ex.id.0);
        }
        if let Some((k, _)) = c.deadline.take() {
            io.wheel.cancel(k);
        }
        if let Some(t) = c.io.as_mut() {
            let _ = io.registry.deregister(t.socket());
        }
    }

    /// Keeps one wheel entry no later than the connection's deadline.
    fn arm(&mut self, key: usize, io: &mut Io<'_>) {
        let c = &mut self.conns[key];
        let Some((at, _)) = c.deadline() else { return };
        if matches!(c.deadline, Some((_, t)) if t <= at) {
            return;
        }
        if let Some((k, _)) = c.deadline.take() {
            io.wheel.cancel(k);
        }
        let entry = LoopTimer::new(key, c.gen, TimerKind::Outbound);
        c.deadline = Some((io.wheel.insert(at, entry), at));
    }

    /// The wheel entry of connection `key` fired.
    pub(crate) fn on_timer(&mut self, key: usize, gen: u32, io: &mut Io<'_>) {
        let Some(c) = self.conns.get_mut(key).filter(|c| c.gen == gen) else {
            return;
        };
        c.deadline = None;
        match c.deadline() {
            Some((at, _)) if io.now_ms < at => self.arm(key, io),
            Some((_, _)) if c.phase == Phase::Idle => self.close(key, io),
            Some((_, kind)) => self.fail(key, FetchError::Timeout(kind), io),
            None => {}
        }
    }

    /// Whether some connection ran out of read rounds with input left (the loop must not
    /// sleep: edge-triggered readiness will not report that input again).
    pub(crate) fn has_again(&self) -> bool {
        !self.again.is_empty()
    }

    /// Drives the connections that ran out of read rounds.
    pub(crate) fn again(&mut self, io: &mut Io<'_>) {
        for (key, gen) in std::mem::take(&mut self.again) {
            if matches!(self.conns.get(key), Some(c) if c.gen == gen) {
                self.drive(key, io);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_body_buffers_are_kept_cleared_and_bounded() {
        let mut spare = Vec::new();
        keep_spare(&mut spare, b"data: one".to_vec());
        assert_eq!(spare.len(), 1);
        assert!(spare[0].is_empty() && spare[0].capacity() >= 9);
        // A large buffer is freed, not kept: the spares stay small.
        keep_spare(&mut spare, Vec::with_capacity(SPARE_CAPACITY + 1));
        assert_eq!(spare.len(), 1);
        for _ in 0..2 * SPARE_BUFFERS {
            keep_spare(&mut spare, vec![1; 8]);
        }
        assert_eq!(spare.len(), SPARE_BUFFERS);
    }
}
