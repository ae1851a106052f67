//! The inline build cache (`--cache-to type=inline`): the solver's cache index document
//! (`rbuild.cache.index`, the config blob of a [`crate::cache`] artifact) embedded in the config
//! of the image it describes, under [`INLINE_CACHE_KEY`], as a base64 string — the shape of
//! BuildKit's `moby.buildkit.cache.v0` (a JSON `[]byte`). The layers are the image's own: its
//! manifest's layer descriptors paired with the config's `rootfs.diff_ids`, so an inline cache
//! can only describe steps whose layers are in the image (BuildKit's `min` mode).
//!
//! Interop: BuildKit's key holds BuildKit cache records over LLB digests, which rbuild cannot
//! compute; rbuild's keys are its own content hashes, which BuildKit cannot either. So rbuild
//! neither writes nor reads `moby.buildkit.cache.v0`: an image carrying only BuildKit's is
//! reported as such on import, and both keys are dropped from an inherited base config.
//!
//! Import ([`from_image`], [`from_index`]) trusts nothing: the config is fetched bounded and
//! digest-verified, the embedded document is bounded, and the diff_ids must pair one to one
//! with the manifest's layers; what the document claims is checked by the solver's merge
//! (the importer limits its entries to the image's layers).

use base64::Engine;
use rbuild_store::{Digest, ImageConfig, Platform};

use crate::cache::{CacheLayer, ImportedCache};
use crate::client::repo::Repo;
use crate::error::{RegistryError, Result};
use crate::manifest::{Document, FetchedManifest, Manifest};

/// The image config key of rbuild's inline cache.
pub const INLINE_CACHE_KEY: &str = "dev.rbuild.cache.v1";
/// The image config key of BuildKit's inline cache (never written, reported on import).
pub const BUILDKIT_INLINE_CACHE_KEY: &str = "moby.buildkit.cache.v0";
/// Largest embedded document accepted, as its base64 text (export and import).
pub const MAX_INLINE_BYTES: usize = 4 << 20;
/// Largest image config read for its inline cache.
const MAX_INLINE_CONFIG_BYTES: u64 = 8 << 20;

/// The embedded document was larger than [`MAX_INLINE_BYTES`] (its base64 length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge(pub usize);

/// Drop any inline cache `config` carries (rbuild's or BuildKit's: one inherited from a base
/// image describes the base's build, not this one), then embed `index` when given.
pub fn embed(config: &mut ImageConfig, index: Option<&[u8]>) -> std::result::Result<(), TooLarge> {
    config.extra.remove(INLINE_CACHE_KEY);
    config.extra.remove(BUILDKIT_INLINE_CACHE_KEY);
    let Some(index) = index else { return Ok(()) };
    let text = base64::engine::general_purpose::STANDARD.encode(index);
    if text.len() > MAX_INLINE_BYTES {
        return Err(TooLarge(text.len()));
    }
    config.extra.insert(
        INLINE_CACHE_KEY.to_string(),
        serde_json::Value::String(text),
    );
    Ok(())
}

/// The inline cache document of a parsed config; `Err` says why there is none usable.
pub fn extract(config: &ImageConfig) -> std::result::Result<Vec<u8>, String> {
    let Some(value) = config.extra.get(INLINE_CACHE_KEY) else {
        return Err(if config.extra.contains_key(BUILDKIT_INLINE_CACHE_KEY) {
            format!(
                "the image carries BuildKit's inline cache (`{BUILDKIT_INLINE_CACHE_KEY}`), which \
                 rbuild cannot use (its keys are BuildKit's LLB digests); build the image with \
                 rbuild's `--cache-to type=inline`"
            )
        } else {
            format!(
                "the image carries no inline build cache (`{INLINE_CACHE_KEY}`); build it with \
                 `--cache-to type=inline`"
            )
        });
    };
    let serde_json::Value::String(text) = value else {
        return Err(format!("its `{INLINE_CACHE_KEY}` is not a string"));
    };
    if text.len() > MAX_INLINE_BYTES {
        return Err(format!(
            "its inline cache is implausibly large ({} bytes, at most {MAX_INLINE_BYTES})",
            text.len()
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("its inline cache is not base64: {e}"))
}

/// Read the inline cache of the image manifest `m` (fetched from `repo`): the config is
/// fetched (bounded, verified) and its document paired with the image's layers.
pub(crate) fn from_image(
    repo: &Repo<'_>,
    m: &Manifest,
    digest: &Digest,
    display: &str,
) -> Result<ImportedCache> {
    let bad = |reason: String| RegistryError::Manifest {
        reference: display.to_string(),
        reason,
    };
    crate::pull::check_image(display, m)?;
    if m.config.size > MAX_INLINE_CONFIG_BYTES {
        return Err(bad(format!(
            "the image config is implausibly large for an inline cache ({} bytes)",
            m.config.size
        )));
    }
    let mut bytes = Vec::with_capacity(m.config.size as usize);
    repo.fetch_blob(&m.config.digest, m.config.size, &mut bytes, &|_| {})?;
    let config = ImageConfig::parse(&bytes, MAX_INLINE_CONFIG_BYTES, "image config")
        .map_err(|e| bad(e.to_string()))?;
    let index = extract(&config).map_err(bad)?;
    if config.rootfs.diff_ids.len() != m.layers.len() {
        return Err(bad(format!(
            "its config lists {} diff_ids for {} layers",
            config.rootfs.diff_ids.len(),
            m.layers.len()
        )));
    }
    let layers = config
        .rootfs
        .diff_ids
        .iter()
        .zip(&m.layers)
        .map(|(diff_id, blob)| CacheLayer {
            diff_id: diff_id.clone(),
            blob: blob.clone(),
        })
        .collect();
    Ok(ImportedCache {
        index,
        layers,
        digest: digest.clone(),
        inline: true,
    })
}

/// Read the inline cache of every platform image of the index `top` (attestations skipped),
/// as BuildKit reads every manifest of an index given to `--cache-from`. Each platform's
/// outcome is separate (named `REF (PLATFORM)`): one without a usable cache does not hide
/// the others.
pub(crate) fn from_index(
    repo: &Repo<'_>,
    top: &FetchedManifest,
    display: &str,
) -> Result<Vec<Result<ImportedCache>>> {
    let mut out = Vec::new();
    for (platform, child) in crate::pull::fetch_tree(repo, top, display)? {
        let Document::Manifest(m) = &child.manifest else {
            continue;
        };
        if platform.as_ref().is_some_and(|p| p.os == "unknown") || !crate::pull::is_image(m) {
            continue;
        }
        let shown = format!(
            "{display} ({})",
            platform
                .as_ref()
                .map_or_else(|| "unknown platform".to_string(), Platform::to_string)
        );
        out.push(from_image(repo, m, &child.digest, &shown));
    }
    if out.is_empty() {
        return Err(RegistryError::Manifest {
            reference: display.to_string(),
            reason: "the index lists no platform image (and a build cache is a manifest)".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Embedding replaces inherited caches (ours and BuildKit's), round-trips through
    /// `extract`, and refuses a document over the limit; extraction explains what is missing.
    #[test]
    fn embed_and_extract() {
        let mut config = ImageConfig::default();
        config.extra.insert(
            BUILDKIT_INLINE_CACHE_KEY.into(),
            serde_json::Value::String("W10=".into()),
        );
        let err = extract(&config).unwrap_err();
        assert!(err.contains("BuildKit's inline cache"), "{err}");
        embed(&mut config, Some(b"{\"format\":1}")).unwrap();
        assert!(!config.extra.contains_key(BUILDKIT_INLINE_CACHE_KEY));
        assert_eq!(extract(&config).unwrap(), b"{\"format\":1}");
        // Deterministic: the same document gives the same config bytes.
        let mut again = ImageConfig::default();
        embed(&mut again, Some(b"{\"format\":1}")).unwrap();
        assert_eq!(config.to_bytes().unwrap(), again.to_bytes().unwrap());
        embed(&mut config, None).unwrap();
        assert!(
            extract(&config)
                .unwrap_err()
                .contains("no inline build cache")
        );

        let huge = vec![b'x'; MAX_INLINE_BYTES];
        assert!(matches!(embed(&mut config, Some(&huge)), Err(TooLarge(_))));
        assert!(config.extra.is_empty());
        config.extra.insert(
            INLINE_CACHE_KEY.into(),
            serde_json::Value::String("A".repeat(MAX_INLINE_BYTES + 4)),
        );
        assert!(extract(&config).unwrap_err().contains("implausibly large"));
        config.extra.insert(
            INLINE_CACHE_KEY.into(),
            serde_json::Value::String("%%".into()),
        );
        assert!(extract(&config).unwrap_err().contains("not base64"));
        config
            .extra
            .insert(INLINE_CACHE_KEY.into(), serde_json::json!({"a": 1}));
        assert!(extract(&config).unwrap_err().contains("not a string"));
    }

    /// An image config BuildKit made with `--export-cache type=inline` (recorded, see
    /// `testdata/buildkit-inline-cache/`) parses, and its cache is reported as BuildKit's.
    #[test]
    fn buildkit_inline_cache_is_recognised() {
        let bytes = include_bytes!("../../testdata/buildkit-inline-cache/config.json");
        let config = ImageConfig::parse(bytes, MAX_INLINE_CONFIG_BYTES, "config").unwrap();
        assert!(config.extra[BUILDKIT_INLINE_CACHE_KEY].is_string());
        let err = extract(&config).unwrap_err();
        assert!(err.contains("BuildKit's inline cache"), "{err}");
        // Ours replaces it, and the rest of the config is untouched.
        let mut ours = config.clone();
        embed(&mut ours, Some(b"{}")).unwrap();
        assert_eq!(extract(&ours).unwrap(), b"{}");
        assert!(!ours.extra.contains_key(BUILDKIT_INLINE_CACHE_KEY));
        assert_eq!(ours.rootfs, config.rootfs);
        assert_eq!(ours.history, config.history);
    }
}
