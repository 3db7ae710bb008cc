//! Databases for the binary tests run against PostgreSQL.
//!
//! With `HALYARD_TEST_STORAGE` set to a `postgres://` URL whose role may create databases,
//! each server a test starts on a data directory gets a database of its own, named after
//! that directory: made afresh for a new (empty) directory, kept for a restart on the same
//! one, dropped with the directory. Without it, tests run on the embedded store.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

/// The variable that picks the store of the binary tests.
pub const ENV: &str = "HALYARD_TEST_STORAGE";

/// The PostgreSQL URL tests run against, if any.
pub fn storage_url() -> Option<String> {
    let url = std::env::var(ENV).ok()?;
    (url.starts_with("postgres://") || url.starts_with("postgresql://")).then_some(url)
}

/// `base` with its database name replaced by `db`.
pub fn with_database(base: &str, db: &str) -> String {
    let (url, query) = match base.split_once('?') {
        Some((u, q)) => (u, format!("?{q}")),
        None => (base, String::new()),
    };
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &url[..authority_end])
}

/// The database name for `data_dir`.
fn database_name(data_dir: &Path) -> String {
    let mut h = DefaultHasher::new();
    data_dir.hash(&mut h);
    format!("halyard_t_{:016x}", h.finish())
}

fn admin(base: &str) -> postgres::Client {
    postgres::Client::connect(base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("{ENV}={base}: cannot connect: {e}"))
}

/// The URL of the database of `data_dir` when tests run against PostgreSQL: created (or
/// made empty again) when the directory is empty, kept otherwise (a restart).
pub fn database_for(data_dir: &Path) -> Option<String> {
    let base = storage_url()?;
    let name = database_name(data_dir);
    let fresh = std::fs::read_dir(data_dir).map_or(true, |mut d| d.next().is_none());
    if fresh {
        return Some(fresh_database(&base, &name));
    }
    Some(with_database(&base, &name))
}

/// Makes database `name` empty (dropped if it exists, then created) on the server of
/// `base`, and returns its URL.
pub fn fresh_database(base: &str, name: &str) -> String {
    let mut c = admin(base);
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .expect("drop the test database");
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create the test database");
    with_database(base, name)
}

/// Runs `sql` (one or more statements) on the database at `url`.
pub fn execute(url: &str, sql: &str) {
    admin(url)
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Drops the database of `data_dir`, if tests run against PostgreSQL (best effort).
pub fn drop_database_for(data_dir: &Path) {
    let Some(base) = storage_url() else { return };
    if let Ok(mut c) = postgres::Client::connect(&base, postgres::NoTls) {
        let name = database_name(data_dir);
        let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "t1"),
            "postgres://u:p@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database(
                "postgresql://h1,h2/db?target_session_attrs=read-write",
                "t2"
            ),
            "postgresql://h1,h2/t2?target_session_attrs=read-write"
        );
        assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
    }
}
