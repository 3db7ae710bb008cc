//! A tool server for tests of HTTP tools: an HTTP/1.1 server on loopback whose paths script
//! the answer, and which records what it was sent.
//!
//! Responsible for: one thread accepting connections and one short-lived thread per
//! connection (tests make a handful of calls), one request per connection
//! (`Connection: close`), bodies by `Content-Length`. Not responsible for: keep-alive,
//! chunked requests, TLS.
//!
//! | path | answer |
//! |---|---|
//! | `/echo...` | `200` JSON `{method, path, query, body}` of the request (headers are in [`ToolServer::requests`], never echoed: a test can then check that a credential reaches no answer) |
//! | `/status/S` | status S with the body `boom S` |
//! | `/big/N` | `200` with N bytes of `x` |
//! | `/slow/MS` | `200` `slow` after MS milliseconds |
//! | `/hang` | nothing, until the client closes (at most 60 s) |
//! | `/redirect?to=URL` | `302` with `Location: URL` |
//! | anything else | `404` |

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct ToolRequest {
    /// Method.
    pub method: String,
    /// Target (path and query).
    pub target: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl ToolRequest {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The running server; stopped when dropped.
pub struct ToolServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<ToolRequest>>>,
    thread: Option<JoinHandle<()>>,
}

impl ToolServer {
    /// Starts on a free loopback port.
    pub fn start() -> ToolServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, q) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    let q = q.clone();
                    std::thread::spawn(move || serve(conn, &q));
                }
            }
        });
        ToolServer {
            addr,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<ToolRequest> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for ToolServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, seen: &Mutex<Vec<ToolRequest>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(req) = read_request(&mut conn) else {
        return;
    };
    if let Ok(mut v) = seen.lock() {
        v.push(req.clone());
    }
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let param = |n: &str| path.strip_prefix(n).and_then(|v| v.parse::<u64>().ok());
    let (status, headers, body): (u16, Vec<(&str, String)>, Vec<u8>) = if path.starts_with("/echo")
    {
        let doc = serde_json::json!({
            "method": req.method, "path": path, "query": query,
            "body": String::from_utf8_lossy(&req.body),
        });
        (
            200,
            vec![("Content-Type", "application/json".into())],
            doc.to_string().into_bytes(),
        )
    } else if let Some(s) = param("/status/") {
        (s as u16, vec![], format!("boom {s}").into_bytes())
    } else if let Some(n) = param("/big/") {
        (200, vec![], vec![b'x'; n as usize])
    } else if let Some(ms) = param("/slow/") {
        std::thread::sleep(Duration::from_millis(ms));
        (200, vec![], b"slow".to_vec())
    } else if path == "/hang" {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
        let _ = conn.read(&mut [0u8; 1]);
        return;
    } else if path == "/redirect" {
        let to = query.strip_prefix("to=").unwrap_or("/");
        (302, vec![("Location", decode(to))], Vec::new())
    } else {
        (404, vec![], b"not found".to_vec())
    };
    let mut out = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.write_all(&body);
}

fn read_request(conn: &mut TcpStream) -> Option<ToolRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(len)) = req.parse(&buf) {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into(),
                    )
                })
                .collect();
            let want = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            let (method, target) = (req.method?.to_string(), req.path?.to_string());
            let mut body = buf[len..].to_vec();
            while body.len() < want {
                let n = conn.read(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            return Some(ToolRequest {
                method,
                target,
                headers,
                body,
            });
        }
    }
}

/// Percent-decoding of a query value.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
