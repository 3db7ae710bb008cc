//! The generic cell rate algorithm on one `AtomicU64`.
//!
//! Responsible for: the decision of one token bucket (rate `r` per second, burst `b`)
//! expressed as GCRA: the cell holds the theoretical arrival time (TAT) in nanoseconds on
//! the limiter's clock; a request at `now` is allowed when `TAT - now <= tau`, with
//! emission interval `T = 1s / r` and `tau = T * (b - 1)`, and moves the TAT to
//! `max(TAT, now) + T` by compare-and-swap. Denials never write, so a flood of denied
//! requests does not contend on the cache line. Not responsible for: finding the cell.

use std::sync::atomic::{AtomicU64, Ordering};

/// Rate and burst of a bucket, as GCRA parameters in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Emission interval `T`.
    pub interval: u64,
    /// Burst tolerance `tau = T * (burst - 1)`.
    pub tau: u64,
    /// The burst capacity.
    pub burst: u32,
}

impl Quota {
    /// `per_second` requests per second with a burst of `burst` (both at least 1).
    pub fn per_second(per_second: u32, burst: u32) -> Quota {
        Quota::per_period(per_second, 1_000_000_000, burst)
    }

    /// `count` requests per `period_ns` with a burst of `burst`.
    pub fn per_period(count: u32, period_ns: u64, burst: u32) -> Quota {
        let interval = (period_ns / u64::from(count.max(1))).max(1);
        let burst = burst.max(1);
        Quota {
            interval,
            tau: interval * u64::from(burst - 1),
            burst,
        }
    }
}

/// The outcome of one take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; `remaining` more are allowed now; the bucket is full again `full_in` ns
    /// from now.
    Allow {
        /// Whole requests left now.
        remaining: u32,
        /// Nanoseconds until the bucket is full again.
        full_in: u64,
    },
    /// Denied; retry in this many nanoseconds.
    Deny {
        /// Nanoseconds until a request would be allowed.
        retry_in: u64,
    },
}

/// Takes one token from `cell` at `now` (nanoseconds, never 0).
pub fn take(cell: &AtomicU64, now: u64, q: Quota) -> Decision {
    let mut prev = cell.load(Ordering::Acquire);
    loop {
        let tat = if prev == 0 { now } else { prev };
        if tat > now + q.tau {
            return Decision::Deny {
                retry_in: tat - q.tau - now,
            };
        }
        let new_tat = tat.max(now) + q.interval;
        match cell.compare_exchange_weak(prev, new_tat, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                let room = (now + q.tau + q.interval).saturating_sub(new_tat);
                return Decision::Allow {
                    remaining: (room / q.interval).min(u64::from(q.burst)) as u32,
                    full_in: new_tat - now,
                };
            }
            Err(actual) => prev = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn burst_then_rate() {
        let cell = AtomicU64::new(0);
        let q = Quota::per_second(10, 5);
        let now = 1_000 * MS;
        let mut allowed = 0;
        for _ in 0..20 {
            if matches!(take(&cell, now, q), Decision::Allow { .. }) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 5);
        match take(&cell, now, q) {
            Decision::Deny { retry_in } => assert_eq!(retry_in, 100 * MS),
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            take(&cell, now + 100 * MS, q),
            Decision::Allow { remaining: 0, .. }
        ));
        // After a long pause the bucket is full again.
        assert!(matches!(
            take(&cell, now + 10_000 * MS, q),
            Decision::Allow { remaining: 4, .. }
        ));
    }

    #[test]
    fn remaining_counts_down_and_full_in_grows() {
        let cell = AtomicU64::new(0);
        let q = Quota::per_second(100, 3);
        let now = 5 * MS;
        let r: Vec<_> = (0..3).map(|_| take(&cell, now, q)).collect();
        assert_eq!(
            r,
            vec![
                Decision::Allow {
                    remaining: 2,
                    full_in: 10 * MS
                },
                Decision::Allow {
                    remaining: 1,
                    full_in: 20 * MS
                },
                Decision::Allow {
                    remaining: 0,
                    full_in: 30 * MS
                },
            ]
        );
        assert!(matches!(take(&cell, now, q), Decision::Deny { .. }));
        assert!(matches!(
            take(&cell, now + 10 * MS, q),
            Decision::Allow { remaining: 0, .. }
        ));
    }

    #[test]
    fn no_over_admission_under_contention() {
        let cell = std::sync::Arc::new(AtomicU64::new(0));
        let q = Quota::per_second(1, 1000);
        let now = 1;
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let cell = cell.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| matches!(take(&cell, now, q), Decision::Allow { .. }))
                        .count()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }
}
