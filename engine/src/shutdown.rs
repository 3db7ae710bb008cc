//! Graceful shutdown: the handle that starts it and the signal thread that uses the handle.
//!
//! Responsible for: turning SIGTERM/SIGINT into one call of [`ShutdownHandle::shutdown`];
//! the loops then stop accepting, finish in-flight requests within the deadline, end streams
//! and exit. Not responsible for: what each loop does while draining (see `worker`).

use std::io;
use std::sync::Arc;

use crate::server::Shared;

/// Starts a graceful shutdown of a server from any thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ShutdownHandle { shared }
    }

    /// Stops accepting and drains; [`Server::run`](crate::Server::run) returns when done.
    pub fn shutdown(&self) {
        self.shared.trigger_shutdown();
    }

    /// Whether a shutdown was requested.
    pub fn is_shutting_down(&self) -> bool {
        self.shared
            .shutdown
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Blocks until a shutdown is requested (true) or `timeout` passes first (false); with no
    /// timeout, until a shutdown is requested.
    pub fn wait(&self, timeout: Option<std::time::Duration>) -> bool {
        self.shared.wait_for_shutdown(timeout)
    }

    /// Starts a thread that calls [`shutdown`](Self::shutdown) on SIGTERM or SIGINT.
    pub fn on_signals(&self) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
        let handle = self.clone();
        std::thread::Builder::new()
            .name("halyard-signals".into())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    handle.shutdown();
                }
            })?;
        Ok(())
    }
}
