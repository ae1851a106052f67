//! The logical flattener: applies an image's layers in order to an in-memory tree (same
//! whiteout, opaque and symlink-parent semantics as the on-disk unpacker) and lists every path
//! with type, mode, owner, size, content sha256 and symlink target; hardlinks show as the file
//! they point at. This is the comparison format of the build conformance suite. Entries also
//! keep mtime, xattrs and an inode number (shared by hard links), and file contents can be
//! kept aside in a [`Spool`], so writers can produce the final root filesystem from the tree.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::digest::Hasher;
use crate::error::{Error, IoContext, Result};
use crate::image::ImageRecord;
use crate::layer::path::{self, AbsolutePaths, Meaning, RelPath};
use crate::layer::tar::{Kind, TarReader};
use crate::limits::Limits;
use crate::store::Store;

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlatKind {
    Dir,
    File { size: u64, sha256: String },
    Symlink { target: Vec<u8> },
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
    Fifo,
}

/// One path of the flattened image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatEntry {
    pub kind: FlatKind,
    /// Permission bits incl. setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Modification time in whole seconds, as the layer stored it (0 for implied parents).
    pub mtime: i64,
    /// Extended attributes sorted by name; overlayfs control attributes are dropped.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Paths with the same inode number are hard links of one node (0 for directories).
    pub inode: u64,
}

impl FlatEntry {
    /// The conformance-suite string: `dir 0o755 0:0`, `file 0o644 0:0 75 117b750582e90341`,
    /// `symlink 0:0 -> /bin/busybox` (devices: `char 0o666 0:0 1,3`, `fifo 0o644 0:0`).
    pub fn describe(&self) -> String {
        let own = format!("{}:{}", self.uid, self.gid);
        let mode = format!("0o{:o}", self.mode);
        match &self.kind {
            FlatKind::Dir => format!("dir {mode} {own}"),
            FlatKind::File { size, sha256 } => {
                format!("file {mode} {own} {size} {}", &sha256[..16])
            }
            FlatKind::Symlink { target } => {
                format!("symlink {own} -> {}", String::from_utf8_lossy(target))
            }
            FlatKind::Char { major, minor } => format!("char {mode} {own} {major},{minor}"),
            FlatKind::Block { major, minor } => format!("block {mode} {own} {major},{minor}"),
            FlatKind::Fifo => format!("fifo {mode} {own}"),
        }
    }
}

/// A flattened filesystem: root-relative paths (no leading `/`) to entries.
#[derive(Debug, Clone, Default)]
pub struct FlatTree {
    pub entries: BTreeMap<Vec<u8>, FlatEntry>,
    /// The last inode number handed out.
    inodes: u64,
}

/// File contents set aside while flattening, by inode, in an unlinked temporary file: what a
/// writer of the final root filesystem reads after the tree is complete. Contents of files a
/// later layer replaced stay in the file (it grows to at most the layers' total file size).
#[derive(Debug)]
pub struct Spool {
    file: File,
    len: u64,
    /// inode → (offset, size)
    offsets: HashMap<u64, (u64, u64)>,
}

impl Spool {
    /// An empty spool in `dir` (the file has no name: nothing is left behind, even on a crash).
    pub fn new_in(dir: &Path) -> Result<Spool> {
        std::fs::create_dir_all(dir).ctx("create directory", dir)?;
        let file = tempfile::tempfile_in(dir).ctx("create a spool file in", dir)?;
        Ok(Spool {
            file,
            len: 0,
            offsets: HashMap::new(),
        })
    }

    fn append(&mut self, inode: u64, data: &[u8]) -> io::Result<()> {
        let entry = self.offsets.entry(inode).or_insert((self.len, 0));
        entry.1 += data.len() as u64;
        self.file.write_all_at(data, self.len)?;
        self.len += data.len() as u64;
        Ok(())
    }

    /// The contents of the file with `inode`, if it was spooled (empty files may not be).
    pub fn contents(&self, inode: u64) -> impl Read + '_ {
        let (offset, size) = self.offsets.get(&inode).copied().unwrap_or((0, 0));
        SpoolReader {
            file: &self.file,
            pos: offset,
            end: offset + size,
        }
    }
}

struct SpoolReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for SpoolReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

const MAX_SYMLINKS: u32 = 40;

impl FlatTree {
    pub fn new() -> FlatTree {
        FlatTree::default()
    }

    /// Apply one uncompressed layer stream on top.
    pub fn apply_layer(&mut self, reader: impl Read, limits: &Limits, name: &str) -> Result<()> {
        self.apply_layer_spooled(reader, limits, name, None)
    }

    /// Apply one uncompressed layer stream on top, copying file contents into `spool`.
    pub fn apply_layer_spooled(
        &mut self,
        reader: impl Read,
        limits: &Limits,
        name: &str,
        mut spool: Option<&mut Spool>,
    ) -> Result<()> {
        let mut tar = TarReader::new(reader, limits, name);
        // This layer's paths: true = own entry, false = ancestor of one.
        let mut seen: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        while let Some(entry) = tar.next_entry()? {
            let meaning = path::interpret(&entry.path, AbsolutePaths::Strip, name)?;
            match meaning {
                Meaning::Ignore => {}
                Meaning::Whiteout(p) => {
                    let Some(p) = self.resolve_parent(&p, false) else {
                        continue;
                    };
                    match seen.get(p.as_bytes()) {
                        Some(true) => {}
                        Some(false) => self.hide_children(&p, &seen),
                        None => self.remove_tree(&p),
                    }
                }
                Meaning::Opaque(d) => {
                    let Some(d) = self.resolve_dir(&d) else {
                        continue;
                    };
                    for a in d.ancestors() {
                        seen.entry(a.to_vec()).or_insert(false);
                    }
                    seen.entry(d.as_bytes().to_vec()).or_insert(false);
                    self.hide_children(&d, &seen);
                }
                Meaning::Add(p) => {
                    if p.is_root() {
                        continue; // root attributes are not part of the comparison
                    }
                    let Some(p) = self.resolve_parent(&p, true) else {
                        return Err(Error::layer(
                            name,
                            format!(
                                "cannot place `{}`: a parent is not a directory",
                                entry.display_path()
                            ),
                        ));
                    };
                    if entry.kind == Kind::Char && entry.dev_major == 0 && entry.dev_minor == 0 {
                        return Err(Error::layer(
                            name,
                            format!(
                                "`{}` is a 0:0 character device, which overlayfs would treat as a whiteout",
                                p.display()
                            ),
                        ));
                    }
                    self.inodes += 1;
                    let inode = self.inodes;
                    let kind = match entry.kind {
                        Kind::Dir => FlatKind::Dir,
                        Kind::File => {
                            let mut h = Hasher::new();
                            let mut buf = vec![0u8; 1 << 16];
                            let mut data = tar.data();
                            loop {
                                let n = match data.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => n,
                                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                                    Err(e) => return Err(tar.data_error(&entry, e)),
                                };
                                h.update(&buf[..n]);
                                if let Some(spool) = spool.as_deref_mut() {
                                    spool.append(inode, &buf[..n]).map_err(|e| {
                                        Error::io("write the spool file", "<spool>", e)
                                    })?;
                                }
                            }
                            let size = h.len();
                            FlatKind::File {
                                size,
                                sha256: h.finish().hex().to_string(),
                            }
                        }
                        Kind::Symlink => FlatKind::Symlink {
                            target: entry.link.clone(),
                        },
                        Kind::Hardlink => {
                            let target = path::clean(&entry.link, AbsolutePaths::Strip)
                                .map_err(|m| Error::layer(name, format!("hardlink target {m}")))?;
                            let found = self
                                .resolve_parent(&target, false)
                                .and_then(|t| self.entries.get(t.as_bytes()).cloned());
                            match found {
                                Some(e) if e.kind != FlatKind::Dir => {
                                    for a in p.ancestors() {
                                        seen.entry(a.to_vec()).or_insert(false);
                                    }
                                    seen.insert(p.as_bytes().to_vec(), true);
                                    self.replace(&p, e);
                                    continue;
                                }
                                _ => {
                                    return Err(Error::layer(
                                        name,
                                        format!(
                                            "hardlink `{}` target `{}` not found",
                                            entry.display_path(),
                                            target.display()
                                        ),
                                    ));
                                }
                            }
                        }
                        Kind::Char => FlatKind::Char {
                            major: entry.dev_major,
                            minor: entry.dev_minor,
                        },
                        Kind::Block => FlatKind::Block {
                            major: entry.dev_major,
                            minor: entry.dev_minor,
                        },
                        Kind::Fifo => FlatKind::Fifo,
                    };
                    for a in p.ancestors() {
                        seen.entry(a.to_vec()).or_insert(false);
                    }
                    seen.insert(p.as_bytes().to_vec(), true);
                    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = entry
                        .xattrs
                        .iter()
                        .filter(|(k, _)| !is_overlay_xattr(k))
                        .cloned()
                        .collect();
                    xattrs.sort();
                    xattrs.dedup_by(|a, b| a.0 == b.0);
                    let new = FlatEntry {
                        inode: if kind == FlatKind::Dir { 0 } else { inode },
                        kind,
                        mode: entry.mode,
                        uid: entry.uid,
                        gid: entry.gid,
                        mtime: entry.mtime,
                        xattrs,
                    };
                    if new.kind == FlatKind::Dir
                        && self
                            .entries
                            .get(p.as_bytes())
                            .is_some_and(|e| e.kind == FlatKind::Dir)
                    {
                        self.entries.insert(p.as_bytes().to_vec(), new); // attributes replaced, children kept
                    } else {
                        self.replace(&p, new);
                    }
                }
            }
        }
        Ok(())
    }

    fn replace(&mut self, p: &RelPath, e: FlatEntry) {
        self.remove_tree(p);
        self.entries.insert(p.as_bytes().to_vec(), e);
    }

    /// Remove `p` and everything below it.
    fn remove_tree(&mut self, p: &RelPath) {
        self.entries.remove(p.as_bytes());
        let keys: Vec<Vec<u8>> = self.children_range(p).map(|(k, _)| k.clone()).collect();
        for k in keys {
            self.entries.remove(&k);
        }
    }

    fn children_range(&self, d: &RelPath) -> impl Iterator<Item = (&Vec<u8>, &FlatEntry)> {
        let mut lo = d.as_bytes().to_vec();
        if !lo.is_empty() {
            lo.push(b'/');
        }
        let lo2 = lo.clone();
        self.entries
            .range(lo..)
            .take_while(move |(k, _)| k.starts_with(&lo2))
    }

    /// Remove everything below `d` not written by the current layer (opaque semantics).
    fn hide_children(&mut self, d: &RelPath, seen: &BTreeMap<Vec<u8>, bool>) {
        let doomed: Vec<Vec<u8>> = self
            .children_range(d)
            .map(|(k, _)| k)
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
    }

    /// Resolve `p`'s parent through in-tree symlinks (absolute ones from the root), creating
    /// implicit `0755` directories when `create`. `None` if a parent is not a directory or a
    /// symlink loop is hit (or, without `create`, something is missing).
    fn resolve_parent(&mut self, p: &RelPath, create: bool) -> Option<RelPath> {
        let (parent, name) = p.split_last()?;
        let dir = self.resolve(&parent, create)?;
        Some(dir.join(name))
    }

    fn resolve_dir(&mut self, d: &RelPath) -> Option<RelPath> {
        self.resolve(d, false)
    }

    fn resolve(&mut self, d: &RelPath, create: bool) -> Option<RelPath> {
        let mut queue: std::collections::VecDeque<Vec<u8>> =
            d.components().map(<[u8]>::to_vec).collect();
        let mut cur: Vec<Vec<u8>> = Vec::new();
        let mut links = 0;
        while let Some(c) = queue.pop_front() {
            if c.is_empty() || c == b"." {
                continue;
            }
            if c == b".." {
                cur.pop();
                continue;
            }
            cur.push(c);
            let key = cur.join(&b'/');
            match self.entries.get(&key).map(|e| e.kind.clone()) {
                Some(FlatKind::Dir) => {}
                Some(FlatKind::Symlink { target }) => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return None;
                    }
                    cur.pop();
                    if target.first() == Some(&b'/') {
                        cur.clear();
                    }
                    for part in target.split(|&b| b == b'/').rev() {
                        queue.push_front(part.to_vec());
                    }
                }
                Some(_) => return None,
                None if create => {
                    self.entries.insert(
                        key,
                        FlatEntry {
                            kind: FlatKind::Dir,
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                            mtime: 0,
                            xattrs: Vec::new(),
                            inode: 0,
                        },
                    );
                }
                None => return None,
            }
        }
        Some(RelPath(cur.join(&b'/')))
    }

    /// `{"/bin": "dir 0o755 0:0", ...}`: the conformance comparison map.
    pub fn to_conformance_map(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .map(|(k, v)| (format!("/{}", String::from_utf8_lossy(k)), v.describe()))
            .collect()
    }

    /// One line per path, `PATH<TAB>DESCRIPTION`, for diffs.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in self.to_conformance_map() {
            let _ = writeln!(s, "{k}\t{v}");
        }
        s
    }
}

/// Flatten a stored image: every layer decompressed (bounded) and applied in order.
pub fn flatten_image(store: &Store, image: &ImageRecord) -> Result<FlatTree> {
    flatten_image_spooled(store, image, None)
}

/// Flatten a stored image, keeping file contents in `spool` when given.
pub fn flatten_image_spooled(
    store: &Store,
    image: &ImageRecord,
    mut spool: Option<&mut Spool>,
) -> Result<FlatTree> {
    let mut tree = FlatTree::new();
    for layer in &image.layers {
        let r = store.open_layer(&layer.descriptor)?;
        tree.apply_layer_spooled(
            r,
            store.limits(),
            layer.descriptor.digest.as_str(),
            spool.as_deref_mut(),
        )?;
    }
    Ok(tree)
}
