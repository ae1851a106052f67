//! Pushing: compress uncompressed local layers on all cores (remembering the compressed
//! digests), upload config and layers in parallel (skipping blobs the registry has and
//! mounting from sibling repositories), then PUT the manifest — always blobs before manifest.
//! A remote layer (an image built on a base whose layers were never downloaded, see
//! `rbuild_store::remote`) is mounted from the base's repository when it is on the same
//! registry (the mount asked first, without a HEAD: one request per base layer), else copied
//! registry to registry: a streaming GET from the source feeds the
//! upload, verified as it streams, never through the local disk.
//! Compression is gzip via gzp in parallel blocks, or multithreaded zstd, at pinned levels so
//! the same layer always gives the same digest; compressed digests are remembered per
//! (diff_id, compression) by the store side (`store_impl`).
//!
//! A multi-platform image ([`push_target`] of a [`LocalTarget::Index`], [`push_index`]) goes
//! entries first: each platform's (and attestation's) blobs and manifest by digest, nested
//! indexes likewise, then the index under the tag. Its bytes are sent unchanged when no entry
//! changed, so an index pulled with `--all-platforms` keeps its digest everywhere it is pushed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rbuild_store::Digest;
use serde_json::Value;

use crate::client::repo::{BlobPush, Repo};
use crate::client::transport::Client;
use crate::compress::{Compression, compress};
use crate::error::{RegistryError, Result};
use crate::manifest::{Descriptor, media};
use crate::progress::{BlobOutcome, Progress};
use crate::remote::RemoteRef;
use crate::store_api::{LocalChild, LocalImage, LocalIndex, LocalLayer, LocalTarget, PushSource};

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Compression for layers stored uncompressed (built layers).
    pub compression: Compression,
    /// Compression threads per layer: 0 = all cores, 1 = single-threaded reference encoder.
    pub compress_threads: usize,
    /// Other repositories of the same registry to try cross-mounting blobs from.
    pub mount_from: Vec<String>,
    /// Directory for temporary compressed layers (inside the store root).
    pub tmp_dir: std::path::PathBuf,
}

/// The result of a push.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// Digest of the manifest as pushed.
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// The exact manifest bytes pushed.
    pub manifest: Vec<u8>,
    pub uploaded: usize,
    pub skipped: usize,
    pub mounted: usize,
}

fn is_uncompressed(mt: &str) -> bool {
    mt == media::OCI_LAYER || mt == "application/vnd.docker.image.rootfs.diff.tar"
}

#[derive(Default)]
struct Tally {
    uploaded: AtomicUsize,
    skipped: AtomicUsize,
    mounted: AtomicUsize,
}

impl Tally {
    fn count(&self, p: BlobPush) -> BlobOutcome {
        match p {
            BlobPush::Skipped => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
                BlobOutcome::AlreadyPresent
            }
            BlobPush::Mounted => {
                self.mounted.fetch_add(1, Ordering::Relaxed);
                BlobOutcome::Mounted
            }
            BlobPush::Uploaded => {
                self.uploaded.fetch_add(1, Ordering::Relaxed);
                BlobOutcome::Uploaded
            }
        }
    }
}

/// Get one layer into the registry and return the descriptor it has there: stored
/// compressed blobs go as they are; uncompressed ones are compressed (or, when a previous
/// push remembered the compressed digest and the registry still has it, skipped outright).
fn push_layer(
    repo: &Repo<'_>,
    source: &dyn PushSource,
    layer: &LocalLayer,
    opts: &PushOptions,
    progress: &dyn Progress,
    tally: &Tally,
) -> Result<(Digest, u64, String)> {
    if !is_uncompressed(&layer.media_type) {
        let digest = layer.digest.clone();
        let remote = source.remote_blob(&digest);
        let open = || match &remote {
            Some(from) => open_remote(repo.client, from, &digest, layer.size),
            None => source.open_blob(&digest),
        };
        progress.blob_start(&digest, layer.size);
        let outcome = match &remote {
            // The base's own repository on this registry: mounted straight away, one request
            // and no bytes moved (the registry answers 201 whether it mounted the blob or
            // already had it here, so no HEAD first); refused, the usual push below.
            Some(from)
                if same_registry(repo, from)
                    && repo.mount_only(&digest, std::slice::from_ref(&from.repository))? =>
            {
                BlobPush::Mounted
            }
            _ => repo.push_blob(&digest, layer.size, &open, &opts.mount_from)?,
        };
        progress.blob_done(&digest, tally.count(outcome));
        return Ok((digest, layer.size, layer.media_type.clone()));
    }
    let comp = opts.compression;
    let remembered = source.compressed_digest(&layer.diff_id, comp.name());
    if let Some((digest, size)) = remembered {
        // Compressed before: the registry may have it here, or in a repository it can be
        // mounted from; either way nothing is compressed or uploaded again.
        let outcome = if repo
            .blob_exists(
                &digest,
                Some(&format!("repository:{}:pull,push", repo.name)),
            )?
            .is_some()
        {
            Some(BlobPush::Skipped)
        } else if repo.mount_only(&digest, &opts.mount_from)? {
            Some(BlobPush::Mounted)
        } else {
            None
        };
        if let Some(outcome) = outcome {
            progress.blob_done(&digest, tally.count(outcome));
            return Ok((digest, size, comp.media_type().to_string()));
        }
    }
    progress.note(&format!(
        "compressing layer {} with {}",
        short(&layer.diff_id),
        comp.name()
    ));
    let mut input = source.open_blob(&layer.digest)?;
    let staged = compress(&mut input, comp, opts.compress_threads, &opts.tmp_dir)?;
    source.remember_compressed(&layer.diff_id, comp.name(), &staged.digest, staged.size)?;
    let path = staged.file.path().to_path_buf();
    let open = || -> Result<Box<dyn std::io::Read + Send>> {
        let f = std::fs::File::open(&path)
            .map_err(|e| RegistryError::io("reading a compressed layer", e))?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
    };
    progress.blob_start(&staged.digest, staged.size);
    let outcome = repo.push_blob(&staged.digest, staged.size, &open, &opts.mount_from)?;
    progress.blob_done(&staged.digest, tally.count(outcome));
    Ok((
        staged.digest.clone(),
        staged.size,
        comp.media_type().to_string(),
    ))
}

/// Whether `from` is on the registry `repo` pushes to (so a mount can work).
fn same_registry(repo: &Repo<'_>, from: &RemoteRef) -> bool {
    repo.client.config().push_endpoint(&from.registry).host == repo.host()
}

/// A remote layer's bytes, streamed from its registry for a registry-to-registry copy: one
/// GET feeding the upload, verified while it streams (a blob whose digest is wrong fails the
/// upload before it completes), never written to the local disk.
fn open_remote(
    client: &Client,
    from: &RemoteRef,
    digest: &Digest,
    size: u64,
) -> Result<Box<dyn std::io::Read + Send>> {
    let ep = client.config().push_endpoint(&from.registry);
    Repo::new(client, ep, &from.repository).open_blob(digest, size)
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// Push all layers in parallel; returns the registry descriptors `(digest, size, media
/// type)` in layer order.
pub(crate) fn push_layers(
    repo: &Repo<'_>,
    source: &dyn PushSource,
    layers: &[LocalLayer],
    opts: &PushOptions,
    progress: &dyn Progress,
    tally_out: &mut (usize, usize, usize),
) -> Result<Vec<(Digest, u64, String)>> {
    let tally = Tally::default();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<(Digest, u64, String)>>> = Mutex::new(vec![None; layers.len()]);
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    let workers = repo
        .client
        .config()
        .network
        .parallel
        .clamp(1, 16)
        .min(layers.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(layer) = layers.get(i) else { return };
                    match push_layer(repo, source, layer, opts, progress, &tally) {
                        Ok(d) => results.lock().expect("lock")[i] = Some(d),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
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
    *tally_out = (
        tally.uploaded.into_inner(),
        tally.skipped.into_inner(),
        tally.mounted.into_inner(),
    );
    Ok(results
        .into_inner()
        .expect("lock")
        .into_iter()
        .flatten()
        .collect())
}

/// Push a local image to `target` (tag or digest). The manifest is pushed byte-for-byte
/// when no layer needed compressing; otherwise its layer descriptors are rewritten to the
/// compressed blobs (and the manifest becomes OCI when zstd is used on a Docker manifest).
pub fn push_image(
    client: &Client,
    source: &dyn PushSource,
    image: &LocalImage,
    target: &RemoteRef,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushedImage> {
    push_one(client, source, image, target, opts, progress, false)
}

/// Push one image; with `by_digest` its manifest is PUT under its own digest (an index child).
fn push_one(
    client: &Client,
    source: &dyn PushSource,
    image: &LocalImage,
    target: &RemoteRef,
    opts: &PushOptions,
    progress: &dyn Progress,
    by_digest: bool,
) -> Result<PushedImage> {
    let display = target.to_string();
    let ep = client.config().push_endpoint(&target.registry);
    let repo = Repo::new(client, ep, &target.repository);
    let bad = |reason: String| RegistryError::Manifest {
        reference: display.clone(),
        reason,
    };
    let mut doc: Value = serde_json::from_slice(&image.manifest)
        .map_err(|e| bad(format!("the local manifest is not JSON: {e}")))?;
    let config: Descriptor =
        serde_json::from_value(doc.get("config").cloned().unwrap_or(Value::Null))
            .map_err(|e| bad(format!("the local manifest has no usable config: {e}")))?;
    let stored_layers = doc
        .get("layers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if stored_layers != image.layers.len() {
        return Err(bad(format!(
            "the local manifest lists {stored_layers} layers but the store described {}",
            image.layers.len()
        )));
    }
    let mut counts = (0, 0, 0);
    let pushed = push_layers(&repo, source, &image.layers, opts, progress, &mut counts)?;
    let open_config = || source.open_blob(&config.digest);
    progress.blob_start(&config.digest, config.size);
    let config_outcome =
        repo.push_blob(&config.digest, config.size, &open_config, &opts.mount_from)?;
    let outcome = match config_outcome {
        BlobPush::Uploaded => {
            counts.0 += 1;
            BlobOutcome::Uploaded
        }
        BlobPush::Skipped => {
            counts.1 += 1;
            BlobOutcome::AlreadyPresent
        }
        BlobPush::Mounted => {
            counts.2 += 1;
            BlobOutcome::Mounted
        }
    };
    progress.blob_done(&config.digest, outcome);
    let changed = pushed
        .iter()
        .zip(&image.layers)
        .any(|((d, _, _), l)| *d != l.digest);
    let (bytes, media_type) = if changed {
        let mut mt = image.manifest_media_type.clone();
        let zstd = opts.compression == Compression::Zstd;
        if mt == media::DOCKER_MANIFEST && zstd {
            // Docker schema 2 has no zstd layer type: the manifest becomes OCI.
            mt = media::OCI_MANIFEST.to_string();
            doc["config"]["mediaType"] = Value::from(media::OCI_CONFIG);
        }
        doc["mediaType"] = Value::from(mt.clone());
        let layers = doc["layers"].as_array_mut().expect("checked above");
        for (entry, (digest, size, layer_mt)) in layers.iter_mut().zip(&pushed) {
            let layer_mt = if mt == media::DOCKER_MANIFEST && layer_mt == media::OCI_LAYER_GZIP {
                media::DOCKER_LAYER_GZIP.to_string()
            } else {
                layer_mt.clone()
            };
            entry["digest"] = Value::from(digest.to_string());
            entry["size"] = Value::from(*size);
            entry["mediaType"] = Value::from(layer_mt);
        }
        (serde_json::to_vec(&doc).expect("json value serializes"), mt)
    } else {
        (image.manifest.clone(), image.manifest_media_type.clone())
    };
    let reference = if by_digest {
        Digest::of(&bytes).to_string()
    } else {
        target.reference().to_string()
    };
    let digest = repo.put_manifest(&reference, &bytes, &media_type)?;
    Ok(PushedImage {
        digest,
        size: bytes.len() as u64,
        media_type,
        manifest: bytes,
        uploaded: counts.0,
        skipped: counts.1,
        mounted: counts.2,
    })
}

/// Push what a local name points at: an image under `target`'s tag, or a multi-platform
/// image with [`push_index`].
pub fn push_target(
    client: &Client,
    source: &dyn PushSource,
    local: &LocalTarget,
    target: &RemoteRef,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushedImage> {
    match local {
        LocalTarget::Image(image) => push_image(client, source, image, target, opts, progress),
        LocalTarget::Index(index) => push_index(client, source, index, target, opts, progress),
    }
}

/// Push a multi-platform image: every entry first, by digest (an image's blobs, compressed as
/// needed, then its manifest; a nested index the same way, recursively), then the index
/// under `target`'s tag (or digest). When no entry changed (stored compressed, as pulled) the
/// index goes byte for byte, so its digest is the stored one; otherwise its entries are
/// rewritten to the pushed manifests. One progress line per platform.
pub fn push_index(
    client: &Client,
    source: &dyn PushSource,
    local: &LocalIndex,
    target: &RemoteRef,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushedImage> {
    push_index_as(client, source, local, target, opts, progress, false)
}

fn push_index_as(
    client: &Client,
    source: &dyn PushSource,
    local: &LocalIndex,
    target: &RemoteRef,
    opts: &PushOptions,
    progress: &dyn Progress,
    by_digest: bool,
) -> Result<PushedImage> {
    let (index, index_media_type, children) =
        (&local.index[..], local.media_type.as_str(), &local.children);
    let display = target.to_string();
    let bad = |reason: String| RegistryError::Manifest {
        reference: display.clone(),
        reason,
    };
    let mut doc: Value = serde_json::from_slice(index)
        .map_err(|e| bad(format!("the local index is not JSON: {e}")))?;
    let entries = doc
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("the local index has no `manifests`".into()))?;
    if entries.len() != children.len() {
        return Err(bad(format!(
            "the index lists {} manifests but {} were given",
            entries.len(),
            children.len()
        )));
    }
    let (mut uploaded, mut skipped, mut mounted) = (0, 0, 0);
    for (entry, child) in entries.iter_mut().zip(children) {
        let label = entry_label(entry);
        let pushed = match child {
            LocalChild::Image(image) => {
                push_one(client, source, image, target, opts, progress, true)?
            }
            LocalChild::Index(nested) => {
                push_index_as(client, source, nested, target, opts, progress, true)?
            }
        };
        progress.note(&format!(
            "{label}: digest: {} size: {}",
            pushed.digest, pushed.size
        ));
        uploaded += pushed.uploaded;
        skipped += pushed.skipped;
        mounted += pushed.mounted;
        entry["digest"] = Value::from(pushed.digest.to_string());
        entry["size"] = Value::from(pushed.size);
        entry["mediaType"] = Value::from(pushed.media_type);
    }
    let bytes = if serde_json::from_slice::<Value>(index).ok().as_ref() == Some(&doc) {
        index.to_vec()
    } else {
        serde_json::to_vec(&doc).expect("json value serializes")
    };
    let repo = Repo::new(
        client,
        client.config().push_endpoint(&target.registry),
        &target.repository,
    );
    let reference = if by_digest {
        Digest::of(&bytes).to_string()
    } else {
        target.reference().to_string()
    };
    let digest = repo.put_manifest(&reference, &bytes, index_media_type)?;
    Ok(PushedImage {
        digest,
        size: bytes.len() as u64,
        media_type: index_media_type.to_string(),
        manifest: bytes,
        uploaded,
        skipped,
        mounted,
    })
}

/// How an index entry is named in progress lines: its platform (`linux/arm64`), an
/// attestation (`unknown/unknown`, with the manifest it is about), or its digest.
fn entry_label(entry: &Value) -> String {
    let digest = entry.get("digest").and_then(Value::as_str).unwrap_or("?");
    let platform = entry
        .get("platform")
        .cloned()
        .and_then(|p| serde_json::from_value::<rbuild_store::Platform>(p).ok());
    let about = entry
        .get("annotations")
        .and_then(|a| a.get("vnd.docker.reference.digest"))
        .and_then(Value::as_str);
    match (platform, about) {
        (_, Some(about)) => format!("attestation for {}", short(about)),
        (Some(p), None) if p.os != "unknown" => p.to_string(),
        _ => format!("manifest {}", short(digest)),
    }
}
