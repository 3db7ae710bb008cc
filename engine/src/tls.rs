//! The server's TLS identity: certificate chain and private key loaded from PEM files into a
//! `rustls::ServerConfig`, held so that a reload can swap it while connections run.
//!
//! Responsible for: reading the PEM files (a certificate chain, end-entity first, and one
//! RSA, ECDSA or Ed25519 key in PKCS#8, PKCS#1 or SEC1 form), checking that the key matches
//! the certificate, the protocol policy (TLS 1.3 and 1.2 only, ALPN `http/1.1`), and the
//! [`TlsAcceptor`] every loop asks for a new session at accept. A reload that fails keeps
//! the current configuration.
//! Not responsible for: driving sessions over sockets (see `transport`), or signals (see
//! `tls_reload`).
//!
//! Crypto provider: `aws-lc-rs` (rustls' default). Since aws-lc-rs 1.7 it builds on x86-64
//! and aarch64 Linux with cargo and a C compiler alone, which is all a fresh machine has
//! after `.ci/run`. It replaced `ring`, which has no AVX-512 IFMA path for RSA: measured,
//! RSA-2048 handshakes went from 0.76x nginx's rate with `ring` to 1.09-1.14x (benches/
//! RESULTS.md, "TLS"). Both offer the suites and key types that matter here (ECDHE with
//! X25519 or P-256, AES-GCM and ChaCha20-Poly1305; RSA, ECDSA P-256/P-384, Ed25519 keys).

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

/// The only application protocol offered in ALPN.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// PEM files larger than this are refused (a chain is a few KiB).
const PEM_MAX_BYTES: u64 = 1 << 20;

/// Where the certificate chain and the private key are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, end-entity certificate first.
    pub cert: PathBuf,
    /// PEM private key (may be the same file as the chain).
    pub key: PathBuf,
}

/// Why a certificate and key could not be loaded.
#[derive(Debug)]
pub enum TlsError {
    /// A file could not be read.
    Read(PathBuf, io::Error),
    /// A file is larger than any PEM certificate chain or key.
    TooLarge(PathBuf),
    /// A file is not valid PEM.
    Pem(PathBuf, pem::Error),
    /// The certificate file holds no `CERTIFICATE` section.
    NoCertificate(PathBuf),
    /// The key file holds no private key section.
    NoKey(PathBuf),
    /// rustls refused the chain or the key (unsupported key type, or a key that does not
    /// match the certificate).
    Rejected(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            TlsError::TooLarge(p) => write!(
                f,
                "{} is larger than {PEM_MAX_BYTES} bytes: not a PEM certificate or key",
                p.display()
            ),
            TlsError::Pem(p, e) => write!(f, "{} is not valid PEM: {e}", p.display()),
            TlsError::NoCertificate(p) => {
                write!(f, "{} holds no PEM CERTIFICATE section", p.display())
            }
            TlsError::NoKey(p) => write!(
                f,
                "{} holds no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
                p.display()
            ),
            TlsError::Rejected(e) => write!(f, "certificate or key refused: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Read(_, e) => Some(e),
            TlsError::Pem(_, e) => Some(e),
            TlsError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    let file = std::fs::File::open(path).map_err(|e| TlsError::Read(path.to_path_buf(), e))?;
    let mut bytes = Vec::new();
    file.take(PEM_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TlsError::Read(path.to_path_buf(), e))?;
    if bytes.len() as u64 > PEM_MAX_BYTES {
        return Err(TlsError::TooLarge(path.to_path_buf()));
    }
    Ok(bytes)
}

/// Parses a PEM certificate chain (every `CERTIFICATE` section, in file order).
pub fn parse_chain(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(path.to_path_buf(), e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(chain)
}

/// Parses the first PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey(path.to_path_buf()),
        e => TlsError::Pem(path.to_path_buf(), e),
    })
}

/// Builds the server configuration from a chain and a key: `aws-lc-rs` provider, TLS 1.3 and
/// 1.2, no client authentication, ALPN `http/1.1`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Rejected)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Rejected)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(config)
}

/// Reads `files` and builds the server configuration.
pub fn load(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let chain = parse_chain(&read_pem_file(&files.cert)?, &files.cert)?;
    let key = parse_key(&read_pem_file(&files.key)?, &files.key)?;
    server_config(chain, key)
}

/// The current TLS configuration of a server, shared by its loops and swapped by reloads.
///
/// Sessions keep the configuration they started with, so a reload never disturbs an open
/// connection; connections accepted after it get the new certificate.
#[derive(Debug)]
pub struct TlsAcceptor {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsAcceptor {
    /// Loads `files`; fails if they do not make a usable configuration.
    pub fn load(files: TlsFiles) -> Result<TlsAcceptor, TlsError> {
        let config = Arc::new(load(&files)?);
        Ok(TlsAcceptor {
            files,
            current: RwLock::new(config),
        })
    }

    /// The files this acceptor reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again and, if they make a usable configuration, uses it for new
    /// connections. On error the current configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(load(&self.files)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// The configuration new connections use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A server session for a newly accepted connection.
    pub(crate) fn session(&self) -> Result<ServerConnection, rustls::Error> {
        ServerConnection::new(self.config())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};
    use rcgen::{PKCS_ED25519, PKCS_RSA_SHA256};

    /// A 2048-bit RSA key (PKCS#8), fixed because rcgen's `ring` backend cannot generate RSA
    /// keys.
    const RSA_KEY: &str = include_str!("../testdata/rsa2048-pkcs8.pem");

    fn self_signed(key: &KeyPair) -> String {
        let params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.self_signed(key).expect("self-signed").pem()
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("halyard-tls-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    fn write(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).expect("write cert");
        std::fs::write(&files.key, key).expect("write key");
        files
    }

    fn loads(tag: &str, key: &KeyPair) {
        let d = dir(tag);
        let files = write(&d, &self_signed(key), &key.serialize_pem());
        let config = load(&files).unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rsa_key_loads() {
        let key = KeyPair::from_pem_and_sign_algo(RSA_KEY, &PKCS_RSA_SHA256).expect("rsa key");
        loads("rsa", &key);
    }

    #[test]
    fn rsa_key_in_pkcs1_form_loads() {
        let key = KeyPair::from_pem_and_sign_algo(RSA_KEY, &PKCS_RSA_SHA256).expect("rsa key");
        let pkcs8 = PrivateKeyDer::from_pem_slice(RSA_KEY.as_bytes()).expect("pkcs8");
        assert!(matches!(pkcs8, PrivateKeyDer::Pkcs8(_)));
        // The same key as PKCS#1 ("RSA PRIVATE KEY"): what `openssl genrsa -traditional`
        // writes.
        let pkcs1 = include_str!("../testdata/rsa2048-pkcs1.pem");
        let d = dir("rsa1");
        let files = write(&d, &self_signed(&key), pkcs1);
        load(&files).expect("PKCS#1 key loads");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn ecdsa_keys_load() {
        loads(
            "p256",
            &KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("p256"),
        );
        loads(
            "p384",
            &KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("p384"),
        );
    }

    #[test]
    fn ed25519_key_loads() {
        loads(
            "ed25519",
            &KeyPair::generate_for(&PKCS_ED25519).expect("ed25519"),
        );
    }

    #[test]
    fn a_chain_loads_in_order_and_cert_and_key_may_share_a_file() {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf");
        let bundle = format!("{}{}{}", leaf.pem(), ca.pem(), leaf_key.serialize_pem());
        let d = dir("chain");
        let files = write(&d, &bundle, "");
        let files = TlsFiles {
            key: files.cert.clone(),
            ..files
        };
        let chain = parse_chain(bundle.as_bytes(), &files.cert).expect("chain");
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].as_ref(), leaf.der().as_ref());
        load(&files).expect("bundle loads");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bad_inputs_are_errors_that_name_the_file() {
        let d = dir("bad");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("other");
        let cert = self_signed(&key);
        let cases: Vec<(&str, String, String)> = vec![
            (
                "holds no PEM CERTIFICATE",
                key.serialize_pem(),
                key.serialize_pem(),
            ),
            ("holds no PEM private key", cert.clone(), cert.clone()),
            (
                "is not valid PEM",
                cert.clone(),
                "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n".into(),
            ),
            ("refused", cert.clone(), other.serialize_pem()),
        ];
        for (want, c, k) in cases {
            let files = write(&d, &c, &k);
            let err = load(&files).expect_err(want).to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        let missing = TlsFiles {
            cert: d.join("missing.pem"),
            key: d.join("missing.pem"),
        };
        let err = load(&missing).expect_err("missing").to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_reload_keeps_the_current_configuration() {
        let d = dir("reload");
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("key");
        let files = write(&d, &self_signed(&key), &key.serialize_pem());
        let acceptor = TlsAcceptor::load(files.clone()).expect("load");
        let before = acceptor.config();
        std::fs::write(&files.cert, "garbage").expect("write");
        assert!(acceptor.reload().is_err());
        assert!(Arc::ptr_eq(&before, &acceptor.config()));
        let key2 = KeyPair::generate_for(&PKCS_ED25519).expect("key2");
        write(&d, &self_signed(&key2), &key2.serialize_pem());
        acceptor.reload().expect("reload");
        assert!(!Arc::ptr_eq(&before, &acceptor.config()));
        acceptor
            .session()
            .expect("a session from the new configuration");
        let _ = std::fs::remove_dir_all(&d);
    }
}
