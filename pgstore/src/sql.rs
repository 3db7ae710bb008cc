//! The statements a node runs on every commit and catch-up, prepared once per connection.
//!
//! Responsible for: their text and preparing them when a connection opens (a prepared
//! statement saves the parse round trip each call would otherwise make). Not responsible
//! for: running them (`store`).

use postgres::{Client, Statement};

/// Locks the tenant's head row (made on the tenant's first commit) and returns the last
/// transaction number committed for it.
pub const LOCK_HEAD: &str = "INSERT INTO halyard_heads (tenant, tseq) VALUES ($1, 0) \
     ON CONFLICT (tenant) DO UPDATE SET tseq = halyard_heads.tseq RETURNING tseq";

/// Appends transaction `$2` of tenant `$1`, moves the head, and tells every listening node
/// (delivered at `COMMIT`, in commit order).
pub const APPEND: &str = "WITH t AS (INSERT INTO halyard_txlog (tenant, tseq, payload) \
     VALUES ($1, $2, $3)), h AS (UPDATE halyard_heads SET tseq = $2 WHERE tenant = $1) \
     SELECT pg_notify('halyard', $4)";

/// The transactions of tenant `$1` after `$2`, in order.
pub const AFTER: &str =
    "SELECT tseq, payload FROM halyard_txlog WHERE tenant = $1 AND tseq > $2 ORDER BY tseq";

/// The last transaction number of tenant `$1` (no row: none yet).
pub const HEAD: &str = "SELECT tseq FROM halyard_heads WHERE tenant = $1";

/// The statements above, prepared on one connection.
pub struct Prepared {
    /// [`LOCK_HEAD`].
    pub lock_head: Statement,
    /// [`APPEND`].
    pub append: Statement,
    /// [`AFTER`].
    pub after: Statement,
    /// [`HEAD`].
    pub head: Statement,
}

impl Prepared {
    /// Prepares them on `client`.
    pub fn on(client: &mut Client) -> Result<Prepared, postgres::Error> {
        Ok(Prepared {
            lock_head: client.prepare(LOCK_HEAD)?,
            append: client.prepare(APPEND)?,
            after: client.prepare(AFTER)?,
            head: client.prepare(HEAD)?,
        })
    }
}
