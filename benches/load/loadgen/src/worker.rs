//! One event loop (one thread) driving its share of the connections: warm-up, then the
//! timed window.

use std::io;
use std::net::SocketAddr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::conn::{Conn, Ctx, Error, Stats, TlsTarget};

/// How long connecting, handshaking and the warm-up batch may take.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Job<'a> {
    pub addr: SocketAddr,
    pub tls: Option<&'a TlsTarget>,
    pub connections: usize,
    pub duration: Duration,
    pub batch: Box<[u8]>,
    pub depth: u32,
    /// Passed by every worker once warm, and by the main thread: the window opens.
    pub start: &'a Barrier,
    /// Passed by every worker when its window has closed, before its connections are dropped.
    pub stop: &'a Barrier,
}

/// Runs the job; a failure before the window opens ends the process.
pub fn run(job: Job<'_>) -> Stats {
    match run_inner(&job) {
        Ok(stats) => stats,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

fn run_inner(job: &Job<'_>) -> Result<Stats, String> {
    let mut poll = Poll::new().map_err(|e| format!("cannot create the poller: {e}"))?;
    let mut events = Events::with_capacity(1024);
    let mut ctx = Ctx {
        measuring: false,
        warmed: 0,
        batch: job.batch.clone(),
        depth: job.depth,
        stats: Stats::new(),
    };
    let connect_failed = |e: Error| format!("cannot connect to {}: {e}", job.addr);
    let mut conns = Vec::with_capacity(job.connections);
    for i in 0..job.connections {
        let conn = Conn::connect(job.addr, job.tls, poll.registry(), Token(i));
        conns.push(Some(conn.map_err(connect_failed)?));
    }

    // Warm-up: every connection connects, handshakes and has one batch answered.
    let deadline = Instant::now() + WARMUP_TIMEOUT;
    while ctx.warmed < job.connections {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "warm-up timed out: {} of {} connections answered",
                ctx.warmed, job.connections
            ));
        }
        poll_events(&mut poll, &mut events, deadline - now)?;
        let now = Instant::now();
        for event in events.iter() {
            if let Some(Some(conn)) = conns.get_mut(event.token().0) {
                conn.drive(&mut ctx, now)
                    .map_err(|e| format!("warm-up: {e}"))?;
            }
        }
    }

    job.start.wait();
    let end = Instant::now() + job.duration;
    ctx.measuring = true;
    for (i, slot) in conns.iter_mut().enumerate() {
        if let Some(conn) = slot {
            if conn.is_idle() {
                if let Err(e) = conn.start_batch(&ctx, Instant::now()) {
                    replace(slot, e, &mut ctx, &poll, job, i);
                }
            }
        }
    }
    // Time is taken per event: the latency runs from just before a batch's write to the
    // handling of the event that brings its last response.
    'window: loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        poll_events(&mut poll, &mut events, end - now)?;
        for event in events.iter() {
            let now = Instant::now();
            if now >= end {
                break 'window;
            }
            let i = event.token().0;
            let Some(slot) = conns.get_mut(i) else {
                continue;
            };
            if let Some(conn) = slot {
                if let Err(e) = conn.drive(&mut ctx, now) {
                    replace(slot, e, &mut ctx, &poll, job, i);
                }
            }
        }
    }
    job.stop.wait();
    Ok(ctx.stats)
}

fn poll_events(poll: &mut Poll, events: &mut Events, timeout: Duration) -> Result<(), String> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(e) => Err(format!("poll failed: {e}")),
    }
}

/// Counts a connection's error and opens a new connection in its place (dropped if even
/// starting the connect fails).
fn replace(
    slot: &mut Option<Conn>,
    error: Error,
    ctx: &mut Ctx,
    poll: &Poll,
    job: &Job<'_>,
    index: usize,
) {
    ctx.stats.error(&error);
    if let Some(mut old) = slot.take() {
        old.deregister(poll.registry());
    }
    match Conn::connect(job.addr, job.tls, poll.registry(), Token(index)) {
        Ok(conn) => *slot = Some(conn),
        Err(e) => ctx.stats.error(&e),
    }
}
