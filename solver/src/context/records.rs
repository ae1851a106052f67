//! Per-file records of a resolved COPY source set, which cache keys are computed from
//! (`BuildContext::records`): one [`FileRecord`] per copied entry, sorted by destination path
//! (when two sources write the same path, the last wins), holding the destination path, type,
//! mode, uid, gid, size (0 for directories), symlink target and blake3 content hash — never
//! times. The context path is kept only for messages. [`Overrides`] applies `--chown` and
//! `--chmod`, so keys follow the effective result; [`Overrides::context_default`] is BuildKit's
//! 0:0 ownership.
//!
//! [`digest`] is blake3 over an explicit encoding: the tag `rbuild.context.records\0`, u32
//! version ([`RECORDS_VERSION`]), u64 count, then per record the length-prefixed path, a kind
//! byte, mode, uid, gid, size, and the optional target and hash, all little-endian. [`diff`]
//! returns added, removed and changed paths with the fields that changed (content,
//! `mode 0664→0644`, owner, type, symlink target); `summary(limit)` is the one line `explain`
//! prints.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::hash::ContentHash;
use super::pathutil;

/// Version of the record encoding fed to [`digest`]. Bump it whenever the encoding or the
/// meaning of a field changes, so old cache keys can never collide with new ones.
pub const RECORDS_VERSION: u32 = 1;

/// The type of a copied entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
}

impl RecordKind {
    fn tag(self) -> u8 {
        match self {
            RecordKind::File => 1,
            RecordKind::Dir => 2,
            RecordKind::Symlink => 3,
        }
    }

    /// `file`, `dir` or `symlink`.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::File => "file",
            RecordKind::Dir => "dir",
            RecordKind::Symlink => "symlink",
        }
    }
}

/// What one copied entry contributes to a cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Destination-relative path (the key's identity for the entry; `""` is the copied
    /// directory itself).
    pub path: PathBuf,
    /// Context-relative source path, for messages only (not part of the digest: the key
    /// follows the effective result).
    pub source_path: PathBuf,
    /// Type.
    pub kind: RecordKind,
    /// Permission bits (`0o7777` mask) after `--chmod`.
    pub mode: u32,
    /// Owner after `--chown`.
    pub uid: u32,
    /// Group after `--chown`.
    pub gid: u32,
    /// Size in bytes for files, target length for symlinks, 0 for directories (a directory's
    /// `st_size` depends on the filesystem, not on what is copied).
    pub size: u64,
    /// Symlink target, verbatim.
    pub link_target: Option<PathBuf>,
    /// blake3 of a file's content.
    pub content: Option<ContentHash>,
}

/// How `--chmod` changes a mode.
#[derive(Clone)]
pub enum ModeOverride {
    /// An octal mode for every file and directory (symlinks keep theirs).
    Octal(u32),
    /// Any rule (e.g. symbolic `u=rwX,go=rX`): given the kind and the current mode.
    With(Arc<dyn Fn(RecordKind, u32) -> u32 + Send + Sync>),
}

impl fmt::Debug for ModeOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModeOverride::Octal(m) => write!(f, "Octal({m:#o})"),
            ModeOverride::With(_) => f.write_str("With(..)"),
        }
    }
}

/// The effective ownership and mode applied by the COPY, so keys follow the result.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--chown` user.
    pub uid: Option<u32>,
    /// `--chown` group.
    pub gid: Option<u32>,
    /// `--chmod`.
    pub mode: Option<ModeOverride>,
}

impl Overrides {
    /// BuildKit's default for COPY from the context without `--chown`: everything is owned by
    /// 0:0, modes are kept.
    pub fn context_default() -> Self {
        Overrides {
            uid: Some(0),
            gid: Some(0),
            mode: None,
        }
    }

    /// Applies the overrides to one record.
    pub fn apply(&self, r: &mut FileRecord) {
        if let Some(u) = self.uid {
            r.uid = u;
        }
        if let Some(g) = self.gid {
            r.gid = g;
        }
        match &self.mode {
            Some(ModeOverride::Octal(m)) if r.kind != RecordKind::Symlink => r.mode = m & 0o7777,
            Some(ModeOverride::With(f)) if r.kind != RecordKind::Symlink => {
                r.mode = f(r.kind, r.mode) & 0o7777;
            }
            _ => {}
        }
    }
}

/// Sorts records by destination path and keeps the last record for a path written twice
/// (later sources overwrite earlier ones), giving the canonical list a key is computed from.
pub fn canonicalize(records: Vec<FileRecord>) -> Vec<FileRecord> {
    let mut by_path: BTreeMap<Vec<u8>, FileRecord> = BTreeMap::new();
    for r in records {
        by_path.insert(r.path.as_os_str().as_bytes().to_vec(), r);
    }
    by_path.into_values().collect()
}

/// A digest of a record list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordsDigest(pub [u8; 32]);

impl fmt::Display for RecordsDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", hex::encode(self.0))
    }
}

/// Writes the versioned encoding of `records` (in the given order) to `out`.
///
/// Encoding v1, all integers little-endian: the ASCII tag `rbuild.context.records` and a NUL,
/// u32 version, u64 count, then per record: u32 path length + path bytes, u8 kind (1 file,
/// 2 dir, 3 symlink), u32 mode, u32 uid, u32 gid, u64 size, u8 has-target (+ u32 length +
/// target bytes), u8 has-content (+ 32 hash bytes). The source path is not encoded.
pub fn encode(records: &[FileRecord], out: &mut Vec<u8>) {
    out.extend_from_slice(b"rbuild.context.records\0");
    out.extend_from_slice(&RECORDS_VERSION.to_le_bytes());
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for r in records {
        let p = r.path.as_os_str().as_bytes();
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(p);
        out.push(r.kind.tag());
        out.extend_from_slice(&r.mode.to_le_bytes());
        out.extend_from_slice(&r.uid.to_le_bytes());
        out.extend_from_slice(&r.gid.to_le_bytes());
        out.extend_from_slice(&r.size.to_le_bytes());
        match &r.link_target {
            Some(t) => {
                let t = t.as_os_str().as_bytes();
                out.push(1);
                out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                out.extend_from_slice(t);
            }
            None => out.push(0),
        }
        match &r.content {
            Some(h) => {
                out.push(1);
                out.extend_from_slice(h);
            }
            None => out.push(0),
        }
    }
}

/// blake3 over [`encode`]`(records)`.
pub fn digest(records: &[FileRecord]) -> RecordsDigest {
    let mut buf = Vec::with_capacity(64 + records.len() * 96);
    encode(records, &mut buf);
    RecordsDigest(*blake3::hash(&buf).as_bytes())
}

/// One field that differs between two records of the same path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldChange {
    /// Content hash (and maybe size) differs.
    Content,
    /// Permission bits.
    Mode {
        /// Before.
        old: u32,
        /// After.
        new: u32,
    },
    /// Owner.
    Owner {
        /// Before (uid, gid).
        old: (u32, u32),
        /// After.
        new: (u32, u32),
    },
    /// Type.
    Kind {
        /// Before.
        old: RecordKind,
        /// After.
        new: RecordKind,
    },
    /// Symlink target.
    LinkTarget {
        /// Before.
        old: PathBuf,
        /// After.
        new: PathBuf,
    },
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldChange::Content => f.write_str("content"),
            FieldChange::Mode { old, new } => write!(f, "mode {old:04o}→{new:04o}"),
            FieldChange::Owner { old, new } => {
                write!(f, "owner {}:{}→{}:{}", old.0, old.1, new.0, new.1)
            }
            FieldChange::Kind { old, new } => write!(f, "type {}→{}", old.name(), new.name()),
            FieldChange::LinkTarget { old, new } => {
                write!(f, "symlink target `{}`→`{}`", old.display(), new.display())
            }
        }
    }
}

/// A path present in both lists whose record differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// Destination-relative path.
    pub path: PathBuf,
    /// Context path now (for messages).
    pub source_path: PathBuf,
    /// What differs, in a fixed order (type, content, mode, owner, target).
    pub fields: Vec<FieldChange>,
}

/// The difference between two record lists, each part sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordsDiff {
    /// Only in the new list.
    pub added: Vec<FileRecord>,
    /// Only in the old list.
    pub removed: Vec<FileRecord>,
    /// In both, different.
    pub changed: Vec<Changed>,
}

impl RecordsDiff {
    /// True when the lists are equivalent.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// A one-line summary naming at most `limit` paths, e.g.
    /// `3 files changed — src/main.rs (content), run.sh (mode 0664→0644), and 1 more`.
    pub fn summary(&self, limit: usize) -> String {
        let mut parts: Vec<String> = Vec::new();
        for c in &self.changed {
            let what: Vec<String> = c.fields.iter().map(ToString::to_string).collect();
            parts.push(format!(
                "{} ({})",
                show(&c.source_path, &c.path),
                what.join(", ")
            ));
        }
        for a in &self.added {
            parts.push(format!("{} (added)", show(&a.source_path, &a.path)));
        }
        for r in &self.removed {
            parts.push(format!("{} (removed)", show(&r.source_path, &r.path)));
        }
        let n = parts.len();
        if n == 0 {
            return "no file changed".into();
        }
        let more = n.saturating_sub(limit);
        parts.truncate(limit);
        let mut s = format!(
            "{n} file{} changed — {}",
            if n == 1 { "" } else { "s" },
            parts.join(", ")
        );
        if more > 0 {
            s.push_str(&format!(", and {more} more"));
        }
        s
    }
}

fn show(source: &std::path::Path, dest: &std::path::Path) -> String {
    let p = if source.as_os_str().is_empty() {
        dest
    } else {
        source
    };
    pathutil::display(p.as_os_str().as_bytes())
}

/// Compares two record lists by destination path (the last record wins for a repeated path).
pub fn diff(old: &[FileRecord], new: &[FileRecord]) -> RecordsDiff {
    let index = |rs: &[FileRecord]| -> BTreeMap<Vec<u8>, FileRecord> {
        rs.iter()
            .map(|r| (r.path.as_os_str().as_bytes().to_vec(), r.clone()))
            .collect()
    };
    let (o, n) = (index(old), index(new));
    let mut d = RecordsDiff::default();
    for (p, nr) in &n {
        let Some(or) = o.get(p) else {
            d.added.push(nr.clone());
            continue;
        };
        let mut fields = Vec::new();
        if or.kind != nr.kind {
            fields.push(FieldChange::Kind {
                old: or.kind,
                new: nr.kind,
            });
        } else {
            if or.content != nr.content || (nr.kind == RecordKind::File && or.size != nr.size) {
                fields.push(FieldChange::Content);
            }
            if or.link_target != nr.link_target {
                fields.push(FieldChange::LinkTarget {
                    old: or.link_target.clone().unwrap_or_default(),
                    new: nr.link_target.clone().unwrap_or_default(),
                });
            }
        }
        if or.mode != nr.mode {
            fields.push(FieldChange::Mode {
                old: or.mode,
                new: nr.mode,
            });
        }
        if (or.uid, or.gid) != (nr.uid, nr.gid) {
            fields.push(FieldChange::Owner {
                old: (or.uid, or.gid),
                new: (nr.uid, nr.gid),
            });
        }
        if !fields.is_empty() {
            d.changed.push(Changed {
                path: nr.path.clone(),
                source_path: nr.source_path.clone(),
                fields,
            });
        }
    }
    d.removed = o
        .iter()
        .filter(|(p, _)| !n.contains_key(*p))
        .map(|(_, r)| r.clone())
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, content: u8, mode: u32) -> FileRecord {
        FileRecord {
            path: path.into(),
            source_path: path.into(),
            kind: RecordKind::File,
            mode,
            uid: 0,
            gid: 0,
            size: 3,
            link_target: None,
            content: Some([content; 32]),
        }
    }

    /// The digest is stable across runs: a golden value pins the v1 encoding.
    #[test]
    fn digest_is_pinned_by_a_golden_value() {
        let rs = vec![rec("a", 1, 0o644), rec("b", 2, 0o755)];
        let mut buf = Vec::new();
        encode(&rs, &mut buf);
        assert!(buf.starts_with(b"rbuild.context.records\0\x01\0\0\0\x02\0\0\0\0\0\0\0"));
        assert_eq!(
            buf.len(),
            23 + 4 + 8 + 2 * (4 + 1 + 1 + 12 + 8 + 1 + 1 + 32)
        );
        let d1 = digest(&rs);
        // Changing this value means changing the encoding: bump RECORDS_VERSION too.
        assert_eq!(
            d1.to_string(),
            "blake3:ec3c87e6571a3f797d1fe2312ce8ffefb2bec934d0c4cbf8898728b42e6844c0"
        );
        assert_eq!(d1, digest(&rs.clone()));
        assert_eq!(
            d1.to_string(),
            format!("blake3:{}", hex::encode(blake3::hash(&buf).as_bytes()))
        );
    }

    /// Every field except the source path and times changes the digest.
    #[test]
    fn digest_covers_every_field() {
        let base = rec("a", 1, 0o644);
        let d = digest(std::slice::from_ref(&base));
        type Edit = Box<dyn Fn(&mut FileRecord)>;
        let variants: Vec<Edit> = vec![
            Box::new(|r| r.path = "b".into()),
            Box::new(|r| r.kind = RecordKind::Dir),
            Box::new(|r| r.mode = 0o600),
            Box::new(|r| r.uid = 1),
            Box::new(|r| r.gid = 1),
            Box::new(|r| r.size = 4),
            Box::new(|r| r.link_target = Some("x".into())),
            Box::new(|r| r.content = Some([9; 32])),
        ];
        for v in variants {
            let mut r = base.clone();
            v(&mut r);
            assert_ne!(digest(&[r]), d);
        }
        let mut r = base.clone();
        r.source_path = "elsewhere".into();
        assert_eq!(digest(&[r]), d);
    }

    /// Overrides make the key follow the effective result, not the local umask.
    #[test]
    fn overrides_apply_chown_and_chmod() {
        let ov = Overrides {
            uid: Some(1000),
            gid: Some(1000),
            mode: Some(ModeOverride::Octal(0o640)),
        };
        let mut a = rec("a", 1, 0o664);
        let mut b = rec("a", 1, 0o644);
        ov.apply(&mut a);
        ov.apply(&mut b);
        assert_eq!(digest(&[a.clone()]), digest(&[b]));
        assert_eq!((a.uid, a.gid, a.mode), (1000, 1000, 0o640));
        let mut l = rec("l", 0, 0o777);
        l.kind = RecordKind::Symlink;
        ov.apply(&mut l);
        assert_eq!(l.mode, 0o777, "symlink modes are not chmod-ed");
    }

    /// The diff names added, removed and changed paths with the fields that changed.
    #[test]
    fn diff_reports_fields() {
        let old = vec![
            rec("run.sh", 1, 0o664),
            rec("src/main.rs", 2, 0o644),
            rec("gone", 3, 0o644),
        ];
        let mut link = rec("l", 0, 0o777);
        link.kind = RecordKind::Symlink;
        link.content = None;
        link.link_target = Some("a".into());
        let mut old2 = old.clone();
        old2.push(link.clone());
        let mut new_link = link.clone();
        new_link.link_target = Some("b".into());
        let mut owner = rec("run.sh", 1, 0o644);
        owner.uid = 1000;
        let new = vec![
            owner,
            rec("src/main.rs", 9, 0o644),
            rec("new", 4, 0o644),
            new_link,
        ];
        let d = diff(&old2, &new);
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.removed.len(), 1);
        let shown: Vec<String> = d
            .changed
            .iter()
            .map(|c| {
                let f: Vec<String> = c.fields.iter().map(ToString::to_string).collect();
                format!("{} {}", c.path.display(), f.join(","))
            })
            .collect();
        assert_eq!(
            shown,
            [
                "l symlink target `a`→`b`",
                "run.sh mode 0664→0644,owner 0:0→1000:0",
                "src/main.rs content",
            ]
        );
        assert_eq!(
            d.summary(2),
            "5 files changed — l (symlink target `a`→`b`), run.sh (mode 0664→0644, owner \
             0:0→1000:0), and 3 more"
        );
        assert!(diff(&old, &old).is_empty());
    }

    /// Canonical lists are sorted by path and the last write of a path wins.
    #[test]
    fn canonicalize_sorts_and_keeps_last() {
        let rs = canonicalize(vec![
            rec("b", 1, 0o644),
            rec("a", 1, 0o644),
            rec("b", 2, 0o600),
        ]);
        let got: Vec<_> = rs.iter().map(|r| (r.path.clone(), r.mode)).collect();
        assert_eq!(got, [("a".into(), 0o644), ("b".into(), 0o600)]);
    }
}
