//! Password hashing with Argon2id.
//!
//! Responsible for: hashing new passwords into PHC strings and verifying them, and the
//! dummy verification that makes a login for an unknown email cost the same as one for a
//! known email (no user enumeration by timing). Not responsible for: password policy.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Hashes `password` with Argon2id (default parameters) and a random salt.
pub fn hash(password: &str) -> Option<String> {
    let salt_bytes = crate::tokens::random_bytes();
    let salt = SaltString::encode_b64(&salt_bytes[..16]).ok()?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .ok()
        .map(|h| h.to_string())
}

/// Whether `password` matches the PHC string `stored`.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends the same work as [`verify`] against a real hash, then fails.
pub fn verify_dummy(password: &str) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash("halyard-dummy-password").unwrap_or_default());
    let _ = verify(password, stored);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("x", "not a hash"));
        assert!(!verify_dummy("anything"));
    }
}
