//! Encryption of secret values at rest (ChaCha20-Poly1305 under the master key).
//!
//! Responsible for: the master key (from `HALYARD_MASTER_KEY`, or a key file created with
//! mode 0600 in the data directory on first start), and sealing/opening values bound to
//! their tenant, project and name (the AAD), so a ciphertext moved to another secret does
//! not open, and [`MasterKeyError`] when the key cannot be had. Not responsible for:
//! storing ciphertexts (storage) or who may read them.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// Name of the key file in the data directory.
pub const KEY_FILE: &str = "master.key";

/// Why the master key could not be loaded or created.
#[derive(Debug)]
pub enum MasterKeyError {
    /// `HALYARD_MASTER_KEY` is not 32 bytes as hex or base64.
    BadVariable,
    /// The key file does not hold a 32-byte key.
    BadFile(PathBuf),
    /// The key file could not be read.
    Read(PathBuf, io::Error),
    /// The key file could not be created.
    Create(PathBuf, io::Error),
}

impl fmt::Display for MasterKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MasterKeyError::BadVariable => {
                f.write_str("HALYARD_MASTER_KEY must be 32 bytes as 64 hex digits or base64")
            }
            MasterKeyError::BadFile(path) => {
                write!(f, "{} does not hold a 32-byte key", path.display())
            }
            MasterKeyError::Read(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            MasterKeyError::Create(path, e) => write!(f, "cannot create {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for MasterKeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MasterKeyError::Read(_, e) | MasterKeyError::Create(_, e) => Some(e),
            MasterKeyError::BadVariable | MasterKeyError::BadFile(_) => None,
        }
    }
}

/// Seals and opens secret values.
pub struct Vault {
    cipher: ChaCha20Poly1305,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault")
    }
}

/// Reads the master key: `HALYARD_MASTER_KEY` (64 hex digits or base64 of 32 bytes) if set,
/// else the key file in `data_dir`, created on first start.
pub fn load_master_key(env: Option<&str>, data_dir: &Path) -> Result<[u8; 32], MasterKeyError> {
    if let Some(text) = env {
        return decode_key(text.trim()).ok_or(MasterKeyError::BadVariable);
    }
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => decode_key(text.trim()).ok_or(MasterKeyError::BadFile(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = crate::tokens::random_bytes();
            match write_key_file(&path, &key) {
                Ok(()) => Ok(key),
                Err(e) => Err(MasterKeyError::Create(path, e)),
            }
        }
        Err(e) => Err(MasterKeyError::Read(path, e)),
    }
}

fn write_key_file(path: &Path, key: &[u8; 32]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(STANDARD.encode(key).as_bytes())?;
    f.sync_all()
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        STANDARD.decode(text).ok()?
    };
    bytes.try_into().ok()
}

impl Vault {
    /// A vault under `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Vault {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// `nonce || ciphertext+tag` of `value`, bound to `aad`.
    pub fn seal(&self, value: &[u8], aad: &str) -> Option<Vec<u8>> {
        let nonce_bytes = crate::tokens::random_bytes();
        let nonce = Nonce::from_slice(&nonce_bytes[..12]);
        let ct = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: value,
                    aad: aad.as_bytes(),
                },
            )
            .ok()?;
        let mut out = nonce_bytes[..12].to_vec();
        out.extend_from_slice(&ct);
        Some(out)
    }

    /// The value of a sealed ciphertext, if it opens under `aad`.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Option<Vec<u8>> {
        if sealed.len() < 12 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .ok()
    }
}

/// The associated data binding a secret's ciphertext to its place.
pub fn aad(tenant: &str, project: &str, name: &str) -> String {
    format!("{tenant}/{project}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_bind() {
        let v = Vault::new(&[7; 32]);
        let sealed = v.seal(b"sk-live-123", "t/p/A").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"sk-live-123"));
        assert_eq!(v.open(&sealed, "t/p/A").unwrap(), b"sk-live-123");
        assert!(v.open(&sealed, "t/p/B").is_none());
        assert!(Vault::new(&[8; 32]).open(&sealed, "t/p/A").is_none());
    }

    #[test]
    fn key_sources() {
        let dir = std::env::temp_dir().join(format!("halyard-vault-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join(KEY_FILE));
        let a = load_master_key(None, &dir).unwrap();
        let b = load_master_key(None, &dir).unwrap();
        assert_eq!(a, b);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let hex = "00".repeat(32);
        assert_eq!(load_master_key(Some(&hex), &dir).unwrap(), [0; 32]);
        assert!(matches!(
            load_master_key(Some("short"), &dir),
            Err(MasterKeyError::BadVariable)
        ));
        std::fs::write(dir.join(KEY_FILE), "short").unwrap();
        let bad = load_master_key(None, &dir).unwrap_err();
        assert!(
            bad.to_string().ends_with("does not hold a 32-byte key"),
            "{bad}"
        );
        // A key file that cannot be created keeps the I/O error as its source.
        let missing = load_master_key(None, &dir.join("no-such-dir")).unwrap_err();
        assert!(
            missing.to_string().starts_with("cannot create "),
            "{missing}"
        );
        assert!(std::error::Error::source(&missing).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
