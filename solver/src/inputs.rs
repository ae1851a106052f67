//! What each step reads from outside the image, resolved before anything runs: COPY/ADD
//! sources in the build context (with pointed errors), files downloaded for ADD URLs, and
//! context bind mounts of RUN — for every stage the target needs. Produces the named file sets
//! that enter cache keys and keeps their record lists in the cache index, under their digest, so
//! `explain` can name changed files. ADD URLs are downloaded here and keyed by their content
//! (the sha256 of the bytes, a [`Digest`]), not by the URL.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use miette::Report;
use rbuild_store::Digest;

use crate::cache::CacheIndex;
use crate::cache_key::FilesInput;
use crate::chmod::Chmod;
use crate::context::{
    self, BuildContext, CopyRequest, FileRecord, ModeOverride, Overrides, RecordKind,
    ResolvedSources, SourceArg, StatCache,
};
use crate::explain::FileDiff;
use crate::graph::StageOrder;
use crate::op::{CopyOp, CopySource, FileSource, Op, Plan, RunMount, StepId};

/// A file downloaded for `ADD <url>`. The download is a temporary file in the store, removed
/// when the last clone of this value is dropped (the build is over).
#[derive(Debug, Clone)]
pub struct FetchedUrl {
    pub url: String,
    /// Where the body was saved.
    pub path: PathBuf,
    /// Owns the file at `path`.
    pub file: std::sync::Arc<tempfile::TempPath>,
    /// The sha256 of the body.
    pub digest: Digest,
    pub size: u64,
    /// Unix seconds from `Last-Modified`, the file's mtime in the image.
    pub modified: Option<i64>,
    /// The file name in the image (last URL path segment).
    pub name: String,
}

/// Downloads one URL (`checksum` verified when given), or fails with a message and a help line.
pub type Fetch<'a> =
    dyn Fn(&str, Option<&str>) -> Result<FetchedUrl, (String, Option<String>)> + 'a;

/// A git repository checked out for `ADD <git URL>`: a temporary directory in the store, removed
/// when the last clone of this value is dropped. Keyed like BuildKit's git source: by the
/// resolved commit (with the kept `.git`'s ref, the subdirectory and the options that change
/// the tree), never by the checkout's bytes or times.
#[derive(Debug, Clone)]
pub struct FetchedGit {
    /// The source as written in the Dockerfile.
    pub url: String,
    /// The commit the ref resolved to.
    pub commit: String,
    /// The cache-key text: `COMMIT[.git#REF][:SUBDIR][(skip-submodules)][(mtime=commit)]`.
    pub key: String,
    /// The checked-out tree (the subdirectory when one was asked for).
    pub dir: PathBuf,
    /// Owns the temporary directory holding `dir`.
    pub owner: Arc<tempfile::TempDir>,
}

/// Resolves and checks out one git source (its text as written, and what it asks for), or
/// fails with a message and a help line.
pub type FetchGit<'a> =
    dyn Fn(&str, &crate::gitref::GitRef) -> Result<FetchedGit, (String, Option<String>)> + 'a;

/// What a [`FetchGit`] returns.
type GitFetched = Result<FetchedGit, (String, Option<String>)>;

/// An `ADD <url>` that could not be downloaded or did not match its checksum.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot ADD `{url}`: {message}")]
#[diagnostic(code(rbuild::add::fetch))]
pub struct FetchError {
    pub url: String,
    pub message: String,
    #[help]
    pub help: Option<String>,
    #[source_code]
    pub src: context::Source,
    #[label("this URL")]
    pub span: miette::SourceSpan,
}

/// The outside inputs of one step.
#[derive(Debug, Clone, Default)]
pub struct StepInputs {
    /// COPY/ADD sources from the build context.
    pub copy: Option<ResolvedSources>,
    /// ADD URL sources, in source order.
    pub urls: Vec<FetchedUrl>,
    /// ADD git sources, in source order.
    pub git: Vec<FetchedGit>,
    /// RUN bind mounts from the context, by mount target.
    pub mounts: BTreeMap<String, ResolvedSources>,
}

/// Everything resolved before solving.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub context: Option<Arc<BuildContext>>,
    pub steps: BTreeMap<StepId, StepInputs>,
    /// Named file sets per step, for cache keys.
    pub files: BTreeMap<StepId, BTreeMap<String, FilesInput>>,
    /// For each record list of this build (by digest): destination path → context path. The
    /// stored lists hold destination paths only (the key follows the result), so explanations
    /// use this to name files as they are in the context (`src/b.txt`, not `b.txt`).
    pub context_paths: BTreeMap<String, BTreeMap<PathBuf, PathBuf>>,
}

impl Inputs {
    /// [`files_diff`], naming files by their context path: a path this build copies by its
    /// own source path, another (a removed file) through the closest copied directory above it.
    pub fn files_diff(&self, cache: &CacheIndex, old: &str, new: &str) -> Option<FileDiff> {
        let mut diff = files_diff(cache, old, new)?;
        if let Some(paths) = self.context_paths.get(new) {
            let map = |p: &mut String| *p = context_path(paths, p);
            diff.added.iter_mut().for_each(map);
            diff.removed.iter_mut().for_each(map);
            diff.changed.iter_mut().for_each(|(p, _)| map(p));
        }
        Some(diff)
    }

    fn remember_paths(&mut self, digest: &str, records: &[FileRecord]) {
        self.context_paths
            .entry(digest.to_string())
            .or_insert_with(|| {
                records
                    .iter()
                    .filter(|r| !r.source_path.as_os_str().is_empty())
                    .map(|r| (r.path.clone(), r.source_path.clone()))
                    .collect()
            });
    }
}

/// The context path of `shown` (a destination path as [`files_diff`] shows it, `.` for the
/// copied directory itself), from a destination → context path table.
fn context_path(paths: &BTreeMap<PathBuf, PathBuf>, shown: &str) -> String {
    let dest = if shown == "." {
        PathBuf::new()
    } else {
        PathBuf::from(shown)
    };
    let mut prefix = dest.as_path();
    loop {
        if let Some(source) = paths.get(prefix) {
            let rest = dest.strip_prefix(prefix).unwrap_or(&dest);
            let full = if rest.as_os_str().is_empty() {
                source.clone()
            } else {
                source.join(rest)
            };
            return full.to_string_lossy().into_owned();
        }
        match prefix.parent() {
            Some(parent) => prefix = parent,
            None => return shown.to_string(),
        }
    }
}

/// Whether any needed step reads the build context.
pub fn needs_context(plan: &Plan, order: &StageOrder) -> bool {
    order
        .order
        .iter()
        .any(|&s| plan.stages[s].steps.iter().any(reads_context))
}

/// Whether a step reads the build context: a COPY/ADD of context paths, or a RUN bind mount
/// of it.
pub fn reads_context(step: &crate::op::Step) -> bool {
    match &step.op {
        Op::Copy(c) => {
            c.from == FileSource::Context
                && c.sources
                    .iter()
                    .any(|s| matches!(s, CopySource::Path { .. }))
        }
        Op::Run(r) => r.mounts.iter().any(|m| {
            matches!(
                m,
                RunMount::Bind {
                    from: FileSource::Context,
                    ..
                }
            )
        }),
        _ => false,
    }
}

/// The ownership and mode a COPY gives its files, so keys follow the effective result:
/// `--chown` with numbers sets them; names resolve in the image (the key holds the name and the
/// image content instead), so records use 0:0 as without `--chown`.
fn overrides(copy: &CopyOp) -> Overrides {
    let mut o = Overrides::context_default();
    if let Some(chown) = &copy.chown {
        let (user, group) = chown.split_once(':').unwrap_or((chown, ""));
        if let Ok(uid) = user.parse::<u32>() {
            o.uid = Some(uid);
            o.gid = Some(if group.is_empty() {
                uid
            } else {
                group.parse().unwrap_or(0)
            });
        }
    }
    if let Some(text) = &copy.chmod
        && let Ok(chmod) = Chmod::parse(text)
    {
        o.mode = Some(match chmod {
            Chmod::Octal(m) => ModeOverride::Octal(m),
            sym => ModeOverride::With(Arc::new(move |kind, mode| {
                sym.apply(mode, kind == RecordKind::Dir)
            })),
        });
    }
    o
}

/// Resolve, hash and record every context input of the needed stages.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    plan: &Plan,
    order: &StageOrder,
    context: Option<BuildContext>,
    stat_cache: &mut StatCache,
    cache: &CacheIndex,
    dockerfile: &context::Source,
    fetch: &Fetch<'_>,
    fetch_git: &FetchGit<'_>,
) -> Result<Inputs, Report> {
    let mut all = prepare_all(
        &[(plan, order)],
        context,
        stat_cache,
        cache,
        dockerfile,
        fetch,
        fetch_git,
    )?;
    Ok(all.remove(0))
}

/// [`prepare`] for several plans of one Dockerfile (the platforms of a multi-platform
/// build): one build context, read and hashed once, shared by every plan's inputs.
pub fn prepare_all(
    plans: &[(&Plan, &StageOrder)],
    mut context: Option<BuildContext>,
    stat_cache: &mut StatCache,
    cache: &CacheIndex,
    dockerfile: &context::Source,
    fetch: &Fetch<'_>,
    fetch_git: &FetchGit<'_>,
) -> Result<Vec<Inputs>, Report> {
    let mut out = Vec::with_capacity(plans.len());
    // One checkout per git source (URL and options) for every platform's plan.
    let mut fetched_git: Vec<(crate::gitref::GitRef, FetchedGit)> = Vec::new();
    for (plan, order) in plans {
        out.push(prepare_plan(
            plan,
            order,
            &mut context,
            stat_cache,
            cache,
            dockerfile,
            fetch,
            &mut |url, git| match fetched_git.iter().find(|(g, _)| g == git) {
                Some((_, done)) => Ok(done.clone()),
                None => {
                    let done = fetch_git(url, git)?;
                    fetched_git.push((git.clone(), done.clone()));
                    Ok(done)
                }
            },
        )?);
    }
    let context = context.map(Arc::new);
    for inputs in &mut out {
        inputs.context = context.clone();
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn prepare_plan(
    plan: &Plan,
    order: &StageOrder,
    context: &mut Option<BuildContext>,
    stat_cache: &mut StatCache,
    cache: &CacheIndex,
    dockerfile: &context::Source,
    fetch: &Fetch<'_>,
    fetch_git: &mut dyn FnMut(&str, &crate::gitref::GitRef) -> GitFetched,
) -> Result<Inputs, Report> {
    let mut inputs = Inputs::default();
    for &s in &order.order {
        for step in &plan.stages[s].steps {
            let mut step_inputs = StepInputs::default();
            let mut sets = BTreeMap::new();
            match &step.op {
                Op::Copy(copy) => {
                    let paths: Vec<SourceArg> = copy
                        .sources
                        .iter()
                        .filter_map(|src| match src {
                            CopySource::Path { path, span } => Some(SourceArg::new(
                                path.clone(),
                                (span.start, span.end - span.start),
                            )),
                            _ => None,
                        })
                        .collect();
                    if copy.from == FileSource::Context && !paths.is_empty() {
                        let ctx = context
                            .as_mut()
                            .expect("the build context is loaded when a step reads it");
                        let excludes: Vec<SourceArg> = copy
                            .excludes
                            .iter()
                            .map(|e| {
                                SourceArg::new(
                                    e.clone(),
                                    (
                                        step.site.span.start,
                                        step.site.span.end - step.site.span.start,
                                    ),
                                )
                            })
                            .collect();
                        let resolved = ctx
                            .resolve(&CopyRequest {
                                dockerfile,
                                sources: &paths,
                                excludes: &excludes,
                                parents: copy.parents,
                            })
                            .map_err(Report::new)?;
                        let records = ctx
                            .records(&resolved, &overrides(copy), stat_cache)
                            .map_err(Report::new)?;
                        let set = record_set(cache, &records)?;
                        inputs.remember_paths(&set.digest, &records);
                        sets.insert("context".to_string(), set);
                        step_inputs.copy = Some(resolved);
                    }
                    // A failed download or checkout, reported at its source word.
                    let fetch_error = |url: &str, span: &crate::op::Span| {
                        let src = dockerfile.clone();
                        let url = redact(url);
                        let span = (span.start, span.end - span.start).into();
                        move |(message, help): (String, Option<String>)| {
                            Report::new(FetchError {
                                url,
                                message,
                                help,
                                src,
                                span,
                            })
                        }
                    };
                    for src in &copy.sources {
                        if let CopySource::Url { url, span } = src {
                            let fetched = fetch(url, copy.checksum.as_deref())
                                .map_err(fetch_error(url, span))?;
                            sets.insert(
                                format!("url:{url}"),
                                FilesInput {
                                    digest: fetched.digest.to_string(),
                                    count: 1,
                                    bytes: fetched.size,
                                },
                            );
                            step_inputs.urls.push(fetched);
                        }
                        if let CopySource::Git { url, git, span } = src {
                            let fetched = fetch_git(url, git).map_err(fetch_error(url, span))?;
                            sets.insert(
                                format!("git:{}", redact(url)),
                                FilesInput {
                                    digest: fetched.key.clone(),
                                    count: 1,
                                    bytes: 0,
                                },
                            );
                            step_inputs.git.push(fetched);
                        }
                    }
                }
                Op::Run(run) => {
                    for mount in &run.mounts {
                        let RunMount::Bind {
                            target,
                            from: FileSource::Context,
                            source,
                            ..
                        } = mount
                        else {
                            continue;
                        };
                        let ctx = context
                            .as_mut()
                            .expect("the build context is loaded when a step reads it");
                        let span = (
                            step.site.span.start,
                            step.site.span.end - step.site.span.start,
                        );
                        let resolved = ctx
                            .resolve(&CopyRequest {
                                dockerfile,
                                sources: &[SourceArg::new(source.clone(), span)],
                                excludes: &[],
                                parents: false,
                            })
                            .map_err(Report::new)?;
                        let records = ctx
                            .records(&resolved, &Overrides::default(), stat_cache)
                            .map_err(Report::new)?;
                        let set = record_set(cache, &records)?;
                        inputs.remember_paths(&set.digest, &records);
                        sets.insert(format!("mount:{target}"), set);
                        step_inputs.mounts.insert(target.clone(), resolved);
                    }
                }
                Op::Meta | Op::Mkdir(_) => {}
            }
            if !sets.is_empty() {
                inputs.files.insert(step.id, sets);
            }
            if step_inputs.copy.is_some()
                || !step_inputs.urls.is_empty()
                || !step_inputs.git.is_empty()
                || !step_inputs.mounts.is_empty()
            {
                inputs.steps.insert(step.id, step_inputs);
            }
        }
    }
    Ok(inputs)
}

/// A URL without its password, for messages and history (CVE-2023-26054 class).
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split(':').next().unwrap_or("");
                    format!("{scheme}://{user}:xxxxx@{host}{path}")
                }
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// The key entry of a record list, storing the records (once per digest) for explanations.
fn record_set(cache: &CacheIndex, records: &[FileRecord]) -> Result<FilesInput, Report> {
    let digest = hex::encode(context::digest(records).0);
    let mut encoded = Vec::new();
    context::encode(records, &mut encoded);
    cache.put_files(&digest, &encoded).map_err(Report::new)?;
    Ok(FilesInput {
        digest,
        count: records.len() as u64,
        bytes: records
            .iter()
            .filter(|r| r.kind == RecordKind::File)
            .map(|r| r.size)
            .sum(),
    })
}

/// The per-file differences between two stored record lists, for `explain`.
pub fn files_diff(cache: &CacheIndex, old: &str, new: &str) -> Option<FileDiff> {
    let load = |digest: &str| -> Option<Vec<FileRecord>> {
        decode_records(&cache.get_files(digest).ok()??)
    };
    let (old, new) = (load(old)?, load(new)?);
    let diff = context::diff(&old, &new);
    let show = |p: &std::path::Path| {
        let s = p.to_string_lossy();
        if s.is_empty() {
            ".".to_string()
        } else {
            s.into_owned()
        }
    };
    Some(FileDiff {
        added: diff.added.iter().map(|r| show(&r.path)).collect(),
        removed: diff.removed.iter().map(|r| show(&r.path)).collect(),
        changed: diff
            .changed
            .iter()
            .map(|c| {
                (
                    show(&c.path),
                    c.fields.iter().map(ToString::to_string).collect(),
                )
            })
            .collect(),
        unknown: false,
    })
}

/// Read back [`context::encode`]'s format (v1); `None` for anything else. The records only
/// serve explanations, so unknown versions are simply not explained file by file.
fn decode_records(bytes: &[u8]) -> Option<Vec<FileRecord>> {
    use std::os::unix::ffi::OsStrExt;
    fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (a, b) = r.split_at_checked(n)?;
        *r = b;
        Some(a)
    }
    fn u32_(r: &mut &[u8]) -> Option<u32> {
        Some(u32::from_le_bytes(take(r, 4)?.try_into().ok()?))
    }
    fn u64_(r: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(take(r, 8)?.try_into().ok()?))
    }
    let mut r = bytes.strip_prefix(b"rbuild.context.records\0".as_slice())?;
    if u32_(&mut r)? != context::RECORDS_VERSION {
        return None;
    }
    let count = u64_(&mut r)?;
    let mut out = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        let len = u32_(&mut r)? as usize;
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(take(&mut r, len)?));
        let kind = match take(&mut r, 1)?[0] {
            1 => RecordKind::File,
            2 => RecordKind::Dir,
            3 => RecordKind::Symlink,
            _ => return None,
        };
        let (mode, uid, gid, size) = (u32_(&mut r)?, u32_(&mut r)?, u32_(&mut r)?, u64_(&mut r)?);
        let link_target = match take(&mut r, 1)?[0] {
            0 => None,
            _ => {
                let len = u32_(&mut r)? as usize;
                Some(PathBuf::from(std::ffi::OsStr::from_bytes(take(
                    &mut r, len,
                )?)))
            }
        };
        let content = match take(&mut r, 1)?[0] {
            0 => None,
            _ => Some(take(&mut r, 32)?.try_into().ok()?),
        };
        out.push(FileRecord {
            source_path: path.clone(),
            path,
            kind,
            mode,
            uid,
            gid,
            size,
            link_target,
            content,
        });
    }
    r.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Passwords in URLs never reach messages.
    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("https://u:secret@h/x"), "https://u:xxxxx@h/x");
        assert_eq!(redact("https://h/x@y"), "https://h/x@y");
        assert_eq!(redact("https://h/x"), "https://h/x");
    }

    /// Destination paths map to context paths: exactly, or below the closest copied
    /// directory (a removed file), or stay as they are when nothing maps them.
    #[test]
    fn context_paths_of_destination_paths() {
        let paths: BTreeMap<PathBuf, PathBuf> = [
            ("", "src"),
            ("b.txt", "src/b.txt"),
            ("sub", "src/sub"),
            ("renamed", "other/x"),
        ]
        .into_iter()
        .map(|(d, s)| (PathBuf::from(d), PathBuf::from(s)))
        .collect();
        assert_eq!(context_path(&paths, "b.txt"), "src/b.txt");
        assert_eq!(context_path(&paths, "."), "src");
        assert_eq!(context_path(&paths, "gone.txt"), "src/gone.txt");
        assert_eq!(context_path(&paths, "sub/deep/f"), "src/sub/deep/f");
        assert_eq!(context_path(&paths, "renamed"), "other/x");
        let files_only: BTreeMap<PathBuf, PathBuf> =
            [(PathBuf::from("a.txt"), PathBuf::from("dir/a.txt"))].into();
        assert_eq!(context_path(&files_only, "c.txt"), "c.txt");
    }

    /// Stored records decode back to what was encoded.
    #[test]
    fn records_round_trip() {
        let records = vec![
            FileRecord {
                path: "a".into(),
                source_path: "a".into(),
                kind: RecordKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 3,
                link_target: None,
                content: Some([7; 32]),
            },
            FileRecord {
                path: "l".into(),
                source_path: "l".into(),
                kind: RecordKind::Symlink,
                mode: 0o777,
                uid: 1,
                gid: 2,
                size: 1,
                link_target: Some("a".into()),
                content: None,
            },
        ];
        let mut bytes = Vec::new();
        context::encode(&records, &mut bytes);
        assert_eq!(decode_records(&bytes), Some(records));
        assert_eq!(decode_records(&bytes[..bytes.len() - 1]), None);
    }
}
