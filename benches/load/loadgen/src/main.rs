//! `loadgen`: a closed-loop HTTP/1.1 load generator, plain and TLS, for Halyard's load tests.
//!
//! It exists because on a 2-core machine `wrk -t1` is the bottleneck when measuring TLS:
//! wrk with OpenSSL spends about 10 µs of client CPU per request, so the server sits idle
//! part of the time. This client does less per request: one mio event loop per thread with
//! edge-triggered readiness, rustls (aws-lc-rs) with buffered records, a response parser that
//! only reads the status code and Content-Length, no allocation per request on its side,
//! and a read that returns short ends the reading without an extra `EAGAIN` call.
//!
//! Each connection writes a batch of `--depth` requests (pipelined when > 1), waits for all
//! their responses, and writes the next batch at once (closed loop). Connections are opened,
//! handshaken and have one batch answered before the timed window opens; only the responses
//! that arrive within the window count. The output is close to wrk's:
//!
//! ```text
//! Running 3s test @ https://127.0.0.1:18902/health/live
//!   1 threads and 64 connections, depth 1, TLS
//! Latency p50 412.00us p99 1020.00us
//!   123456 requests in 3.00s
//! Requests/sec: 41152.00
//! Non-2xx responses: 3          (only when > 0)
//! Errors: 1                     (connection errors, only when > 0)
//! Client CPU: 1.02s (8.26us per request)
//! ```
//!
//! Usage: `loadgen URL [--connections N] [--duration S] [--depth N] [--threads N]
//! [--cacert FILE | --insecure]`, with URL `http://HOST:PORT/path` or `https://...`.

mod conn;
mod histogram;
mod tls;
mod worker;

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use conn::Stats;

const USAGE: &str = "usage: loadgen URL [--connections N] [--duration SECS] [--depth N] \
[--threads N] [--cacert FILE | --insecure]
  URL            http://HOST:PORT/path or https://HOST:PORT/path
  -c, --connections N   connections kept open (default 64)
  -d, --duration SECS   length of the timed window, e.g. 10 or 10s (default 10)
  --depth N             requests per batch, pipelined when > 1 (default 1)
  -t, --threads N       event loops (default 1)
  --cacert FILE         trust the PEM certificates in FILE (https)
  --insecure            accept any server certificate (https)";

struct Args {
    url: String,
    connections: usize,
    duration: Duration,
    depth: u32,
    threads: usize,
    cacert: Option<String>,
    insecure: bool,
}

struct Url {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let args = parse_args(std::env::args().skip(1))?;
    let url = parse_url(&args.url)?;
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .next()
        .ok_or_else(|| format!("cannot resolve {}", url.host))?;
    let tls = if url.tls {
        Some(tls::target(
            &url.host,
            args.cacert.as_deref(),
            args.insecure,
        )?)
    } else {
        None
    };
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let request = format!("GET {} HTTP/1.1\r\nHost: {host}\r\n\r\n", url.path);
    let batch: Box<[u8]> = request.repeat(args.depth as usize).into_bytes().into();

    println!(
        "Running {}s test @ {}",
        args.duration.as_secs_f64(),
        args.url
    );
    println!(
        "  {} threads and {} connections, depth {}{}",
        args.threads,
        args.connections,
        args.depth,
        if url.tls { ", TLS" } else { "" }
    );

    let start = Barrier::new(args.threads + 1);
    let stop = Barrier::new(args.threads + 1);
    let (stats, elapsed, cpu) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.threads)
            .map(|t| {
                // Connections split as evenly as possible.
                let connections = args.connections / args.threads
                    + usize::from(t < args.connections % args.threads);
                let job = worker::Job {
                    addr,
                    tls: tls.as_ref(),
                    connections,
                    duration: args.duration,
                    batch: batch.clone(),
                    depth: args.depth,
                    start: &start,
                    stop: &stop,
                };
                scope.spawn(move || worker::run(job))
            })
            .collect();
        start.wait();
        let (opened, cpu0) = (Instant::now(), cpu_time());
        stop.wait();
        let (elapsed, cpu) = (opened.elapsed(), cpu_time().saturating_sub(cpu0));
        let mut stats = Stats::new();
        for w in workers {
            match w.join() {
                Ok(s) => stats.merge(&s),
                Err(_) => eprintln!("loadgen: a worker panicked"),
            }
        }
        (stats, elapsed, cpu)
    });

    let requests = stats.ok + stats.non_2xx;
    let secs = elapsed.as_secs_f64();
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "Latency p50 {:.2}us p99 {:.2}us",
        us(stats.latency.quantile(0.50)),
        us(stats.latency.quantile(0.99))
    );
    println!("  {requests} requests in {secs:.2}s");
    println!("Requests/sec: {:.2}", requests as f64 / secs);
    if stats.non_2xx > 0 {
        println!("Non-2xx responses: {}", stats.non_2xx);
    }
    if stats.errors > 0 {
        println!("Errors: {}", stats.errors);
        if let Some(e) = &stats.first_error {
            eprintln!("loadgen: first error: {e}");
        }
    }
    let cpu_secs = cpu.as_secs_f64();
    if requests > 0 {
        let per_request = cpu_secs * 1e6 / requests as f64;
        println!("Client CPU: {cpu_secs:.2}s ({per_request:.2}us per request)");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("Client CPU: {cpu_secs:.2}s");
        eprintln!("loadgen: no request completed");
        Ok(ExitCode::FAILURE)
    }
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        url: String::new(),
        connections: 64,
        duration: Duration::from_secs(10),
        depth: 1,
        threads: 1,
        cacert: None,
        insecure: false,
    };
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "-c" | "--connections" => args.connections = number(&flag, &value()?)?,
            "-t" | "--threads" => args.threads = number(&flag, &value()?)?,
            "--depth" => args.depth = number(&flag, &value()?)?,
            "-d" | "--duration" => {
                let v = value()?;
                let secs: f64 = v
                    .strip_suffix('s')
                    .unwrap_or(&v)
                    .parse()
                    .map_err(|_| format!("bad --duration: {v}"))?;
                if !(secs > 0.0 && secs < 1e6) {
                    return Err(format!("bad --duration: {v}"));
                }
                args.duration = Duration::from_secs_f64(secs);
            }
            "--cacert" => args.cacert = Some(value()?),
            "--insecure" | "-k" => args.insecure = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}\n{USAGE}")),
            _ if args.url.is_empty() => args.url = arg,
            _ => return Err(format!("unexpected argument {arg}\n{USAGE}")),
        }
    }
    if args.url.is_empty() {
        return Err(USAGE.to_string());
    }
    if args.connections == 0 || args.threads == 0 || args.depth == 0 {
        return Err("--connections, --threads and --depth must be at least 1".into());
    }
    if args.threads > args.connections {
        return Err("--threads must not exceed --connections".into());
    }
    if args.cacert.is_some() && args.insecure {
        return Err("--cacert and --insecure exclude each other".into());
    }
    Ok(args)
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("bad {flag}: {value}"))
}

/// `http[s]://host[:port][/path]`; IPv6 hosts in brackets.
fn parse_url(url: &str) -> Result<Url, String> {
    let bad = || format!("bad URL {url}: expected http[s]://HOST:PORT/path");
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(bad());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None if tls => 443,
        None => 80,
    };
    if host.is_empty() || path.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(Url {
        tls,
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// This process's user + system CPU time (all threads).
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("https://127.0.0.1:8443/health/live?x=1").unwrap();
        assert!(u.tls);
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8443));
        assert_eq!(u.path, "/health/live?x=1");
        let u = parse_url("http://[::1]:80").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 80, "/"));
        let u = parse_url("http://localhost/").unwrap();
        assert_eq!(u.port, 80);
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http://:80/").is_err());
    }

    #[test]
    fn args() {
        let a = |s: &str| parse_args(s.split_whitespace().map(String::from));
        let args = a("http://x/ --connections 8 -d 3s --depth=4 -t 2").unwrap();
        assert_eq!((args.connections, args.depth, args.threads), (8, 4, 2));
        assert_eq!(args.duration, Duration::from_secs(3));
        assert!(a("http://x/ --depth 0").is_err());
        assert!(a("http://x/ --bogus").is_err());
        assert!(a("--insecure --cacert f http://x/").is_err());
    }
}
