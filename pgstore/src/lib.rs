//! Halyard on PostgreSQL: N nodes over one database, with the API and guarantees of the
//! embedded store.
//!
//! Each node keeps the same in-memory [`State`](halyard_storage::state::State) the embedded
//! store keeps, and PostgreSQL keeps what the embedded store's log keeps: the committed
//! transactions, numbered per tenant, in `halyard_txlog`. A commit locks the tenant's row
//! in `halyard_heads`, catches the node up, validates and applies the transaction, appends
//! it and commits; other nodes hear of it by `NOTIFY` and apply it in the same order.
//! A write acknowledged by any node is read on every node: a read is answered from memory
//! while the node holds a read lease on its tenant, and a write waits for the lease holders
//! to apply it ([`leases`]); without a lease a handler first asks the database for its
//! tenant's head ([`Backend::catch_up`]). The event loops never wait for the database:
//! handlers run on threads of their own, and a turn's writes are queued ([`queue`]).
//!
//! | module | responsible for |
//! |---|---|
//! | [`migrate`] | the schema and its versions |
//! | [`pool`] | a bounded set of connections |
//! | [`sql`] | the statements, prepared per connection |
//! | [`store`] | commits, catch-up, reads |
//! | [`fence`] | one catch-up shared by the requests that wait together |
//! | [`leases`] | when this node answers a tenant's reads from memory |
//! | [`acks`] | a write's wait for the nodes that do |
//! | [`listener`] | `LISTEN`, the poll, reachability |
//! | [`members`] | this node's heartbeat, which nodes are gone |
//! | [`upkeep`] | the thread of the periodic work (heartbeat, lease renewals, sweeps) |
//! | [`queue`] | the event loops' writes, committed on threads of their own |
//! | [`slots`] | concurrent sessions counted across nodes |
//! | [`reach`] | the readiness flag |
//! | [`check`] | `halyard check --storage URL` |
//! | [`transfer`] | `halyard export-store`, `import-store` |
//! | [`tls`] | the URL, and TLS to the database |
//!
//! Blocking by design (the synchronous `postgres` client): the API runs handlers on
//! threads of their own when [`Backend::is_shared`], never on an event loop.

pub mod acks;
pub mod check;
pub mod fence;
pub mod leases;
pub mod listener;
pub mod members;
pub mod migrate;
pub mod pool;
pub mod queue;
pub mod reach;
pub mod slots;
pub mod sql;
pub mod store;
pub mod tls;
pub mod transfer;
pub mod upkeep;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use halyard_storage::Backend;

pub use check::{check, PgCheckReport};
pub use migrate::{MigrateError, Migrated, LATEST};
pub use store::PgStore;
pub use tls::{Target, TargetError};
pub use transfer::{copy_state, CopyReport};

/// How to open the store.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Connections at most (besides the listener's).
    pub connections: usize,
    /// Longest wait for a free connection before a request answers 503.
    pub wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connections: 16,
            wait: Duration::from_secs(2),
        }
    }
}

/// Why the store did not open.
#[derive(Debug)]
pub enum OpenError {
    /// The URL is not a PostgreSQL connection string, or its TLS settings are unusable.
    Target(TargetError),
    /// The database could not be reached.
    Connect(postgres::Error),
    /// The schema could not be brought up to date.
    Migrate(MigrateError),
    /// Loading the committed transactions failed.
    Load(halyard_storage::StoreError),
    /// The listener or heartbeat thread did not start.
    Thread(std::io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Target(e) => e.fmt(f),
            OpenError::Connect(e) => {
                write!(f, "cannot connect to the database: {}", explain(e))
            }
            OpenError::Migrate(e) => e.fmt(f),
            OpenError::Load(e) => write!(f, "cannot load the data: {e}"),
            OpenError::Thread(e) => write!(f, "cannot start a database thread: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// A database error with its causes (`postgres::Error`'s own text is only its kind, such
/// as "db error"; the server's message is in its source).
pub fn explain(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Parses a `postgres://` URL (multi-host, `target_session_attrs=read-write`, `sslmode`,
/// `sslrootcert` and the other libpq parameters the `postgres` crate knows), with a 5 s
/// connect timeout unless it sets one. See [`tls`] for what `sslmode` does.
pub fn target(url: &str) -> Result<Target, OpenError> {
    Target::parse(url).map_err(OpenError::Target)
}

/// Connects and brings the schema up to date (`halyard migrate`; `serve` does it too).
pub fn migrate_url(url: &str) -> Result<Migrated, OpenError> {
    let mut client = target(url)?.connect().map_err(OpenError::Connect)?;
    migrate::migrate(&mut client).map_err(OpenError::Migrate)
}

/// An open store and its listener; dropping it stops the listener.
pub struct Opened {
    /// The store.
    pub store: Arc<PgStore>,
    /// What the migration found and did.
    pub migrated: Migrated,
    /// Whether connections use TLS.
    pub tls: bool,
    stop: Arc<AtomicBool>,
    /// The listener, upkeep and lane threads.
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("migrated", &self.migrated)
            .finish_non_exhaustive()
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Opens the store at `url`: migrates, loads every committed transaction, starts the
/// listener and the heartbeat.
pub fn open(url: &str, opts: Options) -> Result<Opened, OpenError> {
    let target = target(url)?;
    let tls = target.is_tls();
    let mut client = target.connect().map_err(OpenError::Connect)?;
    let migrated = migrate::migrate(&mut client).map_err(OpenError::Migrate)?;
    drop(client);
    let store = Arc::new(PgStore::new(pool::Pool::new(
        target,
        opts.connections,
        opts.wait,
    )));
    store.catch_up(None).map_err(OpenError::Load)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut opened = Opened {
        store,
        migrated,
        tls,
        stop,
        threads: Vec::new(),
    };
    let weak = Arc::downgrade(&opened.store);
    let listen = listener::spawn(weak.clone(), opened.stop.clone());
    opened.threads.push(listen.map_err(OpenError::Thread)?);
    let upkeep = upkeep::spawn(weak, opened.stop.clone());
    opened.threads.push(upkeep.map_err(OpenError::Thread)?);
    let lanes = queue::spawn(&opened.store, &opened.stop);
    opened.threads.extend(lanes.map_err(OpenError::Thread)?);
    Ok(opened)
}
