//! Host names to addresses, off the event loops.
//!
//! Responsible for: one resolver thread per server (the system resolver, `getaddrinfo`,
//! blocks: on a loop a slow DNS server would stall every connection of that loop), a cache
//! of answers for [`CACHE_TTL`] that loops read directly, and answering IP literals without
//! either. Not responsible for: connecting (see `driver`). Failed look-ups are not cached.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long an answer is reused (`getaddrinfo` does not tell the record's TTL).
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// Called with the addresses of a host, or why there are none.
pub(crate) type Answer = Box<dyn FnOnce(Result<Vec<SocketAddr>, String>) + Send>;

struct Query {
    host: String,
    port: u16,
    answer: Answer,
}

/// Answers by (host, port), with when they were looked up.
type Answers = HashMap<(String, u16), (Vec<SocketAddr>, Instant)>;
type Cache = Mutex<Answers>;

/// The resolver thread and its cache, shared by every loop of a server.
pub struct Resolver {
    tx: crossbeam_channel::Sender<Query>,
    cache: Arc<Cache>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    /// Starts the resolver thread; it ends when the last `Resolver` handle is dropped.
    pub fn start() -> io::Result<Arc<Resolver>> {
        let (tx, rx) = crossbeam_channel::unbounded::<Query>();
        let cache: Arc<Cache> = Arc::default();
        let shared = cache.clone();
        std::thread::Builder::new()
            .name("halyard-resolver".into())
            .spawn(move || {
                for q in rx {
                    let result = look_up(&shared, &q.host, q.port);
                    (q.answer)(result);
                }
            })?;
        Ok(Arc::new(Resolver { tx, cache }))
    }

    /// The addresses of `host` if they are known without asking: an IP literal, or a
    /// fresh cached answer.
    pub(crate) fn known(&self, host: &str, port: u16) -> Option<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(vec![SocketAddr::new(ip, port)]);
        }
        let cache = lock(&self.cache);
        let (addrs, at) = cache.get(&(host.to_string(), port))?;
        (at.elapsed() < CACHE_TTL).then(|| addrs.clone())
    }

    /// Asks the resolver thread; `answer` is called there.
    pub(crate) fn ask(&self, host: &str, port: u16, answer: Answer) {
        let q = Query {
            host: host.to_string(),
            port,
            answer,
        };
        if let Err(e) = self.tx.send(q) {
            (e.into_inner().answer)(Err("the resolver has stopped".into()));
        }
    }
}

fn lock(cache: &Cache) -> MutexGuard<'_, Answers> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

fn look_up(cache: &Cache, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let key = (host.to_string(), port);
    if let Some((addrs, at)) = lock(cache).get(&key) {
        if at.elapsed() < CACHE_TTL {
            return Ok(addrs.clone());
        }
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    lock(cache).insert(key, (addrs.clone(), Instant::now()));
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_need_no_thread_and_names_are_cached() {
        let r = Resolver::start().unwrap();
        assert_eq!(
            r.known("127.0.0.1", 8080),
            Some(vec!["127.0.0.1:8080".parse().unwrap()])
        );
        assert_eq!(
            r.known("::1", 443),
            Some(vec!["[::1]:443".parse().unwrap()])
        );
        assert_eq!(r.known("localhost", 80), None);
        let (tx, rx) = crossbeam_channel::bounded(1);
        r.ask("localhost", 80, Box::new(move |res| tx.send(res).unwrap()));
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert!(got.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
        assert_eq!(r.known("localhost", 80), Some(got));
        let (tx, rx) = crossbeam_channel::bounded(1);
        r.ask(
            "no-such-host.invalid",
            80,
            Box::new(move |res| tx.send(res).unwrap()),
        );
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap().is_err());
    }
}
