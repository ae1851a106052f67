//! After a build solved: the target's config assembled, the image committed to the store with
//! the right layer descriptors, tags written (only now, so a failed or interrupted build tags
//! nothing), and the image id and metadata files written.

use std::collections::BTreeMap;
use std::path::Path;

use miette::{Context, Report};
use rbuild_solver::image;
use rbuild_solver::scheduler::Solved;
use rbuild_store::{Descriptor, Digest, ImageRecord, Layer, Reference, Target, media};

use crate::output::Cancelled;
use crate::{PlatformBuild, Session};

/// Parse every `-t` up front so a typo fails before anything runs.
pub fn parse_tags(tags: &[String]) -> miette::Result<Vec<Reference>> {
    tags.iter()
        .map(|t| {
            Reference::parse(t).map_err(|e| {
                miette::miette!(
                    code = "rbuild::usage::tag",
                    help = "write `-t name[:tag]`, e.g. `-t myapp:1.0`",
                    "invalid tag `{t}`: {e}"
                )
            })
        })
        .collect()
}

/// Commit the target stage's image of one platform's build (not tagged yet); `epoch` is
/// `SOURCE_DATE_EPOCH`. `inline_cache` (`--cache-to type=inline`) embeds the build cache in
/// the config, reporting through it (`registry::inline`).
pub fn commit(
    prepared: &Session,
    build: &PlatformBuild,
    solved: &Solved,
    epoch: Option<i64>,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    inline_cache: Option<&dyn Fn(&str)>,
) -> miette::Result<ImageRecord> {
    let plan = &build.planned.plan;
    let now = jiff::Timestamp::now().as_second();
    let mut config = image::assemble(&build.planned, solved, plan.target, epoch, now);
    if !labels.is_empty() {
        // `docker build --label`: over the Dockerfile's LABELs, in the final image only.
        let container = config.config.get_or_insert_with(Default::default);
        let merged = container.labels.get_or_insert_with(BTreeMap::new);
        merged.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    crate::registry::inline::apply(
        &prepared.cache,
        plan,
        solved,
        epoch,
        &mut config,
        inline_cache,
    )?;
    // Base layers keep their stored descriptors (possibly compressed); built layers are stored
    // uncompressed, so their blob digest is their diff_id.
    let mut known: BTreeMap<&Digest, &Layer> = BTreeMap::new();
    for record in prepared.bases.values() {
        for layer in &record.layers {
            known.insert(&layer.diff_id, layer);
        }
    }
    let built: BTreeMap<&Digest, u64> = solved
        .records()
        .filter_map(|r| r.layer.as_ref())
        .map(|l| (&l.diff_id, l.size))
        .collect();
    let mut layers = Vec::with_capacity(config.rootfs.diff_ids.len());
    for diff_id in &config.rootfs.diff_ids {
        if let Some(layer) = known.get(diff_id) {
            layers.push((*layer).clone());
            continue;
        }
        let size = match built.get(diff_id) {
            Some(size) => *size,
            None => prepared.store.blob_size(diff_id).map_err(Report::new)?,
        };
        layers.push(Layer {
            descriptor: Descriptor::new(media::OCI_LAYER_TAR, diff_id.clone(), size),
            diff_id: diff_id.clone(),
        });
    }
    prepared
        .store
        .commit_image_annotated(&config, &layers, annotations)
        .map_err(Report::new)
}

/// Point every name at what the build made (an image, or the index of a multi-platform
/// build).
pub fn tag_all(prepared: &Session, target: &Target, tags: &[Reference]) -> miette::Result<()> {
    for tag in tags {
        prepared
            .store
            .tag_target(target, tag)
            .map_err(Report::new)?;
    }
    Ok(())
}

/// Write `bytes` to an output file with the outputs' one helper (never into the store, never
/// replacing a device or FIFO).
fn write_small(
    store: &Path,
    path: &Path,
    flag: &str,
    bytes: &[u8],
    cancelled: Cancelled<'_>,
) -> miette::Result<()> {
    use std::io::Write;
    crate::output::write_output_file(path, store, false, cancelled, |f| {
        f.write_all(bytes).map_err(|e| {
            miette::miette!(
                code = "rbuild::io",
                "cannot write {flag} `{}`: {e}",
                path.display()
            )
        })
    })
    .wrap_err(format!("cannot write {flag}"))
}

/// `--iidfile`: the image ID (its config digest), or for a multi-platform build the index
/// digest, as buildx writes.
pub fn write_iidfile(
    store: &Path,
    path: &Path,
    target: &Target,
    cancelled: Cancelled<'_>,
) -> miette::Result<()> {
    write_small(
        store,
        path,
        "--iidfile",
        target.id().as_str().as_bytes(),
        cancelled,
    )
}

/// `--metadata-file`, with BuildKit's exporter keys: `containerimage.digest` and
/// `containerimage.descriptor` name the manifest, or the index of a multi-platform build
/// (which has no `containerimage.config.digest`).
pub fn write_metadata(
    store: &Path,
    path: &Path,
    target: &Target,
    tags: &[Reference],
    cancelled: Cancelled<'_>,
) -> miette::Result<()> {
    let desc = target.descriptor();
    let mut value = serde_json::json!({
        "containerimage.digest": desc.digest.as_str(),
        "image.name": tags.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        "containerimage.descriptor": {
            "mediaType": desc.media_type,
            "digest": desc.digest.as_str(),
            "size": desc.size,
        },
    });
    if let Target::Image(image) = target {
        value["containerimage.config.digest"] = image.config_digest.as_str().into();
    }
    let json = serde_json::to_vec_pretty(&value).expect("json");
    write_small(store, path, "--metadata-file", &json, cancelled)
}
