//! `save`: write images as an OCI image-layout tar (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), or as a docker-archive that is at the same time an OCI layout (plus
//! `manifest.json` and `repositories`, like `docker save` ≥ 25). Blobs are written exactly as
//! stored, so manifest digests survive; the output is byte-for-byte deterministic. Every blob is
//! hashed as it is copied: a blob corrupted in the store fails the save (catalogue F11) rather
//! than producing an archive that no tool can load. The same content can be written as a
//! directory (`save_dir`: an OCI image layout on disk).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::archive::writer::TarOut;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
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

/// What a save writes, independent of the container (tar or directory).
struct SavePlan {
    blobs: BTreeMap<Digest, u64>,
    /// (name, bytes) of the metadata files, in the order a tar lists them.
    files: Vec<(&'static str, Vec<u8>)>,
}

fn plan(items: &[SaveItem], format: SaveFormat) -> Result<SavePlan> {
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
    let mut files = vec![("index.json", json::to_canonical_vec(&index)?)];
    if format == SaveFormat::Docker {
        files.push(("manifest.json", json::to_canonical_vec(&docker)?));
    }
    files.push(("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()));
    if format == SaveFormat::Docker {
        files.push(("repositories", json::to_canonical_vec(&repositories)?));
    }
    Ok(SavePlan { blobs, files })
}

impl Store {
    fn check_blob_size(&self, d: &Digest, size: u64) -> Result<()> {
        let actual = self.blob_size(d)?;
        if actual != size {
            return Err(Error::corrupt(format!(
                "blob {d} is {actual} bytes, its descriptor says {size}"
            )));
        }
        Ok(())
    }

    /// The error when the bytes copied from blob `d` hash to something else.
    fn check_copied_digest(d: &Digest, copied: HashingReader<std::fs::File>) -> Result<()> {
        let (got, _) = copied.finish();
        if &got != d {
            return Err(Error::corrupt(format!("blob {d} hashes to {got}")));
        }
        Ok(())
    }

    /// Write `items` to `out` in `format`. Blobs are re-checked for size and digest as they
    /// are copied.
    pub fn save<W: Write>(&self, items: &[SaveItem], format: SaveFormat, out: W) -> Result<W> {
        let plan = plan(items, format)?;
        let io_err = |e: std::io::Error| Error::io("write archive", "<output>", e);
        let mut tar = TarOut::new(out);
        tar.dir("blobs/").map_err(io_err)?;
        tar.dir("blobs/sha256/").map_err(io_err)?;
        for (d, size) in &plan.blobs {
            self.check_blob_size(d, *size)?;
            let mut f = HashingReader::new(self.open_blob(d)?);
            tar.file_from(&blob_name(d), *size, &mut f)
                .ctx("copy blob into the archive", self.blob_path(d))?;
            Self::check_copied_digest(d, f)?;
        }
        for (name, bytes) in &plan.files {
            tar.file(name, bytes).map_err(io_err)?;
        }
        tar.finish().map_err(io_err)
    }

    /// Write `items` as an image layout directory into `dir` (existing and empty): the same
    /// files `save` puts in its archive, blobs copied with `copy_file_range` (reflinks where
    /// the filesystem has them) and fsynced. On error `dir` is partially written: write into a
    /// staging directory when that matters.
    pub fn save_dir(&self, items: &[SaveItem], format: SaveFormat, dir: &Path) -> Result<()> {
        let plan = plan(items, format)?;
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).ctx("create directory", &blobs)?;
        for (d, size) in &plan.blobs {
            self.check_blob_size(d, *size)?;
            let to = blobs.join(d.hex());
            let mut from = HashingReader::new(self.open_blob(d)?);
            let mut file = std::fs::File::create(&to).ctx("create", &to)?;
            let copied = std::io::copy(&mut from, &mut file).ctx("copy blob to", &to)?;
            if copied != *size {
                return Err(Error::corrupt(format!(
                    "blob {d} changed size while it was copied ({copied} bytes, expected {size})"
                )));
            }
            Self::check_copied_digest(d, from)?;
            file.sync_all().ctx("fsync", &to)?;
        }
        for (name, bytes) in &plan.files {
            let to = dir.join(name);
            let mut file = std::fs::File::create(&to).ctx("create", &to)?;
            file.write_all(bytes).ctx("write", &to)?;
            file.sync_all().ctx("fsync", &to)?;
        }
        fsutil::fsync_dir(&blobs)?;
        fsutil::fsync_dir(dir)
    }
}
