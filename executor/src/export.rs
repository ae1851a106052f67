//! An image's final root filesystem outside the store: one deterministic tar stream
//! ([`Rootfs::write_tar`], `--output type=tar`) or files applied into a directory
//! ([`Rootfs::write_dir`], `--output type=local`). Both start from the store's flattened tree
//! (whiteouts, opaque directories and symlinked parents resolved exactly as the unpacker does)
//! with file contents spooled aside, so entries come out sorted by path, parents first.
//!
//! The tar uses the layer writer's header encoding (ustar, PAX for long names, big ids and
//! `SCHILY.xattr.*`); hard links point at the first path of their node in name order. The
//! directory is written by the store's in-root unpacker reading that same stream, so nothing
//! can land outside the destination, whatever the image holds.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;

use miette::Diagnostic;
use rbuild_store::layer::{
    self, FlatKind, FlatTree, Spool, UnpackMode, UnpackOptions, flatten_image_spooled,
};
use rbuild_store::{ImageRecord, Limits, Store};
use thiserror::Error;

use crate::error::ExecError;
use crate::layer::{Fields, pad, write_header};

/// What can go wrong exporting a root filesystem.
#[derive(Debug, Error, Diagnostic)]
pub enum ExportError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] rbuild_store::Error),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Exec(#[from] ExecError),
}

impl ExportError {
    pub fn class(&self) -> rbuild_store::ErrorClass {
        match self {
            ExportError::Store(e) => e.class(),
            ExportError::Exec(e) => e.class(),
        }
    }
}

/// How to export.
#[derive(Clone, Copy)]
pub struct RootfsOptions<'a> {
    /// Give every entry this mtime (`SOURCE_DATE_EPOCH`), as BuildKit's local and tar
    /// exporters do; `None` keeps the layers' mtimes.
    pub mtime: Option<i64>,
    /// Polled between entries; when it returns true the export stops with `Cancelled`.
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootfsStats {
    /// Entries written (the root directory itself is not one).
    pub entries: u64,
    /// Bytes of the tar stream.
    pub bytes: u64,
}

/// An image's flattened root filesystem with its file contents spooled, ready to export.
pub struct Rootfs {
    tree: FlatTree,
    spool: Spool,
    limits: Limits,
}

fn write_err(e: io::Error) -> ExecError {
    ExecError::io("cannot write the root filesystem to", "the output", e)
}

fn cancelled() -> ExecError {
    ExecError::Cancelled {
        reason: "the export was interrupted".into(),
    }
}

impl Rootfs {
    /// Flatten `image`'s layers; file contents go to an unlinked file in the store's `tmp/`.
    pub fn load(store: &Store, image: &ImageRecord) -> Result<Rootfs, ExportError> {
        let mut spool = Spool::new_in(&store.layout().tmp())?;
        let tree = flatten_image_spooled(store, image, Some(&mut spool))?;
        Ok(Rootfs {
            tree,
            spool,
            limits: store.limits().clone(),
        })
    }

    /// The flattened tree (paths, types, modes, owners, contents' digests).
    pub fn tree(&self) -> &FlatTree {
        &self.tree
    }

    /// Write the root filesystem as a tar stream: byte-for-byte the same for the same image
    /// and options.
    pub fn write_tar<W: Write>(
        &self,
        out: W,
        opts: &RootfsOptions<'_>,
    ) -> Result<RootfsStats, ExportError> {
        write_tar_split(&[("", self)], out, opts)
    }

    /// Write this tree's entries into `out`, each path under `prefix` (empty or ending in
    /// `/`); returns how many.
    fn write_entries<W: Write>(
        &self,
        out: &mut W,
        opts: &RootfsOptions<'_>,
        prefix: &[u8],
    ) -> Result<u64, ExportError> {
        let under = |path: &[u8]| [prefix, path].concat();
        // The first path (in name order) of every node: later paths of it are hard links.
        let mut first: HashMap<u64, &[u8]> = HashMap::new();
        let mut entries = 0;
        for (path, e) in &self.tree.entries {
            if (opts.cancelled)() {
                return Err(cancelled().into());
            }
            entries += 1;
            let mut f = Fields {
                path: under(path),
                typeflag: b'0',
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size: 0,
                mtime: opts.mtime.unwrap_or(e.mtime).max(0) as u64,
                link: None,
                dev: None,
            };
            if e.inode != 0 {
                if let Some(leader) = first.get(&e.inode) {
                    f.typeflag = b'1';
                    f.link = Some(under(leader));
                    write_header(out, &f, &[]).map_err(write_err)?;
                    continue;
                }
                first.insert(e.inode, path);
            }
            match &e.kind {
                FlatKind::Dir => {
                    f.typeflag = b'5';
                    f.path.push(b'/');
                }
                FlatKind::File { size, .. } => f.size = *size,
                FlatKind::Symlink { target } => {
                    f.typeflag = b'2';
                    f.link = Some(target.clone());
                }
                FlatKind::Char { major, minor } => {
                    f.typeflag = b'3';
                    f.dev = Some((*major, *minor));
                }
                FlatKind::Block { major, minor } => {
                    f.typeflag = b'4';
                    f.dev = Some((*major, *minor));
                }
                FlatKind::Fifo => f.typeflag = b'6',
            }
            let xattrs: Vec<(Vec<u8>, &[u8])> = e
                .xattrs
                .iter()
                .map(|(k, v)| ([&b"SCHILY.xattr."[..], k].concat(), v.as_slice()))
                .collect();
            write_header(out, &f, &xattrs).map_err(write_err)?;
            if f.size > 0 {
                let copied = io::copy(&mut self.spool.contents(e.inode), out).map_err(write_err)?;
                if copied != f.size {
                    return Err(ExecError::Layer {
                        path: String::from_utf8_lossy(path).into_owned(),
                        message: format!(
                            "internal error: {copied} bytes spooled, the layer said {}",
                            f.size
                        ),
                    }
                    .into());
                }
                pad(out, f.size).map_err(write_err)?;
            }
        }
        Ok(entries)
    }

    /// Apply the root filesystem into the existing directory `dest`: entries replace what is
    /// there (a directory stays and gets the image's attributes), other files in `dest` are
    /// kept. Owners, modes (setuid included), xattrs, symlinks, hard links and devices are
    /// reproduced; owners only when running as root. On error `dest` is partially written.
    pub fn write_dir(&self, dest: &Path, opts: &RootfsOptions<'_>) -> Result<u64, ExportError> {
        let (reader, writer) =
            io::pipe().map_err(|e| ExecError::io("cannot create a pipe", "", e))?;
        // Our own stream: the per-layer bounds do not apply to a whole root filesystem.
        let limits = Limits {
            max_layer_bytes: u64::MAX,
            max_layer_entries: u64::MAX,
            ..self.limits.clone()
        };
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || self.write_tar(writer, opts));
            let unpacked = layer::unpack(
                reader,
                dest,
                &UnpackOptions::new(UnpackMode::Plain),
                &limits,
                "the exported root filesystem",
            );
            let produced = producer.join().unwrap_or_else(|_| {
                Err(ExecError::Layer {
                    path: String::new(),
                    message: "internal error: the tar writer panicked".into(),
                }
                .into())
            });
            let broken_pipe = |e: &ExportError| {
                matches!(e, ExportError::Exec(ExecError::Io { source, .. })
                    if source.kind() == io::ErrorKind::BrokenPipe)
            };
            match (unpacked, produced) {
                (Ok(stats), Ok(_)) => Ok(stats.entries),
                // The reader stopped first: its error is the cause.
                (Err(e), Err(w)) if broken_pipe(&w) => Err(e.into()),
                // The writer stopped first (e.g. cancelled): its error explains the early end.
                (_, Err(w)) => Err(w),
                (Err(e), Ok(_)) => Err(e.into()),
            }
        })
    }
}

/// Several root filesystems as one tar stream, each under its own directory `name/` (mode
/// 0755, owned by root, the options' mtime or 0), as BuildKit's tar exporter splits the
/// platforms of a multi-platform build (`linux_amd64/`, `linux_arm64/`). An empty name writes
/// the tree at the top, as [`Rootfs::write_tar`].
pub fn write_tar_split<W: Write>(
    parts: &[(&str, &Rootfs)],
    out: W,
    opts: &RootfsOptions<'_>,
) -> Result<RootfsStats, ExportError> {
    let mut out =
        io::BufWriter::with_capacity(1 << 20, rbuild_store::digest::CountingWriter::new(out));
    let mut entries = 0;
    for (name, rootfs) in parts {
        let prefix = if name.is_empty() {
            Vec::new()
        } else {
            let dir = format!("{}/", name.trim_end_matches('/')).into_bytes();
            let f = Fields {
                path: dir.clone(),
                typeflag: b'5',
                mode: 0o755,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: opts.mtime.unwrap_or(0).max(0) as u64,
                link: None,
                dev: None,
            };
            write_header(&mut out, &f, &[]).map_err(write_err)?;
            entries += 1;
            dir
        };
        entries += rootfs.write_entries(&mut out, opts, &prefix)?;
    }
    out.write_all(&[0u8; 1024]).map_err(write_err)?;
    out.flush().map_err(write_err)?;
    let counting = out.into_inner().map_err(|e| write_err(e.into_error()))?;
    Ok(RootfsStats {
        entries,
        bytes: counting.count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_exports_stop() {
        let store_dir = tempfile::tempdir().unwrap();
        let mut layer = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("a").unwrap();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        layer.append(&h, &b"x"[..]).unwrap();
        let bytes = layer.into_inner().unwrap();
        let mut spool = Spool::new_in(store_dir.path()).unwrap();
        let mut tree = FlatTree::new();
        tree.apply_layer_spooled(&bytes[..], &Limits::default(), "l", Some(&mut spool))
            .unwrap();
        let rootfs = Rootfs {
            tree,
            spool,
            limits: Limits::default(),
        };
        let stop = || true;
        let opts = RootfsOptions {
            mtime: None,
            cancelled: &stop,
        };
        let err = rootfs.write_tar(Vec::new(), &opts).unwrap_err();
        assert!(matches!(
            err,
            ExportError::Exec(ExecError::Cancelled { .. })
        ));
        let go = || false;
        let opts = RootfsOptions {
            mtime: Some(7),
            cancelled: &go,
        };
        let mut out = Vec::new();
        let stats = rootfs.write_tar(&mut out, &opts).unwrap();
        assert_eq!(stats.entries, 1);
        assert_eq!(stats.bytes, out.len() as u64);
        let mut ar = tar::Archive::new(&out[..]);
        let e = ar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().mtime().unwrap(), 7);
        assert_eq!(e.size(), 1);

        // Split: each tree under its directory, one end-of-archive.
        let mut split = Vec::new();
        let stats = write_tar_split(
            &[("linux_amd64", &rootfs), ("linux_arm64", &rootfs)],
            &mut split,
            &opts,
        )
        .unwrap();
        assert_eq!(stats.entries, 4);
        let mut ar = tar::Archive::new(&split[..]);
        let paths: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "linux_amd64/",
                "linux_amd64/a",
                "linux_arm64/",
                "linux_arm64/a"
            ]
        );
    }
}
