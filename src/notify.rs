//! The service manager's notification protocol (`sd_notify(3)`), without libsystemd.
//!
//! Responsible for: reading `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` once (and
//! removing them, so no child process inherits them), with the parsing done by pure
//! functions; and sending state lines (`READY=1`, `WATCHDOG=1`, `STOPPING=1`) as one
//! datagram each over a Unix socket, named by a path or (a leading `@`) in the abstract
//! namespace. Not responsible for: when to send what (see `supervisor`).

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::Duration;

/// Where `NOTIFY_SOCKET` says the service manager listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A socket file (an absolute path).
    Path(PathBuf),
    /// A name in Linux's abstract namespace (`@name` in the variable, without the `@`).
    Abstract(Vec<u8>),
}

/// Why notifications cannot be sent.
#[derive(Debug)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor `@name` (`vsock:` addresses, used
    /// by virtual machine managers, are not supported).
    BadSocket(String),
    /// The address does not fit a Unix socket address, or the socket could not be made.
    Socket(io::Error),
    /// A datagram could not be sent.
    Send(&'static str, io::Error),
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::BadSocket(v) => write!(
                f,
                "NOTIFY_SOCKET={v:?} is neither an absolute path nor an @abstract name"
            ),
            NotifyError::Socket(e) => write!(f, "cannot open the notification socket: {e}"),
            NotifyError::Send(what, e) => write!(f, "cannot send {what} to systemd: {e}"),
        }
    }
}

impl std::error::Error for NotifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NotifyError::BadSocket(_) => None,
            NotifyError::Socket(e) | NotifyError::Send(_, e) => Some(e),
        }
    }
}

/// Why the watchdog settings were not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchdogError {
    /// `WATCHDOG_USEC` is not a positive number of microseconds.
    Usec(String),
    /// `WATCHDOG_PID` is not a process id.
    Pid(String),
}

impl fmt::Display for WatchdogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchdogError::Usec(v) => write!(
                f,
                "WATCHDOG_USEC={v:?} is not a positive number of microseconds"
            ),
            WatchdogError::Pid(v) => write!(f, "WATCHDOG_PID={v:?} is not a process id"),
        }
    }
}

impl std::error::Error for WatchdogError {}

/// Parses `NOTIFY_SOCKET`.
pub fn parse_socket(value: &OsStr) -> Result<Target, NotifyError> {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => Ok(Target::Path(PathBuf::from(value))),
        Some(b'@') if bytes.len() > 1 => Ok(Target::Abstract(bytes[1..].to_vec())),
        _ => Err(NotifyError::BadSocket(value.to_string_lossy().into_owned())),
    }
}

/// Parses `WATCHDOG_USEC` and `WATCHDOG_PID`: the watchdog timeout when the service manager
/// expects pings from this process (`my_pid`), `None` when it expects none from it (no
/// `WATCHDOG_USEC`, or a `WATCHDOG_PID` naming another process).
pub fn parse_watchdog(
    usec: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Result<Option<Duration>, WatchdogError> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    if let Some(pid) = pid {
        let pid: u32 = pid
            .trim()
            .parse()
            .map_err(|_| WatchdogError::Pid(pid.to_string()))?;
        if pid != my_pid {
            return Ok(None);
        }
    }
    match usec.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(Duration::from_micros(n))),
        _ => Err(WatchdogError::Usec(usec.to_string())),
    }
}

/// What the service manager asked of this process, read from the environment.
#[derive(Debug)]
pub struct FromEnv {
    /// Where to send notifications; `None` when not run by a service manager that wants them.
    pub socket: Option<Result<Target, NotifyError>>,
    /// The watchdog timeout, when one applies to this process.
    pub watchdog: Result<Option<Duration>, WatchdogError>,
}

/// Reads the notification variables and removes them from the environment.
///
/// Must run before the process starts any thread: removing environment variables races
/// with any other thread reading the environment.
pub fn take_env() -> FromEnv {
    let socket = std::env::var_os("NOTIFY_SOCKET").map(|v| parse_socket(&v));
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    let watchdog = parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id());
    for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(name);
    }
    FromEnv { socket, watchdog }
}

/// Sends state lines to the service manager.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

/// How long one send may block (the manager's queue full): a stuck manager must not stall
/// the thread that also watches for a shutdown.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

impl Notifier {
    /// An unbound datagram socket aimed at `target`.
    pub fn new(target: &Target) -> Result<Notifier, NotifyError> {
        let addr = match target {
            Target::Path(p) => SocketAddr::from_pathname(p),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)
            }
        }
        .map_err(NotifyError::Socket)?;
        let socket = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(NotifyError::Socket)?;
        Ok(Notifier { socket, addr })
    }

    /// Sends `state` (newline-separated `NAME=value` lines) as one datagram.
    pub fn send(&self, state: &'static str) -> Result<(), NotifyError> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(|_| ())
            .map_err(|e| NotifyError::Send(state, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_is_a_path_or_an_abstract_name() {
        assert_eq!(
            parse_socket(OsStr::new("/run/systemd/notify")).ok(),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_socket(OsStr::new("@/org/freedesktop/systemd1/notify/42")).ok(),
            Some(Target::Abstract(
                b"/org/freedesktop/systemd1/notify/42".to_vec()
            ))
        );
        for bad in ["", "@", "relative/path", "vsock:2:1234"] {
            let e = parse_socket(OsStr::new(bad)).expect_err(bad);
            assert!(e.to_string().contains("NOTIFY_SOCKET"), "{e}");
        }
    }

    #[test]
    fn the_watchdog_applies_when_its_pid_is_ours_or_absent() {
        let d = Some(Duration::from_millis(200));
        assert_eq!(parse_watchdog(Some("200000"), None, 7), Ok(d));
        assert_eq!(parse_watchdog(Some("200000"), Some("7"), 7), Ok(d));
        assert_eq!(parse_watchdog(Some("200000"), Some("8"), 7), Ok(None));
        assert_eq!(parse_watchdog(None, Some("7"), 7), Ok(None));
        assert_eq!(
            parse_watchdog(Some("0"), None, 7),
            Err(WatchdogError::Usec("0".into()))
        );
        assert_eq!(
            parse_watchdog(Some("soon"), None, 7),
            Err(WatchdogError::Usec("soon".into()))
        );
        assert_eq!(
            parse_watchdog(Some("1"), Some("me"), 7),
            Err(WatchdogError::Pid("me".into()))
        );
    }

    #[test]
    fn a_state_arrives_as_one_datagram_on_a_path_and_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("halyard-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("notify.sock");
        let by_path = UnixDatagram::bind(&path).expect("bind path");
        let name = format!("halyard-notify-test-{}", std::process::id());
        let by_name = {
            use std::os::linux::net::SocketAddrExt;
            let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract");
            UnixDatagram::bind_addr(&addr).expect("bind abstract")
        };
        let targets = [
            (parse_socket(path.as_os_str()).expect("path"), &by_path),
            (
                parse_socket(OsStr::new(&format!("@{name}"))).expect("name"),
                &by_name,
            ),
        ];
        for (target, receiver) in targets {
            receiver
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let n = Notifier::new(&target).expect("notifier");
            n.send("READY=1").expect("send");
            let mut buf = [0u8; 64];
            let len = receiver.recv(&mut buf).expect("received");
            assert_eq!(&buf[..len], b"READY=1");
        }
        let _ = std::fs::remove_dir_all(&dir);
        // Nobody listening: the error names what was being sent.
        let gone = Notifier::new(&Target::Path(path)).expect("notifier");
        let e = gone.send("STOPPING=1").expect_err("no receiver");
        assert!(e.to_string().contains("STOPPING=1"), "{e}");
    }
}
