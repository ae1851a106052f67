//! Inter-process locks on the store: `LOCK` (held shared by every step that makes content
//! reachable — blob install, index.json update, ref update — and exclusively by garbage
//! collection, mark and sweep, and `fsck --repair`) and `index.lock` (serialises
//! read-modify-write of `index.json`). [`shared_dir`] / [`exclusive_dir`] lock a directory
//! itself (no lock file added to it), for directories several processes share, such as a
//! `type=local` build cache.
//! Each acquisition opens its own file description, so threads of one process exclude each
//! other too (flock locks belong to the open file description, not the process).

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{IoContext, Result};

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .ctx("open lock file", path)
}

/// Block until a shared lock on `path` is held.
pub fn shared(path: &Path) -> Result<LockGuard> {
    let file = open(path)?;
    file.lock_shared().ctx("lock (shared)", path)?;
    Ok(LockGuard { _file: file })
}

/// Block until an exclusive lock on `path` is held.
pub fn exclusive(path: &Path) -> Result<LockGuard> {
    let file = open(path)?;
    file.lock().ctx("lock (exclusive)", path)?;
    Ok(LockGuard { _file: file })
}

fn open_dir(dir: &Path) -> Result<File> {
    let file = File::open(dir).ctx("open directory", dir)?;
    if !file.metadata().ctx("stat", dir)?.is_dir() {
        return Err(crate::Error::io(
            "lock",
            dir,
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    Ok(file)
}

/// Block until a shared lock on the directory `dir` is held.
pub fn shared_dir(dir: &Path) -> Result<LockGuard> {
    let file = open_dir(dir)?;
    file.lock_shared().ctx("lock (shared)", dir)?;
    Ok(LockGuard { _file: file })
}

/// Block until an exclusive lock on the directory `dir` is held.
pub fn exclusive_dir(dir: &Path) -> Result<LockGuard> {
    let file = open_dir(dir)?;
    file.lock().ctx("lock (exclusive)", dir)?;
    Ok(LockGuard { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_shared_within_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("LOCK");
        let s1 = shared(&p).unwrap();
        let s2 = shared(&p).unwrap();
        let f = open(&p).unwrap();
        assert!(
            f.try_lock().is_err(),
            "exclusive must wait for shared holders"
        );
        drop((s1, s2));
        assert!(f.try_lock().is_ok());
    }

    #[test]
    fn directory_locks_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let held = exclusive_dir(dir.path()).unwrap();
        let f = File::open(dir.path()).unwrap();
        assert!(
            f.try_lock_shared().is_err(),
            "shared must wait for exclusive"
        );
        drop(held);
        let s = shared_dir(dir.path()).unwrap();
        assert!(f.try_lock_shared().is_ok());
        assert!(File::open(dir.path()).unwrap().try_lock().is_err());
        drop(s);
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(shared_dir(&file).is_err(), "a file is not a directory");
    }
}
