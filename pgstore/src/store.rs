//! The PostgreSQL store: each node a replica of one transaction log kept in PostgreSQL.
//!
//! Responsible for: committing a transaction (lock the tenant's head row, catch up, validate
//! and apply in memory, append to `halyard_txlog`, `COMMIT`, take the apply back if the
//! database refused), catching a tenant or every tenant up to the database, and the reads
//! (the same in-memory [`State`] and queries as the embedded store). Not responsible for:
//! the schema (`migrate`), connections (`pool`) or hearing other nodes' commits
//! (`listener`).
//!
//! Why a replicated log rather than a table per resource: the rules that make a `409` or a
//! `404` (unique names, existing parents, stream event order) live once, in
//! `halyard_storage::state`, and every node applies exactly the transactions the database
//! ordered, so the two backends cannot disagree on them. A tenant's transactions are
//! numbered 1, 2, ... (`tseq`) under a lock on its row of `halyard_heads`, so a node that
//! applies them in order has the same state as the node that wrote them.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use halyard_storage::codec::Encoder;
use halyard_storage::state::State;
use halyard_storage::{
    Backend, CellQuota, CellTaken, Completion, Mutation, RateShare, RateUse, StoreError, Txn,
};
use postgres::{GenericClient, Statement};

use crate::acks::Acks;
use crate::fence::Fences;
use crate::leases::{Leases, TERM};
use crate::members::Members;
use crate::pool::{Conn, Pool, PoolError};
use crate::queue::{Lanes, Refused};
use crate::reach::Reach;

/// Stripes of the per-tenant apply locks: tenants hashed to one stripe commit and catch up
/// one at a time on this node; others go on.
const STRIPES: usize = 256;

/// The PostgreSQL store. Share it with `Arc`; every method takes `&self` and may block on
/// the database: call it off the event loops.
pub struct PgStore {
    pub(crate) state: State,
    pub(crate) pool: Pool,
    /// Per stripe, the last transaction applied to each tenant of the stripe. Holding a
    /// stripe is the right to apply to its tenants.
    applied: Box<[Mutex<HashMap<String, i64>>]>,
    hasher: RandomState,
    fences: Fences,
    /// The same, for lease grants.
    grants: Fences,
    pub(crate) reach: Reach,
    pub(crate) members: Members,
    pub(crate) lanes: Lanes,
    pub(crate) leases: Leases,
    pub(crate) acks: Acks,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// A store over `pool` with an empty state (call [`Backend::catch_up`] with `None` to
    /// load it).
    pub(crate) fn new(pool: Pool) -> PgStore {
        PgStore {
            state: State::default(),
            pool,
            applied: (0..STRIPES).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            fences: Fences::default(),
            grants: Fences::default(),
            reach: Reach::default(),
            members: Members::new(),
            lanes: Lanes::default(),
            leases: Leases::default(),
            acks: Acks::default(),
        }
    }

    fn stripe(&self, tenant: &str) -> MutexGuard<'_, HashMap<String, i64>> {
        let i = (self.hasher.hash_one(tenant) as usize) % self.applied.len();
        self.applied[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The in-memory state (for tests and tools that read beyond the [`Backend`] queries).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// A server metadata value set once for the whole cluster: the stored one, or `value`
    /// if none was stored yet (then stored). Nodes starting together agree on one.
    pub fn meta_or_init(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut lease = self.lease()?;
        let c = lease.client();
        c.execute(
            "INSERT INTO halyard_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key, &value],
        )
        .map_err(db)?;
        let row = c
            .query_one("SELECT value FROM halyard_meta WHERE key = $1", &[&key])
            .map_err(db)?;
        Ok(row.get(0))
    }

    /// Every value of `halyard_meta` (the JWT secret), for copying a store.
    pub fn meta_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut lease = self.lease()?;
        let rows = lease
            .client()
            .query("SELECT key, value FROM halyard_meta ORDER BY key", &[])
            .map_err(db)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Whether no transaction was ever committed (a target for `halyard export-store`).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let mut lease = self.lease()?;
        let row = lease
            .client()
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM halyard_txlog) \
                 AND NOT EXISTS (SELECT 1 FROM halyard_meta)",
                &[],
            )
            .map_err(db)?;
        Ok(row.get(0))
    }

    fn take_cell(&self, key: &str, quota: CellQuota) -> Result<CellTaken, StoreError> {
        let us = |ns: u64| i64::try_from(ns / 1000).unwrap_or(i64::MAX);
        let (interval, tau) = (us(quota.interval_ns).max(1), us(quota.tau_ns));
        let mut lease = self.lease()?;
        let Conn { client, sql } = lease.conn();
        let row = client
            .query_one(&sql.take_cell, &[&key, &interval, &tau])
            .map_err(db)?;
        if row.get::<_, bool>(0) {
            return Ok(CellTaken::Allowed);
        }
        let ahead: i64 = row.get(1);
        let retry_us = u64::try_from(ahead - tau).unwrap_or(0).max(1);
        Ok(CellTaken::Denied {
            retry_in_ns: retry_us.saturating_mul(1000),
        })
    }

    fn share_rates_now(&self, node: &str, used: &[RateUse]) -> Result<RateShare, StoreError> {
        let tenants: Vec<&str> = used.iter().map(|u| u.tenant.as_str()).collect();
        let counts: Vec<i64> = used.iter().map(|u| i64::from(u.admitted)).collect();
        let intervals: Vec<i64> = used
            .iter()
            .map(|u| (u.interval_ns / 1_000).max(1) as i64)
            .collect();
        let ages: Vec<i64> = used.iter().map(|u| (u.age_ns / 1_000) as i64).collect();
        let mut lease = self.lease()?;
        let Conn { client, sql } = lease.conn();
        let rows = client
            .query(
                &sql.share_rates,
                &[&node, &tenants, &counts, &intervals, &ages],
            )
            .map_err(db)?;
        let debts: HashMap<&str, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let nodes: i64 = client.query_one(&sql.nodes, &[]).map_err(db)?.get(0);
        Ok(RateShare {
            debt_ns: tenants
                .iter()
                .map(|t| {
                    debts
                        .get(t)
                        .map_or(0, |us| us.max(&0).unsigned_abs() * 1_000)
                })
                .collect(),
            nodes: u32::try_from(nodes).unwrap_or(u32::MAX).max(1),
        })
    }

    pub(crate) fn lease(&self) -> Result<crate::pool::Lease<'_>, StoreError> {
        self.pool.get().map_err(|e| match e {
            PoolError::Busy => StoreError::Unavailable(e.to_string()),
            PoolError::Connect(_) => {
                self.reach.down(&e.to_string());
                StoreError::Unavailable(e.to_string())
            }
        })
    }

    /// Commits one transaction and returns once PostgreSQL committed it: applied here
    /// first (validated against this node's copy), then appended in one statement that
    /// succeeds only if no other node appended to the tenant since this node's copy. If one
    /// did, the apply is taken back and the transaction goes the locked way
    /// ([`PgStore::commit_locked`]), which cannot lose.
    ///
    /// Then it waits until every other node holding a read lease on the tenant applied it
    /// (or its lease ran out): see `leases`.
    pub(crate) fn commit_now(
        &self,
        tenant: &str,
        mutations: Vec<Mutation>,
    ) -> Result<(), StoreError> {
        let mut lease = self.lease()?;
        let n = self.append(lease.conn(), tenant, mutations)?;
        self.await_readers(lease.conn(), tenant, n);
        Ok(())
    }

    /// Waits for the other nodes answering `tenant`'s reads from memory to have applied
    /// its transaction `n`. If they cannot be listed, waits as long as a lease lasts.
    fn await_readers(&self, conn: &mut Conn, tenant: &str, n: i64) {
        let me = self.members.id();
        let rows = match conn.client.query(&conn.sql.readers, &[&tenant, &me]) {
            Ok(rows) => rows,
            Err(_) => return std::thread::sleep(TERM),
        };
        if rows.is_empty() {
            return;
        }
        let now = Instant::now();
        let holders: Vec<(String, Instant)> = rows
            .iter()
            .map(|r| {
                let left = u64::try_from(r.get::<_, i64>(1)).unwrap_or(0);
                (r.get(0), now + Duration::from_millis(left + 1))
            })
            .collect();
        self.acks.wait(tenant, n, &holders);
    }

    /// Validates, applies and appends one transaction; its number once committed.
    fn append(
        &self,
        conn: &mut Conn,
        tenant: &str,
        mutations: Vec<Mutation>,
    ) -> Result<i64, StoreError> {
        let mut e = Encoder::with_buffer(Vec::new());
        Txn::encode_parts(tenant, &mutations, &mut e);
        let payload = e.into_bytes();
        // The connection first, then the stripe: the order every path takes.
        let mut stripe = self.stripe(tenant);
        let applied = stripe.entry(tenant.to_owned()).or_insert(0);
        // Refused here (409, 404): nothing was written.
        let undo = self
            .state
            .write_shard(tenant)
            .apply_undoable(tenant, mutations)?;
        let next = *applied + 1;
        let note = format!("{next} {tenant}");
        match conn
            .client
            .query_opt(&conn.sql.commit, &[&tenant, &next, &payload, &note])
        {
            Ok(Some(_)) => {
                *applied = next;
                Ok(next)
            }
            Ok(None) => {
                // Another node appended first: its transactions go before this one.
                self.state.write_shard(tenant).undo(undo);
                self.commit_locked(conn, tenant, applied, &payload)
            }
            Err(err) => {
                // Perhaps committed after all (the connection broke before the answer):
                // then the next catch-up applies it again from the log, in its place.
                self.state.write_shard(tenant).undo(undo);
                Err(db(err))
            }
        }
    }

    /// Commits under the lock of the tenant's head row: lock, catch up, apply, append,
    /// `COMMIT`.
    fn commit_locked(
        &self,
        conn: &mut Conn,
        tenant: &str,
        applied: &mut i64,
        payload: &[u8],
    ) -> Result<i64, StoreError> {
        let Conn { client, sql } = conn;
        let mut tx = client.transaction().map_err(db)?;
        let head: i64 = tx.query_one(&sql.lock_head, &[&tenant]).map_err(db)?.get(0);
        if head > *applied {
            self.apply_after(&mut tx, &sql.after, tenant, applied)?;
        }
        let mutations = Txn::decode(payload)
            .map_err(|e| StoreError::Invalid(e.to_string()))?
            .mutations;
        // Refused here (409, 404): the transaction rolls back when dropped.
        let undo = self
            .state
            .write_shard(tenant)
            .apply_undoable(tenant, mutations)?;
        let next = head + 1;
        let note = format!("{next} {tenant}");
        let written = tx
            .query_one(&sql.append, &[&tenant, &next, &payload, &note])
            .and_then(|_| tx.commit());
        match written {
            Ok(()) => {
                *applied = next;
                Ok(next)
            }
            Err(err) => {
                self.state.write_shard(tenant).undo(undo);
                Err(db(err))
            }
        }
    }

    /// Applies the tenant's transactions after `*applied`, in order, and moves `*applied`.
    fn apply_after(
        &self,
        client: &mut impl GenericClient,
        after: &Statement,
        tenant: &str,
        applied: &mut i64,
    ) -> Result<(), StoreError> {
        let rows = client.query(after, &[&tenant, &*applied]).map_err(db)?;
        for row in rows {
            let tseq: i64 = row.get(0);
            let payload: &[u8] = row.get(1);
            let txn = Txn::decode(payload).map_err(|e| {
                StoreError::Unavailable(format!("transaction {tseq} of {tenant:?} unreadable: {e}"))
            })?;
            if txn.tenant != tenant {
                return Err(StoreError::Unavailable(format!(
                    "transaction {tseq} of {tenant:?} is for tenant {:?}",
                    txn.tenant
                )));
            }
            if let Err(e) = self.state.apply(tenant, txn.mutations) {
                // The node that wrote it validated it against this same state: a bug.
                // Skipping keeps this node serving; the reason is kept for readiness.
                self.reach.diverged(&format!(
                    "transaction {tseq} of {tenant:?} refused here: {e}"
                ));
            }
            *applied = tseq;
        }
        Ok(())
    }

    /// Catches `tenant` up to transaction `head` (known committed) if it is behind.
    pub(crate) fn catch_up_to(
        &self,
        conn: &mut Conn,
        tenant: &str,
        head: i64,
    ) -> Result<(), StoreError> {
        let mut stripe = self.stripe(tenant);
        let applied = stripe.entry(tenant.to_owned()).or_insert(0);
        if head > *applied {
            self.apply_after(&mut conn.client, &conn.sql.after, tenant, applied)?;
        }
        Ok(())
    }

    /// One round trip for the tenant's head, and the catch-up to it (a write's handler:
    /// it needs the acknowledged writes, not a lease).
    fn fence(&self, tenant: &str) -> Result<(), StoreError> {
        let mut lease = self.lease()?;
        let conn = lease.conn();
        let head = conn
            .client
            .query_opt(&conn.sql.head, &[&tenant])
            .map_err(db)?
            .map_or(0, |row| row.get::<_, i64>(0));
        self.catch_up_to(conn, tenant, head)
    }

    /// Grants (or renews) this node a read lease on `tenant` and catches the tenant up to
    /// the head read under it (see `leases`): from then on its reads are answered from
    /// memory until the lease lapses. A node that cannot hear of writes (its `LISTEN`
    /// connection is down) catches up without taking the lease.
    pub(crate) fn grant(&self, tenant: &str) -> Result<(), StoreError> {
        let began = Instant::now();
        self.leases.granting(tenant, began);
        let mut lease = self.lease()?;
        let conn = lease.conn();
        let head = {
            let Conn { client, sql } = &mut *conn;
            let mut tx = client.transaction().map_err(db)?;
            let head: i64 = tx.query_one(&sql.lock_head, &[&tenant]).map_err(db)?.get(0);
            let term = TERM.as_millis() as f64;
            tx.execute(&sql.grant_lease, &[&tenant, &self.members.id(), &term])
                .map_err(db)?;
            tx.commit().map_err(db)?;
            head
        };
        self.catch_up_to(conn, tenant, head)?;
        if self.reach.is_up() {
            self.leases.granted(tenant, began);
        }
        Ok(())
    }

    /// Tells the writers that this node applied `tenant`'s transactions up to `n`, if it
    /// may be answering the tenant's reads from memory.
    pub(crate) fn acknowledge(
        &self,
        conn: &mut Conn,
        tenant: &str,
        n: i64,
    ) -> Result<(), StoreError> {
        if !self.leases.acknowledges(tenant) {
            return Ok(());
        }
        let note = crate::acks::payload(n, self.members.id(), tenant);
        conn.client.query(&conn.sql.ack, &[&note]).map_err(db)?;
        Ok(())
    }

    /// Catches every tenant up.
    fn catch_up_all(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let heads = conn
            .client
            .query("SELECT tenant, tseq FROM halyard_heads", &[])
            .map_err(db)?;
        for row in heads {
            let tenant: &str = row.get(0);
            self.catch_up_to(conn, tenant, row.get(1))?;
        }
        Ok(())
    }
}

/// A database error as the store reports it: `503`, nothing applied.
pub(crate) fn db(e: postgres::Error) -> StoreError {
    StoreError::Unavailable(crate::explain(&e))
}

impl Backend for PgStore {
    fn is_healthy(&self) -> bool {
        self.reach.is_up()
    }

    /// Commits in PostgreSQL before returning: `done` runs at once, the write is durable
    /// as the database's `synchronous_commit` makes it.
    fn commit(
        &self,
        tenant: &str,
        mutations: Vec<Mutation>,
        done: Completion,
    ) -> Result<(), StoreError> {
        self.commit_now(tenant, mutations)?;
        done(Ok(()));
        Ok(())
    }

    fn commit_unawaited(&self, tenant: &str, mutations: Vec<Mutation>) -> Result<(), StoreError> {
        self.commit_now(tenant, mutations)
    }

    fn commit_queued(
        &self,
        tenant: &str,
        mutations: Vec<Mutation>,
        done: Option<Completion>,
    ) -> Result<(), StoreError> {
        let lane = self.hasher.hash_one(tenant) as usize;
        match self.lanes.push(lane, tenant, mutations, done) {
            Ok(()) => Ok(()),
            Err(Refused::Full) => Err(Refused::full()),
            Err(Refused::NotRunning(mutations, Some(done))) => self.commit(tenant, mutations, done),
            Err(Refused::NotRunning(mutations, None)) => self.commit_now(tenant, mutations),
        }
    }

    halyard_storage::state_reads!(state);

    fn is_shared(&self) -> bool {
        true
    }

    fn node(&self) -> &str {
        self.members.id()
    }

    fn take_shared_cell(
        &self,
        key: &str,
        quota: CellQuota,
    ) -> Option<Result<CellTaken, StoreError>> {
        Some(self.take_cell(key, quota))
    }

    fn slots(&self) -> Option<&dyn halyard_storage::slots::Slots> {
        Some(self)
    }

    fn catch_up_to_read(&self, tenant: &str) -> Result<(), StoreError> {
        if self.leases.serves(tenant, Instant::now()) {
            return Ok(());
        }
        self.grants.pass(tenant, || self.grant(tenant))
    }

    fn is_current(&self, tenant: &str) -> bool {
        self.leases.serves(tenant, Instant::now())
    }

    fn is_node_gone(&self, node: &str) -> bool {
        self.members.is_gone(node, std::time::Instant::now())
    }

    fn catch_up(&self, tenant: Option<&str>) -> Result<(), StoreError> {
        match tenant {
            None => self.catch_up_all(self.lease()?.conn()),
            Some(tenant) if self.leases.holds(tenant, Instant::now()) => Ok(()),
            Some(tenant) => self.fences.pass(tenant, || self.fence(tenant)),
        }
    }

    fn share_rates(&self, node: &str, used: &[RateUse]) -> Option<Result<RateShare, StoreError>> {
        Some(self.share_rates_now(node, used))
    }

    fn expire_streams(&self, now_ms: u64, retention_ms: u64) -> Result<usize, StoreError> {
        halyard_storage::backend::delete_streams(
            self,
            self.state.expired_streams(now_ms, retention_ms),
        )
    }
}
