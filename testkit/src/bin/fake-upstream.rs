//! `fake-upstream [--listen 127.0.0.1:0] [--tls-cert FILE --tls-key FILE]`: the scriptable
//! fake OpenAI-compatible provider of `halyard_testkit::upstream` as a process, for
//! benchmarks and manual tries.
//!
//! Responsible for: flags, the `listening on ADDR` line on stdout, and staying up until
//! SIGTERM, SIGINT or the end of stdin (so a parent that dies takes it along: keep stdin
//! open, `</dev/null` ends it at once).
//! Not responsible for: anything the upstream does (see `halyard_testkit::upstream`), or
//! the open-file limit (raise it with `ulimit -n` before ten thousand streams).

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

use halyard_testkit::{FakeUpstream, UpstreamOptions};

const USAGE: &str = "usage: fake-upstream [--listen ADDR] [--tls-cert FILE --tls-key FILE]";

/// The command line, read.
#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
}

/// Why the process cannot start.
#[derive(Debug)]
enum StartError {
    /// An argument this program does not take.
    Unknown(String),
    /// A flag without its value.
    Missing(&'static str),
    /// `--listen` is not an address.
    BadAddr(String),
    /// Only one of `--tls-cert` and `--tls-key` was given.
    HalfTls,
    /// A PEM file could not be read.
    Read(PathBuf, io::Error),
    /// The upstream refused to start.
    Upstream(halyard_testkit::upstream::UpstreamError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Unknown(a) => write!(f, "unknown argument `{a}`\n{USAGE}"),
            StartError::Missing(flag) => write!(f, "{flag} needs a value\n{USAGE}"),
            StartError::BadAddr(a) => write!(f, "--listen: `{a}` is not an address"),
            StartError::HalfTls => f.write_str("--tls-cert and --tls-key go together"),
            StartError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            StartError::Upstream(e) => write!(f, "{e}"),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    // Before any thread starts, so that every thread inherits the mask and the signals
    // wait for `sigwait` instead of killing the process.
    let stop_signals = block_stop_signals();
    let upstream = match start(&args) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("fake-upstream: {e}");
            return ExitCode::from(2);
        }
    };
    println!("listening on {}", upstream.addr());
    let _ = io::stdout().flush();
    wait_for_stop(stop_signals);
    drop(upstream);
    ExitCode::SUCCESS
}

fn start(args: &[String]) -> Result<FakeUpstream, StartError> {
    let args = parse_args(args)?;
    let tls = match &args.tls {
        Some((cert, key)) => {
            let read = |p: &PathBuf| std::fs::read(p).map_err(|e| StartError::Read(p.clone(), e));
            Some((read(cert)?, read(key)?))
        }
        None => None,
    };
    FakeUpstream::bind(args.listen, UpstreamOptions { tls }).map_err(StartError::Upstream)
}

fn parse_args(args: &[String]) -> Result<Args, StartError> {
    let mut listen = "127.0.0.1:0".to_string();
    let (mut cert, mut key) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let flag: &'static str = match arg.as_str() {
            "--listen" => "--listen",
            "--tls-cert" => "--tls-cert",
            "--tls-key" => "--tls-key",
            other => return Err(StartError::Unknown(other.to_string())),
        };
        let value = it.next().ok_or(StartError::Missing(flag))?.clone();
        match flag {
            "--listen" => listen = value,
            "--tls-cert" => cert = Some(value),
            _ => key = Some(value),
        }
    }
    let listen = listen.parse().map_err(|_| StartError::BadAddr(listen))?;
    let tls = match (cert, key) {
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => None,
        _ => return Err(StartError::HalfTls),
    };
    Ok(Args { listen, tls })
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread started after) and
/// returns the set, for [`wait_for_stop`].
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask only
    // reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Returns when one of the blocked signals arrives or stdin reaches its end.
fn wait_for_stop(signals: libc::sigset_t) {
    let (tx, rx) = mpsc::channel();
    let on_signal = tx.clone();
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: sigwait reads the initialised set and writes the signal number.
        unsafe {
            libc::sigwait(&signals, &mut sig);
        }
        let _ = on_signal.send(());
    });
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        let _ = tx.send(());
    });
    let _ = rx.recv();
}
