//! Counts of refused requests by the limit that refused them, for `/metrics`.
//!
//! Responsible for: one relaxed atomic per [`Refusal`] reason (a fixed, bounded label set)
//! and their Prometheus rendering. Not responsible for: deciding refusals (see the limiter
//! and the agent runtime).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a request was refused with `429`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The tenant's request rate.
    TenantRate,
    /// Unauthenticated requests (and logins) from one address.
    IpRate,
    /// Messages per minute on one session.
    SessionRate,
    /// Concurrent sessions of a tenant.
    ConcurrentSessions,
    /// Running turns at their cap (`QUEUE_FULL`).
    QueueFull,
}

const REASONS: [(Refusal, &str); 5] = [
    (Refusal::TenantRate, "tenant_rate"),
    (Refusal::IpRate, "ip_rate"),
    (Refusal::SessionRate, "session_rate"),
    (Refusal::ConcurrentSessions, "concurrent_sessions"),
    (Refusal::QueueFull, "queue_full"),
];

/// Refusals so far, by reason.
#[derive(Debug, Default)]
pub struct Refusals([AtomicU64; REASONS.len()]);

impl Refusals {
    /// Counts one refusal.
    pub fn count(&self, why: Refusal) {
        let i = REASONS.iter().position(|(r, _)| *r == why).unwrap_or(0);
        self.0[i].fetch_add(1, Relaxed);
    }

    /// Renders `halyard_rate_limit_refusals_total{reason}`, every reason, zeros included.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str("# TYPE halyard_rate_limit_refusals_total counter\n");
        for (i, (_, reason)) in REASONS.iter().enumerate() {
            let n = self.0[i].load(Relaxed);
            let _ = writeln!(
                out,
                "halyard_rate_limit_refusals_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_rendered() {
        let r = Refusals::default();
        r.count(Refusal::QueueFull);
        r.count(Refusal::QueueFull);
        let mut s = String::new();
        r.render(&mut s);
        assert!(s.contains("halyard_rate_limit_refusals_total{reason=\"queue_full\"} 2\n"));
        assert!(s.contains("halyard_rate_limit_refusals_total{reason=\"ip_rate\"} 0\n"));
        assert_eq!(s.lines().count(), 1 + REASONS.len());
    }
}
