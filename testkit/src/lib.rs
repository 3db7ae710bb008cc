//! Test support shared by the black-box tests: a raw HTTP/1.1 client that shows exactly
//! what went over the wire, a guard that runs the `halyard` binary on a loopback port
//! and stops it (by PID) when dropped, a scriptable fake OpenAI-compatible upstream, and a
//! tool server for HTTP tools.
//!
//! Not a general HTTP client: it reads one response at a time, understands
//! `Content-Length`, chunked and close-delimited bodies, and fails loudly on anything else.

#![warn(missing_docs)]

pub mod client;
pub mod pg;
pub mod pg_cluster;
pub mod process;
pub mod tool_server;
pub mod upstream;

pub use client::{Client, Response};
pub use process::{raise_fd_limit, run_to_exit, temp_dir, Halyard, Shared, StartOptions};
pub use tool_server::{ToolRequest, ToolServer};
pub use upstream::{FakeUpstream, UpstreamOptions};
