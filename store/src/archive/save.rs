//! `save`: write images as an OCI image-layout tar (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), or as a docker-archive that is at the same time an OCI layout (plus
//! `manifest.json` and `repositories`, like `docker save` ≥ 25). Blobs are written exactly as
//! stored, so manifest digests survive; the output is byte-for-byte deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use serde::Serialize;

use crate::archive::writer::TarOut;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::image::ImageRecord;
use crate::index;
use crate::json;
use crate::manifest::Index;
use crate::reference::Reference;
use crate::store::Store;

/// Output format of `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    Oci,
    Docker,
}

/// One image to save and the names to record for it (none: saved untagged).
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub image: ImageRecord,
    pub names: Vec<Reference>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

impl Store {
    /// Write `items` to `out` in `format`. Blobs are re-checked for size as they are copied.
    pub fn save<W: Write>(&self, items: &[SaveItem], format: SaveFormat, out: W) -> Result<W> {
        let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut index = Index::empty();
        let mut docker: Vec<DockerManifestEntry> = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut seen_names = BTreeSet::new();
        for item in items {
            let img = &item.image;
            blobs.insert(img.manifest_digest.clone(), img.manifest_size);
            blobs.insert(img.config_digest.clone(), img.manifest.config.size);
            for l in &img.layers {
                blobs.insert(l.descriptor.digest.clone(), l.descriptor.size);
            }
            let names: Vec<&Reference> = item
                .names
                .iter()
                .filter(|n| n.tag().is_some() && seen_names.insert((*n).clone()))
                .collect();
            if names.is_empty() {
                index.manifests.push(index::make_entry(
                    &img.manifest_media_type,
                    &img.manifest_digest,
                    img.manifest_size,
                    None,
                ));
            }
            for n in &names {
                index.manifests.push(index::make_entry(
                    &img.manifest_media_type,
                    &img.manifest_digest,
                    img.manifest_size,
                    Some(n),
                ));
                repositories.entry(n.familiar_name()).or_default().insert(
                    n.tag().unwrap_or_default().to_string(),
                    img.config_digest.hex().to_string(),
                );
            }
            docker.push(DockerManifestEntry {
                config: blob_name(&img.config_digest),
                repo_tags: names.iter().map(|n| n.familiar()).collect(),
                layers: img
                    .layers
                    .iter()
                    .map(|l| blob_name(&l.descriptor.digest))
                    .collect(),
            });
        }
        let io_err = |e: std::io::Error| Error::io("write archive", "<output>", e);
        let mut tar = TarOut::new(out);
        tar.dir("blobs/").map_err(io_err)?;
        tar.dir("blobs/sha256/").map_err(io_err)?;
        for (d, size) in &blobs {
            let actual = self.blob_size(d)?;
            if actual != *size {
                return Err(Error::corrupt(format!(
                    "blob {d} is {actual} bytes, its descriptor says {size}"
                )));
            }
            let mut f = self.open_blob(d)?;
            tar.file_from(&blob_name(d), *size, &mut f)
                .ctx("copy blob into the archive", self.blob_path(d))?;
        }
        tar.file("index.json", &json::to_canonical_vec(&index)?)
            .map_err(io_err)?;
        if format == SaveFormat::Docker {
            tar.file("manifest.json", &json::to_canonical_vec(&docker)?)
                .map_err(io_err)?;
        }
        tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(io_err)?;
        if format == SaveFormat::Docker {
            tar.file("repositories", &json::to_canonical_vec(&repositories)?)
                .map_err(io_err)?;
        }
        tar.finish().map_err(io_err)
    }
}
