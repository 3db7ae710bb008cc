//! Socket activation (`sd_listen_fds(3)`): serving the listening socket the service manager
//! opened and passed as descriptor 3, instead of binding `--listen`.
//!
//! Responsible for: reading `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` once (parsed by
//! a pure function) and removing them, so no child process inherits them; and taking
//! ownership of the passed descriptor. Not responsible for: checking that the descriptor is
//! a listening TCP socket, or sharing it among the event loops (the engine's
//! `Server::from_listener` does both).

use std::fmt;
use std::io;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
pub const FIRST_FD: RawFd = 3;

/// Why the passed sockets cannot be served.
#[derive(Debug)]
pub enum ActivationError {
    /// `LISTEN_PID` is not a process id.
    Pid(String),
    /// `LISTEN_FDS` is not a number of descriptors.
    Fds(String),
    /// More than one socket was passed: the server serves one address.
    Count(usize),
    /// The descriptor said to be passed is not open.
    NotOpen(RawFd, io::Error),
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::Pid(v) => write!(f, "LISTEN_PID={v:?} is not a process id"),
            ActivationError::Fds(v) => {
                write!(f, "LISTEN_FDS={v:?} is not a number of descriptors")
            }
            ActivationError::Count(n) => write!(
                f,
                "systemd passed {n} sockets; halyard serves one (one ListenStream= in the \
                 .socket unit)"
            ),
            ActivationError::NotOpen(fd, e) => {
                write!(
                    f,
                    "systemd said it passed descriptor {fd}, which is not open: {e}"
                )
            }
        }
    }
}

impl std::error::Error for ActivationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ActivationError::NotOpen(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Sockets passed to this process. Made only from the environment, which is cleared as it
/// is read, so the descriptors are taken at most once (see [`Passed::into_listener`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Passed {
    count: usize,
    names: Vec<String>,
}

impl Passed {
    /// The socket's name (`FileDescriptorName=`, by default the socket unit's name).
    pub fn name(&self) -> Option<&str> {
        self.names.first().map(String::as_str)
    }

    /// Takes ownership of the one passed socket.
    pub fn into_listener(self) -> Result<TcpListener, ActivationError> {
        if self.count != 1 {
            return Err(ActivationError::Count(self.count));
        }
        listener_at(FIRST_FD)
    }
}

/// Parses the variables as `sd_listen_fds` does: sockets are passed to this process
/// (`my_pid`) only when both `LISTEN_PID` and `LISTEN_FDS` are set, `LISTEN_PID` is this
/// process (the variables may have been inherited from a parent they were meant for), and
/// `LISTEN_FDS` is not 0. Names that do not match the count are ignored, as they are useless.
fn parse(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    my_pid: u32,
) -> Result<Option<Passed>, ActivationError> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| ActivationError::Pid(pid.to_string()))?;
    if pid != my_pid {
        return Ok(None);
    }
    let count: usize = fds
        .trim()
        .parse()
        .map_err(|_| ActivationError::Fds(fds.to_string()))?;
    if count == 0 {
        return Ok(None);
    }
    let names: Vec<String> = names
        .map(|n| n.split(':').map(str::to_string).collect())
        .filter(|n: &Vec<String>| n.len() == count)
        .unwrap_or_default();
    Ok(Some(Passed { count, names }))
}

/// Reads the activation variables and removes them from the environment.
///
/// Must run before the process starts any thread: removing environment variables races
/// with any other thread reading the environment.
pub fn take_env() -> Result<Option<Passed>, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    parse(
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
        std::process::id(),
    )
}

/// Takes ownership of descriptor `fd`, which the service manager passed to this process.
fn listener_at(fd: RawFd) -> Result<TcpListener, ActivationError> {
    // SAFETY: fcntl(F_GETFD) reads the flags of a descriptor number and touches no memory;
    // on a number that is not open it fails with EBADF, reported below.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(ActivationError::NotOpen(fd, io::Error::last_os_error()));
    }
    // Close-on-exec, as `sd_listen_fds` sets it: a child of this process must not keep the
    // socket (and its queue) open. Failing to set it changes nothing else, so it is ignored.
    // SAFETY: as above; F_SETFD writes only the descriptor's flags.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
    }
    // SAFETY: `fd` is open (checked above) and nothing else in this process owns it: it was
    // open when the process started (the manager passed it, and LISTEN_PID named this
    // process), so no code here created it, and it is taken once, because `Passed` is made
    // only from the environment, which `take_env` clears, and `into_listener` consumes it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(TcpListener::from(owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn sockets_are_ours_only_when_listen_pid_is_our_pid() {
        let passed = |names: &[&str]| Passed {
            count: 1,
            names: names.iter().map(|n| n.to_string()).collect(),
        };
        assert_eq!(
            parse(Some("7"), Some("1"), None, 7).ok(),
            Some(Some(passed(&[])))
        );
        let named = parse(Some("7"), Some("1"), Some("web"), 7).expect("parsed");
        assert_eq!(named.as_ref().and_then(Passed::name), Some("web"));
        // Meant for another process (inherited from a parent), or nothing passed.
        assert_eq!(parse(Some("8"), Some("1"), None, 7).ok(), Some(None));
        assert_eq!(parse(None, Some("1"), None, 7).ok(), Some(None));
        assert_eq!(parse(Some("7"), None, None, 7).ok(), Some(None));
        assert_eq!(parse(Some("7"), Some("0"), None, 7).ok(), Some(None));
        // Names that do not match the count are dropped.
        let two = parse(Some("7"), Some("2"), Some("only-one"), 7).expect("parsed");
        assert_eq!(
            two,
            Some(Passed {
                count: 2,
                names: vec![]
            })
        );
        let e = parse(Some("x"), Some("1"), None, 7).expect_err("bad pid");
        assert!(e.to_string().contains("LISTEN_PID"), "{e}");
        let e = parse(Some("7"), Some("-1"), None, 7).expect_err("bad count");
        assert!(e.to_string().contains("LISTEN_FDS"), "{e}");
    }

    #[test]
    fn more_than_one_socket_is_refused_before_any_descriptor_is_touched() {
        let two = Passed {
            count: 2,
            names: vec![],
        };
        let e = two.into_listener().expect_err("two sockets");
        assert!(matches!(e, ActivationError::Count(2)), "{e}");
    }

    #[test]
    fn a_passed_descriptor_becomes_an_owned_close_on_exec_listener() {
        let original = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = original.local_addr().expect("addr");
        let fd = original.into_raw_fd();
        // As systemd passes it: inheritable.
        // SAFETY: flags of a descriptor this test owns (released by into_raw_fd above).
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, 0);
        }
        let taken = listener_at(fd).expect("taken");
        assert_eq!(taken.as_raw_fd(), fd);
        assert_eq!(taken.local_addr().expect("addr"), addr);
        // SAFETY: reads the flags of the descriptor `taken` owns.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        // It still accepts: the same socket, not a copy.
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        taken.accept().expect("accept");
    }
}
