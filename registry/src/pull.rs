//! Pulling: resolve a reference (mirrors first, falling through to the next endpoint on
//! network errors, 404, 429 and 5xx), select the platform from an index (at most two levels of
//! index, cycles refused), then download the missing config and layers in parallel into store
//! ingests, committing nothing until every blob has been verified, and finally record the
//! image (and its registry digest, for `RepoDigests`). Pulled layers are verified by digest;
//! they are not run through the store's layer scan.
//!
//! [`pull_all_platforms`] (`rbuild pull --all-platforms`) fetches the whole tree instead: the
//! index, every manifest it lists (nested indexes too, under the same bounds: two levels of
//! index, cycles refused, and at most [`MAX_INDEX_MANIFESTS`] manifests), and every config and
//! layer of them in one parallel download (a layer two platforms share is fetched once).
//! Attestation manifests (platform `unknown/unknown`, or any manifest whose config is not an
//! image config) are fetched too, with their blobs stored as opaque content (each at most 64
//! MiB, no external URLs), as containerd's `platforms.All` fetch (`ctr`/`nerdctl pull
//! --all-platforms`) does: the stored index is then complete, so it can be pushed elsewhere
//! with the same digest. Nothing is committed until every blob verified; the index is named
//! only after every manifest is stored.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::client::repo::Repo;
use crate::client::transport::Client;
use crate::error::{RegistryError, Result};
use rbuild_store::target::is_attestation;
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

/// The result of [`pull_all_platforms`].
#[derive(Debug, Clone)]
pub struct PulledIndex {
    /// The digest the reference resolved to: the index's (the manifest's for a
    /// single-platform image).
    pub digest: Digest,
    /// The top-level document as served (an index, or the one manifest).
    pub top: FetchedManifest,
    /// Every manifest and nested index below it, in walk order, with the platform its index
    /// entry names; empty for a single-platform image.
    pub manifests: Vec<(Option<Platform>, FetchedManifest)>,
    /// Host of the endpoint that served the pull.
    pub served_by: String,
    /// Number of blobs downloaded (the rest were already stored).
    pub downloaded: usize,
}

/// Most manifests (nested indexes included) one `pull --all-platforms` fetches.
pub const MAX_INDEX_MANIFESTS: usize = 256;

/// Largest config or artifact blob accepted (layers are bounded by the store).
const MAX_CONFIG_BYTES: u64 = 64 << 20;

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
pub(crate) fn check_image(display: &str, m: &Manifest) -> Result<()> {
    let bad = |reason: String| RegistryError::Manifest {
        reference: display.to_string(),
        reason,
    };
    if !rbuild_store::media::is_image_config(&m.config.media_type) {
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
    let (repo, top) = resolve(client, reference)?;
    pull_resolved(&repo, top, store, reference, platform, progress)
}

/// Pull an image's manifest and config only: its layers are recorded in the store as
/// remote ([`PullTarget::record_remote_layers`], where `reference`'s repository serves them)
/// and fetched when something reads them. What a build uses for a base whose filesystem no
/// step reads. An image with an uncompressed layer is pulled whole (a push would compress
/// that layer, which needs its bytes).
pub fn pull_image_lazy(
    client: &Client,
    store: &dyn PullTarget,
    reference: &RemoteRef,
    platform: &Platform,
    progress: &dyn Progress,
) -> Result<PulledImage> {
    let (repo, top) = resolve(client, reference)?;
    pull_selected(&repo, top, store, reference, platform, progress, true)
}

/// [`pull_image`] once `reference` resolved to `top` at `repo`.
fn pull_resolved(
    repo: &Repo<'_>,
    top: FetchedManifest,
    store: &dyn PullTarget,
    reference: &RemoteRef,
    platform: &Platform,
    progress: &dyn Progress,
) -> Result<PulledImage> {
    pull_selected(repo, top, store, reference, platform, progress, false)
}

/// Select the platform's manifest of `top` and store it with its config and (unless
/// `lazy`) its layers.
fn pull_selected(
    repo: &Repo<'_>,
    top: FetchedManifest,
    store: &dyn PullTarget,
    reference: &RemoteRef,
    platform: &Platform,
    progress: &dyn Progress,
    lazy: bool,
) -> Result<PulledImage> {
    let display = reference.to_string();
    let (manifest, index) = select_platform(repo, &top, platform, &display)?;
    let Document::Manifest(image) = &manifest.manifest else {
        return Err(RegistryError::Manifest {
            reference: display,
            reason: "the platform entry is not an image manifest".into(),
        });
    };
    check_image(&display, image)?;
    check_config_size(&display, image)?;
    let lazy = lazy
        && image.layers.iter().all(|l| {
            matches!(
                rbuild_store::media::layer_compression(&l.media_type),
                Some(rbuild_store::Compression::Gzip | rbuild_store::Compression::Zstd)
            )
        });
    let mut blobs = vec![image.config.clone()];
    if !lazy {
        blobs.extend(image.layers.iter().cloned());
    }
    let ingests = download_blobs(repo, store, &blobs, progress)?;
    let downloaded = ingests.len();
    for ingest in ingests {
        ingest.commit()?;
    }
    if lazy {
        let absent: Vec<Descriptor> = image
            .layers
            .iter()
            .filter(|l| !store.has_blob(&l.digest))
            .cloned()
            .collect();
        store.record_remote_layers(reference, &absent)?;
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

fn check_config_size(display: &str, image: &Manifest) -> Result<()> {
    if image.config.size > MAX_CONFIG_BYTES {
        return Err(RegistryError::Manifest {
            reference: display.to_string(),
            reason: format!(
                "the image config is implausibly large ({} bytes)",
                image.config.size
            ),
        });
    }
    Ok(())
}

/// Whether a manifest is a container image (its config is an image config) rather than an
/// artifact. BuildKit's attestation manifests have an image config media type too: their
/// index entry tells them apart ([`rbuild_store::target::is_attestation`]).
pub(crate) fn is_image(m: &Manifest) -> bool {
    rbuild_store::media::is_image_config(&m.config.media_type)
}

/// An artifact manifest (attestation) is stored as opaque blobs: no external URLs, each
/// blob bounded.
fn check_artifact(display: &str, m: &Manifest) -> Result<()> {
    for d in std::iter::once(&m.config).chain(&m.layers) {
        let reason = if d.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            format!(
                "artifact blob `{}` must be fetched from external URLs, which rbuild refuses",
                d.digest
            )
        } else if d.size > MAX_CONFIG_BYTES {
            format!(
                "artifact blob `{}` is implausibly large ({} bytes)",
                d.digest, d.size
            )
        } else {
            continue;
        };
        return Err(RegistryError::Manifest {
            reference: display.to_string(),
            reason,
        });
    }
    Ok(())
}

/// Fetch every manifest below the index `top` (breadth first, nested indexes at most one
/// level below `top`, cycles refused, at most [`MAX_INDEX_MANIFESTS`]), checking each image
/// as [`pull_image`] does. Returns them in walk order with their entries' platforms.
pub(crate) fn fetch_tree(
    repo: &Repo<'_>,
    top: &FetchedManifest,
    display: &str,
) -> Result<Vec<(Option<Platform>, FetchedManifest)>> {
    let bad = |reason: String| RegistryError::Manifest {
        reference: display.to_string(),
        reason,
    };
    let mut out: Vec<(Option<Platform>, FetchedManifest)> = Vec::new();
    let mut indexes = vec![top.digest.clone()];
    // (index, depth): the top index is depth 1; an index at depth 3 is refused.
    let mut queue = std::collections::VecDeque::from([(top.clone(), 1u32)]);
    while let Some((current, depth)) = queue.pop_front() {
        let Document::Index(index) = &current.manifest else {
            continue;
        };
        for entry in &index.manifests {
            if indexes.contains(&entry.digest) {
                return Err(bad("the index refers to itself (cycle)".into()));
            }
            if out.iter().any(|(_, m)| m.digest == entry.digest) {
                continue;
            }
            if !media::is_index(&entry.media_type) && !media::is_manifest(&entry.media_type) {
                return Err(bad(format!(
                    "index entry `{}` has media type `{}`, neither a manifest nor an index",
                    entry.digest, entry.media_type
                )));
            }
            if media::is_index(&entry.media_type) && depth >= 2 {
                return Err(bad("indexes nested more than two levels deep".into()));
            }
            if out.len() >= MAX_INDEX_MANIFESTS {
                return Err(bad(format!(
                    "the index lists more than {MAX_INDEX_MANIFESTS} manifests"
                )));
            }
            let child = repo.get_manifest(&entry.digest, &format!("{display}@{}", entry.digest))?;
            match &child.manifest {
                Document::Index(_) => {
                    if depth >= 2 {
                        return Err(bad("indexes nested more than two levels deep".into()));
                    }
                    indexes.push(child.digest.clone());
                    queue.push_back((child.clone(), depth + 1));
                }
                Document::Manifest(m) if !is_attestation(entry) && is_image(m) => {
                    check_image(display, m)?;
                    check_config_size(display, m)?;
                }
                Document::Manifest(m) => check_artifact(display, m)?,
            }
            out.push((entry.platform.clone(), child));
        }
    }
    Ok(out)
}

/// One progress line per platform (and per attestation) before the download.
fn note_manifest(progress: &dyn Progress, platform: Option<&Platform>, m: &FetchedManifest) {
    let short = short(&m.digest);
    let line = match &m.manifest {
        Document::Index(i) => format!("index {short} ({} manifests)", i.manifests.len()),
        Document::Manifest(image)
            if is_image(image) && platform.is_none_or(|p| p.os != "unknown") =>
        {
            let layers = image.layers.len();
            let size: u64 = image.layers.iter().map(|l| l.size).sum();
            format!(
                "{}: manifest {short} ({layers} layer{}, {})",
                platform.map_or_else(|| "unknown platform".to_string(), Platform::to_string),
                if layers == 1 { "" } else { "s" },
                rbuild_store::size::human(size)
            )
        }
        Document::Manifest(_) => format!("attestation manifest {short}"),
    };
    progress.note(&line);
}

fn short(digest: &Digest) -> &str {
    let hex = digest.hex();
    &hex[..hex.len().min(12)]
}

/// Pull every platform of a multi-platform image (`rbuild pull --all-platforms`): the index,
/// every manifest it lists (attestations included), and all their blobs, each blob once;
/// then store the manifests and name the index. A reference to a single-platform image
/// pulls that image. Nothing is committed or named if any step fails.
pub fn pull_all_platforms(
    client: &Client,
    store: &dyn PullTarget,
    reference: &RemoteRef,
    progress: &dyn Progress,
) -> Result<PulledIndex> {
    let display = reference.to_string();
    let (repo, top) = resolve(client, reference)?;
    if let Document::Manifest(_) = &top.manifest {
        let pulled = pull_resolved(&repo, top, store, reference, &Platform::host(), progress)?;
        return Ok(PulledIndex {
            digest: pulled.digest,
            top: pulled.manifest,
            manifests: Vec::new(),
            served_by: pulled.served_by,
            downloaded: pulled.downloaded,
        });
    }
    let manifests = fetch_tree(&repo, &top, &display)?;
    let mut blobs: Vec<Descriptor> = Vec::new();
    for (platform, m) in &manifests {
        note_manifest(progress, platform.as_ref(), m);
        if let Document::Manifest(image) = &m.manifest {
            blobs.push(image.config.clone());
            blobs.extend(image.layers.iter().cloned());
        }
    }
    let ingests = download_blobs(&repo, store, &blobs, progress)?;
    let downloaded = ingests.len();
    for ingest in ingests {
        ingest.commit()?;
    }
    let fetched: Vec<FetchedManifest> = manifests.iter().map(|(_, m)| m.clone()).collect();
    store.record_index(&reference.name(), reference.tag.as_deref(), &top, &fetched)?;
    Ok(PulledIndex {
        digest: top.digest.clone(),
        top,
        manifests,
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
