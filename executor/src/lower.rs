//! A read-only merged view over a stack of overlay-format snapshot directories (whiteouts as
//! 0:0 character devices, opaque directories marked by xattr), resolved in userspace exactly as
//! overlayfs would show them, plus chroot-style path resolution inside that view.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::fsmeta::{self, Kind, Meta};

/// The topmost visible entry for a path in a [`LowerView`].
#[derive(Clone, Debug)]
pub struct LowerEntry {
    /// Index of the layer that provides it (0 = topmost).
    pub layer: usize,
    /// Absolute path of the entry in that layer's directory.
    pub path: PathBuf,
    pub meta: Meta,
}

/// Merged view of snapshot directories, topmost first.
#[derive(Clone, Debug, Default)]
pub struct LowerView {
    layers: Vec<PathBuf>,
}

impl LowerView {
    /// A view of `bottom_first` layers (the base image's first layer first), the order in which
    /// an image lists them.
    pub fn new(bottom_first: &[PathBuf]) -> LowerView {
        LowerView {
            layers: bottom_first.iter().rev().cloned().collect(),
        }
    }

    /// The layer directories, topmost first.
    pub fn layers_top_first(&self) -> &[PathBuf] {
        &self.layers
    }

    /// The merged directory at `rel` (resolved, relative) as a view of its own: the layers
    /// whose directory there takes part, each rooted at `rel`.
    pub fn subview(&self, rel: &Path) -> io::Result<LowerView> {
        let layers = self.visible_dir_layers(rel)?;
        Ok(LowerView {
            layers: layers.iter().map(|&i| self.layers[i].join(rel)).collect(),
        })
    }

    /// The topmost visible entry at `rel` (relative, no leading `/`), or `None` when it does not
    /// exist or is whited out. The root (`""`) is the topmost layer's root directory.
    pub fn lookup(&self, rel: &Path) -> io::Result<Option<LowerEntry>> {
        if self.layers.is_empty() {
            return Ok(None);
        }
        let Some(parent) = rel.parent() else {
            let meta = Meta::lstat(&self.layers[0])?;
            return Ok(Some(LowerEntry {
                layer: 0,
                path: self.layers[0].clone(),
                meta,
            }));
        };
        let name = match rel.file_name() {
            Some(n) => n,
            None => return self.lookup(Path::new("")),
        };
        let parents = self.visible_dir_layers(parent)?;
        for i in parents {
            let p = self.layers[i].join(parent).join(name);
            match Meta::lstat(&p) {
                Ok(meta) if meta.is_whiteout() => return Ok(None),
                Ok(meta) => {
                    return Ok(Some(LowerEntry {
                        layer: i,
                        path: p,
                        meta,
                    }));
                }
                Err(e) if is_absent(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The layers (topmost first) whose directory at `rel` takes part in the merged directory,
    /// checking every ancestor: a directory hidden by a whiteout, an opaque directory or a
    /// non-directory higher up yields nothing.
    pub fn visible_dir_layers(&self, rel: &Path) -> io::Result<Vec<usize>> {
        let mut current: Vec<usize> = (0..self.layers.len()).collect();
        let mut prefix = PathBuf::new();
        // The root: every layer's root directory takes part until an opaque root.
        current = self.filter_dirs(&prefix, &current)?;
        for comp in rel.components() {
            let Component::Normal(name) = comp else {
                continue;
            };
            prefix.push(name);
            current = self.filter_dirs(&prefix, &current)?;
            if current.is_empty() {
                break;
            }
        }
        Ok(current)
    }

    /// Of the layers `candidates` (topmost first) whose directories form the merged parent of
    /// `rel`, those whose directory at `rel` takes part in the merged directory `rel`.
    pub fn filter_dirs(&self, rel: &Path, candidates: &[usize]) -> io::Result<Vec<usize>> {
        let mut out = Vec::new();
        for &i in candidates {
            let p = self.layers[i].join(rel);
            let meta = match Meta::lstat(&p) {
                Ok(m) => m,
                Err(e) if is_absent(&e) => continue,
                Err(e) => return Err(e),
            };
            if meta.kind != Kind::Dir {
                break;
            }
            out.push(i);
            if fsmeta::is_opaque_dir(&p)? {
                break;
            }
        }
        Ok(out)
    }

    /// The merged listing of directory `rel`: name → topmost visible entry. Whited-out names
    /// are left out. Empty when `rel` is not a visible directory.
    pub fn read_dir(&self, rel: &Path) -> io::Result<BTreeMap<OsString, LowerEntry>> {
        let layers = self.visible_dir_layers(rel)?;
        self.read_dir_in(rel, &layers)
    }

    /// [`read_dir`](Self::read_dir) when the participating layers are already known.
    pub fn read_dir_in(
        &self,
        rel: &Path,
        layers: &[usize],
    ) -> io::Result<BTreeMap<OsString, LowerEntry>> {
        let mut seen: BTreeMap<OsString, Option<LowerEntry>> = BTreeMap::new();
        for &i in layers {
            let dir = self.layers[i].join(rel);
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                if seen.contains_key(&name) {
                    continue;
                }
                let path = entry.path();
                let meta = Meta::lstat(&path)?;
                let value = if meta.is_whiteout() {
                    None
                } else {
                    Some(LowerEntry {
                        layer: i,
                        path,
                        meta,
                    })
                };
                seen.insert(name, value);
            }
        }
        Ok(seen
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    /// Resolve `path` (absolute or relative to `/`) inside the view as if chrooted: `..` stops
    /// at the root and absolute symlink targets restart from the view's root. Components after
    /// the first missing one are returned in `missing`. A symlink as the last component is
    /// followed only when `follow_last` is true.
    pub fn resolve(&self, path: &str, follow_last: bool) -> io::Result<Resolved> {
        let mut pending: Vec<OsString> = split(path).into_iter().rev().collect();
        let mut current = PathBuf::new();
        let mut links = 0;
        let mut leaf: Option<LowerEntry> = None;
        while let Some(comp) = pending.pop() {
            leaf = None;
            if comp == ".." {
                current.pop();
                continue;
            }
            let candidate = current.join(&comp);
            let Some(entry) = self.lookup(&candidate)? else {
                // Everything from here on does not exist; normalise the rest lexically.
                let mut missing = vec![comp];
                while let Some(c) = pending.pop() {
                    if c == ".." {
                        if missing.pop().is_none() {
                            current.pop();
                        }
                    } else {
                        missing.push(c);
                    }
                }
                return Ok(Resolved {
                    existing: current,
                    missing,
                    leaf: None,
                });
            };
            let is_last = pending.is_empty();
            match entry.meta.kind {
                Kind::Symlink if !is_last || follow_last => {
                    links += 1;
                    if links > 40 {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = std::fs::read_link(&entry.path)?;
                    let target = target.as_os_str().to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        current = PathBuf::new();
                    }
                    pending.extend(split(&target).into_iter().rev());
                }
                Kind::Dir => {
                    current = candidate;
                    leaf = Some(entry);
                }
                _ if is_last => {
                    current = candidate;
                    leaf = Some(entry);
                }
                _ => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            }
        }
        if leaf.is_none() && current.as_os_str().is_empty() {
            leaf = self.lookup(Path::new(""))?;
        }
        Ok(Resolved {
            existing: current,
            missing: Vec::new(),
            leaf,
        })
    }
}

/// The result of [`LowerView::resolve`].
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The longest existing prefix, fully resolved (relative, no symlinks).
    pub existing: PathBuf,
    /// Components below `existing` that do not exist (no `.`/`..`).
    pub missing: Vec<OsString>,
    /// The entry at `existing` when nothing is missing.
    pub leaf: Option<LowerEntry>,
}

impl Resolved {
    /// The full resolved relative path (existing prefix plus missing components).
    pub fn full(&self) -> PathBuf {
        let mut p = self.existing.clone();
        for m in &self.missing {
            p.push(m);
        }
        p
    }
}

fn split(path: &str) -> Vec<OsString> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(OsString::from)
        .collect()
}

fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// Whether `name` is reserved by the OCI layer format.
pub fn is_reserved_name(name: &OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().starts_with(b".wh.")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Create an overlay whiteout (0:0 char device) at `path`.
    pub(crate) fn whiteout(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
    }

    pub(crate) fn opaque(path: &Path) {
        xattr::set(path, "trusted.overlay.opaque", b"y").unwrap();
    }

    fn layers() -> (tempfile::TempDir, Vec<PathBuf>) {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("base");
        let top = t.path().join("top");
        for d in [&base, &top] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::create_dir_all(base.join("etc/sub")).unwrap();
        std::fs::write(base.join("etc/passwd"), "root").unwrap();
        std::fs::write(base.join("etc/sub/x"), "x").unwrap();
        std::fs::write(base.join("gone"), "g").unwrap();
        std::fs::create_dir(base.join("opq")).unwrap();
        std::fs::write(base.join("opq/old"), "o").unwrap();
        symlink("/etc", base.join("link")).unwrap();
        symlink("../../etc/sub", base.join("etc/rel")).unwrap();
        std::fs::create_dir(top.join("etc")).unwrap();
        std::fs::write(top.join("etc/hosts"), "h").unwrap();
        whiteout(&top.join("gone"));
        std::fs::create_dir(top.join("opq")).unwrap();
        opaque(&top.join("opq"));
        std::fs::write(top.join("opq/new"), "n").unwrap();
        (t, vec![base, top])
    }

    #[test]
    fn merged_listing_honours_whiteouts_and_opaque_dirs() {
        let (_t, l) = layers();
        let view = LowerView::new(&l);
        let root: Vec<_> = view.read_dir(Path::new("")).unwrap().into_keys().collect();
        assert_eq!(root, ["etc", "link", "opq"]);
        let etc: Vec<_> = view
            .read_dir(Path::new("etc"))
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(etc, ["hosts", "passwd", "rel", "sub"]);
        let opq: Vec<_> = view
            .read_dir(Path::new("opq"))
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(opq, ["new"]);
        assert!(view.lookup(Path::new("gone")).unwrap().is_none());
        assert!(view.lookup(Path::new("opq/old")).unwrap().is_none());
        assert_eq!(
            view.lookup(Path::new("etc/hosts")).unwrap().unwrap().layer,
            0
        );
        assert_eq!(
            view.lookup(Path::new("etc/passwd")).unwrap().unwrap().layer,
            1
        );
    }

    #[test]
    fn resolution_stays_inside_the_view() {
        let (_t, l) = layers();
        let view = LowerView::new(&l);
        let r = view
            .resolve("/link/sub/../../../../etc/passwd", true)
            .unwrap();
        assert_eq!(r.existing, Path::new("etc/passwd"));
        assert!(r.missing.is_empty());
        let r = view.resolve("/etc/rel/new/deeper", true).unwrap();
        assert_eq!(r.existing, Path::new("etc/sub"));
        assert_eq!(r.missing, ["new", "deeper"]);
        let r = view.resolve("/link", false).unwrap();
        assert_eq!(r.leaf.unwrap().meta.kind, Kind::Symlink);
        assert_eq!(
            view.resolve("/etc/passwd/x", true)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOTDIR)
        );
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let t = tempfile::tempdir().unwrap();
        symlink("/b", t.path().join("a")).unwrap();
        symlink("/a", t.path().join("b")).unwrap();
        let view = LowerView::new(&[t.path().to_path_buf()]);
        let err = view.resolve("/a/x", true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }
}
