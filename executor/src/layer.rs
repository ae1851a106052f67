//! The deterministic layer writer: a changeset becomes an uncompressed tar stream whose bytes
//! depend only on the change — entries in changeset order (sorted, parents first), headers built
//! field by field (ustar, empty uname/gname, no atime/ctime), PAX records for what ustar cannot
//! hold (long names and link targets, big ids and sizes, `SCHILY.xattr.*`), hard links only
//! between entries of the same layer, mtimes clamped to `SOURCE_DATE_EPOCH` when given. The
//! sha256 of the stream is computed while writing: it is the layer's diff_id.
//!
//! The `tar` crate is used for header field encoding only: its `Builder` follows symlinks and
//! writes GNU long-name records by default, and `HeaderMode::Deterministic` loses ownership.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;

use sha2::{Digest, Sha256};

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

/// The written layer: its diff_id (`sha256:<hex>` of the uncompressed tar) and size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub diff_id: String,
    pub size: u64,
}

/// Write `changeset` as a tar stream into `out`; returns the diff_id and size.
pub fn write_layer<W: Write>(
    changeset: &Changeset,
    out: W,
    options: &LayerOptions,
) -> Result<LayerInfo> {
    let mut w = TarWriter {
        out: io::BufWriter::with_capacity(1 << 20, HashingWriter::new(out)),
        options,
        links: HashMap::new(),
    };
    for change in &changeset.changes {
        w.change(changeset, change)?;
    }
    let end = [0u8; 2 * BLOCK];
    w.out.write_all(&end).map_err(write_err)?;
    let hashing = w.out.into_inner().map_err(|e| write_err(e.into_error()))?;
    let (mut inner, hasher, size) = hashing.finish();
    inner.flush().map_err(write_err)?;
    Ok(LayerInfo {
        diff_id: format!("sha256:{}", hex::encode(hasher.finalize())),
        size,
    })
}

fn write_err(e: io::Error) -> ExecError {
    ExecError::Io {
        action: "cannot write the layer to",
        path: "the layer blob".into(),
        source: e,
    }
}

struct TarWriter<'a, W: Write> {
    out: io::BufWriter<HashingWriter<W>>,
    options: &'a LayerOptions,
    /// (dev, ino) of multiply-linked files already written → their path in the layer.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> TarWriter<'_, W> {
    fn change(&mut self, cs: &Changeset, change: &crate::diff::Change) -> Result<()> {
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
                self.header(&h, &[]).map_err(write_err)
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
                if meta.kind != Kind::Dir && meta.nlink > 1 {
                    match self.links.get(&(meta.dev, meta.ino)) {
                        Some(first) => {
                            typeflag = b'1';
                            link = Some(first.clone());
                            size = 0;
                        }
                        None => {
                            self.links.insert((meta.dev, meta.ino), path.clone());
                        }
                    }
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
                self.header(&h, &pax_xattrs).map_err(write_err)?;
                if typeflag == b'0' && size > 0 {
                    let src = cs.source(change);
                    self.data(&src, meta, change)?;
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
            return Err(ExecError::Layer {
                path: change.path.display().to_string(),
                message: format!(
                    "the file changed size while it was written ({} bytes expected)",
                    meta.size
                ),
            });
        }
        pad(&mut self.out, copied).map_err(write_err)
    }

    /// Write the PAX record block (when needed) and the ustar header of one entry.
    fn header(&mut self, f: &Fields, xattrs: &[(Vec<u8>, &[u8])]) -> io::Result<()> {
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
            self.pax_block(&pax)?;
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
        self.out.write_all(h.as_bytes())
    }

    fn pax_block(&mut self, records: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
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
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(&data)?;
        pad(&mut self.out, data.len() as u64)
    }
}

/// The header fields of one entry before encoding.
struct Fields {
    path: Vec<u8>,
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    link: Option<Vec<u8>>,
    dev: Option<(u32, u32)>,
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

fn pad<W: Write>(out: &mut W, len: u64) -> io::Result<()> {
    let rem = (len % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the hasher and the byte count.
    pub fn finish(self) -> (W, Sha256, u64) {
        (self.inner, self.hasher, self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
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

    #[test]
    fn pax_record_lengths_count_themselves() {
        let mut w = TarWriter {
            out: io::BufWriter::new(HashingWriter::new(Vec::new())),
            options: &LayerOptions::default(),
            links: HashMap::new(),
        };
        let value = vec![b'v'; 93]; // "103 path=" + 93 bytes + "\n" is 103 bytes long
        w.pax_block(&[(b"path".to_vec(), value)]).unwrap();
        let bytes = w.out.into_inner().ok().unwrap().finish().0;
        let data = &bytes[BLOCK..];
        assert!(data.starts_with(b"103 path="));
        assert_eq!(data.iter().position(|&b| b == b'\n'), Some(102));
    }
}
