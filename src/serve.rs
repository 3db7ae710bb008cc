//! Wiring of the commands: open what they need, run, report.
//!
//! Responsible for: `serve` (load the TLS certificate, open storage, load keys, seed
//! `--dev`, bind the engine or take the socket systemd passed, open the access log, run the
//! API until a signal, on SIGHUP reload the certificate and reopen the access log file,
//! print where it listens, keep systemd informed when it asks to be), `tenant create`,
//! `check`, `backup`, `restore` and `migrate`.
//! Not responsible for: HTTP, routes or the log format.

use std::path::Path;
use std::sync::Arc;

use halyard_api::admission::LimitConfig;
use halyard_api::{jwt::ExternalIssuer, seed, vault, Api, ApiConfig};
use halyard_engine::access_log::ReopenHandle;
use halyard_engine::{log_error, log_info, log_warn, ReloadHandle};
use halyard_storage::{Backend, Mutation, Options, Store};

use crate::cli::{
    BackupArgs, CheckArgs, ExportStoreArgs, ImportStoreArgs, MigrateArgs, RestoreArgs, TenantAction,
};
use crate::config::{Settings, Storage};
use crate::error::ServeError;

/// Server metadata key of the generated JWT secret.
const JWT_SECRET_META: &str = "jwt_secret";

fn open_store(dir: &Path, fsync: halyard_storage::FsyncPolicy) -> Result<Store, ServeError> {
    let opts = Options {
        fsync,
        ..Options::default()
    };
    let (store, report) =
        Store::open(dir, opts).map_err(|e| ServeError::Open(dir.to_path_buf(), e))?;
    log_info!("storage: {}", report.to_string().trim_end());
    Ok(store)
}

/// The open store (`--storage`).
enum Opened {
    /// The log in the data directory.
    Embedded(Arc<Store>),
    /// PostgreSQL; dropping it stops its listener.
    Postgres(halyard_pgstore::Opened),
}

impl Opened {
    fn open(settings: &Settings) -> Result<Opened, ServeError> {
        match &settings.storage {
            Storage::Embedded => Ok(Opened::Embedded(Arc::new(open_store(
                &settings.data_dir,
                settings.fsync,
            )?))),
            Storage::Postgres(url) => {
                // Still this node's: the master key file (without HALYARD_MASTER_KEY) and
                // the dev seed's files.
                let dir = &settings.data_dir;
                std::fs::create_dir_all(dir).map_err(|error| {
                    let path = dir.clone();
                    ServeError::Open(dir.clone(), halyard_storage::OpenError::Io { path, error })
                })?;
                let opts = halyard_pgstore::Options {
                    // One per handler thread and per lane (a turn's writes), and two for
                    // the listener's catch-ups and the upkeep: a handler never waits for
                    // a connection another thread of the store holds.
                    connections: settings.db_threads + halyard_pgstore::queue::LANES + 2,
                    ..halyard_pgstore::Options::default()
                };
                let opened = halyard_pgstore::open(url, opts).map_err(ServeError::Postgres)?;
                let m = opened.migrated;
                log_info!(
                    "storage: PostgreSQL{}, schema version {} (was {})",
                    if opened.tls { " over TLS" } else { "" },
                    m.to,
                    m.from
                );
                Ok(Opened::Postgres(opened))
            }
        }
    }

    fn backend(&self) -> Arc<dyn Backend> {
        match self {
            Opened::Embedded(store) => store.clone(),
            Opened::Postgres(opened) => opened.store.clone(),
        }
    }

    /// Where the data is, for the start line.
    fn place(&self, settings: &Settings) -> String {
        match self {
            Opened::Embedded(_) => format!("data in {}", settings.data_dir.display()),
            Opened::Postgres(_) => "data in PostgreSQL".into(),
        }
    }

    /// `HALYARD_JWT_SECRET`, else the secret kept in storage, generated on first start
    /// (once for every node of a shared store).
    fn jwt_secret(&self) -> Result<Vec<u8>, ServeError> {
        if let Ok(s) = std::env::var("HALYARD_JWT_SECRET") {
            if s.len() < 32 {
                return Err(ServeError::ShortJwtSecret);
            }
            return Ok(s.into_bytes());
        }
        let fresh = halyard_api::tokens::random_bytes().to_vec();
        let store = match self {
            Opened::Postgres(opened) => {
                return opened
                    .store
                    .meta_or_init(JWT_SECRET_META, &fresh)
                    .map_err(ServeError::StoreJwtSecret)
            }
            Opened::Embedded(store) => store,
        };
        if let Some(s) = store.meta(JWT_SECRET_META) {
            return Ok(s);
        }
        let m = Mutation::SetMeta {
            key: JWT_SECRET_META.into(),
            value: fresh.clone(),
        };
        store
            .commit_wait("", vec![m])
            .map_err(ServeError::StoreJwtSecret)?;
        Ok(fresh)
    }
}

/// An external JWT issuer from `HALYARD_JWT_ISSUER`, `HALYARD_JWT_AUDIENCE` and
/// `HALYARD_JWT_PUBLIC_KEYS` (a PEM file), when all three are set.
fn external_issuer() -> Result<Option<ExternalIssuer>, ServeError> {
    let vars = (
        std::env::var("HALYARD_JWT_ISSUER"),
        std::env::var("HALYARD_JWT_AUDIENCE"),
        std::env::var("HALYARD_JWT_PUBLIC_KEYS"),
    );
    let (Ok(iss), Ok(aud), Ok(path)) = vars else {
        return Ok(None);
    };
    let pem = match std::fs::read_to_string(&path) {
        Ok(pem) => pem,
        Err(e) => return Err(ServeError::ReadPublicKeys(path, e)),
    };
    match ExternalIssuer::from_pem(&pem, iss, aud) {
        Ok(issuer) => Ok(Some(issuer)),
        Err(e) => Err(ServeError::PublicKeys(path, e)),
    }
}

/// Runs `halyard serve` until SIGTERM/SIGINT completes a graceful shutdown.
pub fn run(settings: &Settings) -> Result<(), ServeError> {
    halyard_engine::log::set_format(settings.log_format);
    // First, while the process has one thread: both read and clear environment variables.
    let passed = crate::activation::take_env().map_err(ServeError::Activation)?;
    let systemd = crate::notify::take_env();
    let inherited = match passed {
        Some(passed) => {
            let name = passed.name().map(str::to_owned);
            let listener = passed.into_listener().map_err(ServeError::Activation)?;
            Some((listener, name))
        }
        None => None,
    };
    // The certificate is checked first: a bad one fails the start before anything opens.
    let tls = match &settings.tls {
        Some((cert, key)) => {
            let files = halyard_engine::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            Some(Arc::new(halyard_engine::TlsAcceptor::load(files)?))
        }
        None => None,
    };
    // Raised in every mode; `--dev` (a laptop trying it out) is spared the capacity warning.
    let limit = crate::fd_limit::raise();
    if let Some(w) = limit
        .filter(|_| !settings.dev)
        .and_then(|limit| crate::fd_limit::warning(limit, settings.engine.max_connections))
    {
        log_warn!("{w}");
    }
    for w in &settings.warnings {
        log_warn!("{w}");
    }
    let opened = Opened::open(settings)?;
    let store = opened.backend();
    let cfg = ApiConfig {
        jwt_secret: opened.jwt_secret()?,
        jwt_ttl_secs: settings.jwt_ttl_secs,
        external_jwt: external_issuer()?,
        root_key: settings.root_key.clone(),
        master_key: vault::load_master_key(
            std::env::var("HALYARD_MASTER_KEY").ok().as_deref(),
            &settings.data_dir,
        )?,
        limits: LimitConfig {
            enabled: settings.rate_limits,
            ..LimitConfig::default()
        },
        runtime: settings.runtime.clone(),
        backup_dir: settings.backup_dir.as_deref().map(backup_dir).transpose()?,
    };
    // The demo page's port must be known before its public key is seeded (see `demo`).
    let demo = settings
        .dev
        .then(|| crate::demo::bind(settings.engine.listen))
        .flatten();
    let dev = if settings.dev {
        Some(seed::dev(&*store, &settings.data_dir)?)
    } else {
        None
    };
    let app = Arc::new(Api::new(store.clone(), cfg)?);
    if store.is_shared() {
        app.start_shared(settings.db_threads)
            .map_err(ServeError::HandlerThreads)?;
    }
    let mut server = match inherited {
        Some((listener, name)) => {
            let server = halyard_engine::Server::from_listener(settings.engine.clone(), listener)
                .map_err(ServeError::Inherited)?;
            log_info!(
                "serving the socket passed by systemd (descriptor {}{}); --listen is not used",
                crate::activation::FIRST_FD,
                name.map(|n| format!(", {n}")).unwrap_or_default()
            );
            server
        }
        None => halyard_engine::Server::bind(settings.engine.clone())
            .map_err(|e| ServeError::Listen(settings.engine.listen, e))?,
    };
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    if let Some(target) = &settings.access_log {
        let log = halyard_engine::AccessLog::open(target.clone()).map_err(ServeError::AccessLog)?;
        server = server.with_access_log(log);
    }
    let addr = server.local_addr();
    server
        .shutdown_handle()
        .on_signals()
        .map_err(ServeError::Signals)?;
    let reopen = match &settings.access_log {
        Some(halyard_engine::access_log::Target::File(_)) => server.access_log_reopen(),
        _ => None,
    };
    on_sighup(server.reload_handle(), reopen).map_err(ServeError::Sighup)?;
    notify_systemd(systemd, &server)?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    println!(
        "halyard listening on {scheme}://{addr} ({} event loops, {})",
        settings.engine.threads,
        opened.place(settings)
    );
    if let Some(dev) = dev {
        // A self-signed certificate is trusted with --cacert (see README, "Running with TLS").
        let cacert = match &settings.tls {
            Some((cert, _)) => format!("--cacert {} ", cert.display()),
            None => String::new(),
        };
        println!("dev tenant ready; try:");
        println!(
            "  curl -s {cacert}-H 'Authorization: Bearer {}' {scheme}://{addr}/api/agents/assistant",
            dev.key
        );
        if let Some(demo) = demo {
            demo.serve(&*store, &settings.data_dir, &dev, scheme, addr);
        }
    }
    server.run(app).map_err(ServeError::Server)?;
    println!("halyard stopped");
    Ok(())
}

/// Starts telling systemd about the server (ready, alive, stopping) when it asked for that
/// with `NOTIFY_SOCKET`. Unusable variables are warnings: the server itself is fine.
fn notify_systemd(
    systemd: crate::notify::FromEnv,
    server: &halyard_engine::Server,
) -> Result<(), ServeError> {
    let Some(target) = systemd.socket else {
        return Ok(());
    };
    let notifier = match target.and_then(|t| crate::notify::Notifier::new(&t)) {
        Ok(n) => n,
        Err(e) => {
            log_warn!("{e}; systemd will not hear that the server is ready");
            return Ok(());
        }
    };
    let watchdog = systemd.watchdog.unwrap_or_else(|e| {
        log_warn!("{e}; the systemd watchdog is not pinged");
        None
    });
    crate::supervisor::start(
        notifier,
        watchdog,
        server.liveness(),
        server.shutdown_handle(),
    )
    .map_err(ServeError::Notify)
}

/// Starts the one SIGHUP thread, when there is something to do on SIGHUP: reload the TLS
/// certificate (`reload`) and have the access log file reopened after logrotate moved it
/// (`reopen`). One thread for both, so that one signal does both, in that order.
fn on_sighup(reload: Option<ReloadHandle>, reopen: Option<ReopenHandle>) -> std::io::Result<()> {
    if reload.is_none() && reopen.is_none() {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("halyard-sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                if let Some(reload) = &reload {
                    match reload.reload() {
                        Ok(()) => log_info!(
                            "TLS certificate reloaded from {} and {}",
                            reload.files().cert.display(),
                            reload.files().key.display()
                        ),
                        Err(e) => {
                            log_error!("TLS reload failed, keeping the current certificate: {e}")
                        }
                    }
                }
                if let Some(reopen) = &reopen {
                    reopen.reopen();
                    log_info!("access log reopened");
                }
            }
        })?;
    Ok(())
}

/// Runs `halyard tenant ...`.
pub fn tenant(action: TenantAction) -> Result<(), ServeError> {
    match action {
        TenantAction::Create { name, data_dir } => {
            if name.trim().is_empty() || name.chars().count() > 128 {
                return Err(ServeError::TenantName);
            }
            let store = open_store(&data_dir, halyard_storage::FsyncPolicy::Always)?;
            let (id, key) = seed::create_tenant(&store, &name)?;
            println!("tenant {id} ({name}) created");
            println!("owner API key (shown once): {key}");
            Ok(())
        }
    }
}

/// The `--backup-dir`, created if missing and made absolute, so that the paths the backup
/// route answers with do not depend on the server's working directory.
fn backup_dir(dir: &Path) -> Result<std::path::PathBuf, ServeError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::canonicalize(dir))
        .map_err(|e| ServeError::BackupDir(dir.to_path_buf(), e))
}

/// Runs `halyard backup`. It takes no lock and writes nothing in the data directory, so it
/// runs beside a server (see `halyard_storage::backup` for how the cut stays consistent).
/// The master key file is copied too when the directory has one.
pub fn backup(args: &BackupArgs) -> Result<(), ServeError> {
    let opts = halyard_storage::BackupOptions {
        extra_files: vec![vault::KEY_FILE.to_owned()],
        ..halyard_storage::BackupOptions::default()
    };
    let report = halyard_storage::backup::take(&args.data_dir, &args.to, &opts)
        .map_err(ServeError::Backup)?;
    print!("{report}");
    Ok(())
}

/// Runs `halyard restore`.
pub fn restore(args: &RestoreArgs) -> Result<(), ServeError> {
    let report = halyard_storage::backup::restore(&args.from, &args.data_dir)
        .map_err(ServeError::Restore)?;
    print!("{report}");
    Ok(())
}

/// Runs `halyard migrate`.
pub fn migrate(args: &MigrateArgs) -> Result<(), ServeError> {
    let m = halyard_pgstore::migrate_url(&args.storage).map_err(ServeError::Postgres)?;
    match m.from == m.to {
        true => println!("schema version {}: up to date", m.to),
        false => println!("schema migrated from version {} to {}", m.from, m.to),
    }
    Ok(())
}

/// Runs `halyard export-store`: the embedded data directory into an empty PostgreSQL store.
pub fn export_store(args: &ExportStoreArgs) -> Result<(), ServeError> {
    let store = open_store(&args.data_dir, halyard_storage::FsyncPolicy::Always)?;
    let opts = halyard_pgstore::Options::default();
    let opened = halyard_pgstore::open(&args.to, opts).map_err(ServeError::Postgres)?;
    let pg = &opened.store;
    if !pg.is_empty().map_err(ServeError::Copy)? {
        return Err(ServeError::NotEmpty("the PostgreSQL store".into()));
    }
    let report = halyard_pgstore::copy_state(store.state(), &**pg).map_err(ServeError::Copy)?;
    // The cluster reads its metadata (the JWT secret) from `halyard_meta`.
    for (key, value) in store.state().meta_entries() {
        pg.meta_or_init(&key, &value).map_err(ServeError::Copy)?;
    }
    print!("{report}");
    println!(
        "secret values stay sealed with this directory's master key: give every node \
         HALYARD_MASTER_KEY (or {}/{})",
        args.data_dir.display(),
        vault::KEY_FILE
    );
    Ok(())
}

/// Runs `halyard import-store`: a PostgreSQL store into a new embedded data directory.
pub fn import_store(args: &ImportStoreArgs) -> Result<(), ServeError> {
    let dir = &args.data_dir;
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ServeError::NotEmpty(dir.display().to_string()));
    }
    let opts = halyard_pgstore::Options::default();
    let opened = halyard_pgstore::open(&args.from, opts).map_err(ServeError::Postgres)?;
    let store = open_store(dir, halyard_storage::FsyncPolicy::Always)?;
    let pg = &opened.store;
    let report = halyard_pgstore::copy_state(pg.state(), &store).map_err(ServeError::Copy)?;
    for (key, value) in pg.meta_entries().map_err(ServeError::Copy)? {
        let m = Mutation::SetMeta { key, value };
        store.commit_wait("", vec![m]).map_err(ServeError::Copy)?;
    }
    print!("{report}");
    println!(
        "secret values are sealed with the cluster's HALYARD_MASTER_KEY: set it for this \
         directory's server too (or write it to {}/{})",
        dir.display(),
        vault::KEY_FILE
    );
    Ok(())
}

/// Runs `halyard check --storage postgres://...`.
fn check_postgres(url: &str) -> Result<(), ServeError> {
    let report = halyard_pgstore::check(url).map_err(ServeError::Postgres)?;
    print!("{report}");
    match report.is_ok() {
        true => Ok(()),
        false => Err(ServeError::DamagedDatabase),
    }
}

/// Runs `halyard check`.
pub fn check(args: &CheckArgs) -> Result<(), ServeError> {
    match crate::config::Storage::parse(args.storage.as_deref()).map_err(ServeError::Config)? {
        Storage::Postgres(url) => return check_postgres(&url),
        Storage::Embedded => {}
    }
    let report = halyard_storage::check(&args.data_dir, args.repair)
        .map_err(|e| ServeError::Check(args.data_dir.clone(), e))?;
    print!("{report}");
    if report.is_ok() {
        Ok(())
    } else {
        Err(ServeError::Damaged(args.data_dir.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_data_directory_that_does_not_open_keeps_the_storage_error() {
        let file = std::env::temp_dir().join(format!("halyard-not-a-dir-{}", std::process::id()));
        std::fs::write(&file, "not a directory").expect("write");
        let opened = open_store(&file, halyard_storage::FsyncPolicy::Never);
        let _ = std::fs::remove_file(&file);
        let Err(e) = opened else {
            panic!("a file opened as a data directory");
        };
        let source = e.source().expect("a source");
        let open = source.downcast_ref::<halyard_storage::OpenError>();
        let open = open.unwrap_or_else(|| panic!("not an OpenError: {source}"));
        assert_eq!(
            e.to_string(),
            format!("cannot open the data directory {}: {open}", file.display())
        );
    }
}
