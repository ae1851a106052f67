//! Changesets: what a step changed, as the OCI layer format expresses it (entries, whiteouts,
//! opaque markers), and the two differs that compute one — from an overlay upper directory, or
//! by walking a before/after pair of trees.
//!
//! Both differs follow the same canonical rules so they produce the same changeset for the same
//! step:
//! - a deleted path gets a whiteout `.wh.NAME` (only the topmost deleted path, not its children);
//! - a path whose type changed is emitted as its new entry only (applying a layer replaces a
//!   non-directory or mismatched entry anyway);
//! - a directory that existed below and was deleted and recreated by the step gets an opaque
//!   marker `DIR/.wh..wh..opq` plus all of its new contents;
//! - an entry whose type, mode, owner, mtime, size, device number, symlink target, extended
//!   attributes or content changed is emitted in full; unchanged entries are not (overlayfs may
//!   copy a file up without changing it, e.g. for a hard link);
//! - every ancestor directory of an emitted entry is emitted too, with its current attributes;
//!   the root directory itself is never emitted;
//! - a socket is skipped with a warning, and a 0:0 character device is treated as absent (to
//!   overlayfs it *is* a whiteout, so a step cannot create one), with a warning when it is not
//!   already hidden by overlayfs;
//! - a name starting with `.wh.` created by the step is an error naming the path.

pub mod overlay;
pub mod walk;

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{ExecError, IoContext, Result};
use crate::fsmeta::{self, Kind, Meta, Xattr};

/// Marker file name of an opaque directory in a layer.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Prefix of a whiteout file name in a layer.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// What a change does to its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// `path` is `DIR/.wh.NAME`: delete `DIR/NAME` from the layers below.
    Whiteout,
    /// `path` is `DIR/.wh..wh..opq`: hide everything the layers below have in `DIR`.
    Opaque,
    /// Add or replace the entry at `path` with the file at the changeset's base.
    Entry(EntryData),
}

/// The attributes of an added or modified entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryData {
    pub meta: Meta,
    pub xattrs: Vec<Xattr>,
    /// The target of a symlink.
    pub link_target: Option<PathBuf>,
}

/// One change, at its path inside the layer (relative, no leading `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    pub kind: ChangeKind,
}

/// What a step changed, sorted by path component by component (parents before children), with
/// no duplicate paths. Entry contents are read from `base.join(path)`.
#[derive(Clone, Debug, Default)]
pub struct Changeset {
    pub base: PathBuf,
    pub changes: Vec<Change>,
    /// Things the differ skipped or reinterpreted (sockets, 0:0 devices), one line each.
    pub warnings: Vec<String>,
}

impl Changeset {
    /// True when the step changed nothing a layer can express.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The on-disk file an entry's content and attributes come from.
    pub fn source(&self, change: &Change) -> PathBuf {
        self.base.join(&change.path)
    }
}

/// Collects changes while a differ walks, then adds ancestors and sorts.
pub(crate) struct Collector {
    base: PathBuf,
    changes: Vec<Change>,
    warnings: Vec<String>,
}

impl Collector {
    pub(crate) fn new(base: &Path) -> Collector {
        Collector {
            base: base.to_path_buf(),
            changes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    pub(crate) fn whiteout(&mut self, rel: &Path) {
        let mut name = OsString::from(WHITEOUT_PREFIX);
        name.push(rel.file_name().unwrap_or_default());
        let path = rel.parent().unwrap_or(Path::new("")).join(name);
        self.changes.push(Change {
            path,
            kind: ChangeKind::Whiteout,
        });
    }

    pub(crate) fn opaque(&mut self, dir: &Path) {
        self.changes.push(Change {
            path: dir.join(OPAQUE_MARKER),
            kind: ChangeKind::Opaque,
        });
    }

    /// Emit the entry at `rel` with already-read attributes.
    pub(crate) fn entry(&mut self, rel: &Path, meta: Meta, xattrs: Vec<Xattr>) -> Result<()> {
        let link_target = if meta.kind == Kind::Symlink {
            let p = self.base.join(rel);
            Some(std::fs::read_link(&p).ctx("cannot read symlink", &p)?)
        } else {
            None
        };
        self.changes.push(Change {
            path: rel.to_path_buf(),
            kind: ChangeKind::Entry(EntryData {
                meta,
                xattrs,
                link_target,
            }),
        });
        Ok(())
    }

    /// Add every missing ancestor directory, sort, and check for duplicates.
    pub(crate) fn finish(mut self) -> Result<Changeset> {
        let mut dirs: HashSet<PathBuf> = self
            .changes
            .iter()
            .filter(|c| matches!(&c.kind, ChangeKind::Entry(e) if e.meta.kind == Kind::Dir))
            .map(|c| c.path.clone())
            .collect();
        let mut missing = Vec::new();
        for change in &self.changes {
            let mut p = change.path.parent();
            while let Some(dir) = p {
                if dir.as_os_str().is_empty() || !dirs.insert(dir.to_path_buf()) {
                    break;
                }
                missing.push(dir.to_path_buf());
                p = dir.parent();
            }
        }
        for dir in missing {
            let full = self.base.join(&dir);
            let meta = Meta::lstat(&full).ctx("cannot stat", &full)?;
            let xattrs = fsmeta::xattrs(&full).ctx("cannot read xattrs of", &full)?;
            self.entry(&dir, meta, xattrs)?;
        }
        self.changes.sort_by(|a, b| a.path.cmp(&b.path));
        if let Some(w) = self.changes.windows(2).find(|w| w[0].path == w[1].path) {
            return Err(ExecError::Layer {
                path: w[0].path.display().to_string(),
                message: "the differ produced this path twice".into(),
            });
        }
        Ok(Changeset {
            base: self.base,
            changes: self.changes,
            warnings: self.warnings,
        })
    }
}

/// Reject names the layer format reserves.
pub(crate) fn check_name(rel: &Path) -> Result<()> {
    let name = rel.file_name().unwrap_or_default();
    if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
        return Err(ExecError::ReservedName {
            path: rel.display().to_string(),
        });
    }
    Ok(())
}

/// Whether an entry that exists both below and after the step (same type) changed: attributes,
/// xattrs, symlink target, then — only when all of those agree — content.
/// `content_known_same` short-cuts the content comparison (inode and ctime unchanged).
pub(crate) fn entry_changed(
    lower: &Path,
    lower_meta: &Meta,
    after: &Path,
    after_meta: &Meta,
    after_xattrs: &[Xattr],
    content_known_same: bool,
) -> Result<bool> {
    if !lower_meta.same_attributes(after_meta) {
        return Ok(true);
    }
    let lower_xattrs = fsmeta::xattrs(lower).ctx("cannot read xattrs of", lower)?;
    if lower_xattrs != after_xattrs {
        return Ok(true);
    }
    match after_meta.kind {
        Kind::Symlink => {
            let a = std::fs::read_link(lower).ctx("cannot read symlink", lower)?;
            let b = std::fs::read_link(after).ctx("cannot read symlink", after)?;
            Ok(a != b)
        }
        Kind::File if !content_known_same => {
            let same = fsmeta::same_content(lower, after).ctx("cannot compare", after)?;
            Ok(!same)
        }
        _ => Ok(false),
    }
}

/// Strip the base from a changeset for comparisons in tests and tools: (path, kind, attributes
/// without identity or timestamps, content digest).
pub fn normalized(cs: &Changeset) -> Result<Vec<String>> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    for c in &cs.changes {
        let line = match &c.kind {
            ChangeKind::Whiteout => format!("{} whiteout", c.path.display()),
            ChangeKind::Opaque => format!("{} opaque", c.path.display()),
            ChangeKind::Entry(e) => {
                let m = &e.meta;
                let mut s = format!(
                    "{} {:?} {:o} {}:{}",
                    c.path.display(),
                    m.kind,
                    m.mode,
                    m.uid,
                    m.gid
                );
                if m.kind == Kind::File {
                    let p = cs.source(c);
                    let data = std::fs::read(&p).ctx("cannot read", &p)?;
                    s.push_str(&format!(" {}", &hex::encode(Sha256::digest(&data))[..16]));
                }
                if let Some(t) = &e.link_target {
                    s.push_str(&format!(" -> {}", t.display()));
                }
                for (k, v) in &e.xattrs {
                    s.push_str(&format!(" {}={}", k.to_string_lossy(), hex::encode(v)));
                }
                s
            }
        };
        out.push(line);
    }
    Ok(out)
}
