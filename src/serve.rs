//! Wiring of the commands: open what they need, run, report.
//!
//! Responsible for: `serve` (bind the engine, build the API, handle signals, print where it
//! listens), `tenant create` and `check`. Not responsible for: HTTP, routes or the log format.

use std::sync::Arc;

use crate::cli::{CheckArgs, TenantAction};
use crate::config::Settings;

/// Runs `halyard serve` until SIGTERM/SIGINT completes a graceful shutdown.
pub fn run(settings: &Settings) -> Result<(), String> {
    if settings.tls.is_some() {
        return Err("TLS (--tls-cert/--tls-key) is not available in this build yet".into());
    }
    let server = halyard_engine::Server::bind(settings.engine.clone())
        .map_err(|e| format!("cannot listen on {}: {e}", settings.engine.listen))?;
    let addr = server.local_addr();
    let shutdown = server.shutdown_handle();
    shutdown
        .on_signals()
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let app = Arc::new(halyard_api::Api::new());
    println!(
        "halyard listening on http://{addr} ({} event loops)",
        settings.engine.threads
    );
    if settings.dev {
        println!("try: curl -s http://{addr}/health/live");
    }
    server.run(app).map_err(|e| format!("server failed: {e}"))?;
    println!("halyard stopped");
    Ok(())
}

/// Runs `halyard tenant ...`.
pub fn tenant(action: TenantAction) -> Result<(), String> {
    match action {
        TenantAction::Create { name, .. } => Err(format!(
            "cannot create tenant {name}: the storage layer is not wired in this build yet"
        )),
    }
}

/// Runs `halyard check`.
pub fn check(args: &CheckArgs) -> Result<(), String> {
    Err(format!(
        "cannot check {}: the storage layer is not wired in this build yet",
        args.data_dir.display()
    ))
}
