//! Pulling: resolve a reference (mirrors first, falling through to the next endpoint on
//! network errors, 404, 429 and 5xx), select the platform from an index (at most two levels of
//! index, cycles refused), then download the missing config and layers in parallel into store
//! ingests, committing nothing until every blob has been verified, and finally record the
//! image (and its registry digest, for `RepoDigests`). Pulled layers are verified by digest;
//! they are not run through the store's layer scan.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::client::repo::Repo;
use crate::client::transport::Client;
use crate::error::{RegistryError, Result};
use rbuild_store::{Digest, Platform};

use crate::manifest::{Descriptor, Document, FetchedManifest, Manifest, is_supported_layer, media};
use crate::progress::{BlobOutcome, Progress};
use crate::remote::RemoteRef;
use crate::store_api::{Ingest, PullTarget};

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The digest the reference resolved to (the index digest for multi-platform images):
    /// what `docker pull` prints as `Digest:`.
    pub digest: Digest,
    /// The platform manifest actually used.
    pub manifest: FetchedManifest,
    /// The index the manifest was selected from, if any.
    pub index: Option<FetchedManifest>,
    /// Host of the endpoint that served the pull (a mirror or the registry).
    pub served_by: String,
    /// Number of blobs downloaded (the rest were already stored).
    pub downloaded: usize,
}

/// Resolve `reference` to its top-level manifest, trying mirrors first. Returns the repo
/// handle of the endpoint that answered.
pub fn resolve<'c>(
    client: &'c Client,
    reference: &RemoteRef,
) -> Result<(Repo<'c>, FetchedManifest)> {
    let endpoints = client.config().pull_endpoints(&reference.registry);
    let display = reference.to_string();
    let mut last_err = None;
    for ep in endpoints {
        let mirror = ep.mirror;
        let repo = Repo::new(client, ep, &reference.repository);
        match repo.get_manifest(reference.reference(), &display) {
            Ok(m) => return Ok((repo, m)),
            Err(e) if mirror && e.is_endpoint_failure() => {
                tracing::info!(mirror = repo.host(), error = %e, "mirror failed, trying the next endpoint");
                last_err = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.expect("there is always at least the registry endpoint"))
}

/// Pick the manifest for `platform` from a top-level manifest (following at most two
/// levels of index).
pub fn select_platform(
    repo: &Repo<'_>,
    top: &FetchedManifest,
    platform: &Platform,
    display: &str,
) -> Result<(FetchedManifest, Option<FetchedManifest>)> {
    let mut seen = vec![top.digest.clone()];
    let mut index: Option<FetchedManifest> = None;
    let mut current = top.clone();
    for _depth in 0..3 {
        match &current.manifest {
            Document::Manifest(_) => return Ok((current, index)),
            Document::Index(idx) => {
                let Some(entry) = platform.select(&idx.manifests) else {
                    let available = idx
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref())
                        .map(Platform::to_string)
                        .collect::<Vec<_>>();
                    return Err(RegistryError::NoPlatform {
                        reference: display.to_string(),
                        platform: platform.to_string(),
                        available: if available.is_empty() {
                            "none".into()
                        } else {
                            available.join(", ")
                        },
                    });
                };
                if seen.contains(&entry.digest) {
                    return Err(RegistryError::Manifest {
                        reference: display.to_string(),
                        reason: "the index refers to itself (cycle)".into(),
                    });
                }
                seen.push(entry.digest.clone());
                let child =
                    repo.get_manifest(&entry.digest, &format!("{display}@{}", entry.digest))?;
                if index.is_none() {
                    index = Some(current.clone());
                }
                current = child;
            }
        }
    }
    Err(RegistryError::Manifest {
        reference: display.to_string(),
        reason: "indexes nested more than two levels deep".into(),
    })
}

/// Check that an image manifest is a runnable container image rbuild can unpack.
fn check_image(display: &str, m: &Manifest) -> Result<()> {
    let bad = |reason: String| RegistryError::Manifest {
        reference: display.to_string(),
        reason,
    };
    if m.config.media_type != media::OCI_CONFIG && m.config.media_type != media::DOCKER_CONFIG {
        return Err(bad(format!(
            "not a container image: its config has media type `{}`",
            m.config.media_type
        )));
    }
    for layer in &m.layers {
        if layer.urls.as_ref().is_some_and(|u| !u.is_empty())
            || layer.media_type == media::DOCKER_FOREIGN_LAYER
            || layer.media_type.contains("nondistributable")
        {
            return Err(bad(format!(
                "layer `{}` is a foreign layer that must be fetched from external URLs, which rbuild refuses",
                layer.digest
            )));
        }
        if !is_supported_layer(&layer.media_type) {
            return Err(bad(format!(
                "layer `{}` has unsupported media type `{}`",
                layer.digest, layer.media_type
            )));
        }
    }
    Ok(())
}

/// Download `blobs` (skipping those already stored) in parallel into ingests; return the
/// ingests, uncommitted, only if every blob verified. On failure every ingest is dropped.
pub(crate) fn download_blobs<'s>(
    repo: &Repo<'_>,
    store: &'s dyn PullTarget,
    blobs: &[Descriptor],
    progress: &dyn Progress,
) -> Result<Vec<Box<dyn Ingest + 's>>> {
    let mut todo: Vec<&Descriptor> = Vec::new();
    for d in blobs {
        if todo.iter().any(|t| t.digest == d.digest) {
            continue;
        }
        if store.has_blob(&d.digest) {
            progress.blob_done(&d.digest, BlobOutcome::AlreadyPresent);
        } else {
            todo.push(d);
        }
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done: Mutex<Vec<Box<dyn Ingest + 's>>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    let workers = repo
        .client
        .config()
        .network
        .parallel
        .clamp(1, 16)
        .min(todo.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(d) = todo.get(i) else { return };
                    match fetch_one(repo, store, d, progress) {
                        Ok(ingest) => {
                            progress.blob_done(&d.digest, BlobOutcome::Downloaded);
                            done.lock().expect("lock").push(ingest);
                        }
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
    Ok(done.into_inner().expect("lock"))
}

/// One blob, with one fresh retry after a digest mismatch (a corrupt cache node may serve
/// different bytes the second time).
fn fetch_one<'s>(
    repo: &Repo<'_>,
    store: &'s dyn PullTarget,
    d: &Descriptor,
    progress: &dyn Progress,
) -> Result<Box<dyn Ingest + 's>> {
    let mut tries = 0;
    loop {
        tries += 1;
        progress.blob_start(&d.digest, d.size);
        let mut ingest = store.begin_blob(&d.digest, d.size)?;
        let report = |n: u64| progress.blob_bytes(&d.digest, n);
        match repo.fetch_blob(&d.digest, d.size, &mut ingest, &report) {
            Ok(()) => return Ok(ingest),
            Err(RegistryError::DigestMismatch { .. }) if tries == 1 => {
                tracing::warn!(digest = %d.digest, "digest mismatch, downloading once more");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Pull an image: resolve, select `platform`, download what the store lacks, verify,
/// commit, record. Nothing is committed or recorded if any step fails.
pub fn pull_image(
    client: &Client,
    store: &dyn PullTarget,
    reference: &RemoteRef,
    platform: &Platform,
    progress: &dyn Progress,
) -> Result<PulledImage> {
    let display = reference.to_string();
    let (repo, top) = resolve(client, reference)?;
    let (manifest, index) = select_platform(&repo, &top, platform, &display)?;
    let Document::Manifest(image) = &manifest.manifest else {
        return Err(RegistryError::Manifest {
            reference: display,
            reason: "the platform entry is not an image manifest".into(),
        });
    };
    check_image(&display, image)?;
    if image.config.size > 64 << 20 {
        return Err(RegistryError::Manifest {
            reference: display,
            reason: format!(
                "the image config is implausibly large ({} bytes)",
                image.config.size
            ),
        });
    }
    let mut blobs = vec![image.config.clone()];
    blobs.extend(image.layers.iter().cloned());
    let ingests = download_blobs(&repo, store, &blobs, progress)?;
    let downloaded = ingests.len();
    for ingest in ingests {
        ingest.commit()?;
    }
    store.record_image(
        &reference.name(),
        reference.tag.as_deref(),
        &manifest,
        index.as_ref(),
    )?;
    Ok(PulledImage {
        digest: top.digest.clone(),
        manifest,
        index,
        served_by: repo.host().to_string(),
        downloaded,
    })
}

/// Download one blob of `reference`'s repository into the store (used by the build cache
/// import to fetch only the layers a build needs).
pub fn fetch_blob(
    client: &Client,
    store: &dyn PullTarget,
    reference: &RemoteRef,
    blob: &Descriptor,
    progress: &dyn Progress,
) -> Result<bool> {
    if store.has_blob(&blob.digest) {
        return Ok(false);
    }
    let endpoints = client.config().pull_endpoints(&reference.registry);
    let mut last_err = None;
    for ep in endpoints {
        let mirror = ep.mirror;
        let repo = Repo::new(client, ep, &reference.repository);
        match fetch_one(&repo, store, blob, progress) {
            Ok(ingest) => {
                ingest.commit()?;
                progress.blob_done(&blob.digest, BlobOutcome::Downloaded);
                return Ok(true);
            }
            Err(e) if mirror && e.is_endpoint_failure() => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.expect("there is always at least the registry endpoint"))
}

/// The digest a reference currently resolves to, by HEAD (cheaper than GET under Docker Hub
/// rate limits), trying mirrors first: `build --pull` compares it with the local image.
pub fn resolve_digest(client: &Client, reference: &RemoteRef) -> Result<Digest> {
    if let Some(d) = &reference.digest {
        return Ok(d.clone());
    }
    let endpoints = client.config().pull_endpoints(&reference.registry);
    let mut last_err = None;
    for ep in endpoints {
        let mirror = ep.mirror;
        let repo = Repo::new(client, ep, &reference.repository);
        let outcome = match repo.head_manifest(reference.reference()) {
            // A registry that omits Docker-Content-Digest on HEAD: hash the GET body instead.
            Ok(Some(d)) => Ok(d),
            Ok(None) => repo
                .get_manifest(reference.reference(), &reference.to_string())
                .map(|m| m.digest),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(d) => return Ok(d),
            Err(e) if mirror && e.is_endpoint_failure() => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.expect("there is always at least the registry endpoint"))
}
