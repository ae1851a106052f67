//! After a build solved: the target's config assembled, the image committed to the store with
//! the right layer descriptors, tags written (only now, so a failed or interrupted build tags
//! nothing), and the image id and metadata files written.

use std::collections::BTreeMap;
use std::path::Path;

use miette::{Context, Report};
use rbuild_solver::image;
use rbuild_solver::scheduler::Solved;
use rbuild_store::{Descriptor, Digest, ImageRecord, Layer, Reference, media};

use crate::Session;
use crate::output::Cancelled;

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

/// Commit the target stage's image (not tagged yet); `epoch` is `SOURCE_DATE_EPOCH`.
pub fn commit(
    prepared: &Session,
    solved: &Solved,
    epoch: Option<i64>,
) -> miette::Result<ImageRecord> {
    let plan = &prepared.planned.plan;
    let now = jiff::Timestamp::now().as_second();
    let config = image::assemble(&prepared.planned, solved, plan.target, epoch, now);
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
        .commit_image(&config, &layers)
        .map_err(Report::new)
}

pub fn tag_all(prepared: &Session, image: &ImageRecord, tags: &[Reference]) -> miette::Result<()> {
    for tag in tags {
        prepared.store.tag(image, tag).map_err(Report::new)?;
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

pub fn write_iidfile(
    store: &Path,
    path: &Path,
    image: &ImageRecord,
    cancelled: Cancelled<'_>,
) -> miette::Result<()> {
    write_small(
        store,
        path,
        "--iidfile",
        image.id().as_str().as_bytes(),
        cancelled,
    )
}

pub fn write_metadata(
    store: &Path,
    path: &Path,
    image: &ImageRecord,
    tags: &[Reference],
    cancelled: Cancelled<'_>,
) -> miette::Result<()> {
    let value = serde_json::json!({
        "containerimage.digest": image.manifest_digest.as_str(),
        "containerimage.config.digest": image.config_digest.as_str(),
        "image.name": tags.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        "containerimage.descriptor": {
            "mediaType": image.manifest_media_type,
            "digest": image.manifest_digest.as_str(),
            "size": image.manifest_size,
        },
    });
    let json = serde_json::to_vec_pretty(&value).expect("json");
    write_small(store, path, "--metadata-file", &json, cancelled)
}
