//! What a name in the store points at: one image (a manifest, [`Target::Image`]) or a
//! multi-platform image (an image index listing one manifest per platform,
//! [`Target::Index`]). A multi-platform build commits each platform's image and then the index
//! over them ([`Store::commit_index`]); tags, `save`, `push` and listings work on the target,
//! while everything that needs one filesystem (a base image, `run`, `history`) picks a
//! platform's image from it ([`Target::image_for`], [`Store::resolve_image_for`]).
//!
//! An index read from elsewhere may list platforms whose manifests were never fetched (a pull
//! of one platform keeps the index it came from): [`IndexRecord::images`] holds only the
//! entries present in the store, nested indexes flattened, attestation manifests (platform
//! `unknown/unknown`, whose config is not an image config) left out.

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::index;
use crate::json;
use crate::manifest::{self, Descriptor, Document, Index};
use crate::media;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::Store;

/// BuildKit's annotation on an attestation manifest's index entry (`attestation-manifest`).
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// Whether an index entry is an attestation manifest rather than a platform image: BuildKit
/// marks them with [`ANNOTATION_REFERENCE_TYPE`] and the platform `unknown/unknown`.
pub fn is_attestation(entry: &Descriptor) -> bool {
    entry.annotation(ANNOTATION_REFERENCE_TYPE).is_some()
        || entry.platform.as_ref().is_some_and(|p| p.os == "unknown")
}

/// How deep stored indexes may nest (an index of indexes of manifests is depth 2).
const MAX_DEPTH: u32 = 4;

/// A stored image index with the platform images of it that the store holds.
#[derive(Debug, Clone)]
pub struct IndexRecord {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub index: Index,
    /// The platform images listed and present in the store, in index order.
    pub images: Vec<(Platform, ImageRecord)>,
}

impl IndexRecord {
    /// The descriptor of the index blob.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.digest.clone(), self.size)
    }

    /// The image that best runs on `platform` ([`Platform::select`]'s rule).
    pub fn image_for(&self, platform: &Platform) -> Option<&ImageRecord> {
        let mut best: Option<(&ImageRecord, u32)> = None;
        for (p, image) in &self.images {
            if let Some(score) = platform.score(p)
                && best.is_none_or(|(_, s)| score > s)
            {
                best = Some((image, score));
            }
        }
        best.map(|(image, _)| image)
    }

    /// The platforms of the stored images, in index order.
    pub fn platforms(&self) -> Vec<Platform> {
        self.images.iter().map(|(p, _)| p.clone()).collect()
    }
}

/// What a name points at.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "a handful live at a time, matched by value everywhere: boxing buys nothing"
)]
pub enum Target {
    Image(ImageRecord),
    Index(IndexRecord),
}

impl Target {
    /// The descriptor of the manifest or index.
    pub fn descriptor(&self) -> Descriptor {
        match self {
            Target::Image(r) => r.descriptor(),
            Target::Index(i) => i.descriptor(),
        }
    }

    /// The manifest or index digest.
    pub fn digest(&self) -> &Digest {
        match self {
            Target::Image(r) => &r.manifest_digest,
            Target::Index(i) => &i.digest,
        }
    }

    /// The ID users see: an image's config digest, an index's own digest (as docker with the
    /// containerd image store shows multi-platform images).
    pub fn id(&self) -> &Digest {
        match self {
            Target::Image(r) => r.id(),
            Target::Index(i) => &i.digest,
        }
    }

    /// Every platform image (one for a single image: the platform its config names).
    pub fn images(&self) -> Vec<(Platform, &ImageRecord)> {
        match self {
            Target::Image(r) => vec![(config_platform(r), r)],
            Target::Index(i) => i.images.iter().map(|(p, r)| (p.clone(), r)).collect(),
        }
    }

    /// The image for `platform`. A single image must be for that platform (an image whose
    /// config names no architecture is taken as it is).
    pub fn image_for(&self, platform: &Platform) -> Result<&ImageRecord> {
        let found = match self {
            Target::Image(r) => {
                let own = config_platform(r);
                (own.architecture.is_empty() || platform.matches(&own)).then_some(r)
            }
            Target::Index(i) => i.image_for(platform),
        };
        found.ok_or_else(|| {
            let have: Vec<String> = self.images().iter().map(|(p, _)| p.to_string()).collect();
            Error::Conflict {
                message: format!(
                    "image {} has no {platform} image (it has {})",
                    self.id().short(),
                    if have.is_empty() {
                        "none stored".to_string()
                    } else {
                        have.join(", ")
                    }
                ),
                help: "pass `--platform` with one of its platforms, or pull that platform"
                    .to_string(),
            }
        })
    }

    /// Whether this is a multi-platform image.
    pub fn is_index(&self) -> bool {
        matches!(self, Target::Index(_))
    }
}

/// The platform an image's config names.
pub fn config_platform(image: &ImageRecord) -> Platform {
    let c = &image.config;
    Platform::new(&c.os, &c.architecture, c.variant.as_deref())
}

impl Store {
    /// Read what `desc` (a manifest or an index stored as a blob) describes.
    pub fn target(&self, desc: &Descriptor) -> Result<Target> {
        if !media::is_index(&desc.media_type) {
            return Ok(Target::Image(self.image_for_platform(
                &desc.digest,
                Some(&desc.media_type),
                &Platform::host(),
            )?));
        }
        let index = self.read_index_blob(&desc.digest, Some(&desc.media_type))?;
        let mut images = Vec::new();
        self.collect_images(&index, 0, &mut images)?;
        Ok(Target::Index(IndexRecord {
            digest: desc.digest.clone(),
            size: desc.size,
            media_type: desc.media_type.clone(),
            index,
            images,
        }))
    }

    /// Write an OCI image index over `images` (each entry carrying its platform) and list it as
    /// an untagged image; the platform images' own untagged entries go (they are reachable
    /// from the index). Does not tag: see [`Store::tag_target`].
    pub fn commit_index(&self, images: &[(Platform, ImageRecord)]) -> Result<IndexRecord> {
        self.commit_index_annotated(images, &BTreeMap::new(), &BTreeMap::new())
    }

    /// [`Store::commit_index`] with `annotations` on the index and `descriptor_annotations`
    /// on each manifest's descriptor in it.
    pub fn commit_index_annotated(
        &self,
        images: &[(Platform, ImageRecord)],
        annotations: &BTreeMap<String, String>,
        descriptor_annotations: &BTreeMap<String, String>,
    ) -> Result<IndexRecord> {
        if images.is_empty() {
            return Err(Error::usage(
                "an image index needs at least one image",
                "build at least one platform",
            ));
        }
        let mut index = Index::empty();
        for (platform, image) in images {
            self.hold_blob(&image.manifest_digest)?;
            let mut d = image.descriptor();
            d.platform = Some(platform.clone());
            if !descriptor_annotations.is_empty() {
                d.annotations = Some(descriptor_annotations.clone());
            }
            index.manifests.push(d);
        }
        if !annotations.is_empty() {
            index.annotations = Some(annotations.clone());
        }
        let bytes = json::to_canonical_vec(&index)?;
        let info = self.put_blob(&bytes)?;
        let children: Vec<&Digest> = images.iter().map(|(_, r)| &r.manifest_digest).collect();
        self.update_index(|table| {
            table
                .manifests
                .retain(|d| !(children.contains(&&d.digest) && index::entry_name(d).is_none()));
            if !table.manifests.iter().any(|d| d.digest == info.digest) {
                table.manifests.push(index::make_entry(
                    media::OCI_INDEX,
                    &info.digest,
                    info.size,
                    None,
                ));
            }
            Ok((true, ()))
        })?;
        Ok(IndexRecord {
            digest: info.digest,
            size: info.size,
            media_type: media::OCI_INDEX.to_string(),
            index,
            images: images.to_vec(),
        })
    }

    /// Point `reference` at `target` ([`Store::tag`] for an image or an index).
    pub fn tag_target(&self, target: &Target, reference: &Reference) -> Result<Option<Digest>> {
        self.tag_descriptor(&target.descriptor(), target.id(), reference)
    }

    fn read_index_blob(&self, digest: &Digest, declared: Option<&str>) -> Result<Index> {
        let bytes = self.read_blob(digest)?;
        let what = format!("index {digest}");
        match manifest::parse_document(&bytes, declared, self.limits.max_json_bytes, &what)? {
            Document::Index(i) => Ok(*i),
            Document::Manifest(_) => {
                Err(Error::json(what, "declared as an index but is a manifest"))
            }
        }
    }

    /// The stored platform images of `index`, nested indexes flattened (bounded depth).
    fn collect_images(
        &self,
        index: &Index,
        depth: u32,
        out: &mut Vec<(Platform, ImageRecord)>,
    ) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(Error::json(
                "image index",
                format!("indexes nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        for d in &index.manifests {
            if !self.has_blob(&d.digest) {
                continue;
            }
            if media::is_index(&d.media_type) {
                let nested = self.read_index_blob(&d.digest, Some(&d.media_type))?;
                self.collect_images(&nested, depth + 1, out)?;
                continue;
            }
            if !media::is_manifest(&d.media_type) || is_attestation(d) {
                continue;
            }
            let image =
                match self.image_for_platform(&d.digest, Some(&d.media_type), &Platform::host()) {
                    Ok(image) => image,
                    // Attestations and other artifacts: not images.
                    Err(Error::Json { .. }) => continue,
                    Err(e) => return Err(e),
                };
            let platform = d
                .platform
                .clone()
                .unwrap_or_else(|| config_platform(&image));
            out.push((platform, image));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageConfig;
    use crate::image::Layer;
    use crate::store::StoreOptions;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_with(dir.path(), StoreOptions::default()).unwrap();
        (dir, s)
    }

    fn image(store: &Store, arch: &str) -> ImageRecord {
        let blob = store.put_blob(arch.as_bytes()).unwrap();
        let layer = Layer {
            descriptor: Descriptor::new(media::OCI_LAYER_TAR, blob.digest.clone(), blob.size),
            diff_id: blob.digest,
        };
        let mut config = ImageConfig::new_for_host();
        config.architecture = arch.to_string();
        store.commit_image(&config, &[layer]).unwrap()
    }

    #[test]
    fn committed_index_is_one_image_with_both_platforms() {
        let (_d, s) = store();
        let amd = image(&s, "amd64");
        let arm = image(&s, "arm64");
        let amd_p = Platform::new("linux", "amd64", None);
        let arm_p = Platform::new("linux", "arm64", None);
        let index = s
            .commit_index(&[(amd_p.clone(), amd.clone()), (arm_p.clone(), arm.clone())])
            .unwrap();
        // The platform images are reachable through the index, not listed on their own.
        let listed: Vec<Digest> = s
            .index_entries()
            .unwrap()
            .into_iter()
            .map(|e| e.descriptor.digest)
            .collect();
        assert_eq!(listed, vec![index.digest.clone()]);

        let name = Reference::parse("app:multi").unwrap();
        let target = Target::Index(index.clone());
        s.tag_target(&target, &name).unwrap();
        let back = s.resolve_target("app:multi").unwrap();
        assert!(back.is_index());
        assert_eq!(back.digest(), &index.digest);
        let platforms: Vec<Platform> = back.images().into_iter().map(|(p, _)| p).collect();
        assert_eq!(platforms, vec![amd_p, arm_p.clone()]);
        assert_eq!(
            s.resolve_image_for("app:multi", &arm_p)
                .unwrap()
                .manifest_digest,
            arm.manifest_digest
        );
        assert_eq!(
            back.image_for(&arm_p).unwrap().manifest_digest,
            arm.manifest_digest
        );
        // A short prefix of the index digest names it too.
        assert!(
            s.resolve_target(&index.digest.hex()[..12])
                .unwrap()
                .is_index()
        );
        // The index survives GC with every platform's blobs.
        s.collect_garbage().unwrap();
        for (_, r) in back.images() {
            for b in r.blobs() {
                assert!(s.has_blob(&b), "{b} collected");
            }
        }
    }

    #[test]
    fn missing_platform_is_a_pointed_error() {
        let (_d, s) = store();
        let amd = image(&s, "amd64");
        let index = s
            .commit_index(&[(Platform::new("linux", "amd64", None), amd)])
            .unwrap();
        let err = Target::Index(index)
            .image_for(&Platform::new("linux", "s390x", None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/amd64"),
            "{err}"
        );
    }
}
