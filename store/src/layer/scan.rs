//! Validating a layer without extracting it: what `load` and `import` run over every layer
//! before it is accepted. It computes the diff_id (over all bytes, trailing data included) and
//! the uncompressed size, and refuses hostile or malformed content with an error naming the
//! entry.
//!
//! Absolute names (and hard-link targets) are read as rooted at the layer's root, as Docker and
//! containerd do. Besides the unpacker's refusals (`unpack`), it refuses entries written through
//! a symlink or below a non-directory of the same layer, and hard links whose target is not an
//! earlier file of the same layer; device nodes are allowed (they stay entries). For an
//! uncompressed blob whose digest already is the diff_id, [`scan_headers`] reads only the
//! headers, seeking over the data.

use std::collections::HashMap;
use std::io::{self, Read};

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::layer::path::{self, AbsolutePaths, Meaning, RelPath};
use crate::layer::tar::{Kind, TarReader};
use crate::limits::Limits;

/// The result of scanning one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerScan {
    /// sha256 of the uncompressed stream, trailing bytes included.
    pub diff_id: Digest,
    /// Uncompressed size in bytes.
    pub size: u64,
    pub entries: u64,
}

/// The checks of `scan` over any tar reader; returns the number of entries.
fn check_entries<R: Read>(tar: &mut TarReader<R>, name: &str) -> Result<u64> {
    let mut kinds: HashMap<Vec<u8>, Kind> = HashMap::new();
    let mut entries = 0u64;
    let bad = |m: String| Error::layer(name, m);
    while let Some(entry) = tar.next_entry()? {
        entries += 1;
        let shown = entry.display_path();
        // Absolute names are rooted at the layer's root, as Docker and containerd read them.
        let meaning = path::interpret(&entry.path, AbsolutePaths::Strip, name)?;
        let p: RelPath = match meaning {
            Meaning::Ignore => continue,
            Meaning::Whiteout(p) => p,
            Meaning::Opaque(d) => d.join(path::OPAQUE_MARKER),
            Meaning::Add(p) => {
                if p.is_root() && entry.kind != Kind::Dir {
                    return Err(bad(format!(
                        "entry `{shown}` would replace the root directory with a {}",
                        entry.kind.name()
                    )));
                }
                p
            }
        };
        for a in p.ancestors() {
            match kinds.get(a) {
                Some(Kind::Symlink) => {
                    return Err(bad(format!(
                        "entry `{shown}` is written through `/{}`, a symlink in the same layer",
                        String::from_utf8_lossy(a)
                    )));
                }
                Some(Kind::Dir) | None => {}
                Some(k) => {
                    return Err(bad(format!(
                        "entry `{shown}` is below `/{}`, which this layer makes a {}",
                        String::from_utf8_lossy(a),
                        k.name()
                    )));
                }
            }
        }
        if entry.kind == Kind::Char && entry.dev_major == 0 && entry.dev_minor == 0 {
            return Err(bad(format!(
                "entry `{shown}` is a 0:0 character device, which overlayfs would treat as a whiteout"
            )));
        }
        if entry.kind == Kind::Hardlink {
            let target = path::clean(&entry.link, AbsolutePaths::Strip).map_err(|m| {
                bad(format!(
                    "hardlink `{shown}` target `{}` {m}",
                    String::from_utf8_lossy(&entry.link)
                ))
            })?;
            match kinds.get(target.as_bytes()) {
                Some(Kind::Dir) => {
                    return Err(bad(format!("hardlink `{shown}` points at a directory")));
                }
                Some(_) => {}
                None => {
                    return Err(bad(format!(
                        "hardlink `{shown}` points at `{}`, which is not an earlier entry of this layer",
                        target.display()
                    )));
                }
            }
        }
        if !p.is_root() && kinds.insert(p.as_bytes().to_vec(), entry.kind).is_some() {
            return Err(bad(format!(
                "`{}` appears twice in one layer (layers must not contain duplicate entries)",
                p.display()
            )));
        }
        if entry.size > 0 {
            io::copy(&mut tar.data(), &mut io::sink()).map_err(|e| tar.data_error(&entry, e))?;
        }
    }
    Ok(entries)
}

/// `scan` for an uncompressed layer in a file whose digest is already known to be its diff_id:
/// only the headers are read (data is skipped by seeking), nothing is hashed.
pub fn scan_headers(file: &std::fs::File, limits: &Limits, name: &str) -> Result<u64> {
    let len = file
        .metadata()
        .map_err(|e| Error::layer(name, format!("cannot stat: {e}")))?
        .len();
    let mut reader = io::BufReader::with_capacity(1 << 16, file);
    io::Seek::rewind(&mut reader).map_err(|e| Error::layer(name, format!("cannot read: {e}")))?;
    let mut tar = TarReader::new_seekable(reader, limits, name);
    let entries = check_entries(&mut tar, name)?;
    if tar.position() > len {
        return Err(Error::layer(
            name,
            "the archive is truncated inside a file's data",
        ));
    }
    Ok(entries)
}

/// Scan an uncompressed layer stream. Refused: `..` components, absolute names, entries
/// written through a symlink or below a non-directory of the same layer, hardlinks whose
/// target is not an earlier file of the same layer, invalid whiteouts, duplicate paths,
/// replacing the root with a non-directory, 0:0 character devices, oversized headers and
/// truncated archives. Device nodes are allowed: they are only entries until unpacked.
pub fn scan(reader: impl Read, limits: &Limits, name: &str) -> Result<LayerScan> {
    let mut hashing = HashingReader::new(reader);
    let mut tar = TarReader::new(&mut hashing, limits, name);
    let entries = check_entries(&mut tar, name)?;
    drop(tar);
    let (diff_id, size) = hashing
        .finish_draining()
        .map_err(|e| Error::layer(name, format!("reading past the end of the archive: {e}")))?;
    Ok(LayerScan {
        diff_id,
        size,
        entries,
    })
}
