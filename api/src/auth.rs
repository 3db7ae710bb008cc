//! Authentication: from request headers to a [`Principal`], before the body is read.
//!
//! Responsible for: finding the one credential of a request (CONVENTIONS section 2:
//! `Authorization: Bearer`, `X-API-Key`, `X-SDK-Token`, `X-Public-Key`), verifying it
//! (JWT signature and user, key digest lookup with constant-time comparison, revocation
//! and expiry, SDK token signature and issuing key, public key origins, the root key), and
//! checking the route's guard and scope. Not responsible for: per-resource visibility (the
//! handlers ask [`Principal::sees_project`]) or rate limits.

use halyard_engine::RequestHead;
use halyard_storage::{Backend, KeyKind, Limits, PublicKey, Role};

use crate::error::{ApiError, ApiResult};
use crate::jwt::Jwt;
use crate::route::Guard;
use crate::scope::{Scope, Scopes};
use crate::sdk_token::{Grant, SdkSigner};
use crate::tokens::{self, PUBLIC_KEY, SDK_TOKEN, SERVICE_KEY, USER_KEY};

/// The kind of credential a principal presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JWT.
    Jwt,
    /// A user API key (`abl_sk-`).
    UserKey,
    /// A service key (`ak_`).
    ServiceKey,
    /// An SDK token (`sdk_`).
    Sdk,
    /// A widget public key (`pk_`).
    PublicKey,
    /// The operator root key.
    Root,
}

impl Kind {
    /// The name shown by `/auth/me`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Jwt => "jwt",
            Kind::UserKey => "api_key",
            Kind::ServiceKey => "service_key",
            Kind::Sdk => "sdk_token",
            Kind::PublicKey => "public_key",
            Kind::Root => "root",
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Tenant id (empty for the root key).
    pub tenant: String,
    /// User id, key id, SDK token id or public key id.
    pub id: String,
    /// Credential kind.
    pub kind: Kind,
    /// What it may do.
    pub scopes: Scopes,
    /// Projects it is restricted to; empty means all of the tenant's.
    pub projects: Vec<String>,
    /// The grant of an SDK token.
    pub sdk: Option<Grant>,
    /// The public key used (`sdk/init`, `sdk/config`).
    pub public_key: Option<PublicKey>,
    /// The tenant's limits (read with the tenant when authenticating).
    pub limits: Limits,
}

impl Principal {
    /// Whether the principal may see project `id` (else: 404, as if it did not exist).
    pub fn sees_project(&self, id: &str) -> bool {
        if let Some(g) = &self.sdk {
            return g.project == id;
        }
        if let Some(pk) = &self.public_key {
            return pk.project_id == id;
        }
        self.projects.is_empty() || self.projects.iter().any(|p| p == id)
    }

    /// Whether it holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.has(scope)
    }
}

/// The verifiers `authenticate` needs.
#[derive(Debug)]
pub struct Verifiers {
    /// JWT issuer/verifier.
    pub jwt: Jwt,
    /// SDK token signer.
    pub sdk: SdkSigner,
    /// Digest of the operator root key, if one is configured.
    pub root: Option<[u8; 32]>,
}

fn bearer(head: &RequestHead) -> Option<&str> {
    let v = head.header_str("authorization")?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

const MISSING: &str = "Missing or invalid credential";

/// Authenticates a request for a route guarded by `guard`.
pub fn authenticate(
    v: &Verifiers,
    store: &dyn Backend,
    head: &RequestHead,
    guard: Guard,
    now_ms: u64,
) -> ApiResult<Option<Principal>> {
    match guard {
        Guard::Public => Ok(None),
        Guard::Root => root(v, head).map(Some),
        Guard::Scope(scope) => {
            let p = tenant_credential(v, store, head, now_ms)?;
            if let Some(s) = scope {
                if !p.has(s) {
                    return Err(ApiError::Forbidden(format!("Missing scope {}", s.name())));
                }
            }
            Ok(Some(p))
        }
        Guard::PublicKey => with_tenant(store, public_key(store, head)?).map(Some),
        Guard::SdkToken => match head.header_str("x-sdk-token") {
            Some(t) => with_tenant(store, sdk_token(v, store, head, t, now_ms)?).map(Some),
            None => Err(ApiError::Unauthorized(MISSING)),
        },
    }
}

fn root(v: &Verifiers, head: &RequestHead) -> ApiResult<Principal> {
    let token = bearer(head).ok_or(ApiError::Unauthorized(MISSING))?;
    match &v.root {
        Some(root) if tokens::same_digest(root, &tokens::digest(token)) => Ok(Principal {
            tenant: String::new(),
            id: "root".into(),
            kind: Kind::Root,
            scopes: Scopes::ALL,
            projects: Vec::new(),
            sdk: None,
            public_key: None,
            limits: Limits::default(),
        }),
        _ => Err(ApiError::Unauthorized(MISSING)),
    }
}

fn tenant_credential(
    v: &Verifiers,
    store: &dyn Backend,
    head: &RequestHead,
    now_ms: u64,
) -> ApiResult<Principal> {
    let p = if let Some(token) = bearer(head) {
        if token.starts_with("eyJ") {
            jwt(v, store, token)?
        } else {
            api_key(store, token, now_ms)?
        }
    } else if let Some(key) = head.header_str("x-api-key") {
        api_key(store, key.trim(), now_ms)?
    } else if let Some(token) = head.header_str("x-sdk-token") {
        sdk_token(v, store, head, token.trim(), now_ms)?
    } else {
        return Err(ApiError::Unauthorized(MISSING));
    };
    with_tenant(store, p)
}

/// Checks the principal's tenant exists and is enabled, and reads its limits.
fn with_tenant(store: &dyn Backend, mut p: Principal) -> ApiResult<Principal> {
    match store.tenant(&p.tenant) {
        Some(t) if !t.disabled => {
            p.limits = t.limits;
            Ok(p)
        }
        Some(_) => Err(ApiError::Forbidden("Tenant is disabled".into())),
        None => Err(ApiError::Unauthorized(MISSING)),
    }
}

fn jwt(v: &Verifiers, store: &dyn Backend, token: &str) -> ApiResult<Principal> {
    let (claims, external) = v.jwt.verify(token).ok_or(ApiError::Unauthorized(MISSING))?;
    let role = if external {
        parse_role(claims.role.as_deref().unwrap_or("viewer"))
    } else {
        // The stored role wins: a demoted or deleted user loses access at once.
        store.user(&claims.tid, &claims.sub).map(|u| u.role)
    }
    .ok_or(ApiError::Unauthorized(MISSING))?;
    Ok(Principal {
        tenant: claims.tid,
        id: claims.sub,
        kind: Kind::Jwt,
        scopes: Scopes::of_role(role),
        projects: Vec::new(),
        sdk: None,
        public_key: None,
        limits: Limits::default(),
    })
}

/// Every role's name (what a user's `role` may be).
pub const ROLE_NAMES: [&str; 3] = ["owner", "developer", "viewer"];

/// A role by name.
pub fn parse_role(name: &str) -> Option<Role> {
    match name {
        "owner" => Some(Role::Owner),
        "developer" => Some(Role::Developer),
        "viewer" => Some(Role::Viewer),
        _ => None,
    }
}

fn api_key(store: &dyn Backend, key: &str, now_ms: u64) -> ApiResult<Principal> {
    if !(key.starts_with(USER_KEY) || key.starts_with(SERVICE_KEY)) {
        return Err(ApiError::Unauthorized(MISSING));
    }
    let digest = tokens::digest(key);
    let (tenant, k) = store
        .api_key_by_digest(&digest)
        .ok_or(ApiError::Unauthorized(MISSING))?;
    let live = !k.revoked && k.expires_at.is_none_or(|e| e > now_ms);
    if !live || !tokens::same_digest(&k.digest, &digest) {
        return Err(ApiError::Unauthorized(MISSING));
    }
    Ok(Principal {
        tenant,
        kind: match k.kind {
            KeyKind::User => Kind::UserKey,
            KeyKind::Service => Kind::ServiceKey,
        },
        scopes: Scopes::from_names(&k.scopes),
        projects: k.project_ids,
        id: k.id,
        sdk: None,
        public_key: None,
        limits: Limits::default(),
    })
}

fn origin(head: &RequestHead) -> Option<&str> {
    head.header_str("origin").map(str::trim)
}

fn sdk_token(
    v: &Verifiers,
    store: &dyn Backend,
    head: &RequestHead,
    token: &str,
    now_ms: u64,
) -> ApiResult<Principal> {
    if !token.starts_with(SDK_TOKEN) {
        return Err(ApiError::Unauthorized(MISSING));
    }
    let grant = v
        .sdk
        .verify(token, now_ms / 1000)
        .ok_or(ApiError::Unauthorized(MISSING))?;
    // A deleted public key takes its tokens with it.
    let pk = store
        .public_keys(&grant.tenant, &grant.project)
        .into_iter()
        .find(|k| k.id == grant.public_key)
        .ok_or(ApiError::Unauthorized(MISSING))?;
    let origin_ok = origin(head)
        .is_some_and(|o| o == grant.origin && pk.allowed_origins.iter().any(|a| a == o));
    if !origin_ok {
        return Err(ApiError::Forbidden(
            "Origin is not allowed for this token".into(),
        ));
    }
    Ok(Principal {
        tenant: grant.tenant.clone(),
        id: grant.id.clone(),
        kind: Kind::Sdk,
        scopes: Scopes::of(&[Scope::SessionExecute, Scope::SessionRead]),
        projects: vec![grant.project.clone()],
        sdk: Some(grant),
        public_key: None,
        limits: Limits::default(),
    })
}

fn public_key(store: &dyn Backend, head: &RequestHead) -> ApiResult<Principal> {
    let key = head
        .header_str("x-public-key")
        .or_else(|| head.header_str("x-api-key"))
        .map(str::trim)
        .filter(|k| k.starts_with(PUBLIC_KEY))
        .ok_or(ApiError::Unauthorized(MISSING))?;
    let digest = tokens::digest(key);
    let (tenant, pk) = store
        .public_key_by_digest(&digest)
        .filter(|(_, pk)| tokens::same_digest(&pk.digest, &digest))
        .ok_or(ApiError::Unauthorized(MISSING))?;
    let allowed = origin(head).is_some_and(|o| pk.allowed_origins.iter().any(|a| a == o));
    if !allowed {
        return Err(ApiError::Forbidden(
            "Origin is not allowed for this key".into(),
        ));
    }
    Ok(Principal {
        tenant,
        id: pk.id.clone(),
        kind: Kind::PublicKey,
        scopes: Scopes::of(&[Scope::SessionExecute, Scope::SessionRead]),
        projects: vec![pk.project_id.clone()],
        sdk: None,
        public_key: Some(pk),
        limits: Limits::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_name_parses_to_the_role_of_that_name() {
        for name in ROLE_NAMES {
            let role = parse_role(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(crate::view::role(role), name);
        }
    }
}
