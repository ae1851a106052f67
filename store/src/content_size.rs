//! Content sizes: how many bytes an image holds uncompressed, the size docker shows.
//!
//! Docker counts an image as its config plus its layers *uncompressed* (the bytes of each
//! layer's diff_id content), each layer once however many images or platforms share it. The
//! store keeps blobs as received: compressed when pulled or loaded from an OCI archive,
//! uncompressed when built here or loaded from a docker-archive. Summing stored blob sizes would
//! give the same image two sizes depending on where it came from; summing content sizes gives
//! one.
//!
//! A layer's uncompressed size is a function of its diff_id, so it is kept by diff_id in
//! `content-sizes.json` beside `index.json` and never goes stale. A layer stored uncompressed
//! (its blob digest is its diff_id) needs no entry: its size is the blob's. Any other layer is
//! decompressed once, the first time its size is asked for, and hashed while counted: a size
//! is recorded only when the stream's digest is the diff_id, so a damaged blob is an error, not
//! a wrong size. A remote layer (`remote.rs`) is not counted until it is fetched: sizes
//! say what the store holds. The file is a cache: a missing or damaged one is rebuilt, and a failed write
//! (a read-only store) only means the work is done again next time.

use std::collections::BTreeMap;
use std::io;

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::image::{ImageRecord, ImageSummary, Layer};
use crate::store::Store;

/// The cache file, beside `index.json`.
pub const FILE: &str = "content-sizes.json";

/// Uncompressed sizes by diff_id.
pub type ContentSizes = BTreeMap<Digest, u64>;

impl Store {
    /// The uncompressed sizes of `layers`, by diff_id: from the blob when it is stored
    /// uncompressed, else from `content-sizes.json`, else by decompressing it once (and
    /// recording the result).
    pub fn content_sizes<'a>(
        &self,
        layers: impl IntoIterator<Item = &'a Layer>,
    ) -> Result<ContentSizes> {
        let mut cached = self.read_content_sizes()?;
        let mut sizes = ContentSizes::new();
        let mut learned = false;
        for layer in layers {
            if sizes.contains_key(&layer.diff_id) {
                continue;
            }
            if !self.has_blob(&layer.descriptor.digest)
                && self.remote_blob(&layer.descriptor.digest).is_some()
                && !cached.contains_key(&layer.diff_id)
            {
                // A remote layer (`remote.rs`) holds nothing here; its content size is
                // learned when it is fetched.
                continue;
            }
            let size = if layer.descriptor.digest == layer.diff_id {
                self.blob_size(&layer.diff_id)?
            } else if let Some(size) = cached.get(&layer.diff_id) {
                *size
            } else {
                let size = self.count_uncompressed(layer)?;
                cached.insert(layer.diff_id.clone(), size);
                learned = true;
                size
            };
            sizes.insert(layer.diff_id.clone(), size);
        }
        if learned {
            self.write_content_sizes(&cached);
        }
        Ok(sizes)
    }

    /// Decompress a stored layer, checking that its content is its diff_id; its length.
    fn count_uncompressed(&self, layer: &Layer) -> Result<u64> {
        let reader = HashingReader::new(self.open_layer(&layer.descriptor)?);
        let (digest, len) = reader.finish_draining().ctx(
            "cannot read layer",
            self.layout().blob(&layer.descriptor.digest),
        )?;
        if digest != layer.diff_id {
            return Err(Error::corrupt(format!(
                "layer {} decompresses to {digest}, not its diff_id {}",
                layer.descriptor.digest, layer.diff_id
            )));
        }
        Ok(len)
    }

    fn read_content_sizes(&self) -> Result<ContentSizes> {
        let path = self.root().join(FILE);
        match std::fs::read(&path) {
            // A damaged file is only a cache: rebuilt as sizes are asked for.
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ContentSizes::new()),
            Err(e) => Err(e).ctx("cannot read", &path),
        }
    }

    fn write_content_sizes(&self, sizes: &ContentSizes) {
        let bytes = serde_json::to_vec_pretty(sizes).expect("content sizes serialise");
        if let Err(e) = crate::fsutil::atomic_write(&self.root().join(FILE), &bytes, 0o644) {
            tracing::debug!("content sizes not recorded: {e}");
        }
    }
}

impl ImageRecord {
    /// Docker's image size: the config plus every layer uncompressed (`sizes` from
    /// [`Store::content_sizes`]), a layer that appears twice counted once.
    pub fn content_size(&self, sizes: &ContentSizes) -> u64 {
        let mut layers: BTreeMap<&Digest, u64> = BTreeMap::new();
        for l in &self.layers {
            layers.insert(&l.diff_id, sizes.get(&l.diff_id).copied().unwrap_or(0));
        }
        self.manifest.config.size + layers.values().sum::<u64>()
    }
}

impl crate::target::Target {
    /// The content size of all its platforms' images (docker 28's total for a multi-platform
    /// image): their configs and layers, each counted once.
    pub fn content_size(&self, sizes: &ContentSizes) -> u64 {
        let mut configs: BTreeMap<&Digest, u64> = BTreeMap::new();
        let mut layers: BTreeMap<&Digest, u64> = BTreeMap::new();
        for (_, r) in self.images() {
            configs.insert(&r.config_digest, r.manifest.config.size);
            for l in &r.layers {
                layers.insert(&l.diff_id, sizes.get(&l.diff_id).copied().unwrap_or(0));
            }
        }
        configs.values().sum::<u64>() + layers.values().sum::<u64>()
    }

    /// Every layer of every platform's image, for [`Store::content_sizes`].
    pub fn layers(&self) -> Vec<Layer> {
        self.images()
            .into_iter()
            .flat_map(|(_, r)| r.layers.clone())
            .collect()
    }
}

impl ImageSummary {
    /// [`Target::content_size`](crate::target::Target::content_size) of the image.
    pub fn content_size(&self, sizes: &ContentSizes) -> u64 {
        self.target.content_size(sizes)
    }

    /// Every layer of every platform's image, for [`Store::content_sizes`].
    pub fn layers(&self) -> Vec<Layer> {
        self.target.layers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{OciArchive, TarBuilder, gzip};

    /// One image stored twice, its layer gzipped in one store and plain in the other: one
    /// content size, the tar's length plus the config.
    #[test]
    fn compressed_and_plain_layers_have_one_content_size() {
        let mut tar = TarBuilder::new();
        tar.file("etc/data", &[7u8; 5000]);
        let plain = tar.finish();

        let plain_store = tempfile::tempdir().unwrap();
        let s1 = Store::open(plain_store.path()).unwrap();
        let mut a = OciArchive::new();
        let m = a.image("linux", "amd64", &plain);
        a.entry(&m, Some("x:1"));
        s1.load(&a.build()[..]).unwrap();

        let gz_store = tempfile::tempdir().unwrap();
        let s2 = Store::open(gz_store.path()).unwrap();
        let mut b = OciArchive::new();
        let m = b.image_with_layer(
            "linux",
            "amd64",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &gzip(&plain),
            &Digest::of(&plain),
        );
        b.entry(&m, Some("x:1"));
        s2.load(&b.build()[..]).unwrap();

        let size_in = |s: &Store| {
            let img = &s.list_images().unwrap()[0];
            let layers = img.layers();
            let sizes = s.content_sizes(&layers).unwrap();
            (img.content_size(&sizes), img.size(), img.id().clone())
        };
        let (c1, stored1, id1) = size_in(&s1);
        let (c2, stored2, id2) = size_in(&s2);
        assert_eq!(id1, id2, "the same image");
        assert_ne!(stored1, stored2, "stored differently");
        assert_eq!(c1, c2);
        let config = s1.list_images().unwrap()[0].record.manifest.config.size;
        assert_eq!(c1, plain.len() as u64 + config);
        // The gzipped layer's size was recorded; the plain one needed no entry.
        assert_eq!(
            s2.read_content_sizes().unwrap().get(&Digest::of(&plain)),
            Some(&(plain.len() as u64))
        );
        assert!(s1.read_content_sizes().unwrap().is_empty());
        // Asked again, the recorded size is used (a damaged blob is not read again).
        assert_eq!(size_in(&s2).0, c2);
    }

    #[test]
    fn a_layer_that_is_not_its_diff_id_is_an_error_not_a_size() {
        let mut tar = TarBuilder::new();
        tar.file("a", b"x");
        let plain = tar.finish();
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut a = OciArchive::new();
        let m = a.image("linux", "amd64", &plain);
        a.entry(&m, Some("x:1"));
        s.load(&a.build()[..]).unwrap();
        let img = &s.list_images().unwrap()[0];
        let mut layer = img.layers()[0].clone();
        // A gzipped copy of the layer, declared with the wrong diff_id.
        let blob = s.put_blob(&gzip(&plain)).unwrap().digest;
        layer.descriptor.digest = blob;
        layer.descriptor.media_type = "application/vnd.oci.image.layer.v1.tar+gzip".into();
        layer.diff_id = Digest::of(b"something else");
        assert!(s.content_sizes([&layer]).is_err());
        assert!(s.read_content_sizes().unwrap().is_empty());
    }
}
