//! The build-cache index on disk: step key → result layer, with the full preimage kept for
//! `explain`, a short history of keys per step site, and the file lists keys were made from.
//!
//! Layout under the directory given to [`CacheIndex::open`] (the CLI uses
//! `rbuild_store::layout::Layout::cache_index`, `$ROOT/cache/_index-v1`): `entries/<key>.json`
//! one entry per key (preimage + resulting layer), `sites/<hash>.json` the recent keys of one
//! step site (Dockerfile path + stage + position), `files/<digest>.json` file record lists by
//! digest, `LOCK`.
//!
//! Every file is written to a temporary name, fsynced and renamed, so a crash leaves either the
//! old or the new version; a corrupt or foreign-format entry reads as a miss. Entries are only
//! written after their layer is in the store, so an entry always names a stored layer; a failed
//! or cancelled step writes nothing. [`CacheIndex::prune`] drops entries by age and then by
//! least-recent use down to a size (`prune --keep-storage`); among entries last used together
//! (one build) the deepest in their chain go first, so parents outlive their children. The
//! store's GC never looks in here: each entry's layer is kept alive by a `refs/cache/<key>` ref.

use std::io::Write;
use std::path::{Path, PathBuf};

use rbuild_store::Digest;
use serde::{Deserialize, Serialize};

use crate::cache_key::{CacheKey, Preimage};

/// How many keys a step site remembers for explanations.
const SITE_HISTORY: usize = 16;

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedResult {
    /// The layer's uncompressed digest; `None` when the step changed no files. Stored as its
    /// `sha256:<hex>` text; an entry whose digest does not parse reads as absent.
    pub diff_id: Option<Digest>,
    /// Uncompressed layer size in bytes.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub key: CacheKey,
    pub preimage: Preimage,
    pub result: CachedResult,
    /// Unix seconds.
    pub created: i64,
    pub last_used: i64,
    /// How long the step took to build, in milliseconds.
    pub build_ms: u64,
    /// Layers below this step's result (its position in the chain): among entries used at
    /// the same time, prune drops the deepest first. 0 in entries written before it existed.
    #[serde(default)]
    pub depth: usize,
}

/// The cache index failed (a store fault: [`rbuild_store::ErrorClass::Store`]).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CacheError {
    #[error("cannot access the build cache at `{path}`")]
    #[diagnostic(
        code(rbuild::store::cache_io),
        help("check the permissions of the store directory (`--root`)")
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CacheError {
    pub fn class(&self) -> rbuild_store::ErrorClass {
        rbuild_store::ErrorClass::Store
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The cache index of one store.
#[derive(Debug, Clone)]
pub struct CacheIndex {
    dir: PathBuf,
}

impl CacheIndex {
    pub fn open(dir: impl Into<PathBuf>) -> Result<CacheIndex, CacheError> {
        let dir = dir.into();
        for sub in ["entries", "sites", "files", "tmp"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(io_err(&path))?;
        }
        Ok(CacheIndex { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join("entries").join(format!("{}.json", key.0))
    }

    fn site_path(&self, site: &str) -> PathBuf {
        let hash = blake3::hash(site.as_bytes()).to_hex();
        self.dir.join("sites").join(format!("{}.json", &hash[..32]))
    }

    fn files_path(&self, digest: &str) -> PathBuf {
        self.dir.join("files").join(format!("{digest}.json"))
    }

    /// Take the index's write lock (held until the returned file is dropped).
    fn lock(&self) -> Result<std::fs::File, CacheError> {
        let path = self.dir.join("LOCK");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        Ok(file)
    }

    /// Write `bytes` to `path` atomically (temp file in the index, fsync, rename, fsync dir).
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let tmp_dir = self.dir.join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_err(&tmp_dir))?;
        tmp.write_all(bytes).map_err(io_err(path))?;
        tmp.as_file().sync_all().map_err(io_err(path))?;
        tmp.persist(path).map_err(|e| CacheError::Io {
            path: path.to_path_buf(),
            source: e.error,
        })?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_err(parent))?;
        }
        Ok(())
    }

    fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, CacheError> {
        match std::fs::read(path) {
            // A corrupt or foreign-format entry is treated as absent: a cache may be lost, never
            // misused.
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    pub fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        let entry: Option<CacheEntry> = self.read_json(&self.entry_path(key))?;
        Ok(entry.filter(|e| &e.key == key))
    }

    /// Record a finished step. The caller must have stored its layer first.
    pub fn put(&self, entry: &CacheEntry) -> Result<(), CacheError> {
        let _lock = self.lock()?;
        let bytes = serde_json::to_vec(entry).expect("cache entries serialise");
        self.write_atomic(&self.entry_path(&entry.key), &bytes)
    }

    /// Mark an entry as used now (for least-recently-used pruning).
    pub fn touch(&self, key: &CacheKey, now: i64) -> Result<(), CacheError> {
        let _lock = self.lock()?;
        if let Some(mut entry) = self.get(key)?
            && now - entry.last_used >= 60
        {
            entry.last_used = now;
            let bytes = serde_json::to_vec(&entry).expect("cache entries serialise");
            self.write_atomic(&self.entry_path(key), &bytes)?;
        }
        Ok(())
    }

    pub fn remove(&self, key: &CacheKey) -> Result<(), CacheError> {
        let _lock = self.lock()?;
        let path = self.entry_path(key);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Remember that `key` was the most recent key built (or hit) at `site`.
    pub fn record_site(&self, site: &str, key: &CacheKey) -> Result<(), CacheError> {
        self.update_site(site, |keys| {
            keys.retain(|k| k != key);
            keys.insert(0, key.clone());
            keys.truncate(SITE_HISTORY);
            true
        })
    }

    /// Append `key` to a site's history unless it is already there or the history is full:
    /// imported cache entries become candidates for explanations without displacing the keys
    /// built here.
    pub fn seed_site(&self, site: &str, key: &CacheKey) -> Result<(), CacheError> {
        self.update_site(site, |keys| {
            if keys.contains(key) || keys.len() >= SITE_HISTORY {
                return false;
            }
            keys.push(key.clone());
            true
        })
    }

    /// Read-modify-write a site's history under the index lock; `change` returns whether it
    /// changed anything worth writing.
    fn update_site(
        &self,
        site: &str,
        change: impl FnOnce(&mut Vec<CacheKey>) -> bool,
    ) -> Result<(), CacheError> {
        let _lock = self.lock()?;
        let path = self.site_path(site);
        let mut keys: Vec<CacheKey> = self
            .read_json::<SiteHistory>(&path)?
            .map(|h| h.keys)
            .unwrap_or_default();
        if !change(&mut keys) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&SiteHistory {
            site: site.to_string(),
            keys,
        })
        .expect("site history serialises");
        self.write_atomic(&path, &bytes)
    }

    /// Earlier entries of a step site, most recent first (entries since pruned are skipped).
    pub fn site_history(&self, site: &str) -> Result<Vec<CacheEntry>, CacheError> {
        let history: Option<SiteHistory> = self.read_json(&self.site_path(site))?;
        let mut entries = Vec::new();
        for key in history.map(|h| h.keys).unwrap_or_default() {
            if let Some(entry) = self.get(&key)? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    /// Store a file-record list under its digest (once).
    pub fn put_files(&self, digest: &str, json: &[u8]) -> Result<(), CacheError> {
        let path = self.files_path(digest);
        if path.exists() {
            return Ok(());
        }
        self.write_atomic(&path, json)
    }

    pub fn get_files(&self, digest: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let path = self.files_path(digest);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Every readable entry.
    pub fn entries(&self) -> Result<Vec<CacheEntry>, CacheError> {
        let dir = self.dir.join("entries");
        let mut out = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let item = item.map_err(io_err(&dir))?;
            if let Some(entry) = self.read_json::<CacheEntry>(&item.path())? {
                out.push(entry);
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Drop entries older than `max_age_secs` (by last use), then the least recently used ones
    /// until the layers they hold total at most `keep_bytes`; then remove file lists no entry
    /// uses. Returns the removed entries (their layers become garbage for the store's GC).
    pub fn prune(
        &self,
        now: i64,
        max_age_secs: Option<i64>,
        keep_bytes: Option<u64>,
    ) -> Result<Vec<CacheEntry>, CacheError> {
        let mut entries = self.entries()?;
        // Most recently used first; among entries used at the same time (one build), parents
        // before their children, so a size limit evicts the ends of chains first.
        entries.sort_by_key(|e| (std::cmp::Reverse(e.last_used), e.depth));
        let mut kept_bytes = 0u64;
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for entry in entries {
            let too_old = max_age_secs.is_some_and(|age| now - entry.last_used > age);
            let over = keep_bytes.is_some_and(|limit| kept_bytes + entry.result.size > limit);
            if too_old || over {
                removed.push(entry);
            } else {
                kept_bytes += entry.result.size;
                kept.push(entry);
            }
        }
        for entry in &removed {
            self.remove(&entry.key)?;
        }
        let used: std::collections::BTreeSet<String> = kept
            .iter()
            .flat_map(|e| e.preimage.files.values().map(|f| f.digest.clone()))
            .collect();
        let files_dir = self.dir.join("files");
        for item in std::fs::read_dir(&files_dir).map_err(io_err(&files_dir))? {
            let item = item.map_err(io_err(&files_dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let digest = name.trim_end_matches(".json");
            if !used.contains(digest) {
                let _ = std::fs::remove_file(item.path());
            }
        }
        Ok(removed)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SiteHistory {
    site: String,
    keys: Vec<CacheKey>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_key::FilesInput;

    fn entry(n: u8, last_used: i64, size: u64) -> CacheEntry {
        let mut preimage = Preimage::new("linux/amd64".into(), String::new(), format!("RUN {n}"));
        preimage.files.insert(
            "context".into(),
            FilesInput {
                digest: format!("files{n}"),
                count: 1,
                bytes: 1,
            },
        );
        CacheEntry {
            key: preimage.key(),
            preimage,
            result: CachedResult {
                diff_id: Some(Digest::from_hex(&format!("{n:064}")).unwrap()),
                size,
            },
            created: last_used,
            last_used,
            depth: 0,
            build_ms: 1,
        }
    }

    /// Entries round-trip through the disk and unknown keys miss.
    #[test]
    fn put_get_remove() {
        let dir = tempfile::tempdir().unwrap();
        let index = CacheIndex::open(dir.path()).unwrap();
        let e = entry(1, 100, 10);
        assert_eq!(index.get(&e.key).unwrap(), None);
        index.put(&e).unwrap();
        assert_eq!(index.get(&e.key).unwrap(), Some(e.clone()));
        index.remove(&e.key).unwrap();
        assert_eq!(index.get(&e.key).unwrap(), None);
    }

    /// A truncated entry file reads as a miss, never as an error or a wrong result.
    #[test]
    fn corrupt_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let index = CacheIndex::open(dir.path()).unwrap();
        let e = entry(1, 100, 10);
        index.put(&e).unwrap();
        let path = index.entry_path(&e.key);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(index.get(&e.key).unwrap(), None);
    }

    /// Site history keeps the most recent keys first, without duplicates.
    #[test]
    fn site_history_order() {
        let dir = tempfile::tempdir().unwrap();
        let index = CacheIndex::open(dir.path()).unwrap();
        let (a, b) = (entry(1, 1, 1), entry(2, 2, 1));
        index.put(&a).unwrap();
        index.put(&b).unwrap();
        index.record_site("Dockerfile#0#1", &a.key).unwrap();
        index.record_site("Dockerfile#0#1", &b.key).unwrap();
        index.record_site("Dockerfile#0#1", &a.key).unwrap();
        let keys: Vec<_> = index
            .site_history("Dockerfile#0#1")
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, vec![a.key, b.key]);
        assert!(index.site_history("other").unwrap().is_empty());
    }

    /// Pruning drops old entries, then least recently used ones over the size limit, and the
    /// file lists only they used.
    #[test]
    fn prune_by_age_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let index = CacheIndex::open(dir.path()).unwrap();
        let (old, mid, new) = (entry(1, 10, 5), entry(2, 900, 5), entry(3, 1000, 5));
        for e in [&old, &mid, &new] {
            index.put(e).unwrap();
            index
                .put_files(&e.preimage.files["context"].digest, b"[]")
                .unwrap();
        }
        let removed = index.prune(1000, Some(500), Some(7)).unwrap();
        let mut removed_keys: Vec<_> = removed.into_iter().map(|e| e.key).collect();
        removed_keys.sort();
        let mut expect = vec![old.key.clone(), mid.key.clone()];
        expect.sort();
        assert_eq!(removed_keys, expect);
        assert!(index.get(&new.key).unwrap().is_some());
        assert!(index.get_files("files3").unwrap().is_some());
        assert!(index.get_files("files1").unwrap().is_none());
    }

    /// Entries of one build share their last use: a size limit keeps the parents and drops
    /// the ends of the chain.
    #[test]
    fn prune_by_size_keeps_parents_of_one_build() {
        let dir = tempfile::tempdir().unwrap();
        let index = CacheIndex::open(dir.path()).unwrap();
        let mut chain: Vec<CacheEntry> = Vec::new();
        for n in 1..=4u8 {
            let mut e = entry(n, 100, 5);
            e.depth = usize::from(n);
            chain.push(e);
        }
        // Stored child first, so the order on disk does not decide.
        for e in chain.iter().rev() {
            index.put(e).unwrap();
        }
        let removed = index.prune(100, None, Some(10)).unwrap();
        let mut removed: Vec<String> = removed.into_iter().map(|e| e.key.to_string()).collect();
        removed.sort();
        let mut expect = vec![chain[2].key.to_string(), chain[3].key.to_string()];
        expect.sort();
        assert_eq!(removed, expect);
        assert!(index.get(&chain[0].key).unwrap().is_some());
        assert!(index.get(&chain[1].key).unwrap().is_some());
    }
}
