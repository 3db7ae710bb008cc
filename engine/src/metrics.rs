//! Engine counters and their Prometheus text rendering.
//!
//! Responsible for: per-loop counters (each loop writes only its own, cache-line aligned,
//! with relaxed atomics, so recording costs no contention), among them requests and latency
//! by route template and method (a fixed cell per route and method, sized once from
//! [`App::route_labels`](crate::App::route_labels)), summing them for `/metrics`, and the
//! fixed-bucket [`Histogram`] and [`write_histogram`] the application uses for its own.
//! Not responsible for: application metrics (the app appends its own text) or naming routes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use crate::request::Method;

/// Upper bounds of the latency histogram, in microseconds.
const BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    2_500_000, 10_000_000,
];

/// Methods with a label of their own, in the order of their cells.
const METHODS: [Method; 8] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Patch,
    Method::Delete,
    Method::Options,
    Method::Other,
];

fn method_index(m: Method) -> usize {
    METHODS
        .iter()
        .position(|&x| x == m)
        .unwrap_or(METHODS.len() - 1)
}

/// The label of requests that matched no route (unknown paths, malformed heads).
pub const UNMATCHED: &str = "unmatched";

/// Requests and latency of one route and method on one loop.
#[derive(Debug, Default)]
struct RouteCell {
    by_class: [AtomicU64; 5],
    latency: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

/// Counters written by one event loop.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct LoopStats {
    /// `(routes + 1) * METHODS.len()` cells, route 0 being [`UNMATCHED`]; set once at start.
    routes: OnceLock<Box<[RouteCell]>>,
    access_log_dropped: AtomicU64,
    by_class: [AtomicU64; 5],
    latency: [AtomicU64; BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
    open_conns: AtomicI64,
    open_streams: AtomicI64,
    accepted: AtomicU64,
    refused: AtomicU64,
    accept_paused: AtomicU64,
    bytes_in: AtomicU64,
    parse_errors: AtomicU64,
    timeouts: AtomicU64,
    panics: AtomicU64,
    tls: TlsStats,
}

/// TLS handshake counters of one loop.
#[derive(Debug, Default)]
struct TlsStats {
    handshakes: AtomicU64,
    plain_http: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
}

/// How a TLS handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Completed.
    Done,
    /// The client spoke plain HTTP to the TLS port.
    PlainHttp,
    /// A TLS protocol error (malformed or unacceptable ClientHello, no common parameters).
    Failed,
    /// Not completed within the header timeout.
    TimedOut,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

fn bucket_of(elapsed_us: u64) -> usize {
    BUCKETS_US
        .iter()
        .position(|&b| elapsed_us <= b)
        .unwrap_or(BUCKETS_US.len())
}

impl LoopStats {
    /// Records a response with `status`, `elapsed_us` after its head was parsed.
    pub fn record(&self, status: u16, elapsed_us: u64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        bump(&self.by_class[class]);
        bump(&self.latency[bucket_of(elapsed_us)]);
        self.latency_sum_us.fetch_add(elapsed_us, Relaxed);
    }

    /// Records a response as [`record`](Self::record) does, and under its route (an index
    /// into the route labels; `None` for no route) and method.
    pub fn record_route(&self, route: Option<u16>, method: Method, status: u16, elapsed_us: u64) {
        self.record(status, elapsed_us);
        let Some(cells) = self.routes.get() else {
            return;
        };
        let row = route.map_or(0, |r| usize::from(r) + 1);
        let Some(cell) = cells.get(row * METHODS.len() + method_index(method)) else {
            return;
        };
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        bump(&cell.by_class[class]);
        bump(&cell.latency[bucket_of(elapsed_us)]);
        cell.sum_us.fetch_add(elapsed_us, Relaxed);
    }

    /// An access log line was dropped: the log's buffer was full.
    pub fn access_log_dropped(&self) {
        bump(&self.access_log_dropped);
    }

    /// A connection was accepted (`true`) or closed (`false`).
    pub fn conn_opened(&self, open: bool) {
        if open {
            bump(&self.accepted);
        }
        self.open_conns
            .fetch_add(if open { 1 } else { -1 }, Relaxed);
    }

    /// A stream started (`true`) or ended (`false`).
    pub fn stream_opened(&self, open: bool) {
        self.open_streams
            .fetch_add(if open { 1 } else { -1 }, Relaxed);
    }

    /// A connection was refused at accept (`--max-connections`).
    pub fn refused(&self) {
        bump(&self.refused);
    }

    /// Accepting stopped for a while: the process had no descriptor (or kernel memory)
    /// left for a new connection.
    pub fn accept_paused(&self) {
        bump(&self.accept_paused);
    }

    /// `n` bytes were read from clients.
    pub fn received(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    /// A request head or body was refused as malformed.
    pub fn parse_error(&self) {
        bump(&self.parse_errors);
    }

    /// A connection timed out.
    pub fn timeout(&self) {
        bump(&self.timeouts);
    }

    /// A handler panicked.
    pub fn panicked(&self) {
        bump(&self.panics);
    }

    /// A TLS handshake ended.
    pub fn handshake(&self, how: Handshake) {
        bump(match how {
            Handshake::Done => &self.tls.handshakes,
            Handshake::PlainHttp => &self.tls.plain_http,
            Handshake::Failed => &self.tls.failures,
            Handshake::TimedOut => &self.tls.timeouts,
        });
    }
}

/// The counters of every loop of a server.
#[derive(Debug)]
pub struct Metrics {
    loops: Box<[LoopStats]>,
    /// [`UNMATCHED`], then the application's route templates.
    route_labels: OnceLock<Vec<&'static str>>,
    tls_enabled: AtomicBool,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

impl Metrics {
    /// Counters for `loops` event loops.
    pub fn new(loops: usize) -> Self {
        Metrics {
            loops: (0..loops.max(1)).map(|_| LoopStats::default()).collect(),
            route_labels: OnceLock::new(),
            tls_enabled: AtomicBool::new(false),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        }
    }

    /// Sizes the per-route counters for these route templates (the application's
    /// [`route_labels`](crate::App::route_labels)); only the first call counts.
    pub fn set_routes(&self, labels: Vec<&'static str>) {
        let mut all = Vec::with_capacity(labels.len() + 1);
        all.push(UNMATCHED);
        all.extend(labels);
        let cells = all.len() * METHODS.len();
        if self.route_labels.set(all).is_err() {
            return;
        }
        for l in self.loops.iter() {
            let _ = l
                .routes
                .set((0..cells).map(|_| RouteCell::default()).collect());
        }
    }

    /// Renders the TLS counters too (the server serves HTTPS).
    pub fn enable_tls(&self) {
        self.tls_enabled.store(true, Relaxed);
    }

    /// A certificate reload succeeded (`true`) or kept the old certificate (`false`).
    pub fn tls_reloaded(&self, ok: bool) {
        bump(if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        });
    }

    /// The counters of loop `i` (the last one if out of range).
    pub fn loop_stats(&self, i: usize) -> &LoopStats {
        &self.loops[i.min(self.loops.len() - 1)]
    }

    fn sum(&self, f: impl Fn(&LoopStats) -> u64) -> u64 {
        self.loops.iter().map(f).sum()
    }

    fn sum_i(&self, f: impl Fn(&LoopStats) -> i64) -> i64 {
        self.loops.iter().map(f).sum()
    }

    /// Currently open connections across loops.
    pub fn open_connections(&self) -> i64 {
        self.sum_i(|l| l.open_conns.load(Relaxed))
    }

    /// Bytes received from clients across loops.
    pub fn bytes_received(&self) -> u64 {
        self.sum(|l| l.bytes_in.load(Relaxed))
    }

    /// Renders every counter in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let _ = self.render_inner(out);
    }

    fn render_inner(&self, out: &mut String) -> std::fmt::Result {
        out.push_str("# TYPE halyard_http_requests_total counter\n");
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let n = self.sum(|l| l.by_class[i].load(Relaxed));
            writeln!(out, "halyard_http_requests_total{{class=\"{class}\"}} {n}")?;
        }
        out.push_str("# TYPE halyard_http_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            cumulative += self.sum(|l| l.latency[i].load(Relaxed));
            let le = *bound as f64 / 1e6;
            writeln!(
                out,
                "halyard_http_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            )?;
        }
        cumulative += self.sum(|l| l.latency[BUCKETS_US.len()].load(Relaxed));
        writeln!(
            out,
            "halyard_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        )?;
        let sum = self.sum(|l| l.latency_sum_us.load(Relaxed)) as f64 / 1e6;
        writeln!(out, "halyard_http_request_duration_seconds_sum {sum}")?;
        writeln!(
            out,
            "halyard_http_request_duration_seconds_count {cumulative}"
        )?;
        let gauges = [
            ("halyard_open_connections", self.open_connections()),
            (
                "halyard_open_streams",
                self.sum_i(|l| l.open_streams.load(Relaxed)),
            ),
        ];
        for (name, v) in gauges {
            writeln!(out, "# TYPE {name} gauge\n{name} {v}")?;
        }
        let counters = [
            (
                "halyard_connections_accepted_total",
                self.sum(|l| l.accepted.load(Relaxed)),
            ),
            (
                "halyard_accept_refused_total",
                self.sum(|l| l.refused.load(Relaxed)),
            ),
            (
                "halyard_accept_paused_total",
                self.sum(|l| l.accept_paused.load(Relaxed)),
            ),
            ("halyard_received_bytes_total", self.bytes_received()),
            (
                "halyard_parse_errors_total",
                self.sum(|l| l.parse_errors.load(Relaxed)),
            ),
            (
                "halyard_timeouts_total",
                self.sum(|l| l.timeouts.load(Relaxed)),
            ),
            (
                "halyard_handler_panics_total",
                self.sum(|l| l.panics.load(Relaxed)),
            ),
        ];
        for (name, v) in counters {
            writeln!(out, "# TYPE {name} counter\n{name} {v}")?;
        }
        let dropped = self.sum(|l| l.access_log_dropped.load(Relaxed));
        writeln!(
            out,
            "# TYPE halyard_access_log_dropped_total counter\n\
             halyard_access_log_dropped_total {dropped}"
        )?;
        self.render_routes(out)?;
        if self.tls_enabled.load(Relaxed) {
            self.render_tls(out)?;
        }
        Ok(())
    }

    /// Per-route families; only routes and methods that saw a request get samples.
    fn render_routes(&self, out: &mut String) -> std::fmt::Result {
        let Some(labels) = self.route_labels.get() else {
            return Ok(());
        };
        fn cell(l: &LoopStats, i: usize) -> Option<&RouteCell> {
            l.routes.get().and_then(|c| c.get(i))
        }
        let mut rows = Vec::new();
        for (r, route) in labels.iter().enumerate() {
            for (m, method) in METHODS.iter().enumerate() {
                let i = r * METHODS.len() + m;
                let classes: Vec<u64> = (0..5)
                    .map(|c| self.sum(|l| cell(l, i).map_or(0, |x| x.by_class[c].load(Relaxed))))
                    .collect();
                if classes.iter().all(|&n| n == 0) {
                    continue;
                }
                let counts: Vec<u64> = (0..=BUCKETS_US.len())
                    .map(|b| self.sum(|l| cell(l, i).map_or(0, |x| x.latency[b].load(Relaxed))))
                    .collect();
                let sum_us = self.sum(|l| cell(l, i).map_or(0, |x| x.sum_us.load(Relaxed)));
                rows.push((*route, method.as_str(), classes, counts, sum_us));
            }
        }
        out.push_str("# TYPE halyard_http_route_requests_total counter\n");
        for (route, method, classes, _, _) in &rows {
            for (c, n) in classes.iter().enumerate().filter(|(_, n)| **n > 0) {
                writeln!(
                    out,
                    "halyard_http_route_requests_total{{route=\"{route}\",method=\"{method}\",\
                     class=\"{}xx\"}} {n}",
                    c + 1
                )?;
            }
        }
        out.push_str("# TYPE halyard_http_route_duration_seconds histogram\n");
        for (route, method, _, counts, sum_us) in &rows {
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            write_histogram_rows(
                out,
                "halyard_http_route_duration_seconds",
                &labels,
                &BUCKETS_US,
                1e6,
                counts,
                *sum_us as f64 / 1e6,
            )?;
        }
        Ok(())
    }

    fn render_tls(&self, out: &mut String) -> std::fmt::Result {
        let done = self.sum(|l| l.tls.handshakes.load(Relaxed));
        writeln!(
            out,
            "# TYPE halyard_tls_handshakes_total counter\nhalyard_tls_handshakes_total {done}"
        )?;
        out.push_str("# TYPE halyard_tls_handshake_failures_total counter\n");
        let plain = self.sum(|l| l.tls.plain_http.load(Relaxed));
        let failed = self.sum(|l| l.tls.failures.load(Relaxed));
        for (reason, n) in [("plain_http", plain), ("tls_error", failed)] {
            writeln!(
                out,
                "halyard_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}"
            )?;
        }
        let timeouts = self.sum(|l| l.tls.timeouts.load(Relaxed));
        writeln!(
            out,
            "# TYPE halyard_tls_handshake_timeouts_total counter\n\
             halyard_tls_handshake_timeouts_total {timeouts}"
        )?;
        out.push_str("# TYPE halyard_tls_reloads_total counter\n");
        let ok = self.reloads_ok.load(Relaxed);
        let failed = self.reloads_failed.load(Relaxed);
        writeln!(out, "halyard_tls_reloads_total{{result=\"ok\"}} {ok}")?;
        writeln!(
            out,
            "halyard_tls_reloads_total{{result=\"failed\"}} {failed}"
        )?;
        Ok(())
    }
}

/// A histogram with fixed bucket bounds, shared by threads through relaxed atomics.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram whose buckets end at `bounds` (ascending), plus `+Inf`.
    pub fn new(bounds: &'static [u64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `v` (in the unit of the bounds).
    pub fn record(&self, v: u64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        bump(&self.counts[i]);
        self.sum.fetch_add(v, Relaxed);
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples (no `# TYPE` line) of `name` with
    /// `labels` (`a="b",c="d"` or empty); values are divided by `divisor` (`1e6` renders
    /// microseconds as seconds; a division keeps `100 / 1e6` exactly `0.0001`).
    pub fn render(&self, out: &mut String, name: &str, labels: &str, divisor: f64) {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let sum = self.sum.load(Relaxed) as f64 / divisor;
        let _ = write_histogram_rows(out, name, labels, self.bounds, divisor, &counts, sum);
    }
}

/// Writes the samples of a histogram from its per-bucket (not cumulative) `counts`, one
/// more than `bounds` (the last is `+Inf`); bounds are divided by `divisor`.
pub fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[u64],
    divisor: f64,
    counts: &[u64],
    sum: f64,
) {
    let _ = write_histogram_rows(out, name, labels, bounds, divisor, counts, sum);
}

fn write_histogram_rows(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[u64],
    divisor: f64,
    counts: &[u64],
    sum: f64,
) -> std::fmt::Result {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (i, bound) in bounds.iter().enumerate() {
        cumulative += counts.get(i).copied().unwrap_or(0);
        let le = *bound as f64 / divisor;
        writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
        )?;
    }
    cumulative += counts.get(bounds.len()).copied().unwrap_or(0);
    writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
    )?;
    if labels.is_empty() {
        writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}")
    } else {
        writeln!(
            out,
            "{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {cumulative}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sums_across_loops() {
        let m = Metrics::new(2);
        m.loop_stats(0).record(200, 50);
        m.loop_stats(1).record(404, 2_000);
        m.loop_stats(1).record(500, 20_000_000);
        m.loop_stats(0).conn_opened(true);
        m.loop_stats(1).refused();
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("halyard_http_requests_total{class=\"2xx\"} 1\n"));
        assert!(s.contains("halyard_http_requests_total{class=\"4xx\"} 1\n"));
        assert!(s.contains("halyard_http_request_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(s.contains("halyard_http_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(s.contains("halyard_open_connections 1\n"));
        assert!(s.contains("halyard_accept_refused_total 1\n"));
        assert!(!s.contains("halyard_tls_"));
    }

    #[test]
    fn renders_routes_by_template_and_method() {
        let m = Metrics::new(2);
        m.set_routes(vec!["/a/:id", "/b"]);
        m.loop_stats(0).record_route(Some(0), Method::Get, 200, 50);
        m.loop_stats(1).record_route(Some(0), Method::Get, 404, 300);
        m.loop_stats(1).record_route(None, Method::Other, 400, 10);
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains(
            "halyard_http_route_requests_total{route=\"/a/:id\",method=\"GET\",class=\"2xx\"} 1\n"
        ));
        assert!(s.contains(
            "halyard_http_route_requests_total{route=\"unmatched\",method=\"OTHER\",class=\"4xx\"} 1\n"
        ));
        assert!(s.contains(
            "halyard_http_route_duration_seconds_bucket{route=\"/a/:id\",method=\"GET\",le=\"0.0001\"} 1\n"
        ));
        assert!(s.contains(
            "halyard_http_route_duration_seconds_count{route=\"/a/:id\",method=\"GET\"} 2\n"
        ));
        assert!(
            !s.contains("route=\"/b\""),
            "no samples for a route never asked"
        );
        assert!(s.contains("halyard_http_requests_total{class=\"2xx\"} 1\n"));
    }

    #[test]
    fn histograms_are_cumulative() {
        static BOUNDS: [u64; 2] = [10, 100];
        let h = Histogram::new(&BOUNDS);
        h.record(5);
        h.record(50);
        h.record(5000);
        let mut s = String::new();
        h.render(&mut s, "x", "p=\"e\"", 1.0);
        assert_eq!(
            s,
            "x_bucket{p=\"e\",le=\"10\"} 1\nx_bucket{p=\"e\",le=\"100\"} 2\n\
             x_bucket{p=\"e\",le=\"+Inf\"} 3\nx_sum{p=\"e\"} 5055\nx_count{p=\"e\"} 3\n"
        );
    }

    #[test]
    fn renders_tls_counters_when_enabled() {
        let m = Metrics::new(2);
        m.enable_tls();
        m.loop_stats(0).handshake(Handshake::Done);
        m.loop_stats(1).handshake(Handshake::Done);
        m.loop_stats(1).handshake(Handshake::PlainHttp);
        m.loop_stats(0).handshake(Handshake::TimedOut);
        m.tls_reloaded(false);
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("halyard_tls_handshakes_total 2\n"));
        assert!(s.contains("halyard_tls_handshake_failures_total{reason=\"plain_http\"} 1\n"));
        assert!(s.contains("halyard_tls_handshake_failures_total{reason=\"tls_error\"} 0\n"));
        assert!(s.contains("halyard_tls_handshake_timeouts_total 1\n"));
        assert!(s.contains("halyard_tls_reloads_total{result=\"failed\"} 1\n"));
    }
}
