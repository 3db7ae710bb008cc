//! Hearing other nodes' commits: `LISTEN halyard` (and `halyard_ack`), and a catch-up on
//! each notification.
//!
//! Responsible for: one thread per node holding a `LISTEN` connection. On each commit's
//! notification (`"<tseq> <tenant>"`) the tenant is caught up at once, and the writer is
//! told when this node may be answering the tenant's reads from memory (`leases`); other
//! nodes' acknowledgements (`halyard_ack`) are recorded for the writes waiting on them
//! (`acks`). Every [`POLL`], and after each reconnection, every tenant is caught up, so a
//! lost notification costs at most that long. While the connection is down this node
//! holds no read lease, and the reachability flag says so. Not responsible for: the
//! catch-up of a read when no lease is held (`Backend::catch_up`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use halyard_storage::Backend;
use postgres::fallible_iterator::FallibleIterator;
use postgres::Notification;

use crate::store::PgStore;

/// How often every tenant is caught up even without notifications.
pub const POLL: Duration = Duration::from_secs(2);

/// Wait before connecting again after a failure.
const RECONNECT: Duration = Duration::from_millis(250);

/// Longest wait for a notification before checking for shutdown and the poll.
const TICK: Duration = Duration::from_millis(200);

/// Notifications handled together at most.
const BATCH: usize = 4096;

/// Starts the thread; it ends once `stop` is set or the store is dropped.
pub fn spawn(
    store: Weak<PgStore>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("halyard-pg-listen".into())
        .spawn(move || run(&store, &stop))
}

fn run(store: &Weak<PgStore>, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        let Some(s) = store.upgrade() else { return };
        match listen(&s, stop) {
            Ok(()) => return,
            Err(why) => {
                // Deaf to other nodes' writes: no read may be answered from memory (down
                // first, so that no grant in flight takes a lease after the drop).
                s.reach.down(&why);
                s.leases.drop_all();
                // Idle connections likely died with this one.
                s.pool.clear_idle();
            }
        }
        drop(s);
        std::thread::sleep(RECONNECT);
    }
}

/// Listens until `stop` (`Ok`) or a failure (`Err`, to reconnect).
fn listen(store: &PgStore, stop: &AtomicBool) -> Result<(), String> {
    let mut client = store.pool.connect().map_err(|e| crate::explain(&e))?;
    client
        .batch_execute("LISTEN halyard; LISTEN halyard_ack")
        .map_err(|e| crate::explain(&e))?;
    // Listening first, then the full catch-up: a commit after it is heard.
    store.catch_up(None).map_err(|e| e.to_string())?;
    store.reach.up();
    let mut polled = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let heard = next_batch(&mut client)?;
        // Each tenant once, to its newest transaction: under load a batch holds many.
        let mut newest: HashMap<&str, i64> = HashMap::new();
        for n in &heard {
            if n.channel() == "halyard_ack" {
                if let Some((tseq, node, tenant)) = crate::acks::parse(n.payload()) {
                    store.acks.record(tenant, node, tseq);
                }
            } else if let Some((tseq, tenant)) = parse(n.payload()) {
                let at = newest.entry(tenant).or_insert(tseq);
                *at = (*at).max(tseq);
            }
        }
        if !newest.is_empty() {
            let mut lease = store.pool.get().map_err(|e| e.to_string())?;
            let conn = lease.conn();
            for (tenant, tseq) in newest {
                store
                    .catch_up_to(conn, tenant, tseq)
                    .and_then(|()| store.acknowledge(conn, tenant, tseq))
                    .map_err(|e| e.to_string())?;
            }
        }
        if polled.elapsed() >= POLL {
            store.catch_up(None).map_err(|e| e.to_string())?;
            store.reach.up();
            polled = Instant::now();
        }
    }
    Ok(())
}

/// The notifications that came: waits up to [`TICK`] for the first, then takes those
/// already there (at most [`BATCH`]).
fn next_batch(client: &mut postgres::Client) -> Result<Vec<Notification>, String> {
    let mut batch = Vec::new();
    let mut heard = client.notifications();
    if let Some(n) = heard
        .timeout_iter(TICK)
        .next()
        .map_err(|e| crate::explain(&e))?
    {
        batch.push(n);
    }
    let mut more = heard.iter();
    while batch.len() < BATCH {
        match more.next().map_err(|e| crate::explain(&e))? {
            Some(n) => batch.push(n),
            None => break,
        }
    }
    Ok(batch)
}

/// `"<tseq> <tenant>"`.
fn parse(payload: &str) -> Option<(i64, &str)> {
    let (tseq, tenant) = payload.split_once(' ')?;
    Some((tseq.parse().ok()?, tenant))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_notification_names_the_transaction_and_its_tenant() {
        assert_eq!(parse("12 ten_abc"), Some((12, "ten_abc")));
        assert_eq!(parse("1 "), Some((1, "")));
        assert_eq!(parse("x ten"), None);
        assert_eq!(parse("12"), None);
    }
}
