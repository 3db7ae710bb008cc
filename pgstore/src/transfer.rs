//! `halyard export-store` and `halyard import-store`: a whole store copied between an
//! embedded data directory and PostgreSQL.
//!
//! Responsible for: replaying one store's state into another as the same mutations a
//! snapshot holds (so the copy passes the same validation as any write), in commits of
//! about 1 MiB per tenant, and the cluster metadata (`halyard_meta`) beside it. Not
//! responsible for: checking that the target is empty, or the master key (the commands
//! do both).

use std::io;

use halyard_storage::codec::Encoder;
use halyard_storage::snapshot::{emit_state, StateSink};
use halyard_storage::state::State;
use halyard_storage::{Backend, Codec, Mutation, StoreError};

/// Bytes of encoded mutations per commit.
const BATCH_BYTES: usize = 1 << 20;

/// What a copy moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyReport {
    /// Tenants copied (besides the server metadata).
    pub tenants: u64,
    /// Mutations committed.
    pub mutations: u64,
    /// Commits made.
    pub commits: u64,
}

impl std::fmt::Display for CopyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "copied {} tenants: {} mutations in {} commits",
            self.tenants, self.mutations, self.commits
        )
    }
}

/// Copies every tenant (and the server metadata of `from`) into `to`, which should be
/// empty: a tenant that exists there already is refused with its first conflict.
pub fn copy_state(from: &State, to: &dyn Backend) -> Result<CopyReport, StoreError> {
    let mut sink = Copier {
        to,
        tenant: String::new(),
        batch: Vec::new(),
        bytes: 0,
        report: CopyReport::default(),
        failed: None,
    };
    let emitted = emit_state(from, &mut sink).and_then(|()| sink.flush());
    if let Some(e) = sink.failed.take() {
        return Err(e);
    }
    emitted.map_err(|e| StoreError::Invalid(e.to_string()))?;
    Ok(sink.report)
}

struct Copier<'a> {
    to: &'a dyn Backend,
    tenant: String,
    batch: Vec<Mutation>,
    bytes: usize,
    report: CopyReport,
    /// The store's error, kept whole (the sink interface speaks `io::Error`).
    failed: Option<StoreError>,
}

impl Copier<'_> {
    fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let n = batch.len() as u64;
        self.bytes = 0;
        if let Err(e) = halyard_storage::backend::commit_and_wait(self.to, &self.tenant, batch) {
            let text = e.to_string();
            self.failed = Some(e);
            return Err(io::Error::other(text));
        }
        self.report.mutations += n;
        self.report.commits += 1;
        Ok(())
    }
}

impl StateSink for Copier<'_> {
    fn push(&mut self, tenant: &str, m: &Mutation) -> io::Result<()> {
        if tenant != self.tenant || self.bytes >= BATCH_BYTES {
            self.flush()?;
            if tenant != self.tenant && !tenant.is_empty() {
                self.report.tenants += 1;
            }
            tenant.clone_into(&mut self.tenant);
        }
        let mut e = Encoder::default();
        m.encode(&mut e);
        self.bytes += e.len();
        self.batch.push(m.clone());
        Ok(())
    }
}
