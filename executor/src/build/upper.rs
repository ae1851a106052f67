//! Writing a file step straight into its upper directory instead of through an overlay mount:
//! paths resolve in userspace over the parent snapshots with the upper on top (exactly what
//! overlayfs would show, symlinks re-anchored at the root), parent directories that exist
//! below are copied up with their attributes, and the new entries land in the upper directory,
//! which is a plain directory — creating 20,000 files there costs about half what it costs
//! through overlayfs. COPY never deletes, so no whiteouts are needed: a new non-directory
//! hides whatever lies below, a new directory over a lower directory merges with it.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rbuild_store::layer::path::RelPath;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::fsmeta::{self, Kind};
use crate::lower::LowerView;

pub struct UpperDest {
    upper: PathBuf,
    upper_fd: OwnedFd,
    /// The parent snapshots with the upper directory on top.
    view: LowerView,
    /// Resolved relative path of directories already prepared in the upper directory.
    ready: std::cell::RefCell<HashMap<Vec<u8>, PathBuf>>,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl UpperDest {
    /// `lowers` bottom first; `upper` is the step's (empty) upper directory.
    pub fn new(upper: &Path, lowers: &[PathBuf]) -> io::Result<UpperDest> {
        let mut layers = lowers.to_vec();
        layers.push(upper.to_path_buf());
        let upper_fd = rustix::fs::open(upper, dir_flags(), Mode::empty())?;
        Ok(UpperDest {
            upper: upper.to_path_buf(),
            upper_fd,
            view: LowerView::new(&layers),
            ready: std::cell::RefCell::new(HashMap::new()),
        })
    }

    fn text(rel: &RelPath) -> String {
        String::from_utf8_lossy(rel.as_bytes()).into_owned()
    }

    /// Is there a directory at `rel` in the merged view?
    pub fn is_dir(&self, rel: &RelPath) -> bool {
        self.view
            .resolve(&Self::text(rel), true)
            .is_ok_and(|r| r.missing.is_empty() && r.leaf.is_some_and(|l| l.meta.kind == Kind::Dir))
    }

    /// `rel` with every symlink followed in the merged view (the last one too); missing
    /// components are kept as named.
    pub fn resolve(&self, rel: &RelPath) -> io::Result<Vec<u8>> {
        let resolved = self.view.resolve(&Self::text(rel), true)?;
        Ok(resolved.full().as_os_str().as_bytes().to_vec())
    }

    /// A small regular file of the merged view, bounded.
    pub fn read_small(&self, path: &str, max: u64) -> Option<String> {
        let resolved = self.view.resolve(path, true).ok()?;
        let leaf = resolved.leaf.filter(|_| resolved.missing.is_empty())?;
        if leaf.meta.kind != Kind::File || leaf.meta.size > max {
            return None;
        }
        let file = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&leaf.path)
            .ok()?;
        let mut text = String::new();
        io::Read::read_to_string(&mut io::Read::take(file, max), &mut text).ok()?;
        Some(text)
    }

    /// Open (creating as needed) the directory `rel` in the upper directory: the path is
    /// resolved in the merged view; existing directories below are copied up with their
    /// attributes; missing ones are created with `owner` and `mode`.
    pub fn mkdir_all(&self, rel: &RelPath, owner: (u32, u32), mode: u32) -> io::Result<OwnedFd> {
        if let Some(resolved) = self.ready.borrow().get(rel.as_bytes()) {
            return self.open_upper_dir(resolved);
        }
        let resolved = self.view.resolve(&Self::text(rel), true)?;
        if resolved.missing.is_empty()
            && resolved
                .leaf
                .as_ref()
                .is_some_and(|l| l.meta.kind != Kind::Dir)
        {
            return Err(Errno::NOTDIR.into());
        }
        // Copy up the existing part (parents first).
        let mut path = PathBuf::new();
        for comp in resolved.existing.components() {
            path.push(comp);
            self.copy_up_dir(&path)?;
        }
        for comp in &resolved.missing {
            path.push(comp);
            let parent = self.open_upper_dir(path.parent().unwrap_or(Path::new("")))?;
            match rustix::fs::mkdirat(&parent, comp.as_bytes(), Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            let fd = rustix::fs::openat(&parent, comp.as_bytes(), dir_flags(), Mode::empty())?;
            rustix::fs::fchown(
                &fd,
                Some(rustix::process::Uid::from_raw(owner.0)),
                Some(rustix::process::Gid::from_raw(owner.1)),
            )?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        }
        self.ready
            .borrow_mut()
            .insert(rel.as_bytes().to_vec(), path.clone());
        self.open_upper_dir(&path)
    }

    /// The directory that will hold `rel` (created as needed) and `rel`'s last component.
    pub fn parent_of(
        &self,
        rel: &RelPath,
        owner: (u32, u32),
        mode: u32,
    ) -> io::Result<(OwnedFd, Vec<u8>)> {
        let (parent, name) = rel.split_last().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "cannot replace the root")
        })?;
        let name = name.to_vec();
        Ok((self.mkdir_all(&parent, owner, mode)?, name))
    }

    /// Where directory `rel` (prepared by `mkdir_all`) is, relative to the upper directory.
    pub fn resolved_dir(&self, rel: &RelPath) -> Option<PathBuf> {
        self.ready.borrow().get(rel.as_bytes()).cloned()
    }

    /// The directory at `rel` in the merged view, resolved in-root and copied up into the upper
    /// directory (with its ancestors), as a path relative to the upper directory; `None` when
    /// the path is missing or leads through or ends at a non-directory.
    pub fn existing_dir(&self, rel: &RelPath) -> io::Result<Option<PathBuf>> {
        let resolved = match self.view.resolve(&Self::text(rel), true) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
            Err(e) => return Err(e),
        };
        let is_dir = resolved
            .leaf
            .as_ref()
            .is_some_and(|l| l.meta.kind == Kind::Dir);
        if !resolved.missing.is_empty() || !is_dir {
            return Ok(None);
        }
        let mut path = PathBuf::new();
        for comp in resolved.existing.components() {
            path.push(comp);
            self.copy_up_dir(&path)?;
        }
        Ok(Some(path))
    }

    /// Whether something is visible at the resolved path `rel` of the merged view.
    pub fn exists(&self, rel: &Path) -> io::Result<bool> {
        Ok(self.view.lookup(rel)?.is_some())
    }

    /// Copy the non-directory visible at resolved `rel` up into the upper directory (its parent
    /// must be there already) unless the upper directory has it, like an overlayfs copy-up.
    pub fn copy_up_entry(&self, rel: &Path) -> io::Result<()> {
        let in_upper = self.upper.join(rel);
        let below = self
            .view
            .lookup(rel)?
            .ok_or_else(|| io::Error::from(Errno::NOENT))?;
        if below.layer == 0 {
            return Ok(()); // the upper directory's own entry
        }
        // The parent is a directory of ours, opened without following anything.
        self.open_upper_dir(rel.parent().unwrap_or(Path::new("")))?;
        match below.meta.kind {
            Kind::Dir => return Err(Errno::ISDIR.into()),
            Kind::File => {
                std::fs::copy(&below.path, &in_upper)?;
            }
            Kind::Symlink => {
                let target = std::fs::read_link(&below.path)?;
                std::os::unix::fs::symlink(target, &in_upper)?;
            }
            Kind::CharDev | Kind::BlockDev | Kind::Fifo => {
                let ft = match below.meta.kind {
                    Kind::CharDev => rustix::fs::FileType::CharacterDevice,
                    Kind::BlockDev => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &in_upper,
                    ft,
                    Mode::from_raw_mode(below.meta.mode),
                    below.meta.rdev,
                )?;
            }
            Kind::Socket => return Err(Errno::OPNOTSUPP.into()),
        }
        let xattrs = fsmeta::xattrs(&below.path)?;
        fsmeta::apply_meta(&in_upper, &below.meta, &xattrs)
    }

    /// A symlink was written: earlier resolutions may now be stale.
    pub fn forget_resolutions(&self) {
        self.ready.borrow_mut().clear();
    }

    /// Make sure the directory at resolved path `rel` exists in the upper directory, with the
    /// attributes (and xattrs) of the directory below, like an overlayfs copy-up.
    fn copy_up_dir(&self, rel: &Path) -> io::Result<()> {
        let in_upper = self.upper.join(rel);
        match std::fs::symlink_metadata(&in_upper) {
            Ok(md) if md.is_dir() => return Ok(()),
            Ok(_) => return Err(Errno::NOTDIR.into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let below = self
            .view
            .lookup(rel)?
            .ok_or_else(|| io::Error::from(Errno::NOENT))?;
        let parent = self.open_upper_dir(rel.parent().unwrap_or(Path::new("")))?;
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::from(Errno::INVAL))?;
        match rustix::fs::mkdirat(&parent, name.as_bytes(), Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let xattrs = fsmeta::xattrs(&below.path)?;
        fsmeta::apply_meta(&in_upper, &below.meta, &xattrs)
    }

    /// Open a directory of the upper directory by its resolved relative path, never following
    /// a symlink (the upper directory is ours, but stay strict).
    fn open_upper_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        let mut fd = rustix::fs::openat(&self.upper_fd, ".", dir_flags(), Mode::empty())?;
        for comp in rel.components() {
            fd = rustix::fs::openat(&fd, comp.as_os_str().as_bytes(), dir_flags(), Mode::empty())?;
        }
        Ok(fd)
    }
}

use std::os::unix::fs::OpenOptionsExt;
