//! Settings of `halyard serve`: defaults, the TOML config file, and flags, in that order of
//! precedence (a flag overrides the file, which overrides the default).
//!
//! Responsible for: one [`Settings`] value with every setting resolved and checked.
//! Not responsible for: acting on the settings (see `serve`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::ServeArgs;

/// The config file: the flag names, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    storage: Option<String>,
    db_threads: Option<usize>,
    threads: Option<usize>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    fsync: Option<String>,
    sse_heartbeat_ms: Option<u64>,
    echo_token_delay_ms: Option<u64>,
    jwt_ttl_secs: Option<u64>,
    idle_timeout_ms: Option<u64>,
    header_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    shutdown_timeout_ms: Option<u64>,
    dev: Option<bool>,
    root_key: Option<String>,
    rate_limits: Option<bool>,
    max_running_turns: Option<usize>,
    agent_workers: Option<usize>,
    agent_queue: Option<usize>,
    provider_timeout_ms: Option<u64>,
    provider_total_timeout_ms: Option<u64>,
    stream_retention_secs: Option<u64>,
    backup_dir: Option<PathBuf>,
    tool_allow_private: Option<bool>,
    tool_allow_cidrs: Option<Vec<String>>,
    access_log: Option<String>,
    log_format: Option<String>,
}

/// Why the settings could not be resolved.
#[derive(Debug)]
pub enum ConfigError {
    /// The config file could not be read.
    Read(PathBuf, std::io::Error),
    /// The config file is not valid TOML or has unknown keys.
    Parse(PathBuf, String),
    /// A value is out of range.
    Invalid(&'static str, String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "cannot read config file {}: {e}", p.display()),
            ConfigError::Parse(p, e) => write!(f, "invalid config file {}: {e}", p.display()),
            ConfigError::Invalid(name, why) => write!(f, "invalid --{name}: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read(_, e) => Some(e),
            ConfigError::Parse(..) | ConfigError::Invalid(..) => None,
        }
    }
}

/// Every setting of `halyard serve`, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The engine's settings.
    pub engine: halyard_engine::Config,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Where the data lives.
    pub storage: Storage,
    /// Handler threads and database connections with a shared store.
    pub db_threads: usize,
    /// TLS certificate and key, when serving HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The fsync policy.
    pub fsync: halyard_storage::FsyncPolicy,
    /// Agent runtime settings (echo delay, workers, queue, provider timeouts).
    pub runtime: halyard_api::chat::runtime::RuntimeConfig,
    /// JWT lifetime.
    pub jwt_ttl_secs: u64,
    /// Seed the dev tenant.
    pub dev: bool,
    /// The operator root key (`HALYARD_ROOT_KEY` wins over the config file).
    pub root_key: Option<String>,
    /// Whether rate and concurrency limits are enforced.
    pub rate_limits: bool,
    /// Where the admin backup route writes (`--backup-dir`); `None`: the route is off.
    pub backup_dir: Option<PathBuf>,
    /// Warnings for the operator (settings that no longer have an effect).
    pub warnings: Vec<String>,
    /// Where the access log goes; `None` when off.
    pub access_log: Option<halyard_engine::access_log::Target>,
    /// Format of the server's own messages.
    pub log_format: halyard_engine::log::Format,
}

/// Where the data lives (`--storage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// The log in the data directory.
    Embedded,
    /// A PostgreSQL database shared by every node, by its URL.
    Postgres(String),
}

impl Storage {
    /// `embedded` (also when unset) or a `postgres://` / `postgresql://` URL.
    pub fn parse(value: Option<&str>) -> Result<Storage, ConfigError> {
        match value {
            None | Some("embedded") => Ok(Storage::Embedded),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Storage::Postgres(url.to_owned()))
            }
            Some(other) => Err(ConfigError::Invalid(
                "storage",
                format!("{other:?} is neither embedded nor a postgres:// URL"),
            )),
        }
    }
}

impl Settings {
    /// Resolves flags over the config file (if any) over defaults.
    pub fn resolve(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => load(path)?,
            None => FileConfig::default(),
        };
        let mut runtime = runtime_config(args, &file);
        runtime.tool_reach = tool_reach(args, &file)?;
        let warnings = retired(args, &file);
        let defaults = halyard_engine::Config::default();
        let engine = halyard_engine::Config {
            listen: args.listen.or(file.listen).unwrap_or(defaults.listen),
            threads: args.threads.or(file.threads).unwrap_or(defaults.threads),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(defaults.max_connections),
            header_timeout_ms: args
                .header_timeout_ms
                .or(file.header_timeout_ms)
                .unwrap_or(defaults.header_timeout_ms),
            idle_timeout_ms: args
                .idle_timeout_ms
                .or(file.idle_timeout_ms)
                .unwrap_or(defaults.idle_timeout_ms),
            sse_heartbeat_ms: args
                .sse_heartbeat_ms
                .or(file.sse_heartbeat_ms)
                .unwrap_or(defaults.sse_heartbeat_ms),
            shutdown_timeout_ms: args
                .shutdown_timeout_ms
                .or(file.shutdown_timeout_ms)
                .unwrap_or(defaults.shutdown_timeout_ms),
        };
        let tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "tls-cert",
                    "--tls-cert and --tls-key go together".into(),
                ))
            }
        };
        let settings = Settings {
            engine,
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./halyard-data")),
            storage: Storage::parse(args.storage.as_deref().or(file.storage.as_deref()))?,
            db_threads: args.db_threads.or(file.db_threads).unwrap_or(16),
            tls,
            fsync: parse_fsync(args.fsync.clone().or(file.fsync.clone()))?,
            runtime,
            jwt_ttl_secs: args.jwt_ttl_secs.or(file.jwt_ttl_secs).unwrap_or(3600),
            dev: args.dev || file.dev.unwrap_or(false),
            root_key: std::env::var("HALYARD_ROOT_KEY").ok().or(file.root_key),
            rate_limits: !args.no_rate_limits && file.rate_limits.unwrap_or(true),
            backup_dir: args.backup_dir.clone().or(file.backup_dir),
            warnings,
            access_log: args
                .access_log
                .as_deref()
                .or(file.access_log.as_deref())
                .and_then(halyard_engine::access_log::Target::parse),
            log_format: match args.log_format.as_deref().or(file.log_format.as_deref()) {
                None => halyard_engine::log::Format::Text,
                Some(f) => f
                    .parse()
                    .map_err(|e: halyard_engine::log::ParseFormatError| {
                        ConfigError::Invalid("log-format", e.to_string())
                    })?,
            },
        };
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("threads", self.engine.threads as u64),
            ("max-connections", self.engine.max_connections as u64),
            ("header-timeout-ms", self.engine.header_timeout_ms),
            ("idle-timeout-ms", self.engine.idle_timeout_ms),
            ("sse-heartbeat-ms", self.engine.sse_heartbeat_ms),
            ("jwt-ttl-secs", self.jwt_ttl_secs),
            ("db-threads", self.db_threads as u64),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(ConfigError::Invalid(name, "must be greater than 0".into()));
            }
        }
        Ok(())
    }
}

fn runtime_config(
    args: &ServeArgs,
    file: &FileConfig,
) -> halyard_api::chat::runtime::RuntimeConfig {
    use std::time::Duration;
    let d = halyard_api::chat::runtime::RuntimeConfig::default();
    let delay = args
        .echo_token_delay_ms
        .or(file.echo_token_delay_ms)
        .unwrap_or(0);
    let wait = args
        .provider_timeout_ms
        .or(file.provider_timeout_ms)
        .map_or(d.timeouts.first_byte, Duration::from_millis);
    halyard_api::chat::runtime::RuntimeConfig {
        max_running: args
            .max_running_turns
            .or(file.max_running_turns)
            .unwrap_or(d.max_running),
        echo_delay: Duration::from_millis(delay),
        timeouts: halyard_engine::client::FetchTimeouts {
            first_byte: wait,
            idle: wait,
            connect: d.timeouts.connect.min(wait),
            total: args
                .provider_total_timeout_ms
                .or(file.provider_total_timeout_ms)
                .map_or(d.timeouts.total, Duration::from_millis),
        },
        stream_retention: args
            .stream_retention_secs
            .or(file.stream_retention_secs)
            .map_or(d.stream_retention, Duration::from_secs),
        tool_reach: d.tool_reach,
    }
}

/// Where tool calls may connect: anywhere with `--tool-allow-private`, else public
/// addresses and the allowed blocks of the flags and the config file.
fn tool_reach(
    args: &ServeArgs,
    file: &FileConfig,
) -> Result<halyard_engine::client::Reach, ConfigError> {
    use halyard_engine::client::{Cidr, Reach};
    if args.tool_allow_private || file.tool_allow_private.unwrap_or(false) {
        return Ok(Reach::Any);
    }
    let mut allow = args.tool_allow_cidr.clone();
    for block in file.tool_allow_cidrs.iter().flatten() {
        let cidr: Cidr = block
            .parse()
            .map_err(|e: halyard_engine::client::reach::CidrError| {
                ConfigError::Invalid("tool-allow-cidr", e.to_string())
            })?;
        allow.push(cidr);
    }
    Ok(Reach::Public(allow.into()))
}

/// Warnings for settings of earlier versions that no longer do anything.
fn retired(args: &ServeArgs, file: &FileConfig) -> Vec<String> {
    let mut out = Vec::new();
    if args.agent_workers.or(file.agent_workers).is_some() {
        out.push("agent-workers no longer has an effect: turns run on the event loops".into());
    }
    if args.agent_queue.or(file.agent_queue).is_some() {
        out.push(
            "agent-queue no longer has an effect: turns do not queue; see --max-running-turns"
                .into(),
        );
    }
    out
}

fn parse_fsync(text: Option<String>) -> Result<halyard_storage::FsyncPolicy, ConfigError> {
    match text {
        None => Ok(halyard_storage::FsyncPolicy::Always),
        Some(t) => t
            .parse()
            .map_err(|e: halyard_storage::ParseFsyncPolicyError| {
                ConfigError::Invalid("fsync", e.to_string())
            }),
    }
}

fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse(path.into(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_overrides_file_overrides_default() {
        let dir = std::env::temp_dir().join(format!("halyard-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("halyard.toml");
        std::fs::write(
            &path,
            "threads = 3\nidle-timeout-ms = 5000\nlisten = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            threads: Some(1),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.engine.threads, 1);
        assert_eq!(s.engine.idle_timeout_ms, 5000);
        assert_eq!(s.engine.listen.port(), 9000);
        assert_eq!(s.engine.header_timeout_ms, 10_000);
        std::fs::write(&path, "no-such-key = 1\n").unwrap();
        assert!(matches!(
            Settings::resolve(&args),
            Err(ConfigError::Parse(..))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zero_is_refused() {
        let args = ServeArgs {
            threads: Some(0),
            ..ServeArgs::default()
        };
        assert!(matches!(
            Settings::resolve(&args),
            Err(ConfigError::Invalid("threads", _))
        ));
    }
}
