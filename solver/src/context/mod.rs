//! The build context: read once up front (honouring `.dockerignore` with Docker's exact
//! semantics), COPY/ADD sources resolved against it with pointed diagnostics, regular files
//! hashed with blake3 in parallel behind a persistent stat cache, and the per-file records
//! cache keys are computed from. Everything after [`BuildContext::load`]`(root,
//! Some(dockerfile))` — COPY resolution, hashing, cache-key records — works on that one walk.
//!
//! | module | owns |
//! |---|---|
//! | `ignore` | `.dockerignore` with moby's exact rules; every rule keeps its line and span |
//! | `glob` | Go `filepath.Match` and moby `patternmatcher` syntax → regexes, with error offsets |
//! | `walk` | one sorted, non-following walk; `lstat` fields of every included entry |
//! | `hash` | parallel blake3 (rayon), the persistent stat cache, change detection |
//! | `sources` | COPY/ADD source resolution and its diagnostics |
//! | `records` | per-file records, their versioned digest, and the diff `explain` prints |
//!
//! Typical use by the solver:
//!
//! ```no_run
//! # use rbuild_solver::context::*;
//! # fn main() -> miette::Result<()> {
//! # let dockerfile = source("Dockerfile", "FROM scratch\nCOPY src /app/\n");
//! let mut ctx = BuildContext::load("ctx".as_ref(), Some("ctx/Dockerfile".as_ref()))?;
//! let mut cache = StatCache::open("/root/cache/context/stat")?;
//! ctx.hash_all(&mut cache)?;              // stat calls only when nothing changed
//! cache.save()?;
//! let sources = [SourceArg::new("src", (18, 3))];
//! let req = CopyRequest { dockerfile: &dockerfile, sources: &sources, excludes: &[], parents: false };
//! let resolved = ctx.resolve(&req)?;     // miette report at the COPY source on failure
//! let records = ctx.records(&resolved, &Overrides::context_default(), &mut cache)?;
//! let key_part = digest(&records);
//! # let _ = key_part; Ok(()) }
//! ```

mod error;
mod glob;
mod hash;
mod ignore;
mod pathutil;
mod records;
mod sources;
#[cfg(test)]
mod tests;
mod walk;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use error::{ContextError, ExcludedHere, Source, SourceError, source};
pub use glob::MobyPattern;
pub use hash::{ContentHash, HashStats, StatCache};
pub use ignore::{DockerIgnore, Rule};
pub use records::{
    Changed, FieldChange, FileRecord, ModeOverride, Overrides, RECORDS_VERSION, RecordKind,
    RecordsDiff, RecordsDigest, canonicalize, diff, digest, encode,
};
pub use sources::{
    CopyItem, CopyRequest, ResolvedSources, RootKind, SourceArg, SourceRoot, is_reserved_name,
};
pub use walk::{Entry, EntryKind, Timestamp, WalkWarning};

/// A build context read once: its ignore rules, every included entry (pre-order, root first),
/// and the content hashes computed so far.
#[derive(Debug, Clone)]
pub struct BuildContext {
    root: PathBuf,
    ignore: DockerIgnore,
    entries: Vec<Entry>,
    index: HashMap<Vec<u8>, usize>,
    /// For each entry, the index just past its subtree (itself + 1 for non-directories).
    subtree_end: Vec<usize>,
    warnings: Vec<WalkWarning>,
    hashes: Vec<Option<ContentHash>>,
}

impl BuildContext {
    /// Reads the context at `root`, with the ignore file chosen as BuildKit does
    /// (`<dockerfile>.dockerignore` first, then `<root>/.dockerignore`).
    pub fn load(root: &Path, dockerfile: Option<&Path>) -> Result<Self, ContextError> {
        let ignore = DockerIgnore::load(root, dockerfile)?;
        Self::with_ignore(root, ignore)
    }

    /// Reads the context at `root` with the given ignore rules.
    pub fn with_ignore(root: &Path, ignore: DockerIgnore) -> Result<Self, ContextError> {
        let walked = walk::walk(root, &ignore)?;
        let entries = walked.entries;
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path_bytes().to_vec(), i))
            .collect();
        let subtree_end = subtree_ends(&entries);
        let hashes = vec![None; entries.len()];
        Ok(BuildContext {
            root: root.to_path_buf(),
            ignore,
            entries,
            index,
            subtree_end,
            warnings: walked.warnings,
            hashes,
        })
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ignore rules in force.
    pub fn ignore(&self) -> &DockerIgnore {
        &self.ignore
    }

    /// Included entries in pre-order; index 0 is the root (empty path).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The index of the entry at a context-relative path (`b""` is the root).
    pub fn index_of(&self, path: &[u8]) -> Option<usize> {
        self.index.get(path).copied()
    }

    /// Paths on disk that are not part of the context (excluded by `.dockerignore`, or
    /// special files the walk skipped), each the top-most such path: what a bind mount of
    /// the context directory must hide so a `RUN` sees exactly the files its cache key covers.
    /// Re-reads the directory tree (names only, no `stat` of included files).
    pub fn hidden_paths(&self) -> Result<Vec<PathBuf>, ContextError> {
        walk::hidden(&self.root, |rel| self.index_of(rel).is_some())
    }

    /// Special files the walk skipped, for the caller to report.
    pub fn warnings(&self) -> &[WalkWarning] {
        &self.warnings
    }

    /// The content hash of entry `i`, once hashed.
    pub fn content_hash(&self, i: usize) -> Option<ContentHash> {
        self.hashes.get(i).copied().flatten()
    }

    /// Direct children of directory entry `dir`.
    pub(crate) fn children(&self, dir: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.subtree_end[dir];
        let mut j = dir + 1;
        std::iter::from_fn(move || {
            if j >= end {
                return None;
            }
            let cur = j;
            j = self.subtree_end[j];
            Some(cur)
        })
    }

    /// Hashes every included regular file (cached ones by stat only) and forgets cache entries
    /// for paths no longer in the context.
    pub fn hash_all(&mut self, cache: &mut StatCache) -> Result<HashStats, ContextError> {
        let all: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].is_file())
            .collect();
        let stats = self.hash_entries(&all, cache)?;
        cache.retain_paths(
            self.entries
                .iter()
                .filter(|e| e.is_file())
                .map(Entry::path_bytes),
        );
        Ok(stats)
    }

    /// Hashes the given regular-file entries that are not hashed yet.
    pub fn hash_entries(
        &mut self,
        which: &[usize],
        cache: &mut StatCache,
    ) -> Result<HashStats, ContextError> {
        let todo: Vec<usize> = which
            .iter()
            .copied()
            .filter(|&i| self.hashes[i].is_none())
            .collect();
        let refs: Vec<&Entry> = todo.iter().map(|&i| &self.entries[i]).collect();
        let (hashes, stats) = hash::hash_files(&self.root, &refs, cache)?;
        for (i, h) in todo.into_iter().zip(hashes) {
            self.hashes[i] = Some(h);
        }
        Ok(stats)
    }

    /// The canonical records of a resolved source set (sorted by destination path, last write
    /// wins), hashing any file not hashed yet and applying `overrides`.
    pub fn records(
        &mut self,
        resolved: &ResolvedSources,
        overrides: &Overrides,
        cache: &mut StatCache,
    ) -> Result<Vec<FileRecord>, ContextError> {
        let files: Vec<usize> = resolved
            .items
            .iter()
            .map(|it| it.entry)
            .filter(|&i| self.entries[i].is_file())
            .collect();
        self.hash_entries(&files, cache)?;
        let mut out = Vec::with_capacity(resolved.items.len());
        for it in &resolved.items {
            let e = &self.entries[it.entry];
            let (kind, size, link_target, content) = match &e.kind {
                EntryKind::File => (RecordKind::File, e.size, None, self.hashes[it.entry]),
                EntryKind::Dir => (RecordKind::Dir, 0, None, None),
                EntryKind::Symlink { target } => {
                    (RecordKind::Symlink, e.size, Some(target.clone()), None)
                }
                EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } => {
                    return Err(ContextError::NotAFile {
                        path: pathutil::display(e.path_bytes()),
                    });
                }
            };
            let mut r = FileRecord {
                path: it.dest.clone(),
                source_path: e.path.clone(),
                kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size,
                link_target,
                content,
            };
            overrides.apply(&mut r);
            out.push(r);
        }
        Ok(canonicalize(out))
    }
}

fn subtree_ends(entries: &[Entry]) -> Vec<usize> {
    // Entries are in pre-order; a stack of open directories closes when a path is not below it.
    let mut end = vec![0; entries.len()];
    let mut stack: Vec<usize> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        while let Some(&top) = stack.last() {
            let top_path = entries[top].path_bytes();
            if pathutil::strip_prefix(e.path_bytes(), top_path).is_some_and(|r| !r.is_empty()) {
                break;
            }
            end[top] = i;
            stack.pop();
        }
        end[i] = i + 1;
        if e.is_dir() {
            stack.push(i);
        }
    }
    for top in stack {
        end[top] = entries.len();
    }
    end
}
