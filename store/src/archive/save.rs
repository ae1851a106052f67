//! `save`: write images as an OCI image-layout tar (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), or as a docker-archive that is at the same time an OCI layout (plus
//! `manifest.json` and `repositories`, like `docker save` ≥ 25). Blobs are written exactly as
//! stored, so manifest digests survive; the output is byte-for-byte deterministic. Every blob is
//! hashed as it is copied: a blob corrupted in the store fails the save (catalogue F11) rather
//! than producing an archive that no tool can load. The same content can be written as a
//! directory (`save_dir`: an OCI image layout on disk).
//!
//! Multi-platform images ([`SaveTarget`] holding a [`Target::Index`]): the OCI archive's
//! index.json entry is the index itself, written with every blob under it that the store
//! holds (platform images, nested indexes, attestations), so loading the archive gives the
//! same index digest. A docker-archive holds single-platform images only (its `manifest.json`
//! names one config per image): narrow an index with [`Target::image_for`] first; saving an
//! index in that format is refused.

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
use crate::manifest::{self, Descriptor, Document, Index};
use crate::media;
use crate::reference::Reference;
use crate::store::Store;
use crate::target::Target;

/// How deep the indexes under a saved index may nest (the store's own bound).
const MAX_DEPTH: u32 = 4;

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

/// One image or multi-platform image to save and the names to record for it (none: saved
/// untagged). What the engine's `-o type=oci|docker` outputs and `rbuild save` write.
#[derive(Debug, Clone)]
pub struct SaveTarget {
    pub target: Target,
    pub names: Vec<Reference>,
}

impl From<SaveItem> for SaveTarget {
    fn from(item: SaveItem) -> SaveTarget {
        SaveTarget {
            target: Target::Image(item.image),
            names: item.names,
        }
    }
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

impl Store {
    fn plan(&self, items: &[SaveTarget], format: SaveFormat) -> Result<SavePlan> {
        let mut blobs: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut index = Index::empty();
        let mut docker: Vec<DockerManifestEntry> = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut seen_names = BTreeSet::new();
        for item in items {
            let desc = item.target.descriptor();
            let img = match &item.target {
                Target::Image(img) => {
                    blobs.insert(img.manifest_digest.clone(), img.manifest_size);
                    blobs.insert(img.config_digest.clone(), img.manifest.config.size);
                    for l in &img.layers {
                        blobs.insert(l.descriptor.digest.clone(), l.descriptor.size);
                    }
                    Some(img)
                }
                Target::Index(i) => {
                    if format == SaveFormat::Docker {
                        let have: Vec<String> =
                            i.platforms().iter().map(ToString::to_string).collect();
                        return Err(Error::usage(
                            format!(
                                "a docker-archive holds one platform's image; {} is a \
                                 multi-platform image ({})",
                                i.digest.short(),
                                have.join(", ")
                            ),
                            "choose one platform's image, or write an OCI archive",
                        ));
                    }
                    self.blobs_under(&i.descriptor(), 0, &mut blobs)?;
                    None
                }
            };
            let names: Vec<&Reference> = item
                .names
                .iter()
                .filter(|n| n.tag().is_some() && seen_names.insert((*n).clone()))
                .collect();
            if names.is_empty() {
                index.manifests.push(index::make_entry(
                    &desc.media_type,
                    &desc.digest,
                    desc.size,
                    None,
                ));
            }
            for n in &names {
                index.manifests.push(index::make_entry(
                    &desc.media_type,
                    &desc.digest,
                    desc.size,
                    Some(n),
                ));
            }
            let Some(img) = img else { continue };
            for n in &names {
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

    /// Every blob under the manifest or index `desc` that the store holds, into `out`: an
    /// index's children the store lacks are left out (platforms never fetched); a stored
    /// manifest's config and layers must be present.
    pub(crate) fn blobs_under(
        &self,
        desc: &Descriptor,
        depth: u32,
        out: &mut BTreeMap<Digest, u64>,
    ) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(Error::json(
                format!("image index {}", desc.digest),
                format!("indexes nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        if out.insert(desc.digest.clone(), desc.size).is_some() {
            return Ok(());
        }
        let bytes = self.read_blob(&desc.digest)?;
        let what = format!("document {}", desc.digest);
        match manifest::parse_document(
            &bytes,
            Some(&desc.media_type),
            self.limits.max_json_bytes,
            &what,
        )? {
            Document::Index(i) => {
                for c in &i.manifests {
                    if !self.has_blob(&c.digest) {
                        continue;
                    }
                    if media::is_index(&c.media_type) || media::is_manifest(&c.media_type) {
                        self.blobs_under(c, depth + 1, out)?;
                    } else {
                        out.insert(c.digest.clone(), c.size);
                    }
                }
            }
            Document::Manifest(m) => {
                for d in std::iter::once(&m.config).chain(&m.layers) {
                    if !self.has_blob(&d.digest) {
                        return Err(Error::MissingBlob {
                            digest: d.digest.clone(),
                        });
                    }
                    out.insert(d.digest.clone(), d.size);
                }
            }
        }
        Ok(())
    }

    /// Every blob of `target` that the store holds, each once with its size: what `save`
    /// writes for it and what `system df` counts.
    pub fn target_blobs(&self, target: &Target) -> Result<BTreeMap<Digest, u64>> {
        let mut out = BTreeMap::new();
        self.blobs_under(&target.descriptor(), 0, &mut out)?;
        Ok(out)
    }

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
        let targets: Vec<SaveTarget> = items.iter().cloned().map(SaveTarget::from).collect();
        self.save_targets(&targets, format, out)
    }

    /// [`Store::save`] for images and multi-platform images (see the module docs). An index
    /// in [`SaveFormat::Docker`] is refused: narrow it to one platform's image first.
    pub fn save_targets<W: Write>(
        &self,
        items: &[SaveTarget],
        format: SaveFormat,
        out: W,
    ) -> Result<W> {
        let plan = self.plan(items, format)?;
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
        let targets: Vec<SaveTarget> = items.iter().cloned().map(SaveTarget::from).collect();
        self.save_targets_dir(&targets, format, dir)
    }

    /// [`Store::save_dir`] for images and multi-platform images.
    pub fn save_targets_dir(
        &self,
        items: &[SaveTarget],
        format: SaveFormat,
        dir: &Path,
    ) -> Result<()> {
        let plan = self.plan(items, format)?;
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
