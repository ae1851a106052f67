//! Images: `ImageRecord` (manifest + config + layers paired with diff_ids), committing new
//! images, adding stored manifests, tagging and untagging, resolving what a user typed (name,
//! name@digest, full or short ID) and listing.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::index::{self, IndexEntry};
use crate::json;
use crate::manifest::{self, Descriptor, Document, Manifest, Platform};
use crate::media;
use crate::reference::Reference;
use crate::store::Store;
use crate::target::Target;

/// One layer of an image: its blob descriptor and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// Everything about one image (one manifest).
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub manifest_media_type: String,
    pub manifest: Manifest,
    /// The config digest: the image ID.
    pub config_digest: Digest,
    pub config: ImageConfig,
    /// Layers bottom-up, each with its diff_id.
    pub layers: Vec<Layer>,
}

impl ImageRecord {
    /// The image ID (config digest), as Docker shows it.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }

    /// Bytes of its blobs as stored: config plus layers.
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.layers.iter().map(|l| l.descriptor.size).sum::<u64>()
    }

    /// The descriptor of the manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.manifest_media_type.clone(),
            self.manifest_digest.clone(),
            self.manifest_size,
        )
    }

    /// Every blob the image consists of: manifest, config, layers.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut v = vec![self.manifest_digest.clone(), self.config_digest.clone()];
        v.extend(self.layers.iter().map(|l| l.descriptor.digest.clone()));
        v
    }
}

/// A name that pointed at another image (that image's manifest digest) before it moved.
pub type MovedName = (Reference, Digest);

/// An image and its names, for listings. A multi-platform image is one summary: its
/// [`Target::Index`], with the host's image (else its first) as `record`.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// The image, or the image a multi-platform image shows for its details (creation time,
    /// config): the host's platform's, else the first one stored.
    pub record: ImageRecord,
    /// Tags and digest pins naming this image (empty for a dangling image).
    pub names: Vec<Reference>,
    /// What the index.json entry is: the image itself or the multi-platform index.
    pub target: Target,
}

impl ImageSummary {
    /// The ID users see: the config digest of an image, the digest of an index.
    pub fn id(&self) -> &Digest {
        self.target.id()
    }

    /// The digest of the index.json entry (manifest or index): what `remove_image` takes.
    pub fn digest(&self) -> &Digest {
        self.target.digest()
    }

    /// Bytes of its configs and layers, each blob counted once across platforms.
    pub fn size(&self) -> u64 {
        let mut blobs: BTreeMap<&Digest, u64> = BTreeMap::new();
        for (_, r) in self.target.images() {
            blobs.insert(&r.config_digest, r.manifest.config.size);
            for l in &r.layers {
                blobs.insert(&l.descriptor.digest, l.descriptor.size);
            }
        }
        blobs.values().sum()
    }
}

impl Store {
    /// Load the image whose manifest is `manifest_digest`, verifying the manifest and config
    /// bytes against their digests. A manifest list/index resolves to the host platform.
    pub fn image(&self, manifest_digest: &Digest) -> Result<ImageRecord> {
        self.image_with_type(manifest_digest, None, 0)
    }

    /// The image for `platform` of the manifest or index `digest` (`declared`: the media type
    /// its descriptor gives, if any). A manifest is returned as it is, whatever its platform.
    pub fn image_for_platform(
        &self,
        digest: &Digest,
        declared: Option<&str>,
        platform: &Platform,
    ) -> Result<ImageRecord> {
        self.image_for_with_depth(digest, declared, platform, 0)
    }

    pub(crate) fn image_with_type(
        &self,
        digest: &Digest,
        declared: Option<&str>,
        depth: u32,
    ) -> Result<ImageRecord> {
        self.image_for_with_depth(digest, declared, &Platform::host(), depth)
    }

    fn image_for_with_depth(
        &self,
        digest: &Digest,
        declared: Option<&str>,
        platform: &Platform,
        depth: u32,
    ) -> Result<ImageRecord> {
        let bytes = self.read_blob(digest)?;
        let what = format!("manifest {digest}");
        let doc = manifest::parse_document(&bytes, declared, self.limits.max_json_bytes, &what)?;
        let manifest = match doc {
            Document::Manifest(m) => *m,
            Document::Index(index) => {
                if depth > 4 {
                    return Err(Error::json(what, "indexes nested deeper than 4 levels"));
                }
                if let Some(child) = select_platform(&index.manifests, platform) {
                    return self.image_for_with_depth(
                        &child.digest,
                        Some(&child.media_type),
                        platform,
                        depth + 1,
                    );
                }
                // Indexes wrapped in indexes (as tools that nest them write, without a
                // platform or for this one): the first that has this platform.
                for nested in &index.manifests {
                    let fits = nested.platform.as_ref().is_none_or(|p| platform.matches(p));
                    if !(media::is_index(&nested.media_type)
                        && fits
                        && self.has_blob(&nested.digest))
                    {
                        continue;
                    }
                    match self.image_for_with_depth(
                        &nested.digest,
                        Some(&nested.media_type),
                        platform,
                        depth + 1,
                    ) {
                        Err(Error::Conflict { .. }) => continue,
                        found => return found,
                    }
                }
                let listed: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                    .collect();
                return Err(Error::Conflict {
                    message: format!("no manifest for {platform} in index {digest}"),
                    help: if listed.is_empty() {
                        "the image was not built for this platform".to_string()
                    } else {
                        format!(
                            "the image is for {}; pass `--platform` to choose one",
                            listed.join(", ")
                        )
                    },
                });
            }
        };
        self.record_from_manifest(digest.clone(), bytes.len() as u64, manifest)
    }

    fn record_from_manifest(
        &self,
        manifest_digest: Digest,
        manifest_size: u64,
        manifest: Manifest,
    ) -> Result<ImageRecord> {
        let config_digest = manifest.config.digest.clone();
        let what = format!("config {config_digest}");
        if !media::is_image_config(&manifest.config.media_type) {
            return Err(Error::json(
                &what,
                format!(
                    "config media type `{}` is not an image config",
                    manifest.config.media_type
                ),
            ));
        }
        let config_bytes = self.read_blob(&config_digest)?;
        let config = ImageConfig::parse(&config_bytes, self.limits.max_json_bytes, &what)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::json(
                &what,
                format!(
                    "it lists {} diff_ids but the manifest has {} layers",
                    config.rootfs.diff_ids.len(),
                    manifest.layers.len()
                ),
            ));
        }
        let layers = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(d, id)| Layer {
                descriptor: d.clone(),
                diff_id: id.clone(),
            })
            .collect();
        Ok(ImageRecord {
            manifest_media_type: manifest.descriptor_media_type().to_string(),
            manifest_digest,
            manifest_size,
            manifest,
            config_digest,
            config,
            layers,
        })
    }

    /// Write `config` and a new OCI manifest over `layers` (whose blobs must already be in the
    /// store) and list the image as untagged. `config.rootfs.diff_ids` is set from `layers`.
    /// Does not tag: call `tag` to name it. Crash-safe: layers, then config, then manifest,
    /// then index.json — a crash leaves only unreferenced blobs.
    pub fn commit_image(&self, config: &ImageConfig, layers: &[Layer]) -> Result<ImageRecord> {
        self.commit_image_annotated(config, layers, &BTreeMap::new())
    }

    /// [`Store::commit_image`] with `annotations` on the manifest (none: the same manifest).
    pub fn commit_image_annotated(
        &self,
        config: &ImageConfig,
        layers: &[Layer],
        annotations: &BTreeMap<String, String>,
    ) -> Result<ImageRecord> {
        for l in layers {
            if !media::is_layer(&l.descriptor.media_type) {
                return Err(Error::usage(
                    format!("`{}` is not a layer media type", l.descriptor.media_type),
                    "layers are application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]",
                ));
            }
            if !self.has_blob(&l.descriptor.digest) && self.has_layer_or_remote(&l.descriptor) {
                // A remote layer (of a base resolved without its layers): nothing to hold.
                continue;
            }
            let size = self.blob_size(&l.descriptor.digest)?;
            if size != l.descriptor.size {
                return Err(Error::usage(
                    format!(
                        "layer {} is {size} bytes in the store, the descriptor says {}",
                        l.descriptor.digest, l.descriptor.size
                    ),
                    "pass the descriptor returned when the layer was written",
                ));
            }
            self.hold_blob(&l.descriptor.digest)?;
        }
        let mut config = config.clone();
        config.rootfs.kind = "layers".to_string();
        config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config_bytes = config.to_bytes()?;
        let config_info = self.put_blob(&config_bytes)?;
        let mut manifest = Manifest::new_oci(
            Descriptor::new(
                media::OCI_CONFIG,
                config_info.digest.clone(),
                config_info.size,
            ),
            layers.iter().map(|l| l.descriptor.clone()).collect(),
        );
        if !annotations.is_empty() {
            manifest.annotations = Some(annotations.clone());
        }
        let manifest_bytes = json::to_canonical_vec(&manifest)?;
        let manifest_info = self.put_blob(&manifest_bytes)?;
        self.list_untagged(
            media::OCI_MANIFEST,
            &manifest_info.digest,
            manifest_info.size,
        )?;
        Ok(ImageRecord {
            manifest_digest: manifest_info.digest,
            manifest_size: manifest_info.size,
            manifest_media_type: media::OCI_MANIFEST.to_string(),
            manifest,
            config_digest: config_info.digest,
            config,
            layers: layers.to_vec(),
        })
    }

    /// Register a manifest already stored as a blob (from load or pull) as an image: checks that
    /// its config and layers are present, then lists it as untagged. Returns the record.
    pub fn add_image(&self, manifest: &Descriptor) -> Result<ImageRecord> {
        let mut v = self.register_images(&[(manifest.clone(), Vec::new())])?;
        Ok(v.remove(0).0)
    }

    /// Add an untagged index.json entry for a manifest unless one (tagged or not) exists.
    fn list_untagged(&self, media_type: &str, digest: &Digest, size: u64) -> Result<()> {
        self.update_index(|index| {
            if index.manifests.iter().any(|d| &d.digest == digest) {
                return Ok((false, ()));
            }
            index
                .manifests
                .push(index::make_entry(media_type, digest, size, None));
            Ok((true, ()))
        })
    }

    /// Point `reference` at `image`. A tag that named another image moves (that image becomes
    /// untagged if it has no other name); returns the manifest digest it pointed at before.
    /// A `name@digest` reference must carry the image's own manifest digest.
    pub fn tag(&self, image: &ImageRecord, reference: &Reference) -> Result<Option<Digest>> {
        self.tag_descriptor(&image.descriptor(), image.id(), reference)
    }

    /// [`Store::tag`] for a descriptor already stored: a manifest or an index (`id` names it in
    /// messages).
    pub(crate) fn tag_descriptor(
        &self,
        desc: &Descriptor,
        id: &Digest,
        reference: &Reference,
    ) -> Result<Option<Digest>> {
        if let Some(d) = reference.digest()
            && d != &desc.digest
        {
            return Err(Error::usage(
                format!(
                    "cannot name image {} `{}`: the digest in the reference is not the image's manifest digest",
                    id.short(),
                    reference.familiar()
                ),
                "tag with `name:tag`, not `name@digest`",
            ));
        }
        if reference.tag().is_some() && reference.digest().is_some() {
            return Err(Error::usage(
                format!(
                    "refusing to tag with both a tag and a digest: `{}`",
                    reference.familiar()
                ),
                "use `name:tag`",
            ));
        }
        self.hold_blob(&desc.digest)?;
        let now = jiff::Timestamp::now().to_string();
        self.update_index(|index| Ok((true, apply_tag(index, desc, reference, &now))))
    }

    /// Register several stored manifests as images with their names in one index.json
    /// update. Each image is verified first (manifest, config, blobs present). Returns each
    /// record with the names that moved away from other images. An index resolves to the
    /// host's image (see [`Store::register_targets`] to keep it).
    pub fn register_images(
        &self,
        items: &[(Descriptor, Vec<Reference>)],
    ) -> Result<Vec<(ImageRecord, Vec<MovedName>)>> {
        let mut records = Vec::with_capacity(items.len());
        for (desc, _) in items {
            let record = self.image_with_type(&desc.digest, Some(&desc.media_type), 0)?;
            self.check_image_blobs(&record)?;
            records.push(record);
        }
        self.list_with_names(items, records)
    }

    /// [`Store::register_images`] for manifests and image indexes (what `load` does): an
    /// index is registered as itself, with every platform image of it that the store holds
    /// verified (at least one).
    pub fn register_targets(
        &self,
        items: &[(Descriptor, Vec<Reference>)],
    ) -> Result<Vec<(Target, Vec<MovedName>)>> {
        let mut targets = Vec::with_capacity(items.len());
        for (desc, _) in items {
            let target = self.target(desc)?;
            if target.images().is_empty() {
                return Err(Error::json(
                    format!("image index {}", desc.digest),
                    "it lists no image the store holds",
                ));
            }
            for (_, record) in target.images() {
                self.check_image_blobs(record)?;
            }
            targets.push(target);
        }
        self.list_with_names(items, targets)
    }

    /// Manifest and config must be stored; each layer stored or remote (`remote.rs`).
    fn check_image_blobs(&self, record: &ImageRecord) -> Result<()> {
        for digest in [&record.manifest_digest, &record.config_digest] {
            if !self.has_blob(digest) {
                return Err(Error::MissingBlob {
                    digest: digest.clone(),
                });
            }
        }
        for l in &record.layers {
            if !self.has_layer_or_remote(&l.descriptor) {
                return Err(Error::MissingBlob {
                    digest: l.descriptor.digest.clone(),
                });
            }
        }
        Ok(())
    }

    /// List each stored descriptor of `items` (untagged when it has no names) and point its
    /// names at it, in one index.json update; `values` are returned beside the moved names.
    fn list_with_names<T>(
        &self,
        items: &[(Descriptor, Vec<Reference>)],
        values: Vec<T>,
    ) -> Result<Vec<(T, Vec<MovedName>)>> {
        for (desc, _) in items {
            self.hold_blob(&desc.digest)?;
        }
        let now = jiff::Timestamp::now().to_string();
        self.update_index(|index| {
            let mut out = Vec::with_capacity(items.len());
            for ((desc, names), value) in items.iter().zip(values) {
                let mut moved = Vec::new();
                if names.is_empty() && !index.manifests.iter().any(|d| d.digest == desc.digest) {
                    index.manifests.push(index::make_entry(
                        &desc.media_type,
                        &desc.digest,
                        desc.size,
                        None,
                    ));
                }
                for n in names {
                    if let Some(prev) = apply_tag(index, desc, n, &now) {
                        moved.push((n.clone(), prev));
                    }
                }
                out.push((value, moved));
            }
            Ok((true, out))
        })
    }

    /// Remove one name. Returns the manifest digest it named and whether that image still has
    /// other names. The image itself stays listed (untagged) when this was its last name;
    /// use `remove_image` to drop it.
    pub fn untag(&self, reference: &Reference) -> Result<(Digest, bool)> {
        let name = reference.to_string();
        self.update_index(|index| {
            let pos = index
                .manifests
                .iter()
                .position(|d| index::entry_name(d) == Some(name.as_str()))
                .ok_or_else(|| Error::ImageNotFound {
                    name: reference.familiar(),
                    help: "list images with `rbuild images`".to_string(),
                })?;
            let entry = index.manifests.remove(pos);
            let still_named = index
                .manifests
                .iter()
                .any(|d| d.digest == entry.digest && index::entry_name(d).is_some());
            if !index.manifests.iter().any(|d| d.digest == entry.digest) {
                index.manifests.push(index::make_entry(
                    &entry.media_type,
                    &entry.digest,
                    entry.size,
                    None,
                ));
            }
            Ok((true, (entry.digest, still_named)))
        })
    }

    /// Drop every index.json entry (names and untagged) of a manifest. Its blobs become
    /// garbage unless something else references them; `collect_garbage` removes them.
    pub fn remove_image(&self, manifest_digest: &Digest) -> Result<Vec<Reference>> {
        Ok(self
            .remove_image_if(manifest_digest, false)?
            .unwrap_or_default())
    }

    /// `remove_image`, but with `only_if_dangling` it does nothing (returns `None`) when the
    /// image has a name at the time of the update.
    pub fn remove_image_if(
        &self,
        manifest_digest: &Digest,
        only_if_dangling: bool,
    ) -> Result<Option<Vec<Reference>>> {
        self.update_index(|index| {
            if only_if_dangling
                && index
                    .manifests
                    .iter()
                    .any(|d| &d.digest == manifest_digest && index::entry_name(d).is_some())
            {
                return Ok((false, None));
            }
            let mut removed = Vec::new();
            let before = index.manifests.len();
            index.manifests.retain(|d| {
                if &d.digest != manifest_digest {
                    return true;
                }
                if let Some(r) =
                    index::entry_name(d).and_then(|n| Reference::parse_name_only(n).ok())
                {
                    removed.push(r);
                }
                false
            });
            Ok((index.manifests.len() != before, Some(removed)))
        })
    }

    /// When a name was last given to this image (RFC 3339), if rbuild tagged it.
    pub fn last_tag_time(&self, manifest_digest: &Digest) -> Result<Option<String>> {
        Ok(self
            .index_entries()?
            .into_iter()
            .filter(|e| &e.descriptor.digest == manifest_digest)
            .filter_map(|e| {
                e.descriptor
                    .annotation(index::ANNOTATION_TAG_TIME)
                    .map(str::to_string)
            })
            .max())
    }

    /// The names (tags and digest pins) of a manifest.
    pub fn names_of(&self, manifest_digest: &Digest) -> Result<Vec<Reference>> {
        Ok(self
            .index_entries()?
            .into_iter()
            .filter(|e| &e.descriptor.digest == manifest_digest)
            .filter_map(|e| e.reference)
            .collect())
    }

    /// Every image with its names, newest first; a multi-platform image is one summary.
    pub fn list_images(&self) -> Result<Vec<ImageSummary>> {
        let entries = self.index_entries()?;
        let mut by_manifest: BTreeMap<Digest, (Descriptor, Vec<Reference>)> = BTreeMap::new();
        for e in entries {
            if !index::is_image_entry(&e.descriptor) {
                continue;
            }
            let slot = by_manifest
                .entry(e.descriptor.digest.clone())
                .or_insert_with(|| (e.descriptor.clone(), Vec::new()));
            if let Some(r) = e.reference {
                slot.1.push(r);
            }
        }
        let mut out = Vec::with_capacity(by_manifest.len());
        for (digest, (desc, mut names)) in by_manifest {
            let target = match self.target(&desc) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("skipping image {digest}: {e}");
                    continue;
                }
            };
            let record = match &target {
                Target::Image(r) => r.clone(),
                Target::Index(i) => match i
                    .image_for(&Platform::host())
                    .or_else(|| i.images.first().map(|(_, r)| r))
                {
                    Some(r) => r.clone(),
                    None => {
                        tracing::warn!("skipping image index {digest}: it has no stored image");
                        continue;
                    }
                },
            };
            names.sort();
            out.push(ImageSummary {
                record,
                names,
                target,
            });
        }
        out.sort_by(|a, b| {
            let ta = a.record.config.created_time();
            let tb = b.record.config.created_time();
            tb.cmp(&ta)
                .then_with(|| a.names.first().cmp(&b.names.first()))
        });
        Ok(out)
    }

    /// Find the image the user means by `input`: `name[:tag]`, `name@sha256:...`, a full image
    /// ID (`sha256:...` or 64 hex), a manifest digest, or a unique short ID prefix. Unknown
    /// names get "did you mean" suggestions. A multi-platform image resolves to the host's
    /// platform ([`Store::resolve_target`] keeps the index).
    pub fn resolve_image(&self, input: &str) -> Result<ImageRecord> {
        match self.resolve_entry(input)? {
            Resolved::Entry(d) => self.image_with_type(&d.digest, Some(&d.media_type), 0),
            Resolved::Image(r) => Ok(r),
        }
    }

    /// [`Store::resolve_image`] for `platform`: a multi-platform image gives that platform's
    /// manifest (a single-platform image is returned whatever its platform).
    pub fn resolve_image_for(&self, input: &str, platform: &Platform) -> Result<ImageRecord> {
        match self.resolve_entry(input)? {
            Resolved::Entry(d) => self.image_for_platform(&d.digest, Some(&d.media_type), platform),
            Resolved::Image(r) => Ok(r),
        }
    }

    /// What `input` names, as stored: one image, or a multi-platform image (an index).
    pub fn resolve_target(&self, input: &str) -> Result<crate::target::Target> {
        match self.resolve_entry(input)? {
            Resolved::Entry(d) => self.target(&d),
            Resolved::Image(r) => Ok(crate::target::Target::Image(r)),
        }
    }

    /// The index.json entry `input` names (or, for an image ID, the image found by it).
    fn resolve_entry(&self, input: &str) -> Result<Resolved> {
        let entries = self.index_entries()?;
        let image_entries: Vec<&IndexEntry> = entries
            .iter()
            .filter(|e| index::is_image_entry(&e.descriptor))
            .collect();
        let load = |e: &IndexEntry| {
            self.image_with_type(&e.descriptor.digest, Some(&e.descriptor.media_type), 0)
        };
        let found = |e: &IndexEntry| Ok(Resolved::Entry(e.descriptor.clone()));

        // 1. A full digest: image ID, manifest or index digest.
        let bare = input.strip_prefix("sha256:").unwrap_or(input);
        let is_hex = !bare.is_empty() && bare.len() <= 64 && crate::digest::is_lower_hex(bare);
        if is_hex && bare.len() == 64 {
            let d = Digest::from_hex(bare)?;
            if let Some(e) = image_entries.iter().find(|e| e.descriptor.digest == d) {
                return found(e);
            }
            for e in &image_entries {
                if let Ok(r) = load(e)
                    && r.config_digest == d
                {
                    return Ok(Resolved::Image(r));
                }
            }
            return Err(not_found(input, &entries));
        }

        // 2. A reference.
        let parsed = if input.starts_with("sha256:") {
            None
        } else {
            Reference::parse_name_only(input).ok()
        };
        if let Some(r) = &parsed {
            if let Some(d) = r.digest() {
                let repo = r.repository();
                let mut candidates: Vec<&&IndexEntry> = image_entries
                    .iter()
                    .filter(|e| &e.descriptor.digest == d)
                    .collect();
                candidates.sort_by_key(|e| e.reference.as_ref().map(|n| n.repository() != repo));
                if let Some(e) = candidates.first() {
                    return found(e);
                }
            } else {
                let full = if r.tag().is_none() {
                    r.with_tag(crate::reference::DEFAULT_TAG)?
                } else {
                    r.clone()
                };
                if let Some(e) = image_entries
                    .iter()
                    .find(|e| e.reference.as_ref() == Some(&full))
                {
                    return found(e);
                }
            }
        }

        // 3. A short image ID (or manifest/index digest) prefix.
        if is_hex {
            let mut hits: BTreeMap<Digest, Resolved> = BTreeMap::new();
            let mut seen = BTreeSet::new();
            for e in &image_entries {
                if !seen.insert(e.descriptor.digest.clone()) {
                    continue;
                }
                if e.descriptor.digest.hex().starts_with(bare) {
                    hits.insert(
                        e.descriptor.digest.clone(),
                        Resolved::Entry(e.descriptor.clone()),
                    );
                    continue;
                }
                if let Ok(r) = load(e)
                    && (r.config_digest.hex().starts_with(bare)
                        || r.manifest_digest.hex().starts_with(bare))
                {
                    let id = if media::is_index(&e.descriptor.media_type) {
                        e.descriptor.digest.clone()
                    } else {
                        r.config_digest.clone()
                    };
                    let hit = if media::is_index(&e.descriptor.media_type) {
                        Resolved::Entry(e.descriptor.clone())
                    } else {
                        Resolved::Image(r)
                    };
                    hits.insert(id, hit);
                }
            }
            match hits.len() {
                0 => {}
                1 => return Ok(hits.into_values().next().expect("one")),
                n => {
                    return Err(Error::Ambiguous {
                        name: input.to_string(),
                        count: n,
                    });
                }
            }
        }
        if parsed.is_none() && !is_hex {
            // Not a reference and not an ID: report why it is not a reference.
            Reference::parse_name_only(input)?;
        }
        Err(not_found(input, &entries))
    }
}

/// What a user's input resolved to: an index.json entry, or (for an image ID) the image.
#[expect(
    clippy::large_enum_variant,
    reason = "one value per lookup, consumed at once"
)]
enum Resolved {
    Entry(Descriptor),
    Image(ImageRecord),
}

/// Point `reference` at `desc` inside an index being updated. A tag that named another
/// manifest moves (that image stays listed, untagged, if it has no other name); the new
/// image's untagged entry goes. Names are compared in their normalised form, which is how
/// rbuild writes them. Returns the manifest the name pointed at before, if another.
fn apply_tag(
    index: &mut crate::manifest::Index,
    desc: &Descriptor,
    reference: &Reference,
    now: &str,
) -> Option<Digest> {
    let name = reference.to_string();
    let mut previous: Option<Descriptor> = None;
    index.manifests.retain(|d| {
        let same = index::entry_name(d) == Some(name.as_str());
        if same && d.digest != desc.digest {
            previous = Some(d.clone());
        }
        !same
    });
    index
        .manifests
        .retain(|d| !(d.digest == desc.digest && index::entry_name(d).is_none()));
    let mut entry = index::make_entry(&desc.media_type, &desc.digest, desc.size, Some(reference));
    if let Some(a) = entry.annotations.as_mut() {
        a.insert(index::ANNOTATION_TAG_TIME.to_string(), now.to_string());
    }
    index.manifests.push(entry);
    let prev = previous?;
    if !index.manifests.iter().any(|d| d.digest == prev.digest) {
        index.manifests.push(index::make_entry(
            &prev.media_type,
            &prev.digest,
            prev.size,
            None,
        ));
    }
    Some(prev.digest)
}

/// Pick the image manifest for `want` from an index's entries with the one matching rule
/// ([`Platform::select`]: best fit, the first of equals, per image-index.md). Attestation
/// manifests are never picked (their layers are not filesystems).
pub fn select_platform<'a>(manifests: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    want.select(
        manifests
            .iter()
            .filter(|d| media::is_manifest(&d.media_type) && !crate::target::is_attestation(d)),
    )
}

/// "No such image" with the closest names as suggestions.
fn not_found(input: &str, entries: &[IndexEntry]) -> Error {
    let names: BTreeSet<String> = entries
        .iter()
        .filter_map(|e| e.reference.as_ref())
        .map(|r| r.familiar())
        .collect();
    let wanted = Reference::parse(input)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| input.to_string());
    let wanted_repo = wanted
        .split([':', '@'])
        .next()
        .unwrap_or(&wanted)
        .to_string();
    let mut scored: Vec<(f64, &String)> = names
        .iter()
        .map(|n| {
            let repo = n.split([':', '@']).next().unwrap_or(n);
            let score = if repo == wanted_repo {
                1.0
            } else {
                strsim::jaro_winkler(&wanted, n).max(strsim::jaro_winkler(&wanted_repo, repo))
            };
            (score, n)
        })
        .filter(|(s, _)| *s >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let help = if scored.is_empty() {
        "list images with `rbuild images`, or pull/load it first".to_string()
    } else {
        let list: Vec<String> = scored
            .iter()
            .take(3)
            .map(|(_, n)| format!("`{n}`"))
            .collect();
        format!("did you mean {}?", list.join(" or "))
    };
    Error::ImageNotFound {
        name: input.to_string(),
        help,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    pub(crate) fn tiny_image(store: &Store, content: &[u8], created: &str) -> ImageRecord {
        let blob = store.put_blob(content).unwrap();
        let layer = Layer {
            descriptor: Descriptor::new(media::OCI_LAYER_TAR, blob.digest.clone(), blob.size),
            diff_id: blob.digest,
        };
        let mut config = ImageConfig::new_for_host();
        config.created = Some(created.to_string());
        store.commit_image(&config, &[layer]).unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_with(dir.path(), StoreOptions::default()).unwrap();
        (dir, s)
    }

    /// The host's image is the best fit, not the first entry that shares os/arch: an exact
    /// entry beats an earlier variant entry, other OSes and index entries never match.
    #[test]
    fn select_platform_prefers_the_exact_entry() {
        let host = Platform::host();
        let entry = |mt: &str, os: &str, variant: Option<&str>, n: u8| {
            let mut d = Descriptor::new(mt, Digest::of(&[n]), 1);
            d.platform = Some(Platform::new(os, &host.architecture, variant));
            d
        };
        let entries = vec![
            entry(media::OCI_INDEX, "linux", host.variant.as_deref(), 0),
            entry(media::OCI_MANIFEST, "windows", host.variant.as_deref(), 1),
            entry(media::OCI_MANIFEST, "linux", Some("v1000"), 2),
            entry(media::DOCKER_MANIFEST, "linux", host.variant.as_deref(), 3),
            entry(media::OCI_MANIFEST, "linux", host.variant.as_deref(), 4),
        ];
        let chosen = select_platform(&entries, &host).unwrap();
        assert_eq!(chosen.digest, Digest::of(&[3]));
        assert!(select_platform(&entries[..2], &host).is_none());
    }

    #[test]
    fn commit_lists_untagged_then_tag_names_it() {
        let (_d, s) = store();
        let img = tiny_image(&s, b"layer-a", "2024-01-01T00:00:00Z");
        let list = s.list_images().unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].names.is_empty());
        let r = Reference::parse("app:1").unwrap();
        assert_eq!(s.tag(&img, &r).unwrap(), None);
        let list = s.list_images().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].names, vec![r.clone()]);
        assert_eq!(
            s.resolve_image("app:1").unwrap().manifest_digest,
            img.manifest_digest
        );
        assert_eq!(
            s.resolve_image(img.id().short()).unwrap().config_digest,
            img.config_digest
        );
        assert_eq!(
            s.resolve_image(img.id().as_str()).unwrap().config_digest,
            img.config_digest
        );
        let pinned = format!("app@{}", img.manifest_digest);
        assert_eq!(
            s.resolve_image(&pinned).unwrap().config_digest,
            img.config_digest
        );
    }

    #[test]
    fn moving_a_tag_leaves_the_old_image_dangling() {
        let (_d, s) = store();
        let a = tiny_image(&s, b"a", "2024-01-01T00:00:00Z");
        let b = tiny_image(&s, b"b", "2024-01-02T00:00:00Z");
        let r = Reference::parse("app").unwrap();
        s.tag(&a, &r).unwrap();
        assert_eq!(s.tag(&b, &r).unwrap(), Some(a.manifest_digest.clone()));
        let list = s.list_images().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[0].record.manifest_digest, b.manifest_digest,
            "newest first"
        );
        assert!(list[1].names.is_empty(), "a is dangling now");
    }

    #[test]
    fn unknown_names_suggest_close_matches() {
        let (_d, s) = store();
        let a = tiny_image(&s, b"a", "2024-01-01T00:00:00Z");
        s.tag(&a, &Reference::parse("busybox:1.35").unwrap())
            .unwrap();
        for typo in ["busybox", "busybx:1.35", "busybox:1.36"] {
            match s.resolve_image(typo) {
                Err(Error::ImageNotFound { help, .. }) => {
                    assert!(help.contains("busybox:1.35"), "{typo}: {help}")
                }
                other => panic!("{typo}: {other:?}"),
            }
        }
        assert!(matches!(
            s.resolve_image("Bad Name"),
            Err(Error::InvalidReference { .. })
        ));
    }

    #[test]
    fn untag_then_remove() {
        let (_d, s) = store();
        let a = tiny_image(&s, b"a", "2024-01-01T00:00:00Z");
        s.tag(&a, &Reference::parse("x:1").unwrap()).unwrap();
        s.tag(&a, &Reference::parse("x:2").unwrap()).unwrap();
        let (d, still) = s.untag(&Reference::parse("x:1").unwrap()).unwrap();
        assert_eq!(d, a.manifest_digest);
        assert!(still);
        let (_, still) = s.untag(&Reference::parse("x:2").unwrap()).unwrap();
        assert!(!still);
        assert_eq!(s.list_images().unwrap().len(), 1, "still listed, untagged");
        s.remove_image(&a.manifest_digest).unwrap();
        assert!(s.list_images().unwrap().is_empty());
    }

    /// A multi-platform image is one listing entry: the index's ID, every platform's blobs
    /// counted once, the host's image as its record.
    #[test]
    fn an_index_lists_as_one_image() {
        let (_d, s) = store();
        let shared = s.put_blob(b"shared layer").unwrap();
        let image = |arch: &str| {
            let l = Layer {
                descriptor: Descriptor::new(
                    media::OCI_LAYER_TAR,
                    shared.digest.clone(),
                    shared.size,
                ),
                diff_id: shared.digest.clone(),
            };
            let mut c = ImageConfig::new_for_host();
            c.architecture = arch.to_string();
            s.commit_image(&c, &[l]).unwrap()
        };
        let host = Platform::host();
        let other = if host.architecture == "arm64" {
            "amd64"
        } else {
            "arm64"
        };
        let (h, o) = (image(&host.architecture), image(other));
        let index = s
            .commit_index(&[
                (host.clone(), h.clone()),
                (Platform::new("linux", other, None), o.clone()),
            ])
            .unwrap();
        let list = s.list_images().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id(), &index.digest);
        assert_eq!(list[0].digest(), &index.digest);
        assert_eq!(list[0].record.manifest_digest, h.manifest_digest);
        assert_eq!(
            list[0].size(),
            h.manifest.config.size + o.manifest.config.size + shared.size
        );
    }

    /// An index wrapped in an index without a platform (as some tools write them) still
    /// resolves to the platform's image.
    #[test]
    fn wrapped_indexes_resolve_to_the_platform_image() {
        let (_d, s) = store();
        let img = tiny_image(&s, b"a", "2024-01-01T00:00:00Z");
        let inner = s.commit_index(&[(Platform::host(), img.clone())]).unwrap();
        let mut outer = crate::manifest::Index::empty();
        outer.manifests.push(inner.descriptor());
        let info = s
            .put_blob(&json::to_canonical_vec(&outer).unwrap())
            .unwrap();
        let got = s
            .image_for_platform(&info.digest, Some(media::OCI_INDEX), &Platform::host())
            .unwrap();
        assert_eq!(got.manifest_digest, img.manifest_digest);
        let err = s
            .image_for_platform(
                &info.digest,
                Some(media::OCI_INDEX),
                &Platform::new("linux", "s390x", None),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
    }
}
