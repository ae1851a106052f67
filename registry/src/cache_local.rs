//! The build cache in a local OCI image layout directory (BuildKit's `type=local` cache): the
//! same cache manifest as [`crate::cache`] (config blob = the solver's cache index, one layer
//! blob per cached layer annotated with its diff_id), stored as `blobs/sha256/<hex>`, named by
//! `index.json`, beside an `oci-layout` file. It is what CI systems save and restore between
//! jobs (`actions/cache`), so it is written to stay tidy and consistent:
//!
//! - every file appears by temp file + rename (blobs are content-addressed, so a blob already
//!   there with the right size is kept; `index.json` is replaced last, so a reader sees the old
//!   cache or the new one);
//! - after `index.json` names the new manifest, blobs it does not reference are deleted
//!   (what BuildKit does for its local cache);
//! - import trusts nothing in the directory: the manifest, the index and every layer blob are
//!   hashed and compared with their digests (and sizes) before anything is returned, so a
//!   corrupt or hostile directory is refused whole;
//! - several processes may share the directory (two CI jobs on one runner): an export holds an
//!   exclusive lock on the directory itself (`rbuild_store::lock::exclusive_dir`) from its
//!   first blob to its last deletion, so one export can never prune the blobs another just
//!   wrote, and an importer holds a shared one ([`lock_for_import`]) while it reads, so it
//!   never sees a half-pruned cache. The last export to take the lock wins, whole.
//!
//! Layers are compressed as for a push (`PushOptions::compression`, a remembered compression is
//! reused when the directory still holds its blob).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cache::{CacheLayer, ExportedCache, ImportedCache, cache_layers, cache_manifest};
use crate::compress::compress;
use crate::error::{RegistryError, Result};
use crate::manifest::{Document, media};
use crate::push::PushOptions;
use crate::store_api::{LocalLayer, PushSource};
use rbuild_store::Digest;

/// Largest `index.json` accepted on import.
const MAX_INDEX_JSON_BYTES: u64 = 1 << 20;

fn io(what: &str, path: &Path) -> impl Fn(std::io::Error) -> RegistryError {
    let what = format!("{what} {}", path.display());
    move |e| RegistryError::io(what.clone(), e)
}

fn blob_path(dir: &Path, digest: &Digest) -> Result<PathBuf> {
    if digest.algorithm() != "sha256" {
        return Err(RegistryError::Manifest {
            reference: dir.display().to_string(),
            reason: format!("blob `{digest}` is not a sha256 digest"),
        });
    }
    Ok(dir.join("blobs/sha256").join(digest.hex()))
}

/// Write `bytes` to `path` by temp file + rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path.parent().expect("layout paths have a parent");
    let mut tmp =
        tempfile::NamedTempFile::new_in(parent).map_err(io("create a file in", parent))?;
    tmp.write_all(bytes).map_err(io("write", path))?;
    tmp.as_file().sync_all().map_err(io("fsync", path))?;
    tmp.persist(path)
        .map_err(|e| io("rename into", path)(e.error))?;
    Ok(())
}

fn has_blob(dir: &Path, digest: &Digest, size: u64) -> Result<bool> {
    let path = blob_path(dir, digest)?;
    Ok(std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == size))
}

/// Copy `reader` into the blob `digest` of the layout (verified while copying).
fn put_blob(dir: &Path, digest: &Digest, reader: &mut dyn Read) -> Result<()> {
    let path = blob_path(dir, digest)?;
    let parent = path.parent().expect("blob paths have a parent");
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io("create a file in", parent))?;
    let mut writer = rbuild_store::digest::HashingWriter::new(tmp);
    std::io::copy(reader, &mut writer).map_err(io("write", &path))?;
    let (tmp, got, _) = writer.finish();
    if &got != digest {
        return Err(RegistryError::Manifest {
            reference: dir.display().to_string(),
            reason: format!("blob {digest} read back as {got}"),
        });
    }
    tmp.as_file().sync_all().map_err(io("fsync", &path))?;
    tmp.persist(&path)
        .map_err(|e| io("rename into", &path)(e.error))?;
    Ok(())
}

/// Write `index` and `layers` as the cache in the OCI layout `dir` (created if missing),
/// replacing the cache it held and deleting blobs no longer referenced. `uploaded` counts
/// blobs written, `skipped` blobs that were already there.
pub fn export_cache_local(
    source: &dyn PushSource,
    dir: &Path,
    index: &[u8],
    layers: &[LocalLayer],
    opts: &PushOptions,
) -> Result<ExportedCache> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io("create directory", &blobs))?;
    // Held until the pruning is done: another export waits, and so do importers.
    let _lock = rbuild_store::lock::exclusive_dir(dir)?;
    for sub in [dir.join("blobs"), blobs.clone()] {
        // Pruning deletes files in here: it must be the layout's own directory.
        if !std::fs::symlink_metadata(&sub).is_ok_and(|m| m.is_dir()) {
            return Err(RegistryError::Manifest {
                reference: dir.display().to_string(),
                reason: format!("{} is not a directory (a symlink?)", sub.display()),
            });
        }
    }
    let mut counts = (0usize, 0usize);
    let mut stored = Vec::with_capacity(layers.len());
    for layer in layers {
        let uncompressed = layer.media_type == media::OCI_LAYER
            || layer.media_type == "application/vnd.docker.image.rootfs.diff.tar";
        if !uncompressed {
            if has_blob(dir, &layer.digest, layer.size)? {
                counts.1 += 1;
            } else {
                put_blob(dir, &layer.digest, &mut source.open_blob(&layer.digest)?)?;
                counts.0 += 1;
            }
            stored.push((layer.digest.clone(), layer.size, layer.media_type.clone()));
            continue;
        }
        let comp = opts.compression;
        let media_type = comp.media_type().to_string();
        if let Some((digest, size)) = source.compressed_digest(&layer.diff_id, comp.name())
            && has_blob(dir, &digest, size)?
        {
            counts.1 += 1;
            stored.push((digest, size, media_type));
            continue;
        }
        // Compressed straight into the layout's blob directory, then renamed to its digest.
        let mut input = source.open_blob(&layer.digest)?;
        let staged = compress(&mut input, comp, opts.compress_threads, &blobs)?;
        source.remember_compressed(&layer.diff_id, comp.name(), &staged.digest, staged.size)?;
        let path = blob_path(dir, &staged.digest)?;
        staged
            .file
            .persist(&path)
            .map_err(|e| io("rename into", &path)(e.error))?;
        counts.0 += 1;
        stored.push((staged.digest, staged.size, media_type));
    }
    let index_digest = Digest::of(index);
    if has_blob(dir, &index_digest, index.len() as u64)? {
        counts.1 += 1;
    } else {
        write_atomic(&blob_path(dir, &index_digest)?, index)?;
        counts.0 += 1;
    }
    let manifest = cache_manifest(index, &stored, layers);
    let digest = Digest::of(&manifest);
    write_atomic(&blob_path(dir, &digest)?, &manifest)?;
    write_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index_json = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{
            "mediaType": media::OCI_MANIFEST,
            "artifactType": crate::cache::CACHE_ARTIFACT_TYPE,
            "digest": digest,
            "size": manifest.len(),
        }],
    });
    write_atomic(
        &dir.join("index.json"),
        &serde_json::to_vec(&index_json).expect("json value serializes"),
    )?;
    // The new cache is in place: drop the blobs only earlier caches referenced.
    let keep: BTreeSet<String> = stored
        .iter()
        .map(|(d, _, _)| d.hex().to_string())
        .chain([index_digest.hex().to_string(), digest.hex().to_string()])
        .collect();
    for entry in std::fs::read_dir(&blobs).map_err(io("read directory", &blobs))? {
        let entry = entry.map_err(io("read directory", &blobs))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && Digest::from_hex(&name).is_ok() {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
        }
    }
    Ok(ExportedCache {
        digest,
        uploaded: counts.0,
        skipped: counts.1,
    })
}

/// Open a blob of the layout for reading: only a regular file (a symlink, FIFO or device in a
/// hostile directory is refused before it is opened, so nothing blocks or reads forever).
fn open_regular(dir: &Path, path: &Path) -> Result<std::fs::File> {
    let meta = std::fs::symlink_metadata(path).map_err(io("open", path))?;
    if !meta.is_file() {
        return Err(RegistryError::Manifest {
            reference: dir.display().to_string(),
            reason: format!("{} is not a regular file", path.display()),
        });
    }
    std::fs::File::open(path).map_err(io("open", path))
}

/// Read and verify a blob of at most `limit` bytes.
fn read_blob(dir: &Path, digest: &Digest, size: u64, limit: u64) -> Result<Vec<u8>> {
    let bad = |reason: String| RegistryError::Manifest {
        reference: dir.display().to_string(),
        reason,
    };
    if size > limit {
        return Err(bad(format!(
            "blob {digest} is implausibly large ({size} bytes)"
        )));
    }
    let path = blob_path(dir, digest)?;
    let mut bytes = Vec::new();
    open_regular(dir, &path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read", &path))?;
    if bytes.len() as u64 != size || Digest::of(&bytes) != *digest {
        return Err(bad(format!(
            "blob {digest} does not match its digest or size (the directory is corrupt)"
        )));
    }
    Ok(bytes)
}

/// Hash a layer blob of the layout and compare it with its descriptor.
fn verify_layer(dir: &Path, layer: &CacheLayer) -> Result<()> {
    let path = blob_path(dir, &layer.blob.digest)?;
    let file = open_regular(dir, &path)?.take(layer.blob.size.saturating_add(1));
    let reader = rbuild_store::digest::HashingReader::new(std::io::BufReader::new(file));
    let (got, len) = reader.finish_draining().map_err(io("read", &path))?;
    if got != layer.blob.digest || len != layer.blob.size {
        return Err(RegistryError::Manifest {
            reference: dir.display().to_string(),
            reason: format!(
                "layer blob {} does not match its digest or size (the directory is corrupt)",
                layer.blob.digest
            ),
        });
    }
    Ok(())
}

/// The path of a layer blob of the layout `dir` (import verified it).
pub fn layer_path(dir: &Path, layer: &CacheLayer) -> Result<PathBuf> {
    blob_path(dir, &layer.blob.digest)
}

/// Take the shared lock of the cache directory `dir` (no export runs while it is held). Hold
/// it from [`import_cache_local`] until the last layer was read from the directory.
pub fn lock_for_import(dir: &Path) -> Result<rbuild_store::lock::LockGuard> {
    Ok(rbuild_store::lock::shared_dir(dir)?)
}

/// Read the cache in the OCI layout `dir`, verifying every blob it names (manifest, index
/// and layers) against its digest and size. Nothing is returned from a directory that fails.
pub fn import_cache_local(dir: &Path) -> Result<ImportedCache> {
    let display = dir.display().to_string();
    let bad = |reason: String| RegistryError::Manifest {
        reference: display.clone(),
        reason,
    };
    let index_path = dir.join("index.json");
    let mut index_json = Vec::new();
    open_regular(dir, &index_path)?
        .take(MAX_INDEX_JSON_BYTES)
        .read_to_end(&mut index_json)
        .map_err(io("read", &index_path))?;
    let top = rbuild_store::manifest::parse_document(
        &index_json,
        None,
        MAX_INDEX_JSON_BYTES,
        "index.json",
    )
    .map_err(|e| bad(format!("index.json: {e}")))?;
    let Document::Index(top) = top else {
        return Err(bad("index.json is not an image index".into()));
    };
    let [descriptor] = top.manifests.as_slice() else {
        return Err(bad(format!(
            "index.json names {} manifests, a build cache has one",
            top.manifests.len()
        )));
    };
    let bytes = read_blob(
        dir,
        &descriptor.digest,
        descriptor.size,
        crate::manifest::MAX_MANIFEST_BYTES,
    )?;
    let (document, _) = crate::manifest::parse_manifest(&display, &bytes, None)?;
    let Document::Manifest(m) = &document else {
        return Err(bad("a build cache is a manifest, not an index".into()));
    };
    let layers = cache_layers(m, &bad)?;
    let index = read_blob(dir, &m.config.digest, m.config.size, m.config.size)?;
    for layer in &layers {
        verify_layer(dir, layer)?;
    }
    Ok(ImportedCache {
        index,
        layers,
        digest: descriptor.digest.clone(),
        inline: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout whose blob is a symlink (here to a FIFO that would block a reader) or whose
    /// blob directory is a symlink is refused, on import and on export.
    #[test]
    fn symlinks_in_a_layout_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let manifest = b"{}";
        let digest = Digest::of(manifest);
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        std::os::unix::fs::symlink(&fifo, blobs.join(digest.hex())).unwrap();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": digest, "size": 2}],
        });
        std::fs::write(
            dir.path().join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
        let err = import_cache_local(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");

        let out = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), out.path().join("blobs")).unwrap();
        struct NoBlobs;
        impl PushSource for NoBlobs {
            fn open_blob(&self, _: &Digest) -> Result<Box<dyn Read + Send>> {
                unreachable!("no layers")
            }
            fn compressed_digest(&self, _: &Digest, _: &str) -> Option<(Digest, u64)> {
                None
            }
            fn remember_compressed(&self, _: &Digest, _: &str, _: &Digest, _: u64) -> Result<()> {
                Ok(())
            }
        }
        let opts = PushOptions {
            compression: crate::Compression::Gzip,
            compress_threads: 1,
            mount_from: Vec::new(),
            tmp_dir: out.path().to_path_buf(),
        };
        let err = export_cache_local(&NoBlobs, out.path(), b"{}", &[], &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
