//! JSON Web Tokens: HS256 tokens issued by login, and RS256/ES256 tokens of an external
//! issuer whose public keys, `iss` and `aud` the operator configured.
//!
//! Responsible for: issuing and verifying tokens and turning them into claims (tenant,
//! subject, role), and [`JwtError`] when the keys do not load. Not responsible for:
//! checking that the user still exists (see `auth`).

use std::fmt;

use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

/// Issuer written into tokens of this server.
pub const ISSUER: &str = "halyard";

/// The claims of a Halyard token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Tenant id.
    pub tid: String,
    /// Role name (`owner`, `developer`, `viewer`).
    #[serde(default)]
    pub role: Option<String>,
    /// Issued at (seconds).
    #[serde(default)]
    pub iat: u64,
    /// Expiry (seconds).
    pub exp: u64,
}

/// Why the JWT keys could not be loaded.
#[derive(Debug)]
pub enum JwtError {
    /// A PEM block of the external issuer's keys is neither an RSA nor an EC public key.
    UnknownPublicKey,
    /// The external issuer's PEM text holds no public key.
    NoPublicKey,
    /// The HS256 secret was refused.
    Secret(jsonwebtoken::errors::Error),
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwtError::UnknownPublicKey => {
                f.write_str("a PEM block is neither an RSA nor an EC public key")
            }
            JwtError::NoPublicKey => f.write_str("no PEM public key found"),
            JwtError::Secret(e) => write!(f, "invalid JWT secret: {e}"),
        }
    }
}

impl std::error::Error for JwtError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JwtError::Secret(e) => Some(e),
            JwtError::UnknownPublicKey | JwtError::NoPublicKey => None,
        }
    }
}

/// An external issuer's verification settings.
pub struct ExternalIssuer {
    /// Its public keys with their algorithms.
    pub keys: Vec<(Algorithm, DecodingKey)>,
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
}

impl fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalIssuer")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl ExternalIssuer {
    /// Reads PEM public keys (RSA or EC P-256, one or more) from `pem`.
    pub fn from_pem(pem: &str, issuer: String, audience: String) -> Result<Self, JwtError> {
        let mut keys = Vec::new();
        for block in pem.split_inclusive("-----END PUBLIC KEY-----") {
            let block = block.trim();
            if !block.contains("BEGIN PUBLIC KEY") {
                continue;
            }
            if let Ok(k) = DecodingKey::from_rsa_pem(block.as_bytes()) {
                keys.push((Algorithm::RS256, k));
            } else if let Ok(k) = DecodingKey::from_ec_pem(block.as_bytes()) {
                keys.push((Algorithm::ES256, k));
            } else {
                return Err(JwtError::UnknownPublicKey);
            }
        }
        if keys.is_empty() {
            return Err(JwtError::NoPublicKey);
        }
        Ok(ExternalIssuer {
            keys,
            issuer,
            audience,
        })
    }
}

/// Issues and verifies tokens.
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_secs: u64,
    external: Option<ExternalIssuer>,
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

impl Jwt {
    /// HS256 with `secret`, tokens living `ttl_secs`.
    pub fn new(
        secret: &[u8],
        ttl_secs: u64,
        external: Option<ExternalIssuer>,
    ) -> Result<Self, JwtError> {
        Ok(Jwt {
            encoding: EncodingKey::from_secret(secret).map_err(JwtError::Secret)?,
            decoding: DecodingKey::from_secret(secret).map_err(JwtError::Secret)?,
            ttl_secs,
            external,
        })
    }

    /// Token lifetime in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// A token for user `sub` of tenant `tid`.
    pub fn issue(&self, sub: &str, tid: &str, role: &str, now_secs: u64) -> Option<String> {
        #[derive(Serialize)]
        struct Out<'a> {
            sub: &'a str,
            tid: &'a str,
            role: &'a str,
            iat: u64,
            exp: u64,
            iss: &'a str,
        }
        let claims = Out {
            sub,
            tid,
            role,
            iat: now_secs,
            exp: now_secs + self.ttl_secs,
            iss: ISSUER,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).ok()
    }

    /// Verifies a token (signature, expiry, issuer) and returns its claims, and whether it
    /// came from the external issuer.
    pub fn verify(&self, token: &str) -> Option<(Claims, bool)> {
        let header = decode_header(token).ok()?;
        if header.alg == Algorithm::HS256 {
            let mut v = Validation::new(Algorithm::HS256);
            v.set_issuer(&[ISSUER]);
            v.leeway = 0;
            return decode::<Claims>(token, &self.decoding, &v)
                .ok()
                .map(|d| (d.claims, false));
        }
        let ext = self.external.as_ref()?;
        ext.keys
            .iter()
            .filter(|(alg, _)| *alg == header.alg)
            .find_map(|(alg, key)| {
                let mut v = Validation::new(*alg);
                v.set_issuer(&[&ext.issuer]);
                v.set_audience(&[&ext.audience]);
                v.leeway = 30;
                decode::<Claims>(token, key, &v).ok()
            })
            .map(|d| (d.claims, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        crate::time::now_ms() / 1000
    }

    #[test]
    fn issue_and_verify() {
        let j = Jwt::new(b"secret-secret-secret-secret-1234", 60, None).unwrap();
        let t = j.issue("usr_1", "ten_1", "owner", now()).unwrap();
        let (c, ext) = j.verify(&t).unwrap();
        assert!(!ext);
        assert_eq!((c.sub.as_str(), c.tid.as_str()), ("usr_1", "ten_1"));
        let other = Jwt::new(b"another-secret-another-secret-12", 60, None).unwrap();
        assert!(other.verify(&t).is_none());
        let expired = j.issue("usr_1", "ten_1", "owner", now() - 120).unwrap();
        assert!(j.verify(&expired).is_none());
        assert!(j.verify("eyJ.garbage.x").is_none());
    }

    #[test]
    fn bad_public_keys_say_why() {
        let issuer = || ("iss".to_string(), "aud".to_string());
        let (iss, aud) = issuer();
        let none = ExternalIssuer::from_pem("no keys here", iss, aud).unwrap_err();
        assert_eq!(none.to_string(), "no PEM public key found");
        let (iss, aud) = issuer();
        let pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let bad = ExternalIssuer::from_pem(pem, iss, aud).unwrap_err();
        assert!(matches!(bad, JwtError::UnknownPublicKey), "{bad}");
    }
}
