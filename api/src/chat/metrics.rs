//! Turn and provider metrics: how many turns start, finish and fail, the tokens they move,
//! and how long providers take to the first token and to the end.
//!
//! Responsible for: counters and fixed-bucket histograms per provider, the label set fixed
//! to the providers the runtime knows (`echo`, `openai`, anything else `other`: an agent's
//! provider name is tenant data and never becomes a label), recorded with relaxed atomics,
//! and their Prometheus rendering. Not responsible for: when a turn starts or ends (see
//! `turn`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use halyard_engine::metrics::Histogram;

/// Provider labels, in the order of their cells.
const PROVIDERS: [&str; 3] = ["echo", "openai", "other"];

/// Upper bounds of the provider histograms, in microseconds (1 ms to 10 min).
static BOUNDS_US: [u64; 14] = [
    1_000,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    60_000_000,
    600_000_000,
];

/// The cell of a provider name.
pub fn provider_index(name: &str) -> usize {
    PROVIDERS
        .iter()
        .position(|&p| p == name)
        .unwrap_or(PROVIDERS.len() - 1)
}

#[derive(Debug)]
struct ProviderStats {
    started: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    tokens_in: AtomicU64,
    tokens_out: AtomicU64,
    first_token: Histogram,
    duration: Histogram,
}

impl Default for ProviderStats {
    fn default() -> Self {
        ProviderStats {
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            tokens_in: AtomicU64::new(0),
            tokens_out: AtomicU64::new(0),
            first_token: Histogram::new(&BOUNDS_US),
            duration: Histogram::new(&BOUNDS_US),
        }
    }
}

/// A counter of a provider's stats, for rendering.
type CounterOf = fn(&ProviderStats) -> u64;
/// A histogram of a provider's stats, for rendering.
type HistogramOf = fn(&ProviderStats) -> &Histogram;

/// The runtime's turn metrics.
#[derive(Debug, Default)]
pub struct TurnMetrics {
    by_provider: [ProviderStats; PROVIDERS.len()],
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

impl TurnMetrics {
    fn of(&self, provider: usize) -> &ProviderStats {
        &self.by_provider[provider.min(PROVIDERS.len() - 1)]
    }

    /// A turn started on `provider` (an index from [`provider_index`]).
    pub fn started(&self, provider: usize) {
        self.of(provider).started.fetch_add(1, Relaxed);
    }

    /// The provider said its first token `after` the turn started.
    pub fn first_token(&self, provider: usize, after: Duration) {
        self.of(provider).first_token.record(micros(after));
    }

    /// The provider finished (or was stopped) after `took`.
    pub fn provider_done(&self, provider: usize, took: Duration) {
        self.of(provider).duration.record(micros(took));
    }

    /// A turn ended with its answer; it moved these tokens.
    pub fn finished(&self, provider: usize, tokens_in: u64, tokens_out: u64) {
        let p = self.of(provider);
        p.finished.fetch_add(1, Relaxed);
        p.tokens_in.fetch_add(tokens_in, Relaxed);
        p.tokens_out.fetch_add(tokens_out, Relaxed);
    }

    /// A turn ended with an error (or a shutdown).
    pub fn failed(&self, provider: usize) {
        self.of(provider).failed.fetch_add(1, Relaxed);
    }

    /// Renders every family, each provider included (zeros too: the label set is fixed).
    pub fn render(&self, out: &mut String) {
        let counters: [(&str, CounterOf); 3] = [
            ("halyard_turns_started_total", |p| p.started.load(Relaxed)),
            ("halyard_turns_finished_total", |p| p.finished.load(Relaxed)),
            ("halyard_turns_failed_total", |p| p.failed.load(Relaxed)),
        ];
        for (name, get) in counters {
            let _ = writeln!(out, "# TYPE {name} counter");
            for (i, provider) in PROVIDERS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}{{provider=\"{provider}\"}} {}",
                    get(&self.by_provider[i])
                );
            }
        }
        out.push_str("# TYPE halyard_tokens_total counter\n");
        for (i, provider) in PROVIDERS.iter().enumerate() {
            let p = &self.by_provider[i];
            for (direction, n) in [("in", &p.tokens_in), ("out", &p.tokens_out)] {
                let _ = writeln!(
                    out,
                    "halyard_tokens_total{{provider=\"{provider}\",direction=\"{direction}\"}} {}",
                    n.load(Relaxed)
                );
            }
        }
        let histograms: [(&str, HistogramOf); 2] = [
            ("halyard_provider_first_token_seconds", |p| &p.first_token),
            ("halyard_provider_duration_seconds", |p| &p.duration),
        ];
        for (name, get) in histograms {
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (i, provider) in PROVIDERS.iter().enumerate() {
                let labels = format!("provider=\"{provider}\"");
                get(&self.by_provider[i]).render(out, name, &labels, 1e6);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_providers_share_one_label() {
        assert_eq!(provider_index("echo"), 0);
        assert_eq!(provider_index("openai"), 1);
        assert_eq!(provider_index("ten_secret_provider"), 2);
        let m = TurnMetrics::default();
        m.started(provider_index("whatever"));
        m.finished(0, 3, 5);
        m.first_token(0, Duration::from_millis(2));
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("halyard_turns_started_total{provider=\"other\"} 1\n"));
        assert!(s.contains("halyard_tokens_total{provider=\"echo\",direction=\"out\"} 5\n"));
        assert!(s.contains(
            "halyard_provider_first_token_seconds_bucket{provider=\"echo\",le=\"0.005\"} 1\n"
        ));
    }
}
