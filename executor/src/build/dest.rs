//! Writing into a step's root filesystem from the outside (COPY, ADD, WORKDIR): every path is
//! resolved inside the root as if chrooted — absolute symlinks in the image re-anchor at the
//! root, `..` stops there — through the store's `RootDir`, and every change is made relative to
//! a directory descriptor, never by re-walking a host path.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rbuild_store::layer::inroot::{RootDir, remove_all_at};
use rbuild_store::layer::path::{AbsolutePaths, RelPath, clean};

use super::upper::UpperDest;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

/// Ownership and permissions of what a copy creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    /// Permission and special bits (07777).
    pub mode: u32,
    /// Seconds since the epoch; `None` keeps "now".
    pub mtime: Option<i64>,
}

/// Where a file step writes: through a detached overlay mount of the step (needed when the
/// store's in-root unpacker extracts an archive), or straight into the upper directory (see
/// `upper`), which is faster and what COPY, ADD of plain files and WORKDIR use.
pub enum Dest {
    Overlay(RootDir),
    Upper(UpperDest),
}

/// `path` inside the root (absolute or relative), cleaned; `..` is resolved lexically first.
pub fn rel_path(path: &str) -> io::Result<RelPath> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    clean(parts.join("/").as_bytes(), AbsolutePaths::Strip)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

impl Dest {
    /// Wrap the root descriptor of a mounted step (reopened through `/proc/self/fd`, which
    /// works for a detached mount too).
    pub fn overlay(root: BorrowedFd<'_>) -> io::Result<Dest> {
        let path = PathBuf::from(format!("/proc/self/fd/{}", root.as_raw_fd()));
        let root = RootDir::open(&path).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Dest::Overlay(root))
    }

    /// Write into `upper` over `lowers` (bottom first) without a mount.
    pub fn upper(upper: &Path, lowers: &[PathBuf]) -> io::Result<Dest> {
        Ok(Dest::Upper(UpperDest::new(upper, lowers)?))
    }

    /// A host path that reaches the merged root (for the store's unpacker); only a mounted
    /// step has one.
    pub fn proc_path(&self) -> Option<PathBuf> {
        match self {
            Dest::Overlay(root) => Some(PathBuf::from(format!(
                "/proc/self/fd/{}",
                root.fd().as_raw_fd()
            ))),
            Dest::Upper(_) => None,
        }
    }

    /// Is there a directory at `rel` (following symlinks in-root)?
    pub fn is_dir(&self, rel: &RelPath) -> bool {
        match self {
            Dest::Overlay(root) => root.dir(rel, false).is_ok(),
            Dest::Upper(upper) => upper.is_dir(rel),
        }
    }

    /// Read a small file of the image (e.g. `/etc/passwd`), resolved in-root; `None` when
    /// missing or not a regular file. Bounded so a hostile image cannot exhaust memory.
    pub fn read_small(&self, path: &str, max: u64) -> Option<String> {
        let root = match self {
            Dest::Overlay(root) => root,
            Dest::Upper(upper) => return upper.read_small(path, max),
        };
        let rel = rel_path(path).ok()?;
        let fd = rustix::fs::openat2(
            root.fd(),
            rel.as_bytes(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_size as u64 > max {
            return None;
        }
        let mut text = String::new();
        io::Read::read_to_string(&mut io::Read::take(File::from(fd), max), &mut text).ok()?;
        Some(text)
    }

    /// Create the directory `rel` and its missing parents (owned by `owner`, with `mode`, as
    /// BuildKit gives created destination parents the copy's `--chown` and `--chmod`), and
    /// return it open.
    pub fn mkdir_all(&self, rel: &RelPath, owner: (u32, u32), mode: u32) -> io::Result<OwnedFd> {
        let root = match self {
            Dest::Overlay(root) => root,
            Dest::Upper(upper) => return upper.mkdir_all(rel, owner, mode),
        };
        if let Ok(fd) = root.dir(rel, false) {
            return Ok(fd);
        }
        let mut prefix = RelPath::root();
        for comp in rel.components() {
            prefix = prefix.join(comp);
            if root.dir(&prefix, false).is_ok() {
                continue;
            }
            let fd = root.dir(&prefix, true)?;
            rustix::fs::fchown(
                &fd,
                Some(rustix::process::Uid::from_raw(owner.0)),
                Some(rustix::process::Gid::from_raw(owner.1)),
            )?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        }
        root.dir(rel, false)
    }

    /// `rel` with every symlink on it followed inside the root, the last component too, as
    /// BuildKit resolves a COPY destination: a link to a directory is copied into, a link to
    /// a file is written through, and a dangling link names the path its target would have.
    pub fn resolve(&self, rel: &RelPath) -> io::Result<RelPath> {
        let resolved = match self {
            Dest::Upper(upper) => upper.resolve(rel)?,
            Dest::Overlay(root) => resolve_in(root, rel)?,
        };
        clean(&resolved, AbsolutePaths::Strip)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    /// The directory that will hold `rel` (created as needed) and `rel`'s last component.
    pub fn parent_of(
        &self,
        rel: &RelPath,
        owner: (u32, u32),
        mode: u32,
    ) -> io::Result<(OwnedFd, Vec<u8>)> {
        if let Dest::Upper(upper) = self {
            return upper.parent_of(rel, owner, mode);
        }
        let (parent, name) = rel.split_last().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "cannot replace the root")
        })?;
        let name = name.to_vec();
        Ok((self.mkdir_all(&parent, owner, mode)?, name))
    }

    /// For a step writing into its upper directory: where `rel`'s parent directory is,
    /// relative to the root (symlinks resolved), once `parent_of(rel)` prepared it.
    pub fn resolved_parent(&self, rel: &RelPath) -> Option<PathBuf> {
        match self {
            Dest::Upper(upper) => upper.resolved_dir(&rel.split_last()?.0),
            Dest::Overlay(_) => None,
        }
    }

    /// A symlink was created: cached path resolutions may be stale.
    pub fn symlink_created(&self) {
        if let Dest::Upper(upper) = self {
            upper.forget_resolutions();
        }
    }
}

/// `Dest::resolve` for a mounted step: a walk over the root's entries, `..` stopping at the
/// root, absolute link targets restarting from it, missing components kept lexically.
fn resolve_in(root: &RootDir, rel: &RelPath) -> io::Result<Vec<u8>> {
    let mut pending: Vec<Vec<u8>> = rel.components().map(<[u8]>::to_vec).collect();
    pending.reverse();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut missing = false;
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        if comp == b".." {
            current.pop();
            continue;
        }
        if missing {
            current.push(comp);
            continue;
        }
        let here = RelPath::root();
        let dir_rel = current.iter().fold(here, |p, c| p.join(c));
        let dir = root.dir(&dir_rel, false)?;
        match rustix::fs::statat(&dir, comp.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                links += 1;
                if links > 40 {
                    return Err(Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(&dir, comp.as_slice(), Vec::new())?;
                let target = target.as_bytes();
                if target.starts_with(b"/") {
                    current.clear();
                }
                pending.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
            }
            Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
                if !pending.iter().all(|c| c.is_empty() || c == b".") {
                    return Err(Errno::NOTDIR.into());
                }
                current.push(comp);
            }
            Ok(_) => current.push(comp),
            Err(Errno::NOENT) => {
                missing = true;
                current.push(comp);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(current.join(&b'/'))
}

/// Access and modification times both `mtime` (whole seconds), as layers record them.
fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Set only the modification (and access) time of an open entry.
pub fn set_mtime(fd: impl AsFd, mtime: i64) -> io::Result<()> {
    rustix::fs::futimens(&fd, &times(mtime))?;
    Ok(())
}

/// Set the times of `name` in `dir` itself (a symlink's own, never its target's).
fn set_mtime_at(dir: BorrowedFd<'_>, name: &[u8], mtime: i64) -> io::Result<()> {
    rustix::fs::utimensat(dir, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Create (or replace) a FIFO or device node `name` in `dir` with its owner, mode and mtime.
pub fn make_node(
    dir: BorrowedFd<'_>,
    name: &[u8],
    kind: FileType,
    rdev: u64,
    attrs: &Attrs,
) -> io::Result<()> {
    clear_for(dir, name, false)?;
    rustix::fs::mknodat(dir, name, kind, Mode::from_raw_mode(0o600), rdev)?;
    rustix::fs::chownat(
        dir,
        name,
        Some(rustix::process::Uid::from_raw(attrs.uid)),
        Some(rustix::process::Gid::from_raw(attrs.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    // After chown, which clears set-id bits.
    rustix::fs::chmodat(
        dir,
        name,
        Mode::from_raw_mode(attrs.mode & 0o7777),
        AtFlags::empty(),
    )?;
    if let Some(mtime) = attrs.mtime {
        set_mtime_at(dir, name, mtime)?;
    }
    Ok(())
}

/// What is at `name` in `dir`, without following a symlink.
pub fn entry_type(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Make room for a new entry at `name`: an existing directory stays when `keep_dir` (a directory
/// merges into a directory), anything else is removed (never followed).
pub fn clear_for(dir: BorrowedFd<'_>, name: &[u8], keep_dir: bool) -> io::Result<bool> {
    match entry_type(dir, name)? {
        None => Ok(false),
        Some(FileType::Directory) if keep_dir => Ok(true),
        Some(_) => {
            remove_all_at(dir, name)?;
            Ok(false)
        }
    }
}

/// Set owner, exact mode (after chown, which clears set-id bits) and mtime of an open entry.
pub fn set_attrs(fd: impl AsFd, attrs: &Attrs) -> io::Result<()> {
    rustix::fs::fchown(
        &fd,
        Some(rustix::process::Uid::from_raw(attrs.uid)),
        Some(rustix::process::Gid::from_raw(attrs.gid)),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(attrs.mode & 0o7777))?;
    if let Some(mtime) = attrs.mtime {
        set_mtime(&fd, mtime)?;
    }
    Ok(())
}

/// Create (or replace) a regular file `name` in `dir` with the contents of `src`.
pub fn write_file(
    dir: BorrowedFd<'_>,
    name: &[u8],
    src: &mut dyn io::Read,
    attrs: &Attrs,
) -> io::Result<u64> {
    clear_for(dir, name, false)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut file = File::from(fd);
    let n = io::copy(src, &mut file)?;
    set_attrs(&file, attrs)?;
    Ok(n)
}

/// Create (or replace) a regular file `name` by copying `src_path` (a trusted host path, opened
/// without following a symlink); in-kernel copy where possible.
pub fn copy_file(
    dir: BorrowedFd<'_>,
    name: &[u8],
    src: &mut File,
    attrs: &Attrs,
) -> io::Result<u64> {
    write_file(dir, name, src, attrs)
}

/// Create (or keep, when one exists) a directory `name` in `dir` and set its attributes.
pub fn make_dir(dir: BorrowedFd<'_>, name: &[u8], attrs: &Attrs) -> io::Result<OwnedFd> {
    if !clear_for(dir, name, true)? {
        match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    set_attrs(&fd, attrs)?;
    Ok(fd)
}

/// Create (or replace) a symlink `name` → `target` (never followed) with its owner and mtime.
pub fn make_symlink(
    dir: BorrowedFd<'_>,
    name: &[u8],
    target: &Path,
    attrs: &Attrs,
) -> io::Result<()> {
    clear_for(dir, name, false)?;
    rustix::fs::symlinkat(target, dir, name)?;
    rustix::fs::chownat(
        dir,
        name,
        Some(rustix::process::Uid::from_raw(attrs.uid)),
        Some(rustix::process::Gid::from_raw(attrs.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if let Some(mtime) = attrs.mtime {
        set_mtime_at(dir, name, mtime)?;
    }
    Ok(())
}

/// Hard-link `name` in `dir` to an entry created earlier in the same step.
pub fn make_hardlink(
    existing_dir: BorrowedFd<'_>,
    existing: &[u8],
    dir: BorrowedFd<'_>,
    name: &[u8],
) -> io::Result<()> {
    clear_for(dir, name, false)?;
    rustix::fs::linkat(existing_dir, existing, dir, name, AtFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths() {
        assert_eq!(rel_path("/a/b/../c/").unwrap().as_bytes(), b"a/c");
        assert_eq!(rel_path("/../..").unwrap().as_bytes(), b"");
        assert_eq!(rel_path("x/./y").unwrap().as_bytes(), b"x/y");
    }

    /// Destination resolution follows every link in-root, the last one too, dangling ones
    /// to the path they name; the upper-directory and mounted variants agree.
    #[test]
    fn destinations_resolve_through_links() {
        let root_dir = tempfile::tempdir().unwrap();
        let r = root_dir.path();
        std::fs::create_dir_all(r.join("etc/deep")).unwrap();
        std::fs::write(r.join("etc/file"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/file", r.join("tofile")).unwrap();
        std::os::unix::fs::symlink("../../etc/deep", r.join("etc/deep/up")).unwrap();
        std::os::unix::fs::symlink("/opt/missing/x", r.join("dangling")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        let fd = rustix::fs::open(
            r,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let overlay = Dest::overlay(fd.as_fd()).unwrap();
        let upper = tempfile::tempdir().unwrap();
        let over_upper = Dest::upper(upper.path(), &[r.to_path_buf()]).unwrap();
        for dest in [&overlay, &over_upper] {
            let res = |p: &str| {
                let r = dest.resolve(&rel_path(p).unwrap()).unwrap();
                String::from_utf8_lossy(r.as_bytes()).into_owned()
            };
            assert_eq!(res("/tofile"), "etc/file");
            assert_eq!(res("/etc/deep/up/new"), "etc/deep/new");
            assert_eq!(res("/dangling"), "opt/missing/x");
            assert_eq!(res("/plain/../etc"), "etc");
            assert_eq!(res("/"), "");
            assert!(dest.resolve(&rel_path("/loop").unwrap()).is_err());
        }
    }

    /// Writes through a root descriptor stay inside it, even through absolute symlinks.
    #[test]
    fn writes_stay_in_root() {
        let outside = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root_dir.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("/", root_dir.path().join("slash")).unwrap();
        let fd = rustix::fs::open(
            root_dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let dest = Dest::overlay(fd.as_fd()).unwrap();
        let attrs = Attrs {
            uid: 0,
            gid: 0,
            mode: 0o644,
            mtime: Some(0),
        };
        for target in ["escape/x/file", "slash/tmp/file"] {
            let rel = rel_path(target).unwrap();
            let (dir, name) = dest.parent_of(&rel, (0, 0), 0o755).unwrap();
            write_file(dir.as_fd(), &name, &mut &b"hi"[..], &attrs).unwrap();
        }
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        let resolved = root_dir
            .path()
            .join(outside.path().strip_prefix("/").unwrap());
        assert_eq!(std::fs::read(resolved.join("x/file")).unwrap(), b"hi");
        assert_eq!(
            std::fs::read(root_dir.path().join("tmp/file")).unwrap(),
            b"hi"
        );
    }
}
