//! Cross-tenant lookup indexes: credential digests, session ids, login emails and CORS
//! origins, each split over several `RwLock`ed hash maps.
//!
//! Responsible for: the lookups that must work before the tenant is known (authentication
//! by key digest, login by email, a session by id alone, a preflight by origin). Not
//! responsible for: keeping itself consistent with the tenants' data (the `apply` code
//! updates it under the tenant's shard lock), or per-tenant lookups (`tenant`).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::RwLock;

const INDEX_SHARDS: usize = 16;

/// A hash map split over `RwLock`ed shards so that readers on different keys rarely touch
/// the same lock word.
#[derive(Debug)]
pub struct ShardedMap<K, V> {
    hasher: RandomState,
    shards: Box<[RwLock<HashMap<K, V>>]>,
}

impl<K: Hash + Eq, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            hasher: RandomState::new(),
            shards: (0..INDEX_SHARDS)
                .map(|_| RwLock::new(HashMap::new()))
                .collect(),
        }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    fn shard<Q: Hash + ?Sized>(&self, k: &Q) -> &RwLock<HashMap<K, V>> {
        let i = (self.hasher.hash_one(k) as usize) % self.shards.len();
        &self.shards[i]
    }

    /// Reads the value of `k` through `f`.
    pub fn with<Q, R>(&self, k: &Q, f: impl FnOnce(Option<&V>) -> R) -> R
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let g = self.shard(k).read().unwrap_or_else(|p| p.into_inner());
        f(g.get(k))
    }

    /// Changes the entry of `k` through `f` (which may insert or remove it).
    pub fn update<R>(&self, k: K, f: impl FnOnce(&mut HashMap<K, V>, K) -> R) -> R {
        let mut g = self.shard(&k).write().unwrap_or_else(|p| p.into_inner());
        f(&mut g, k)
    }

    /// Inserts or replaces.
    pub fn insert(&self, k: K, v: V) {
        self.update(k, |m, k| m.insert(k, v));
    }

    /// Removes every entry.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            s.write().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Removes.
    pub fn remove(&self, k: &K) {
        let mut g = self.shard(k).write().unwrap_or_else(|p| p.into_inner());
        g.remove(k);
    }
}

/// Where an API key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLocation {
    /// Tenant id.
    pub tenant: String,
    /// Key id.
    pub key_id: String,
}

/// Where a public key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyLocation {
    /// Tenant id.
    pub tenant: String,
    /// Project id.
    pub project_id: String,
    /// Public key id.
    pub key_id: String,
}

/// Where a session lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLocation {
    /// Tenant id.
    pub tenant: String,
    /// Project id.
    pub project_id: String,
}

/// The cross-tenant indexes.
#[derive(Debug, Default)]
pub struct GlobalIndex {
    /// API key digest to its key.
    pub keys: ShardedMap<[u8; 32], KeyLocation>,
    /// Public key digest to its key.
    pub public_keys: ShardedMap<[u8; 32], PublicKeyLocation>,
    /// Session id to its tenant and project.
    pub sessions: ShardedMap<String, SessionLocation>,
    /// Login email to the (tenant, user id) pairs using it.
    pub emails: ShardedMap<String, Vec<(String, String)>>,
    /// Origin to the number of public keys allowing it.
    pub origins: ShardedMap<String, u32>,
}

impl GlobalIndex {
    /// Removes every entry.
    pub fn clear(&self) {
        self.keys.clear();
        self.public_keys.clear();
        self.sessions.clear();
        self.emails.clear();
        self.origins.clear();
    }

    /// Records one more user with `email`.
    pub fn add_email(&self, email: &str, tenant: &str, user_id: &str) {
        self.emails.update(email.to_owned(), |m, k| {
            m.entry(k)
                .or_default()
                .push((tenant.to_owned(), user_id.to_owned()))
        });
    }

    /// Forgets one user with `email`.
    pub fn remove_email(&self, email: &str, tenant: &str, user_id: &str) {
        self.emails.update(email.to_owned(), |m, k| {
            if let Some(v) = m.get_mut(&k) {
                v.retain(|(t, u)| !(t == tenant && u == user_id));
                if v.is_empty() {
                    m.remove(&k);
                }
            }
        });
    }

    /// Counts one more public key allowing each origin.
    pub fn add_origins(&self, origins: &[String]) {
        for o in origins {
            self.origins
                .update(o.clone(), |m, k| *m.entry(k).or_insert(0) += 1);
        }
    }

    /// Counts one public key fewer allowing each origin.
    pub fn remove_origins(&self, origins: &[String]) {
        for o in origins {
            self.origins.update(o.clone(), |m, k| {
                if let Some(n) = m.get_mut(&k) {
                    *n -= 1;
                    if *n == 0 {
                        m.remove(&k);
                    }
                }
            });
        }
    }
}
