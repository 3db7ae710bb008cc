//! Running under systemd, black-box: the real binary with `NOTIFY_SOCKET` aimed at a datagram
//! socket this test binds (readiness, watchdog pings, stopping), and with a listening socket
//! this test binds passed as descriptor 3 (socket activation), across a restart.
//! Loopback only; every wait is bounded; every server is stopped by PID (SIGTERM, or the
//! guard's Drop).

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use halyard_testkit::{temp_dir, Client, Halyard, StartOptions};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_halyard"))
}

/// Removes a directory when the test ends, however it ends.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Has bash export the activation variables and then `exec` the server, so `$$` (bash's
/// pid) is the server's pid, as systemd sets `LISTEN_PID` after its fork.
const ACTIVATED: &str = "export LISTEN_FDS=1 LISTEN_PID=$$";

/// The notifications received until one equals `want` (included); panics after `within`.
fn until(sock: &UnixDatagram, want: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {want} within {within:?}; got {seen:?}");
        sock.set_read_timeout(Some(left)).expect("read timeout");
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg == want;
                seen.push(msg);
                if done {
                    return seen;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("no {want} within {within:?}; got {seen:?}")
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn live(addr: std::net::SocketAddr) -> u16 {
    let mut c = Client::connect(addr).expect("connect");
    c.get("/health/live").expect("answer").status
}

fn stop(mut h: Halyard) {
    h.signal(libc::SIGTERM);
    let status = h
        .wait_exit(Duration::from_secs(15))
        .expect("halyard did not stop on SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn notifies_ready_then_watchdog_pings_then_stopping() {
    let dir = temp_dir("notify");
    let _guard = DirGuard(dir.clone());
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notification socket");
    let notify_socket = path.to_str().expect("utf-8 temp path");
    let env = [
        ("NOTIFY_SOCKET", notify_socket),
        // 200 ms: a ping every 100 ms.
        ("WATCHDOG_USEC", "200000"),
    ];
    let h = Halyard::start_opts(
        bin(),
        &dir.join("data"),
        StartOptions {
            args: &["--threads", "2"],
            env: &env,
            ..Default::default()
        },
    );
    let before_ready = until(&sock, "READY=1", Duration::from_secs(20));
    assert_eq!(before_ready, ["READY=1"], "READY=1 comes first");
    // Ready means accepting: answered at once, not after some later warm-up.
    assert_eq!(live(h.addr), 200);

    let started = Instant::now();
    for _ in 0..3 {
        let seen = until(&sock, "WATCHDOG=1", Duration::from_secs(5));
        assert_eq!(seen, ["WATCHDOG=1"]);
    }
    // Three pings at 100 ms intervals; generous for a loaded machine, but far below what
    // a ping per watchdog period or less would take.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?} for three pings",
        started.elapsed()
    );
    assert_eq!(live(h.addr), 200);

    h.signal(libc::SIGTERM);
    // Pings already on their way may come before it.
    let seen = until(&sock, "STOPPING=1", Duration::from_secs(10));
    assert!(
        seen[..seen.len() - 1].iter().all(|m| m == "WATCHDOG=1"),
        "{seen:?}"
    );
    stop(h);
}

#[test]
fn no_watchdog_pings_when_watchdog_pid_is_another_process() {
    let dir = temp_dir("notify-pid");
    let _guard = DirGuard(dir.clone());
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notification socket");
    let notify_socket = path.to_str().expect("utf-8 temp path");
    // pid 1 is never the server's.
    let env = [
        ("NOTIFY_SOCKET", notify_socket),
        ("WATCHDOG_USEC", "100000"),
        ("WATCHDOG_PID", "1"),
    ];
    let h = Halyard::start_opts(
        bin(),
        &dir.join("data"),
        StartOptions {
            env: &env,
            ..Default::default()
        },
    );
    until(&sock, "READY=1", Duration::from_secs(20));
    // Ten watchdog periods of silence, then the next message is the stop.
    std::thread::sleep(Duration::from_secs(1));
    h.signal(libc::SIGTERM);
    let seen = until(&sock, "STOPPING=1", Duration::from_secs(10));
    assert_eq!(seen, ["STOPPING=1"]);
    stop(h);
}

/// Starts the server on the test's `listener` (as descriptor 3), with `NOTIFY_SOCKET` in the
/// abstract namespace, and waits for its `READY=1`.
fn start_activated(listener: &TcpListener, data: &Path, notify: &UnixDatagram) -> Halyard {
    let name = notify
        .local_addr()
        .ok()
        .and_then(|a| {
            use std::os::linux::net::SocketAddrExt;
            a.as_abstract_name()
                .map(|n| String::from_utf8_lossy(n).into_owned())
        })
        .expect("an abstract name");
    let notify_socket = format!("@{name}");
    let env = [("NOTIFY_SOCKET", notify_socket.as_str())];
    let h = Halyard::start_opts(
        bin(),
        data,
        StartOptions {
            // Two loops share the one passed socket.
            args: &["--threads", "2"],
            env: &env,
            prelude: Some(ACTIVATED),
            fd3: Some(listener.as_raw_fd()),
            ..Default::default()
        },
    );
    until(notify, "READY=1", Duration::from_secs(20));
    h
}

#[test]
fn serves_the_passed_socket_and_keeps_connections_made_while_it_restarts() {
    let dir = temp_dir("activation");
    let _guard = DirGuard(dir.clone());
    let data = dir.join("data");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let notify = {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("halyard-systemd-test-{}", std::process::id());
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name).expect("abstract");
        UnixDatagram::bind_addr(&a).expect("bind the notification socket")
    };

    let first = start_activated(&listener, &data, &notify);
    // Its listening line names the passed socket, not `--listen 127.0.0.1:0`.
    assert_eq!(first.addr, addr);
    for _ in 0..20 {
        assert_eq!(live(addr), 200);
    }
    stop(first);
    assert_eq!(
        until(&notify, "STOPPING=1", Duration::from_secs(5))
            .last()
            .map(String::as_str),
        Some("STOPPING=1")
    );

    // No server runs now, but the socket is open (the test holds it, as systemd would): the
    // kernel completes these connections and queues them, nothing is refused.
    let mut waiting: Vec<Client> = (0..20)
        .map(|i| {
            let mut c = Client::connect(addr).unwrap_or_else(|e| panic!("connect {i}: {e}"));
            c.send(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
                .expect("send while down");
            c
        })
        .collect();

    let second = start_activated(&listener, &data, &notify);
    assert_eq!(second.addr, addr);
    for (i, c) in waiting.iter_mut().enumerate() {
        let r = c
            .response()
            .unwrap_or_else(|e| panic!("connection {i} made while down: {e}"));
        assert_eq!(r.status, 200, "connection {i}");
    }
    assert_eq!(live(addr), 200);
    stop(second);
}

#[test]
fn a_socket_passed_to_another_pid_is_not_taken() {
    let dir = temp_dir("activation-pid");
    let _guard = DirGuard(dir.clone());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let h = Halyard::start_opts(
        bin(),
        &dir.join("data"),
        StartOptions {
            // As when the variables were inherited from a parent they were meant for.
            prelude: Some("export LISTEN_FDS=1 LISTEN_PID=1"),
            fd3: Some(listener.as_raw_fd()),
            ..Default::default()
        },
    );
    // It bound `--listen 127.0.0.1:0` instead.
    assert_ne!(h.addr, addr);
    assert_eq!(live(h.addr), 200);
    stop(h);
}
