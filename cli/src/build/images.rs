//! Base images for a build: resolved from the store (pulled first when missing, once the
//! registry is wired), held against GC for the build, and remembered so the final manifest can
//! reuse their layer descriptors.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rbuild_solver::op::{ImageBase, Platform};
use rbuild_solver::plan::{ImageSource, ResolvedImage};
use rbuild_store::{ImageRecord, Reference, Store};

/// Resolves `FROM` / `--from` images against the local store.
pub struct StoreImages<'a> {
    store: &'a Store,
    /// Every image resolved during planning, by manifest digest.
    seen: Mutex<BTreeMap<String, ImageRecord>>,
    /// Hook that fetches a missing image (registry pull); `None` means offline.
    pull: Option<&'a PullFn<'a>>,
}

/// Fetch an image that is not in the store: `Ok(record)` or a message and help line.
pub type PullFn<'a> =
    dyn Fn(&Reference, &Platform) -> Result<ImageRecord, (String, Option<String>)> + Sync + 'a;

impl<'a> StoreImages<'a> {
    pub fn new(store: &'a Store, pull: Option<&'a PullFn<'a>>) -> StoreImages<'a> {
        StoreImages {
            store,
            seen: Mutex::new(BTreeMap::new()),
            pull,
        }
    }

    /// The image records used as bases, by manifest digest.
    pub fn records(&self) -> BTreeMap<String, ImageRecord> {
        self.seen.lock().expect("images lock").clone()
    }
}

impl ImageSource for StoreImages<'_> {
    fn resolve(
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
        let record = match self.store.resolve_image(reference) {
            Ok(record) => record,
            Err(err) if err.is_not_found() => match self.pull {
                Some(pull) => pull(&parsed, platform)?,
                None => {
                    return Err((
                        format!("image `{}` is not in the store", parsed.familiar()),
                        Some(format!(
                            "{err}; load it with `rbuild load -i FILE` or `rbuild pull {}`",
                            parsed.familiar()
                        )),
                    ));
                }
            },
            Err(err) => return Err((err.to_string(), None)),
        };
        if !record.config.architecture.is_empty()
            && (record.config.architecture != platform.architecture
                || record.config.os != platform.os)
        {
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
        let _ = self.store.hold_blob(&record.manifest_digest);
        let base = ImageBase {
            reference: parsed.to_string(),
            manifest_digest: record.manifest_digest.to_string(),
            config_digest: record.config_digest.to_string(),
            diff_ids: record
                .layers
                .iter()
                .map(|l| l.diff_id.to_string())
                .collect(),
        };
        let config = record.config.clone();
        self.seen
            .lock()
            .expect("images lock")
            .insert(base.manifest_digest.clone(), record);
        Ok(ResolvedImage { base, config })
    }
}
