//! SDK session tokens (`sdk_...`): short-lived, signed, bound to one project and origin.
//!
//! Responsible for: the signing key, derived from the JWT secret; minting and verifying
//! tokens that carry their grant (tenant, project, origin, issuing public key, token id,
//! expiry) under an HMAC-SHA256 signature, so that
//! `sdk/init` and every widget request need no storage write or lookup of the token. A
//! deleted public key invalidates its tokens because `auth` checks the key still exists.
//! Not responsible for: origin checks (see `auth`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tokens::SDK_TOKEN;

/// Default lifetime of an SDK token (4 hours).
pub const TTL_SECS: u64 = 14_400;

/// Put before the JWT secret when the signing key is derived, so that the key differs from
/// the JWT key made of the same secret.
const KEY_LABEL: &[u8] = b"halyard-sdk-token-key:";

/// The key SDK tokens are signed with: SHA-256 of a label and the JWT secret's raw bytes.
///
/// Every byte of the secret counts; the generated secret is random bytes, not text. Keys
/// were once derived from a lossy UTF-8 rendering of the secret, which is the same for a
/// secret of valid UTF-8 (`HALYARD_JWT_SECRET`) but not for a generated one: SDK tokens
/// signed before the upgrade then stop verifying. They live at most [`TTL_SECS`], and a
/// widget gets a new one from `sdk/init`.
pub fn signing_key(jwt_secret: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(KEY_LABEL)
        .chain_update(jwt_secret)
        .finalize()
        .into()
}

/// What an SDK token grants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    /// Tenant id.
    #[serde(rename = "t")]
    pub tenant: String,
    /// Project id.
    #[serde(rename = "p")]
    pub project: String,
    /// The origin that created it.
    #[serde(rename = "o")]
    pub origin: String,
    /// The public key that issued it.
    #[serde(rename = "k")]
    pub public_key: String,
    /// Token id (owner of the sessions it creates).
    #[serde(rename = "i")]
    pub id: String,
    /// This token's own id: new at every issue, refreshes included (the owner id above
    /// stays, so a refreshed token keeps its sessions). Tokens from before it carry none.
    #[serde(rename = "j", default, skip_serializing_if = "String::is_empty")]
    pub token_id: String,
    /// Expiry (seconds since the epoch).
    #[serde(rename = "e")]
    pub exp: u64,
}

/// Signs and verifies SDK tokens.
pub struct SdkSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for SdkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SdkSigner")
    }
}

impl SdkSigner {
    /// A signer with `key` (see [`signing_key`]).
    pub fn new(key: &[u8]) -> Self {
        SdkSigner { key: key.to_vec() }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// A token for `grant`.
    pub fn mint(&self, grant: &Grant) -> String {
        let payload = serde_json::to_vec(grant).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&payload);
        let sig = mac.finalize().into_bytes();
        format!(
            "{SDK_TOKEN}{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// The grant of a valid, unexpired token.
    pub fn verify(&self, token: &str, now_secs: u64) -> Option<Grant> {
        let (payload, sig) = token.strip_prefix(SDK_TOKEN)?.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&sig).ok()?;
        let grant: Grant = serde_json::from_slice(&payload).ok()?;
        (grant.exp > now_secs).then_some(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(exp: u64) -> Grant {
        Grant {
            tenant: "ten_1".into(),
            project: "proj_1".into(),
            origin: "https://a.example".into(),
            public_key: "pkey_1".into(),
            id: "tok_1".into(),
            token_id: "tok_1".into(),
            exp,
        }
    }

    #[test]
    fn mint_verify_tamper_expire() {
        let s = SdkSigner::new(b"k");
        let t = s.mint(&grant(100));
        assert_eq!(s.verify(&t, 99), Some(grant(100)));
        assert_eq!(s.verify(&t, 100), None);
        assert_eq!(SdkSigner::new(b"other").verify(&t, 1), None);
        let mut tampered = t.clone();
        tampered.insert(6, 'A');
        assert_eq!(s.verify(&tampered, 1), None);
        assert_eq!(s.verify("sdk_", 1), None);
        assert_eq!(s.verify("sdk_a.b", 1), None);
    }

    #[test]
    fn the_signing_key_hashes_the_secret_s_raw_bytes() {
        // Both read as "\u{fffd}a" once made lossy UTF-8; they are different secrets.
        assert_ne!(signing_key(&[0xff, b'a']), signing_key(&[0xfe, b'a']));
        // A secret of valid UTF-8 keeps the key it had when the secret was hashed as text.
        let text = "halyard-sdk-token-key:secret-secret-secret-secret-1234";
        assert_eq!(
            signing_key(b"secret-secret-secret-secret-1234"),
            crate::tokens::digest(text)
        );
    }
}
