//! Runs the `halyard` binary on a loopback port for a test, and stops it by PID.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
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
    /// Lines it printed on stderr, when [`StartOptions::capture_stderr`] asked for them
    /// (else stderr goes to the test's).
    pub stderr: Option<mpsc::Receiver<String>>,
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

/// A server started by [`Halyard::start_shared`], alive until the test process exits.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data directory (removed at exit).
    pub data_dir: PathBuf,
    /// The process id.
    pub pid: u32,
}

/// How to start a server: arguments, environment, and whether it dies with the test process.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions<'a> {
    /// Extra arguments after `serve --listen 127.0.0.1:0 --data-dir DIR`.
    pub args: &'a [&'a str],
    /// Environment variables set for the child (on top of the inherited ones).
    pub env: &'a [(&'a str, &'a str)],
    /// Ask the kernel to send SIGTERM to the child when the thread that spawned it exits
    /// (`PR_SET_PDEATHSIG`): a backstop for servers kept in statics, which are never dropped.
    pub die_with_parent: bool,
    /// Shell commands run by `bash` before it `exec`s the server (so the pid is still the
    /// server's), for limits and signal dispositions the server inherits:
    /// `ulimit -n 48`, `trap '' XFSZ; ulimit -f 64`.
    pub prelude: Option<&'a str>,
    /// Collect stderr lines in [`Halyard::stderr`] instead of passing them through.
    pub capture_stderr: bool,
    /// A descriptor of the test's (a listening socket) that the child gets as descriptor 3,
    /// where systemd passes sockets to an activated service. The descriptor stays open in
    /// the test. `LISTEN_FDS`/`LISTEN_PID` are the test's to set (see `prelude`).
    pub fd3: Option<std::os::fd::RawFd>,
}

impl Halyard {
    /// Starts `bin serve --listen 127.0.0.1:0 --data-dir <fresh dir> <args>` and waits for
    /// its listening line.
    pub fn start(bin: &Path, args: &[&str]) -> Halyard {
        Self::start_with_env(bin, args, &[])
    }

    /// Like [`start`](Self::start), with extra environment variables for the child
    /// (`HALYARD_ROOT_KEY`, `HALYARD_MASTER_KEY`, ...).
    pub fn start_with_env(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Halyard {
        Self::start_fresh(
            bin,
            StartOptions {
                args,
                env,
                ..StartOptions::default()
            },
        )
    }

    /// Like [`start_opts`](Self::start_opts), on a fresh data directory removed on drop.
    pub fn start_fresh(bin: &Path, opts: StartOptions<'_>) -> Halyard {
        let mut h = Self::start_opts(bin, &temp_dir("srv"), opts);
        h.owns_dir = true;
        h
    }

    /// Like [`start`](Self::start), on an existing data directory (kept on drop).
    pub fn start_in(bin: &Path, data_dir: &Path, args: &[&str]) -> Halyard {
        Self::start_in_with_env(bin, data_dir, args, &[])
    }

    /// Like [`start_in`](Self::start_in), with extra environment variables for the child.
    pub fn start_in_with_env(
        bin: &Path,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Halyard {
        Self::start_opts(
            bin,
            data_dir,
            StartOptions {
                args,
                env,
                ..StartOptions::default()
            },
        )
    }

    /// Starts a server for the whole test process, to be kept in a static (statics are
    /// never dropped). It is spawned from a thread that lives as long as the process, with
    /// `PR_SET_PDEATHSIG`, so the kernel stops it even if the test process is killed; on a
    /// normal exit an `atexit` hook sends it SIGTERM, waits for it (bounded) and removes its
    /// fresh data directory.
    pub fn start_shared(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Shared {
        let bin = bin.to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("halyard-shared-parent".into())
            .spawn(move || {
                let dir = temp_dir("shared");
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let h = Halyard::start_opts(
                    &bin,
                    &dir,
                    StartOptions {
                        args: &args,
                        env: &env,
                        die_with_parent: true,
                        ..StartOptions::default()
                    },
                );
                register_exit_cleanup(h.pid(), dir.clone());
                let _ = tx.send(Shared {
                    addr: h.addr,
                    data_dir: dir,
                    pid: h.pid(),
                });
                // PR_SET_PDEATHSIG fires when the spawning thread exits: keep it alive,
                // holding the guard (whose Drop never runs).
                let _guard = h;
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the shared-server thread");
        rx.recv_timeout(Duration::from_secs(30))
            .expect("shared halyard did not start")
    }

    /// Starts `bin serve --listen 127.0.0.1:0 --data-dir DATA_DIR` with `opts` (the
    /// directory is kept on drop).
    pub fn start_opts(bin: &Path, data_dir: &Path, opts: StartOptions<'_>) -> Halyard {
        let mut cmd = match opts.prelude {
            // `$0` is the binary and `$@` its arguments: the prelude cannot garble them.
            Some(prelude) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!("{prelude}\nexec \"$0\" \"$@\""))
                    .arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(opts.args);
        if !opts.args.contains(&"--storage") {
            if let Some(url) = crate::pg::database_for(data_dir) {
                cmd.args(["--storage", &url]);
            }
        }
        cmd.envs(opts.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if opts.capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        if opts.die_with_parent {
            // SAFETY: the closure runs in the forked child before exec and only calls
            // prctl(2), which is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        if let Some(fd) = opts.fd3 {
            // SAFETY: the closure runs in the forked child before exec and only calls dup2(2)
            // and fcntl(2), which are async-signal-safe. dup2 gives the copy no close-on-exec
            // flag; when the descriptor is 3 already, dup2 would do nothing, so the flag is
            // cleared instead.
            unsafe {
                cmd.pre_exec(move || {
                    let ok = if fd == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0) == 0
                    } else {
                        libc::dup2(fd, 3) == 3
                    };
                    if !ok {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn halyard");
        let rx = lines(child.stdout.take().expect("stdout"));
        let stderr = child.stderr.take().map(lines);
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("halyard did not print its listening line in time");
            });
            let rest = line
                .split("listening on http://")
                .nth(1)
                .or_else(|| line.split("listening on https://").nth(1));
            if let Some(rest) = rest {
                let addr = rest.split_whitespace().next().unwrap_or("");
                break addr.parse().expect("listening address");
            }
        };
        Halyard {
            child: Some(child),
            addr,
            stdout: rx,
            data_dir: data_dir.to_path_buf(),
            stderr,
            owns_dir: false,
        }
    }

    /// The captured stderr lines, read until one contains `needle` or 10 s have passed.
    /// Empty when stderr is not captured.
    pub fn stderr_until(&self, needle: &str) -> Vec<String> {
        let Some(rx) = &self.stderr else {
            return Vec::new();
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while !seen.iter().any(|l: &String| l.contains(needle)) {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        seen
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
            crate::pg::drop_database_for(&self.data_dir);
        }
    }
}

/// Runs `bin ARGS` (with `env` added) to its exit and returns its status and stderr; kills
/// it and panics if it still runs after `within`. For commands expected to end, such as a
/// server that must refuse to start.
pub fn run_to_exit(
    bin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    within: Duration,
) -> (ExitStatus, String) {
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = lines(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} still running after {within:?}", bin.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The pipe closed with the process: the reader thread ends after the last line.
    let text: Vec<String> = stderr.iter().collect();
    (status, text.join("\n"))
}

/// Forwards the lines read from `pipe` to a channel, from a thread that ends with the pipe.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
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

/// Servers started by [`Halyard::start_shared`]: pid and data directory, stopped at exit.
static SHARED: Mutex<Vec<(i32, PathBuf)>> = Mutex::new(Vec::new());

fn register_exit_cleanup(pid: u32, dir: PathBuf) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return;
    }
    if let Ok(mut v) = SHARED.lock() {
        v.push((pid, dir));
    }
    HOOK.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` with no captured state.
        unsafe {
            libc::atexit(stop_shared);
        }
    });
}

extern "C" fn stop_shared() {
    let servers = match SHARED.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(_) => return,
    };
    for (pid, dir) in servers {
        // SAFETY: kill(2)/waitpid(2) on the positive pid of our own child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut status = 0;
            // SAFETY: as above; WNOHANG never blocks.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r != 0 {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
