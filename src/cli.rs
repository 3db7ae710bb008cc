//! The command line: `halyard serve`, `halyard tenant create`, `halyard check`, `halyard
//! backup`, `halyard restore`, `halyard migrate`, `halyard export-store`, `halyard
//! import-store`.
//!
//! Responsible for: flag names and help text exactly as ENDPOINTS.md section 10 writes them.
//! Not responsible for: defaults or the config file (see `config`), or running anything.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Halyard: a self-hosted multi-tenant Agent Platform API server.
#[derive(Debug, Parser)]
#[command(name = "halyard", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API.
    Serve(Box<ServeArgs>),
    /// Manage tenants offline, on the data directory.
    Tenant {
        /// The tenant action.
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Verify the log of a data directory offline and report torn or corrupt records.
    Check(CheckArgs),
    /// Copy a consistent backup of a data directory, also while `serve` runs on it.
    Backup(BackupArgs),
    /// Restore a backup into a new, empty data directory, checking every file first.
    Restore(RestoreArgs),
    /// Create or upgrade the schema of a PostgreSQL store (`serve` also does it at start).
    Migrate(MigrateArgs),
    /// Copy an embedded data directory (its server stopped) into an empty PostgreSQL store.
    ExportStore(ExportStoreArgs),
    /// Copy a PostgreSQL store into a new embedded data directory.
    ImportStore(ImportStoreArgs),
}

/// `halyard serve` flags. Every one is optional here: unset flags fall back to the config
/// file, then to the defaults.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./halyard-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where the data lives: embedded (the log in --data-dir) or a postgres:// URL shared
    /// by every node [default: embedded].
    #[arg(long)]
    pub storage: Option<String>,
    /// Handler threads, and database connections, with a postgres:// store [default: 16].
    #[arg(long)]
    pub db_threads: Option<usize>,
    /// Event loops (threads) [default: available cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// PEM certificate chain for HTTPS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Durability of writes: always, interval:MS or never [default: always].
    #[arg(long)]
    pub fsync: Option<String>,
    /// Interval of SSE heartbeats in milliseconds [default: 15000].
    #[arg(long)]
    pub sse_heartbeat_ms: Option<u64>,
    /// Delay per token of the echo provider in milliseconds [default: 0].
    #[arg(long)]
    pub echo_token_delay_ms: Option<u64>,
    /// Lifetime of issued JWTs in seconds [default: 3600].
    #[arg(long)]
    pub jwt_ttl_secs: Option<u64>,
    /// Keep-alive idle timeout in milliseconds [default: 60000].
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Time allowed for a request head in milliseconds [default: 10000].
    #[arg(long)]
    pub header_timeout_ms: Option<u64>,
    /// Connections open at once; more are closed at accept [default: 100000].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Time a graceful shutdown waits for in-flight requests in milliseconds [default: 10000].
    #[arg(long)]
    pub shutdown_timeout_ms: Option<u64>,
    /// Seed a dev tenant, project and echo agent on an empty store and print a curl line.
    #[arg(long)]
    pub dev: bool,
    /// Agent turns running at once; more are 429 QUEUE_FULL [default: 10000].
    #[arg(long)]
    pub max_running_turns: Option<usize>,
    /// Gone with the agent worker threads (turns run on the event loops); accepted and
    /// ignored with a warning, so that existing scripts keep working.
    #[arg(long, hide = true)]
    pub agent_workers: Option<usize>,
    /// Gone: see `--max-running-turns`; accepted and ignored with a warning.
    #[arg(long, hide = true)]
    pub agent_queue: Option<usize>,
    /// Time an upstream model provider has to start answering, and longest silence within
    /// its answer, in milliseconds [default: 60000].
    #[arg(long)]
    pub provider_timeout_ms: Option<u64>,
    /// Longest a whole upstream model call may take, in milliseconds [default: 600000].
    #[arg(long)]
    pub provider_total_timeout_ms: Option<u64>,
    /// How long a stream's events are kept for resumes, in seconds [default: 86400].
    #[arg(long)]
    pub stream_retention_secs: Option<u64>,
    /// Switch rate and concurrency limits off (benchmarks; never in production).
    #[arg(long)]
    pub no_rate_limits: bool,
    /// Let tool calls reach loopback, private, link-local and other non-public addresses
    /// (by default they may reach public addresses only).
    #[arg(long)]
    pub tool_allow_private: bool,
    /// A block of addresses tool calls may reach although it is not public, e.g.
    /// 10.1.0.0/16 (repeatable).
    #[arg(long = "tool-allow-cidr", value_name = "CIDR")]
    pub tool_allow_cidr: Vec<halyard_engine::client::Cidr>,
    /// Directory where `POST /api/v1/admin/backup` writes backups (created if missing); the
    /// route is off without it.
    #[arg(long)]
    pub backup_dir: Option<PathBuf>,
    /// Access log, one JSON line per request: off, stdout or a file path (reopened on
    /// SIGHUP) [default: off].
    #[arg(long)]
    pub access_log: Option<String>,
    /// Format of the server's own messages on stderr: text or json [default: text].
    #[arg(long)]
    pub log_format: Option<String>,
    /// A TOML config file with the same names as the flags.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `halyard tenant` actions.
#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Create a tenant and print its owner API key.
    Create {
        /// The tenant's name.
        name: String,
        /// Data directory.
        #[arg(long, default_value = "./halyard-data")]
        data_dir: PathBuf,
    },
}

/// `halyard check` flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Data directory to verify.
    #[arg(long, default_value = "./halyard-data")]
    pub data_dir: PathBuf,
    /// A postgres:// URL: verify that store instead (every transaction replayed).
    #[arg(long, conflicts_with = "repair")]
    pub storage: Option<String>,
    /// Cut the log at the first corrupt record instead of only reporting it.
    #[arg(long)]
    pub repair: bool,
}

/// `halyard backup` flags.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Data directory to back up (a running server may have it open).
    #[arg(long, default_value = "./halyard-data")]
    pub data_dir: PathBuf,
    /// The backup directory to create; it must not exist.
    #[arg(long)]
    pub to: PathBuf,
}

/// `halyard restore` flags.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory (made by `halyard backup` or `POST /api/v1/admin/backup`).
    #[arg(long)]
    pub from: PathBuf,
    /// The data directory to create; it must be missing or empty.
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// `halyard migrate` flags.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The postgres:// URL of the store.
    #[arg(long)]
    pub storage: String,
}

/// `halyard export-store` flags.
#[derive(Debug, Args)]
pub struct ExportStoreArgs {
    /// Data directory to copy (no server may have it open).
    #[arg(long, default_value = "./halyard-data")]
    pub data_dir: PathBuf,
    /// The postgres:// URL of an empty store to copy into.
    #[arg(long)]
    pub to: String,
}

/// `halyard import-store` flags.
#[derive(Debug, Args)]
pub struct ImportStoreArgs {
    /// The postgres:// URL of the store to copy.
    #[arg(long)]
    pub from: String,
    /// The data directory to create; it must be missing or empty.
    #[arg(long)]
    pub data_dir: PathBuf,
}
