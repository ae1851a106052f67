//! The image table: `index.json` entries are the images of the store, and tags live there. A
//! named entry holds the full normalised reference (`docker.io/library/busybox:1.35`) in both
//! `org.opencontainers.image.ref.name` and `io.containerd.image.name`; skopeo and umoci accept
//! that string after the colon of `oci:$ROOT:` / `--image $ROOT:` (tested), and unlike the bare
//! tag `docker save` and umoci put in `ref.name` it is unambiguous. An entry without a name is
//! an untagged ("dangling") image, a GC root until pruned. rbuild adds [`ANNOTATION_TAG_TIME`]
//! (`dev.rbuild.tag.time`, inspect's LastTagTime) to tag entries.
//!
//! Why not a tag file beside it: `$ROOT` would be a layout with no names for other tools, and a
//! second file would have to be kept consistent with the first; an index.json update is one
//! atomic rename, so there is nothing to reconcile after a crash. Cost: a tag change rewrites
//! index.json (~0.4 KB per entry); `rbuild images` with 1,000 images takes 35 ms.
//!
//! Reading layouts written by others: the containerd name wins, then a `ref.name` containing
//! `/`, `:` or `@`; an entry with a bare tag is loaded untagged, with a note. Updates are
//! read-modify-write under `index.lock`, written atomically.

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::json;
use crate::manifest::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Descriptor, Index};
use crate::media;
use crate::reference::Reference;
use crate::store::Store;

/// rbuild's annotation on a tag entry: when the tag was set (for `inspect`'s LastTagTime).
pub const ANNOTATION_TAG_TIME: &str = "dev.rbuild.tag.time";

/// One index.json entry, interpreted.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub descriptor: Descriptor,
    /// The name, when the entry is a tag (or a `name@digest` pin).
    pub reference: Option<Reference>,
}

impl Store {
    /// Read and validate `index.json`.
    pub fn read_index(&self) -> Result<Index> {
        let path = self.layout.index_json();
        let bytes = std::fs::read(&path).ctx("read", &path)?;
        let index: Index = json::parse_strict(&bytes, 256 << 20, "index.json")
            .map_err(|e| Error::corrupt(format!("`{}`: {e}", path.display())))?;
        if index.schema_version != 2 {
            return Err(Error::corrupt(format!(
                "`{}` has schemaVersion {}",
                path.display(),
                index.schema_version
            )));
        }
        Ok(index)
    }

    /// The image table: every index.json entry with its parsed name. Names that do not parse
    /// as references (written by other tools) are treated as absent.
    pub fn index_entries(&self) -> Result<Vec<IndexEntry>> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .map(|d| {
                let reference = entry_name(&d).and_then(|n| Reference::parse_name_only(n).ok());
                IndexEntry {
                    descriptor: d,
                    reference,
                }
            })
            .collect())
    }

    /// Read-modify-write index.json under its lock (and the shared store lock, so GC never
    /// sees a half-applied change). `f` returns whether it changed anything.
    pub(crate) fn update_index<T>(
        &self,
        f: impl FnOnce(&mut Index) -> Result<(bool, T)>,
    ) -> Result<T> {
        let _store = self.lock_shared()?;
        let _index = self.lock_index()?;
        let mut index = self.read_index()?;
        let (changed, out) = f(&mut index)?;
        if changed {
            let bytes = json::to_canonical_vec(&index)?;
            fsutil::atomic_write(&self.layout.index_json(), &bytes, 0o644)?;
        }
        Ok(out)
    }
}

/// The name of an entry: containerd's `io.containerd.image.name` (a full name), else
/// `org.opencontainers.image.ref.name` when it holds a reference. A bare word there (`1.35`,
/// `latest`: what umoci and `docker save` write) is a tag without a repository, so the entry
/// counts as unnamed.
pub fn entry_name(d: &Descriptor) -> Option<&str> {
    d.annotation(ANNOTATION_IMAGE_NAME).or_else(|| {
        d.annotation(ANNOTATION_REF_NAME)
            .filter(|n| n.contains('/') || n.contains(':') || n.contains('@'))
    })
}

/// A new index.json entry for `manifest`, named `reference` (or untagged).
pub(crate) fn make_entry(
    media_type: &str,
    digest: &Digest,
    size: u64,
    reference: Option<&Reference>,
) -> Descriptor {
    let mut d = Descriptor::new(media_type, digest.clone(), size);
    if let Some(r) = reference {
        let name = r.to_string();
        d.annotations = Some(BTreeMap::from([
            (ANNOTATION_IMAGE_NAME.to_string(), name.clone()),
            (ANNOTATION_REF_NAME.to_string(), name),
        ]));
    }
    d
}

/// Is this entry an image we can use (a manifest or an index of manifests)?
pub(crate) fn is_image_entry(d: &Descriptor) -> bool {
    media::is_manifest(&d.media_type) || media::is_index(&d.media_type)
}
