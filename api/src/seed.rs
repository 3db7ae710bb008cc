//! Creating tenants with their owner, outside and inside the API: the owner user and first
//! key of a new tenant, `halyard tenant create`, and the `--dev` seed (tenant `dev`,
//! project `demo`, echo agent `assistant`, and the public key of the demo page).
//!
//! Responsible for: what a new tenant starts with, waiting for it to be durable when
//! called outside a request, and [`SeedError`]. Not responsible for: HTTP.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use halyard_storage::{
    ids, Agent, ApiKey, Backend, KeyKind, Limits, Mutation, Project, PublicKey, Role, StoreError,
    Tenant, User,
};

use crate::error::{ApiError, ApiResult};
use crate::scope::Scopes;
use crate::tokens;

/// Why seeding outside a request failed.
#[derive(Debug)]
pub enum SeedError {
    /// Storage refused the write, or failed to make it durable.
    Store(StoreError),
    /// The dev tenant exists but the file keeping its key cannot be read.
    DevKey(PathBuf, io::Error),
    /// A file of the data directory could not be written.
    Write(PathBuf, io::Error),
    /// The dev tenant has no project `demo` to hold the demo page's key.
    NoDemoProject,
}

impl fmt::Display for SeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeedError::Store(e) => write!(f, "{e}"),
            SeedError::DevKey(path, e) => write!(
                f,
                "dev tenant exists but {} is unreadable: {e}",
                path.display()
            ),
            SeedError::Write(path, e) => write!(f, "cannot write {}: {e}", path.display()),
            SeedError::NoDemoProject => f.write_str("the dev tenant has no project `demo`"),
        }
    }
}

impl std::error::Error for SeedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SeedError::Store(e) => Some(e),
            SeedError::DevKey(_, e) | SeedError::Write(_, e) => Some(e),
            SeedError::NoDemoProject => None,
        }
    }
}

/// The owner user and first key of a new tenant.
#[derive(Debug)]
pub struct Owner {
    /// The owner user, when an email and password were given.
    pub user: Option<User>,
    /// The first API key, in clear (shown once).
    pub key: String,
    api_key: ApiKey,
}

impl Owner {
    /// The mutations creating `tenant` with this owner.
    pub fn mutations(self, tenant: Tenant) -> Vec<Mutation> {
        let mut m = vec![Mutation::PutTenant(tenant)];
        if let Some(u) = self.user {
            m.push(Mutation::PutUser(u));
        }
        m.push(Mutation::PutApiKey(self.api_key));
        m
    }
}

/// A new API key record for `key` (in clear), with its digest, prefix and last four.
pub fn key_record(
    key: &str,
    name: &str,
    kind: KeyKind,
    scopes: Scopes,
    project_ids: Vec<String>,
    expires_at: Option<u64>,
    now: u64,
) -> ApiKey {
    let prefix = match kind {
        KeyKind::User => tokens::USER_KEY,
        KeyKind::Service => tokens::SERVICE_KEY,
    };
    ApiKey {
        id: ids::new_id(ids::KEY),
        name: name.to_string(),
        digest: tokens::digest(key),
        prefix: tokens::visible_prefix(key, prefix),
        last4: tokens::last4(key),
        kind,
        scopes: scopes.names().into_iter().map(String::from).collect(),
        project_ids,
        expires_at,
        revoked: false,
        created_at: now,
    }
}

/// The owner of a new tenant: a user if `login` is given, and a key holding every scope.
pub fn owner(login: Option<(&str, &str)>, now: u64) -> ApiResult<Owner> {
    let user = match login {
        Some((email, password)) => Some(User {
            id: ids::new_id(ids::USER),
            email: email.to_ascii_lowercase(),
            password_hash: crate::password::hash(password).ok_or(ApiError::Internal)?,
            role: Role::Owner,
            created_at: now,
        }),
        None => None,
    };
    Ok(Owner {
        user,
        ..key_owner(now)
    })
}

/// The owner of a tenant created outside the API: its first key alone.
fn key_owner(now: u64) -> Owner {
    let key = tokens::mint(tokens::USER_KEY);
    let api_key = key_record(
        &key,
        "owner",
        KeyKind::User,
        Scopes::ALL,
        Vec::new(),
        None,
        now,
    );
    Owner {
        user: None,
        key,
        api_key,
    }
}

/// Commits and waits until durable (for commands run outside a request).
pub fn commit_and_wait(
    store: &dyn Backend,
    tenant: &str,
    mutations: Vec<Mutation>,
) -> Result<(), SeedError> {
    halyard_storage::backend::commit_and_wait(store, tenant, mutations).map_err(SeedError::Store)
}

/// A new tenant named `name`, enabled, with the default limits.
fn new_tenant(name: &str, now: u64) -> Tenant {
    Tenant {
        id: ids::new_id(ids::TENANT),
        name: name.to_string(),
        limits: Limits::default(),
        disabled: false,
        created_at: now,
        updated_at: now,
    }
}

/// Creates tenant `name` with an owner key; returns (tenant id, key in clear).
pub fn create_tenant(store: &dyn Backend, name: &str) -> Result<(String, String), SeedError> {
    let now = crate::time::now_ms();
    let tenant = new_tenant(name, now);
    let owner = key_owner(now);
    let key = owner.key.clone();
    let id = tenant.id.clone();
    commit_and_wait(store, &id, owner.mutations(tenant))?;
    Ok((id, key))
}

/// File in the data directory that keeps the dev key, so `--dev` can print it again.
pub const DEV_KEY_FILE: &str = "dev-api-key";

/// What `--dev` seeded or found.
#[derive(Debug)]
pub struct DevSeed {
    /// The dev tenant's owner key.
    pub key: String,
    /// The demo project's id (empty if the project was deleted since).
    pub project_id: String,
    /// The dev tenant's id.
    pub tenant_id: String,
}

/// Seeds tenant `dev`, project `demo` and echo agent `assistant` on a store without a
/// `dev` tenant; on a seeded store, reads the key kept in the data directory.
pub fn dev(store: &dyn Backend, data_dir: &Path) -> Result<DevSeed, SeedError> {
    let key_path = data_dir.join(DEV_KEY_FILE);
    let existing = store
        .tenants(halyard_storage::Page::ALL)
        .items
        .into_iter()
        .find(|t| t.name == "dev");
    if let Some(t) = existing {
        let key = std::fs::read_to_string(&key_path).map_err(|e| SeedError::DevKey(key_path, e))?;
        let project_id = store
            .projects(&t.id, halyard_storage::Page::ALL)
            .items
            .into_iter()
            .find(|p| p.slug == "demo")
            .map(|p| p.id)
            .unwrap_or_default();
        return Ok(DevSeed {
            key: key.trim().to_string(),
            project_id,
            tenant_id: t.id,
        });
    }
    let now = crate::time::now_ms();
    let tenant = new_tenant("dev", now);
    let owner = key_owner(now);
    let key = owner.key.clone();
    let tid = tenant.id.clone();
    let project = Project {
        id: ids::new_id(ids::PROJECT),
        name: "demo".into(),
        slug: "demo".into(),
        description: Some("Seeded by --dev".into()),
        entry_agent_name: Some("assistant".into()),
        created_at: now,
        updated_at: now,
    };
    let agent = Agent {
        id: ids::new_id(ids::AGENT),
        project_id: project.id.clone(),
        name: "assistant".into(),
        description: Some("Echoes what you say".into()),
        instructions: Some("You are a helpful assistant.".into()),
        model: crate::chat::provider::echo_model(),
        dsl_content: None,
        created_at: now,
        updated_at: now,
        tools: Vec::new(),
        max_tool_iterations: halyard_storage::DEFAULT_MAX_TOOL_ITERATIONS,
    };
    let project_id = project.id.clone();
    let mut m = owner.mutations(tenant);
    m.push(Mutation::PutProject(project));
    m.push(Mutation::PutAgent(agent));
    write_private(&key_path, &key)?;
    commit_and_wait(store, &tid, m)?;
    Ok(DevSeed {
        key,
        project_id,
        tenant_id: tid,
    })
}

/// File in the data directory that keeps the demo page's public key (`pk_...`).
pub const DEV_PUBLIC_KEY_FILE: &str = "dev-public-key";

/// Name of the public key `--dev` creates for its demo page.
pub const DEV_PUBLIC_KEY_NAME: &str = "dev demo page";

/// The public key of the `--dev` demo page: the one kept in the data directory when it
/// still exists and allows every origin of `origins`; else a new key on the demo project
/// allowing exactly `origins` (public keys cannot be edited), which replaces the old one.
pub fn dev_public_key(
    store: &dyn Backend,
    data_dir: &Path,
    seed: &DevSeed,
    origins: &[String],
) -> Result<String, SeedError> {
    if seed.project_id.is_empty() {
        return Err(SeedError::NoDemoProject);
    }
    let path = data_dir.join(DEV_PUBLIC_KEY_FILE);
    let keys = store.public_keys(&seed.tenant_id, &seed.project_id);
    let stored = std::fs::read_to_string(&path)
        .ok()
        .map(|k| k.trim().to_string())
        .and_then(|k| {
            let d = tokens::digest(&k);
            let record = keys.iter().find(|r| tokens::same_digest(&r.digest, &d))?;
            Some((k, record.clone()))
        });
    let mut m = Vec::new();
    if let Some((key, record)) = stored {
        if origins.iter().all(|o| record.allowed_origins.contains(o)) {
            return Ok(key);
        }
        m.push(Mutation::DeletePublicKey {
            project_id: record.project_id,
            id: record.id,
        });
    }
    let key = tokens::mint(tokens::PUBLIC_KEY);
    m.push(Mutation::PutPublicKey(PublicKey {
        id: ids::new_id(ids::PUBLIC_KEY),
        project_id: seed.project_id.clone(),
        name: DEV_PUBLIC_KEY_NAME.into(),
        prefix: tokens::visible_prefix(&key, tokens::PUBLIC_KEY),
        digest: tokens::digest(&key),
        allowed_origins: origins.to_vec(),
        created_at: crate::time::now_ms(),
    }));
    commit_and_wait(store, &seed.tenant_id, m)?;
    write_private(&path, &key)?;
    Ok(key)
}

/// Writes `text` to `path`, readable by this user alone, and syncs it.
fn write_private(path: &Path, text: &str) -> Result<(), SeedError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| SeedError::Write(path.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use halyard_storage::{Options, Store};

    #[test]
    fn the_demo_key_is_kept_while_it_allows_the_origins_and_replaced_when_not() {
        let dir = std::env::temp_dir().join(format!("halyard-seed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir, Options::default()).unwrap();
        let seed = dev(&store, &dir).unwrap();
        let a = vec!["http://127.0.0.1:9001".to_string()];
        let b = vec!["http://127.0.0.1:9002".to_string()];

        let k1 = dev_public_key(&store, &dir, &seed, &a).unwrap();
        assert!(k1.starts_with("pk_"));
        assert_eq!(dev_public_key(&store, &dir, &seed, &a).unwrap(), k1);
        let keys = store.public_keys(&seed.tenant_id, &seed.project_id);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].allowed_origins, a);

        let k2 = dev_public_key(&store, &dir, &seed, &b).unwrap();
        assert_ne!(k2, k1);
        let keys = store.public_keys(&seed.tenant_id, &seed.project_id);
        assert_eq!(keys.len(), 1, "the old demo key is replaced");
        assert_eq!(keys[0].allowed_origins, b);
        assert!(store.public_key_by_digest(&tokens::digest(&k1)).is_none());
        let kept = std::fs::read_to_string(dir.join(DEV_PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(kept, k2);

        // A seeded store found again by `dev` keeps the same tenant and project.
        let again = dev(&store, &dir).unwrap();
        assert_eq!(
            (again.tenant_id, again.project_id),
            (seed.tenant_id, seed.project_id)
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_seeded_store_without_its_key_file_names_the_file() {
        let dir = std::env::temp_dir().join(format!("halyard-seed-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(&dir, Options::default()).unwrap();
        dev(&store, &dir).unwrap();
        std::fs::remove_file(dir.join(DEV_KEY_FILE)).unwrap();
        let e = dev(&store, &dir).unwrap_err();
        assert!(matches!(&e, SeedError::DevKey(path, _) if path.ends_with(DEV_KEY_FILE)));
        assert!(std::error::Error::source(&e).is_some(), "{e}");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
