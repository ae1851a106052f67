//! The store traits implemented for `rbuild_store::Store`: pulls ingest through the store's
//! verified `BlobWriter` and register images with `add_image` + `tag`; pushes read image
//! records and blobs. Compressed digests per (diff_id, compression) are remembered in
//! `<root>/registry/compressed.json` (`"<diff_id> <gzip|zstd>" → [digest, size]`, written
//! atomically under a lock file) so a second push does not recompress. Push mount candidates
//! are the other local names of the image on the same registry. The registry digests of pulled
//! and pushed images (`record_image`, `record_pushed`) go to the store's `repo-digests.json`
//! (`rbuild_store::repo_digests`), which `inspect`'s `RepoDigests` and `images --digests`
//! read, so a built image shows none until pushed, as with docker.
//!
//! Multi-platform images: a single-platform pull (`record_image`) names the platform's
//! manifest, except when the name already points at the very index the registry served (it
//! was pulled with `--all-platforms`): then the name stays on the index and the platform's
//! image is simply stored under it. `record_index` stores a pulled tree (manifests, then the index,
//! bytes as served), names the index with `Store::tag_target` and drops the untagged entries
//! of its platform images (they are reachable through the index, as after
//! `Store::commit_index`). The registry digest of the index is recorded for the index and
//! for each platform image. [`local_target`] turns a stored `Target` into push input,
//! refusing an index that lists a manifest (or a manifest a blob) the store does not hold
//! before anything is sent.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use rbuild_store::manifest::{Document, parse_document};
use rbuild_store::{
    Descriptor as StoreDescriptor, Digest, ImageRecord, Platform, Reference, Store, Target,
};

use crate::error::{RegistryError, Result};
use crate::manifest::{FetchedManifest, media};
use crate::remote::RemoteRef;
use crate::store_api::{
    Ingest, LocalChild, LocalImage, LocalIndex, LocalLayer, LocalTarget, PullTarget, PushSource,
};

/// How deep a pushed index may nest (the top index and one level of nested indexes, the
/// bound a pull follows).
const MAX_PUSH_INDEX_DEPTH: u32 = 2;

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
        if let (Some(tag), Some(i)) = (tag, index)
            && names_index(self, name, tag, &i.digest)
        {
            // The name already points at this very index (pulled with `--all-platforms`, or
            // built): it keeps doing so, the platform's image is now stored under it.
            let record = self
                .image_for_platform(&desc.digest, Some(&desc.media_type), &Platform::host())
                .map_err(store_err)?;
            if let Some(digest) = [&record.manifest_digest, &record.config_digest]
                .into_iter()
                .find(|d| !Store::has_blob(self, d))
                .or_else(|| {
                    record
                        .layers
                        .iter()
                        .map(|l| &l.descriptor)
                        .find(|d| !self.has_layer_or_remote(d))
                        .map(|d| &d.digest)
                })
            {
                return Err(store_err(rbuild_store::Error::MissingBlob {
                    digest: digest.clone(),
                }));
            }
            remember_repo_digest(self, &record.manifest_digest, name, &i.digest);
            return Ok(());
        }
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

    fn record_remote_layers(
        &self,
        repository: &RemoteRef,
        layers: &[StoreDescriptor],
    ) -> Result<()> {
        let name = Reference::parse_name_only(&repository.name()).map_err(store_err)?;
        Store::record_remote_layers(self, &name, layers).map_err(store_err)
    }

    fn record_index(
        &self,
        name: &str,
        tag: Option<&str>,
        index: &FetchedManifest,
        manifests: &[FetchedManifest],
    ) -> Result<()> {
        // Every blob the manifests name was committed by the pull; check before naming.
        for m in manifests {
            if let Document::Manifest(doc) = &m.manifest {
                for d in std::iter::once(&doc.config).chain(&doc.layers) {
                    if !Store::has_blob(self, &d.digest) {
                        return Err(store_err(rbuild_store::Error::MissingBlob {
                            digest: d.digest.clone(),
                        }));
                    }
                }
            }
        }
        // Children before the index that names them; bytes exactly as served.
        for m in manifests {
            self.put_blob(&m.bytes).map_err(store_err)?;
        }
        self.put_blob(&index.bytes).map_err(store_err)?;
        let desc = StoreDescriptor::new(
            index.media_type.clone(),
            index.digest.clone(),
            index.bytes.len() as u64,
        );
        let target = self.target(&desc).map_err(store_err)?;
        let name_ref = match tag {
            Some(tag) => format!("{name}:{tag}"),
            None => format!("{name}@{}", index.digest),
        };
        let reference = Reference::parse(&name_ref).map_err(store_err)?;
        self.tag_target(&target, &reference).map_err(store_err)?;
        // The platform images are reachable through the index: their own untagged entries
        // (from an earlier single-platform pull) go, so the image is listed once.
        for (_, image) in target.images() {
            self.remove_image_if(&image.manifest_digest, true)
                .map_err(store_err)?;
        }
        remember_repo_digest(self, &index.digest, name, &index.digest);
        for (_, image) in target.images() {
            remember_repo_digest(self, &image.manifest_digest, name, &index.digest);
        }
        Ok(())
    }
}

/// Whether `name:tag` points at the stored index `index`.
fn names_index(store: &Store, name: &str, tag: &str, index: &Digest) -> bool {
    matches!(
        store.resolve_target(&format!("{name}:{tag}")),
        Ok(Target::Index(current)) if &current.digest == index
    )
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

/// After a push of the stored manifest or index `local` to `target`: remember the digest the
/// registry now knows it by.
pub fn record_pushed(store: &Store, local: &Digest, target: &RemoteRef, digest: &str) {
    remember_repo_digest(store, local, &target.name(), digest);
}

/// [`record_pushed`] for a pushed target: an index's digest is recorded for the index and
/// for each of its platform images (as a pull records it).
pub fn record_pushed_target(store: &Store, local: &Target, target: &RemoteRef, digest: &str) {
    record_pushed(store, local.digest(), target, digest);
    if let Target::Index(index) = local {
        for (_, image) in &index.images {
            record_pushed(store, &image.manifest_digest, target, digest);
        }
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

    fn remote_blob(&self, d: &Digest) -> Option<RemoteRef> {
        let record = Store::remote_blob(self, d)?;
        record
            .repository()
            .ok()
            .map(|r| RemoteRef::from_reference(&r))
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
    local_image_of(store, &record)
}

/// An image record as push input.
pub fn local_image_of(store: &Store, record: &ImageRecord) -> Result<LocalImage> {
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

/// What a stored target is, as push input: an image, or an index with every manifest it
/// lists (attestations and nested indexes included). `name` is what the user called it (for
/// the error). An index listing a manifest the store lacks, or a manifest whose config or
/// layers are missing, is refused with [`RegistryError::IncompleteIndex`] before anything is
/// sent.
pub fn local_target(store: &Store, target: &Target, name: &str) -> Result<LocalTarget> {
    let index = match target {
        Target::Image(record) => return Ok(LocalTarget::Image(local_image_of(store, record)?)),
        Target::Index(index) => index,
    };
    let mut missing = Vec::new();
    let local = local_index(store, &index.digest, &index.media_type, 1, &mut missing)?;
    if !missing.is_empty() {
        let have = index
            .platforms()
            .first()
            .map_or_else(|| Platform::host().to_string(), Platform::to_string);
        return Err(RegistryError::IncompleteIndex {
            image: name.to_string(),
            missing: missing.join(", "),
            have,
        });
    }
    Ok(LocalTarget::Index(local))
}

/// One stored index as push input; what is absent goes to `missing` (entry platform and
/// digest).
fn local_index(
    store: &Store,
    digest: &Digest,
    media_type: &str,
    depth: u32,
    missing: &mut Vec<String>,
) -> Result<LocalIndex> {
    let limit = store.limits().max_json_bytes;
    let bytes = store.read_blob(digest).map_err(store_err)?;
    let what = format!("index {digest}");
    let Document::Index(index) =
        parse_document(&bytes, Some(media_type), limit, &what).map_err(store_err)?
    else {
        return Err(store_err(rbuild_store::Error::json(
            what,
            "declared as an index but is a manifest",
        )));
    };
    let mut children = Vec::with_capacity(index.manifests.len());
    for entry in &index.manifests {
        let label = || {
            let platform = entry
                .platform
                .as_ref()
                .map_or_else(|| "a manifest".to_string(), |p| format!("the {p} manifest"));
            format!("{platform} `{}`", entry.digest)
        };
        if !Store::has_blob(store, &entry.digest) {
            missing.push(label());
            continue;
        }
        if media::is_index(&entry.media_type) {
            if depth >= MAX_PUSH_INDEX_DEPTH {
                return Err(store_err(rbuild_store::Error::json(
                    what,
                    "indexes nested more than two levels deep",
                )));
            }
            let nested = local_index(store, &entry.digest, &entry.media_type, depth + 1, missing)?;
            children.push(LocalChild::Index(nested));
            continue;
        }
        let manifest_bytes = store.read_blob(&entry.digest).map_err(store_err)?;
        let child_what = format!("manifest {}", entry.digest);
        let Document::Manifest(manifest) =
            parse_document(&manifest_bytes, Some(&entry.media_type), limit, &child_what)
                .map_err(store_err)?
        else {
            return Err(store_err(rbuild_store::Error::json(
                child_what,
                "declared as a manifest but is an index",
            )));
        };
        // A remote layer (`rbuild_store::remote`) is pushed from its registry.
        let absent: Vec<&Digest> = std::iter::once(&manifest.config)
            .filter(|d| !Store::has_blob(store, &d.digest))
            .chain(
                manifest
                    .layers
                    .iter()
                    .filter(|d| !store.has_layer_or_remote(d)),
            )
            .map(|d| &d.digest)
            .collect();
        if let Some(blob) = absent.first() {
            missing.push(format!("{} (blob `{blob}`)", label()));
            continue;
        }
        let manifest_media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| entry.media_type.clone());
        let is_image = !rbuild_store::target::is_attestation(entry)
            && rbuild_store::media::is_image_config(&manifest.config.media_type);
        let layers = if is_image {
            let record = store
                .image_for_platform(&entry.digest, Some(&entry.media_type), &Platform::host())
                .map_err(store_err)?;
            local_image_of(store, &record)?.layers
        } else {
            // An artifact (attestation): its blobs go as they are.
            manifest
                .layers
                .iter()
                .map(|l| LocalLayer {
                    diff_id: l.digest.clone(),
                    digest: l.digest.clone(),
                    size: l.size,
                    media_type: l.media_type.clone(),
                })
                .collect()
        };
        children.push(LocalChild::Image(LocalImage {
            manifest: manifest_bytes,
            manifest_media_type,
            layers,
        }));
    }
    Ok(LocalIndex {
        index: bytes,
        media_type: media_type.to_string(),
        children,
    })
}

/// Repositories of `target`'s registry that also name the stored manifest or index `local`:
/// candidates for cross-repository mounts.
pub fn mount_candidates(store: &Store, local: &Digest, target: &RemoteRef) -> Vec<String> {
    let names = store.names_of(local).unwrap_or_default();
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

/// Fetch the remote layers among `layers` (`rbuild_store::remote`: listed by an image but
/// never downloaded) into the store, in parallel, each verified by digest as a pull does;
/// what every reader of a layer calls first (`run`, `save`, rootfs exports, a build step that
/// runs on a base). Stored layers and layers without a remote record are left alone (a reader
/// then fails with the store's own error). Returns how many were fetched.
pub fn fetch_remote_layers(
    client: &crate::Client,
    store: &Store,
    layers: &[rbuild_store::Layer],
    progress: &dyn crate::Progress,
) -> Result<usize> {
    let mut todo: Vec<(StoreDescriptor, RemoteRef)> = Vec::new();
    for layer in layers {
        let d = &layer.descriptor;
        if todo.iter().any(|(t, _)| t.digest == d.digest) {
            continue;
        }
        if let Some(from) = PushSource::remote_blob(store, &d.digest) {
            todo.push((d.clone(), from));
        }
    }
    if todo.is_empty() {
        return Ok(0);
    }
    let workers = client
        .config()
        .network
        .parallel
        .clamp(1, 16)
        .min(todo.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let fetched = std::sync::atomic::AtomicUsize::new(0);
    let first_error: std::sync::Mutex<Option<RegistryError>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    if first_error.lock().expect("lock").is_some() {
                        return;
                    }
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((d, from)) = todo.get(i) else { return };
                    match crate::pull::fetch_blob(client, store, from, d, progress) {
                        Ok(true) => {
                            fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            first_error.lock().expect("lock").get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("lock") {
        return Err(e);
    }
    Ok(fetched.into_inner())
}
