//! Secrets handed to clients: API keys, public keys, and their digests.
//!
//! Responsible for: minting `abl_sk-`, `ak_` and `pk_` keys from 32 bytes of kernel
//! randomness, the SHA-256 digest that is all storage keeps, the visible prefix and last
//! four characters, and constant-time comparison. Not responsible for: looking keys up.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of user API keys.
pub const USER_KEY: &str = "abl_sk-";
/// Prefix of service keys.
pub const SERVICE_KEY: &str = "ak_";
/// Prefix of widget public keys.
pub const PUBLIC_KEY: &str = "pk_";
/// Prefix of SDK session tokens.
pub const SDK_TOKEN: &str = "sdk_";

/// 32 random bytes from the kernel.
pub fn random_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    // getrandom fails only without any kernel entropy source; there is no safe fallback
    // for secrets, so that is fatal.
    if getrandom::getrandom(&mut b).is_err() {
        panic!("no kernel randomness available for key generation");
    }
    b
}

/// A new key: `prefix` and 43 URL-safe characters (256 random bits).
pub fn mint(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes()))
}

/// SHA-256 of the whole key string.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Constant-time equality of two digests.
pub fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// The visible start of a key (its type prefix and four more characters).
pub fn visible_prefix(key: &str, prefix: &str) -> String {
    key.chars().take(prefix.len() + 4).collect()
}

/// The last four characters of a key.
pub fn last4(key: &str) -> String {
    let n = key.chars().count();
    key.chars().skip(n.saturating_sub(4)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_digested() {
        let a = mint(USER_KEY);
        let b = mint(USER_KEY);
        assert_ne!(a, b);
        assert_eq!(a.len(), USER_KEY.len() + 43);
        assert!(same_digest(&digest(&a), &digest(&a)));
        assert!(!same_digest(&digest(&a), &digest(&b)));
        assert_eq!(visible_prefix(&a, USER_KEY).len(), 11);
        assert_eq!(last4("abcdef"), "cdef");
    }
}
