//! Certificate reload: the handle that re-reads the certificate and key, and the SIGHUP
//! thread that uses it.
//!
//! Responsible for: turning SIGHUP into one [`ReloadHandle::reload`], logging its outcome on
//! stderr and counting it in `/metrics`. Open connections keep their sessions; connections
//! accepted afterwards use the new certificate; a certificate that does not load leaves the
//! current one in place. Not responsible for: loading or checking the files (see `tls`).

use std::io;
use std::sync::Arc;

use crate::metrics::Metrics;
use crate::tls::{TlsAcceptor, TlsError};

/// Reloads a server's certificate and key from any thread.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    acceptor: Arc<TlsAcceptor>,
    metrics: Arc<Metrics>,
}

impl ReloadHandle {
    pub(crate) fn new(acceptor: Arc<TlsAcceptor>, metrics: Arc<Metrics>) -> Self {
        ReloadHandle { acceptor, metrics }
    }

    /// Reads the certificate and key again; on error the current ones stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let result = self.acceptor.reload();
        self.metrics.tls_reloaded(result.is_ok());
        result
    }

    /// The certificate and key files reloaded.
    pub fn files(&self) -> &crate::tls::TlsFiles {
        self.acceptor.files()
    }

    /// Starts a thread that calls [`reload`](Self::reload) on every SIGHUP and logs the
    /// outcome on stderr.
    pub fn on_sighup(&self) -> io::Result<()> {
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
        let handle = self.clone();
        std::thread::Builder::new()
            .name("halyard-sighup".into())
            .spawn(move || {
                for _ in signals.forever() {
                    let files = handle.acceptor.files();
                    match handle.reload() {
                        Ok(()) => crate::log_info!(
                            "TLS certificate reloaded from {} and {}",
                            files.cert.display(),
                            files.key.display()
                        ),
                        Err(e) => crate::log_error!(
                            "TLS reload failed, keeping the current certificate: {e}"
                        ),
                    }
                }
            })?;
        Ok(())
    }
}
