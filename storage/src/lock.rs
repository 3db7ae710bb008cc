//! The data directory's lock: one process at a time writes a data directory.
//!
//! Responsible for taking an exclusive advisory lock (`flock`) on `DIR/LOCK` before a store
//! reads or writes anything there, and holding it while the store is open. Two writers on
//! one log would interleave their records and cut each other's tails on open. The kernel
//! drops the lock when its holder exits, however it exits, so a crash leaves no stale
//! lock behind. The file also names the holder's process id, for the error the next
//! process prints. Not responsible for: what else lives in the directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{io_at, OpenError};

/// Name of the lock file inside a data directory.
pub const LOCK_FILE: &str = "LOCK";

/// An exclusive hold on a data directory, released when dropped (or when the process
/// exits).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir`, or fails with [`OpenError::Locked`] at once if another process holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, OpenError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_at(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(OpenError::Locked {
                    dir: dir.to_owned(),
                    holder: holder(&mut file),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io_at(&path)(e)),
        }
        // The pid is for people reading the error; the lock itself is what excludes.
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(io_at(&path))?;
        Ok(DirLock { _file: file })
    }
}

/// The process id the holder wrote into the lock file, if it is readable.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("halyard-lock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn a_second_hold_is_refused_and_names_the_holder_until_the_first_is_dropped() {
        let d = dir("twice");
        let first = DirLock::acquire(&d).expect("first");
        match DirLock::acquire(&d) {
            Err(OpenError::Locked { dir, holder }) => {
                assert_eq!(dir, d);
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        DirLock::acquire(&d).expect("free again after the drop");
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn an_unreadable_holder_id_still_refuses() {
        let d = dir("garbage");
        let _first = DirLock::acquire(&d).expect("first");
        std::fs::write(d.join(LOCK_FILE), b"not a pid").expect("overwrite");
        assert!(matches!(
            DirLock::acquire(&d),
            Err(OpenError::Locked { holder: None, .. })
        ));
        std::fs::remove_dir_all(&d).expect("cleanup");
    }
}
