//! HTTPS against the real binary over loopback: certificates made in the test (a test CA and
//! leaf certificates, with `rcgen`), a small blocking rustls client (same `aws-lc-rs` provider),
//! TLS 1.3 and 1.2, ALPN, keep-alive and pipelining, SSE heartbeats, SIGHUP reload, and the
//! connections a TLS port must close: plain HTTP, a stalled handshake, a bad ClientHello.
//! Every wait is bounded and every server is stopped by its guard.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_testkit::{temp_dir, Client, Halyard};
use rcgen::{
    BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SignatureAlgorithm,
    PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};
use serde_json::Value;

/// Bound on any single wait.
const TIMEOUT: Duration = Duration::from_secs(10);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_halyard"))
}

// ---- certificates ----

/// A test CA that signs leaf certificates for `localhost` and 127.0.0.1.
struct Pki {
    ca: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key, as PEM, and the certificate's DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("CA certificate");
        Pki {
            ca: ca.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, alg: &'static SignatureAlgorithm) -> Leaf {
        let key = KeyPair::generate_for(alg).expect("leaf key");
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])
            .expect("leaf params");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// Writes a leaf's files (cert first then key, each by rename so a reload never reads a
/// half-written file).
fn install(leaf: &Leaf, cert: &Path, key: &Path) {
    for (path, text) in [(cert, &leaf.cert_pem), (key, &leaf.key_pem)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write PEM");
        std::fs::rename(&tmp, path).expect("rename PEM");
    }
}

/// A running HTTPS server, its CA and where its certificate files are.
struct Https {
    server: Halyard,
    pki: Pki,
    cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

impl Drop for Https {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_https(extra: &[&str]) -> Https {
    let pki = Pki::new();
    let dir = temp_dir("tls-certs");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    install(&pki.leaf(&PKCS_ECDSA_P256_SHA256), &cert, &key);
    let cert_arg = cert.to_string_lossy().into_owned();
    let key_arg = key.to_string_lossy().into_owned();
    let mut args = vec!["--tls-cert", &cert_arg, "--tls-key", &key_arg];
    args.extend_from_slice(extra);
    let server = Halyard::start(bin(), &args);
    Https {
        server,
        pki,
        cert,
        key,
        dir,
    }
}

// ---- a blocking TLS client ----

type Versions = &'static [&'static SupportedProtocolVersion];
const TLS13: Versions = &[&rustls::version::TLS13];
const TLS12: Versions = &[&rustls::version::TLS12];

fn client_config(ca: &CertificateDer<'static>, versions: Versions, alpn: &[&[u8]]) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("CA as a root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A response as read off the TLS stream.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTPS connection with a completed handshake.
struct TlsClient {
    tls: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsClient {
    fn connect(addr: SocketAddr, config: ClientConfig) -> io::Result<TlsClient> {
        let sock = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        sock.set_read_timeout(Some(TIMEOUT))?;
        sock.set_write_timeout(Some(TIMEOUT))?;
        sock.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").expect("server name");
        let conn = ClientConnection::new(Arc::new(config), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(TlsClient {
            tls,
            buf: Vec::new(),
        })
    }

    fn to(h: &Https, versions: Versions) -> TlsClient {
        let config = client_config(&h.pki.ca, versions, &[b"http/1.1"]);
        TlsClient::connect(h.server.addr, config).expect("TLS connect")
    }

    fn peer_cert(&self) -> CertificateDer<'static> {
        self.tls
            .conn
            .peer_certificates()
            .expect("peer certificates")[0]
            .clone()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).expect("send");
        self.tls.flush().expect("flush");
    }

    fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        self.response()
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.tls.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return line;
            }
            assert!(self.fill().expect("read a line") > 0, "closed in a line");
        }
    }

    fn head(&mut self) -> Resp {
        let status_line = self.line();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("header line");
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        Resp {
            status,
            headers,
            body: Vec::new(),
        }
    }

    fn response(&mut self) -> Resp {
        let mut r = self.head();
        if r.header("transfer-encoding").is_some() {
            while let Some(c) = self.chunk() {
                r.body.extend_from_slice(&c);
            }
        } else {
            let len: usize = r
                .header("content-length")
                .expect("content-length")
                .parse()
                .expect("length");
            while self.buf.len() < len {
                assert!(self.fill().expect("read body") > 0, "closed in a body");
            }
            r.body = self.buf.drain(..len).collect();
        }
        r
    }

    /// Asserts that the server ends the session with close_notify: a clean EOF, with no
    /// further bytes.
    fn expect_close_notify(&mut self) {
        assert!(self.buf.is_empty(), "unread bytes before the close");
        let mut b = [0u8; 64];
        match self.tls.read(&mut b) {
            Ok(0) => {}
            other => panic!("expected close_notify, got {other:?}"),
        }
    }

    /// The next chunk of a chunked body, `None` at the last one.
    fn chunk(&mut self) -> Option<Vec<u8>> {
        let size = usize::from_str_radix(self.line().trim(), 16).expect("chunk size");
        if size == 0 {
            self.line();
            return None;
        }
        while self.buf.len() < size + 2 {
            assert!(self.fill().expect("read chunk") > 0, "closed in a chunk");
        }
        let data = self.buf.drain(..size).collect();
        self.buf.drain(..2);
        Some(data)
    }
}

/// `/metrics` over a fresh TLS connection.
fn metrics(h: &Https) -> String {
    TlsClient::to(h, TLS13).get("/metrics").text()
}

fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Waits (bounded) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- tests ----

#[test]
fn health_live_over_tls13_and_tls12_with_alpn_http11() {
    let h = start_https(&["--threads", "2"]);
    for (versions, want) in [
        (TLS13, rustls::ProtocolVersion::TLSv1_3),
        (TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let mut c = TlsClient::to(&h, versions);
        assert_eq!(c.tls.conn.protocol_version(), Some(want));
        assert_eq!(c.tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let r = c.get("/health/live");
        assert_eq!(r.status, 200, "{want:?}");
        assert_eq!(r.body, br#"{"status":"ok"}"#);
        assert!(r.header("x-request-id").is_some());
    }
    let m = metrics(&h);
    assert!(counter(&m, "halyard_tls_handshakes_total") >= 3, "{m}");
}

#[test]
fn a_client_without_alpn_is_served_and_one_offering_only_h2_is_refused() {
    let h = start_https(&[]);
    let none = client_config(&h.pki.ca, TLS13, &[]);
    let mut c = TlsClient::connect(h.server.addr, none).expect("no ALPN is fine");
    assert_eq!(c.tls.conn.alpn_protocol(), None);
    assert_eq!(c.get("/health/live").status, 200);
    let h2 = client_config(&h.pki.ca, TLS13, &[b"h2"]);
    assert!(TlsClient::connect(h.server.addr, h2).is_err());
    let m = metrics(&h);
    assert_eq!(
        counter(
            &m,
            "halyard_tls_handshake_failures_total{reason=\"tls_error\"}"
        ),
        1,
        "{m}"
    );
}

#[test]
fn keep_alive_and_pipelining_over_tls() {
    let h = start_https(&["--threads", "1"]);
    let mut c = TlsClient::to(&h, TLS13);
    for _ in 0..30 {
        let r = c.get("/health/live");
        assert_eq!(r.status, 200);
        assert!(r.header("connection").is_none_or(|v| v != "close"));
    }
    let mut batch = Vec::new();
    for i in 0..100 {
        let path = if i % 4 == 0 {
            "/missing"
        } else {
            "/health/live"
        };
        batch.extend_from_slice(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: r-{i}\r\n\r\n")
                .as_bytes(),
        );
    }
    c.send(&batch);
    for i in 0..100 {
        let r = c.response();
        assert_eq!(r.header("x-request-id"), Some(format!("r-{i}").as_str()));
        assert_eq!(r.status, if i % 4 == 0 { 404 } else { 200 });
    }
    // A large response (metrics) spans several TLS records.
    let m = c.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.text().contains("halyard_tls_handshakes_total"));
    // `Connection: close`: the response, then TLS close_notify (a clean EOF, not a cut).
    c.send(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_close_notify();
}

#[test]
fn sigterm_ends_tls_connections_cleanly() {
    let mut h = start_https(&["--threads", "1"]);
    let mut idle = TlsClient::to(&h, TLS13);
    assert_eq!(idle.get("/health/live").status, 200);
    h.server.signal(libc::SIGTERM);
    idle.expect_close_notify();
    let status = h.server.wait_exit(TIMEOUT).expect("halyard exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_sse_stream_over_tls_receives_heartbeats() {
    let h = start_https(&[
        "--dev",
        "--sse-heartbeat-ms",
        "100",
        "--echo-token-delay-ms",
        "300",
    ]);
    let key = std::fs::read_to_string(h.server.data_dir.join("dev-api-key")).expect("dev key");
    let key = key.trim();
    let mut c = TlsClient::to(&h, TLS13);
    c.send(
        format!(
            "GET /api/projects HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).expect("JSON");
    let pid = v["projects"][0]["id"]
        .as_str()
        .expect("a project id")
        .to_string();
    let body = serde_json::json!({"projectId": pid, "message": "a b c"}).to_string();
    c.send(
        format!(
            "POST /api/v1/chat/agent/stream HTTP/1.1\r\nHost: localhost\r\n\
             Authorization: Bearer {key}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let head = c.head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let mut heartbeats = 0;
    let mut raw = String::new();
    while let Some(chunk) = c.chunk() {
        let text = String::from_utf8(chunk).expect("utf-8");
        if text == ": heartbeat\n\n" {
            heartbeats += 1;
        }
        raw.push_str(&text);
    }
    assert!(heartbeats >= 3, "{heartbeats} heartbeats in {raw:?}");
    assert!(raw.contains("event: done"), "{raw}");
    // The connection stays usable after the stream.
    assert_eq!(c.get("/health/live").status, 200);
}

#[test]
fn sighup_serves_the_new_certificate_to_new_connections_and_old_ones_keep_working() {
    let h = start_https(&["--threads", "2"]);
    let mut old = TlsClient::to(&h, TLS13);
    let first = old.peer_cert();
    assert_eq!(old.get("/health/live").status, 200);

    let next = h.pki.leaf(&PKCS_ED25519);
    install(&next, &h.cert, &h.key);
    h.server.signal(libc::SIGHUP);
    eventually("the new certificate", || {
        TlsClient::to(&h, TLS13).peer_cert() == next.der
    });
    // The old connection keeps its session and is served.
    for _ in 0..3 {
        assert_eq!(old.get("/health/live").status, 200);
    }
    assert_eq!(old.peer_cert(), first);

    // A broken certificate is refused: the current one stays.
    std::fs::write(&h.cert, "not a certificate").expect("write");
    h.server.signal(libc::SIGHUP);
    eventually("the failed reload counted", || {
        counter(&metrics(&h), "halyard_tls_reloads_total{result=\"failed\"}") == 1
    });
    assert_eq!(TlsClient::to(&h, TLS12).peer_cert(), next.der);
    assert_eq!(old.get("/health/live").status, 200);
    let m = metrics(&h);
    assert_eq!(counter(&m, "halyard_tls_reloads_total{result=\"ok\"}"), 1);
}

#[test]
fn plain_http_on_the_tls_port_gets_a_plain_400_and_is_closed_and_counted() {
    let h = start_https(&[]);
    let mut c = Client::connect(h.server.addr).expect("connect");
    c.send(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let r = c.response().expect("a plain response");
    assert_eq!(r.status, 400);
    assert!(r.closes());
    assert!(r.header("x-request-id").is_some());
    assert!(
        r.text().contains("\"code\":\"BAD_REQUEST\""),
        "{}",
        r.text()
    );
    assert!(c.closed_within(Duration::from_secs(5)));
    let m = metrics(&h);
    assert_eq!(
        counter(
            &m,
            "halyard_tls_handshake_failures_total{reason=\"plain_http\"}"
        ),
        1,
        "{m}"
    );
}

#[test]
fn a_stalled_handshake_is_closed_after_the_header_timeout() {
    let h = start_https(&["--header-timeout-ms", "300"]);
    // Nothing sent at all, and half a ClientHello record header.
    let mut silent = Client::connect(h.server.addr).expect("connect");
    let mut partial = Client::connect(h.server.addr).expect("connect");
    partial.send(b"\x16\x03\x01\x02").expect("send");
    let started = Instant::now();
    assert!(silent.closed_within(Duration::from_secs(5)));
    assert!(partial.closed_within(Duration::from_secs(5)));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "closed after {waited:?}"
    );
    let m = metrics(&h);
    assert_eq!(
        counter(&m, "halyard_tls_handshake_timeouts_total"),
        2,
        "{m}"
    );
    // A handshake that completes in time is not cut by that deadline.
    let mut c = TlsClient::to(&h, TLS13);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.get("/health/live").status, 200);
}

#[test]
fn a_bad_client_hello_gets_an_alert_and_is_counted() {
    let h = start_https(&[]);
    let mut c = Client::connect(h.server.addr).expect("connect");
    // A handshake record whose body is not a ClientHello.
    c.send(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff")
        .expect("send");
    let bytes = c.read_to_close().unwrap_or_default();
    assert_eq!(bytes.first(), Some(&0x15), "an alert record: {bytes:?}");
    // Application data before any handshake: closed too.
    let mut junk = Client::connect(h.server.addr).expect("connect");
    junk.send(b"\x17\x03\x03\x00\x02\xaa\xbb").expect("send");
    let bytes = junk.read_to_close().unwrap_or_default();
    assert_eq!(bytes.first(), Some(&0x15), "an alert record: {bytes:?}");
    let m = metrics(&h);
    assert_eq!(
        counter(
            &m,
            "halyard_tls_handshake_failures_total{reason=\"tls_error\"}"
        ),
        2,
        "{m}"
    );
    assert_eq!(TlsClient::to(&h, TLS12).get("/health/live").status, 200);
}

#[test]
fn dev_without_tls_flags_stays_plain_http() {
    let h = Halyard::start(bin(), &["--dev"]);
    let mut c = Client::connect(h.addr).expect("connect");
    assert_eq!(c.get("/health/live").expect("plain").status, 200);
    let m = c.get("/metrics").expect("metrics").text();
    assert!(!m.contains("halyard_tls_"), "{m}");
}

#[test]
fn a_certificate_that_does_not_load_fails_the_start() {
    let dir = temp_dir("tls-bad");
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, "garbage").expect("write");
    let data = dir.join("data");
    let (data, cert_path) = (
        data.to_str().expect("utf-8 temp dir"),
        cert.to_str().expect("utf-8 temp dir"),
    );
    let (status, err) = halyard_testkit::run_to_exit(
        bin(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--tls-cert",
            cert_path,
            "--tls-key",
            cert_path,
        ],
        &[],
        TIMEOUT,
    );
    assert!(!status.success());
    assert!(err.contains("TLS") && err.contains("cert.pem"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
