//! Applying a layer (or an ADD archive) to a directory, with every path resolved inside it
//! (`RootDir`). Three modes: `Merged` applies onto an existing rootfs (whiteouts delete,
//! opaque markers clear lower content, an entry replacing a path removes it first);
//! `OverlayLower` unpacks one layer alone as an overlayfs lowerdir (whiteouts become 0:0
//! character devices, opaque markers the `trusted.overlay.opaque=y` xattr, `user.overlay.opaque`
//! when rootless: `crate::userns`); `Plain` extracts
//! an archive with no whiteout semantics (ADD; optional base directory and owner override).
//! In `Merged`, `.wh..wh..opq` clears lower children wherever it sits in the layer, and entries
//! of the same layer are never hidden by it. `tar::Archive::unpack` is never used.
//!
//! How entries land: files are created `O_EXCL|O_NOFOLLOW` relative to the parent's
//! descriptor; chown precedes chmod (so setuid survives); xattrs are set on the descriptor
//! (`security.capability` kept, `trusted.overlay.*`/`user.overlay.*` dropped); hard links link
//! in-root targets without following them (a link to a symlink links the symlink); devices
//! are `mknodat` relative to the parent; directory mtimes are set last. Ownership, modes incl.
//! setuid, xattrs and mtimes are preserved. Refused: `..` components, replacing the root with a
//! non-directory, bad whiteouts (`.wh.`, `.wh..`, `.wh...`), duplicate entries (policy
//! `Reject`; `LastWins` on request), 0:0 character devices, a parent that is not a directory.
//!
//! [`unpack_over`] applies a layer in `OverlayLower` form *on top of* the layers below it
//! ([`LowerLayers`]), the way containerd's applier does through a mount of the parent chain:
//! every entry's parent (and a hard link's target's parent, an opaque marker's directory) is
//! resolved in-root through the merged view, following symlinks of lower layers (absolute ones
//! re-anchored at the root); existing directories on the way are copied up with their
//! attributes, missing ones created `0755 0:0`; a whiteout whose parent does not resolve to a
//! directory, or whose target is not visible, changes nothing; a hard link to a lower file
//! copies it up first. The result stacked on the lower layers shows exactly the tree the
//! flattener (`layer::flatten`) computes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::layer::inroot::{self, RootDir};
use crate::layer::path::{self, AbsolutePaths, Meaning, RelPath};
use crate::layer::tar::{Entry, Kind, TarReader};
use crate::limits::Limits;

/// How entries are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpackMode {
    /// Apply onto an existing tree, honouring whiteouts (a flattened rootfs).
    Merged,
    /// Unpack one layer into its own empty directory for use as an overlayfs lowerdir.
    OverlayLower,
    /// Extract without whiteout semantics (ADD of a local archive).
    Plain,
}

/// What to do when one layer lists a path twice (layer.md: MUST NOT happen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicatePolicy {
    Reject,
    LastWins,
}

/// Options for `unpack`.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    pub mode: UnpackMode,
    pub duplicates: DuplicatePolicy,
    /// In-root directory the entries are relative to (ADD's destination); root by default.
    pub base: RelPath,
    /// Override every entry's owner (e.g. ADD --chown); `None` keeps the archive's.
    pub owner: Option<(u32, u32)>,
    /// Absolute entry names: stripped by default.
    pub absolute: AbsolutePaths,
}

impl UnpackOptions {
    pub fn new(mode: UnpackMode) -> UnpackOptions {
        UnpackOptions {
            mode,
            duplicates: DuplicatePolicy::Reject,
            base: RelPath::root(),
            owner: None,
            absolute: AbsolutePaths::Strip,
        }
    }
}

/// The layers below the one being unpacked by [`unpack_over`], merged with the destination on
/// top (what an overlay mount of the chain with the destination as upper would show). Paths are
/// relative to the root; results are resolved (no symlinks), relative paths into the
/// destination.
pub trait LowerLayers {
    /// Resolve directory `dir` in-root in the merged view, following every symlink, and make it
    /// exist as a directory in the destination: existing directories are copied up with their
    /// attributes; missing ones are created `0755 0:0` when `create`, else `Ok(None)` is
    /// returned (also when the path leads through or ends at a non-directory). With `create`, a
    /// non-directory on the way is `ENOTDIR` and a symlink loop `ELOOP`.
    fn prepare_dir(&self, dir: &RelPath, create: bool) -> io::Result<Option<RelPath>>;
    /// Whether the resolved path `p` is visible in the merged view (not followed).
    fn exists(&self, p: &RelPath) -> io::Result<bool>;
    /// Copy the visible non-directory at resolved `p` up into the destination unless the
    /// destination has it (its parent is already there); `ENOENT` when nothing is visible.
    fn copy_up(&self, p: &RelPath) -> io::Result<()>;
    /// The destination changed in a way that may change earlier resolutions.
    fn invalidate(&self);
}

/// What an unpack did.
#[derive(Debug, Clone)]
pub struct UnpackStats {
    pub entries: u64,
    /// sha256 of the whole uncompressed stream, trailing bytes included: the diff_id.
    pub diff_id: Digest,
    /// Length of the uncompressed stream.
    pub size: u64,
}

/// Apply the uncompressed tar stream `reader` to the directory `dest`. `name` identifies the
/// layer/archive in errors. On error `dest` is left partially written: unpack into a staging
/// directory when that matters.
pub fn unpack(
    reader: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
    limits: &Limits,
    name: &str,
) -> Result<UnpackStats> {
    unpack_impl(reader, dest, None, opts, limits, name)
}

/// Apply the uncompressed layer `reader` to `dest` in `OverlayLower` form on top of `below`
/// (see the module doc): `dest` then is the overlay lower directory of this layer *on that
/// chain*. `opts.mode` must be `OverlayLower`.
pub fn unpack_over(
    reader: impl Read,
    dest: &Path,
    below: &dyn LowerLayers,
    opts: &UnpackOptions,
    limits: &Limits,
    name: &str,
) -> Result<UnpackStats> {
    if opts.mode != UnpackMode::OverlayLower || !opts.base.is_root() {
        return Err(Error::layer(
            name,
            "internal error: a layer is applied over lower layers only as an overlay lower \
             directory at the root",
        ));
    }
    unpack_impl(reader, dest, Some(below), opts, limits, name)
}

fn unpack_impl(
    reader: impl Read,
    dest: &Path,
    below: Option<&dyn LowerLayers>,
    opts: &UnpackOptions,
    limits: &Limits,
    name: &str,
) -> Result<UnpackStats> {
    let root = RootDir::open(dest)?;
    let mut hashing = HashingReader::new(reader);
    let mut tar = TarReader::new(&mut hashing, limits, name);
    let mut u = Unpacker {
        root: &root,
        opts,
        name,
        seen: HashMap::new(),
        dir_times: Vec::new(),
        euid_root: rustix::process::geteuid().is_root(),
        single_id: crate::userns::single_id(),
        below,
        reshaped: false,
    };
    let mut entries = 0;
    while let Some(entry) = tar.next_entry()? {
        entries += 1;
        u.apply(&mut tar, &entry)?;
    }
    u.finish()?;
    drop(tar);
    let (diff_id, size) = hashing
        .finish_draining()
        .map_err(|e| Error::layer(name, format!("reading past the end of the archive: {e}")))?;
    Ok(UnpackStats {
        entries,
        diff_id,
        size,
    })
}

struct Unpacker<'a> {
    root: &'a RootDir,
    opts: &'a UnpackOptions,
    name: &'a str,
    /// Paths this layer wrote: `true` for an entry of its own, `false` for an ancestor of one.
    seen: HashMap<Vec<u8>, bool>,
    dir_times: Vec<(RelPath, Timestamps)>,
    euid_root: bool,
    /// Rootless with one id (`--userns=single`): image owners become 0.
    single_id: bool,
    /// The chain below, for [`unpack_over`].
    below: Option<&'a dyn LowerLayers>,
    /// Set when an entry replaced something or made a symlink (resolutions may change).
    reshaped: bool,
}

fn ts(secs: i64, nsec: u32) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nsec.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

impl Unpacker<'_> {
    /// A chown that failed; rootless, an owner outside the user namespace's mapped ids
    /// (EINVAL) is said as such.
    fn chown_failed(&self, path: &RelPath, uid: u32, gid: u32, e: Errno) -> Error {
        if e == Errno::INVAL && crate::userns::rootless() {
            return self.fail(
                path,
                "chown",
                format!(
                    "owner {uid}:{gid} is outside the ids rbuild's user namespace maps (rootless: \
                     container ids come from the ranges in /etc/subuid and /etc/subgid, or only \
                     0 with --userns=single)"
                ),
            );
        }
        self.fail(path, "chown", e)
    }

    fn fail(&self, path: &RelPath, what: &str, e: impl std::fmt::Display) -> Error {
        Error::layer(
            self.name,
            format!("cannot {what} `{}`: {e}", path.display()),
        )
    }

    fn apply<R: Read>(&mut self, tar: &mut TarReader<R>, entry: &Entry) -> Result<()> {
        if let Some(below) = self.below {
            let r = self.apply_over(below, tar, entry);
            if self.reshaped {
                below.invalidate();
                self.reshaped = false;
            }
            return r;
        }
        let meaning = if self.opts.mode == UnpackMode::Plain {
            let p = path::clean(&entry.path, self.opts.absolute).map_err(|m| {
                Error::layer(self.name, format!("entry `{}` {m}", entry.display_path()))
            })?;
            Meaning::Add(p)
        } else {
            path::interpret(&entry.path, self.opts.absolute, self.name)?
        };
        match meaning {
            Meaning::Ignore => Ok(()),
            Meaning::Whiteout(p) => {
                let p = self.full(&p);
                match self.opts.mode {
                    UnpackMode::OverlayLower => self.overlay_whiteout(&p),
                    _ => self.hide_lower(&p),
                }
            }
            Meaning::Opaque(d) => {
                let d = self.full(&d);
                self.mark_ancestors(&d, true);
                match self.opts.mode {
                    UnpackMode::OverlayLower => {
                        let fd = self
                            .root
                            .dir(&d, true)
                            .map_err(|e| self.fail(&d, "create directory", e))?;
                        rustix::fs::fsetxattr(
                            &fd,
                            crate::userns::opaque_xattr(),
                            b"y",
                            XattrFlags::empty(),
                        )
                        .map_err(|e| self.fail(&d, "mark opaque", e))
                    }
                    _ => self.hide_lower_children(&d),
                }
            }
            Meaning::Add(p) => {
                let p = self.full(&p);
                self.add(tar, entry, &p, None)
            }
        }
    }

    /// [`apply`](Self::apply) on top of the lower layers (see the module doc).
    fn apply_over<R: Read>(
        &mut self,
        below: &dyn LowerLayers,
        tar: &mut TarReader<R>,
        entry: &Entry,
    ) -> Result<()> {
        let resolve_err = |u: &Self, p: &RelPath, e: io::Error| {
            let why = match e.raw_os_error() {
                Some(libc::ENOTDIR) => "a parent is not a directory".to_string(),
                Some(libc::ELOOP) => "too many levels of symbolic links".to_string(),
                _ => e.to_string(),
            };
            u.fail(p, "create parent directories of", why)
        };
        match path::interpret(&entry.path, self.opts.absolute, self.name)? {
            Meaning::Ignore => Ok(()),
            Meaning::Whiteout(p) => {
                self.reshaped = true;
                let Some((parent, name)) = p.split_last() else {
                    return Ok(());
                };
                let dir = match below.prepare_dir(&parent, false) {
                    Ok(Some(d)) => d,
                    Ok(None) => return Ok(()),
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
                        return Ok(());
                    }
                    Err(e) => return Err(self.fail(&p, "resolve", e)),
                };
                let p = dir.join(name);
                match self.seen.get(p.as_bytes()) {
                    Some(true) => Ok(()),
                    Some(false) => self.make_opaque(&p),
                    None => {
                        if !below.exists(&p).map_err(|e| self.fail(&p, "resolve", e))? {
                            return Ok(());
                        }
                        let (dir, name) = self
                            .root
                            .parent(&p, false)
                            .map_err(|e| self.fail(&p, "open parent of", e))?;
                        match inroot::remove_all_at(dir.as_fd(), &name) {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(self.fail(&p, "replace", e)),
                        }
                        rustix::fs::mknodat(
                            &dir,
                            name.as_slice(),
                            FileType::CharacterDevice,
                            Mode::empty(),
                            rustix::fs::makedev(0, 0),
                        )
                        .map_err(|e| self.fail(&p, "create whiteout", e))
                    }
                }
            }
            Meaning::Opaque(d) => {
                self.reshaped = true;
                let d = match below.prepare_dir(&d, false) {
                    Ok(Some(d)) => d,
                    Ok(None) => return Ok(()),
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
                        return Ok(());
                    }
                    Err(e) => return Err(self.fail(&d, "resolve", e)),
                };
                self.mark_ancestors(&d, true);
                self.make_opaque(&d)
            }
            Meaning::Add(p) => {
                let Some((parent, name)) = p.split_last() else {
                    return self.add(tar, entry, &p, None);
                };
                let dir = match below.prepare_dir(&parent, true) {
                    Ok(Some(d)) => d,
                    Ok(None) => return Err(resolve_err(self, &p, Errno::NOENT.into())),
                    Err(e) => return Err(resolve_err(self, &p, e)),
                };
                let p = dir.join(name);
                let target = if entry.kind == Kind::Hardlink {
                    Some(self.hardlink_target_over(below, entry, &p)?)
                } else {
                    None
                };
                self.add(tar, entry, &p, target.as_ref())
            }
        }
    }

    /// Resolve a hard link's target over the lower layers (its parent followed in-root, the
    /// last component not) and copy it up when it lies below.
    fn hardlink_target_over(
        &self,
        below: &dyn LowerLayers,
        entry: &Entry,
        p: &RelPath,
    ) -> Result<RelPath> {
        let not_found = |why: String| {
            self.fail(
                p,
                "link",
                format!(
                    "hardlink target `{}` not found in the root ({why})",
                    String::from_utf8_lossy(&entry.link)
                ),
            )
        };
        let target = path::clean(&entry.link, AbsolutePaths::Strip).map_err(|m| {
            Error::layer(
                self.name,
                format!(
                    "hardlink `{}` target `{}` {m}",
                    p.display(),
                    String::from_utf8_lossy(&entry.link)
                ),
            )
        })?;
        let (parent, name) = target
            .split_last()
            .ok_or_else(|| not_found("it is the root".into()))?;
        let dir = match below.prepare_dir(&parent, false) {
            Ok(Some(d)) => d,
            Ok(None) => return Err(not_found("no such directory".into())),
            Err(e) => return Err(not_found(e.to_string())),
        };
        let t = dir.join(name);
        if !self.seen.contains_key(t.as_bytes()) {
            below.copy_up(&t).map_err(|e| not_found(e.to_string()))?;
        }
        Ok(t)
    }

    /// Hide everything the lower layers (and unrelated copy-ups) have below directory `d`,
    /// keeping this layer's own entries: mark it opaque.
    fn make_opaque(&mut self, d: &RelPath) -> Result<()> {
        self.hide_lower_children(d)?;
        let fd = self
            .root
            .dir(d, false)
            .map_err(|e| self.fail(d, "open directory", e))?;
        rustix::fs::fsetxattr(
            &fd,
            crate::userns::opaque_xattr(),
            b"y",
            XattrFlags::empty(),
        )
        .map_err(|e| self.fail(d, "mark opaque", e))
    }

    fn full(&self, p: &RelPath) -> RelPath {
        if self.opts.base.is_root() {
            p.clone()
        } else if p.is_root() {
            self.opts.base.clone()
        } else {
            self.opts.base.join(p.as_bytes())
        }
    }

    /// Record `p`'s ancestors (and `p` itself when `include_self`) as holding this layer's
    /// content, without overriding explicit entries.
    fn mark_ancestors(&mut self, p: &RelPath, include_self: bool) {
        if include_self {
            self.seen.entry(p.as_bytes().to_vec()).or_insert(false);
        }
        for a in p.ancestors() {
            self.seen.entry(a.to_vec()).or_insert(false);
        }
    }

    /// Whiteout in Merged mode: delete the lower-layer `p`, keeping what this layer wrote.
    fn hide_lower(&mut self, p: &RelPath) -> Result<()> {
        match self.seen.get(p.as_bytes()) {
            Some(true) => Ok(()), // written by this very layer: only later layers may hide it
            Some(false) => self.hide_lower_children(p),
            None => {
                let (dir, name) = match self.root.parent(p, false) {
                    Ok(x) => x,
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) =>
                    {
                        return Ok(());
                    }
                    Err(e) => return Err(self.fail(p, "resolve", e)),
                };
                inroot::remove_all_at(dir.as_fd(), &name).map_err(|e| self.fail(p, "remove", e))
            }
        }
    }

    /// Opaque directory in Merged mode: remove every lower-layer child of `d`, recursively
    /// keeping what this layer wrote (in any order relative to the marker).
    fn hide_lower_children(&mut self, d: &RelPath) -> Result<()> {
        let fd = match self.root.dir(d, false) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                return Ok(());
            }
            Err(e) => return Err(self.fail(d, "open", e)),
        };
        let names = inroot::list_dir(fd.as_fd()).map_err(|e| self.fail(d, "list", e))?;
        for n in names {
            let child = d.join(&n);
            match self.seen.get(child.as_bytes()) {
                None => inroot::remove_all_at(fd.as_fd(), &n)
                    .map_err(|e| self.fail(&child, "remove", e))?,
                Some(_) => {
                    let is_dir = rustix::fs::statat(&fd, n.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
                    if is_dir {
                        self.hide_lower_children(&child)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Whiteout in OverlayLower mode: a 0:0 character device, unless this layer has the path.
    fn overlay_whiteout(&mut self, p: &RelPath) -> Result<()> {
        if self.seen.contains_key(p.as_bytes()) {
            return Ok(());
        }
        self.mark_ancestors(p, false);
        let (dir, name) = self
            .root
            .parent(p, true)
            .map_err(|e| self.fail(p, "create parent of", e))?;
        match rustix::fs::mknodat(
            &dir,
            name.as_slice(),
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        ) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(self.fail(p, "create whiteout", e)),
        }
    }

    fn owner(&self, entry: &Entry, p: &RelPath) -> Result<(u32, u32)> {
        if let Some(o) = self.opts.owner {
            return Ok(o);
        }
        let uid = u32::try_from(entry.uid)
            .map_err(|_| self.fail(p, "own", format!("uid {} is out of range", entry.uid)))?;
        let gid = u32::try_from(entry.gid)
            .map_err(|_| self.fail(p, "own", format!("gid {} is out of range", entry.gid)))?;
        if self.single_id {
            // `--userns=single`: the one id there is owns everything.
            return Ok((0, 0));
        }
        Ok((uid, gid))
    }

    /// Add one entry at `p`; `link_target` overrides a hard link's target path (already
    /// resolved by [`apply_over`](Self::apply_over)).
    fn add<R: Read>(
        &mut self,
        tar: &mut TarReader<R>,
        entry: &Entry,
        p: &RelPath,
        link_target: Option<&RelPath>,
    ) -> Result<()> {
        if p.is_root() {
            if entry.kind != Kind::Dir {
                return Err(Error::layer(
                    self.name,
                    format!(
                        "refusing to replace the root directory with a {} (entry `{}`)",
                        entry.kind.name(),
                        entry.display_path()
                    ),
                ));
            }
            let fd = self
                .root
                .dir(p, false)
                .map_err(|e| self.fail(p, "open", e))?;
            return self.set_meta_fd(fd.as_fd(), entry, p, true);
        }
        if self.seen.get(p.as_bytes()) == Some(&true)
            && self.opts.duplicates == DuplicatePolicy::Reject
        {
            return Err(Error::layer(
                self.name,
                format!(
                    "`{}` appears twice in one layer (layers must not contain duplicate entries)",
                    p.display()
                ),
            ));
        }
        if entry.kind == Kind::Char && entry.dev_major == 0 && entry.dev_minor == 0 {
            return Err(Error::layer(
                self.name,
                format!(
                    "`{}` is a 0:0 character device, which overlayfs would treat as a whiteout",
                    p.display()
                ),
            ));
        }
        let (dir, name) = self.root.parent(p, true).map_err(|e| {
            let why = match e.raw_os_error() {
                Some(libc::ENOTDIR) => "a parent is not a directory".to_string(),
                Some(libc::ELOOP) => "too many levels of symbolic links".to_string(),
                _ => e.to_string(),
            };
            self.fail(p, "create parent directories of", why)
        })?;
        self.seen.insert(p.as_bytes().to_vec(), true);
        self.mark_ancestors(p, false);
        let existing = rustix::fs::statat(&dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| FileType::from_raw_mode(st.st_mode));
        let name = name.as_slice();
        // Replacing an entry, or adding a symlink, may change how later paths resolve.
        self.reshaped |= entry.kind == Kind::Symlink
            || existing.is_some_and(|t| !(t == FileType::Directory && entry.kind == Kind::Dir));
        let remove_existing = |u: &Self| -> Result<()> {
            if existing.is_some() {
                inroot::remove_all_at(dir.as_fd(), name).map_err(|e| u.fail(p, "replace", e))?;
            }
            Ok(())
        };
        match entry.kind {
            Kind::Dir => {
                // A directory replacing this layer's whiteout of the same path (an earlier
                // entry) must not show the lower directory's contents again: opaque, as
                // overlayfs marks a directory made where one was removed.
                let over_whiteout = self.opts.mode == UnpackMode::OverlayLower
                    && existing == Some(FileType::CharacterDevice)
                    && rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| st.st_rdev == 0);
                if existing != Some(FileType::Directory) {
                    remove_existing(self)?;
                    rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| self.fail(p, "create directory", e))?;
                }
                let fd = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.fail(p, "open directory", e))?;
                if over_whiteout {
                    rustix::fs::fsetxattr(
                        &fd,
                        crate::userns::opaque_xattr(),
                        b"y",
                        XattrFlags::empty(),
                    )
                    .map_err(|e| self.fail(p, "mark opaque", e))?;
                }
                self.set_meta_fd(fd.as_fd(), entry, p, true)?;
                self.dir_times
                    .push((p.clone(), ts(entry.mtime, entry.mtime_nsec)));
            }
            Kind::File => {
                remove_existing(self)?;
                let fd: OwnedFd = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| self.fail(p, "create file", e))?;
                let mut file = File::from(fd);
                copy_data(tar, entry, &mut file).map_err(|e| match e {
                    CopyError::Read(e) => tar.data_error(entry, e),
                    CopyError::Write(e) => self.fail(p, "write", e),
                })?;
                self.set_meta_fd(file.as_fd(), entry, p, false)?;
                rustix::fs::futimens(&file, &ts(entry.mtime, entry.mtime_nsec))
                    .map_err(|e| self.fail(p, "set times of", e))?;
            }
            Kind::Symlink => {
                remove_existing(self)?;
                rustix::fs::symlinkat(entry.link.as_slice(), &dir, name)
                    .map_err(|e| self.fail(p, "create symlink", e))?;
                self.set_meta_at(dir.as_fd(), name, entry, p, true)?;
            }
            Kind::Hardlink => {
                let target = match link_target {
                    Some(t) => Ok(t.clone()),
                    None => path::clean(&entry.link, AbsolutePaths::Strip),
                }
                .map_err(|m| {
                    Error::layer(
                        self.name,
                        format!(
                            "hardlink `{}` target `{}` {m}",
                            p.display(),
                            String::from_utf8_lossy(&entry.link)
                        ),
                    )
                })?;
                let target = if link_target.is_some() {
                    target
                } else {
                    self.full(&target)
                };
                if &target == p || target.is_root() {
                    return Err(Error::layer(
                        self.name,
                        format!("hardlink `{}` points at itself or the root", p.display()),
                    ));
                }
                let (tdir, tname) = self.root.parent(&target, false).map_err(|e| {
                    self.fail(
                        p,
                        "link",
                        format!(
                            "hardlink target `{}` not found in the root ({e})",
                            target.display()
                        ),
                    )
                })?;
                match rustix::fs::statat(&tdir, tname.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        return Err(self.fail(
                            p,
                            "link",
                            format!("hardlink target `{}` is a directory", target.display()),
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(self.fail(
                            p,
                            "link",
                            format!(
                                "hardlink target `{}` not found in the root ({e})",
                                target.display()
                            ),
                        ));
                    }
                }
                remove_existing(self)?;
                // No AT_SYMLINK_FOLLOW: a hardlink to a symlink links the symlink itself.
                rustix::fs::linkat(&tdir, tname.as_slice(), &dir, name, AtFlags::empty())
                    .map_err(|e| self.fail(p, "create hardlink", e))?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                remove_existing(self)?;
                let (ft, dev) = match entry.kind {
                    Kind::Char => (
                        FileType::CharacterDevice,
                        rustix::fs::makedev(entry.dev_major, entry.dev_minor),
                    ),
                    Kind::Block => (
                        FileType::BlockDevice,
                        rustix::fs::makedev(entry.dev_major, entry.dev_minor),
                    ),
                    _ => (FileType::Fifo, 0),
                };
                rustix::fs::mknodat(&dir, name, ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| self.fail(p, "create special file", e))?;
                self.set_meta_at(dir.as_fd(), name, entry, p, false)?;
            }
        }
        Ok(())
    }

    /// Owner, mode (after chown, which clears setuid), xattrs on an open fd.
    fn set_meta_fd(
        &self,
        fd: BorrowedFd<'_>,
        entry: &Entry,
        p: &RelPath,
        _is_dir: bool,
    ) -> Result<()> {
        let (uid, gid) = self.owner(entry, p)?;
        if let Err(e) = rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        ) && self.euid_root
        {
            return Err(self.chown_failed(p, uid, gid, e));
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(entry.mode))
            .map_err(|e| self.fail(p, "chmod", e))?;
        for (k, v) in &entry.xattrs {
            if is_overlay_xattr(k) {
                tracing::warn!(
                    "{}: dropping overlayfs control xattr `{}` on `{}`",
                    self.name,
                    String::from_utf8_lossy(k),
                    p.display()
                );
                continue;
            }
            match rustix::fs::fsetxattr(fd, k.as_slice(), v, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::NOTSUP) => tracing::warn!(
                    "{}: the filesystem does not support xattr `{}` on `{}`",
                    self.name,
                    String::from_utf8_lossy(k),
                    p.display()
                ),
                Err(e) => return Err(self.fail(p, "set xattr on", e)),
            }
        }
        Ok(())
    }

    /// Metadata of an entry that cannot be opened (symlink, device, fifo): by name in `dir`.
    fn set_meta_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        entry: &Entry,
        p: &RelPath,
        symlink: bool,
    ) -> Result<()> {
        let (uid, gid) = self.owner(entry, p)?;
        if let Err(e) = rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        ) && self.euid_root
        {
            return Err(self.chown_failed(p, uid, gid, e));
        }
        if !symlink {
            // We just created this node and nothing else writes the tree: it is not a symlink.
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(entry.mode), AtFlags::empty())
                .map_err(|e| self.fail(p, "chmod", e))?;
        }
        if !entry.xattrs.is_empty() {
            // lsetxattr through the parent's fd: the final component is not followed.
            let via = format!("/proc/self/fd/{}/", dir.as_raw_fd());
            let mut full = via.into_bytes();
            full.extend_from_slice(name);
            for (k, v) in &entry.xattrs {
                if is_overlay_xattr(k) {
                    continue;
                }
                match rustix::fs::lsetxattr(full.as_slice(), k.as_slice(), v, XattrFlags::empty()) {
                    Ok(()) => {}
                    Err(Errno::NOTSUP) | Err(Errno::PERM) if symlink => {}
                    Err(e) => return Err(self.fail(p, "set xattr on", e)),
                }
            }
        }
        rustix::fs::utimensat(
            dir,
            name,
            &ts(entry.mtime, entry.mtime_nsec),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.fail(p, "set times of", e))
    }

    /// Directory mtimes last (creating children changed them), deepest first.
    fn finish(&mut self) -> Result<()> {
        for (p, times) in self.dir_times.iter().rev() {
            let Ok((dir, name)) = self.root.parent(p, false) else {
                continue;
            };
            match rustix::fs::utimensat(&dir, name.as_slice(), times, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(self.fail(p, "set times of", e)),
            }
        }
        Ok(())
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_data<R: Read>(
    tar: &mut TarReader<R>,
    entry: &Entry,
    out: &mut File,
) -> std::result::Result<(), CopyError> {
    let mut buf = vec![0u8; (entry.size.min(1 << 18) as usize).max(1)];
    let mut data = tar.data();
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}
