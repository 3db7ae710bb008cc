//! One event loop: a `mio::Poll`, its listener, its connections and its timer wheel.
//!
//! Responsible for: socket I/O (accept, non-blocking reads until `WouldBlock`, writes with
//! partial-write and write-interest handling) through each connection's transport (plain,
//! or a TLS session started at accept), pooling the read/write buffers so idle connections
//! hold none, stale-token filtering (a token carries the slab key and a generation), timers
//! (connection deadlines, the TLS handshake deadline, heartbeats, lingering close), the
//! mailbox of deferred replies and stream frames, the tasks that live on this loop (started,
//! woken and timed here; their outbound connections driven through `client::driver`), and
//! this loop's part of a graceful shutdown. Not responsible for: HTTP (see `conn`), TLS
//! records (see `transport`), what a task does, or choosing how many loops run (see
//! `server`).

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::access_log::LogSink;
use crate::app::App;
use crate::builtin::Builtin;
use crate::client::driver::{self, Driver, Owner};
use crate::client::{ExchangeId, HttpEvent, Resolver};
use crate::conn::{Conn, Env, Timeouts};
use crate::date::DateCache;
use crate::metrics::{Handshake, Metrics};
use crate::reply::{Mailbox, Post};
use crate::request::RequestIds;
use crate::server::Shared;
use crate::task::{Cx, Event, Status, Task, TaskPost};
use crate::timer::{LoopTimer, TimerKind};
use crate::tls::TlsAcceptor;
use crate::transport::{Received, Transport};
use crate::wheel::{TimerKey, Wheel};

/// What the outbound driver borrows from the loop (a macro: a method would borrow the
/// whole worker, and the driver is part of it).
macro_rules! driver_io {
    ($w:expr) => {
        driver::Io {
            now_ms: $w.core.now_ms,
            wheel: &mut $w.wheel,
            registry: $w.poll.registry(),
        }
    };
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Wheel resolution.
const TICK_MS: u64 = 10;
/// How long a closing connection is drained so the client reads the last response.
const LINGER_MS: u64 = 1_000;
/// How much a lingering connection may still send before it is cut.
const LINGER_BYTES: usize = 256 * 1024;
/// Pooled buffers larger than this are freed rather than kept.
const POOL_MAX: usize = 1 << 20;
/// Reads and writes done for one connection before the loop serves the others.
const DRIVE_ROUNDS: usize = 32;
/// How long a loop waits before accepting again after the process ran out of descriptors
/// (or kernel memory) for a new connection.
const ACCEPT_RETRY_MS: u64 = 50;

/// Settings of a loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopConfig {
    pub timeouts: Timeouts,
    pub heartbeat_ms: u64,
    pub shutdown_ms: u64,
}

/// A task and what the loop keeps for it.
struct TaskSlot {
    /// `None` only while the task handles an event.
    task: Option<Box<dyn Task>>,
    gen: u32,
    /// Exchanges it started (closed when it finishes).
    exchanges: Vec<ExchangeId>,
}

struct Slot<A: App> {
    conn: Conn<Builtin<A>>,
    io: Transport,
    /// A TLS handshake not complete by then closes the connection (the header timeout).
    handshake_by: u64,
    gen: u32,
    deadline: Option<(TimerKey, u64)>,
    heartbeat: Option<TimerKey>,
    read_ready: bool,
    /// The peer closed its side (or the socket failed): read until EOF, not a short read.
    peer_hup: bool,
    write_interest: bool,
    lingering: Option<usize>,
}

/// What connections borrow from the loop, kept apart from the slab so both can be
/// borrowed at once.
struct Core<A: App> {
    index: usize,
    app: Builtin<A>,
    mailbox: Arc<Mailbox>,
    metrics: Arc<Metrics>,
    ids: RequestIds,
    date: DateCache,
    cfg: LoopConfig,
    clock: Instant,
    now_ms: u64,
    now_us: u64,
    /// The instant of the last wake-up (what `now_ms` and `now_us` measure).
    now: Instant,
    draining: bool,
    /// This loop's end of the access log, when it is on.
    log: Option<LogSink>,
}

impl<A: App> Core<A> {
    fn env(&mut self, token: u64) -> Env<'_, Builtin<A>> {
        Env {
            app: &self.app,
            date: self.date.get(),
            mailbox: &self.mailbox,
            token,
            ids: &mut self.ids,
            stats: self.metrics.loop_stats(self.index),
            timeouts: self.cfg.timeouts,
            now_ms: self.now_ms,
            now_us: self.now_us,
            now: self.now,
            draining: self.draining,
            access_log: self.log.as_mut(),
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        self.now = now;
        let us = now.saturating_duration_since(self.clock).as_micros() as u64;
        self.now_us = us;
        self.now_ms = us / 1000;
        self.date.refresh();
    }
}

fn token_of(key: usize, gen: u32) -> u64 {
    (key as u64) | (u64::from(gen) << 32)
}

/// One event loop.
pub(crate) struct Worker<A: App> {
    poll: Poll,
    listener: Option<TcpListener>,
    tls: Option<Arc<TlsAcceptor>>,
    slots: Slab<Slot<A>>,
    next_gen: u32,
    wheel: Wheel<LoopTimer>,
    letters: crossbeam_channel::Receiver<Post>,
    tasks: Slab<TaskSlot>,
    next_task_gen: u32,
    driver: Driver,
    /// News of outbound exchanges waiting to be handed to their tasks.
    http_events: Vec<(Owner, ExchangeId, HttpEvent)>,
    shared: Arc<Shared>,
    core: Core<A>,
    read_buf: Box<[u8]>,
    spare_in: Vec<u8>,
    spare_out: Vec<u8>,
    drain_deadline: Option<u64>,
    fired: Vec<LoopTimer>,
    /// Connections to drive again before sleeping (they ran out of rounds).
    again: Vec<(usize, u32)>,
    /// Set while accepting is paused for lack of descriptors: when to try again.
    accept_retry_at: Option<u64>,
    /// The last liveness round this loop answered (see `liveness`).
    answered_round: u64,
}

impl<A: App> Worker<A> {
    /// A loop serving `listener` (over TLS when `tls` is set, logging requests to `log`
    /// when set); its mailbox is registered in `shared` for shutdown.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        listener: std::net::TcpListener,
        tls: Option<Arc<TlsAcceptor>>,
        app: Arc<A>,
        shared: Arc<Shared>,
        resolver: Arc<Resolver>,
        cfg: LoopConfig,
        log: Option<LogSink>,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let mailbox = Arc::new(Mailbox::new(tx, Some(waker)));
        shared.add_mailbox(mailbox.clone());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let seed = std::process::id() ^ nanos ^ ((index as u32) << 28);
        Ok(Worker {
            poll,
            listener: Some(listener),
            tls,
            slots: Slab::with_capacity(1024),
            next_gen: 0,
            wheel: Wheel::new(TICK_MS, 0),
            letters: rx,
            tasks: Slab::new(),
            next_task_gen: 0,
            driver: Driver::new(mailbox.clone(), resolver),
            http_events: Vec::new(),
            shared: shared.clone(),
            core: Core {
                index,
                app: builtin(app, &shared),
                mailbox,
                metrics: shared.metrics.clone(),
                ids: RequestIds::new(seed.wrapping_mul(0x9e37_79b9)),
                date: DateCache::new(),
                cfg,
                clock: Instant::now(),
                now_ms: 0,
                now_us: 0,
                now: Instant::now(),
                draining: false,
                log,
            },
            read_buf: vec![0; 64 * 1024].into_boxed_slice(),
            spare_in: Vec::new(),
            spare_out: Vec::new(),
            drain_deadline: None,
            fired: Vec::new(),
            again: Vec::new(),
            accept_retry_at: None,
            answered_round: 0,
        })
    }
}

impl<A: App> Worker<A> {
    /// Runs the loop until shutdown completes.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let _entered = self.core.mailbox.enter();
        loop {
            // Proof of life for a watchdog: this turn's work is done and the loop is back.
            self.shared
                .rounds
                .answer(self.core.index, &mut self.answered_round);
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.core.tick();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) if t & driver::OUT_BIT != 0 => {
                        let hup = event.is_read_closed() || event.is_error();
                        let mut io = driver_io!(self);
                        self.driver.on_ready(t, hup, &mut io);
                    }
                    Token(t) => {
                        self.on_socket_event(t as u64, event.is_read_closed() || event.is_error())
                    }
                }
            }
            self.deliver_letters();
            self.fire_timers();
            let mut io = driver_io!(self);
            self.driver.again(&mut io);
            self.hand_http_events();
            // What the tasks just posted (their stream frames) goes out now, not after
            // another `epoll_wait`.
            self.deliver_letters();
            if self
                .accept_retry_at
                .is_some_and(|at| self.core.now_ms >= at)
            {
                self.accept();
            }
            self.drive_again();
            if let Some(log) = &mut self.core.log {
                log.tick(self.core.now_ms);
            }
            if self.check_shutdown() {
                return Ok(());
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        // Posts from this thread did not wake the loop: they are read before it sleeps.
        if !self.again.is_empty() || self.driver.has_again() || self.core.mailbox.has_mail() {
            return Some(Duration::ZERO);
        }
        let now = self.core.now_ms;
        let wheel = self.wheel.next_timeout(now);
        let log_due = self.core.log.as_ref().and_then(LogSink::due_ms);
        let deadlines = [self.drain_deadline, self.accept_retry_at, log_due];
        let ms = deadlines
            .into_iter()
            .flatten()
            .map(|at| at.saturating_sub(now))
            .chain(wheel)
            .min();
        // A shutdown request may arrive while sleeping: its waker interrupts the poll.
        ms.map(Duration::from_millis)
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                self.accept_retry_at = None;
                return;
            };
            match listener.accept() {
                Ok((socket, peer)) => self.admit_socket(socket, peer.ip()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.accept_retry_at.take().is_some() {
                        crate::log_info!("accepting connections again");
                    }
                    return;
                }
                Err(e) if is_transient_accept_error(&e) => continue,
                Err(e) => return self.pause_accepting(&e),
            }
        }
    }

    /// Out of descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM): the pending
    /// connections stay queued in the kernel, and edge-triggered readiness would not report
    /// them again until yet another client connects, so the loop retries on its own after
    /// `ACCEPT_RETRY_MS`. Said once per pause, not once per attempt.
    fn pause_accepting(&mut self, e: &io::Error) {
        if self.accept_retry_at.is_none() {
            crate::log_warn!(
                "cannot accept connections ({e}); retrying every {ACCEPT_RETRY_MS} ms"
            );
            self.core
                .metrics
                .loop_stats(self.core.index)
                .accept_paused();
        }
        self.accept_retry_at = Some(self.core.now_ms + ACCEPT_RETRY_MS);
    }

    fn admit_socket(&mut self, mut socket: TcpStream, peer: std::net::IpAddr) {
        let stats = self.core.metrics.loop_stats(self.core.index);
        if !self.shared.try_open_connection() || self.core.draining {
            stats.refused();
            return;
        }
        let _ = socket.set_nodelay(true);
        let session = match &self.tls {
            None => None,
            Some(tls) => match tls.session() {
                Ok(session) => Some(session),
                Err(e) => {
                    crate::log_error!("cannot start a TLS session: {e}");
                    self.shared.close_connection();
                    stats.refused();
                    return;
                }
            },
        };
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let token = Token(token_of(key, gen) as usize);
        if self
            .poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)
            .is_err()
        {
            self.shared.close_connection();
            return;
        }
        entry.insert(Slot {
            conn: Conn::new(peer, self.core.now_ms),
            io: match session {
                Some(session) => Transport::tls(socket, session),
                None => Transport::plain(socket),
            },
            handshake_by: self.core.now_ms + self.core.cfg.timeouts.header_ms,
            gen,
            deadline: None,
            heartbeat: None,
            // Data may already be there: try a read at once (saves a poll round trip).
            read_ready: true,
            peer_hup: false,
            write_interest: false,
            lingering: None,
        });
        stats.conn_opened(true);
        self.drive(key);
    }

    /// Drives the connections that ran out of rounds in the last pass (fairness: each
    /// gets its rounds again, after everyone else had theirs).
    fn drive_again(&mut self) {
        let mut again = std::mem::take(&mut self.again);
        for (key, gen) in again.drain(..) {
            if self.slot_key(token_of(key, gen)).is_some() && self.slots[key].lingering.is_none() {
                self.drive(key);
            }
        }
        if self.again.is_empty() {
            self.again = again;
        }
    }

    fn slot_key(&self, token: u64) -> Option<usize> {
        let key = (token & 0xffff_ffff) as usize;
        let gen = (token >> 32) as u32;
        match self.slots.get(key) {
            Some(slot) if slot.gen == gen => Some(key),
            _ => None,
        }
    }

    fn on_socket_event(&mut self, token: u64, hup: bool) {
        let Some(key) = self.slot_key(token) else {
            return;
        };
        let slot = &mut self.slots[key];
        // Readiness is a hint: mark and let the read result decide (errors, EOF included).
        // A writable event needs no mark: `drive` always tries to flush pending output.
        slot.read_ready = true;
        slot.peer_hup |= hup;
        if slot.lingering.is_some() {
            self.linger_read(key);
        } else {
            self.drive(key);
        }
    }

    /// Reads, processes and writes for one connection until it has nothing to do.
    fn drive(&mut self, key: usize) {
        self.lend_buffers(key);
        // Readiness is edge-triggered: a connection that still has work after its rounds
        // gets no new event, so it is queued to be driven again before the next sleep.
        let mut more = true;
        for _ in 0..DRIVE_ROUNDS {
            let wrote = self.flush(key);
            let slot = &self.slots[key];
            if slot.conn.is_done() || slot.io.is_failed() {
                more = false;
                break;
            }
            if slot.read_ready && slot.conn.wants_read() {
                self.read(key);
            } else if !wrote {
                more = false;
                break;
            }
        }
        if more {
            self.again.push((key, self.slots[key].gen));
        }
        let slot = &mut self.slots[key];
        if slot.io.is_failed() {
            // A failed TLS session: write its alert, then linger so the client reads it.
            let _ = slot.io.flush();
            self.finish(key, true);
        } else if slot.conn.is_done() {
            let aborted = slot.conn.is_aborted();
            // A clean close sends TLS close_notify first, and waits until it is written.
            if aborted || slot.io.close_flushed() {
                let graceful = !aborted && !slot.conn.peer_closed();
                self.finish(key, graceful);
            } else {
                self.settle(key);
            }
        } else {
            self.settle(key);
        }
    }

    /// One read through the transport into the loop buffer, handed to the connection.
    ///
    /// A read that drained the socket ends the reading: edge-triggered readiness reports
    /// the next bytes, so another read would only return EAGAIN (one syscall per request
    /// saved). Not once the peer has closed: its EOF raises no further edge.
    fn read(&mut self, key: usize) {
        let slot = &mut self.slots[key];
        let token = token_of(key, slot.gen);
        let stats = self.core.metrics.loop_stats(self.core.index);
        match slot.io.read(&mut self.read_buf, Some(stats)) {
            Received::Data(n) => {
                slot.read_ready = !slot.io.drained() || slot.peer_hup;
                slot.conn
                    .receive(&self.read_buf[..n], &mut self.core.env(token));
            }
            Received::Progress => slot.read_ready = !slot.io.drained() || slot.peer_hup,
            Received::WouldBlock | Received::Failed => slot.read_ready = false,
            Received::PlainHttp => {
                slot.read_ready = false;
                slot.io.refuse_plain_http(self.core.ids.next_id());
            }
            Received::Eof => {
                slot.read_ready = false;
                slot.conn.on_eof(&mut self.core.env(token));
            }
            Received::Error => {
                slot.read_ready = false;
                slot.conn.on_close(&mut self.core.env(token));
            }
        }
    }

    /// Hands pending output to the transport and writes until done or `WouldBlock`; true if
    /// anything was written.
    fn flush(&mut self, key: usize) -> bool {
        let slot = &mut self.slots[key];
        let token = token_of(key, slot.gen);
        let mut wrote = false;
        loop {
            // Encrypted bytes first, so that the TLS session has room for more plaintext.
            match slot.io.flush() {
                Ok(w) => wrote |= w,
                Err(_) => {
                    slot.conn.on_close(&mut self.core.env(token));
                    break;
                }
            }
            if slot.conn.pending_output() == 0 || slot.io.is_failed() {
                break;
            }
            match slot.io.send(slot.conn.output()) {
                Ok(n) => {
                    wrote = true;
                    slot.conn.consumed(n, &mut self.core.env(token));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    slot.conn.on_close(&mut self.core.env(token));
                    break;
                }
            }
        }
        wrote
    }

    /// Updates write interest, timers and buffer pooling after the connection settled.
    fn settle(&mut self, key: usize) {
        let slot = &mut self.slots[key];
        let want_write = slot.conn.pending_output() > 0 || slot.io.wants_write();
        if want_write != slot.write_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let token = Token(token_of(key, slot.gen) as usize);
            if self
                .poll
                .registry()
                .reregister(slot.io.socket(), token, interest)
                .is_ok()
            {
                slot.write_interest = want_write;
            }
        }
        self.arm_timers(key);
        self.reclaim_buffers(key);
    }

    fn arm_timers(&mut self, key: usize) {
        let slot = &mut self.slots[key];
        let entry = |kind| LoopTimer::new(key, slot.gen, kind);
        let mut deadline = slot.conn.deadline(self.core.cfg.timeouts);
        if slot.io.is_handshaking() {
            deadline = Some(deadline.map_or(slot.handshake_by, |d| d.min(slot.handshake_by)));
        }
        if let Some(at) = deadline {
            // Lazy re-arm: an entry that fires no later than the deadline re-checks then.
            let keep = matches!(slot.deadline, Some((_, t)) if t <= at);
            if !keep {
                if let Some((k, _)) = slot.deadline.take() {
                    self.wheel.cancel(k);
                }
                slot.deadline = Some((self.wheel.insert(at, entry(TimerKind::Deadline)), at));
            }
        }
        if slot.conn.is_streaming() && slot.heartbeat.is_none() {
            let at = self.core.now_ms + self.core.cfg.heartbeat_ms;
            slot.heartbeat = Some(self.wheel.insert(at, entry(TimerKind::Heartbeat)));
        }
    }

    fn lend_buffers(&mut self, key: usize) {
        let (input, output) = self.slots[key].conn.buffers_mut();
        if input.capacity() == 0 {
            std::mem::swap(input, &mut self.spare_in);
        }
        if output.capacity() == 0 {
            std::mem::swap(output, &mut self.spare_out);
        }
    }

    fn reclaim_buffers(&mut self, key: usize) {
        let (input, output) = self.slots[key].conn.buffers_mut();
        for (buf, spare) in [(input, &mut self.spare_in), (output, &mut self.spare_out)] {
            if buf.is_empty() && buf.capacity() > 0 {
                let taken = std::mem::take(buf);
                if spare.capacity() == 0 && taken.capacity() <= POOL_MAX {
                    *spare = taken;
                }
            }
        }
    }

    /// The connection is done: if `graceful`, linger so the client can read the last
    /// response (or TLS alert); else drop it.
    fn finish(&mut self, key: usize, graceful: bool) {
        let slot = &mut self.slots[key];
        if graceful && slot.lingering.is_none() && slot.io.shutdown_write().is_ok() {
            slot.lingering = Some(0);
            let at = self.core.now_ms + LINGER_MS;
            let gen = slot.gen;
            self.wheel
                .insert(at, LoopTimer::new(key, gen, TimerKind::Linger));
            self.reclaim_buffers(key);
            self.linger_read(key);
            return;
        }
        self.remove(key);
    }

    /// Discards what a closing client still sends, until EOF or the byte budget.
    fn linger_read(&mut self, key: usize) {
        loop {
            let slot = &mut self.slots[key];
            match slot.io.discard(&mut self.read_buf) {
                Ok(0) => break,
                Ok(n) => {
                    let seen = slot.lingering.unwrap_or(0) + n;
                    slot.lingering = Some(seen);
                    if seen > LINGER_BYTES {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.remove(key);
    }

    fn remove(&mut self, key: usize) {
        let mut slot = self.slots.remove(key);
        slot.conn
            .on_close(&mut self.core.env(token_of(key, slot.gen)));
        if let Some((k, _)) = slot.deadline {
            self.wheel.cancel(k);
        }
        if let Some(k) = slot.heartbeat {
            self.wheel.cancel(k);
        }
        let _ = self.poll.registry().deregister(slot.io.socket());
        self.shared.close_connection();
        self.core
            .metrics
            .loop_stats(self.core.index)
            .conn_opened(false);
    }

    fn deliver_letters(&mut self) {
        while let Some(post) = self.next_post() {
            let letter = match post {
                Post::Conn(letter) => letter,
                Post::Spawn(task) => {
                    self.spawn(task);
                    continue;
                }
                Post::Task { key, gen, post } => {
                    let event = match post {
                        TaskPost::Wake(tag) => Event::Wake(tag),
                        TaskPost::Message(m) => Event::Message(m),
                    };
                    self.dispatch(key, gen, event);
                    continue;
                }
                Post::Resolved { key, gen, result } => {
                    let mut io = driver_io!(self);
                    self.driver.on_resolved(key, gen, result, &mut io);
                    continue;
                }
            };
            let Some(key) = self.slot_key(letter.token) else {
                continue;
            };
            if self.slots[key].lingering.is_some() {
                continue;
            }
            self.lend_buffers(key);
            let token = letter.token;
            self.slots[key]
                .conn
                .on_letter(letter, &mut self.core.env(token));
            self.drive(key);
        }
    }

    /// The next post from another thread, else the next from this one.
    fn next_post(&self) -> Option<Post> {
        self.letters
            .try_recv()
            .ok()
            .or_else(|| self.core.mailbox.take_local())
    }

    fn fire_timers(&mut self) {
        let mut fired = std::mem::take(&mut self.fired);
        self.wheel.advance(self.core.now_ms, |e| fired.push(e));
        for entry in fired.drain(..) {
            self.on_timer(entry);
        }
        self.fired = fired;
    }

    fn on_timer(&mut self, entry: LoopTimer) {
        match entry.kind {
            TimerKind::Task { tag } => {
                return self.dispatch(entry.key, entry.gen, Event::Timer(tag))
            }
            TimerKind::Outbound => {
                let mut io = driver_io!(self);
                return self.driver.on_timer(entry.key, entry.gen, &mut io);
            }
            _ => {}
        }
        let Some(key) = self.slot_key(token_of(entry.key, entry.gen)) else {
            return;
        };
        let slot = &mut self.slots[key];
        let token = token_of(key, slot.gen);
        match entry.kind {
            TimerKind::Linger => return self.remove(key),
            _ if slot.lingering.is_some() => return,
            TimerKind::Deadline => {
                slot.deadline = None;
                if slot.io.is_handshaking() && self.core.now_ms >= slot.handshake_by {
                    self.core
                        .metrics
                        .loop_stats(self.core.index)
                        .handshake(Handshake::TimedOut);
                    slot.conn.on_close(&mut self.core.env(token));
                } else {
                    slot.conn.on_timer(&mut self.core.env(token));
                }
            }
            TimerKind::Heartbeat => {
                slot.heartbeat = None;
                self.lend_buffers(key);
                self.slots[key].conn.heartbeat();
            }
            TimerKind::Task { .. } | TimerKind::Outbound => {}
        }
        self.drive(key);
    }

    /// Starts or completes this loop's part of a shutdown; true when the loop may exit.
    fn check_shutdown(&mut self) -> bool {
        if self.drain_deadline.is_none() && self.shared.shutdown.load(Ordering::Acquire) {
            self.drain_deadline = Some(self.core.now_ms + self.core.cfg.shutdown_ms);
            self.core.draining = true;
            if let Some(mut listener) = self.listener.take() {
                let _ = self.poll.registry().deregister(&mut listener);
            }
            // Tasks first: their last frames are queued before the streams are ended.
            let tasks: Vec<(usize, u32)> = self.tasks.iter().map(|(k, t)| (k, t.gen)).collect();
            for (key, gen) in tasks {
                self.dispatch(key, gen, Event::Shutdown);
            }
            self.hand_http_events();
            let keys: Vec<usize> = self.slots.iter().map(|(k, _)| k).collect();
            for key in keys {
                if self.slots[key].lingering.is_some() {
                    continue;
                }
                let token = token_of(key, self.slots[key].gen);
                self.lend_buffers(key);
                self.slots[key]
                    .conn
                    .begin_shutdown(&mut self.core.env(token));
                self.drive(key);
            }
        }
        match self.drain_deadline {
            None => false,
            Some(_) if self.slots.is_empty() && self.tasks.is_empty() => true,
            Some(deadline) if self.core.now_ms >= deadline => {
                let keys: Vec<usize> = self.slots.iter().map(|(k, _)| k).collect();
                for key in keys {
                    self.remove(key);
                }
                self.tasks.clear();
                true
            }
            Some(_) => false,
        }
    }
}

/// `app` behind the operations routes, which read the server's counters and shutdown flag.
fn builtin<A: App>(app: Arc<A>, shared: &Arc<Shared>) -> Builtin<A> {
    let flag = shared.clone();
    let draining = move || flag.shutdown.load(Ordering::Acquire);
    Builtin::new(app, shared.metrics.clone(), draining)
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

impl<A: App> Worker<A> {
    /// Starts `task` with [`Event::Start`].
    fn spawn(&mut self, task: Box<dyn Task>) {
        let gen = self.next_task_gen;
        self.next_task_gen = self.next_task_gen.wrapping_add(1);
        let key = self.tasks.insert(TaskSlot {
            task: Some(task),
            gen,
            exchanges: Vec::new(),
        });
        self.dispatch(key, gen, Event::Start);
    }

    /// Hands `event` to the task in slot `key` if it is still generation `gen`. A task that
    /// finishes or panics is dropped and its open exchanges closed.
    fn dispatch(&mut self, key: usize, gen: u32, event: Event) {
        let Some(slot) = self.tasks.get_mut(key).filter(|t| t.gen == gen) else {
            return;
        };
        let Some(mut task) = slot.task.take() else {
            return;
        };
        let mut exchanges = std::mem::take(&mut slot.exchanges);
        let mut cx = Cx {
            key,
            gen,
            now_ms: self.core.now_ms,
            now: self.core.now,
            draining: self.core.draining,
            mailbox: &self.core.mailbox,
            wheel: &mut self.wheel,
            driver: &mut self.driver,
            registry: self.poll.registry(),
            exchanges: &mut exchanges,
        };
        let status = catch_unwind(AssertUnwindSafe(|| task.on_event(event, &mut cx)));
        if let Ok(Status::Pending) = status {
            if exchanges.len() > 8 {
                exchanges.retain(|id| self.driver.is_open(*id));
            }
            let slot = &mut self.tasks[key];
            slot.task = Some(task);
            slot.exchanges = exchanges;
            return;
        }
        if status.is_err() {
            self.core.metrics.loop_stats(self.core.index).panicked();
        }
        for id in exchanges {
            self.driver
                .cancel(id, &mut self.wheel, self.poll.registry());
        }
        self.tasks.remove(key);
        // Dropped here, after the slot is free: what it held (a Responder) may post news.
        drop(task);
    }

    /// Hands the outbound news gathered so far to the tasks (which may cause more).
    fn hand_http_events(&mut self) {
        loop {
            self.driver.take_events(&mut self.http_events);
            if self.http_events.is_empty() {
                return;
            }
            // Taken, drained and put back: the vector keeps its capacity (a new one each
            // round was an allocation per relayed token).
            let mut events = std::mem::take(&mut self.http_events);
            for ((key, gen), id, event) in events.drain(..) {
                self.dispatch(key, gen, Event::Http(id, event));
            }
            self.http_events = events;
        }
    }
}
