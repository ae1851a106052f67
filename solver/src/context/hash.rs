//! Content hashing of context files: blake3, in parallel across cores (rayon, biggest files
//! first), with a persistent stat cache (path, inode, size, mtime, ctime → hash, like git's
//! index, including its racy-clean rule) so an unchanged context is re-checked with the walk's
//! `lstat`s plus one read of the cache file.
//!
//! Files are opened beneath the context root with `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`
//! and `O_NOFOLLOW|O_NONBLOCK`, and read through that descriptor. No mmap: blake3's mmap helper
//! re-opens the file by path, which would undo the descriptor checks (and the workspace denies
//! `unsafe`); a file of 1 MiB or more is read in 1 MiB blocks, each hashed with `update_rayon`.
//! A file whose inode, size, mtime or ctime differ between the walk, the open and the end of the
//! read is `rbuild::context::file_changed`, naming it.
//!
//! The stat cache on disk: `RBSTATC1`, sorted records and a blake3 trailer; a corrupt file is
//! discarded. It is written to a temporary file, fsynced and renamed. An entry whose mtime is
//! not older than the cache file's own mtime is racily clean and is re-hashed next time. The
//! caller chooses where it lives (the CLI: `Layout::context_stat_cache`, `$ROOT/cache/context/`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::error::ContextError;
use super::pathutil;
use super::walk::Entry;

/// A blake3 content hash.
pub type ContentHash = [u8; 32];

const MAGIC: &[u8; 8] = b"RBSTATC1";
/// Files at least this large are hashed block by block with `update_rayon`.
const BIG_FILE: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CacheEntry {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    hash: ContentHash,
}

/// The persistent stat cache of one build context. Load it with [`StatCache::open`], pass it
/// to hashing, then [`StatCache::save`] it (temp file + rename, so a crash leaves either the
/// old or the new file).
#[derive(Debug)]
pub struct StatCache {
    path: PathBuf,
    /// When the loaded file was written, in the filesystem's clock (its mtime), ns.
    written_ns: i128,
    entries: HashMap<Vec<u8>, CacheEntry>,
    dirty: bool,
}

/// Counters from one hashing pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashStats {
    /// Files whose hash came from the stat cache.
    pub cached: usize,
    /// Files read and hashed.
    pub hashed: usize,
    /// Bytes read and hashed.
    pub bytes_hashed: u64,
}

impl StatCache {
    /// A cache that is not backed by a file (nothing is remembered).
    pub fn in_memory() -> Self {
        StatCache {
            path: PathBuf::new(),
            written_ns: 0,
            entries: HashMap::new(),
            dirty: false,
        }
    }

    /// Loads the cache at `path`. A missing file gives an empty cache; a corrupt or
    /// foreign-version file is discarded with a warning (the cache is only an accelerator).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, ContextError> {
        let path = path.into();
        let mut cache = StatCache {
            path,
            ..Self::in_memory()
        };
        let read = || -> std::io::Result<(Vec<u8>, i128)> {
            let mut f = std::fs::File::open(&cache.path)?;
            let st = rustix::fs::fstat(&f)?;
            let mut bytes = Vec::with_capacity(st.st_size as usize);
            f.read_to_end(&mut bytes)?;
            let written = i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec);
            Ok((bytes, written))
        };
        let (bytes, written_ns) = match read() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cache),
            Err(e) => return Err(ContextError::io(cache.path.display(), e)),
        };
        match decode(&bytes) {
            Some(entries) => {
                cache.written_ns = written_ns;
                cache.entries = entries;
            }
            None => {
                tracing::warn!(path = %cache.path.display(), "discarding unreadable stat cache");
                cache.dirty = true;
            }
        }
        Ok(cache)
    }

    /// Number of remembered files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The remembered hash of `entry`, if its stat fields are unchanged and it was not
    /// racily clean (modified in the same clock tick the cache was written, or later).
    pub fn lookup(&self, entry: &Entry) -> Option<ContentHash> {
        let c = self.entries.get(entry.path_bytes())?;
        let fresh = c.ino == entry.ino
            && c.size == entry.size
            && c.mtime_ns == entry.mtime.as_nanos()
            && c.ctime_ns == entry.ctime.as_nanos();
        // Git's rule: only the mtime decides raciness (ctime is compared for freshness).
        let racy = c.mtime_ns >= self.written_ns;
        (fresh && !racy).then_some(c.hash)
    }

    fn insert(&mut self, entry: &Entry, hash: ContentHash) {
        let new = CacheEntry {
            ino: entry.ino,
            size: entry.size,
            mtime_ns: entry.mtime.as_nanos(),
            ctime_ns: entry.ctime.as_nanos(),
            hash,
        };
        if self.entries.insert(entry.path_bytes().to_vec(), new) != Some(new) {
            self.dirty = true;
        }
    }

    /// Forgets every path not in `keep` (files gone from the context).
    pub fn retain_paths<'a>(&mut self, keep: impl IntoIterator<Item = &'a [u8]>) {
        let keep: std::collections::HashSet<&[u8]> = keep.into_iter().collect();
        let before = self.entries.len();
        self.entries.retain(|k, _| keep.contains(k.as_slice()));
        self.dirty |= self.entries.len() != before;
    }

    /// Writes the cache back if anything changed or an entry is still racy. The file is
    /// written to a temporary sibling, fsynced and renamed over the old one; its own mtime
    /// becomes the write time used for the racy-clean rule next time.
    pub fn save(&mut self) -> Result<(), ContextError> {
        if self.path.as_os_str().is_empty() {
            return Ok(());
        }
        let racy = self.entries.values().any(|c| c.mtime_ns >= self.written_ns);
        if !self.dirty && !racy {
            return Ok(());
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs_err::create_dir_all(dir).map_err(|e| ContextError::io(dir.display(), e))?;
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        let body = encode(&self.entries);
        let write = || -> std::io::Result<i128> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            let st = rustix::fs::fstat(&f)?;
            Ok(i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec))
        };
        let written_ns = match write() {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(ContextError::io(tmp.display(), e));
            }
        };
        std::fs::rename(&tmp, &self.path).map_err(|e| ContextError::io(self.path.display(), e))?;
        // Entries not older than the file's own mtime stay racy: they are re-hashed next time.
        self.written_ns = written_ns;
        self.dirty = false;
        Ok(())
    }
}

/// Encoding: `RBSTATC1`, entry count u64 LE, then per entry (path len u32, path, ino u64,
/// size u64, mtime_ns i128, ctime_ns i128, hash[32]) sorted by path, then a blake3 of all
/// preceding bytes. The write time is not stored: it is the file's own mtime.
fn encode(entries: &HashMap<Vec<u8>, CacheEntry>) -> Vec<u8> {
    let mut keys: Vec<&Vec<u8>> = entries.keys().collect();
    keys.sort();
    let mut out = Vec::with_capacity(16 + entries.len() * 128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for k in keys {
        let c = &entries[k];
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&c.ino.to_le_bytes());
        out.extend_from_slice(&c.size.to_le_bytes());
        out.extend_from_slice(&c.mtime_ns.to_le_bytes());
        out.extend_from_slice(&c.ctime_ns.to_le_bytes());
        out.extend_from_slice(&c.hash);
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<HashMap<Vec<u8>, CacheEntry>> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != sum || !body.starts_with(MAGIC) {
        return None;
    }
    let mut r = &body[8..];
    fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (a, b) = r.split_at_checked(n)?;
        *r = b;
        Some(a)
    }
    let u64_ =
        |r: &mut &[u8]| take(r, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let i128_ =
        |r: &mut &[u8]| take(r, 16).map(|b| i128::from_le_bytes(b.try_into().unwrap_or([0; 16])));
    let n = u64_(&mut r)?;
    let mut entries = HashMap::with_capacity(n.min(1 << 20) as usize);
    for _ in 0..n {
        let len = u32::from_le_bytes(take(&mut r, 4)?.try_into().ok()?) as usize;
        let key = take(&mut r, len)?.to_vec();
        let ino = u64_(&mut r)?;
        let size = u64_(&mut r)?;
        let mtime_ns = i128_(&mut r)?;
        let ctime_ns = i128_(&mut r)?;
        let hash: ContentHash = take(&mut r, 32)?.try_into().ok()?;
        entries.insert(
            key,
            CacheEntry {
                ino,
                size,
                mtime_ns,
                ctime_ns,
                hash,
            },
        );
    }
    if !r.is_empty() {
        return None;
    }
    Some(entries)
}

/// Hashes `files` (regular-file entries of the context at `root`) in parallel, taking
/// unchanged files from `cache` and recording new hashes in it. Returns the hashes in the
/// order of `files`, plus counters.
pub fn hash_files(
    root: &Path,
    files: &[&Entry],
    cache: &mut StatCache,
) -> Result<(Vec<ContentHash>, HashStats), ContextError> {
    let mut out: Vec<Option<ContentHash>> = Vec::with_capacity(files.len());
    let mut todo = Vec::new();
    let mut stats = HashStats::default();
    for (i, e) in files.iter().enumerate() {
        if !e.is_file() {
            return Err(ContextError::NotAFile {
                path: pathutil::display(e.path_bytes()),
            });
        }
        let hit = cache.lookup(e);
        if hit.is_some() {
            stats.cached += 1;
        } else {
            todo.push(i);
        }
        out.push(hit);
    }
    if !todo.is_empty() {
        let root_fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ContextError::io(root.display(), e.into()))?;
        // Big files first so the long jobs do not end up alone at the tail.
        todo.sort_by_key(|&i| std::cmp::Reverse(files[i].size));
        let results: Vec<(usize, Result<ContentHash, ContextError>)> = todo
            .par_iter()
            .map(|&i| (i, hash_one(&root_fd, root, files[i])))
            .collect();
        for (i, r) in results {
            let h = r?;
            stats.hashed += 1;
            stats.bytes_hashed += files[i].size;
            cache.insert(files[i], h);
            out[i] = Some(h);
        }
    }
    Ok((
        out.into_iter().map(|h| h.unwrap_or_default()).collect(),
        stats,
    ))
}

fn open_beneath(root_fd: &OwnedFd, root: &Path, rel: &Path) -> std::io::Result<std::fs::File> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(root_fd, rel, flags, Mode::empty(), resolve) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        // Kernels before 5.6: fall back to a plain open that still refuses a final symlink.
        Err(rustix::io::Errno::NOSYS) => {
            let fd = rustix::fs::open(root.join(rel), flags, Mode::empty())?;
            Ok(std::fs::File::from(fd))
        }
        Err(e) => Err(e.into()),
    }
}

fn stat_matches(entry: &Entry, st: &rustix::fs::Stat) -> Result<(), String> {
    let mtime = i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec);
    let ctime = i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec);
    if st.st_ino != entry.ino {
        return Err("inode changed".into());
    }
    if st.st_size as u64 != entry.size {
        return Err(format!("size {} → {}", entry.size, st.st_size));
    }
    if mtime != entry.mtime.as_nanos() {
        return Err("mtime changed".into());
    }
    if ctime != entry.ctime.as_nanos() {
        return Err("ctime changed".into());
    }
    Ok(())
}

fn hash_one(root_fd: &OwnedFd, root: &Path, entry: &Entry) -> Result<ContentHash, ContextError> {
    let shown = || pathutil::display(entry.path_bytes());
    let changed = |detail: String| ContextError::FileChanged {
        path: shown(),
        detail,
    };
    let mut f = open_beneath(root_fd, root, &entry.path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound
            || e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
        {
            changed("it was removed or replaced".into())
        } else {
            ContextError::io(shown(), e)
        }
    })?;
    let before = rustix::fs::fstat(&f).map_err(|e| ContextError::io(shown(), e.into()))?;
    stat_matches(entry, &before).map_err(changed)?;
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| -> Result<(), ContextError> {
        let mut buf = buf.borrow_mut();
        let want = if entry.size >= BIG_FILE {
            1 << 20
        } else {
            64 << 10
        };
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let big = entry.size >= BIG_FILE;
        loop {
            let n = match f.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ContextError::io(shown(), e)),
            };
            total += n as u64;
            if big {
                hasher.update_rayon(&buf[..n]);
            } else {
                hasher.update(&buf[..n]);
            }
        }
        Ok(())
    })?;
    let after = rustix::fs::fstat(&f).map_err(|e| ContextError::io(shown(), e.into()))?;
    stat_matches(entry, &after).map_err(changed)?;
    if total != entry.size {
        return Err(changed(format!("read {total} bytes of {}", entry.size)));
    }
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ignore::DockerIgnore;
    use crate::context::walk::walk;

    fn files(root: &Path) -> Vec<Entry> {
        walk(root, &DockerIgnore::empty())
            .unwrap()
            .entries
            .into_iter()
            .filter(Entry::is_file)
            .collect()
    }

    /// Hashes equal blake3 of the content, small and big files alike.
    #[test]
    fn hashes_are_blake3_of_content() {
        let t = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(t.path().join("big"), &big).unwrap();
        std::fs::write(t.path().join("small"), b"hello").unwrap();
        std::fs::write(t.path().join("empty"), b"").unwrap();
        let f = files(t.path());
        let refs: Vec<&Entry> = f.iter().collect();
        let (h, stats) = hash_files(t.path(), &refs, &mut StatCache::in_memory()).unwrap();
        assert_eq!(h[0], *blake3::hash(&big).as_bytes());
        assert_eq!(h[1], *blake3::hash(b"").as_bytes());
        assert_eq!(h[2], *blake3::hash(b"hello").as_bytes());
        assert_eq!(stats.hashed, 3);
    }

    /// A saved cache answers from stat alone next time; a changed file is re-hashed.
    #[test]
    fn stat_cache_round_trip_and_invalidation() {
        let t = tempfile::tempdir().unwrap();
        let ctx = t.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        std::fs::write(ctx.join("a"), b"one").unwrap();
        std::fs::write(ctx.join("b"), b"two").unwrap();
        // Make the files older than the cache write so they are not racily clean.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(10);
        for n in ["a", "b"] {
            std::fs::File::options()
                .write(true)
                .open(ctx.join(n))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let cache_path = t.path().join("cache/stat");
        let mut c = StatCache::open(&cache_path).unwrap();
        let f = files(&ctx);
        let refs: Vec<&Entry> = f.iter().collect();
        let (_, s1) = hash_files(&ctx, &refs, &mut c).unwrap();
        assert_eq!((s1.cached, s1.hashed), (0, 2));
        c.save().unwrap();

        let mut c = StatCache::open(&cache_path).unwrap();
        assert_eq!(c.len(), 2);
        let (h2, s2) = hash_files(&ctx, &refs, &mut c).unwrap();
        assert_eq!((s2.cached, s2.hashed), (2, 0));
        assert_eq!(h2[0], *blake3::hash(b"one").as_bytes());

        std::fs::write(ctx.join("b"), b"TWO").unwrap();
        let f = files(&ctx);
        let refs: Vec<&Entry> = f.iter().collect();
        let (h3, s3) = hash_files(&ctx, &refs, &mut c).unwrap();
        assert_eq!((s3.cached, s3.hashed), (1, 1));
        assert_eq!(h3[1], *blake3::hash(b"TWO").as_bytes());
    }

    /// Racy-git rule: a file modified at or after the cache write time is re-hashed.
    #[test]
    fn racily_clean_entries_are_rehashed() {
        let t = tempfile::tempdir().unwrap();
        let ctx = t.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        std::fs::write(ctx.join("a"), b"one").unwrap();
        let cache_path = t.path().join("stat");
        let mut c = StatCache::open(&cache_path).unwrap();
        let f = files(&ctx);
        let refs: Vec<&Entry> = f.iter().collect();
        hash_files(&ctx, &refs, &mut c).unwrap();
        c.save().unwrap();
        // Pretend the file's mtime is in the future relative to the cache write.
        let future = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(ctx.join("a"))
            .unwrap()
            .set_modified(future)
            .unwrap();
        let f = files(&ctx);
        let refs: Vec<&Entry> = f.iter().collect();
        hash_files(&ctx, &refs, &mut c).unwrap();
        c.save().unwrap();
        let mut c = StatCache::open(&cache_path).unwrap();
        let (_, s) = hash_files(&ctx, &refs, &mut c).unwrap();
        assert_eq!((s.cached, s.hashed), (0, 1), "racy entry must be re-hashed");
    }

    /// A corrupt cache file is discarded, not trusted.
    #[test]
    fn corrupt_cache_is_discarded() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("stat");
        std::fs::write(
            &p,
            b"RBSTATC1 garbage that fails the checksum......................",
        )
        .unwrap();
        let c = StatCache::open(&p).unwrap();
        assert!(c.is_empty());
    }

    /// A file that differs from its walked stat (here: grown) is an error naming it.
    #[test]
    fn changed_file_is_detected() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"abc").unwrap();
        let f = files(t.path());
        std::fs::write(t.path().join("f"), b"abcdef").unwrap();
        let refs: Vec<&Entry> = f.iter().collect();
        let e = hash_files(t.path(), &refs, &mut StatCache::in_memory()).unwrap_err();
        match e {
            ContextError::FileChanged { path, .. } => assert_eq!(path, "f"),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A regular file replaced by a symlink after the walk is never followed.
    #[test]
    fn replaced_by_symlink_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"abc").unwrap();
        let f = files(t.path());
        std::fs::remove_file(t.path().join("f")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", t.path().join("f")).unwrap();
        let refs: Vec<&Entry> = f.iter().collect();
        let e = hash_files(t.path(), &refs, &mut StatCache::in_memory()).unwrap_err();
        assert!(matches!(e, ContextError::FileChanged { .. }), "{e:?}");
    }
}
