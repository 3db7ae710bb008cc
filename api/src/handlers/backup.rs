//! `POST /api/v1/admin/backup`: an online backup, taken by the server, into its backup
//! directory.
//!
//! Responsible for: where a backup may go and answering with what it holds. The server
//! process writes the files, so a request never names a path: `to` is one plain name
//! ([`crate::body::BACKUP_NAME`]: no `/`, no leading dot) of a new directory inside the
//! directory the operator configured with `--backup-dir`; without that setting the route
//! answers 503. An existing name is 409 (a backup never overwrites), as is a second backup
//! while one runs. The copy (`Backend::backup`: a consistent cut, every file checked,
//! written as `NAME.tmp` and renamed) runs on a thread of its own, never on an event loop,
//! and the reply is sent when it is done. The master key file is copied when the data
//! directory has one, so that the backup restores to a server that can open its secrets:
//! a backup is as sensitive as the data directory, and is written with the same 0700/0600
//! modes. Not responsible for: the copy itself (`halyard_storage::backup`).

use std::sync::atomic::Ordering;

use halyard_engine::Reply;
use halyard_storage::{BackupError, BackupOptions};
use serde_json::json;

use super::Call;
use crate::body::{Field, Fields, BACKUP_NAME};
use crate::error::{ApiError, ApiResult};
use crate::{reply, time, vault};

/// The body: `to`, the backup's name (default `backup-<time>`).
pub(super) const BODY: &[Field] = &[Field::text("to", 1, 128).format(BACKUP_NAME)];

/// `backup-20240102T030405.678Z` for the time `ms`: sorts by time, and is a plain name.
fn default_name(ms: u64) -> String {
    let iso = time::iso(ms).replace([':', '-'], "");
    format!("backup-{iso}")
}

/// `POST /api/v1/admin/backup`.
pub fn backup(c: &Call<'_>) -> ApiResult<Reply> {
    let Some(dir) = c.api.backup_dir.clone() else {
        return Err(ApiError::Unavailable(
            "Backups are not enabled: start the server with --backup-dir".into(),
        ));
    };
    let body = c.body()?;
    let mut f = Fields::of(&body, BODY)?;
    let name = f.str("to").map(str::to_owned);
    f.finish()?;
    let name = name.unwrap_or_else(|| default_name(time::now_ms()));
    let to = dir.join(&name);
    if std::fs::symlink_metadata(&to).is_ok() {
        return Err(ApiError::Conflict(format!("Backup already exists: {name}")));
    }
    let running = c.api.backup_running.clone();
    if running
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(ApiError::Conflict("A backup is already running".into()));
    }
    let (reply, responder) = c.req.defer();
    let finish = c.finish.clone();
    let store = c.api.store.clone();
    let opts = BackupOptions {
        extra_files: vec![vault::KEY_FILE.to_owned()],
        ..BackupOptions::default()
    };
    let job = move || {
        let result = store.backup(&to, &opts);
        running.store(false, Ordering::Release);
        let resp = match result {
            Ok(r) => reply::ok(vec![(
                "backup",
                json!({
                    "path": r.path.display().to_string(),
                    "bytes": r.bytes,
                    "files": r.files,
                    "lastSegment": r.last_segment,
                    "createdAt": time::iso(r.created_at_ms),
                }),
            )]),
            Err(BackupError::Exists(_)) => {
                ApiError::Conflict(format!("Backup already exists: {name}")).into_response()
            }
            Err(BackupError::Unsupported) => {
                ApiError::Unavailable("This storage backend cannot take backups".into())
                    .into_response()
            }
            Err(e) => {
                // The reason (a path, an errno) is for the operator's log, not the body.
                eprintln!("halyard: backup to {} failed: {e}", to.display());
                ApiError::Unavailable("The backup failed; the server log says why".into())
                    .into_response()
            }
        };
        responder.send(finish.apply(resp));
    };
    // If the thread cannot start, the job (and its responder) is dropped: the client gets
    // a 500 from the responder, and the flag must be cleared here.
    let flag = c.api.backup_running.clone();
    if std::thread::Builder::new()
        .name("halyard-backup".into())
        .spawn(job)
        .is_err()
    {
        flag.store(false, Ordering::Release);
    }
    Ok(reply)
}
