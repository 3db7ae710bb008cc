//! Load-test peer for `benches/load/run.sh`: a minimal axum + tokio server that answers
//! `GET /health/live` with the same JSON body and content type as Halyard.
//!
//! Usage: `halyard-peer-axum PORT [--threads N]` (default 2 worker threads). Listens on
//! 127.0.0.1 only.

use std::net::SocketAddr;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;

const BODY: &str = r#"{"status":"ok"}"#;

fn main() {
    let mut port: Option<u16> = None;
    let mut threads = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage());
            }
            _ => port = Some(arg.parse().unwrap_or_else(|_| usage())),
        }
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port.unwrap_or_else(|| usage())));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_io()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let app = Router::new().route(
            "/health/live",
            get(|| async { ([(CONTENT_TYPE, "application/json")], BODY) }),
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"))
            // Like Halyard: TCP_NODELAY on every accepted socket.
            .tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
        axum::serve(listener, app).await.expect("serve");
    });
}

fn usage() -> ! {
    eprintln!("usage: halyard-peer-axum PORT [--threads N]");
    std::process::exit(2)
}
