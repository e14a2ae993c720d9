//! One run at a time per output folder: two `train` runs of one experiment,
//! or two `batch` runs over one `logs/`, would otherwise interleave their
//! writes and remove each other's temporary files.
//!
//! The lock is an advisory lock (`flock` on Unix, `LockFileEx` on Windows)
//! on the folder itself where the platform allows it, else on a hidden lock
//! file in it; the operating system releases it when the process ends, so a
//! killed run never leaves a stale lock.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Lock file used where a folder cannot be locked directly.
pub const LOCK_FILE: &str = ".rvc-index.lock";

/// Held for as long as it lives.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
    pub path: PathBuf,
}

fn lock_target(dir: &Path) -> Result<(File, PathBuf)> {
    #[cfg(unix)]
    {
        let f = File::open(dir).map_err(|e| Error::io(dir, e))?;
        Ok((f, dir.to_path_buf()))
    }
    #[cfg(not(unix))]
    {
        let p = dir.join(LOCK_FILE);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| Error::io(&p, e))?;
        Ok((f, p))
    }
}

/// Take `dir`'s lock; if another run holds it, call `waiting` once and wait.
pub fn lock_folder(dir: &Path, waiting: impl FnOnce()) -> Result<FolderLock> {
    let (file, path) = lock_target(dir)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            waiting();
            file.lock().map_err(|e| Error::io(&path, e))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    Ok(FolderLock { _file: file, path })
}

/// Take `dir`'s lock if nobody holds it.
pub fn try_lock_folder(dir: &Path) -> Result<Option<FolderLock>> {
    let (file, path) = lock_target(dir)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(FolderLock { _file: file, path })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let first = lock_folder(d.path(), || panic!("nobody holds it yet")).unwrap();
        assert!(try_lock_folder(d.path()).unwrap().is_none());
        let p = d.path().to_path_buf();
        let waited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w = waited.clone();
        let t = std::thread::spawn(move || {
            let _l =
                lock_folder(&p, || w.store(true, std::sync::atomic::Ordering::SeqCst)).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(first);
        t.join().unwrap();
        assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
        assert!(try_lock_folder(d.path()).unwrap().is_some());
    }
}
