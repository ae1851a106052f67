//! The deterministic layer writer: a changeset becomes an uncompressed tar stream whose bytes
//! depend only on the change — entries in changeset order (sorted, parents first), headers built
//! field by field (ustar, empty uname/gname, no atime/ctime), PAX records for what ustar cannot
//! hold (long names and link targets, big ids and sizes, `SCHILY.xattr.*`), hard links only
//! between entries of the same layer, mtimes clamped to `SOURCE_DATE_EPOCH` when given. The
//! sha256 of the stream is computed while writing: it is the layer's diff_id (build layers
//! are stored uncompressed).
//!
//! Details: PAX records are sorted; `hdrcharset=BINARY` marks names that are not UTF-8;
//! overlayfs control xattrs and `security.selinux` are never written; whiteouts and opaque
//! markers are empty mode-0 files owned by 0:0, dated `SOURCE_DATE_EPOCH` (or 0); mtimes are
//! whole seconds. Contents of small files are read ahead, in order, by a second thread.
//!
//! The `tar` crate is used for header field encoding only: its `Builder` follows symlinks and
//! writes GNU long-name records by default, and `HeaderMode::Deterministic` loses ownership.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc;

use rbuild_store::digest::{CountingWriter, HashingWriter};

use crate::diff::{ChangeKind, Changeset};
use crate::error::{ExecError, IoContext, Result};
use crate::fsmeta::{Kind, Meta};

const BLOCK: usize = 512;
/// Largest value of an 8-byte octal header field (7 digits).
const MAX_OCTAL_8: u64 = 0o7_777_777;
/// Largest value of a 12-byte octal header field (11 digits).
const MAX_OCTAL_12: u64 = 0o77_777_777_777;

/// How to write a layer.
#[derive(Clone, Debug, Default)]
pub struct LayerOptions {
    /// Clamp every mtime to at most this (seconds since the epoch), for reproducible builds.
    /// Whiteouts and opaque markers get this time (or 0 when unset).
    pub source_date_epoch: Option<i64>,
}

/// The written layer: its diff_id (the digest of the uncompressed tar) and size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub diff_id: rbuild_store::Digest,
    pub size: u64,
}

/// Write `changeset` as a tar stream into `out`; returns the diff_id and size.
pub fn write_layer<W: Write>(
    changeset: &Changeset,
    out: W,
    options: &LayerOptions,
) -> Result<LayerInfo> {
    let mut hashing = HashingWriter::new(out);
    write_tar(changeset, &mut hashing, options)?;
    let (mut inner, diff_id, size) = hashing.finish();
    inner.flush().map_err(write_err)?;
    Ok(LayerInfo { diff_id, size })
}

/// Write `changeset` as a tar stream into `out` without hashing it (for sinks that hash, such
/// as a store blob writer); returns the number of bytes written.
pub fn write_tar<W: Write>(changeset: &Changeset, out: W, options: &LayerOptions) -> Result<u64> {
    let links = plan_links(changeset);
    // Contents of small files are read ahead, in order, by a second thread, so opening and
    // reading thousands of files overlaps with hashing and writing the stream.
    let data: Vec<usize> = (0..changeset.changes.len())
        .filter(|&i| links[i].is_none() && data_size(&changeset.changes[i]) > 0)
        .collect();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<(usize, Option<io::Result<Vec<u8>>>)>(PREFETCH_DEPTH);
        let data = &data;
        scope.spawn(move || {
            for &i in data {
                let change = &changeset.changes[i];
                let size = data_size(change);
                let read = (size <= PREFETCH_MAX).then(|| {
                    let mut buf = Vec::with_capacity(size as usize + 1);
                    std::fs::File::open(changeset.source(change))
                        .and_then(|f| f.take(size + 1).read_to_end(&mut buf))
                        .map(|_| buf)
                });
                if tx.send((i, read)).is_err() {
                    break;
                }
            }
        });
        let mut w = TarWriter {
            out: io::BufWriter::with_capacity(1 << 20, CountingWriter::new(out)),
            options,
            links: &links,
            prefetched: rx,
        };
        for (i, change) in changeset.changes.iter().enumerate() {
            w.change(changeset, i, change)?;
        }
        let end = [0u8; 2 * BLOCK];
        w.out.write_all(&end).map_err(write_err)?;
        let mut counting = w.out.into_inner().map_err(|e| write_err(e.into_error()))?;
        counting.flush().map_err(write_err)?;
        Ok(counting.count())
    })
}

/// Files up to this size are read ahead whole; bigger ones are streamed.
const PREFETCH_MAX: u64 = 1 << 20;
/// How many files may wait read ahead.
const PREFETCH_DEPTH: usize = 64;

/// The number of content bytes an entry carries (regular files only).
fn data_size(change: &crate::diff::Change) -> u64 {
    match &change.kind {
        ChangeKind::Entry(e) if e.meta.kind == Kind::File => e.meta.size,
        _ => 0,
    }
}

/// For each change, the index of the earlier entry it is a hard link to (same device and
/// inode, both in this layer), if any.
fn plan_links(cs: &Changeset) -> Vec<Option<usize>> {
    let mut first: HashMap<(u64, u64), usize> = HashMap::new();
    cs.changes
        .iter()
        .enumerate()
        .map(|(i, c)| match &c.kind {
            ChangeKind::Entry(e) if e.meta.kind != Kind::Dir && e.meta.nlink > 1 => {
                let key = (e.meta.dev, e.meta.ino);
                match first.get(&key) {
                    Some(&f) => Some(f),
                    None => {
                        first.insert(key, i);
                        None
                    }
                }
            }
            _ => None,
        })
        .collect()
}

fn write_err(e: io::Error) -> ExecError {
    ExecError::Io {
        action: "cannot write the layer to",
        path: "the layer blob".into(),
        source: e,
    }
}

struct TarWriter<'a, W: Write> {
    out: io::BufWriter<CountingWriter<W>>,
    options: &'a LayerOptions,
    /// For each change, the earlier entry it is a hard link to.
    links: &'a [Option<usize>],
    /// Contents read ahead, in the order of the data-carrying entries.
    prefetched: mpsc::Receiver<(usize, Option<io::Result<Vec<u8>>>)>,
}

impl<W: Write> TarWriter<'_, W> {
    fn change(&mut self, cs: &Changeset, index: usize, change: &crate::diff::Change) -> Result<()> {
        let path = change.path.as_os_str().as_bytes();
        let marker_time = self.options.source_date_epoch.unwrap_or(0).max(0) as u64;
        match &change.kind {
            ChangeKind::Whiteout | ChangeKind::Opaque => {
                let h = Fields {
                    path: path.to_vec(),
                    typeflag: b'0',
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    mtime: marker_time,
                    link: None,
                    dev: None,
                };
                write_header(&mut self.out, &h, &[]).map_err(write_err)
            }
            ChangeKind::Entry(e) => {
                let meta = &e.meta;
                let mut path = path.to_vec();
                let mut typeflag = match meta.kind {
                    Kind::File => b'0',
                    Kind::Dir => b'5',
                    Kind::Symlink => b'2',
                    Kind::CharDev => b'3',
                    Kind::BlockDev => b'4',
                    Kind::Fifo => b'6',
                    Kind::Socket => {
                        return Err(ExecError::Layer {
                            path: change.path.display().to_string(),
                            message: "sockets cannot be stored in a layer".into(),
                        });
                    }
                };
                if meta.kind == Kind::Dir {
                    path.push(b'/');
                }
                let mut link = e
                    .link_target
                    .as_ref()
                    .map(|t| t.as_os_str().as_bytes().to_vec());
                let mut size = if meta.kind == Kind::File {
                    meta.size
                } else {
                    0
                };
                if let Some(first) = self.links[index] {
                    typeflag = b'1';
                    link = Some(cs.changes[first].path.as_os_str().as_bytes().to_vec());
                    size = 0;
                }
                let mut mtime = meta.mtime.max(0) as u64;
                if let Some(epoch) = self.options.source_date_epoch {
                    mtime = mtime.min(epoch.max(0) as u64);
                }
                let h = Fields {
                    path,
                    typeflag,
                    mode: meta.mode,
                    uid: meta.uid as u64,
                    gid: meta.gid as u64,
                    size,
                    mtime,
                    link,
                    dev: matches!(meta.kind, Kind::CharDev | Kind::BlockDev)
                        .then(|| (meta.dev_major(), meta.dev_minor())),
                };
                let pax_xattrs: Vec<(Vec<u8>, &[u8])> = e
                    .xattrs
                    .iter()
                    .map(|(k, v)| {
                        let mut key = b"SCHILY.xattr.".to_vec();
                        key.extend_from_slice(k.as_bytes());
                        (key, v.as_slice())
                    })
                    .collect();
                write_header(&mut self.out, &h, &pax_xattrs).map_err(write_err)?;
                if typeflag == b'0' && size > 0 {
                    let src = cs.source(change);
                    match self.prefetched.recv() {
                        Ok((i, Some(read))) if i == index => {
                            let buf = read.ctx("cannot read", &src)?;
                            if buf.len() as u64 != meta.size {
                                return Err(changed_size(change, meta));
                            }
                            self.out.write_all(&buf).map_err(write_err)?;
                            pad(&mut self.out, meta.size).map_err(write_err)?;
                        }
                        Ok((i, None)) if i == index => self.data(&src, meta, change)?,
                        _ => {
                            return Err(ExecError::Layer {
                                path: change.path.display().to_string(),
                                message: "internal error: the read-ahead got out of step".into(),
                            });
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Copy exactly `meta.size` bytes of `src`, then pad to a block.
    fn data(
        &mut self,
        src: &std::path::Path,
        meta: &Meta,
        change: &crate::diff::Change,
    ) -> Result<()> {
        let file = std::fs::File::open(src).ctx("cannot read", src)?;
        let mut limited = file.take(meta.size);
        let copied = io::copy(&mut limited, &mut self.out).ctx("cannot read", src)?;
        let mut rest = limited.into_inner();
        let mut probe = [0u8; 1];
        let grew = rest.read(&mut probe).ctx("cannot read", src)? > 0;
        if copied != meta.size || grew {
            return Err(changed_size(change, meta));
        }
        pad(&mut self.out, copied).map_err(write_err)
    }
}

/// Write the PAX record block (when needed) and the ustar header of one entry.
pub(crate) fn write_header<W: Write>(
    out: &mut W,
    f: &Fields,
    xattrs: &[(Vec<u8>, &[u8])],
) -> io::Result<()> {
    let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut h = tar::Header::new_ustar();
    let (name, prefix) = match split_ustar_path(&f.path) {
        Some(np) => np,
        None => {
            pax.push((b"path".to_vec(), f.path.clone()));
            (&f.path[..f.path.len().min(100)], &[][..])
        }
    };
    if let Some(link) = &f.link
        && link.len() > 100
    {
        pax.push((b"linkpath".to_vec(), link.clone()));
    }
    let big = |key: &[u8], v: u64, max: u64, pax: &mut Vec<(Vec<u8>, Vec<u8>)>| {
        if v > max {
            pax.push((key.to_vec(), v.to_string().into_bytes()));
            0
        } else {
            v
        }
    };
    let uid = big(b"uid", f.uid, MAX_OCTAL_8, &mut pax);
    let gid = big(b"gid", f.gid, MAX_OCTAL_8, &mut pax);
    let size = big(b"size", f.size, MAX_OCTAL_12, &mut pax);
    let mtime = f.mtime.min(MAX_OCTAL_12);
    for (k, v) in xattrs {
        pax.push((k.clone(), v.to_vec()));
    }
    let needs_binary = pax
        .iter()
        .any(|(k, v)| (k == b"path" || k == b"linkpath") && std::str::from_utf8(v).is_err());
    if needs_binary {
        pax.push((b"hdrcharset".to_vec(), b"BINARY".to_vec()));
    }
    if !pax.is_empty() {
        pax.sort();
        write_pax_block(out, &pax)?;
    }
    {
        let u = h.as_ustar_mut().expect("a ustar header");
        u.name[..name.len()].copy_from_slice(name);
        u.prefix[..prefix.len()].copy_from_slice(prefix);
        if let Some(link) = &f.link {
            let n = link.len().min(100);
            u.linkname[..n].copy_from_slice(&link[..n]);
        }
        u.typeflag[0] = f.typeflag;
    }
    h.set_mode(f.mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(size);
    h.set_mtime(mtime);
    match f.dev {
        Some((major, minor)) => {
            h.set_device_major(major)?;
            h.set_device_minor(minor)?;
        }
        None => {
            let u = h.as_ustar_mut().expect("a ustar header");
            u.dev_major = [0; 8];
            u.dev_minor = [0; 8];
        }
    }
    h.set_cksum();
    out.write_all(h.as_bytes())
}

fn write_pax_block<W: Write>(out: &mut W, records: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    let mut data = Vec::new();
    for (key, value) in records {
        // "LEN KEY=VALUE\n" where LEN counts itself.
        let rest = 3 + key.len() + value.len();
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        data.extend_from_slice(len.to_string().as_bytes());
        data.push(b' ');
        data.extend_from_slice(key);
        data.push(b'=');
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    {
        let u = h.as_ustar_mut().expect("a ustar header");
        let name = b"././@PaxHeader";
        u.name[..name.len()].copy_from_slice(name);
        u.typeflag[0] = b'x';
        u.dev_major = [0; 8];
        u.dev_minor = [0; 8];
    }
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    out.write_all(h.as_bytes())?;
    out.write_all(&data)?;
    pad(out, data.len() as u64)
}

fn changed_size(change: &crate::diff::Change, meta: &Meta) -> ExecError {
    ExecError::Layer {
        path: change.path.display().to_string(),
        message: format!(
            "the file changed size while it was written ({} bytes expected)",
            meta.size
        ),
    }
}

/// The header fields of one entry before encoding.
pub(crate) struct Fields {
    pub(crate) path: Vec<u8>,
    pub(crate) typeflag: u8,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) size: u64,
    pub(crate) mtime: u64,
    pub(crate) link: Option<Vec<u8>>,
    pub(crate) dev: Option<(u32, u32)>,
}

/// Split a path into ustar (name ≤ 100, prefix ≤ 155) at a `/`, or `None` when it cannot fit.
fn split_ustar_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= 100 {
        return Some((path, &[]));
    }
    if path.len() > 256 {
        return None;
    }
    // The name part must be non-empty; a directory's trailing '/' stays in the name.
    let search_end = path.len() - 1;
    (0..search_end)
        .rev()
        .filter(|&i| path[i] == b'/')
        .find(|&i| i <= 155 && path.len() - i - 1 <= 100 && i > 0)
        .map(|i| (&path[i + 1..], &path[..i]))
}

pub(crate) fn pad<W: Write>(out: &mut W, len: u64) -> io::Result<()> {
    let rem = (len % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ustar_split_keeps_names_within_limits() {
        assert_eq!(split_ustar_path(b"a/b"), Some((&b"a/b"[..], &b""[..])));
        let long = [b"d".repeat(120), b"/".to_vec(), b"f".repeat(50)].concat();
        let (name, prefix) = split_ustar_path(&long).unwrap();
        assert_eq!(name, &b"f".repeat(50)[..]);
        assert_eq!(prefix, &b"d".repeat(120)[..]);
        assert!(split_ustar_path(&b"x".repeat(150)).is_none());
        let dir = [
            b"d".repeat(120),
            b"/".to_vec(),
            b"e".repeat(20),
            b"/".to_vec(),
        ]
        .concat();
        let (name, _) = split_ustar_path(&dir).unwrap();
        assert_eq!(name, &[b"e".repeat(20), b"/".to_vec()].concat()[..]);
    }

    use crate::diff::walk::{StubSet, diff_trees};
    use crate::lower::LowerView;
    use std::os::unix::fs::symlink;

    /// A tree exercising every header feature, diffed against an empty base.
    fn odd_tree() -> (tempfile::TempDir, crate::diff::Changeset) {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("base");
        let after = t.path().join("after");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(&after).unwrap();
        let long_dir = "d".repeat(150);
        std::fs::create_dir(after.join(&long_dir)).unwrap();
        std::fs::write(after.join(&long_dir).join("f".repeat(140)), "long").unwrap();
        symlink("t".repeat(200), after.join("link")).unwrap();
        std::fs::write(after.join("caps"), "x").unwrap();
        xattr::set(after.join("caps"), "user.note", b"\x00binary\xff").unwrap();
        std::fs::write(after.join("hl-a"), "same").unwrap();
        std::fs::hard_link(after.join("hl-a"), after.join("hl-b")).unwrap();
        std::fs::write(after.join("big-owner"), "o").unwrap();
        std::os::unix::fs::chown(after.join("big-owner"), Some(3_000_000), Some(3_000_001))
            .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            after.join("null"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            after.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::fs::write(after.join("naïve €"), "utf8").unwrap();
        filetime::set_file_mtime(
            after.join("caps"),
            filetime::FileTime::from_unix_time(5_000, 0),
        )
        .unwrap();
        let cs = diff_trees(&LowerView::new(&[base]), &after, None, &StubSet::default()).unwrap();
        (t, cs)
    }

    #[test]
    fn headers_round_trip_through_a_tar_reader() {
        let (_t, cs) = odd_tree();
        let mut out = Vec::new();
        let info = write_layer(&cs, &mut out, &LayerOptions::default()).unwrap();
        assert_eq!(info.size, out.len() as u64);
        assert_eq!(info.diff_id, rbuild_store::Digest::of(&out));
        let mut archive = tar::Archive::new(&out[..]);
        let mut seen = std::collections::BTreeMap::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let h = e.header().clone();
            assert!(
                h.username_bytes().is_none_or(|u| u.is_empty()),
                "empty uname"
            );
            let mut xattrs = Vec::new();
            if let Some(pax) = e.pax_extensions().unwrap() {
                for ext in pax {
                    let ext = ext.unwrap();
                    if let Some(k) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                        xattrs.push((k.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
            let link = e.link_name().unwrap().map(|l| l.display().to_string());
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.insert(path, (h, link, xattrs, data));
        }
        let long = format!("{}/{}", "d".repeat(150), "f".repeat(140));
        assert_eq!(seen[&long].3, b"long");
        assert_eq!(seen["link"].1.as_deref(), Some("t".repeat(200).as_str()));
        assert_eq!(
            seen["caps"].2,
            [("user.note".to_string(), b"\x00binary\xff".to_vec())]
        );
        assert_eq!(seen["caps"].0.mtime().unwrap(), 5_000);
        assert_eq!(seen["hl-a"].0.entry_type(), tar::EntryType::Regular);
        assert_eq!(seen["hl-b"].0.entry_type(), tar::EntryType::Link);
        assert_eq!(seen["hl-b"].1.as_deref(), Some("hl-a"));
        assert_eq!(seen["big-owner"].0.uid().unwrap(), 3_000_000);
        assert_eq!(seen["big-owner"].0.gid().unwrap(), 3_000_001);
        let null = &seen["null"].0;
        assert_eq!(null.entry_type(), tar::EntryType::Char);
        assert_eq!(
            (null.device_major().unwrap(), null.device_minor().unwrap()),
            (Some(1), Some(3))
        );
        assert_eq!(seen["fifo"].0.entry_type(), tar::EntryType::Fifo);
        assert_eq!(seen["naïve €"].3, b"utf8");
        let dir = &seen[&format!("{}/", "d".repeat(150))].0;
        assert_eq!(dir.entry_type(), tar::EntryType::Directory);
    }

    #[test]
    fn the_same_change_gives_the_same_bytes_and_epoch_clamps_mtimes() {
        let (_t, cs) = odd_tree();
        let write = |epoch| {
            let mut out = Vec::new();
            write_layer(
                &cs,
                &mut out,
                &LayerOptions {
                    source_date_epoch: epoch,
                },
            )
            .unwrap();
            out
        };
        assert_eq!(write(None), write(None));
        let clamped = write(Some(100));
        let mut archive = tar::Archive::new(&clamped[..]);
        for e in archive.entries().unwrap() {
            assert!(e.unwrap().header().mtime().unwrap() <= 100);
        }
    }

    #[test]
    fn sockets_are_skipped_with_a_warning() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("base");
        let after = t.path().join("after");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(&after).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(after.join("sock")).unwrap();
        std::fs::write(after.join("file"), "f").unwrap();
        let cs = diff_trees(&LowerView::new(&[base]), &after, None, &StubSet::default()).unwrap();
        assert_eq!(cs.changes.len(), 1);
        assert!(
            cs.warnings[0].contains("skipped socket `/sock`"),
            "{:?}",
            cs.warnings
        );
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        let (_tx, rx) = mpsc::sync_channel(1);
        let mut w = TarWriter {
            out: io::BufWriter::new(CountingWriter::new(Vec::new())),
            options: &LayerOptions::default(),
            links: &[],
            prefetched: rx,
        };
        let value = vec![b'v'; 93]; // "103 path=" + 93 bytes + "\n" is 103 bytes long
        write_pax_block(&mut w.out, &[(b"path".to_vec(), value)]).unwrap();
        let bytes = w.out.into_inner().ok().unwrap().into_inner();
        let data = &bytes[BLOCK..];
        assert!(data.starts_with(b"103 path="));
        assert_eq!(data.iter().position(|&b| b == b'\n'), Some(102));
    }
}
