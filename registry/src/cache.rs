//! The shared build cache over any OCI registry: the cache index (a JSON document owned by
//! the solver) travels as the config blob of a small OCI artifact manifest whose layers are
//! the cached layer blobs, each annotated with its diff_id. Export uploads only new blobs;
//! import reads the index and lets the caller fetch just the layers it needs.
//!
//! The config blob's media type is `application/vnd.rbuild.cache.v1+json` (the solver's
//! `rbuild.cache.index` document); each layer descriptor carries the annotation
//! `dev.rbuild.diff_id`. What a build does with an imported cache (trust rules, lazy layer
//! fetches) is the solver's `cache_export` and the build session's business.
//!
//! [`import_caches`] also reads an image given as a cache reference: its inline cache
//! ([`crate::cache_inline`], one per platform image of an index).

use serde_json::json;

use crate::client::repo::Repo;
use crate::client::transport::Client;
use crate::error::{RegistryError, Result};
use rbuild_store::Digest;

use crate::manifest::{Descriptor, Document, media};
use crate::progress::Progress;
use crate::push::{PushOptions, push_layers};
use crate::remote::RemoteRef;
use crate::store_api::{LocalLayer, PushSource};

/// `artifactType` and config media type of a cache manifest.
pub const CACHE_ARTIFACT_TYPE: &str = "application/vnd.rbuild.cache.v1+json";
/// Layer annotation carrying the uncompressed digest.
pub const DIFF_ID_ANNOTATION: &str = "dev.rbuild.diff_id";
/// Largest cache index accepted on import.
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// One layer the imported cache can provide.
#[derive(Debug, Clone)]
pub struct CacheLayer {
    pub diff_id: Digest,
    /// The blob in the registry (fetch it with `pull::fetch_blob`).
    pub blob: Descriptor,
}

/// An imported cache: the index bytes as exported and the layers it references.
#[derive(Debug, Clone)]
pub struct ImportedCache {
    pub index: Vec<u8>,
    pub layers: Vec<CacheLayer>,
    /// Digest of the cache manifest (of the image, for an inline cache).
    pub digest: Digest,
    /// The cache was embedded in an image (`--cache-to type=inline`): its layers are the
    /// image's, and its entries may name no others.
    pub inline: bool,
}

/// The result of an export.
#[derive(Debug, Clone)]
pub struct ExportedCache {
    pub digest: Digest,
    pub uploaded: usize,
    pub skipped: usize,
}

/// Push `index` and `layers` as the cache artifact `target`. Blobs the registry already
/// holds are not uploaded again (and layers compressed before are not recompressed).
pub fn export_cache(
    client: &Client,
    source: &dyn PushSource,
    target: &RemoteRef,
    index: &[u8],
    layers: &[LocalLayer],
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<ExportedCache> {
    let ep = client.config().push_endpoint(&target.registry);
    let repo = Repo::new(client, ep, &target.repository);
    let mut counts = (0, 0, 0);
    let pushed = push_layers(&repo, source, layers, opts, progress, &mut counts)?;
    let index_digest = Digest::of(index);
    let owned = index.to_vec();
    let open = move || -> Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(owned.clone())))
    };
    match repo.push_blob(&index_digest, index.len() as u64, &open, &[])? {
        crate::client::repo::BlobPush::Skipped => counts.1 += 1,
        _ => counts.0 += 1,
    }
    let bytes = cache_manifest(index, &pushed, layers);
    let digest = repo.put_manifest(target.reference(), &bytes, media::OCI_MANIFEST)?;
    Ok(ExportedCache {
        digest,
        uploaded: counts.0,
        skipped: counts.1,
    })
}

/// The cache manifest over the config blob `index` and the layer blobs `stored` (`(digest,
/// size, media type)` in the order of `layers`, whose diff_ids they carry). The registry and
/// the local (OCI layout) export write this same document.
pub(crate) fn cache_manifest(
    index: &[u8],
    stored: &[(Digest, u64, String)],
    layers: &[LocalLayer],
) -> Vec<u8> {
    let layer_docs: Vec<_> = stored
        .iter()
        .zip(layers)
        .map(|((digest, size, mt), l)| {
            json!({
                "mediaType": mt,
                "digest": digest,
                "size": size,
                "annotations": { DIFF_ID_ANNOTATION: l.diff_id },
            })
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": CACHE_ARTIFACT_TYPE,
        "config": {
            "mediaType": CACHE_ARTIFACT_TYPE,
            "digest": Digest::of(index),
            "size": index.len(),
        },
        "layers": layer_docs,
    });
    serde_json::to_vec(&manifest).expect("json value serializes")
}

/// Check a cache manifest's config and read its layer list (`bad` words the errors).
pub(crate) fn cache_layers(
    m: &crate::manifest::Manifest,
    bad: &dyn Fn(String) -> RegistryError,
) -> Result<Vec<CacheLayer>> {
    if m.config.media_type != CACHE_ARTIFACT_TYPE {
        return Err(bad(format!(
            "not an rbuild cache: its config has media type `{}`",
            m.config.media_type
        )));
    }
    if m.config.size > MAX_INDEX_BYTES {
        return Err(bad(format!(
            "the cache index is implausibly large ({} bytes)",
            m.config.size
        )));
    }
    m.layers
        .iter()
        .map(|d| {
            let diff_id = d.annotation(DIFF_ID_ANNOTATION).ok_or_else(|| {
                bad(format!(
                    "layer `{}` lacks the `{DIFF_ID_ANNOTATION}` annotation",
                    d.digest
                ))
            })?;
            let diff_id = Digest::parse(diff_id)?;
            Ok(CacheLayer {
                diff_id,
                blob: d.clone(),
            })
        })
        .collect()
}

/// Read the cache artifact `reference`: its index bytes (verified) and the layers it lists.
/// No layer is downloaded.
pub fn import_cache(client: &Client, reference: &RemoteRef) -> Result<ImportedCache> {
    let display = reference.to_string();
    let (repo, fetched) = crate::pull::resolve(client, reference)?;
    let Document::Manifest(m) = &fetched.manifest else {
        return Err(RegistryError::Manifest {
            reference: display,
            reason: "a build cache is a manifest, not an index".into(),
        });
    };
    from_artifact(&repo, m, &fetched.digest, &display)
}

/// The cache artifact manifest `m`: its layers and its index (fetched, verified).
fn from_artifact(
    repo: &Repo<'_>,
    m: &crate::manifest::Manifest,
    digest: &Digest,
    display: &str,
) -> Result<ImportedCache> {
    let bad = |reason: String| RegistryError::Manifest {
        reference: display.to_string(),
        reason,
    };
    let layers = cache_layers(m, &bad)?;
    let mut index = Vec::with_capacity(m.config.size as usize);
    repo.fetch_blob(&m.config.digest, m.config.size, &mut index, &|_| {})?;
    Ok(ImportedCache {
        index,
        layers,
        digest: digest.clone(),
        inline: false,
    })
}

/// Read whatever `reference` names as a build cache: a cache artifact (as [`import_cache`]),
/// or an image carrying an inline cache — for an index, every platform image's, each its own
/// outcome (the error names the platform). The outer error: nothing could be read.
pub fn import_caches(client: &Client, reference: &RemoteRef) -> Result<Vec<Result<ImportedCache>>> {
    let display = reference.to_string();
    let (repo, fetched) = crate::pull::resolve(client, reference)?;
    Ok(match &fetched.manifest {
        Document::Manifest(m) if crate::pull::is_image(m) => vec![crate::cache_inline::from_image(
            &repo,
            m,
            &fetched.digest,
            &display,
        )],
        Document::Manifest(m) => vec![from_artifact(&repo, m, &fetched.digest, &display)],
        Document::Index(_) => crate::cache_inline::from_index(&repo, &fetched, &display)?,
    })
}
