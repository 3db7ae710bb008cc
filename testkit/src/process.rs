//! Runs the `halyard` binary on a loopback port for a test, and stops it by PID.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `halyard serve`, stopped when dropped.
#[derive(Debug)]
pub struct Halyard {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Lines it printed on stdout after the listening line.
    pub stdout: mpsc::Receiver<String>,
    /// Its data directory (removed on drop when the guard created it).
    pub data_dir: PathBuf,
    owns_dir: bool,
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("halyard-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

impl Halyard {
    /// Starts `bin serve --listen 127.0.0.1:0 --data-dir <fresh dir> <args>` and waits for
    /// its listening line.
    pub fn start(bin: &Path, args: &[&str]) -> Halyard {
        let dir = temp_dir("srv");
        let mut h = Self::start_in(bin, &dir, args);
        h.owns_dir = true;
        h
    }

    /// Like [`start`](Self::start), on an existing data directory (kept on drop).
    pub fn start_in(bin: &Path, data_dir: &Path, args: &[&str]) -> Halyard {
        let mut child = Command::new(bin)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn halyard");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("halyard did not print its listening line in time");
            });
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("");
                break addr.parse().expect("listening address");
            }
        };
        Halyard {
            child: Some(child),
            addr,
            stdout: rx,
            data_dir: data_dir.to_path_buf(),
            owns_dir: false,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: i32) {
        // A pid of 0 would signal the whole process group: never send that.
        if let Some(c) = &self.child {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) with a positive pid of our own child has no memory effects.
                unsafe {
                    libc::kill(pid, sig);
                }
            }
        }
    }

    /// Waits up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident set size of the process in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

impl Drop for Halyard {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                if let Some(c) = self.child.as_mut() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Raises this process's open-file soft limit to its hard limit (children inherit it), so
/// tests with a thousand connections do not trip over a low default.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
