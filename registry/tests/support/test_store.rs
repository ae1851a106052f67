//! A minimal directory-backed implementation of the registry crate's store traits, for the
//! crate's own integration tests (the real store is `rbuild-store`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rbuild_registry::digest::HashingWriter;
use rbuild_registry::{FetchedManifest, Ingest, PullTarget, PushSource, RegistryError, Result};

pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub tags: Mutex<BTreeMap<String, String>>,
    pub compressed: Mutex<BTreeMap<(String, String), (String, u64)>>,
    pub compressions: Mutex<usize>,
}

impl TestStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
        TestStore {
            dir,
            tags: Mutex::new(BTreeMap::new()),
            compressed: Mutex::new(BTreeMap::new()),
            compressions: Mutex::new(0),
        }
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.path().join("blobs").join(digest.replace(':', "-"))
    }

    pub fn blob_count(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("blobs"))
            .unwrap()
            .count()
    }

    pub fn put_blob(&self, bytes: &[u8]) -> String {
        let d = rbuild_registry::digest::sha256_digest(bytes);
        std::fs::write(self.blob_path(&d), bytes).unwrap();
        d
    }

    pub fn read_blob(&self, digest: &str) -> Vec<u8> {
        std::fs::read(self.blob_path(digest)).unwrap()
    }

    pub fn tmp(&self) -> PathBuf {
        let p = self.dir.path().join("tmp");
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

struct TestIngest {
    w: HashingWriter<tempfile::NamedTempFile>,
    digest: String,
    size: u64,
    dest: PathBuf,
}

impl Write for TestIngest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

impl Ingest for TestIngest {
    fn commit(self: Box<Self>) -> Result<()> {
        let TestIngest {
            w,
            digest,
            size,
            dest,
        } = *self;
        let (file, actual, len) = w.finish();
        if actual != digest || len != size {
            return Err(RegistryError::DigestMismatch {
                registry: "test-store".into(),
                expected: digest,
                actual,
            });
        }
        file.persist(dest)
            .map_err(|e| RegistryError::io("persist", e.error))?;
        Ok(())
    }
}

impl PullTarget for TestStore {
    fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).exists()
    }

    fn begin_blob(&self, digest: &str, size: u64) -> Result<Box<dyn Ingest + '_>> {
        let f = tempfile::NamedTempFile::new_in(self.tmp()).unwrap();
        Ok(Box::new(TestIngest {
            w: HashingWriter::new(f),
            digest: digest.into(),
            size,
            dest: self.blob_path(digest),
        }))
    }

    fn record_image(
        &self,
        name: &str,
        tag: Option<&str>,
        manifest: &FetchedManifest,
        index: Option<&FetchedManifest>,
    ) -> Result<()> {
        self.put_blob(&manifest.bytes);
        if let Some(i) = index {
            self.put_blob(&i.bytes);
        }
        let key = format!("{name}:{}", tag.unwrap_or("<none>"));
        self.tags
            .lock()
            .unwrap()
            .insert(key, manifest.digest.clone());
        Ok(())
    }
}

impl PushSource for TestStore {
    fn open_blob(&self, digest: &str) -> Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(
            std::fs::File::open(self.blob_path(digest))
                .map_err(|e| RegistryError::io("open", e))?,
        ))
    }

    fn compressed_digest(&self, diff_id: &str, compression: &str) -> Option<(String, u64)> {
        self.compressed
            .lock()
            .unwrap()
            .get(&(diff_id.to_string(), compression.to_string()))
            .cloned()
    }

    fn remember_compressed(
        &self,
        diff_id: &str,
        compression: &str,
        digest: &str,
        size: u64,
    ) -> Result<()> {
        *self.compressions.lock().unwrap() += 1;
        self.compressed
            .lock()
            .unwrap()
            .insert((diff_id.into(), compression.into()), (digest.into(), size));
        Ok(())
    }
}

/// The files under a directory, for "store unchanged" checks.
pub fn snapshot(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walk(dir);
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p);
            }
        }
    }
    v
}

impl TestStore {
    pub fn has(&self, digest: &str) -> bool {
        self.blob_path(digest).exists()
    }
}
