//! A bounded set of database connections, shared by the threads that commit and catch up.
//!
//! Responsible for: opening connections on demand up to a maximum, lending one to a caller
//! for as long as it holds the [`Lease`], waiting a bounded time when all are lent, and
//! dropping a connection that broke instead of lending it again. Not responsible for:
//! retrying a statement (a caller that gets an error answers 503 and the client retries).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use postgres::Client;

use crate::sql::Prepared;
use crate::tls::Target;

/// A pooled connection with its prepared statements.
pub struct Conn {
    /// The connection.
    pub client: Client,
    /// The statements of [`crate::sql`], prepared on it.
    pub sql: Prepared,
}

/// The connection pool.
pub struct Pool {
    target: Target,
    max: usize,
    wait: Duration,
    slots: Mutex<Slots>,
    freed: Condvar,
}

#[derive(Default)]
struct Slots {
    idle: Vec<Conn>,
    /// Connections lent out or idle.
    open: usize,
}

/// Why no connection was lent.
#[derive(Debug)]
pub enum PoolError {
    /// All `max` connections stayed lent for the whole wait.
    Busy,
    /// A new connection could not be opened.
    Connect(postgres::Error),
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolError::Busy => f.write_str("every database connection is busy"),
            PoolError::Connect(e) => {
                write!(f, "cannot connect to the database: {}", crate::explain(e))
            }
        }
    }
}

impl std::error::Error for PoolError {}

impl Pool {
    /// A pool of at most `max` connections to `target`; a caller waits at most `wait` for
    /// one.
    pub fn new(target: Target, max: usize, wait: Duration) -> Pool {
        Pool {
            target,
            max: max.max(1),
            wait,
            slots: Mutex::new(Slots::default()),
            freed: Condvar::new(),
        }
    }

    /// Opens a connection outside the pool (the listener, `migrate`).
    pub fn connect(&self) -> Result<Client, postgres::Error> {
        connect(&self.target)
    }

    /// Lends a connection.
    pub fn get(&self) -> Result<Lease<'_>, PoolError> {
        let deadline = std::time::Instant::now() + self.wait;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(conn) = slots.idle.pop() {
                return Ok(Lease::new(self, conn));
            }
            if slots.open < self.max {
                slots.open += 1;
                drop(slots);
                let opened = connect(&self.target)
                    .and_then(|mut client| Ok((Prepared::on(&mut client)?, client)));
                return match opened {
                    Ok((sql, client)) => Ok(Lease::new(self, Conn { client, sql })),
                    Err(e) => {
                        self.forget();
                        Err(PoolError::Connect(e))
                    }
                };
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(PoolError::Busy);
            }
            slots = self
                .freed
                .wait_timeout(slots, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Drops every idle connection (after the database went away, so that the next caller
    /// connects afresh instead of finding a dead one).
    pub fn clear_idle(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let n = slots.idle.len();
        slots.idle.clear();
        slots.open -= n;
        drop(slots);
        self.freed.notify_all();
    }

    fn give_back(&self, conn: Conn) {
        if conn.client.is_closed() {
            return self.forget();
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.idle.push(conn);
        drop(slots);
        self.freed.notify_one();
    }

    fn forget(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.open -= 1;
        drop(slots);
        self.freed.notify_one();
    }
}

/// Opens a connection with the session settings every Halyard connection uses.
fn connect(target: &Target) -> Result<Client, postgres::Error> {
    let mut client = target.connect()?;
    // A stalled statement (a lock held by a stuck transaction) fails instead of holding a
    // connection, and with it a handler thread, for ever.
    client.batch_execute("SET statement_timeout = '10s'; SET lock_timeout = '5s'")?;
    Ok(client)
}

/// A lent connection, given back when dropped (or forgotten, if it broke).
pub struct Lease<'p> {
    pool: &'p Pool,
    conn: Option<Conn>,
}

impl<'p> Lease<'p> {
    fn new(pool: &'p Pool, conn: Conn) -> Self {
        Lease {
            pool,
            conn: Some(conn),
        }
    }

    /// The connection and its prepared statements.
    pub fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }

    /// The connection.
    pub fn client(&mut self) -> &mut Client {
        &mut self.conn().client
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}
