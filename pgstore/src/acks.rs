//! A writer's wait for the nodes that answer its tenant's reads from memory.
//!
//! Responsible for: recording the acknowledgements this node hears (`NOTIFY halyard_ack`:
//! node N applied tenant T's transactions up to `n`), and letting a committed write wait
//! until every lease holder of its tenant acknowledged it or saw its lease run out (see
//! `leases` for the protocol). Not responsible for: finding the holders (`store`) or
//! hearing the notifications (`listener`).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// The highest transaction each (tenant, node) acknowledged.
#[derive(Debug, Default)]
pub struct Acks {
    seen: Mutex<HashMap<(String, String), i64>>,
    heard: Condvar,
}

/// `"<n> <node> <tenant>"`, as sent by a lease holder.
pub fn parse(payload: &str) -> Option<(i64, &str, &str)> {
    let (n, rest) = payload.split_once(' ')?;
    let (node, tenant) = rest.split_once(' ')?;
    Some((n.parse().ok()?, node, tenant))
}

/// The payload acknowledging transaction `n` of `tenant` by `node`.
pub fn payload(n: i64, node: &str, tenant: &str) -> String {
    format!("{n} {node} {tenant}")
}

impl Acks {
    /// Node `node` applied `tenant`'s transactions up to `n`.
    pub fn record(&self, tenant: &str, node: &str, n: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let at = seen
            .entry((tenant.to_owned(), node.to_owned()))
            .or_insert(0);
        *at = (*at).max(n);
        drop(seen);
        self.heard.notify_all();
    }

    /// Waits until each of `holders` (node, end of its lease by this node's clock)
    /// acknowledged `tenant`'s transaction `n`, or its lease ended.
    pub fn wait(&self, tenant: &str, n: i64, holders: &[(String, Instant)]) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let now = Instant::now();
            let pending = holders.iter().filter(|(node, until)| {
                let key = (tenant.to_owned(), node.clone());
                now < *until && seen.get(&key).is_none_or(|at| *at < n)
            });
            let Some(next) = pending.map(|(_, until)| *until).min() else {
                return;
            };
            seen = self
                .heard
                .wait_timeout(seen, next - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Forgets what the nodes `gone` says are gone acknowledged: the record stays as
    /// small as the set of live nodes (a restarted node comes back with a new id).
    pub fn forget_gone(&self, gone: impl Fn(&str) -> bool) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|(_, n), _| !gone(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_write_waits_for_an_ack_or_the_end_of_the_lease() {
        assert_eq!(parse("7 node_b ten_x"), Some((7, "node_b", "ten_x")));
        assert_eq!(
            parse(&payload(7, "node_b", "ten x")),
            Some((7, "node_b", "ten x"))
        );
        assert_eq!(parse("x node t"), None);
        let acks = Arc::new(Acks::default());
        let far = Instant::now() + Duration::from_secs(30);
        // Already acknowledged (a later transaction counts too): no wait.
        acks.record("t", "b", 9);
        let began = Instant::now();
        acks.wait("t", 8, &[("b".into(), far)]);
        assert!(began.elapsed() < Duration::from_secs(1));
        // Acknowledged while waiting.
        let a = acks.clone();
        let ack = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            a.record("t", "c", 10);
            std::thread::sleep(Duration::from_millis(50));
            a.record("t", "b", 12);
        });
        acks.wait("t", 10, &[("b".into(), far), ("c".into(), far)]);
        assert!(began.elapsed() < Duration::from_secs(5));
        ack.join().unwrap();
        // Never acknowledged: the lease's end ends the wait.
        let soon = Instant::now() + Duration::from_millis(100);
        acks.wait("t", 11, &[("d".into(), soon)]);
        assert!(Instant::now() >= soon);
        acks.forget_gone(|n| n == "b");
        assert!(acks.seen.lock().unwrap().keys().all(|(_, n)| n != "b"));
    }
}
