//! The engine's operations routes, put in front of the application.
//!
//! Responsible for: `/health/live`, `/health/ready` and `/metrics` (matched on the path, the
//! query ignored; `GET` and `HEAD` only, any other method `405` with `Allow`), answered at
//! admission as a rejection, so that the application never sees them and no body sent to
//! them is read. [`Builtin`] wraps an [`App`] and is itself the [`App`] the loop serves.
//! Not responsible for: HTTP (a rejection that leaves an announced body unread closes the
//! connection, see `conn`), counting (see `metrics`) or the application's readiness,
//! metrics and labels (it asks the application, and puts its own three route labels before
//! the application's).

use std::sync::Arc;

use crate::app::{Admission, App, Label, Reply, Request};
use crate::metrics::Metrics;
use crate::request::{Method, RequestHead};
use crate::response::{Body, Response};

/// `Content-Type` of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

/// An application with the operations routes in front of it.
pub struct Builtin<A> {
    app: Arc<A>,
    metrics: Arc<Metrics>,
    draining: Box<dyn Fn() -> bool + Send + Sync>,
}

impl<A> std::fmt::Debug for Builtin<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builtin").finish_non_exhaustive()
    }
}

/// An operations route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Live,
    Ready,
    Metrics,
}

/// The labels of the operations routes, in the order of [`Route::index`]; the
/// application's follow them.
const LABELS: [&str; 3] = ["/health/live", "/health/ready", "/metrics"];

impl Route {
    fn index(self) -> u16 {
        match self {
            Route::Live => 0,
            Route::Ready => 1,
            Route::Metrics => 2,
        }
    }

    fn of(path: &str) -> Option<Route> {
        match path {
            "/health/live" => Some(Route::Live),
            "/health/ready" => Some(Route::Ready),
            "/metrics" => Some(Route::Metrics),
            _ => None,
        }
    }
}

impl<A: App> Builtin<A> {
    /// `app` behind the operations routes; `/metrics` renders `metrics`, and `/health/ready`
    /// answers `503` while `draining` says the server is shutting down (a probe rather than
    /// a flag, so the server's own shutdown flag stays the one source of truth).
    pub fn new(
        app: Arc<A>,
        metrics: Arc<Metrics>,
        draining: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        Builtin {
            app,
            metrics,
            draining: Box::new(draining),
        }
    }

    /// The application behind the routes.
    pub fn app(&self) -> &A {
        &self.app
    }

    fn answer(&self, route: Route, method: Method) -> Response {
        if !matches!(method, Method::Get | Method::Head) {
            return Response::error(405, "METHOD_NOT_ALLOWED", "Method not allowed")
                .with_header("Allow", "GET, HEAD");
        }
        match route {
            Route::Live => Response::static_json(200, br#"{"status":"ok"}"#),
            Route::Ready => self.readiness(),
            Route::Metrics => self.metrics_text(),
        }
    }

    fn readiness(&self) -> Response {
        if (self.draining)() {
            Response::error(503, "SERVICE_UNAVAILABLE", "Server is shutting down")
        } else if self.app.ready() {
            Response::static_json(200, br#"{"status":"ready"}"#)
        } else {
            Response::error(503, "SERVICE_UNAVAILABLE", "Storage is not ready")
        }
    }

    fn metrics_text(&self) -> Response {
        let mut text = String::with_capacity(4096);
        self.metrics.render(&mut text);
        self.app.write_metrics(&mut text);
        let mut r = Response::empty(200);
        r.content_type = Some(PROMETHEUS_TEXT);
        r.body = Body::Owned(text.into_bytes());
        r
    }
}

impl<A: App> App for Builtin<A> {
    type Context = A::Context;

    /// Answers the operations routes by rejecting them with their response; hands every
    /// other request to the application.
    fn admit(&self, head: &RequestHead) -> Admission<A::Context> {
        match Route::of(head.path()) {
            Some(route) => Admission::Reject(self.answer(route, head.method())),
            None => self.app.admit(head),
        }
    }

    fn handle(&self, request: Request<A::Context>) -> Reply {
        self.app.handle(request)
    }

    fn ready(&self) -> bool {
        self.app.ready()
    }

    fn write_metrics(&self, out: &mut String) {
        self.app.write_metrics(out);
    }

    /// The operations routes, then the application's.
    fn route_labels(&self) -> Vec<&'static str> {
        route_labels(&*self.app)
    }

    /// An operations route by its own label; anything else as the application says,
    /// shifted past the operations routes.
    fn describe(&self, head: &RequestHead, context: Option<&A::Context>) -> Label {
        if let Some(route) = Route::of(head.path()) {
            return Label {
                route: Some(route.index()),
                ..Label::default()
            };
        }
        let mut label = self.app.describe(head, context);
        label.route = label.route.and_then(|r| r.checked_add(LABELS.len() as u16));
        label
    }
}

/// The route labels of `app` behind the operations routes (what [`Builtin`] answers to
/// [`App::route_labels`]), for a server that needs them before its loops exist.
pub fn route_labels<A: App>(app: &A) -> Vec<&'static str> {
    let mut all = LABELS.to_vec();
    all.extend(app.route_labels());
    all
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::request::RequestId;

    /// Accepts everything; its readiness is a flag; it adds one metric line.
    #[derive(Default)]
    struct Inner {
        not_ready: AtomicBool,
    }

    impl App for Inner {
        type Context = &'static str;

        fn admit(&self, _head: &RequestHead) -> Admission<&'static str> {
            Admission::Accept {
                body_limit: 0,
                context: "inner",
            }
        }

        fn handle(&self, _request: Request<&'static str>) -> Reply {
            Reply::Now(Response::empty(204))
        }

        fn ready(&self) -> bool {
            !self.not_ready.load(Ordering::Relaxed)
        }

        fn write_metrics(&self, out: &mut String) {
            out.push_str("inner_metric 1\n");
        }

        fn route_labels(&self) -> Vec<&'static str> {
            vec!["/inner"]
        }

        fn describe(&self, _head: &RequestHead, context: Option<&&'static str>) -> Label {
            Label {
                route: context.map(|_| 0),
                tenant: crate::app::Tenant::new("ten_inner"),
            }
        }
    }

    fn builtin(draining: bool) -> Builtin<Inner> {
        Builtin::new(Arc::default(), Arc::new(Metrics::new(1)), move || draining)
    }

    /// What `b` decides for `method target` (a stamped instant: no clock is read).
    fn admit(b: &Builtin<Inner>, method: &str, target: &str) -> Admission<&'static str> {
        let raw = format!("{method} {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let at = std::time::Instant::now();
        let head = RequestHead::from_bytes_at(raw.as_bytes(), RequestId::new(b"t"), PEER, at)
            .expect("valid")
            .expect("complete");
        b.admit(&head)
    }

    const PEER: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn rejected(a: Admission<&'static str>) -> Response {
        match a {
            Admission::Reject(r) => r,
            Admission::Accept { context, .. } => panic!("handed to the app ({context})"),
        }
    }

    #[test]
    fn live_answers_ok_whatever_the_query() {
        let b = builtin(false);
        for target in ["/health/live", "/health/live?probe=1"] {
            let r = rejected(admit(&b, "GET", target));
            assert_eq!(
                (r.status, r.body.as_bytes()),
                (200, &br#"{"status":"ok"}"#[..])
            );
        }
        assert_eq!(rejected(admit(&b, "HEAD", "/health/live")).status, 200);
    }

    #[test]
    fn ready_follows_the_app_and_the_shutdown() {
        let b = builtin(false);
        assert_eq!(rejected(admit(&b, "GET", "/health/ready")).status, 200);
        b.app().not_ready.store(true, Ordering::Relaxed);
        let r = rejected(admit(&b, "GET", "/health/ready"));
        assert_eq!(r.status, 503);
        assert!(String::from_utf8_lossy(r.body.as_bytes()).contains("Storage is not ready"));
        let r = rejected(admit(&builtin(true), "GET", "/health/ready"));
        assert_eq!(r.status, 503);
        assert!(String::from_utf8_lossy(r.body.as_bytes()).contains("shutting down"));
    }

    #[test]
    fn metrics_render_the_engine_then_the_app() {
        let b = builtin(false);
        b.metrics.loop_stats(0).record(200, 10);
        let r = rejected(admit(&b, "GET", "/metrics"));
        assert_eq!(r.content_type, Some(PROMETHEUS_TEXT));
        let text = String::from_utf8(r.body.as_bytes().to_vec()).unwrap();
        assert!(text.contains("halyard_http_requests_total{class=\"2xx\"} 1\n"));
        assert!(text.ends_with("inner_metric 1\n"));
    }

    #[test]
    fn other_methods_are_405_with_allow() {
        let b = builtin(false);
        for (method, target) in [("POST", "/metrics"), ("DELETE", "/health/live")] {
            let r = rejected(admit(&b, method, target));
            assert_eq!(r.status, 405);
            assert_eq!(r.header("Allow"), Some("GET, HEAD"));
        }
    }

    #[test]
    fn operations_routes_come_first_in_the_labels() {
        let b = builtin(false);
        let labels = b.route_labels();
        assert_eq!(
            labels,
            ["/health/live", "/health/ready", "/metrics", "/inner"]
        );
        let head = |target: &str| {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let at = std::time::Instant::now();
            RequestHead::from_bytes_at(raw.as_bytes(), RequestId::new(b"t"), PEER, at)
                .expect("valid")
                .expect("complete")
        };
        let metrics = b.describe(&head("/metrics?x=1"), None);
        assert_eq!(metrics.route, Some(2));
        assert!(metrics.tenant.is_empty());
        let inner = b.describe(&head("/anything"), Some(&"inner"));
        assert_eq!(labels[usize::from(inner.route.expect("a route"))], "/inner");
        assert_eq!(inner.tenant.as_str(), "ten_inner");
        assert_eq!(b.describe(&head("/anything"), None).route, None);
    }

    #[test]
    fn everything_else_goes_to_the_app() {
        let b = builtin(false);
        for (method, target) in [("GET", "/"), ("GET", "/health"), ("GET", "/metrics/x")] {
            assert!(matches!(
                admit(&b, method, target),
                Admission::Accept {
                    context: "inner",
                    ..
                }
            ));
        }
    }
}
