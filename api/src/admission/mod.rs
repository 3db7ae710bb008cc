//! Admission limits (CONVENTIONS section 5): per-tenant request rate (shared by the nodes
//! of a cluster, see `shared`), per-IP rate of unauthenticated requests, per-session
//! message rate, concurrent sessions per tenant.
//!
//! Responsible for: the decisions, lock-free on the per-request path (GCRA cells in
//! pre-sized tables, see `gcra` and `table`), and the `X-RateLimit-*` values of an
//! admitted request. Not responsible for: when to ask (the API's `admit` asks before the
//! body is read) or the execution queue (the agent runtime owns it).

pub mod gcra;
pub mod refusals;
pub mod sessions;
pub mod shared;
pub mod table;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use halyard_storage::slots::SlotRequest;
use halyard_storage::{Backend, CellQuota, CellTaken, Limits};

use crate::error::ApiError;
use gcra::{Decision, Quota};
use refusals::{Refusal, Refusals};
use table::CellTable;

/// Settings of the limiter.
#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    /// Whether limits are enforced at all (benchmarks compare with them off).
    pub enabled: bool,
    /// Requests per second allowed per client IP before it authenticates.
    pub unauthenticated_per_second: u32,
    /// Burst of the same.
    pub unauthenticated_burst: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            enabled: true,
            unauthenticated_per_second: 20,
            unauthenticated_burst: 40,
        }
    }
}

/// The `X-RateLimit-*` values of an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    /// Bucket capacity.
    pub limit: u32,
    /// Whole requests left now.
    pub remaining: u32,
    /// Unix seconds when the bucket is full again.
    pub reset: u64,
}

/// The limiter of one server.
#[derive(Debug)]
pub struct Limiter {
    cfg: LimitConfig,
    epoch: Instant,
    tenants: CellTable,
    ips: CellTable,
    session_rates: CellTable,
    /// Concurrent sessions per tenant on this node (see [`Limiter::reserve_session`]).
    sessions: sessions::SessionSlots,
    /// Refusals by reason, for `/metrics`.
    pub refusals: Refusals,
    /// Tenant rates shared with other nodes, once [`Limiter::share`] started them.
    shared: std::sync::OnceLock<shared::SharedRates>,
    /// The shared store keeping the buckets that must be exact across nodes (session
    /// message rates), once [`Limiter::share`] was called.
    exact: std::sync::OnceLock<Exact>,
}

/// The store of [`Limiter::exact`].
struct Exact(Arc<dyn Backend>);

impl std::fmt::Debug for Exact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exact(shared store)")
    }
}

fn retry_ms(ns: u64) -> u64 {
    ns.div_ceil(1_000_000).max(1)
}

impl Limiter {
    /// A limiter with `cfg`.
    pub fn new(cfg: LimitConfig) -> Limiter {
        Limiter {
            cfg,
            epoch: Instant::now(),
            tenants: CellTable::new(16 * 1024),
            ips: CellTable::new(16 * 1024),
            session_rates: CellTable::new(64 * 1024),
            sessions: sessions::SessionSlots::default(),
            refusals: Refusals::default(),
            shared: std::sync::OnceLock::new(),
            exact: std::sync::OnceLock::new(),
        }
    }

    /// Whether limits are enforced.
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// Nanoseconds on the limiter's clock at `at` (never 0). Callers pass the instant the
    /// engine stamped on the request head, so admission reads no clock of its own.
    fn now(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1
    }

    fn ip_quota(&self) -> Quota {
        Quota::per_second(
            self.cfg.unauthenticated_per_second,
            self.cfg.unauthenticated_burst,
        )
    }

    /// Charges one unauthenticated request (a failed credential, a login attempt).
    pub fn charge_ip(&self, ip: IpAddr, at: Instant) -> Result<(), ApiError> {
        if !self.cfg.enabled {
            return Ok(());
        }
        let now = self.now(at);
        let Some(cell) = self.ips.cell(self.ips.key_of(&ip), now) else {
            return Ok(());
        };
        match gcra::take(cell, now, self.ip_quota()) {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny { retry_in } => {
                self.refusals.count(Refusal::IpRate);
                Err(ip_limited(retry_in))
            }
        }
    }

    /// Takes one request from tenant `id`'s bucket.
    pub fn take_tenant(
        &self,
        id: &str,
        limits: &Limits,
        at: Instant,
    ) -> Result<RateHeaders, ApiError> {
        let q = Quota::per_second(limits.requests_per_second, limits.burst);
        if !self.cfg.enabled {
            return Ok(RateHeaders {
                limit: q.burst,
                remaining: q.burst,
                reset: unix_now(),
            });
        }
        let now = self.now(at);
        let cell = self
            .tenants
            .cell(self.tenants.key_of(id), now)
            .ok_or_else(|| {
                self.refusals.count(Refusal::TenantRate);
                rate_limited("Tenant request rate limit exceeded", 1_000_000_000)
            })?;
        let local = || gcra::take(cell, now, q);
        let decision = match self.shared.get() {
            Some(shared) => shared.admit(id, q, limits.requests_per_second, local),
            None => local(),
        };
        match decision {
            Decision::Allow { remaining, full_in } => Ok(RateHeaders {
                limit: q.burst,
                remaining,
                reset: unix_now() + full_in.div_ceil(1_000_000_000),
            }),
            Decision::Deny { retry_in } => {
                self.refusals.count(Refusal::TenantRate);
                Err(rate_limited("Tenant request rate limit exceeded", retry_in))
            }
        }
    }

    /// Shares tenant request rates with the other nodes of `store` from now on: a thread
    /// reports this node's counts every [`shared::SYNC_EVERY`] and brings the tenants'
    /// cells up to the shared debt (see `shared` for the bound). Does nothing with limits
    /// off.
    pub fn share(self: &Arc<Self>, store: Arc<dyn Backend>) -> std::io::Result<()> {
        if !self.cfg.enabled {
            return Ok(());
        }
        let node = match store.node() {
            "" => halyard_storage::ids::new_id("node_"),
            node => node.to_owned(),
        };
        if self.shared.set(shared::SharedRates::new(node)).is_err() {
            return Ok(());
        }
        let _ = self.exact.set(Exact(store.clone()));
        let limiter = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("halyard-rate-sync".into())
            .spawn(move || loop {
                std::thread::sleep(shared::SYNC_EVERY);
                let Some(l) = limiter.upgrade() else { return };
                if !l.sync(&*store) {
                    return;
                }
            })?;
        Ok(())
    }

    /// One sync of the shared rates; `false` once there is nothing to share.
    fn sync(&self, store: &dyn Backend) -> bool {
        let Some(shared) = self.shared.get() else {
            return false;
        };
        // Read before the round trip: the debts are as of the database's now, which is
        // later, so a cell moved to `now + debt` is never ahead of the shared bucket.
        let now = self.now(Instant::now());
        match shared.sync(store) {
            None => false,
            // The store is unreachable: each node goes on with its own buckets meanwhile.
            Some(Err(_)) => true,
            Some(Ok(debts)) => {
                // Less one interval: the round trips' jitter (a few ms) would otherwise
                // push a cell past the shared bucket and deny what `Retry-After` promised.
                let slack = shared::SYNC_EVERY.as_nanos() as u64;
                let debts = debts.into_iter().map(|(t, d)| (t, d.saturating_sub(slack)));
                for (tenant, debt) in debts.filter(|(_, d)| *d > 0) {
                    if let Some(cell) = self.tenants.cell(self.tenants.key_of(&tenant), now) {
                        cell.fetch_max(now + debt, std::sync::atomic::Ordering::AcqRel);
                    }
                }
                true
            }
        }
    }

    /// Reserves tenant `tenant`'s concurrency slot for new session `id` if fewer than `max`
    /// of its sessions are active and were used within [`sessions::IDLE_MS`]; `load` lists
    /// its active sessions with their last use, the first time the tenant is seen. Exact
    /// across nodes on a shared store (this then waits on the database: a handler thread).
    pub fn reserve_session(
        &self,
        tenant: &str,
        id: &str,
        max: u32,
        now_ms: u64,
        load: &dyn Fn() -> Vec<(String, u64)>,
    ) -> Result<(), ApiError> {
        if !self.cfg.enabled {
            return Ok(());
        }
        let taken = match self.exact.get().and_then(|e| e.0.slots()) {
            Some(slots) => slots.reserve(&SlotRequest {
                group: tenant,
                member: id,
                max,
                now_ms,
                idle_ms: sessions::IDLE_MS,
                present: load,
            })?,
            None => self.sessions.reserve(tenant, id, max, now_ms, load),
        };
        taken.map_err(|ms| {
            self.refusals.count(Refusal::ConcurrentSessions);
            ApiError::RateLimited("Concurrent session limit exceeded".into(), ms)
        })
    }

    /// Session `id` ended, or was not stored after all: its slot is free. On a shared
    /// store this waits on the database; a failure leaves the slot to go idle.
    pub fn release_session(&self, tenant: &str, id: &str) {
        match self.exact.get().and_then(|e| e.0.slots()) {
            Some(slots) => {
                let _ = slots.release(tenant, id);
            }
            None => self.sessions.release(tenant, id),
        }
    }

    /// A turn of session `id` is queued (a handler thread): on a shared store its slot is
    /// touched now, off the event loop. Otherwise [`Limiter::turn_stored`] touches it.
    pub fn turn_queued(&self, tenant: &str, id: &str, now_ms: u64) -> Result<(), ApiError> {
        if let Some(slots) = self.exact.get().and_then(|e| e.0.slots()) {
            slots.touch(tenant, id, now_ms)?;
        }
        Ok(())
    }

    /// A turn's first write was stored (`true`) or refused (`false`, `new_session`: the
    /// session does not exist). Runs on an event loop, so it never waits: on a shared store
    /// the handler touched the slot already ([`Limiter::turn_queued`]), and the slot of a
    /// session never stored goes idle instead of being released.
    pub fn turn_stored(&self, tenant: &str, id: &str, now_ms: u64, stored: bool, new: bool) {
        if self.exact.get().is_some_and(|e| e.0.slots().is_some()) {
            return;
        }
        match (stored, new) {
            (true, _) => self.sessions.touch(tenant, id, now_ms),
            (false, true) => self.sessions.release(tenant, id),
            (false, false) => {}
        }
    }

    /// Takes one message from session `id`'s per-minute budget: in the shared store's
    /// bucket when nodes share one (exact across them; this waits on the database, so it
    /// runs on a handler thread), else in this node's.
    pub fn take_session_message(
        &self,
        id: &str,
        per_minute: u32,
        at: Instant,
    ) -> Result<(), ApiError> {
        if !self.cfg.enabled {
            return Ok(());
        }
        let q = Quota::per_period(per_minute, 60_000_000_000, per_minute);
        if let Some(store) = self.exact.get() {
            let quota = CellQuota {
                interval_ns: q.interval,
                tau_ns: q.tau,
            };
            if let Some(taken) = store.0.take_shared_cell(&format!("msg {id}"), quota) {
                return match taken? {
                    CellTaken::Allowed => Ok(()),
                    CellTaken::Denied { retry_in_ns } => Err(self.session_denied(retry_in_ns)),
                };
            }
        }
        let now = self.now(at);
        let Some(cell) = self.session_rates.cell(self.session_rates.key_of(id), now) else {
            self.refusals.count(Refusal::SessionRate);
            return Err(rate_limited(
                "Session message rate limit exceeded",
                1_000_000_000,
            ));
        };
        match gcra::take(cell, now, q) {
            Decision::Allow { .. } => Ok(()),
            Decision::Deny { retry_in } => Err(self.session_denied(retry_in)),
        }
    }

    fn session_denied(&self, retry_ns: u64) -> ApiError {
        self.refusals.count(Refusal::SessionRate);
        rate_limited("Session message rate limit exceeded", retry_ns)
    }
}

fn unix_now() -> u64 {
    crate::time::now_ms() / 1000
}

fn rate_limited(message: &str, retry_ns: u64) -> ApiError {
    ApiError::RateLimited(message.into(), retry_ms(retry_ns))
}

fn ip_limited(retry_ns: u64) -> ApiError {
    rate_limited(
        "Too many unauthenticated requests from this address",
        retry_ns,
    )
}
