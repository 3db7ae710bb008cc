//! `halyard check --storage postgres://...`: replays the whole log into a fresh state.
//!
//! Responsible for: reading every committed transaction, in each tenant's order, checking
//! that it decodes and that the state accepts it, and reporting counts and the first
//! refusals. Writes nothing. Not responsible for: repairing (a refused transaction is a
//! bug to report, not data to cut).

use halyard_storage::state::State;
use halyard_storage::Txn;

use crate::{migrate, target, OpenError};

/// What the check found.
#[derive(Debug, Default)]
pub struct PgCheckReport {
    /// Schema version.
    pub schema: u32,
    /// Tenants (and `''`, the server metadata) with transactions.
    pub tenants: u64,
    /// Transactions read.
    pub transactions: u64,
    /// Bytes of transaction payloads.
    pub bytes: u64,
    /// Transactions that did not decode or apply, with why (the first 20).
    pub refused: Vec<String>,
    /// How many did not.
    pub refused_count: u64,
    /// Tenants whose numbering has a gap or whose head disagrees with the log.
    pub gaps: Vec<String>,
}

impl PgCheckReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.refused_count == 0 && self.gaps.is_empty()
    }
}

impl std::fmt::Display for PgCheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "schema version: {}", self.schema)?;
        writeln!(f, "tenants: {}", self.tenants)?;
        writeln!(
            f,
            "transactions: {} ({} bytes)",
            self.transactions, self.bytes
        )?;
        writeln!(f, "refused: {}", self.refused_count)?;
        for r in &self.refused {
            writeln!(f, "  {r}")?;
        }
        writeln!(f, "numbering gaps: {}", self.gaps.len())?;
        for g in &self.gaps {
            writeln!(f, "  {g}")?;
        }
        writeln!(f, "{}", if self.is_ok() { "ok" } else { "DAMAGED" })
    }
}

/// Checks the database at `url`.
pub fn check(url: &str) -> Result<PgCheckReport, OpenError> {
    let mut client = target(url)?.connect().map_err(OpenError::Connect)?;
    let mut report = PgCheckReport {
        schema: migrate::version(&mut client).map_err(OpenError::Connect)?,
        ..PgCheckReport::default()
    };
    if report.schema == 0 {
        return Ok(report);
    }
    let state = State::default();
    let heads = client
        .query(
            "SELECT tenant, tseq FROM halyard_heads ORDER BY tenant",
            &[],
        )
        .map_err(OpenError::Connect)?;
    for head in heads {
        let tenant: String = head.get(0);
        let last: i64 = head.get(1);
        report.tenants += 1;
        let rows = client
            .query(
                "SELECT tseq, payload FROM halyard_txlog WHERE tenant = $1 ORDER BY tseq",
                &[&tenant],
            )
            .map_err(OpenError::Connect)?;
        let mut expect = 1i64;
        for row in rows {
            let tseq: i64 = row.get(0);
            let payload: &[u8] = row.get(1);
            if tseq != expect {
                report
                    .gaps
                    .push(format!("{tenant:?}: {tseq} follows {}", expect - 1));
            }
            expect = tseq + 1;
            report.transactions += 1;
            report.bytes += payload.len() as u64;
            let applied = Txn::decode(payload)
                .map_err(|e| e.to_string())
                .and_then(|t| state.apply(&tenant, t.mutations).map_err(|e| e.to_string()));
            if let Err(why) = applied {
                report.refused_count += 1;
                if report.refused.len() < 20 {
                    report.refused.push(format!("{tenant:?} #{tseq}: {why}"));
                }
            }
        }
        if expect - 1 != last {
            report.gaps.push(format!(
                "{tenant:?}: head says {last}, the log ends at {}",
                expect - 1
            ));
        }
    }
    Ok(report)
}
