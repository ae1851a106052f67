//! Reads the build context once: a sorted, non-following walk (walkdir, `follow_links(false)`,
//! entries sorted by name bytes) that prunes excluded directories by moby's rule and records
//! every included entry's type and `lstat` fields. The result is a pre-order list, root first,
//! in which every directory comes right before its subtree.
//!
//! Paths are bytes, so names that are not UTF-8 work everywhere; regex patterns see them
//! lossily, each invalid byte counting as one character, as in Go. Each entry records its type
//! (file, dir, symlink with its target, char or block device), mode, uid, gid, size, ino, dev,
//! nlink, mtime and ctime.
//!
//! Special-file policy: FIFOs and sockets are skipped with a warning (`BuildContext::warnings`,
//! and a pointed message if a COPY names one). Device nodes, and names starting with `.wh.`
//! (`is_reserved_name`, which OCI layers cannot carry), are recorded and refused only when a
//! COPY would copy them (see `sources`).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use walkdir::WalkDir;

use super::error::ContextError;
use super::ignore::DockerIgnore;
use super::pathutil;

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link and its target, verbatim (never followed by the walk).
    Symlink {
        /// The link's target bytes.
        target: PathBuf,
    },
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

impl EntryKind {
    /// A short lowercase name: `file`, `dir`, `symlink`, `chardev`, `blockdev`.
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::CharDevice { .. } => "chardev",
            EntryKind::BlockDevice { .. } => "blockdev",
        }
    }

    /// True for character and block devices.
    pub fn is_device(&self) -> bool {
        matches!(
            self,
            EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. }
        )
    }
}

/// A timestamp with nanoseconds, as `stat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds within the second.
    pub nsec: i64,
}

impl Timestamp {
    /// Nanoseconds since the epoch.
    pub fn as_nanos(&self) -> i128 {
        i128::from(self.sec) * 1_000_000_000 + i128::from(self.nsec)
    }
}

/// One walked path of the build context with its `lstat` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Context-relative path, `/`-separated, bytes-exact; the root is the empty path.
    pub path: PathBuf,
    /// File type (with the target for symlinks).
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Size in bytes (`st_size`; for symlinks the target's length).
    pub size: u64,
    /// Inode number.
    pub ino: u64,
    /// Device of the filesystem holding it.
    pub dev: u64,
    /// Hard link count (for hardlink detection by the layer writer).
    pub nlink: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Status change time.
    pub ctime: Timestamp,
}

impl Entry {
    /// The path's bytes.
    pub fn path_bytes(&self) -> &[u8] {
        self.path.as_os_str().as_bytes()
    }

    /// True for regular files.
    pub fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// Something the walk skipped that the user should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkWarning {
    /// Context-relative path.
    pub path: PathBuf,
    /// Why it was skipped, lowercase (e.g. "skipped fifo").
    pub message: String,
}

/// The walk's result: included entries in pre-order (a directory before its contents, siblings
/// sorted by name bytes), the root first with the empty path.
#[derive(Debug, Clone, Default)]
pub struct Walked {
    /// Included entries.
    pub entries: Vec<Entry>,
    /// Skipped special files.
    pub warnings: Vec<WalkWarning>,
}

/// Builds an [`Entry`] from `lstat` metadata; `None` for FIFOs and sockets.
pub(crate) fn entry_from_metadata(
    abs: &Path,
    rel: PathBuf,
    meta: &std::fs::Metadata,
) -> Result<Option<Entry>, ContextError> {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        let target = std::fs::read_link(abs).map_err(|e| ContextError::io(abs.display(), e))?;
        EntryKind::Symlink { target }
    } else if ft.is_char_device() {
        EntryKind::CharDevice {
            major: rustix::fs::major(meta.rdev()),
            minor: rustix::fs::minor(meta.rdev()),
        }
    } else if ft.is_block_device() {
        EntryKind::BlockDevice {
            major: rustix::fs::major(meta.rdev()),
            minor: rustix::fs::minor(meta.rdev()),
        }
    } else {
        return Ok(None);
    };
    Ok(Some(Entry {
        path: rel,
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: meta.size(),
        ino: meta.ino(),
        dev: meta.dev(),
        nlink: meta.nlink(),
        mtime: Timestamp {
            sec: meta.mtime(),
            nsec: meta.mtime_nsec(),
        },
        ctime: Timestamp {
            sec: meta.ctime(),
            nsec: meta.ctime_nsec(),
        },
    }))
}

/// Walks `root` once. Excluded files are skipped; an excluded directory is pruned unless
/// [`DockerIgnore::must_descend`] says an exception may re-include something under it, in which
/// case the directory itself is recorded only if something below it is included (as BuildKit's
/// fsutil does for parents of included paths). Symlinks are never followed.
pub fn walk(root: &Path, ignore: &DockerIgnore) -> Result<Walked, ContextError> {
    let mut out = Walked::default();
    // Pass 1 (sequential): decide what is included from names and `d_type` alone.
    // Pass 2 (parallel): `lstat` the included paths on all cores, keeping the order.
    let mut included: Vec<(PathBuf, PathBuf)> = Vec::new();
    // Excluded directories we descended into, waiting for an included descendant.
    let mut pending: Vec<(usize, PathBuf, PathBuf)> = Vec::new();
    let mut it = WalkDir::new(root)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()))
        .into_iter();
    while let Some(next) = it.next() {
        let dent = next.map_err(|e| walk_error(root, e))?;
        let depth = dent.depth();
        let ft = dent.file_type();
        if depth == 0 && !ft.is_dir() {
            return Err(ContextError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        let rel = dent
            .path()
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        while pending.last().is_some_and(|(d, _, _)| *d >= depth) {
            pending.pop();
        }
        let rel_bytes = pathutil::bytes(&rel);
        let excluded = depth > 0 && ignore.is_excluded(rel_bytes);
        let is_dir = ft.is_dir();
        if excluded && !(is_dir && ignore.must_descend(rel_bytes)) {
            if is_dir {
                it.skip_current_dir();
            }
            continue;
        }
        if ft.is_fifo() || ft.is_socket() {
            let what = if ft.is_fifo() { "fifo" } else { "socket" };
            tracing::warn!(path = %rel.display(), "skipping {what} in the build context");
            out.warnings.push(WalkWarning {
                path: rel,
                message: format!("skipped {what}: special files are not part of the build context"),
            });
            continue;
        }
        let abs = dent.into_path();
        if excluded {
            pending.push((depth, abs, rel));
            continue;
        }
        included.extend(pending.drain(..).map(|(_, a, r)| (a, r)));
        included.push((abs, rel));
    }
    let stated: Vec<Result<Option<Entry>, ContextError>> = included
        .into_par_iter()
        .map(|(abs, rel)| {
            let meta =
                std::fs::symlink_metadata(&abs).map_err(|e| ContextError::io(abs.display(), e))?;
            entry_from_metadata(&abs, rel, &meta)
        })
        .collect();
    for e in stated {
        // `None`: replaced by a FIFO or socket since the directory was read; skip it too.
        if let Some(e) = e? {
            out.entries.push(e);
        }
    }
    Ok(out)
}

/// A `walkdir` failure as a context error naming the path.
fn walk_error(root: &Path, e: walkdir::Error) -> ContextError {
    let path = e
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| root.display().to_string());
    let io = e
        .into_io_error()
        .unwrap_or_else(|| std::io::Error::other("filesystem loop"));
    ContextError::io(path, io)
}

/// The top-most paths under `root` for which `included` is false (directories are not
/// descended into once excluded), sorted; symlinks are never followed.
pub(crate) fn hidden(
    root: &Path,
    included: impl Fn(&[u8]) -> bool,
) -> Result<Vec<PathBuf>, ContextError> {
    let mut out = Vec::new();
    let mut it = WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()))
        .into_iter();
    while let Some(next) = it.next() {
        let dent = next.map_err(|e| walk_error(root, e))?;
        let rel = dent.path().strip_prefix(root).unwrap_or(dent.path());
        if !included(pathutil::bytes(rel)) {
            if dent.file_type().is_dir() {
                it.skip_current_dir();
            }
            out.push(rel.to_path_buf());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn paths(w: &Walked) -> Vec<String> {
        w.entries
            .iter()
            .map(|e| String::from_utf8_lossy(e.path_bytes()).into_owned())
            .collect()
    }

    /// Pre-order, name-sorted, root first; symlinks recorded with their target, not followed.
    #[test]
    fn walk_is_sorted_preorder_and_does_not_follow_links() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("b/c")).unwrap();
        std::fs::write(r.join("b/c/f"), "x").unwrap();
        std::fs::write(r.join("a.txt"), "hello").unwrap();
        std::fs::write(r.join("b.txt"), "").unwrap();
        std::os::unix::fs::symlink("/etc", r.join("l")).unwrap();
        let w = walk(r, &DockerIgnore::empty()).unwrap();
        assert_eq!(paths(&w), ["", "a.txt", "b", "b/c", "b/c/f", "b.txt", "l"]);
        let l = w.entries.last().unwrap();
        assert_eq!(
            l.kind,
            EntryKind::Symlink {
                target: "/etc".into()
            }
        );
        assert_eq!(w.entries[1].size, 5);
        assert!(w.entries[0].is_dir());
    }

    /// Excluded directories are pruned; literal exceptions re-include and bring their parent.
    #[test]
    fn pruning_follows_the_archiver_rule() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in ["nm/keep", "nm/other", "logs"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("nm/keep/k"), "").unwrap();
        std::fs::write(r.join("nm/other/o"), "").unwrap();
        std::fs::write(r.join("logs/x"), "").unwrap();
        let ig = DockerIgnore::parse(".dockerignore", b"nm\n!nm/keep\n").unwrap();
        let w = walk(r, &ig).unwrap();
        assert_eq!(
            paths(&w),
            ["", "logs", "logs/x", "nm", "nm/keep", "nm/keep/k"]
        );
        // A wildcard exception does not make the walk descend (moby's rule).
        let ig = DockerIgnore::parse(".dockerignore", b"nm\n!**/k\n").unwrap();
        let w = walk(r, &ig).unwrap();
        assert_eq!(paths(&w), ["", "logs", "logs/x"]);
    }

    /// FIFOs and sockets are skipped with a warning; device nodes are recorded.
    #[test]
    fn special_files_policy() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap();
        let dev_ok = rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .is_ok();
        let w = walk(r, &DockerIgnore::empty()).unwrap();
        let warned: Vec<_> = w.warnings.iter().map(|w| w.path.clone()).collect();
        assert_eq!(warned, [PathBuf::from("fifo"), PathBuf::from("sock")]);
        if dev_ok {
            assert_eq!(paths(&w), ["", "null"]);
            assert_eq!(
                w.entries[1].kind,
                EntryKind::CharDevice { major: 1, minor: 3 }
            );
        }
    }

    /// Non-UTF-8 names are walked and matched byte-exactly.
    #[test]
    fn non_utf8_names_are_walked() {
        let t = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"\xff\xfe.bin");
        std::fs::write(t.path().join(name), "x").unwrap();
        std::fs::write(t.path().join("keep"), "x").unwrap();
        let w = walk(t.path(), &DockerIgnore::empty()).unwrap();
        assert_eq!(w.entries[2].path_bytes(), b"\xff\xfe.bin");
        let ig = DockerIgnore::parse(".dockerignore", b"*.bin").unwrap();
        let w = walk(t.path(), &ig).unwrap();
        assert_eq!(paths(&w), ["", "keep"]);
    }

    /// A file given as the context root is refused.
    #[test]
    fn context_must_be_a_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), "").unwrap();
        let e = walk(&t.path().join("f"), &DockerIgnore::empty()).unwrap_err();
        assert!(matches!(e, ContextError::NotADirectory { .. }));
    }
}
