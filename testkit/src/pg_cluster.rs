//! PostgreSQL servers of a test's own, from the packages' binaries: a primary and a
//! standby made by `pg_basebackup -R`, for the failover test.
//!
//! Responsible for: `initdb`, starting, stopping (immediate, like a crash) and promoting a
//! server in a temporary directory on a loopback port, as the `postgres` user when the
//! tests run as root (PostgreSQL refuses to run as root), and removing it when dropped.
//! Not responsible for: installing PostgreSQL (`scripts/test` does) or what runs on it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The newest installed PostgreSQL's binaries, if any.
pub fn binaries() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

/// One server of a test.
#[derive(Debug)]
pub struct LocalPg {
    bin: PathBuf,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    running: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether the tests run as root (`/proc/self` belongs to the effective user).
fn as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` of the PostgreSQL binaries, as the user that may run it.
fn command(bin: &Path, program: &str) -> Command {
    let exe = bin.join(program);
    if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

/// Runs `program` with `args`; panics with its error output if it fails.
fn run(bin: &Path, program: &str, args: &[&str]) -> Output {
    let out = command(bin, program)
        .args(args)
        .output()
        .expect("run a PostgreSQL program");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `-h 127.0.0.1 -p PORT -U halyard`: how the client programs reach a server here.
fn client_args(port: u16) -> Vec<String> {
    ["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "halyard"]
        .map(String::from)
        .to_vec()
}

fn make_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("halyard-pg-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make the server's directory");
    give_to_postgres(&dir);
    dir
}

/// Makes `path` the `postgres` user's when the tests run as root (the server runs as it).
fn give_to_postgres(path: &Path) {
    if as_root() {
        let status = Command::new("chown")
            .arg("postgres")
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown postgres {}", path.display());
    }
}

impl LocalPg {
    /// A new primary (role `halyard`, trust on loopback), started with `settings`
    /// (`name=value`).
    pub fn primary(bin: &Path, tag: &str, settings: &[&str]) -> LocalPg {
        let dir = make_dir(tag);
        let data = dir.join("data");
        let data = data.to_str().expect("utf-8 path");
        run(
            bin,
            "initdb",
            &["-D", data, "-U", "halyard", "--auth=trust"],
        );
        let mut pg = LocalPg {
            bin: bin.to_path_buf(),
            dir,
            port: free_port(),
            running: false,
        };
        pg.start(settings);
        pg
    }

    /// A standby of `primary`, copied by `pg_basebackup -R` and started with `settings`.
    pub fn standby_of(primary: &LocalPg, tag: &str, settings: &[&str]) -> LocalPg {
        let dir = make_dir(tag);
        let data = dir.join("data");
        let data = data.to_str().expect("utf-8 path");
        let mut args = client_args(primary.port);
        args.extend(["-D", data, "-R", "-X", "stream"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&primary.bin, "pg_basebackup", &args);
        let mut pg = LocalPg {
            bin: primary.bin.clone(),
            dir,
            port: free_port(),
            running: false,
        };
        pg.start(settings);
        pg
    }

    fn data(&self) -> String {
        self.dir
            .join("data")
            .to_str()
            .expect("utf-8 path")
            .to_owned()
    }

    fn start(&mut self, settings: &[&str]) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        for s in settings {
            opts.push_str(&format!(" -c {s}"));
        }
        let log = self.dir.join("log");
        let log = log.to_str().expect("utf-8 path");
        let data = self.data();
        run(
            &self.bin,
            "pg_ctl",
            &["-D", &data, "-l", log, "-w", "-o", &opts, "start"],
        );
        self.running = true;
    }

    /// Writes `name` into the server's directory, readable by the server only when
    /// `private` (a key: PostgreSQL refuses one others can read); returns its path.
    pub fn put_file(&self, name: &str, contents: &[u8], private: bool) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, contents).expect("write a file for the server");
        let mode = if private { 0o600 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        give_to_postgres(&path);
        path
    }

    /// `host:port` for a URL.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The first column of the first row of `sql`, as text (`psql -tA`).
    pub fn scalar(&self, sql: &str) -> String {
        let mut args = client_args(self.port);
        args.extend(["-d", "postgres", "-tAc", sql].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&self.bin, "psql", &args);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops it at once, as a crash would (no checkpoint, clients cut).
    pub fn crash(&mut self) {
        let data = self.data();
        run(
            &self.bin,
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "stop"],
        );
        self.running = false;
    }

    /// Promotes a standby to primary and waits until it accepts writes.
    pub fn promote(&self) {
        let data = self.data();
        run(&self.bin, "pg_ctl", &["-D", &data, "-w", "promote"]);
    }
}

impl Drop for LocalPg {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let args = ["-D", &data, "-m", "immediate", "stop"];
            let _ = command(&self.bin, "pg_ctl").args(args).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
