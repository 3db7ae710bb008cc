//! Where the database is and how to reach it: the parsed URL, and TLS through rustls.
//!
//! Responsible for: reading a `postgres://` URL (with the `postgres` crate's parser, after
//! taking out what it does not know: `sslrootcert`, and the `sslmode`s `verify-ca` and
//! `verify-full`), and connecting with TLS when the URL asks for it. Not responsible for:
//! pooling connections (`pool`).
//!
//! | `sslmode` | connection |
//! |---|---|
//! | absent, `disable`, `allow`, `prefer` | plain TCP (keep the database on a private network) |
//! | `require`, `verify-ca`, `verify-full` | TLS, the server's certificate verified for the host name |
//!
//! Unlike libpq's `require`, which encrypts without checking whom it talks to, every TLS
//! connection here verifies the certificate chain and the host name, against the
//! platform's roots (`rustls-native-certs`: `/etc/ssl/certs`, or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`), or against the PEM file `sslrootcert=FILE` names (a private CA).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use postgres::{Client, Config, NoTls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A parsed database URL and the TLS it asks for.
#[derive(Clone)]
pub struct Target {
    config: Config,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a URL cannot be used.
#[derive(Debug)]
pub enum TargetError {
    /// The `postgres` crate refused it.
    Url(postgres::Error),
    /// The TLS settings could not be built (roots unreadable or none).
    Tls(String),
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::Url(e) => write!(f, "not a PostgreSQL URL: {}", crate::explain(e)),
            TargetError::Tls(why) => write!(f, "TLS to the database: {why}"),
        }
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// Parses `url`, with a 5 s connect timeout and the application name `halyard` unless
    /// it sets them.
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let (url, root) = take_root(url);
        let (url, tls) = tls_mode(&url);
        let mut config = Config::from_str(&url).map_err(TargetError::Url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("halyard");
        }
        let tls = match tls {
            false => None,
            true => Some(MakeRustlsConnect::new(client_config(root.as_deref())?)),
        };
        Ok(Target { config, tls })
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a connection.
    pub fn connect(&self) -> Result<Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        }
    }
}

/// The URL without `sslrootcert`, and its value.
fn take_root(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut root = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("sslrootcert=") {
            Some(v) => {
                root = Some(percent_decode(v));
                false
            }
            None => true,
        })
        .collect();
    let url = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    (url, root)
}

/// The URL with `verify-ca`/`verify-full` read as `require` (the parser knows only
/// `disable`, `prefer`, `require`; every TLS connection here verifies), and whether TLS is
/// asked for.
fn tls_mode(url: &str) -> (String, bool) {
    let mut tls = false;
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), false);
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.strip_prefix("sslmode=") {
            Some("require" | "verify-ca" | "verify-full") => {
                tls = true;
                "sslmode=require".to_owned()
            }
            Some("allow") => "sslmode=prefer".to_owned(),
            _ => pair.to_owned(),
        })
        .collect();
    (format!("{base}?{}", pairs.join("&")), tls)
}

/// `%XX` escapes decoded (a path in a URL); anything malformed is kept as it is.
fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The roots of `root` (a PEM file; `system` or none: the platform's).
fn roots(root: Option<&str>) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match root {
        None | Some("system") => {
            let loaded = rustls_native_certs::load_native_certs();
            if loaded.certs.is_empty() {
                let why = loaded.errors.first().map(|e| e.to_string());
                return Err(format!(
                    "no trusted root certificates: {}",
                    why.unwrap_or_else(|| "none found".into())
                ));
            }
            loaded.certs
        }
        Some(file) => CertificateDer::pem_file_iter(file)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("sslrootcert {file}: {e}"))?,
    };
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "no usable certificate in {}",
            root.unwrap_or("the platform's roots")
        ));
    }
    Ok(store)
}

fn client_config(root: Option<&str>) -> Result<rustls::ClientConfig, TargetError> {
    let roots = roots(root).map_err(TargetError::Tls)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TargetError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_loses_what_the_parser_does_not_know() {
        let (url, root) = take_root("postgres://h/db?sslmode=verify-full&sslrootcert=%2Fca.pem");
        assert_eq!(root.as_deref(), Some("/ca.pem"));
        assert_eq!(url, "postgres://h/db?sslmode=verify-full");
        assert_eq!(
            tls_mode(&url),
            ("postgres://h/db?sslmode=require".into(), true)
        );
        assert_eq!(
            take_root("postgres://h/db?sslrootcert=x").0,
            "postgres://h/db"
        );
        assert_eq!(
            tls_mode("postgres://h1,h2/db?target_session_attrs=read-write"),
            (
                "postgres://h1,h2/db?target_session_attrs=read-write".into(),
                false
            )
        );
        assert!(!tls_mode("postgres://h/db").1);
        assert!(!tls_mode("postgres://h/db?sslmode=prefer").1);
        assert_eq!(percent_decode("a%2"), "a%2");
    }

    #[test]
    fn a_missing_root_file_is_a_clear_error() {
        let e = Target::parse("postgres://h/db?sslmode=require&sslrootcert=/nonexistent.pem")
            .expect_err("no such file");
        assert!(e.to_string().contains("/nonexistent.pem"), "{e}");
        assert!(!Target::parse("postgres://h/db").expect("plain").is_tls());
    }
}
