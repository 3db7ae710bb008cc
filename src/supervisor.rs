//! Keeping the service manager informed while `serve` runs: ready, alive, stopping.
//!
//! Responsible for: one thread that sends `READY=1` once every event loop has turned (the
//! storage was replayed before the loops started, and the listeners are in their polls, so
//! the server accepts), then `WATCHDOG=1` every half watchdog period for as long as every
//! loop keeps turning (the engine's [`Liveness`] rounds: a loop stuck in a handler stops
//! the pings, and the manager restarts the service after `WatchdogSec=`), and `STOPPING=1`
//! as soon as a graceful shutdown starts. Not responsible for: the wire protocol (see
//! `notify`) or the shutdown itself (the engine's signal thread).

use std::io;
use std::time::Duration;

use halyard_engine::{Liveness, ShutdownHandle};

use crate::notify::Notifier;

/// How often the loops are asked whether they have started, before `READY=1`.
const START_POLL: Duration = Duration::from_millis(5);

/// Starts the thread. `watchdog` is the manager's timeout (`WATCHDOG_USEC`), if it set one.
pub fn start(
    notifier: Notifier,
    watchdog: Option<Duration>,
    liveness: Liveness,
    shutdown: ShutdownHandle,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("halyard-notify".into())
        .spawn(move || run(&notifier, watchdog, &liveness, &shutdown))?;
    Ok(())
}

fn send(notifier: &Notifier, state: &'static str) {
    if let Err(e) = notifier.send(state) {
        halyard_engine::log_warn!("{e}");
    }
}

fn run(
    notifier: &Notifier,
    watchdog: Option<Duration>,
    liveness: &Liveness,
    shutdown: &ShutdownHandle,
) {
    let started = liveness.ask();
    while !liveness.answered(started) {
        if shutdown.wait(Some(START_POLL)) {
            send(notifier, "STOPPING=1");
            return;
        }
    }
    send(notifier, "READY=1");
    // Half the timeout, as sd_watchdog_enabled(3) advises: one late ping is not a restart.
    let interval = watchdog.map(|w| w / 2);
    let mut round = liveness.ask();
    let mut stalled = false;
    loop {
        if shutdown.wait(interval) {
            send(notifier, "STOPPING=1");
            return;
        }
        // Only reached with a watchdog: without one the wait returns at shutdown alone.
        if liveness.answered(round) {
            send(notifier, "WATCHDOG=1");
            if stalled {
                halyard_engine::log_info!("every event loop turns again");
                stalled = false;
            }
        } else if !stalled {
            halyard_engine::log_warn!(
                "an event loop has not turned for {} ms; not telling the \
                 systemd watchdog that the server is alive",
                interval.unwrap_or_default().as_millis()
            );
            stalled = true;
        }
        round = liveness.ask();
    }
}
