//! The schema in PostgreSQL and its versions.
//!
//! Responsible for: the ordered list of migrations, applying the missing ones at start
//! (one transaction each, under an advisory lock so that nodes starting together do not
//! race), and refusing a database whose schema is newer than this binary. Not responsible
//! for: what is stored in the tables (`store`).
//!
//! | table | one row per | columns |
//! |---|---|---|
//! | `halyard_schema` | applied migration | `version` |
//! | `halyard_heads` | tenant (`''` for server metadata) | `tenant`, `tseq`: the tenant's last transaction |
//! | `halyard_txlog` | committed transaction | `tenant`, `tseq` (1, 2, ... per tenant, no gaps), `payload` (the log's transaction encoding), `committed_at` |
//! | `halyard_meta` | value set once for the whole cluster | `key`, `value` |
//! | `halyard_rates` (unlogged) | tenant with shared request rates | `tenant`, `tat_us`: the theoretical arrival time of its bucket, database clock |
//! | `halyard_nodes` (unlogged) | nodes alive (heartbeat, rate sharing) | `id`, `seen_at` |
//! | `halyard_cells` (unlogged) | exact shared bucket (a session's message rate) | `key`, `tat_us` |
//! | `halyard_slots` | member counting against a group's cap (a tenant's active session) | `grp`, `member`, `last_ms` |
//! | `halyard_slot_groups` | group whose members were loaded from the data | `grp` |
//! | `halyard_leases` | node answering a tenant's reads from memory, until when | `tenant`, `node`, `until` |

use postgres::Client;

/// Key of the session-level advisory lock held while migrating ("halyard" in ASCII).
const MIGRATION_LOCK: i64 = 0x0068_616c_7961_7264;

/// The migrations, in order; version `i + 1` is `MIGRATIONS[i]`. Append only: a released
/// migration never changes.
const MIGRATIONS: &[&str] = &[
    // 1: the per-tenant transaction log, its heads, and cluster metadata.
    "CREATE TABLE halyard_heads (
         tenant text PRIMARY KEY,
         tseq bigint NOT NULL
     );
     CREATE TABLE halyard_txlog (
         tenant text NOT NULL,
         tseq bigint NOT NULL,
         payload bytea NOT NULL,
         committed_at timestamptz NOT NULL DEFAULT now(),
         PRIMARY KEY (tenant, tseq)
     );
     CREATE TABLE halyard_meta (
         key text PRIMARY KEY,
         value bytea NOT NULL
     );",
    // 2: shared request rates (lost on a crash by design: at most one extra burst).
    "CREATE UNLOGGED TABLE halyard_rates (
         tenant text PRIMARY KEY,
         tat_us bigint NOT NULL
     );
     CREATE UNLOGGED TABLE halyard_nodes (
         id text PRIMARY KEY,
         seen_at timestamptz NOT NULL
     );",
    // 3: limits exact across nodes: session message rates (buckets, unlogged like the
    // request rates) and concurrent sessions (slots, logged: a restart of the database
    // must not let a tenant past its cap).
    "CREATE UNLOGGED TABLE halyard_cells (
         key text PRIMARY KEY,
         tat_us bigint NOT NULL
     );
     CREATE TABLE halyard_slots (
         grp text NOT NULL,
         member text NOT NULL,
         last_ms bigint NOT NULL,
         PRIMARY KEY (grp, member)
     );
     CREATE TABLE halyard_slot_groups (
         grp text PRIMARY KEY
     );",
    // 4: read leases (logged: a write must find every lease granted before it, also
    // after a restart of the database).
    "CREATE TABLE halyard_leases (
         tenant text NOT NULL,
         node text NOT NULL,
         until timestamptz NOT NULL,
         PRIMARY KEY (tenant, node)
     );",
];

/// The schema version this binary writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// Why the schema could not be brought up to date.
#[derive(Debug)]
pub enum MigrateError {
    /// The database was migrated by a newer Halyard.
    Newer {
        /// The database's version.
        found: u32,
        /// This binary's.
        supported: u32,
    },
    /// A statement failed.
    Db(postgres::Error),
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrateError::Newer { found, supported } => write!(
                f,
                "the database schema is version {found}, newer than this binary's {supported}: \
                 run a Halyard at least as new as the one that migrated it"
            ),
            MigrateError::Db(e) => write!(f, "migration failed: {}", crate::explain(e)),
        }
    }
}

impl std::error::Error for MigrateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MigrateError::Db(e) => Some(e),
            MigrateError::Newer { .. } => None,
        }
    }
}

impl From<postgres::Error> for MigrateError {
    fn from(e: postgres::Error) -> Self {
        MigrateError::Db(e)
    }
}

/// What [`migrate`] did: the version found and the version left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Version before (0: an empty database).
    pub from: u32,
    /// Version after ([`LATEST`]).
    pub to: u32,
}

/// Applies the missing migrations, each in its own transaction; refuses a newer schema.
pub fn migrate(client: &mut Client) -> Result<Migrated, MigrateError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = migrate_locked(client);
    // Also released when the connection ends, should this fail.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result
}

/// The schema version of the database (0 when Halyard never migrated it).
pub fn version(client: &mut Client) -> Result<u32, postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('halyard_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM halyard_schema", &[])?
        .get(0);
    Ok(v.map_or(0, |v| v.max(0) as u32))
}

fn migrate_locked(client: &mut Client) -> Result<Migrated, MigrateError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS halyard_schema (version integer PRIMARY KEY)")?;
    let from = version(client)?;
    if from > LATEST {
        return Err(MigrateError::Newer {
            found: from,
            supported: LATEST,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO halyard_schema (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )?;
        tx.commit()?;
    }
    Ok(Migrated { from, to: LATEST })
}
