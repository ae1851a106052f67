//! The store traits implemented for `rbuild_store::Store`: pulls ingest through the store's
//! verified `BlobWriter` and register images with `add_image` + `tag`; pushes read image
//! records and blobs. Compressed digests per (diff_id, compression) are remembered in
//! `<root>/registry/compressed.json` (`"<diff_id> <gzip|zstd>" → [digest, size]`, written
//! atomically under a lock file) so a second push does not recompress. Push mount candidates
//! are the other local names of the image on the same registry. The registry digests of pulled
//! and pushed images (`record_image`, `record_pushed`) go to the store's `repo-digests.json`
//! (`rbuild_store::repo_digests`), which `inspect`'s `RepoDigests` and `images --digests`
//! read, so a built image shows none until pushed, as with docker.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use rbuild_store::{Descriptor as StoreDescriptor, Digest, Reference, Store};

use crate::error::{RegistryError, Result};
use crate::manifest::FetchedManifest;
use crate::remote::RemoteRef;
use crate::store_api::{Ingest, LocalImage, LocalLayer, PullTarget, PushSource};

fn store_err(e: rbuild_store::Error) -> RegistryError {
    RegistryError::Store(Box::new(e))
}

/// A store ingest as a registry `Ingest`.
struct StoreIngest<'s> {
    writer: rbuild_store::BlobWriter<'s>,
}

impl Write for StoreIngest<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

impl Ingest for StoreIngest<'_> {
    fn commit(self: Box<Self>) -> Result<()> {
        self.writer.commit().map(|_| ()).map_err(store_err)
    }
}

impl PullTarget for Store {
    fn has_blob(&self, d: &Digest) -> bool {
        Store::has_blob(self, d)
    }

    fn begin_blob(&self, d: &Digest, size: u64) -> Result<Box<dyn Ingest + '_>> {
        let what = format!("blob {d}");
        let writer = self
            .blob_writer_expecting(d, Some(size), &what)
            .map_err(store_err)?;
        Ok(Box::new(StoreIngest { writer }))
    }

    fn record_image(
        &self,
        name: &str,
        tag: Option<&str>,
        manifest: &FetchedManifest,
        index: Option<&FetchedManifest>,
    ) -> Result<()> {
        // Manifest bytes exactly as served (their digest was verified by the client).
        self.put_blob(&manifest.bytes).map_err(store_err)?;
        if let Some(i) = index {
            self.put_blob(&i.bytes).map_err(store_err)?;
        }
        let desc = StoreDescriptor::new(
            manifest.media_type.clone(),
            manifest.digest.clone(),
            manifest.bytes.len() as u64,
        );
        let record = self.add_image(&desc).map_err(store_err)?;
        if let Some(tag) = tag {
            let reference = Reference::parse(&format!("{name}:{tag}")).map_err(store_err)?;
            self.tag(&record, &reference).map_err(store_err)?;
        }
        // RepoDigests: the digest the registry resolved the reference to (the index's for a
        // multi-platform image), as `docker pull` records it.
        let resolved = index.map_or(&manifest.digest, |i| &i.digest);
        remember_repo_digest(self, &record.manifest_digest, name, resolved);
        Ok(())
    }
}

/// Record `name@digest` as a registry digest of the stored image `local` (best effort: a
/// failure only loses `RepoDigests` information).
fn remember_repo_digest(store: &Store, local: &Digest, name: &str, digest: &str) {
    let recorded = Reference::parse(&format!("{name}@{digest}"))
        .and_then(|r| store.add_repo_digest(local, &r));
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "cannot record the registry digest of {name}");
    }
}

/// After a push of the stored image `image` to `target`: remember the digest the registry
/// now knows it by.
pub fn record_pushed(store: &Store, image: &str, target: &RemoteRef, digest: &str) {
    if let Ok(record) = store.resolve_image(image) {
        remember_repo_digest(store, &record.manifest_digest, &target.name(), digest);
    }
}

fn compressed_path(store: &Store) -> PathBuf {
    store.root().join("registry").join("compressed.json")
}

/// `"<diff_id> <compression>"` → the compressed blob (the file's JSON shape).
type CompressedMap = BTreeMap<String, (Digest, u64)>;

fn read_compressed(store: &Store) -> CompressedMap {
    std::fs::read(compressed_path(store))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

impl PushSource for Store {
    fn open_blob(&self, d: &Digest) -> Result<Box<dyn Read + Send>> {
        let file = Store::open_blob(self, d).map_err(store_err)?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
    }

    fn compressed_digest(&self, diff_id: &Digest, compression: &str) -> Option<(Digest, u64)> {
        read_compressed(self)
            .get(&format!("{diff_id} {compression}"))
            .cloned()
    }

    fn remember_compressed(
        &self,
        diff_id: &Digest,
        compression: &str,
        d: &Digest,
        size: u64,
    ) -> Result<()> {
        let path = compressed_path(self);
        let dir = path.parent().expect("has a parent").to_path_buf();
        let io = |e: std::io::Error| RegistryError::io(format!("writing `{}`", path.display()), e);
        fs_err::create_dir_all(&dir).map_err(io)?;
        // Serialize concurrent pushes on a lock file; the map is small.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("compressed.lock"))
            .map_err(io)?;
        lock.lock().map_err(io)?;
        let mut map = read_compressed(self);
        map.insert(format!("{diff_id} {compression}"), (d.clone(), size));
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
        tmp.write_all(&serde_json::to_vec_pretty(&map).expect("map serializes"))
            .map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// A stored image as push input: its manifest bytes and layers with diff_ids.
pub fn local_image(store: &Store, image: &str) -> Result<LocalImage> {
    let record = store.resolve_image(image).map_err(store_err)?;
    let manifest = store
        .read_blob(&record.manifest_digest)
        .map_err(store_err)?;
    Ok(LocalImage {
        manifest,
        manifest_media_type: record.manifest_media_type.clone(),
        layers: record
            .layers
            .iter()
            .map(|l| LocalLayer {
                diff_id: l.diff_id.clone(),
                digest: l.descriptor.digest.clone(),
                size: l.descriptor.size,
                media_type: l.descriptor.media_type.clone(),
            })
            .collect(),
    })
}

/// Repositories of `target`'s registry that also name this image locally: candidates for
/// cross-repository mounts.
pub fn mount_candidates(store: &Store, image: &str, target: &RemoteRef) -> Vec<String> {
    let Ok(record) = store.resolve_image(image) else {
        return Vec::new();
    };
    let names = store.names_of(&record.manifest_digest).unwrap_or_default();
    let mut out: Vec<String> = names
        .iter()
        .filter(|r| {
            crate::config::canonical_registry(r.domain()) == target.registry
                && r.path() != target.repository
        })
        .map(|r| r.path().to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A `RemoteRef` from a store reference.
pub fn remote_ref(reference: &Reference) -> Result<RemoteRef> {
    Ok(RemoteRef::from_reference(reference))
}
