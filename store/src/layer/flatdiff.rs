//! Path-by-path comparison of two flattened trees: which paths exist in only one of them and,
//! for the others, what differs (type, content, mode, owner, symlink target, device, mtime,
//! xattrs, hard-link grouping). `build --verify-reproducible` reports these.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::layer::flatten::{FlatEntry, FlatKind, FlatTree};

/// How one path differs between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathChange {
    /// Only in the first tree.
    Removed,
    /// Only in the second tree.
    Added,
    /// In both; each string names one differing property (`mode 0o644→0o755`).
    Changed(Vec<String>),
}

/// One differing path (root-relative, shown with a leading `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathDiff {
    pub path: String,
    /// Type word of the entry in the first/second tree (`file`, `dir`, ...), when present.
    pub kinds: (Option<&'static str>, Option<&'static str>),
    pub change: PathChange,
}

impl fmt::Display for PathDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.change {
            PathChange::Removed => write!(
                f,
                "{}: only in the first image ({})",
                self.path,
                self.kinds.0.unwrap_or("?")
            ),
            PathChange::Added => write!(
                f,
                "{}: only in the second image ({})",
                self.path,
                self.kinds.1.unwrap_or("?")
            ),
            PathChange::Changed(what) => write!(f, "{}: {}", self.path, what.join(", ")),
        }
    }
}

/// The type word of an entry.
pub fn kind_name(kind: &FlatKind) -> &'static str {
    match kind {
        FlatKind::Dir => "dir",
        FlatKind::File { .. } => "file",
        FlatKind::Symlink { .. } => "symlink",
        FlatKind::Char { .. } => "char device",
        FlatKind::Block { .. } => "block device",
        FlatKind::Fifo => "fifo",
    }
}

/// For every path that is a hard link of an earlier path (by name order), that earlier path.
fn link_leaders(tree: &FlatTree) -> BTreeMap<&[u8], &[u8]> {
    let mut first: BTreeMap<u64, &[u8]> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (path, e) in &tree.entries {
        if e.inode == 0 {
            continue;
        }
        match first.get(&e.inode) {
            Some(leader) => {
                out.insert(path.as_slice(), *leader);
            }
            None => {
                first.insert(e.inode, path.as_slice());
            }
        }
    }
    out
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

fn show(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

fn describe_xattrs(x: &[(Vec<u8>, Vec<u8>)]) -> String {
    if x.is_empty() {
        return "none".into();
    }
    let names: Vec<String> = x
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    names.join(" ")
}

/// What differs between two entries of one path.
fn entry_changes(a: &FlatEntry, b: &FlatEntry) -> Vec<String> {
    let mut what = Vec::new();
    match (&a.kind, &b.kind) {
        (
            FlatKind::File {
                size: sa,
                sha256: ha,
            },
            FlatKind::File {
                size: sb,
                sha256: hb,
            },
        ) => {
            if ha != hb {
                what.push(format!(
                    "content sha256:{}…→sha256:{}… ({sa}→{sb} bytes)",
                    short(ha),
                    short(hb)
                ));
            }
        }
        (FlatKind::Symlink { target: ta }, FlatKind::Symlink { target: tb }) => {
            if ta != tb {
                what.push(format!(
                    "symlink target `{}`→`{}`",
                    String::from_utf8_lossy(ta),
                    String::from_utf8_lossy(tb)
                ));
            }
        }
        (x, y) if std::mem::discriminant(x) == std::mem::discriminant(y) => {
            if x != y {
                what.push(format!("device {x:?}→{y:?}"));
            }
        }
        (x, y) => what.push(format!("type {}→{}", kind_name(x), kind_name(y))),
    }
    let symlinks = matches!(a.kind, FlatKind::Symlink { .. });
    if a.mode != b.mode && !symlinks {
        what.push(format!("mode 0o{:o}→0o{:o}", a.mode, b.mode));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        what.push(format!("owner {}:{}→{}:{}", a.uid, a.gid, b.uid, b.gid));
    }
    if a.mtime != b.mtime {
        what.push(format!("mtime {}→{}", a.mtime, b.mtime));
    }
    if a.xattrs != b.xattrs {
        let (na, nb) = (describe_xattrs(&a.xattrs), describe_xattrs(&b.xattrs));
        if na == nb {
            what.push(format!("xattr values ({na})"));
        } else {
            what.push(format!("xattrs {na}→{nb}"));
        }
    }
    what
}

/// Every path that differs between `a` and `b`, in path order.
pub fn diff_trees(a: &FlatTree, b: &FlatTree) -> Vec<PathDiff> {
    let (la, lb) = (link_leaders(a), link_leaders(b));
    let paths: BTreeSet<&Vec<u8>> = a.entries.keys().chain(b.entries.keys()).collect();
    let mut out = Vec::new();
    for p in paths {
        let (ea, eb) = (a.entries.get(p), b.entries.get(p));
        let kinds = (
            ea.map(|e| kind_name(&e.kind)),
            eb.map(|e| kind_name(&e.kind)),
        );
        let change = match (ea, eb) {
            (Some(_), None) => PathChange::Removed,
            (None, Some(_)) => PathChange::Added,
            (Some(ea), Some(eb)) => {
                let mut what = entry_changes(ea, eb);
                let (xa, xb) = (la.get(p.as_slice()), lb.get(p.as_slice()));
                if xa != xb {
                    let link = |x: Option<&&[u8]>| match x {
                        Some(t) => format!("a hard link of {}", show(t)),
                        None => "not a hard link".to_string(),
                    };
                    what.push(format!("{}→{}", link(xa), link(xb)));
                }
                if what.is_empty() {
                    continue;
                }
                PathChange::Changed(what)
            }
            (None, None) => continue,
        };
        out.push(PathDiff {
            path: show(p),
            kinds,
            change,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sha: &str, mode: u32, mtime: i64, inode: u64) -> FlatEntry {
        FlatEntry {
            kind: FlatKind::File {
                size: 3,
                sha256: sha.repeat(64 / sha.len()),
            },
            mode,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: Vec::new(),
            inode,
        }
    }

    fn tree(entries: Vec<(&str, FlatEntry)>) -> FlatTree {
        let mut t = FlatTree::new();
        for (p, e) in entries {
            t.entries.insert(p.as_bytes().to_vec(), e);
        }
        t
    }

    #[test]
    fn identical_trees_have_no_differences() {
        let a = tree(vec![("a", file("ab", 0o644, 5, 1))]);
        assert!(diff_trees(&a, &a.clone()).is_empty());
    }

    #[test]
    fn each_property_is_named() {
        let a = tree(vec![
            ("same", file("ab", 0o644, 5, 1)),
            ("content", file("ab", 0o644, 5, 2)),
            ("meta", file("ab", 0o644, 5, 3)),
            ("gone", file("ab", 0o644, 5, 4)),
        ]);
        let mut meta = file("ab", 0o755, 6, 3);
        meta.uid = 1000;
        let b = tree(vec![
            ("same", file("ab", 0o644, 5, 1)),
            ("content", file("cd", 0o644, 5, 2)),
            ("meta", meta),
            ("new", file("ab", 0o644, 5, 4)),
        ]);
        let d: Vec<String> = diff_trees(&a, &b).iter().map(|d| d.to_string()).collect();
        assert_eq!(d.len(), 4, "{d:?}");
        assert_eq!(
            d[0],
            "/content: content sha256:abababababab…→sha256:cdcdcdcdcdcd… (3→3 bytes)"
        );
        assert_eq!(d[1], "/gone: only in the first image (file)");
        assert_eq!(d[2], "/meta: mode 0o644→0o755, owner 0:0→1000:0, mtime 5→6");
        assert_eq!(d[3], "/new: only in the second image (file)");
    }

    #[test]
    fn type_symlink_and_hard_links() {
        let link = |t: &str| FlatEntry {
            kind: FlatKind::Symlink {
                target: t.as_bytes().to_vec(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
            inode: 9,
        };
        let a = tree(vec![
            ("l", link("/a")),
            ("t", file("ab", 0o644, 0, 1)),
            ("x", file("ab", 0o644, 0, 2)),
            ("y", file("ab", 0o644, 0, 2)),
        ]);
        let mut t = link("/a");
        t.inode = 1;
        let b = tree(vec![
            ("l", link("/b")),
            ("t", t),
            ("x", file("ab", 0o644, 0, 2)),
            ("y", file("ab", 0o644, 0, 3)),
        ]);
        let d: Vec<String> = diff_trees(&a, &b).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            d,
            [
                "/l: symlink target `/a`→`/b`",
                "/t: type file→symlink, mode 0o644→0o777",
                "/y: a hard link of /x→not a hard link",
            ]
        );
    }
}
