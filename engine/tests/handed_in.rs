//! The engine in-process, for what a service manager relies on: a listener handed in from
//! outside (socket activation) served by every loop and left open for the next server,
//! [`Liveness`] rounds that a stuck handler holds up, and [`ShutdownHandle::wait`].
//! Over loopback TCP, bounded in time; every server started here is shut down by its handle.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use halyard_engine::{
    Admission, App, Config, Reply, Request, RequestHead, Response, Server, ShutdownHandle,
};
use halyard_testkit::Client;

struct TestApp;

/// Set when the `/stall` handler has started.
static STALLING: AtomicBool = AtomicBool::new(false);

impl App for TestApp {
    type Context = ();

    fn admit(&self, _head: &RequestHead) -> Admission<()> {
        Admission::Accept {
            body_limit: 1024,
            context: (),
        }
    }

    fn handle(&self, req: Request<()>) -> Reply {
        match req.head.path() {
            // Holds its loop: what a watchdog must notice.
            "/stall" => {
                STALLING.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(800));
                Reply::Now(Response::static_json(200, b"{}"))
            }
            _ => Reply::Now(Response::error(404, "NOT_FOUND", "nope")),
        }
    }
}

fn config(threads: usize) -> Config {
    Config {
        listen: "127.0.0.1:1".parse().expect("addr"),
        threads,
        shutdown_timeout_ms: 3_000,
        ..Config::default()
    }
}

/// Runs `server` on a thread; returns its shutdown handle and the thread.
fn run(server: Server) -> (ShutdownHandle, JoinHandle<std::io::Result<()>>) {
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run(Arc::new(TestApp)));
    (handle, thread)
}

fn stop(handle: &ShutdownHandle, thread: JoinHandle<std::io::Result<()>>) {
    handle.shutdown();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(thread.join());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("server stops in time")
        .expect("no panic")
        .expect("clean exit");
}

fn live(addr: SocketAddr) -> u16 {
    let mut c = Client::connect(addr).expect("connect");
    c.get("/health/live").expect("answer").status
}

#[test]
fn a_handed_in_listener_is_served_by_every_loop_and_outlives_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let kept = listener.try_clone().expect("clone");
    let server = Server::from_listener(config(3), listener).expect("server");
    // `config.listen` is ignored.
    assert_eq!(server.local_addr(), addr);
    let (handle, thread) = run(server);
    for _ in 0..30 {
        assert_eq!(live(addr), 200);
    }
    stop(&handle, thread);

    // The server closed its descriptors, not the socket: a connection made now waits in the
    // queue and the next server on the same socket answers it.
    let mut waiting = Client::connect(addr).expect("connect while no server runs");
    waiting
        .send(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let (handle, thread) = run(Server::from_listener(config(2), kept).expect("server"));
    assert_eq!(waiting.response().expect("answered").status, 200);
    stop(&handle, thread);
}

#[test]
fn what_is_not_a_listening_tcp_socket_is_refused() {
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let e = Server::from_listener(config(1), TcpListener::from(OwnedFd::from(udp)))
        .expect_err("a datagram socket");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");

    let peer = TcpListener::bind("127.0.0.1:0").expect("bind");
    let stream = TcpStream::connect(peer.local_addr().expect("addr")).expect("connect");
    let e = Server::from_listener(config(1), TcpListener::from(OwnedFd::from(stream)))
        .expect_err("a connected stream");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("not listening"), "{e}");
}

/// Polls `answered` until true or `within` passes.
fn answered_within(
    liveness: &halyard_engine::Liveness,
    round: halyard_engine::liveness::Round,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if liveness.answered(round) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    liveness.answered(round)
}

#[test]
fn a_loop_stuck_in_a_handler_does_not_answer_until_it_is_back() {
    let server = Server::bind(Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..config(1)
    })
    .expect("bind");
    let addr = server.local_addr();
    let liveness = server.liveness();
    let (handle, thread) = run(server);
    // Idle loops answer at once: the round wakes them.
    let round = liveness.ask();
    assert!(answered_within(&liveness, round, Duration::from_secs(5)));

    let stalled = std::thread::spawn(move || {
        let mut c = Client::connect(addr).expect("connect");
        c.get("/stall").expect("answer").status
    });
    // Ask while the loop is held in the handler.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !STALLING.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the handler did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    let round = liveness.ask();
    assert!(
        !answered_within(&liveness, round, Duration::from_millis(300)),
        "answered while the only loop sleeps in a handler"
    );
    assert!(answered_within(&liveness, round, Duration::from_secs(5)));
    assert_eq!(stalled.join().expect("client"), 200);
    stop(&handle, thread);
}

#[test]
fn wait_returns_when_a_shutdown_is_requested() {
    let server = Server::bind(Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..config(1)
    })
    .expect("bind");
    let (handle, thread) = run(server);
    assert!(
        !handle.wait(Some(Duration::from_millis(50))),
        "no shutdown yet"
    );
    let waiter = {
        let handle = handle.clone();
        std::thread::spawn(move || handle.wait(None))
    };
    let started = Instant::now();
    stop(&handle, thread);
    assert!(waiter.join().expect("waiter"));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(handle.wait(Some(Duration::ZERO)), "stays requested");
}
