//! Read leases: when this node may answer a tenant's reads from its own copy, without
//! asking the database.
//!
//! Responsible for: the node's side of the protocol, as the table below: which tenants it
//! holds a lease on and until when (by its own clock, short of the database's by a
//! margin), which of them were read lately (renewed before they lapse), and which it must
//! acknowledge writes for. Not responsible for: the statements (`store`), or the writer's
//! wait (`acks`).
//!
//! | step | who | what |
//! |---|---|---|
//! | grant | a node reading tenant T | in one transaction: lock T's head row (as a writer does), record the lease `until` = now + [`TERM`] in `halyard_leases`, read the head; then catch up to it. Only then are T's reads answered from memory, until `t0 + TERM − MARGIN` (`t0`: before the transaction began) |
//! | write | any node | commit, then (a new statement, so it sees every lease granted before the commit) list the other nodes' unexpired leases on T, and wait until each acknowledged the write or its lease ran out |
//! | acknowledge | a lease holder | on hearing of T's transaction `n` (`NOTIFY halyard`) and applying it: `NOTIFY halyard_ack` with `n`, T and itself |
//! | renew | a lease holder | a grant again, for a tenant read within the last `TERM`, before its lease lapses |
//!
//! Why it holds: a grant and a write to T are serialized by T's head row. A write that
//! committed before a grant is in the head the grant reads. A grant that committed before
//! a write's commit is in the write's list (read after the commit), so the write is not
//! acknowledged before the holder applied it or stopped answering from memory (its local
//! lease ends `MARGIN` before the database's). A node whose `LISTEN` connection fails drops
//! all its leases at once, and takes none while it is down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long a lease lasts (in the database).
pub const TERM: Duration = Duration::from_secs(2);

/// How much sooner the node stops using it: covers clock rates that differ a little.
pub const MARGIN: Duration = Duration::from_millis(250);

/// A lease read within [`TERM`] is renewed once it has less than this left.
pub const RENEW_BEFORE: Duration = Duration::from_millis(1000);

#[derive(Debug)]
struct Held {
    /// Reads are answered from memory before this (by this node's clock).
    until: Instant,
    /// When a read last wanted it, in ms since [`Leases::epoch`].
    read_at: AtomicU64,
}

/// The leases this node holds.
#[derive(Debug)]
pub struct Leases {
    epoch: Instant,
    held: RwLock<HashMap<String, Held>>,
}

impl Default for Leases {
    fn default() -> Self {
        Leases {
            epoch: Instant::now(),
            held: RwLock::default(),
        }
    }
}

impl Leases {
    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Whether tenant `tenant`'s reads may be answered from memory at `now`; counts as a
    /// read wanting the lease (so that it is renewed).
    pub fn serves(&self, tenant: &str, now: Instant) -> bool {
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        let Some(h) = held.get(tenant) else {
            return false;
        };
        h.read_at.store(self.ms(now), Ordering::Relaxed);
        now < h.until
    }

    /// Whether a lease on `tenant` is valid at `now`, without counting as a read (a
    /// write's catch-up: writes alone do not keep a lease alive).
    pub fn holds(&self, tenant: &str, now: Instant) -> bool {
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        held.get(tenant).is_some_and(|h| now < h.until)
    }

    /// A lease on `tenant` whose grant began at `began` was granted, and this node has
    /// caught up to the head it read.
    pub fn granted(&self, tenant: &str, began: Instant) {
        let until = began + TERM - MARGIN;
        let read_at = AtomicU64::new(self.ms(began));
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        held.insert(tenant.to_owned(), Held { until, read_at });
    }

    /// Whether this node may hold (or be getting) a lease on `tenant`: it then acknowledges
    /// the tenant's writes. Erring on the side of yes only costs an acknowledgement.
    pub fn acknowledges(&self, tenant: &str) -> bool {
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        held.contains_key(tenant)
    }

    /// Marks `tenant` as being granted at `now` (acknowledged from now on, not served yet).
    pub fn granting(&self, tenant: &str, now: Instant) {
        let read_at = AtomicU64::new(self.ms(now));
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        held.entry(tenant.to_owned()).or_insert_with(|| Held {
            until: self.epoch,
            read_at,
        });
    }

    /// Tenants read within [`TERM`] whose lease ends within [`RENEW_BEFORE`] of `now`;
    /// forgets the others whose lease ended.
    pub fn to_renew(&self, now: Instant) -> Vec<String> {
        let recent = self.ms(now).saturating_sub(TERM.as_millis() as u64);
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        let read_lately = |h: &Held| h.read_at.load(Ordering::Relaxed) >= recent;
        held.retain(|_, h| now < h.until || read_lately(h));
        held.iter()
            .filter(|(_, h)| read_lately(h) && h.until < now + RENEW_BEFORE)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// Drops every lease (this node can no longer hear of writes).
    pub fn drop_all(&self) {
        self.held.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_serves_until_its_margin_and_is_renewed_while_read() {
        let l = Leases::default();
        let t0 = Instant::now();
        assert!(!l.serves("t", t0));
        l.granting("t", t0);
        assert!(l.acknowledges("t"));
        assert!(!l.serves("t", t0), "not served before it is granted");
        l.granted("t", t0);
        assert!(l.serves("t", t0 + Duration::from_millis(10)));
        assert!(!l.serves("t", t0 + TERM - MARGIN));
        // Read lately and close to its end: renewed.
        assert!(l.to_renew(t0 + Duration::from_millis(100)).is_empty());
        l.serves("t", t0 + TERM - RENEW_BEFORE);
        assert_eq!(l.to_renew(t0 + TERM - RENEW_BEFORE), vec!["t".to_string()]);
        // Not read for a whole term after it ended: forgotten.
        assert!(l.to_renew(t0 + TERM * 3).is_empty());
        assert!(!l.acknowledges("t"));
        l.granted("u", t0);
        l.drop_all();
        assert!(!l.serves("u", t0));
    }
}
