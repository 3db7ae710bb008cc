//! The server: its listeners, its event loops and the state they share.
//!
//! Responsible for: binding one `SO_REUSEPORT` listener per loop on the same address (so the
//! kernel spreads connections without a shared accept lock), or sharing one listener handed
//! in from outside (systemd socket activation) among the loops; starting the loops on their
//! own threads (serving HTTPS on every loop when a [`TlsAcceptor`] is set), the global
//! connection cap, the shutdown flag every loop watches, the rounds of [`Liveness`], and
//! starting (then draining) the access log's writer when one is set.
//! Not responsible for: HTTP or timers (see `conn`, `worker`), certificates (see `tls`),
//! signals (see `shutdown`, `tls_reload`) or where a handed-in listener comes from.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::access_log::{AccessLog, ReopenHandle};
use crate::app::App;
use crate::conn::Timeouts;
use crate::liveness::{Liveness, Rounds};
use crate::metrics::Metrics;
use crate::reply::Mailbox;
use crate::shutdown::ShutdownHandle;
use crate::tls::TlsAcceptor;
use crate::tls_reload::ReloadHandle;
use crate::worker::{LoopConfig, Worker};

/// Engine settings (the engine's part of `halyard serve`'s flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Number of event loops (threads).
    pub threads: usize,
    /// Connections open at once across loops; more are closed at accept.
    pub max_connections: usize,
    /// Header-read timeout (`408`), in milliseconds.
    pub header_timeout_ms: u64,
    /// Keep-alive idle timeout, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Interval of `: heartbeat` comments on open streams, in milliseconds.
    pub sse_heartbeat_ms: u64,
    /// How long a graceful shutdown waits for in-flight requests, in milliseconds.
    pub shutdown_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: 100_000,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            sse_heartbeat_ms: 15_000,
            shutdown_timeout_ms: 10_000,
        }
    }
}

/// State shared by the loops of one server.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) shutdown: AtomicBool,
    pub(crate) metrics: Arc<Metrics>,
    open: AtomicUsize,
    max_connections: usize,
    mailboxes: Mutex<Vec<Arc<Mailbox>>>,
    /// Rounds of [`Liveness`], answered by each loop at the top of its turns.
    pub(crate) rounds: Rounds,
    /// Held while the shutdown flag is checked by [`Shared::wait_for_shutdown`] and around
    /// its notification, so a waiter cannot miss the one `notify_all`.
    stop_lock: Mutex<()>,
    stop_cv: Condvar,
}

impl Shared {
    /// Counts a new connection; false when the cap is reached.
    pub(crate) fn try_open_connection(&self) -> bool {
        let prev = self.open.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Counts a closed connection.
    pub(crate) fn close_connection(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn add_mailbox(&self, mailbox: Arc<Mailbox>) {
        self.mailboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(mailbox);
    }

    /// Sets the shutdown flag, wakes every loop and every thread waiting for a shutdown.
    pub(crate) fn trigger_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        drop(self.stop_lock.lock().unwrap_or_else(|e| e.into_inner()));
        self.stop_cv.notify_all();
        self.wake_all();
    }

    /// Blocks until a shutdown is requested or `timeout` (if any) passes; true when one is.
    pub(crate) fn wait_for_shutdown(&self, timeout: Option<Duration>) -> bool {
        let requested = || self.shutdown.load(Ordering::Acquire);
        let guard = self.stop_lock.lock().unwrap_or_else(|e| e.into_inner());
        // A poisoned lock guards nothing here (the flag is an atomic): the flag is read anyway.
        match timeout {
            Some(t) => drop(self.stop_cv.wait_timeout_while(guard, t, |_| !requested())),
            None => drop(self.stop_cv.wait_while(guard, |_| !requested())),
        }
        requested()
    }

    /// Interrupts every loop's `poll`.
    pub(crate) fn wake_all(&self) {
        for m in self
            .mailboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            m.wake();
        }
    }
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
    local_addr: SocketAddr,
    config: Config,
    tls: Option<Arc<TlsAcceptor>>,
    access_log: Option<AccessLog>,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds `config.threads` listeners on `config.listen` (port 0 picks one port for all).
    pub fn bind(config: Config) -> io::Result<Server> {
        let threads = config.threads.max(1);
        ensure_unused(config.listen)?;
        let first = listener(config.listen)?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..threads {
            listeners.push(listener(local_addr)?);
        }
        Ok(Server::with_listeners(config, listeners, local_addr))
    }

    /// Serves on `listener`, a listening TCP socket made elsewhere (passed by systemd
    /// socket activation), instead of binding `config.listen`, which is ignored.
    ///
    /// Every loop polls its own duplicate of the one socket (`try_clone`: one queue of
    /// pending connections, several descriptors): each loop's `epoll` reports a new
    /// connection and the loops race to accept it; the losers get `WouldBlock`. No extra
    /// `SO_REUSEPORT` sockets are bound beside it: their queues would die with this process,
    /// while the handed-in socket's queue outlives it (the service manager keeps it open), so
    /// connections that arrive while the server restarts wait for the next one.
    ///
    /// Fails with `InvalidInput` when the socket is not a listening IPv4 or IPv6 stream
    /// socket.
    pub fn from_listener(config: Config, listener: std::net::TcpListener) -> io::Result<Server> {
        check_listener(&listener)?;
        let local_addr = listener.local_addr()?;
        let threads = config.threads.max(1);
        let mut listeners = Vec::with_capacity(threads);
        for _ in 1..threads {
            listeners.push(listener.try_clone()?);
        }
        listeners.push(listener);
        Ok(Server::with_listeners(config, listeners, local_addr))
    }

    fn with_listeners(
        config: Config,
        listeners: Vec<std::net::TcpListener>,
        local_addr: SocketAddr,
    ) -> Server {
        let threads = listeners.len();
        let shared = Arc::new(Shared {
            shutdown: AtomicBool::new(false),
            metrics: Arc::new(Metrics::new(threads)),
            open: AtomicUsize::new(0),
            max_connections: config.max_connections,
            mailboxes: Mutex::new(Vec::new()),
            rounds: Rounds::new(threads),
            stop_lock: Mutex::new(()),
            stop_cv: Condvar::new(),
        });
        Server {
            listeners,
            local_addr,
            config,
            tls: None,
            access_log: None,
            shared,
        }
    }

    /// Serves HTTPS with `tls` on every loop instead of plain HTTP.
    pub fn with_tls(mut self, tls: Arc<TlsAcceptor>) -> Server {
        self.shared.metrics.enable_tls();
        self.tls = Some(tls);
        self
    }

    /// Logs every request to `log` (one JSON line each, written by a thread of its own).
    pub fn with_access_log(mut self, log: AccessLog) -> Server {
        self.access_log = Some(log);
        self
    }

    /// A handle that has the access log file reopened (on SIGHUP, after logrotate); `None`
    /// without an access log.
    pub fn access_log_reopen(&self) -> Option<ReopenHandle> {
        self.access_log.as_ref().map(AccessLog::reopen_handle)
    }

    /// Whether the server serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The engine counters (also served at `/metrics`).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// A handle that starts a graceful shutdown from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::new(self.shared.clone())
    }

    /// A handle that asks the loops for proof that they still turn (for a watchdog).
    pub fn liveness(&self) -> Liveness {
        Liveness::new(self.shared.clone())
    }

    /// A handle that reloads the certificate and key from any thread (or on SIGHUP); `None`
    /// for a plain HTTP server.
    pub fn reload_handle(&self) -> Option<ReloadHandle> {
        let tls = self.tls.clone()?;
        Some(ReloadHandle::new(tls, self.shared.metrics.clone()))
    }

    /// Runs every loop on its own thread until a shutdown completes.
    pub fn run<A: App>(self, app: Arc<A>) -> io::Result<()> {
        let cfg = LoopConfig {
            timeouts: Timeouts {
                header_ms: self.config.header_timeout_ms,
                idle_ms: self.config.idle_timeout_ms,
            },
            heartbeat_ms: self.config.sse_heartbeat_ms.max(1),
            shutdown_ms: self.config.shutdown_timeout_ms,
        };
        let mut workers = Vec::with_capacity(self.listeners.len());
        // One resolver thread for every loop's outbound connections, started now so that the
        // number of threads is fixed from the start.
        let resolver = crate::client::Resolver::start()?;
        let loops = self.listeners.len();
        let labels = crate::builtin::route_labels(&*app);
        self.shared.metrics.set_routes(labels.clone());
        let (mut logs, log_writer) = match self.access_log {
            Some(log) => {
                let (sinks, running) = log.start(loops, labels)?;
                (sinks.into_iter().map(Some).collect(), Some(running))
            }
            None => ((0..loops).map(|_| None).collect::<Vec<_>>(), None),
        };
        for (i, l) in self.listeners.into_iter().enumerate() {
            workers.push(Worker::new(
                i,
                l,
                self.tls.clone(),
                app.clone(),
                self.shared.clone(),
                resolver.clone(),
                cfg,
                logs.get_mut(i).and_then(Option::take),
            )?);
        }
        // A shutdown requested before the mailboxes existed must still reach every loop.
        if self.shared.shutdown.load(Ordering::Acquire) {
            self.shared.trigger_shutdown();
        }
        let handles: Vec<_> = workers
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                std::thread::Builder::new()
                    .name(format!("halyard-loop-{i}"))
                    .spawn(move || w.run())
            })
            .collect::<io::Result<_>>()?;
        let mut result = Ok(());
        for h in handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("event loop panicked")),
            }
        }
        // The loops (and their ends of the log) are gone: the writer writes what is left.
        if let Some(w) = log_writer {
            w.finish();
        }
        result
    }
}

/// Fails with `AddrInUse` when something already listens on `addr`. The loops share their
/// port through `SO_REUSEPORT`, which would just as well let a second server started by
/// mistake (same user, same port) bind beside the first and silently take half of its
/// connections; one bind without it first gives the usual "address in use" instead.
fn ensure_unused(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Connections of an earlier run still in TIME_WAIT do not count as a listener.
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// Refuses what the loops cannot serve: a socket that is not listening (a connected one would
/// never report a connection to accept), or not TCP over IPv4 or IPv6 (a Unix socket would
/// accept, but the engine's connections are TCP streams with a peer IP address).
fn check_listener(listener: &std::net::TcpListener) -> io::Result<()> {
    let sock = SockRef::from(listener);
    let invalid = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, why.to_string()));
    if sock.r#type()? != Type::STREAM {
        return invalid("the socket is not a stream socket");
    }
    let domain = sock.domain()?;
    if domain != Domain::IPV4 && domain != Domain::IPV6 {
        return invalid("the socket is not an IPv4 or IPv6 socket");
    }
    if !sock.is_listener()? {
        return invalid("the socket is not listening");
    }
    Ok(())
}

fn listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}
