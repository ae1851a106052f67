//! Remote layers: blobs an image references that are not stored here but are known to be in
//! a registry repository. A base image resolved by its manifest and config alone (a build
//! that never reads the base's filesystem, see `engine/src/session.md`) is stored with its
//! layers remote: the image is complete as a record (manifest, config, diff_ids), and each
//! layer blob has a record of where it can be fetched from. Kept in `remote-layers.json`
//! beside `index.json`: `{"sha256:…": {"source": "registry/repository", "size": N,
//! "mediaType": "…"}}`.
//!
//! Rules: a record counts only while its blob is absent (a fetched layer is an ordinary
//! blob); committing, registering and fsck accept a referenced layer that is missing only
//! when it has a record of the same size; every reader of a missing remote blob gets
//! [`Error::RemoteBlob`] (fetch it first: the registry crate's `remote::fetch_layers`); GC
//! drops records no live image references.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::image::{ImageRecord, Layer};
use crate::manifest::Descriptor;
use crate::reference::Reference;
use crate::store::Store;

/// The record file, beside `index.json`.
pub const FILE: &str = "remote-layers.json";

/// Where one layer blob that is not stored here can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteBlob {
    /// The repository that serves it (`registry/repository`, no tag or digest).
    pub source: String,
    pub size: u64,
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

impl RemoteBlob {
    /// The repository as a reference (the record was written from one).
    pub fn repository(&self) -> Result<Reference> {
        Reference::parse_name_only(&self.source)
    }
}

impl Store {
    /// Record that each of `layers` can be fetched from `repository` (a name without tag or
    /// digest). Layers already stored need no record and get none.
    pub fn record_remote_layers(
        &self,
        repository: &Reference,
        layers: &[Descriptor],
    ) -> Result<()> {
        let source = repository.repository().to_string();
        let _lock = self.lock_index()?;
        let mut all = self.read_remote_blobs()?;
        let mut changed = false;
        for d in layers.iter().filter(|d| !self.has_blob(&d.digest)) {
            let record = RemoteBlob {
                source: source.clone(),
                size: d.size,
                media_type: d.media_type.clone(),
            };
            if all.get(&d.digest) != Some(&record) {
                all.insert(d.digest.clone(), record);
                changed = true;
            }
        }
        if changed {
            self.write_remote_blobs(&all)?;
        }
        Ok(())
    }

    /// Where a blob that is not stored can be fetched from (`None` when it is stored or
    /// unknown).
    pub fn remote_blob(&self, digest: &Digest) -> Option<RemoteBlob> {
        if self.has_blob(digest) {
            return None;
        }
        self.read_remote_blobs().ok()?.remove(digest)
    }

    /// Whether a layer descriptor is satisfied: stored, or remote with the same size.
    pub fn has_layer_or_remote(&self, d: &Descriptor) -> bool {
        self.has_blob(&d.digest)
            || self
                .remote_blob(&d.digest)
                .is_some_and(|r| r.size == d.size)
    }

    /// The layers of `image` that are not stored here, with where each can be fetched.
    pub fn remote_layers(&self, image: &ImageRecord) -> Vec<(Layer, RemoteBlob)> {
        let all = match self.read_remote_blobs() {
            Ok(all) => all,
            Err(_) => return Vec::new(),
        };
        image
            .layers
            .iter()
            .filter(|l| !self.has_blob(&l.descriptor.digest))
            .filter_map(|l| {
                all.get(&l.descriptor.digest)
                    .map(|r| (l.clone(), r.clone()))
            })
            .collect()
    }

    /// The error for a read of the missing blob `digest`: [`Error::RemoteBlob`] when it is a
    /// remote layer, else [`Error::MissingBlob`].
    pub(crate) fn missing(&self, digest: &Digest) -> Error {
        match self
            .read_remote_blobs()
            .ok()
            .and_then(|mut all| all.remove(digest))
        {
            Some(r) => Error::RemoteBlob {
                digest: digest.clone(),
                source_repo: r.source,
            },
            None => Error::MissingBlob {
                digest: digest.clone(),
            },
        }
    }

    /// GC: forget records of blobs no live image references, and of blobs now stored.
    pub(crate) fn prune_remote_blobs(&self, live: &BTreeSet<Digest>) -> Result<usize> {
        let _lock = self.lock_index()?;
        let mut all = self.read_remote_blobs()?;
        let before = all.len();
        all.retain(|d, _| live.contains(d) && !self.has_blob(d));
        let dropped = before - all.len();
        if dropped > 0 {
            self.write_remote_blobs(&all)?;
        }
        Ok(dropped)
    }

    fn read_remote_blobs(&self) -> Result<BTreeMap<Digest, RemoteBlob>> {
        let path = self.root().join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::corrupt(format!("`{FILE}` is not a remote layer record: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).ctx("cannot read", &path),
        }
    }

    fn write_remote_blobs(&self, all: &BTreeMap<Digest, RemoteBlob>) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(all).expect("remote records serialise");
        crate::fsutil::atomic_write(&self.root().join(FILE), &bytes, 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media;

    #[test]
    fn a_remote_record_counts_only_while_the_blob_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let content = b"layer bytes";
        let digest = Digest::of(content);
        let desc = Descriptor::new(media::OCI_LAYER_GZIP, digest.clone(), content.len() as u64);
        let repo = Reference::parse("reg.example:5000/base:1").unwrap();
        assert!(!store.has_layer_or_remote(&desc));
        assert!(matches!(store.missing(&digest), Error::MissingBlob { .. }));
        store
            .record_remote_layers(&repo, std::slice::from_ref(&desc))
            .unwrap();
        let record = store.remote_blob(&digest).unwrap();
        assert_eq!(record.source, "reg.example:5000/base");
        assert_eq!(record.repository().unwrap().path(), "base");
        assert!(store.has_layer_or_remote(&desc));
        let mut wrong = desc.clone();
        wrong.size += 1;
        assert!(!store.has_layer_or_remote(&wrong));
        assert!(matches!(
            store.open_blob(&digest),
            Err(Error::RemoteBlob { .. })
        ));
        store.put_blob(content).unwrap();
        assert!(store.remote_blob(&digest).is_none());
        assert_eq!(store.prune_remote_blobs(&BTreeSet::new()).unwrap(), 1);
        assert!(store.read_remote_blobs().unwrap().is_empty());
    }
}
