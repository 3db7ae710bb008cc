//! The `--dev` demo page: one HTML page on a second loopback port (so another origin than
//! the API) that embeds the web widget with a public key of the dev project.
//!
//! Responsible for: binding the demo listener before seeding (the public key must allow the
//! demo page's origin, so its port must be known first: the API port + 1 when that is free,
//! else one the kernel picks), seeding that key (see `seed::dev_public_key`), serving the
//! page from a one-loop engine on its own thread, and printing
//! `demo page: http://127.0.0.1:PORT/`. Everything here is a convenience of `--dev`: a
//! failure is reported on stderr and the API serves on without the page.
//! Not responsible for: the widget itself (`sdk/widget/widget.js`, served by the API).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;

use halyard_api::seed::{self, DevSeed};
use halyard_engine::{Admission, App, Body, Method, Reply, Request, RequestHead, Response};
use halyard_storage::Backend;

/// The demo listener, bound but not yet serving.
pub struct Bound {
    server: halyard_engine::Server,
}

/// Binds the demo page's listener on 127.0.0.1: the API's port + 1 when free, else any.
pub fn bind(api_listen: SocketAddr) -> Option<Bound> {
    let loopback = Ipv4Addr::LOCALHOST;
    let next = api_listen
        .port()
        .checked_add(1)
        .filter(|_| api_listen.port() != 0);
    // The engine binds with SO_REUSEPORT, which would share a port another process holds
    // the same way: probe with a plain bind first.
    let port = next
        .filter(|p| TcpListener::bind((loopback, *p)).is_ok())
        .unwrap_or(0);
    let config = halyard_engine::Config {
        listen: SocketAddr::from((loopback, port)),
        threads: 1,
        max_connections: 256,
        shutdown_timeout_ms: 1_000,
        ..halyard_engine::Config::default()
    };
    match halyard_engine::Server::bind(config) {
        Ok(server) => Some(Bound { server }),
        Err(e) => {
            halyard_engine::log_info!("demo page not served: cannot listen on 127.0.0.1: {e}");
            None
        }
    }
}

/// The origins a browser may show the demo page from.
pub fn origins(port: u16) -> Vec<String> {
    vec![
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ]
}

impl Bound {
    /// Seeds the demo page's public key, serves the page on its own thread and prints its
    /// URL. `api` is where the API listens, with `scheme` (`http` or `https`).
    pub fn serve(
        self,
        store: &dyn Backend,
        data_dir: &Path,
        dev: &DevSeed,
        scheme: &str,
        api: SocketAddr,
    ) {
        let port = self.server.local_addr().port();
        let key = match seed::dev_public_key(store, data_dir, dev, &origins(port)) {
            Ok(k) => k,
            Err(e) => {
                halyard_engine::log_info!("demo page not served: {e}");
                return;
            }
        };
        let api_origin = format!("{scheme}://{}", browsable(api));
        let page = DemoPage {
            html: page(
                &api_origin,
                &format!("http://127.0.0.1:{port}"),
                &key,
                &dev.project_id,
            ),
        };
        let server = self.server;
        let spawned = std::thread::Builder::new()
            .name("halyard-demo".into())
            .spawn(move || {
                if let Err(e) = server.run(Arc::new(page)) {
                    halyard_engine::log_error!("demo page server failed: {e}");
                }
            });
        match spawned {
            Ok(_) => {
                println!("demo page: http://127.0.0.1:{port}/ (the web widget, public key {key})")
            }
            Err(e) => halyard_engine::log_info!("demo page not served: {e}"),
        }
    }
}

/// `addr` as a browser on this machine reaches it (a wildcard address becomes loopback).
fn browsable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The demo page's HTML.
pub fn page(api_origin: &str, page_origin: &str, public_key: &str, project_id: &str) -> Vec<u8> {
    let tag = format!(
        "<script type=\"module\" src=\"{}/sdk/widget.js\"\n        data-public-key=\"{}\" data-project-id=\"{}\"></script>",
        esc(api_origin),
        esc(public_key),
        esc(project_id)
    );
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Halyard widget demo</title>
<style>
  body {{ font: 16px/1.5 Georgia, serif; color: #222; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }}
  pre {{ background: #f4f4f4; padding: .75rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }}
  /* Loud page styles: the widget lives in a shadow root and must not pick these up. */
  button {{ background: hotpink; font-size: 30px; }}
  p, div {{ letter-spacing: .05em; }}
</style>
</head>
<body>
<main>
<h1>Halyard widget demo</h1>
<p>This page is served by <code>halyard serve --dev</code> from <code>{page}</code>, another
origin than the API at <code>{api}</code>. The chat button in the corner is the web widget,
talking to the echo agent <code>assistant</code> of the project <code>demo</code>.</p>
<p>To put it on your own site, create a public key for your site's origin
(<code>POST /api/projects/:projectId/sdk-public-keys</code>) and paste:</p>
<pre><code>{snippet}</code></pre>
</main>
{tag}
</body>
</html>
"#,
        page = esc(page_origin),
        api = esc(api_origin),
        snippet = esc(&tag),
        tag = tag,
    )
    .into_bytes()
}

/// Serves the page at `/`, nothing else.
struct DemoPage {
    html: Vec<u8>,
}

impl App for DemoPage {
    type Context = ();

    fn admit(&self, head: &RequestHead) -> Admission<()> {
        match head.method() {
            Method::Get | Method::Head => Admission::Accept {
                body_limit: 0,
                context: (),
            },
            _ => Admission::Reject(
                Response::error(405, "METHOD_NOT_ALLOWED", "The demo page is read-only")
                    .with_header("Allow", "GET, HEAD"),
            ),
        }
    }

    fn handle(&self, request: Request<()>) -> Reply {
        let resp = match request.head.path() {
            "/" | "/index.html" => Response {
                status: 200,
                content_type: Some("text/html; charset=utf-8"),
                headers: Vec::new(),
                body: Body::Owned(self.html.clone()),
            }
            .with_header("Cache-Control", "no-store"),
            "/favicon.ico" => Response::empty(204),
            _ => Response::error(404, "NOT_FOUND", "The demo page is at /"),
        };
        Reply::Now(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_embeds_the_widget_with_escaped_values() {
        let html = String::from_utf8(page(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8081",
            "pk_a\"b",
            "proj_1",
        ))
        .unwrap();
        assert!(html.contains(
            "<script type=\"module\" src=\"http://127.0.0.1:8080/sdk/widget.js\"\n        data-public-key=\"pk_a&quot;b\" data-project-id=\"proj_1\"></script>"
        ));
        assert!(html.contains("&lt;script type=&quot;module&quot;"));
    }

    #[test]
    fn wildcard_addresses_become_loopback() {
        let a: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(browsable(a).to_string(), "127.0.0.1:8080");
        let b: SocketAddr = "[::]:9".parse().unwrap();
        assert_eq!(browsable(b).to_string(), "[::1]:9");
        let c: SocketAddr = "127.0.0.2:1".parse().unwrap();
        assert_eq!(browsable(c), c);
    }
}
