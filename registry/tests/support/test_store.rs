//! A real `rbuild_store::Store` in a temporary directory, with the few inspection helpers the
//! registry tests need (blob counts, names, raw blob access).

use std::path::{Path, PathBuf};

use rbuild_store::{Digest, Store};

pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestStore {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-registry-store-")
            .tempdir()
            .unwrap();
        let store = Store::open(dir.path()).unwrap();
        TestStore { dir, store }
    }

    /// Blobs in the store.
    pub fn blob_count(&self) -> usize {
        files(&self.dir.path().join("blobs")).len()
    }

    /// Every name (tag) in the store.
    pub fn names(&self) -> Vec<String> {
        self.store
            .list_images()
            .unwrap()
            .iter()
            .flat_map(|s| s.names.iter().map(|n| n.to_string()))
            .collect()
    }

    pub fn put_blob(&self, bytes: &[u8]) -> String {
        self.store.put_blob(bytes).unwrap().digest.to_string()
    }

    pub fn read_blob(&self, digest: &str) -> Vec<u8> {
        self.store
            .read_blob(&Digest::parse(digest).unwrap())
            .unwrap()
    }

    pub fn has(&self, digest: &str) -> bool {
        self.store.has_blob(&Digest::parse(digest).unwrap())
    }

    pub fn tmp(&self) -> PathBuf {
        let p = self.store.layout().tmp();
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

/// The files under a directory, sorted, for "store unchanged" checks.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(files(&p));
            } else {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

// Forward the store traits so tests can pass `&TestStore` where the library wants a store.
impl rbuild_registry::PullTarget for TestStore {
    fn has_blob(&self, digest: &rbuild_store::Digest) -> bool {
        rbuild_registry::PullTarget::has_blob(&self.store, digest)
    }
    fn begin_blob(
        &self,
        digest: &rbuild_store::Digest,
        size: u64,
    ) -> rbuild_registry::Result<Box<dyn rbuild_registry::Ingest + '_>> {
        self.store.begin_blob(digest, size)
    }
    fn record_image(
        &self,
        name: &str,
        tag: Option<&str>,
        manifest: &rbuild_registry::FetchedManifest,
        index: Option<&rbuild_registry::FetchedManifest>,
    ) -> rbuild_registry::Result<()> {
        self.store.record_image(name, tag, manifest, index)
    }
    fn record_index(
        &self,
        name: &str,
        tag: Option<&str>,
        index: &rbuild_registry::FetchedManifest,
        manifests: &[rbuild_registry::FetchedManifest],
    ) -> rbuild_registry::Result<()> {
        self.store.record_index(name, tag, index, manifests)
    }
}

impl rbuild_registry::PushSource for TestStore {
    fn open_blob(
        &self,
        digest: &rbuild_store::Digest,
    ) -> rbuild_registry::Result<Box<dyn std::io::Read + Send>> {
        rbuild_registry::PushSource::open_blob(&self.store, digest)
    }
    fn compressed_digest(
        &self,
        diff_id: &rbuild_store::Digest,
        compression: &str,
    ) -> Option<(rbuild_store::Digest, u64)> {
        self.store.compressed_digest(diff_id, compression)
    }
    fn remember_compressed(
        &self,
        diff_id: &rbuild_store::Digest,
        compression: &str,
        digest: &rbuild_store::Digest,
        size: u64,
    ) -> rbuild_registry::Result<()> {
        self.store
            .remember_compressed(diff_id, compression, digest, size)
    }
}
