//! The statements a node runs on every commit and catch-up, prepared once per connection.
//!
//! Responsible for: their text and preparing them when a connection opens (a prepared
//! statement saves the parse round trip each call would otherwise make). Not responsible
//! for: running them (`store`).

use postgres::{Client, Statement};

/// Appends transaction `$2` of tenant `$1` (payload `$3`) if the tenant's last one is
/// `$2 - 1`, moves the head, and tells every listening node (`$4`, delivered at commit, in
/// commit order); one statement, so one round trip and its own transaction. No row: another
/// node appended first (the head row is locked while this runs, so two cannot both win).
pub const COMMIT: &str = "WITH h AS (INSERT INTO halyard_heads (tenant, tseq) VALUES ($1, $2) \
     ON CONFLICT (tenant) DO UPDATE SET tseq = excluded.tseq \
     WHERE halyard_heads.tseq = excluded.tseq - 1 RETURNING tseq), \
     t AS (INSERT INTO halyard_txlog (tenant, tseq, payload) SELECT $1, tseq, $3 FROM h) \
     SELECT pg_notify('halyard', $4) FROM h";

/// Locks the tenant's head row (made if missing) and returns its last transaction number:
/// the way in after [`COMMIT`] lost a race, so that a node cannot lose again and again.
pub const LOCK_HEAD: &str = "INSERT INTO halyard_heads (tenant, tseq) VALUES ($1, 0) \
     ON CONFLICT (tenant) DO UPDATE SET tseq = halyard_heads.tseq RETURNING tseq";

/// Appends transaction `$2` of tenant `$1` under the lock of [`LOCK_HEAD`], moves the head
/// and notifies, like [`COMMIT`].
pub const APPEND: &str = "WITH t AS (INSERT INTO halyard_txlog (tenant, tseq, payload) \
     VALUES ($1, $2, $3)), h AS (UPDATE halyard_heads SET tseq = $2 WHERE tenant = $1) \
     SELECT pg_notify('halyard', $4)";

/// The transactions of tenant `$1` after `$2`, in order.
pub const AFTER: &str =
    "SELECT tseq, payload FROM halyard_txlog WHERE tenant = $1 AND tseq > $2 ORDER BY tseq";

/// The last transaction number of tenant `$1` (no row: none yet).
pub const HEAD: &str = "SELECT tseq FROM halyard_heads WHERE tenant = $1";

/// Adds `$3[i]` requests of interval `$4[i]` µs, the first admitted `$5[i]` µs ago, to the
/// bucket of tenant `$2[i]` and returns how far ahead of now (µs, database clock) each
/// bucket is; `$1` is the node reporting.
pub const SHARE_RATES: &str = "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) \
     * 1000000)::bigint AS us), node AS (INSERT INTO halyard_nodes (id, seen_at) \
     VALUES ($1, clock_timestamp()) ON CONFLICT (id) DO UPDATE SET seen_at = \
     excluded.seen_at), used AS (SELECT u.tenant, u.n * u.interval_us AS cost, \
     (SELECT us FROM now) - u.age_us AS since FROM unnest($2::text[], $3::bigint[], \
     $4::bigint[], $5::bigint[]) AS u(tenant, n, interval_us, age_us)), \
     up AS (INSERT INTO halyard_rates (tenant, tat_us) SELECT tenant, since + cost FROM used \
     ON CONFLICT (tenant) DO UPDATE SET tat_us = greatest(halyard_rates.tat_us, \
     (SELECT since FROM used WHERE used.tenant = excluded.tenant)) \
     + (SELECT cost FROM used WHERE used.tenant = excluded.tenant) RETURNING tenant, tat_us) \
     SELECT used.tenant, greatest(up.tat_us - (SELECT us FROM now), 0) \
     FROM used JOIN up ON up.tenant = used.tenant";

/// Takes one from the shared GCRA bucket `$1` (emission interval `$2` µs, tolerance `$3`
/// µs): allowed when its theoretical arrival time is at most the tolerance ahead of now,
/// and then moved one interval on. The upsert locks the row, so two nodes cannot both take
/// the last one. Returns whether it was allowed, and how far ahead of now the bucket was
/// (µs; as of the statement's start, for a `Retry-After`).
pub const TAKE_CELL: &str = "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * \
     1000000)::bigint AS us), old AS (SELECT tat_us FROM halyard_cells WHERE key = $1), up \
     AS (INSERT INTO halyard_cells AS c (key, tat_us) SELECT $1, us + $2 FROM now ON \
     CONFLICT (key) DO UPDATE SET tat_us = greatest(c.tat_us, (SELECT us FROM now)) + $2 \
     WHERE c.tat_us - (SELECT us FROM now) <= $3 RETURNING 1) SELECT EXISTS (SELECT 1 FROM \
     up), coalesce((SELECT tat_us FROM old), 0) - (SELECT us FROM now)";

/// Drops buckets whose arrival time has passed: they are full, as a missing one is.
pub const FORGET_CELLS: &str = "DELETE FROM halyard_cells WHERE tat_us < (extract(epoch FROM \
     clock_timestamp()) * 1000000)::bigint";

/// Serializes the reservations of slot group `$1` until the transaction ends.
pub const LOCK_SLOTS: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 16))";

/// Marks slot group `$1` as loaded; a row back: it was not, and the caller loads it.
pub const FIRST_SIGHT: &str =
    "INSERT INTO halyard_slot_groups (grp) VALUES ($1) ON CONFLICT DO NOTHING RETURNING 1";

/// Adds members `$2` (last used `$3`, ms) to slot group `$1`, keeping those present.
pub const LOAD_SLOTS: &str = "INSERT INTO halyard_slots (grp, member, last_ms) SELECT $1, m, \
     t FROM unnest($2::text[], $3::bigint[]) AS u(m, t) ON CONFLICT DO NOTHING";

/// Under [`LOCK_SLOTS`] (this statement's snapshot is taken after it, so it counts every
/// reservation committed before): adds member `$2` to group `$1` at `$3` ms if fewer than
/// `$5` members were used within `$4` ms, and drops the idle ones. Returns whether it was
/// added, and when the oldest live member was last used.
pub const RESERVE_SLOT: &str = "WITH live AS (SELECT count(*) AS n, min(last_ms) AS oldest \
     FROM halyard_slots WHERE grp = $1 AND last_ms > $3::bigint - $4::bigint), \
     ins AS (INSERT INTO halyard_slots (grp, member, last_ms) SELECT $1, $2, $3 FROM live \
     WHERE live.n < $5::bigint ON CONFLICT (grp, member) \
     DO UPDATE SET last_ms = excluded.last_ms RETURNING 1), \
     idle AS (DELETE FROM halyard_slots WHERE grp = $1 AND last_ms <= $3::bigint - $4::bigint) \
     SELECT EXISTS (SELECT 1 FROM ins), (SELECT oldest FROM live)";

/// Member `$2` of group `$1` was used at `$3` ms.
pub const TOUCH_SLOT: &str = "INSERT INTO halyard_slots (grp, member, last_ms) VALUES ($1, \
     $2, $3) ON CONFLICT (grp, member) DO UPDATE SET last_ms = \
     greatest(halyard_slots.last_ms, excluded.last_ms)";

/// Member `$2` of group `$1` no longer counts.
pub const RELEASE_SLOT: &str = "DELETE FROM halyard_slots WHERE grp = $1 AND member = $2";

/// Records node `$2`'s read lease on tenant `$1` for `$3` ms from now (under the tenant's
/// head row lock, see `leases`).
pub const GRANT_LEASE: &str = "INSERT INTO halyard_leases (tenant, node, until) \
     VALUES ($1, $2, clock_timestamp() + $3::float8 * interval '1 millisecond') \
     ON CONFLICT (tenant, node) DO UPDATE SET until = excluded.until";

/// The other nodes (not `$2`) holding an unexpired read lease on tenant `$1`, and the ms
/// their lease has left.
pub const READERS: &str = "SELECT node, \
     (extract(epoch FROM until - clock_timestamp()) * 1000)::bigint FROM halyard_leases \
     WHERE tenant = $1 AND node <> $2 AND until > clock_timestamp()";

/// Tells the writers that a lease holder applied a transaction (payload: `acks::payload`).
pub const ACK: &str = "SELECT pg_notify('halyard_ack', $1)";

/// Drops leases that ended a while ago.
pub const FORGET_LEASES: &str =
    "DELETE FROM halyard_leases WHERE until < clock_timestamp() - interval '1 minute'";

/// Nodes that shared their rates within the last second.
pub const NODES: &str =
    "SELECT count(*) FROM halyard_nodes WHERE seen_at > clock_timestamp() - interval '1 second'";

/// The statements above, prepared on one connection.
pub struct Prepared {
    /// [`COMMIT`].
    pub commit: Statement,
    /// [`LOCK_HEAD`].
    pub lock_head: Statement,
    /// [`APPEND`].
    pub append: Statement,
    /// [`AFTER`].
    pub after: Statement,
    /// [`HEAD`].
    pub head: Statement,
    /// [`SHARE_RATES`].
    pub share_rates: Statement,
    /// [`NODES`].
    pub nodes: Statement,
    /// [`TAKE_CELL`].
    pub take_cell: Statement,
    /// [`LOCK_SLOTS`].
    pub lock_slots: Statement,
    /// [`FIRST_SIGHT`].
    pub first_sight: Statement,
    /// [`LOAD_SLOTS`].
    pub load_slots: Statement,
    /// [`RESERVE_SLOT`].
    pub reserve_slot: Statement,
    /// [`TOUCH_SLOT`].
    pub touch_slot: Statement,
    /// [`RELEASE_SLOT`].
    pub release_slot: Statement,
    /// [`GRANT_LEASE`].
    pub grant_lease: Statement,
    /// [`READERS`].
    pub readers: Statement,
    /// [`ACK`].
    pub ack: Statement,
}

impl Prepared {
    /// Prepares them on `client`.
    pub fn on(client: &mut Client) -> Result<Prepared, postgres::Error> {
        Ok(Prepared {
            commit: client.prepare(COMMIT)?,
            lock_head: client.prepare(LOCK_HEAD)?,
            append: client.prepare(APPEND)?,
            after: client.prepare(AFTER)?,
            head: client.prepare(HEAD)?,
            share_rates: client.prepare(SHARE_RATES)?,
            nodes: client.prepare(NODES)?,
            take_cell: client.prepare(TAKE_CELL)?,
            lock_slots: client.prepare(LOCK_SLOTS)?,
            first_sight: client.prepare(FIRST_SIGHT)?,
            load_slots: client.prepare(LOAD_SLOTS)?,
            reserve_slot: client.prepare(RESERVE_SLOT)?,
            touch_slot: client.prepare(TOUCH_SLOT)?,
            release_slot: client.prepare(RELEASE_SLOT)?,
            grant_lease: client.prepare(GRANT_LEASE)?,
            readers: client.prepare(READERS)?,
            ack: client.prepare(ACK)?,
        })
    }
}
