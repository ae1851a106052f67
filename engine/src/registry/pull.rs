//! Automatic pulls while planning: `FROM`, `COPY --from=IMAGE` and `RUN --mount from=IMAGE`
//! name an image the store lacks (or `--pull` finds that its tag moved), so it is pulled for
//! the build's platform with `rbuild pull`'s progress (through the reporter), and failures become errors under the
//! reference in the Dockerfile, with the registry's own words. Only the manifest and config
//! are pulled (`pull_image_lazy`): the layers stay remote until a step reads them
//! (`remote_layers`), so a build that never reads its base never downloads it.

use rbuild_registry::RegistryError;
use rbuild_registry::pull::pull_image_lazy;
use rbuild_registry::store_impl::remote_ref;
use rbuild_solver::op::Platform;
use rbuild_store::{Digest, ImageRecord, Reference, Store};

use super::Registry;
use crate::images::{ImagePuller, SourceError};
use crate::report::{Reporter, Transfer};

/// Pulls through the build's registry connection into the store, progress to `reporter`.
pub struct Puller<'a> {
    pub store: &'a Store,
    pub registry: &'a Registry,
    pub reporter: &'a dyn Reporter,
}

fn failure(what: &str, reference: &Reference, err: &RegistryError) -> SourceError {
    let help = super::help_of(err).unwrap_or_else(|| {
        "check the name, your `rbuild login`, and that the registry (or the mirror in \
         `registries.toml`) is reachable"
            .into()
    });
    (
        format!(
            "cannot {what} `{}`: {}",
            reference.familiar(),
            super::describe(err)
        ),
        Some(help),
    )
}

fn config_failure(err: miette::Report) -> SourceError {
    (
        err.to_string(),
        err.help().map(|h| h.to_string()).or_else(|| {
            Some("fix `registries.toml` in the store root or `~/.config/rbuild/`".into())
        }),
    )
}

impl ImagePuller for Puller<'_> {
    fn pull(&self, reference: &Reference, platform: &Platform) -> Result<ImageRecord, SourceError> {
        let client = self.registry.client().map_err(config_failure)?;
        let remote = remote_ref(reference).map_err(|e| failure("pull", reference, &e))?;
        let spec = platform.normalized();
        let progress = self.reporter.transfer(Transfer::Pull);
        progress.note(&format!(
            "{}: Pulling from {} ({platform})",
            remote.reference(),
            remote.repository
        ));
        let pulled = pull_image_lazy(client, self.store, &remote, &spec, &*progress)
            .map_err(|e| failure("pull", reference, &e))?;
        progress.note(&format!("Digest: {}", pulled.digest));
        progress.note(&format!(
            "Status: {} for {} (layers are fetched when a step reads them)",
            if pulled.downloaded == 0 {
                "Image is up to date"
            } else {
                "Resolved manifest and config"
            },
            reference.familiar()
        ));
        let manifest = Digest::parse(&pulled.manifest.digest).map_err(|e| (e.to_string(), None))?;
        self.store
            .image(&manifest)
            .map_err(|e| (format!("the pulled image cannot be read: {e}"), None))
    }

    fn is_current(&self, reference: &Reference, local: &ImageRecord) -> Result<bool, SourceError> {
        let client = self.registry.client().map_err(config_failure)?;
        let remote = remote_ref(reference).map_err(|e| failure("check", reference, &e))?;
        let digest = rbuild_registry::pull::resolve_digest(client, &remote)
            .map_err(|e| failure("check", reference, &e))?;
        if digest == local.manifest_digest.as_str() {
            return Ok(true);
        }
        // A multi-platform tag resolves to its index: current when that index was pulled
        // before and lists the stored platform manifest.
        Ok(index_lists(self.store, &digest, &local.manifest_digest))
    }
}

/// Whether the stored blob `index` is an image index that lists `manifest`.
fn index_lists(store: &Store, index: &str, manifest: &Digest) -> bool {
    let Ok(index) = Digest::parse(index) else {
        return false;
    };
    let Ok(bytes) = store.read_blob(&index) else {
        return false;
    };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    doc["manifests"].as_array().is_some_and(|entries| {
        entries
            .iter()
            .any(|e| e["digest"].as_str() == Some(manifest.as_str()))
    })
}
