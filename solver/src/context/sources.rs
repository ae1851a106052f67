//! COPY/ADD source resolution against the walked context (`BuildContext::resolve`), with
//! BuildKit's dockerfile2llb rules (`FollowSymlinks`, `CopyDirContentsOnly`, `AllowWildcard`,
//! `AllowEmptyWildcard` all true). Every failure is a [`SourceError`] labelled at the source's
//! span.
//!
//! - Sources are joined onto `/` and cleaned, so `../x` and `/x` both mean `x`; a trailing `/`
//!   is ignored. Wildcards follow Go `filepath.Match`, one path component at a time.
//! - A directory source means its contents. The item with destination path `""` is the
//!   directory itself; the executor only takes its mtime (an existing destination directory
//!   keeps its mode and owner; a missing one is created as a destination parent).
//! - A symlink named as a source, or met on the way to one, is followed only while it stays
//!   inside the context; an absolute target or a `..` escape is refused, naming the link
//!   (stricter than BuildKit, which clamps such targets to the root). More than 40 links is a
//!   loop. Symlinks inside a copied directory are copied as symlinks.
//! - `--exclude` uses moby patterns relative to each copied directory; a file source (named or
//!   matched by a wildcard) is never excluded, as in BuildKit master (the recorded conformance
//!   case `copy-exclude` is the reference, not BuildKit's docs).
//! - `--parents` keeps the path below an optional `/./` pivot and adds the parent directories
//!   on the way.
//! - A wildcard that matches nothing copies nothing, even when every source is such a wildcard,
//!   so `COPY yarn.lock* ./` is a no-op without a lock file. A literal missing source is an
//!   error.
//!
//! A missing source is reported with the case that applies: excluded by `.dockerignore:N`
//! (`pattern`, with a related label on that line, or an explanation of the pruned parent
//! directory); outside the context (`../x` means `x`, which does not exist); a special file;
//! or not found, with "did you mean `src/`?" from strsim over the context's paths.

use std::ops::Range;
use std::path::PathBuf;

use miette::SourceSpan;

use super::BuildContext;
use super::error::{Source, SourceError};
use super::glob::{self, compile_match};
use super::ignore::DockerIgnore;
use super::pathutil::{self, clean, clean_in_root, climbs_out, file_name, join};
use super::walk::EntryKind;

/// Maximum number of symlinks followed while resolving one source (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// A word from the Dockerfile (a source path or an `--exclude` value), after variable
/// expansion, with its span in the Dockerfile text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceArg {
    /// The text.
    pub text: String,
    /// Its span in the Dockerfile.
    pub span: SourceSpan,
}

impl SourceArg {
    /// A word and its span.
    pub fn new(text: impl Into<String>, span: impl Into<SourceSpan>) -> Self {
        SourceArg {
            text: text.into(),
            span: span.into(),
        }
    }
}

/// What one COPY/ADD asks of the build context.
#[derive(Debug, Clone, Copy)]
pub struct CopyRequest<'a> {
    /// The Dockerfile, for labelling errors.
    pub dockerfile: &'a Source,
    /// The sources in order (not the destination).
    pub sources: &'a [SourceArg],
    /// `--exclude` patterns.
    pub excludes: &'a [SourceArg],
    /// `--parents`: keep each source's path (below an optional `/./` pivot) in the destination.
    pub parents: bool,
}

/// Whether a matched source is a single file (copied under its own name, or renamed by the
/// destination) or a directory (whose contents are merged into the destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// A regular file (possibly reached through symlinks).
    File,
    /// A directory.
    Dir,
}

/// One thing a source named: a file or a directory of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRoot {
    /// Index of the source argument it came from.
    pub source: usize,
    /// The path as named (wildcards expanded, symlinks not yet followed), context-relative.
    pub named: PathBuf,
    /// Index into [`BuildContext::entries`] of what it resolved to (symlinks followed).
    pub entry: usize,
    /// File or directory.
    pub kind: RootKind,
    /// Its items in [`ResolvedSources::items`].
    pub items: Range<usize>,
}

/// One entry to copy and where it lands relative to the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyItem {
    /// Index into [`BuildContext::entries`].
    pub entry: usize,
    /// Destination-relative path: for a file root its name; for a directory root the path
    /// inside it (`""` is the directory itself, whose metadata BuildKit applies to the
    /// destination); with `--parents` the path below the pivot.
    pub dest: PathBuf,
    /// Index into [`ResolvedSources::roots`].
    pub root: usize,
}

/// The resolved sources of one COPY/ADD, in source order then walk order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedSources {
    /// Matched files and directories.
    pub roots: Vec<SourceRoot>,
    /// Everything to copy.
    pub items: Vec<CopyItem>,
    /// More than one source, or a wildcard: Docker then requires a destination ending in `/`
    /// (the caller checks the destination).
    pub multiple: bool,
}

/// True for names OCI layers reserve for whiteouts (`.wh.` prefix), which can never be copied.
pub fn is_reserved_name(name: &[u8]) -> bool {
    name.starts_with(b".wh.")
}

/// Why a path could not be resolved inside the walked context.
enum Miss {
    /// Nothing at `at` (context-relative, after following links so far).
    Missing { at: Vec<u8> },
    /// A symlink leaves the context.
    Escape { link: Vec<u8>, target: Vec<u8> },
    /// Too many links.
    Loop { link: Vec<u8> },
    /// A non-directory used as a directory.
    NotDir { at: Vec<u8> },
}

impl BuildContext {
    /// Resolves a context-relative, cleaned path (the empty path is the root), following
    /// symlinks only while they stay inside the context.
    fn resolve_path(&self, path: &[u8]) -> Result<usize, Miss> {
        let mut pending: Vec<Vec<u8>> = split(path).rev().map(<[u8]>::to_vec).collect();
        let mut cur: Vec<u8> = Vec::new();
        let mut links = 0;
        while let Some(comp) = pending.pop() {
            let cand = join(&cur, &comp);
            let Some(i) = self.index_of(&cand) else {
                return Err(Miss::Missing { at: cand });
            };
            match &self.entries[i].kind {
                EntryKind::Symlink { target } => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Miss::Loop { link: cand });
                    }
                    let t = pathutil::bytes(target);
                    let joined = join(&cur, t);
                    if t.starts_with(b"/") || climbs_out(&joined) {
                        return Err(Miss::Escape {
                            link: cand,
                            target: t.to_vec(),
                        });
                    }
                    let resolved = clean(&joined);
                    pending.extend(split(&resolved).rev().map(<[u8]>::to_vec));
                    cur.clear();
                }
                EntryKind::Dir => cur = cand,
                _ if !pending.is_empty() => return Err(Miss::NotDir { at: cand }),
                _ => cur = cand,
            }
        }
        self.index_of(&cur).ok_or(Miss::Missing { at: cur })
    }

    /// Expands wildcards in a cleaned source into the matching paths (as named, sorted).
    fn expand(&self, cleaned: &[u8]) -> Result<Vec<Vec<u8>>, (Miss, Option<glob::GlobError>)> {
        let mut cands: Vec<Vec<u8>> = vec![Vec::new()];
        for comp in split(cleaned) {
            let mut next = Vec::new();
            if glob::has_meta(comp) {
                let re = compile_match(comp).map_err(|e| {
                    (
                        Miss::Missing {
                            at: cleaned.to_vec(),
                        },
                        Some(e),
                    )
                })?;
                for c in &cands {
                    let dir = match self.resolve_path(c) {
                        Ok(i) if self.entries[i].is_dir() => i,
                        Ok(_) | Err(Miss::Missing { .. }) | Err(Miss::NotDir { .. }) => continue,
                        Err(m) => return Err((m, None)),
                    };
                    for child in self.children(dir) {
                        let name = file_name(self.entries[child].path_bytes());
                        if re.is_match(&String::from_utf8_lossy(name)) {
                            next.push(join(c, name));
                        }
                    }
                }
            } else {
                next.extend(cands.iter().map(|c| join(c, comp)));
            }
            cands = next;
        }
        cands.sort();
        cands.dedup();
        Ok(cands)
    }

    /// Expands a `--parents` source the way BuildKit matches it: as an include pattern with
    /// moby's `patternmatcher` rules, so `**` spans any number of directories. A match brings
    /// its subtree along, so only the top-most matches are returned (sorted, as walked).
    /// Matching walks the context entries below the pattern's literal leading directories;
    /// symlinked directories are not entered (the context walk does not follow them).
    fn expand_parents(
        &self,
        cleaned: &[u8],
    ) -> Result<Vec<Vec<u8>>, (Miss, Option<glob::GlobError>)> {
        let pattern = glob::MobyPattern::new(cleaned).map_err(|e| {
            (
                Miss::Missing {
                    at: cleaned.to_vec(),
                },
                Some(e),
            )
        })?;
        let mut prefix: Vec<u8> = Vec::new();
        for comp in split(cleaned) {
            if glob::has_meta(comp) {
                break;
            }
            prefix = join(&prefix, comp);
        }
        let Some(top) = self.index_of(&prefix).filter(|&i| self.entries[i].is_dir()) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        let mut j = top + 1;
        while j < self.subtree_end[top] {
            let path = self.entries[j].path_bytes();
            if pattern.matches(path) {
                found.push(path.to_vec());
                j = self.subtree_end[j].max(j + 1);
            } else {
                j += 1;
            }
        }
        Ok(found)
    }

    /// Resolves the sources of one COPY/ADD (see the module docs for the rules).
    ///
    /// A wildcard that matches nothing adds nothing, even when no source of the instruction
    /// matched anything: dockerfile2llb sets `AllowEmptyWildcard` on every copy, which makes
    /// the `COPY package.json yarn.loc[k] ./` idiom work (and `COPY yarn.lock* ./` a no-op
    /// without a lock file). A literal source that is missing is an error.
    pub fn resolve(&self, req: &CopyRequest<'_>) -> Result<ResolvedSources, SourceError> {
        let excludes = self.compile_excludes(req)?;
        let mut out = ResolvedSources {
            multiple: req.sources.len() > 1,
            ..ResolvedSources::default()
        };
        for (si, arg) in req.sources.iter().enumerate() {
            let raw = arg.text.as_bytes();
            let (pivot, cleaned) = if req.parents {
                match find_pivot(raw) {
                    Some(at) => {
                        let pivot = clean_in_root(&raw[..at]);
                        let rest = clean_in_root(&raw[at + 3..]);
                        (pivot.clone(), join(&pivot, &rest))
                    }
                    None => (Vec::new(), clean_in_root(raw)),
                }
            } else {
                (Vec::new(), clean_in_root(raw))
            };
            let named: Vec<Vec<u8>> = if glob::has_meta(&cleaned) {
                out.multiple = true;
                let found = if req.parents {
                    self.expand_parents(&cleaned)
                } else {
                    self.expand(&cleaned)
                };
                let found = found.map_err(|(m, ge)| match ge {
                    Some(e) => SourceError::BadWildcard {
                        source_text: arg.text.clone(),
                        reason: e.reason,
                        src: req.dockerfile.clone(),
                        span: arg.span,
                    },
                    None => self.miss_error(req, arg, &cleaned, m),
                })?;
                let mut hits = Vec::new();
                for n in found {
                    match self.resolve_path(&n) {
                        Ok(_) => hits.push(n),
                        Err(Miss::Missing { .. }) | Err(Miss::NotDir { .. }) => {}
                        Err(m) => return Err(self.miss_error(req, arg, &n, m)),
                    }
                }
                hits
            } else {
                vec![cleaned.clone()]
            };
            for n in named {
                let idx = self
                    .resolve_path(&n)
                    .map_err(|m| self.miss_error(req, arg, &n, m))?;
                self.add_root(&mut out, req, si, &n, &pivot, idx, &excludes)?;
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_root(
        &self,
        out: &mut ResolvedSources,
        req: &CopyRequest<'_>,
        si: usize,
        named: &[u8],
        pivot: &[u8],
        idx: usize,
        excludes: &DockerIgnore,
    ) -> Result<(), SourceError> {
        let arg = &req.sources[si];
        let entry = &self.entries[idx];
        let root_no = out.roots.len();
        let start = out.items.len();
        // With --parents the destination keeps the named path below the pivot, and the
        // directories on the way are copied too.
        let base: Vec<u8> = if req.parents {
            pathutil::strip_prefix(named, pivot)
                .unwrap_or(named)
                .to_vec()
        } else {
            Vec::new()
        };
        if req.parents {
            let mut prefix = Vec::new();
            for comp in split(pathutil::parent(&base)) {
                prefix = join(&prefix, comp);
                let ctx_path = join(pivot, &prefix);
                if let Some(i) = self.index_of(&ctx_path)
                    && self.entries[i].is_dir()
                {
                    out.items.push(CopyItem {
                        entry: i,
                        dest: pathutil::from_bytes(&prefix),
                        root: root_no,
                    });
                }
            }
        }
        let check = |i: usize, dest: &[u8]| -> Result<(), SourceError> {
            let e = &self.entries[i];
            if e.kind.is_device() {
                return Err(SourceError::DeviceFile {
                    path: pathutil::display(e.path_bytes()),
                    src: req.dockerfile.clone(),
                    span: arg.span,
                });
            }
            if is_reserved_name(file_name(dest)) || is_reserved_name(file_name(e.path_bytes())) {
                return Err(SourceError::ReservedName {
                    path: pathutil::display(e.path_bytes()),
                    src: req.dockerfile.clone(),
                    span: arg.span,
                });
            }
            Ok(())
        };
        let kind = match &entry.kind {
            EntryKind::Dir => {
                out.items.push(CopyItem {
                    entry: idx,
                    dest: pathutil::from_bytes(&base),
                    root: root_no,
                });
                let dir_path = entry.path_bytes();
                let mut j = idx + 1;
                let end = self.subtree_end[idx];
                while j < end {
                    let inner = pathutil::strip_prefix(self.entries[j].path_bytes(), dir_path)
                        .unwrap_or_default();
                    if excludes.is_excluded(inner) {
                        // Skip the whole subtree of an excluded directory.
                        j = self.subtree_end[j].max(j + 1);
                        continue;
                    }
                    let dest = join(&base, inner);
                    check(j, &dest)?;
                    out.items.push(CopyItem {
                        entry: j,
                        dest: pathutil::from_bytes(&dest),
                        root: root_no,
                    });
                    j += 1;
                }
                RootKind::Dir
            }
            _ => {
                // `--exclude` patterns are relative to a copied directory; a file source is
                // copied whatever they say (BuildKit matches them against the path below the
                // source, which is empty for a file).
                let name = file_name(named);
                let dest = if req.parents {
                    base.clone()
                } else {
                    name.to_vec()
                };
                check(idx, &dest)?;
                out.items.push(CopyItem {
                    entry: idx,
                    dest: pathutil::from_bytes(&dest),
                    root: root_no,
                });
                RootKind::File
            }
        };
        out.roots.push(SourceRoot {
            source: si,
            named: pathutil::from_bytes(named),
            entry: idx,
            kind,
            items: start..out.items.len(),
        });
        Ok(())
    }

    fn compile_excludes(&self, req: &CopyRequest<'_>) -> Result<DockerIgnore, SourceError> {
        let pats: Vec<(&str, SourceSpan)> = req
            .excludes
            .iter()
            .map(|a| (a.text.as_str(), a.span))
            .collect();
        DockerIgnore::from_patterns(&pats).map_err(|(i, e)| {
            let arg = &req.excludes[i];
            let within = e.offset < arg.text.len() && arg.span.len() == arg.text.len();
            let span = if within {
                (arg.span.offset() + e.offset, e.len.max(1)).into()
            } else {
                arg.span
            };
            SourceError::BadExclude {
                pattern: arg.text.clone(),
                reason: e.reason,
                src: req.dockerfile.clone(),
                span,
            }
        })
    }

    /// Turns a resolution failure into the report that says why.
    fn miss_error(
        &self,
        req: &CopyRequest<'_>,
        arg: &SourceArg,
        cleaned: &[u8],
        miss: Miss,
    ) -> SourceError {
        let src = req.dockerfile.clone();
        let span = arg.span;
        let source_text = arg.text.clone();
        match miss {
            Miss::Escape { link, target } => SourceError::SymlinkEscape {
                source_text,
                link: pathutil::display(&link),
                target: pathutil::display(&target),
                src,
                span,
            },
            Miss::Loop { link } => SourceError::SymlinkLoop {
                source_text,
                link: pathutil::display(&link),
                src,
                span,
            },
            Miss::NotDir { at } => SourceError::NotADirectory {
                source_text,
                component: pathutil::display(&at),
                src,
                span,
            },
            Miss::Missing { at } => {
                if let Some(err) = self.excluded_error(req, arg, &at) {
                    return err;
                }
                if climbs_out(&clean(arg.text.as_bytes())) {
                    return SourceError::Outside {
                        source_text,
                        clamped: pathutil::display(cleaned),
                        src,
                        span,
                    };
                }
                let help = match self.suggest(&at) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "paths are relative to the build context `{}`",
                        self.root().display()
                    ),
                };
                SourceError::NotFound {
                    source_text,
                    help,
                    src,
                    span,
                }
            }
        }
    }

    /// If `at` exists on disk but is not in the walked context, the `.dockerignore` rule (or
    /// the special-file policy) that kept it out.
    fn excluded_error(
        &self,
        req: &CopyRequest<'_>,
        arg: &SourceArg,
        at: &[u8],
    ) -> Option<SourceError> {
        let abs = self.root().join(pathutil::from_bytes(at));
        let meta = std::fs::symlink_metadata(&abs).ok()?;
        let ig = self.ignore();
        let (rule, help) = if let Some(rule) = ig.excluded_by(at) {
            let help = format!(
                "remove the rule from `{}` or add an exception `!{}` after line {}",
                ig.name(),
                pathutil::display(at),
                rule.line
            );
            (rule, help)
        } else {
            // Included by the rules but under a directory the walk pruned.
            let mut found = None;
            let mut prefix = Vec::new();
            for comp in split(pathutil::parent(at)) {
                prefix = join(&prefix, comp);
                if let Some(rule) = ig.excluded_by(&prefix)
                    && !ig.must_descend(&prefix)
                {
                    let p = pathutil::display(&prefix);
                    let help = format!(
                        "directory `{p}` is excluded, and an exception only re-includes files \
                         under an excluded directory when its pattern starts with `{p}/` \
                         (wildcard exceptions such as `!**/name` do not)"
                    );
                    found = Some((rule, help));
                    break;
                }
            }
            match found {
                Some(f) => f,
                None => {
                    use std::os::unix::fs::FileTypeExt;
                    let ft = meta.file_type();
                    if ft.is_fifo() || ft.is_socket() {
                        return Some(SourceError::NotFound {
                            source_text: arg.text.clone(),
                            help: "it is a fifo or socket; special files are not part of the \
                                   build context"
                                .into(),
                            src: req.dockerfile.clone(),
                            span: arg.span,
                        });
                    }
                    return None;
                }
            }
        };
        Some(SourceError::Excluded {
            source_text: arg.text.clone(),
            rule_ref: format!("`{}:{}` (`{}`)", ig.name(), rule.line, rule.written),
            help,
            src: req.dockerfile.clone(),
            span: arg.span,
            rule: vec![ig.excluded_here(rule, at)],
        })
    }

    /// The closest context path to `missing` (same file name first, then edit distance),
    /// shown with a trailing `/` for directories.
    fn suggest(&self, missing: &[u8]) -> Option<String> {
        let want = String::from_utf8_lossy(missing);
        let want_name = String::from_utf8_lossy(file_name(missing));
        let mut best: Option<(f64, usize)> = None;
        for (i, e) in self.entries.iter().enumerate().skip(1) {
            let p = String::from_utf8_lossy(e.path_bytes());
            let name = String::from_utf8_lossy(file_name(e.path_bytes()));
            let mut score = strsim::normalized_damerau_levenshtein(&want, &p);
            if name == want_name {
                score = score.max(0.8);
            }
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        let (score, i) = best?;
        if score < 0.6 {
            return None;
        }
        let e = &self.entries[i];
        let mut s = pathutil::display(e.path_bytes());
        if e.is_dir() {
            s.push('/');
        }
        Some(s)
    }
}

/// Non-empty `/`-separated components.
fn split(p: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// The position of the `--parents` pivot `/./` (BuildKit's `strings.Cut(src, "/./")`).
fn find_pivot(raw: &[u8]) -> Option<usize> {
    raw.windows(3).position(|w| w == b"/./")
}
