//! Base images for a build: resolved from the store (pulled first when missing, or when
//! `--pull` finds that the registry's tag moved), held against GC for the build, and
//! remembered so the final manifest can reuse their layer descriptors. A name given with
//! `--build-context` resolves to that context first (`named_context`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use rbuild_solver::op::{ImageBase, Platform};
use rbuild_solver::plan::{ImageSource, ResolvedImage};
use rbuild_store::{Digest, ImageRecord, Reference, Store};

/// A failure shown under the image reference in the Dockerfile: message and help line.
pub type SourceError = (String, Option<String>);

/// Fetches images from registries for the planner (`None` in [`StoreImages::new`] means
/// offline: only stored images resolve).
pub trait ImagePuller: Sync {
    /// Pull `reference` for `platform` into the store and return the stored image.
    fn pull(&self, reference: &Reference, platform: &Platform) -> Result<ImageRecord, SourceError>;
    /// `--pull`: does the registry's tag still name `local`? (Compared by digest.)
    fn is_current(&self, reference: &Reference, local: &ImageRecord) -> Result<bool, SourceError>;
}

/// Resolves `FROM` / `--from` images against the local store.
pub struct StoreImages<'a> {
    store: &'a Store,
    /// Every image resolved during planning, by manifest digest.
    seen: Mutex<BTreeMap<Digest, ImageRecord>>,
    /// Images already resolved, by reference and platform: each is pulled or checked once.
    resolved: Mutex<BTreeMap<String, ImageRecord>>,
    puller: Option<&'a dyn ImagePuller>,
    /// `--pull`: re-check the tags of stored images against the registry.
    refresh: bool,
    /// `--build-context`s: names that resolve to them before any stage or image.
    contexts: crate::named_context::Contexts,
}

impl<'a> StoreImages<'a> {
    pub fn new(store: &'a Store, puller: Option<&'a dyn ImagePuller>) -> StoreImages<'a> {
        StoreImages {
            store,
            seen: Mutex::new(BTreeMap::new()),
            resolved: Mutex::new(BTreeMap::new()),
            puller,
            refresh: false,
            contexts: crate::named_context::Contexts::default(),
        }
    }

    /// Resolve the names of `contexts` to them (`--build-context`).
    pub fn with_contexts(
        mut self,
        contexts: &BTreeMap<String, crate::named_context::NamedContext>,
    ) -> StoreImages<'a> {
        self.contexts = crate::named_context::Contexts::new(contexts);
        self
    }

    pub(crate) fn store(&self) -> &'a Store {
        self.store
    }

    /// Use `record` as a base of this build: held against GC, its layers known to the build.
    pub(crate) fn remember(&self, record: &ImageRecord) {
        let _ = self.store.hold_blob(&record.manifest_digest);
        self.seen
            .lock()
            .expect("images lock")
            .insert(record.manifest_digest.clone(), record.clone());
    }

    /// Re-resolve the tags of stored images against the registry (`build --pull`).
    pub fn refreshing(mut self, refresh: bool) -> StoreImages<'a> {
        self.refresh = refresh;
        self
    }

    /// The image records used as bases, by manifest digest.
    pub fn records(&self) -> BTreeMap<Digest, ImageRecord> {
        self.seen.lock().expect("images lock").clone()
    }

    /// The stored image for `parsed`, pulled first when it is missing, stored for another
    /// platform, or (with `--pull`) no longer what the registry's tag names. Without a
    /// puller a stored image is used as it is (docker's behaviour without `--pull`).
    fn fetch(
        &self,
        reference: &str,
        parsed: &Reference,
        platform: &Platform,
    ) -> Result<ImageRecord, SourceError> {
        let memo = format!("{parsed} {platform}");
        if let Some(record) = self.resolved.lock().expect("images lock").get(&memo) {
            return Ok(record.clone());
        }
        // A multi-platform image (a tag naming an index) gives the platform's manifest.
        let record = match self.store.resolve_image_for(reference, platform) {
            Ok(record) => match self.puller {
                Some(puller) if !platform_matches(&record, platform) => {
                    puller.pull(parsed, platform)?
                }
                Some(puller)
                    if self.refresh
                        && parsed.digest().is_none()
                        && !puller.is_current(parsed, &record)? =>
                {
                    puller.pull(parsed, platform)?
                }
                _ => record,
            },
            Err(err) if err.is_not_found() => {
                match (self.stored_index_entry(parsed, platform), self.puller) {
                    (Some(record), _) => record,
                    (None, Some(puller)) => puller.pull(parsed, platform)?,
                    (None, None) => {
                        return Err((
                            format!("image `{}` is not in the store", parsed.familiar()),
                            Some(format!(
                                "{err}; load it with `rbuild load -i FILE` or `rbuild pull {}` \
                                 (the build ran with --pull=never)",
                                parsed.familiar()
                            )),
                        ));
                    }
                }
            }
            // A stored index without this platform's manifest: pull it if we may.
            Err(err @ rbuild_store::Error::Conflict { .. }) => match self.puller {
                Some(puller) => puller.pull(parsed, platform)?,
                None => {
                    let help = miette::Diagnostic::help(&err).map(|h| h.to_string());
                    return Err((err.to_string(), help));
                }
            },
            Err(err) => return Err((err.to_string(), None)),
        };
        self.resolved
            .lock()
            .expect("images lock")
            .insert(memo, record.clone());
        Ok(record)
    }

    /// `name@sha256:<index>` of a multi-platform image pulled before: the stored index's
    /// entry for `platform`, when that image is stored (the store names only the platform
    /// manifest, so a build pinned to the index digest stays offline).
    fn stored_index_entry(&self, parsed: &Reference, platform: &Platform) -> Option<ImageRecord> {
        let bytes = self.store.read_blob(parsed.digest()?).ok()?;
        let index: rbuild_store::Index = serde_json::from_slice(&bytes).ok()?;
        let entry = platform.select(&index.manifests)?;
        self.store.image(&entry.digest).ok()
    }
}

/// Whether an image runs on `platform` (an image without a recorded platform is accepted).
fn platform_matches(record: &ImageRecord, platform: &Platform) -> bool {
    let config = &record.config;
    config.architecture.is_empty()
        || platform.matches(&Platform::new(
            &config.os,
            &config.architecture,
            config.variant.as_deref(),
        ))
}

impl ImageSource for StoreImages<'_> {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, (String, Option<String>)> {
        if let Some(resolved) =
            crate::named_context::resolve(self, &self.contexts, reference, platform)
        {
            return resolved;
        }
        self.resolve_stored(reference, platform)
    }

    fn replaces_stage(&self, name: &str) -> bool {
        self.contexts.names(name)
    }
}

impl StoreImages<'_> {
    /// `reference` from the store (pulled first when needed), never a named context.
    pub(crate) fn resolve_stored(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, (String, Option<String>)> {
        let parsed = Reference::parse(reference).map_err(|e| {
            (
                format!("`{reference}` is not a valid image reference"),
                Some(e.to_string()),
            )
        })?;
        let record = self.fetch(reference, &parsed, platform)?;
        if !platform_matches(&record, platform) {
            return Err((
                format!(
                    "image `{}` is for {}/{}, the build targets {platform}",
                    parsed.familiar(),
                    record.config.os,
                    record.config.architecture
                ),
                Some(
                    "pass `--platform` to match the image, or use an image for this platform"
                        .into(),
                ),
            ));
        }
        // Keep its blobs (and snapshots) from a concurrent prune while this build uses them.
        self.remember(&record);
        Ok(resolved_image(parsed.to_string(), &record))
    }
}

/// What the planner knows of a stored image used under `reference`.
pub(crate) fn resolved_image(reference: String, record: &ImageRecord) -> ResolvedImage {
    ResolvedImage {
        base: ImageBase {
            reference,
            manifest_digest: record.manifest_digest.clone(),
            config_digest: record.config_digest.clone(),
            diff_ids: record.layers.iter().map(|l| l.diff_id.clone()).collect(),
        },
        config: record.config.clone(),
    }
}
