//! Restoring a backup into a new data directory.
//!
//! Responsible for: refusing a data directory that is not empty, checking every file of the
//! backup against its manifest (length, CRC32C of all its bytes) and its own structure
//! (headers, record checksums, a complete snapshot) before any of it is used, copying them
//! into `NEW.restore.tmp`, replaying the copy read-only, and renaming it to `NEW`. Not
//! responsible for: taking backups (`backup`) or opening the result (`Store::open`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::manifest::{Manifest, MANIFEST_FILE};
use super::verify::{self, Keep};
use super::BackupError;
use super::{fresh_dir, io_err, publish, replay_check, sibling, sync_dir, write_file};
use crate::check::CheckReport;
use crate::segment;
use crate::snapshot;

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The data directory written.
    pub data_dir: PathBuf,
    /// The backup's manifest.
    pub manifest: Manifest,
    /// The replay of the restored directory.
    pub check: CheckReport,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "restored {} files ({} bytes) into {}",
            self.manifest.files.len(),
            self.manifest.bytes(),
            self.data_dir.display()
        )?;
        write!(f, "{}", self.check)
    }
}

/// Whether `dir` is missing or an empty directory.
fn is_empty_or_missing(dir: &Path) -> Result<bool, BackupError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(false),
        Err(e) => Err(io_err(dir)(e)),
    }
}

fn damaged(file: &Path, what: impl Into<String>) -> BackupError {
    BackupError::Damaged {
        file: file.to_owned(),
        what: what.into(),
    }
}

/// Restores the backup in `from` into `data_dir`, which must be missing or empty.
pub fn restore(from: &Path, data_dir: &Path) -> Result<RestoreReport, BackupError> {
    if !is_empty_or_missing(data_dir)? {
        return Err(BackupError::NotEmpty(data_dir.to_owned()));
    }
    let manifest_path = from.join(MANIFEST_FILE);
    let text = fs::read(&manifest_path).map_err(io_err(&manifest_path))?;
    let manifest = Manifest::parse(&text).map_err(|error| BackupError::Manifest {
        file: manifest_path.clone(),
        error,
    })?;
    check_names(from, &manifest)?;
    let tmp = sibling(data_dir, ".restore.tmp");
    let names: Vec<String> = manifest.files.iter().map(|e| e.name.clone()).collect();
    fresh_dir(&tmp, &names)?;
    let copied = copy_files(from, &tmp, &manifest)
        .and_then(|()| sync_dir(&tmp))
        .and_then(|()| replay_check(&tmp));
    let check = match copied {
        Ok(c) => c,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // An empty directory given as the target is replaced by the restored one.
    if data_dir.is_dir() {
        fs::remove_dir(data_dir).map_err(io_err(data_dir))?;
    }
    if let Err(e) = publish(&tmp, data_dir) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let mut check = check;
    check.dir = data_dir.to_owned();
    Ok(RestoreReport {
        data_dir: data_dir.to_owned(),
        manifest,
        check,
    })
}

/// The backup directory must hold exactly the manifest's files, and the manifest's
/// snapshot and last segment must be the ones its files name.
fn check_names(from: &Path, m: &Manifest) -> Result<(), BackupError> {
    for entry in fs::read_dir(from).map_err(io_err(from))? {
        let entry = entry.map_err(io_err(from))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name != MANIFEST_FILE && !m.files.iter().any(|f| f.name == name) {
            return Err(damaged(&entry.path(), "not in the backup's manifest"));
        }
    }
    let snaps: Vec<u64> = m
        .files
        .iter()
        .filter_map(|f| snapshot::parse_file_name(&f.name))
        .collect();
    let last = m
        .files
        .iter()
        .filter_map(|f| segment::parse_file_name(&f.name))
        .max()
        .unwrap_or(0);
    let snap_ok = match m.snapshot {
        Some(n) => snaps == [n],
        None => snaps.is_empty(),
    };
    if !snap_ok || last != m.last_segment {
        return Err(damaged(
            &from.join(MANIFEST_FILE),
            "the manifest's snapshot or last segment disagrees with its files",
        ));
    }
    Ok(())
}

/// Checks each file against the manifest and its own structure, then copies it.
fn copy_files(from: &Path, tmp: &Path, m: &Manifest) -> Result<(), BackupError> {
    for e in &m.files {
        let path = from.join(&e.name);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        if bytes.len() as u64 != e.len {
            let what = format!("{} bytes, the manifest says {}", bytes.len(), e.len);
            return Err(damaged(&path, what));
        }
        if crc32c::crc32c(&bytes) != e.crc {
            return Err(damaged(&path, "checksum does not match the manifest"));
        }
        if let Some(n) = segment::parse_file_name(&e.name) {
            match verify::segment(&bytes, n, false) {
                Ok(Keep::Prefix(len)) if len == e.len => {}
                Ok(_) => return Err(damaged(&path, "segment does not end on a record")),
                Err(f) => return Err(damaged(&path, f.to_string())),
            }
        } else if let Some(n) = snapshot::parse_file_name(&e.name) {
            verify::snapshot(&bytes, n).map_err(|f| damaged(&path, f.to_string()))?;
        }
        write_file(tmp, &e.name, &bytes)?;
    }
    Ok(())
}
