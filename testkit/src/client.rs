//! A raw HTTP/1.1 client over one TCP connection, with bounded waits.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default bound on any single wait.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields in order (names as sent).
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// The raw bytes of the head, for byte-exact checks.
    pub raw_head: Vec<u8>,
}

impl Response {
    /// The first value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server announced it closes the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// One client connection.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr` with a bounded wait.
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    /// The underlying stream.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Reads some body bytes: those already buffered first, else from the socket.
    pub fn read_some(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buf.is_empty() {
            return self.stream.read(out);
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.drain(..n);
        Ok(n)
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a GET with `Host` and reads the response.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())?;
        self.response()
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn need(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed early"));
            }
        }
        Ok(())
    }

    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in a line",
                ));
            }
        }
    }

    /// Reads a response head only (status line and headers).
    pub fn head(&mut self) -> io::Result<Response> {
        let mut raw_head = Vec::new();
        let status_line = self.line()?;
        raw_head.extend_from_slice(&status_line);
        raw_head.extend_from_slice(b"\r\n");
        let text = String::from_utf8_lossy(&status_line).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, text.clone()))?;
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            raw_head.extend_from_slice(&line);
            raw_head.extend_from_slice(b"\r\n");
            if line.is_empty() {
                break;
            }
            let l = String::from_utf8_lossy(&line).into_owned();
            let (n, v) = l.split_once(':').unwrap_or((&l, ""));
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        Ok(Response {
            status,
            headers,
            body: Vec::new(),
            raw_head,
        })
    }

    /// Reads one whole response (a `HEAD` response must be read with [`head`](Self::head)).
    pub fn response(&mut self) -> io::Result<Response> {
        let mut resp = self.head()?;
        // These statuses never carry a body (RFC 9110 sections 15.3.5 and 15.4.5).
        if matches!(resp.status, 100..=199 | 204 | 304) {
            return Ok(resp);
        }
        if resp.header("transfer-encoding").is_some() {
            resp.body = self.chunked_body()?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad length"))?;
            self.need(len)?;
            resp.body = self.buf.drain(..len).collect();
        } else {
            while self.fill()? > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// Reads the next chunk of a chunked body: `Some(data)`, or `None` at the last chunk.
    pub fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let line = self.line()?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            self.line()?;
            return Ok(None);
        }
        self.need(size + 2)?;
        let data: Vec<u8> = self.buf.drain(..size).collect();
        self.buf.drain(..2);
        Ok(Some(data))
    }

    fn chunked_body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(c) = self.chunk()? {
            body.extend_from_slice(&c);
        }
        Ok(body)
    }

    /// True if the server closes the connection within `within` (EOF or reset), with no
    /// further bytes.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let _ = self.stream.set_read_timeout(Some(within));
        let mut b = [0u8; 1];
        let deadline = Instant::now() + within;
        let closed = loop {
            match self.stream.read(&mut b) {
                Ok(0) => break true,
                Ok(_) => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break false
                }
                Err(_) => break true,
            }
            if Instant::now() > deadline {
                break false;
            }
        };
        let _ = self.stream.set_read_timeout(Some(TIMEOUT));
        closed
    }

    /// Everything until the server closes.
    pub fn read_to_close(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }
}
