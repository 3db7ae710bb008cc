//! `halyard-engine`: Halyard's HTTP/1.1 server engine.
//!
//! One `mio` event loop per core, each with its own `SO_REUSEPORT` listener and a slab of
//! connections; HTTP/1.1 parsed with `httparse` plus the strict framing rules of Halyard's
//! conventions; admission ([`App::admit`]) before any body byte is read; replies now,
//! deferred (completed from any thread) or streamed (SSE frames from any thread); a timer
//! wheel per loop for header, idle and heartbeat deadlines; optional TLS (rustls) on the same
//! loops, with certificates reloadable at run time; a listener may also be handed in
//! (systemd socket activation), and [`Liveness`] gives a watchdog proof that the loops turn;
//! per-route metrics and an optional access log ([`AccessLog`]) written off the loops.
//! The engine knows nothing about agents, tenants or storage: the application plugs in
//! through [`App`].
//!
//! The connection state machine ([`conn::Conn`]), the parser ([`parse`]), the chunked
//! decoder ([`chunked`]) and the wheel ([`wheel`]) do no I/O and read no clock, so tests and
//! fuzzers drive them directly.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access_log;
pub mod app;
pub mod builtin;
pub mod chunked;
pub mod client;
pub mod conn;
pub mod date;
pub mod liveness;
pub mod log;
pub mod metrics;
pub mod parse;
pub mod reply;
pub mod request;
pub mod response;
pub mod server;
pub mod shutdown;
pub mod task;
mod timer;
pub mod tls;
pub mod tls_reload;
mod transport;
pub mod wheel;
mod worker;

pub use access_log::AccessLog;
pub use app::{Admission, App, Label, Reply, Request, Tenant};
pub use liveness::Liveness;
pub use reply::{Responder, StreamError, StreamSender};
pub use request::{Method, RequestHead};
pub use response::{Body, Response};
pub use server::{Config, Server};
pub use shutdown::ShutdownHandle;
pub use task::{Cx, Event, Status, Task, TaskHandle};
pub use tls::{TlsAcceptor, TlsError, TlsFiles};
pub use tls_reload::ReloadHandle;
