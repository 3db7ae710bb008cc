//! Why a command failed: [`ServeError`], printed by `main` as `halyard: <message>`.
//!
//! Responsible for: one variant per way `serve`, `tenant create`, `check`, `backup` and
//! `restore` can fail,
//! each with the message an operator reads and, where another error caused it, that error
//! as its `source()`. Not responsible for: deciding to fail (see `serve`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use halyard_api::jwt::JwtError;
use halyard_api::seed::SeedError;
use halyard_api::vault::MasterKeyError;
use halyard_api::SetupError;
use halyard_engine::TlsError;
use halyard_storage::{BackupError, OpenError, StoreError};

use crate::activation::ActivationError;
use crate::config::ConfigError;

/// Why `serve`, `tenant create`, `check`, `backup` or `restore` failed.
#[derive(Debug)]
pub enum ServeError {
    /// The settings of `serve` are invalid.
    Config(ConfigError),
    /// The TLS certificate or key did not load.
    Tls(TlsError),
    /// The data directory could not be opened.
    Open(PathBuf, OpenError),
    /// `HALYARD_JWT_SECRET` is shorter than 32 bytes.
    ShortJwtSecret,
    /// The generated JWT secret could not be stored.
    StoreJwtSecret(StoreError),
    /// The file of the external issuer's public keys could not be read.
    ReadPublicKeys(String, io::Error),
    /// The external issuer's public keys did not load.
    PublicKeys(String, JwtError),
    /// The master key could not be loaded or created.
    MasterKey(MasterKeyError),
    /// Seeding the dev tenant or a new tenant failed.
    Seed(SeedError),
    /// The API could not be set up.
    Setup(SetupError),
    /// The listen address could not be bound.
    Listen(SocketAddr, io::Error),
    /// The socket-activation variables are invalid or name no usable descriptor.
    Activation(ActivationError),
    /// The socket systemd passed cannot be served.
    Inherited(io::Error),
    /// The thread that notifies systemd could not be started.
    Notify(io::Error),
    /// The SIGTERM and SIGINT handlers could not be installed.
    Signals(io::Error),
    /// The SIGHUP handler could not be installed.
    Sighup(io::Error),
    /// The access log could not be opened or its writer started.
    AccessLog(io::Error),
    /// The server stopped with an error.
    Server(io::Error),
    /// `tenant create` was given a name of no or too many characters.
    TenantName,
    /// `check` could not open the data directory.
    Check(PathBuf, OpenError),
    /// `check` found damage in the data directory.
    Damaged(PathBuf),
    /// The `--backup-dir` could not be created or resolved.
    BackupDir(PathBuf, io::Error),
    /// `backup` failed.
    Backup(BackupError),
    /// `restore` failed.
    Restore(BackupError),
    /// The PostgreSQL store could not be opened, migrated or checked.
    Postgres(halyard_pgstore::OpenError),
    /// `check --storage` found transactions that do not replay.
    DamagedDatabase,
    /// The handler threads of a shared store could not be started.
    HandlerThreads(io::Error),
    /// `export-store` or `import-store` failed to copy.
    Copy(StoreError),
    /// The target of `export-store` or `import-store` holds data already.
    NotEmpty(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Config(e) => write!(f, "{e}"),
            ServeError::Tls(e) => write!(f, "TLS: {e}"),
            ServeError::Open(dir, e) => {
                write!(f, "cannot open the data directory {}: {e}", dir.display())
            }
            ServeError::ShortJwtSecret => {
                f.write_str("HALYARD_JWT_SECRET must be at least 32 bytes")
            }
            ServeError::StoreJwtSecret(e) => write!(f, "cannot store the JWT secret: {e}"),
            ServeError::ReadPublicKeys(path, e) => write!(f, "cannot read {path}: {e}"),
            ServeError::PublicKeys(path, e) => write!(f, "HALYARD_JWT_PUBLIC_KEYS {path}: {e}"),
            ServeError::MasterKey(e) => write!(f, "{e}"),
            ServeError::Seed(e) => write!(f, "{e}"),
            ServeError::Setup(e) => write!(f, "{e}"),
            ServeError::Listen(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            ServeError::Activation(e) => write!(f, "socket activation: {e}"),
            ServeError::Inherited(e) => {
                write!(f, "cannot serve the socket passed by systemd: {e}")
            }
            ServeError::Notify(e) => write!(f, "cannot start notifying systemd: {e}"),
            ServeError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            ServeError::Sighup(e) => write!(f, "cannot install the SIGHUP handler: {e}"),
            ServeError::AccessLog(e) => write!(f, "cannot open the access log: {e}"),
            ServeError::Server(e) => write!(f, "server failed: {e}"),
            ServeError::TenantName => f.write_str("the tenant name must be 1 to 128 characters"),
            ServeError::Check(dir, e) => write!(f, "check of {} failed: {e}", dir.display()),
            ServeError::Damaged(dir) => write!(f, "{} has damage", dir.display()),
            ServeError::BackupDir(dir, e) => {
                write!(f, "cannot use the backup directory {}: {e}", dir.display())
            }
            ServeError::Backup(e) => write!(f, "backup failed: {e}"),
            ServeError::Restore(e) => write!(f, "restore failed: {e}"),
            ServeError::Postgres(e) => write!(f, "PostgreSQL store: {e}"),
            ServeError::DamagedDatabase => f.write_str("the database has damage"),
            ServeError::HandlerThreads(e) => write!(f, "cannot start the handler threads: {e}"),
            ServeError::Copy(e) => write!(f, "copy failed: {e}"),
            ServeError::NotEmpty(what) => write!(f, "{what} is not empty: nothing was copied"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Config(e) => Some(e),
            ServeError::Tls(e) => Some(e),
            ServeError::Open(_, e) | ServeError::Check(_, e) => Some(e),
            ServeError::StoreJwtSecret(e) | ServeError::Copy(e) => Some(e),
            ServeError::PublicKeys(_, e) => Some(e),
            ServeError::MasterKey(e) => Some(e),
            ServeError::Seed(e) => Some(e),
            ServeError::Setup(e) => Some(e),
            ServeError::Activation(e) => Some(e),
            ServeError::ReadPublicKeys(_, e)
            | ServeError::Listen(_, e)
            | ServeError::Inherited(e)
            | ServeError::Notify(e)
            | ServeError::Signals(e)
            | ServeError::Sighup(e)
            | ServeError::AccessLog(e)
            | ServeError::Server(e)
            | ServeError::BackupDir(_, e)
            | ServeError::HandlerThreads(e) => Some(e),
            ServeError::Postgres(e) => Some(e),
            ServeError::Backup(e) | ServeError::Restore(e) => Some(e),
            ServeError::ShortJwtSecret
            | ServeError::TenantName
            | ServeError::Damaged(_)
            | ServeError::DamagedDatabase
            | ServeError::NotEmpty(_) => None,
        }
    }
}

impl From<ConfigError> for ServeError {
    fn from(e: ConfigError) -> Self {
        ServeError::Config(e)
    }
}

impl From<TlsError> for ServeError {
    fn from(e: TlsError) -> Self {
        ServeError::Tls(e)
    }
}

impl From<MasterKeyError> for ServeError {
    fn from(e: MasterKeyError) -> Self {
        ServeError::MasterKey(e)
    }
}

impl From<SeedError> for ServeError {
    fn from(e: SeedError) -> Self {
        ServeError::Seed(e)
    }
}

impl From<SetupError> for ServeError {
    fn from(e: SetupError) -> Self {
        ServeError::Setup(e)
    }
}
