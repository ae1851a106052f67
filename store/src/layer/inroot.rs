//! Path resolution confined to a root directory, as if chrooted: symlinks (absolute ones
//! re-anchored at the root) and `..` never leave it. The fast path is one
//! `openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)`; creating missing directories (including
//! behind dangling absolute symlinks) falls back to a component-by-component walk on directory
//! fds with `O_NOFOLLOW` at every step, `..` clamped at the root and symlinks re-anchored
//! there. Every later operation is done relative to the fd this returns, never by re-walking
//! a string path.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{IoContext, Result};
use crate::layer::path::RelPath;

/// Most symlinks followed while resolving one path (Linux's own limit).
const MAX_SYMLINKS: u32 = 40;

/// A directory that confines every path resolved through it.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

impl RootDir {
    /// Open `path` (which must be a directory) as a root.
    pub fn open(path: &Path) -> Result<RootDir> {
        let fd =
            rustix::fs::open(path, dir_flags(), Mode::empty()).ctx("open root directory", path)?;
        Ok(RootDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Open the directory `rel` inside the root, following symlinks in-root. With `create`,
    /// missing directories (also those a dangling symlink points at) are made `0755`.
    pub fn dir(&self, rel: &RelPath, create: bool) -> io::Result<OwnedFd> {
        if rel.is_root() {
            return rustix::fs::openat(&self.fd, ".", dir_flags(), Mode::empty())
                .map_err(Into::into);
        }
        match rustix::fs::openat2(
            &self.fd,
            rel.as_bytes(),
            dir_flags(),
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => {}
            // Old kernels or seccomp filters without openat2: do the walk.
            Err(Errno::NOSYS) | Err(Errno::PERM) | Err(Errno::AGAIN) | Err(Errno::XDEV) => {}
            Err(e) => return Err(e.into()),
        }
        self.walk(rel, create)
    }

    /// The parent directory of `rel` (resolved as in `dir`) and `rel`'s final component,
    /// which is not followed. The root itself has no parent: `InvalidInput`.
    pub fn parent(&self, rel: &RelPath, create: bool) -> io::Result<(OwnedFd, Vec<u8>)> {
        let (parent, name) = rel
            .split_last()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the root has no parent"))?;
        let name = name.to_vec();
        Ok((self.dir(&parent, create)?, name))
    }

    /// Resolve component by component. Each step opens the next directory relative to the
    /// current one with O_NOFOLLOW; symlinks are read and their targets pushed back onto the
    /// queue; `..` pops to the previous directory but never above the root.
    fn walk(&self, rel: &RelPath, create: bool) -> io::Result<OwnedFd> {
        let mut queue: VecDeque<Vec<u8>> = rel.components().map(<[u8]>::to_vec).collect();
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut cur = rustix::fs::openat(&self.fd, ".", dir_flags(), Mode::empty())?;
        let mut links = 0;
        while let Some(c) = queue.pop_front() {
            if c.is_empty() || c == b"." {
                continue;
            }
            if c == b".." {
                if let Some(prev) = stack.pop() {
                    cur = prev;
                }
                continue;
            }
            match rustix::fs::statat(&cur, c.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => {
                        let next = rustix::fs::openat(
                            &cur,
                            c.as_slice(),
                            dir_flags() | OFlags::NOFOLLOW,
                            Mode::empty(),
                        )?;
                        stack.push(std::mem::replace(&mut cur, next));
                    }
                    FileType::Symlink => {
                        links += 1;
                        if links > MAX_SYMLINKS {
                            return Err(Errno::LOOP.into());
                        }
                        let target = rustix::fs::readlinkat(&cur, c.as_slice(), Vec::new())?;
                        let target = target.into_bytes();
                        if target.first() == Some(&b'/') {
                            stack.clear();
                            cur = rustix::fs::openat(&self.fd, ".", dir_flags(), Mode::empty())?;
                        }
                        for part in target.split(|&b| b == b'/').rev() {
                            queue.push_front(part.to_vec());
                        }
                    }
                    _ => return Err(Errno::NOTDIR.into()),
                },
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&cur, c.as_slice(), Mode::from_raw_mode(0o755)) {
                        Ok(()) => {
                            let next = rustix::fs::openat(
                                &cur,
                                c.as_slice(),
                                dir_flags() | OFlags::NOFOLLOW,
                                Mode::empty(),
                            )?;
                            // mkdir's mode is filtered by the umask: set it exactly.
                            rustix::fs::fchmod(&next, Mode::from_raw_mode(0o755))?;
                            stack.push(std::mem::replace(&mut cur, next));
                        }
                        // Raced with another creator: look at it again.
                        Err(Errno::EXIST) => queue.push_front(c),
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(cur)
    }
}

/// Remove `name` inside `dir` and, if it is a directory, everything below it. Never follows
/// symlinks: a symlink is removed itself.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = rustix::fs::openat(dir, name, dir_flags() | OFlags::NOFOLLOW, Mode::empty())?;
        clear_dir(sub.as_fd(), &mut |_| false)?;
        match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    } else {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Remove every child of `dir` for which `keep(name)` is false.
pub fn clear_dir(dir: BorrowedFd<'_>, keep: &mut dyn FnMut(&[u8]) -> bool) -> io::Result<()> {
    let names = list_dir(dir)?;
    for name in names {
        if !keep(&name) {
            remove_all_at(dir, &name)?;
        }
    }
    Ok(())
}

/// The names in a directory (without `.` and `..`), with their types.
pub fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push(name.to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn rp(s: &str) -> RelPath {
        crate::layer::path::clean(s.as_bytes(), crate::layer::path::AbsolutePaths::Strip).unwrap()
    }

    #[test]
    fn absolute_and_relative_symlinks_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("real")).unwrap();
        symlink("/", root.join("abs")).unwrap();
        symlink("../../../../..", root.join("up")).unwrap();
        symlink("/nonexistent/deeper", root.join("dangling")).unwrap();
        let r = RootDir::open(&root).unwrap();
        for (p, create) in [
            ("abs/real", false),
            ("up/real", false),
            ("dangling/x", true),
        ] {
            for slow in [false, true] {
                let fd = if slow {
                    r.walk(&rp(p), create)
                } else {
                    r.dir(&rp(p), create)
                }
                .unwrap();
                let st = rustix::fs::fstat(&fd).unwrap();
                let inside = fs::metadata(if p.starts_with("dangling") {
                    root.join("nonexistent/deeper/x")
                } else {
                    root.join("real")
                })
                .unwrap();
                use std::os::unix::fs::MetadataExt;
                assert_eq!(st.st_ino, inside.ino(), "{p} slow={slow}");
            }
        }
        assert!(!Path::new("/nonexistent").exists());
    }

    #[test]
    fn file_in_the_middle_is_not_a_directory() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("f"), b"x").unwrap();
        let r = RootDir::open(t.path()).unwrap();
        assert_eq!(
            r.walk(&rp("f/x"), true).unwrap_err().raw_os_error(),
            Some(libc::ENOTDIR)
        );
    }

    #[test]
    fn symlink_loops_end() {
        let t = tempfile::tempdir().unwrap();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        let r = RootDir::open(t.path()).unwrap();
        assert!(r.walk(&rp("a/x"), true).is_err());
        assert!(r.dir(&rp("a/x"), true).is_err());
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"x").unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("d/e")).unwrap();
        symlink(&outside, root.join("d/link")).unwrap();
        let r = RootDir::open(&root).unwrap();
        remove_all_at(r.fd(), b"d").unwrap();
        assert!(!root.join("d").exists());
        assert!(outside.join("keep").exists());
    }
}
