//! The trust roots and TLS settings of outbound connections.
//!
//! Responsible for: one rustls `ClientConfig` per process, built on first use from the
//! platform's certificate store through `rustls-native-certs` (on Linux: the distribution's
//! bundle, `/etc/ssl/certs`; `SSL_CERT_FILE` or `SSL_CERT_DIR` override it, which is how a
//! private CA is trusted), with ALPN `http/1.1`. Not responsible for: the handshake (see
//! `driver`). `rustls-platform-verifier` was not chosen: on Linux it reads the same files,
//! and it adds a verifier of its own where `webpki` with the loaded roots does the job.

use std::sync::{Arc, OnceLock};

/// The client TLS settings, built once; `Err` names why no root could be loaded.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(build).clone()
}

fn build() -> Result<Arc<rustls::ClientConfig>, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let why = loaded
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), |e| e.to_string());
        return Err(format!("no trusted root certificates: {why}"));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
