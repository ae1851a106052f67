//! The walking differ: compare the merged lower layers (before the step) with a plain directory
//! holding the rootfs after it, for when overlayfs is not available. Metadata decides first;
//! a baseline of (inode, ctime) taken just before the step tells unchanged files apart without
//! reading them, and a recreated directory (new inode, or a new birth time where the
//! filesystem records one: ext4 reuses inode numbers at once) becomes an opaque directory, as
//! overlayfs would record it. Contents are compared only when the metadata cannot decide. Both
//! differs are tested to give the same changeset on a scenario table and on random operation
//! sequences.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Changeset, Collector, check_name, entry_changed};
use crate::error::{IoContext, Result};
use crate::fsmeta::{self, Kind, Meta};
use crate::lower::{LowerEntry, LowerView};

/// (inode, ctime) of every path of a tree, taken just before a step runs in it, plus the
/// birth time of directories (inode numbers are reused at once on ext4, so `rm -rf d; mkdir
/// d` can give the same inode; the birth time tells the new directory apart).
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    entries: HashMap<PathBuf, (u64, i64, u32)>,
    births: HashMap<PathBuf, (i64, u32)>,
}

/// The birth time of a path, when the filesystem records one.
fn birth_time(path: &Path) -> Option<(i64, u32)> {
    use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
    let st = statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BTIME).ok()?;
    (st.stx_mask & StatxFlags::BTIME.bits() != 0)
        .then_some((st.stx_btime.tv_sec, st.stx_btime.tv_nsec))
}

impl Baseline {
    /// Walk `root` and record every entry. Wait for the clock to move past the tree's newest
    /// ctime first, so that any later change gets a different ctime even on coarse clocks.
    pub fn capture(root: &Path) -> Result<Baseline> {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut entries = HashMap::new();
        let mut births = HashMap::new();
        for entry in walkdir::WalkDir::new(root).follow_links(false) {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(root).to_path_buf();
                crate::error::ExecError::io("cannot walk", path, e.into())
            })?;
            let rel = entry.path().strip_prefix(root).unwrap_or(Path::new(""));
            let meta = Meta::lstat(entry.path()).ctx("cannot stat", entry.path())?;
            entries.insert(rel.to_path_buf(), (meta.ino, meta.ctime, meta.ctime_nsec));
            if meta.kind == Kind::Dir
                && let Some(b) = birth_time(entry.path())
            {
                births.insert(rel.to_path_buf(), b);
            }
        }
        Ok(Baseline { entries, births })
    }

    fn unchanged(&self, rel: &Path, meta: &Meta) -> bool {
        self.entries.get(rel) == Some(&(meta.ino, meta.ctime, meta.ctime_nsec))
    }

    /// Whether the directory at `rel` (now `meta`) is not the one that was there before.
    fn recreated(&self, rel: &Path, full: &Path, meta: &Meta) -> bool {
        let Some(&(ino, ..)) = self.entries.get(rel) else {
            return false;
        };
        if ino != meta.ino {
            return true;
        }
        match (self.births.get(rel), birth_time(full)) {
            (Some(before), Some(now)) => *before != now,
            _ => false,
        }
    }
}

/// Mount-point stubs the executor created in a copied rootfs (relative path → inode), to be
/// left out of the changeset as long as the step did not touch them.
#[derive(Clone, Debug, Default)]
pub struct StubSet {
    pub(crate) entries: HashMap<PathBuf, (u64, i64, u32)>,
}

impl StubSet {
    /// Record a stub at `rel` (relative to the rootfs) as it is now (`meta`).
    pub fn insert(&mut self, rel: PathBuf, meta: &Meta) {
        self.entries
            .insert(rel, (meta.ino, meta.mtime, meta.mtime_nsec));
    }

    /// Whether `rel` is still exactly the stub the executor made: same inode and mtime, and
    /// empty (a zero-length file, or a directory holding only pristine stubs).
    fn is_pristine(&self, root: &Path, rel: &Path, meta: &Meta) -> Result<bool> {
        if self.entries.get(rel) != Some(&(meta.ino, meta.mtime, meta.mtime_nsec)) {
            return Ok(false);
        }
        match meta.kind {
            Kind::File => Ok(meta.size == 0),
            Kind::Dir => {
                let dir = root.join(rel);
                for entry in std::fs::read_dir(&dir).ctx("cannot read directory", &dir)? {
                    let entry = entry.ctx("cannot read directory", &dir)?;
                    let child = rel.join(entry.file_name());
                    let m = Meta::lstat(&entry.path()).ctx("cannot stat", &entry.path())?;
                    if !self.is_pristine(root, &child, &m)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Compare `before` with the tree at `after`. `baseline` is `after` as it was right before the
/// step (inode and ctime of each path); `stubs` are mount points to ignore.
pub fn diff_trees(
    before: &LowerView,
    after: &Path,
    baseline: Option<&Baseline>,
    stubs: &StubSet,
) -> Result<Changeset> {
    let mut out = Collector::new(after);
    let root_layers = before
        .visible_dir_layers(Path::new(""))
        .ctx("cannot read lower layers of", after)?;
    // (relative dir, lower layers whose directory there is the "before" directory)
    let mut stack: Vec<(PathBuf, Vec<usize>)> = vec![(PathBuf::new(), root_layers)];
    while let Some((rel, layers)) = stack.pop() {
        let dir = after.join(&rel);
        let mut after_map: BTreeMap<OsString, Option<Meta>> = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).ctx("cannot read directory", &dir)? {
            let entry = entry.ctx("cannot read directory", &dir)?;
            let meta = Meta::lstat(&entry.path()).ctx("cannot stat", &entry.path())?;
            let path = rel.join(entry.file_name());
            let visible = if meta.is_whiteout() {
                out.warn(format!(
                    "ignored `/{}`: a 0:0 character device is an overlay whiteout and cannot be stored",
                    path.display()
                ));
                None
            } else if meta.kind == Kind::Socket {
                out.warn(format!(
                    "skipped socket `/{}`: sockets cannot be stored in a layer",
                    path.display()
                ));
                None
            } else {
                check_name(&path)?;
                Some(meta)
            };
            after_map.insert(entry.file_name(), visible);
        }
        let before_map: BTreeMap<OsString, LowerEntry> = if layers.is_empty() {
            BTreeMap::new()
        } else {
            before
                .read_dir_in(&rel, &layers)
                .ctx("cannot read lower directory", &rel)?
        };
        let mut names: Vec<&OsString> = after_map.keys().chain(before_map.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let path = rel.join(name);
            let full = after.join(&path);
            let a = after_map.get(name).cloned().flatten();
            let b = before_map.get(name);
            match (b, a) {
                (None, None) => {}
                (Some(_), None) => out.whiteout(&path),
                (None, Some(a)) => {
                    if stubs.is_pristine(after, &path, &a)? {
                        continue;
                    }
                    let xattrs = fsmeta::xattrs(&full).ctx("cannot read xattrs of", &full)?;
                    let is_dir = a.kind == Kind::Dir;
                    out.entry(&path, a, xattrs)?;
                    if is_dir {
                        stack.push((path, Vec::new()));
                    }
                }
                (Some(b), Some(a)) => {
                    let untouched = baseline.is_some_and(|bl| bl.unchanged(&path, &a));
                    if b.meta.kind != a.kind {
                        let xattrs = fsmeta::xattrs(&full).ctx("cannot read xattrs of", &full)?;
                        let is_dir = a.kind == Kind::Dir;
                        out.entry(&path, a, xattrs)?;
                        if is_dir {
                            stack.push((path, Vec::new()));
                        }
                    } else if a.kind == Kind::Dir {
                        let recreated = baseline.is_some_and(|bl| bl.recreated(&path, &full, &a));
                        if recreated {
                            let xattrs =
                                fsmeta::xattrs(&full).ctx("cannot read xattrs of", &full)?;
                            out.opaque(&path);
                            out.entry(&path, a, xattrs)?;
                            stack.push((path, Vec::new()));
                        } else {
                            if !untouched {
                                let xattrs =
                                    fsmeta::xattrs(&full).ctx("cannot read xattrs of", &full)?;
                                if entry_changed(&b.path, &b.meta, &full, &a, &xattrs, true)? {
                                    out.entry(&path, a, xattrs)?;
                                }
                            }
                            let child_layers = before
                                .filter_dirs(&path, &layers)
                                .ctx("cannot read lower layers of", &full)?;
                            stack.push((path, child_layers));
                        }
                    } else if !untouched {
                        let xattrs = fsmeta::xattrs(&full).ctx("cannot read xattrs of", &full)?;
                        if entry_changed(&b.path, &b.meta, &full, &a, &xattrs, false)? {
                            out.entry(&path, a, xattrs)?;
                        }
                    }
                }
            }
        }
    }
    out.finish()
}
