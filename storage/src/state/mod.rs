//! The in-memory state rebuilt from the log: every resource, indexed for the API's reads.
//!
//! Responsible for: where data lives in memory and how it is locked. Tenants are spread over
//! 64 shards by a hash of the tenant id, each shard a `RwLock<HashMap<tenant id,
//! TenantState>>`; a commit takes one shard's write lock, readers take read locks, so two
//! cores reading (any tenants) never serialize, and a write blocks only readers of the
//! tenants in its shard for the microseconds of an in-memory apply (never for an fsync).
//! Cross-tenant lookups (key digests, session ids, emails, origins) are in [`index`], also
//! sharded. Server metadata has its own lock.
//! Not responsible for: durability (`writer`), the log format, or the query API (`query`).
//!
//! Messages are kept in memory in their compact encoded form ([`crate::model::StoredMessage`])
//! rather than left on disk and read by offset: one allocation per message, no file
//! descriptors or offsets to keep valid across compaction, and reads that never touch the
//! disk. The measured cost is in `benches/RESULTS.md` (RSS with 1,000,000 messages).

pub mod apply;
pub mod expiry;
pub mod index;
pub mod named;
pub mod query;
#[macro_use]
pub mod reads;
pub mod rollup;
pub mod tenant;
pub mod usage;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::StoreError;
use crate::mutation::Mutation;
use apply::Ctx;
use index::GlobalIndex;
use tenant::TenantState;

const TENANT_SHARDS: usize = 64;

/// The tenants of one shard.
#[derive(Debug, Default)]
pub struct Shard {
    /// Tenant id to its data.
    pub tenants: HashMap<String, TenantState>,
}

/// All in-memory data.
#[derive(Debug)]
pub struct State {
    hasher: RandomState,
    shards: Box<[RwLock<Shard>]>,
    /// Cross-tenant indexes.
    pub index: GlobalIndex,
    meta: RwLock<HashMap<String, Vec<u8>>>,
}

impl Default for State {
    fn default() -> Self {
        State {
            hasher: RandomState::new(),
            shards: (0..TENANT_SHARDS)
                .map(|_| RwLock::new(Shard::default()))
                .collect(),
            index: GlobalIndex::default(),
            meta: RwLock::new(HashMap::new()),
        }
    }
}

/// A write-locked shard: the caller validates, applies and queues its log record while
/// holding it, which is what makes the in-memory order equal the log order.
pub struct ShardWriteGuard<'a> {
    state: &'a State,
    guard: RwLockWriteGuard<'a, Shard>,
}

impl ShardWriteGuard<'_> {
    /// Validates and applies a transaction; on error nothing changed.
    pub fn apply(&mut self, tenant: &str, muts: Vec<Mutation>) -> Result<(), StoreError> {
        let mut ctx = Ctx {
            tenants: &mut self.guard.tenants,
            index: &self.state.index,
            meta: &self.state.meta,
        };
        apply::apply_txn(&mut ctx, tenant, muts)
    }

    /// [`ShardWriteGuard::apply`], keeping what [`ShardWriteGuard::undo`] needs to take the
    /// transaction back (a commit elsewhere that failed after the apply).
    pub fn apply_undoable(
        &mut self,
        tenant: &str,
        muts: Vec<Mutation>,
    ) -> Result<apply::Applied, StoreError> {
        let mut ctx = Ctx {
            tenants: &mut self.guard.tenants,
            index: &self.state.index,
            meta: &self.state.meta,
        };
        apply::apply_txn_undoable(&mut ctx, tenant, muts, true)
    }

    /// Takes back a transaction of [`ShardWriteGuard::apply_undoable`]; nothing may have
    /// been applied to its tenant since.
    pub fn undo(&mut self, applied: apply::Applied) {
        let mut ctx = Ctx {
            tenants: &mut self.guard.tenants,
            index: &self.state.index,
            meta: &self.state.meta,
        };
        apply::undo_txn(&mut ctx, applied);
    }
}

impl State {
    fn shard_index(&self, tenant: &str) -> usize {
        (self.hasher.hash_one(tenant) as usize) % self.shards.len()
    }

    /// Write-locks the shard of `tenant`. A poisoned lock (a panic while applying) is taken
    /// over: apply never leaves a half-applied mutation behind except through a bug, and
    /// refusing all further writes of the shard would be worse.
    pub fn write_shard(&self, tenant: &str) -> ShardWriteGuard<'_> {
        let guard = self.shards[self.shard_index(tenant)]
            .write()
            .unwrap_or_else(|p| p.into_inner());
        ShardWriteGuard { state: self, guard }
    }

    fn read_shard(&self, tenant: &str) -> RwLockReadGuard<'_, Shard> {
        self.shards[self.shard_index(tenant)]
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a transaction (replay and snapshot loading).
    pub fn apply(&self, tenant: &str, muts: Vec<Mutation>) -> Result<(), StoreError> {
        self.write_shard(tenant).apply(tenant, muts)
    }

    /// Reads one tenant through `f`; `None` when the tenant does not exist.
    pub fn with_tenant<R>(&self, tenant: &str, f: impl FnOnce(&TenantState) -> R) -> Option<R> {
        self.read_shard(tenant).tenants.get(tenant).map(f)
    }

    /// Visits every tenant, shard by shard (one read lock at a time).
    pub fn for_each_tenant(&self, mut f: impl FnMut(&TenantState)) {
        for shard in self.shards.iter() {
            let g = shard.read().unwrap_or_else(|p| p.into_inner());
            for t in g.tenants.values() {
                f(t);
            }
        }
    }

    /// Drops everything (after a snapshot failed to load halfway).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            shard
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .tenants
                .clear();
        }
        self.index.clear();
        self.meta.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A server metadata value.
    pub fn meta(&self, key: &str) -> Option<Vec<u8>> {
        self.meta
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// All server metadata, for snapshots.
    pub fn meta_entries(&self) -> Vec<(String, Vec<u8>)> {
        let g = self.meta.read().unwrap_or_else(|p| p.into_inner());
        g.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
