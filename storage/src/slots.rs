//! Slots shared by the nodes of a cluster: a limited set of members per group, each
//! counting until it is released or goes idle (the concurrent sessions of a tenant).
//!
//! Responsible for: the interface a shared store offers so that such a limit is exact
//! across nodes ([`crate::Backend::slots`]). Not responsible for: the limit on one node
//! (the API keeps it in memory) or how a store makes a reservation atomic (its own doing).

use crate::StoreError;

/// A reservation asked of [`Slots::reserve`].
pub struct SlotRequest<'a> {
    /// The group (a tenant id).
    pub group: &'a str,
    /// The new member (a session id).
    pub member: &'a str,
    /// Members allowed at once.
    pub max: u32,
    /// Now, ms since the epoch.
    pub now_ms: u64,
    /// A member not touched for this long no longer counts.
    pub idle_ms: u64,
    /// The group's members as the caller's copy of the data has them (id, last use in ms),
    /// asked for the first time the store sees the group.
    pub present: &'a dyn Fn() -> Vec<(String, u64)>,
}

/// The slots of a shared store. Every call waits on the network: never on an event loop.
pub trait Slots: Send + Sync {
    /// Adds the member if fewer than `max` count, atomically across nodes. `Ok(Err(ms))`:
    /// full; the oldest member goes idle in `ms` milliseconds.
    fn reserve(&self, req: &SlotRequest<'_>) -> Result<Result<(), u64>, StoreError>;

    /// The member was used at `now_ms` (it counts again if it had gone idle).
    fn touch(&self, group: &str, member: &str, now_ms: u64) -> Result<(), StoreError>;

    /// The member no longer counts.
    fn release(&self, group: &str, member: &str) -> Result<(), StoreError>;
}
