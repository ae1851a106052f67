//! Remote base layers (`rbuild_store::remote`): a base image is resolved by its manifest and
//! config alone, and its layers are downloaded only when something reads them — a build step
//! that runs on the base (RUN, COPY without `--link`, WORKDIR that misses the cache), `run`,
//! `save`, and rootfs or archive outputs. A build whose steps never read the base (every step
//! that executes is a `COPY --link`, the others cache hits) never downloads it, and `--push`
//! mounts or copies the base's blobs registry to registry (`rbuild_registry::push`).

use std::collections::BTreeMap;

use miette::{Report, WrapErr};
use rbuild_registry::Progress;
use rbuild_store::{Digest, ImageRecord, Layer, Store, Target};

use super::Registry;

/// Download the remote layers among `layers` (digest verified, into the store as a pull
/// stores them); nothing happens when all are stored, and no registry is contacted.
pub fn fetch_layers(
    registry: &Registry,
    store: &Store,
    layers: &[Layer],
    progress: &dyn Progress,
) -> miette::Result<usize> {
    let remote: Vec<Layer> = layers
        .iter()
        .filter(|l| store.remote_blob(&l.descriptor.digest).is_some())
        .cloned()
        .collect();
    if remote.is_empty() {
        return Ok(0);
    }
    let client = registry.client()?;
    let fetched =
        rbuild_registry::store_impl::fetch_remote_layers(client, store, &remote, progress)
            .map_err(Report::new)
            .wrap_err("cannot fetch the base image's layers from its registry")?;
    Ok(fetched)
}

/// [`fetch_layers`] for every image of `target` (each platform of an index).
pub fn fetch_target(
    registry: &Registry,
    store: &Store,
    target: &Target,
    progress: &dyn Progress,
) -> miette::Result<usize> {
    let layers: Vec<Layer> = target
        .images()
        .into_iter()
        .flat_map(|(_, r)| r.layers.clone())
        .collect();
    fetch_layers(registry, store, &layers, progress)
}

/// For commands outside a build (`run`, `save`): fetch `target`'s remote layers through a
/// registry connection made only if one is needed.
pub fn ensure_local(store: &Store, target: &Target, progress: &dyn Progress) -> miette::Result<()> {
    let registry = Registry::new(store);
    fetch_target(&registry, store, target, progress).map(drop)
}

/// The layers of a build's base images by diff_id, to find the ones a step runs on.
pub fn base_layers(bases: &BTreeMap<Digest, ImageRecord>) -> BTreeMap<Digest, Layer> {
    bases
        .values()
        .flat_map(|r| r.layers.iter())
        .map(|l| (l.diff_id.clone(), l.clone()))
        .collect()
}
