//! Small durable-filesystem helpers: atomic replace of a file (temp + fsync + rename + fsync of
//! the directory), directory fsync, making a directory tree durable (`sync_tree`), and process
//! liveness checks used by leases and ingests.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{IoContext, Result};

/// fsync a directory so renames and creations inside it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).ctx("open directory", dir)?;
    f.sync_all().ctx("fsync directory", dir)
}

/// Replace `path` with `bytes` atomically: write a temp file in the same directory, fsync it,
/// rename it over `path`, fsync the directory. Readers see the old or the new content, never
/// a torn file, even after a crash.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .expect("atomic_write needs a parent directory");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.",
            path.file_name().unwrap_or_default().to_string_lossy()
        ))
        .suffix(".tmp")
        .tempfile_in(dir)
        .ctx("create a temporary file in", dir)?;
    tmp.write_all(bytes).ctx("write", tmp.path())?;
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .ctx("chmod", tmp.path())?;
    tmp.as_file().sync_all().ctx("fsync", tmp.path())?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .ctx("rename into place", path)?;
    fsync_dir(dir)
}

/// Create `path` with `bytes` if it does not exist yet (durably); an existing file is kept.
pub fn create_if_missing(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    // Written whole to a temporary file, then published without replacing: a process racing
    // to create the same store never reads the file half-written (an empty version file would
    // read as a corrupt store).
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .permissions(fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .ctx("create a temporary file in", dir)?;
    tmp.as_file_mut()
        .write_all(bytes)
        .ctx("write", tmp.path())?;
    tmp.as_file().sync_all().ctx("fsync", tmp.path())?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.error).ctx("create", path),
    }
}

/// The start time (in clock ticks since boot) of a process, from `/proc/PID/stat`. Together
/// with the PID it names one process instance: PIDs are reused, (pid, start) pairs are not.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come fields 3.. ; starttime is field 22, i.e. index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The identity of this process: `(pid, start time)`.
pub fn self_identity() -> (u32, u64) {
    let pid = std::process::id();
    (pid, process_start_time(pid).unwrap_or(0))
}

/// Is the process `(pid, start)` still running?
pub fn process_alive(pid: u32, start: u64) -> bool {
    match process_start_time(pid) {
        Some(s) => start == 0 || s == start,
        None => false,
    }
}

/// Parse `<pid>-<start>` at the start of a file name (ingest and lease files are named so).
pub fn owner_of(name: &str) -> Option<(u32, u64)> {
    let mut parts = name.splitn(3, ['-', '.']);
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    Some((pid, start))
}

/// Total size in bytes of the regular files under `dir` (not following symlinks).
pub fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// A tree of at most this many entries is made durable entry by entry; a larger one with
/// `syncfs`.
pub const SYNC_TREE_MAX_ENTRIES: usize = 64;

/// Make everything under the directory `root` durable. A small tree (at most
/// [`SYNC_TREE_MAX_ENTRIES`] entries, the common single-file `COPY` layer) has each regular
/// file and directory fsynced, deepest first: that costs a few journal commits, where
/// `syncfs` writes back every dirty page of the whole filesystem (other processes' too, which
/// on a busy machine is most of the wait). A larger tree, or one that cannot be walked or
/// opened, takes `syncfs`. Symlinks and special files have no data; their directory entry is made durable
/// by fsyncing the directory.
pub fn sync_tree(root: &Path) -> Result<()> {
    let synced = small_tree(root).is_some_and(|paths| {
        paths
            .iter()
            .all(|p| File::open(p).and_then(|f| f.sync_all()).is_ok())
    });
    if synced {
        return Ok(());
    }
    let fd = rustix::fs::open(
        root,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
        rustix::fs::Mode::empty(),
    )
    .ctx("open", root)?;
    rustix::fs::syncfs(&fd).ctx("sync the filesystem of", root)
}

/// The regular files and directories of a tree of at most [`SYNC_TREE_MAX_ENTRIES`] entries,
/// deepest first (the root last); `None` when it is larger or cannot be listed.
fn small_tree(root: &Path) -> Option<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut entries = 0;
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .contents_first(true)
    {
        let entry = entry.ok()?;
        entries += 1;
        if entries > SYNC_TREE_MAX_ENTRIES + 1 {
            return None;
        }
        let kind = entry.file_type();
        if kind.is_file() || kind.is_dir() {
            out.push(entry.into_path());
        }
    }
    Some(out)
}

/// Remove a directory tree without following symlinks; a missing path is not an error.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).ctx("remove", path),
        Ok(_) => fs::remove_file(path).ctx("remove", path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx("stat", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_identity_parses() {
        let (pid, start) = self_identity();
        assert!(start > 0);
        assert!(process_alive(pid, start));
        assert!(!process_alive(pid, start + 1));
        assert_eq!(owner_of(&format!("{pid}-{start}.abc")), Some((pid, start)));
        assert_eq!(owner_of("garbage"), None);
    }

    /// A small tree is walked (every file and directory, deepest first, root last), a large
    /// one is left to `syncfs`; both end durable without error.
    #[test]
    fn sync_tree_walks_small_trees_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("upper");
        fs::create_dir_all(root.join("usr/share/html")).unwrap();
        fs::write(root.join("usr/share/html/index.html"), b"<h1>").unwrap();
        std::os::unix::fs::symlink("index.html", root.join("usr/share/html/link")).unwrap();
        let walked = small_tree(&root).unwrap();
        assert_eq!(walked.len(), 5, "{walked:?}");
        assert_eq!(walked[0], root.join("usr/share/html/index.html"));
        assert_eq!(walked.last().unwrap(), &root);
        sync_tree(&root).unwrap();
        for i in 0..SYNC_TREE_MAX_ENTRIES {
            fs::write(root.join(format!("f{i}")), b"x").unwrap();
        }
        assert!(small_tree(&root).is_none());
        sync_tree(&root).unwrap();
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        atomic_write(&p, b"one", 0o644).unwrap();
        atomic_write(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
