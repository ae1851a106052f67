//! COPY and ADD: from the build context (the sources the solver resolved before the build),
//! from another stage or image (their snapshots, read through a merged view), here-documents
//! downloaded URLs and git checkouts (`crate::git`); ADD extracts local tar archives (plain, gzip, bzip2, xz, zstd) with the
//! store's in-root unpacker (or copies them as files when they are not archives). Destination
//! rules are BuildKit's (fsutil `copy`): the destination is resolved in the image with every
//! symlink followed, the last one and dangling ones too; a trailing `/` or an existing
//! directory means "into" (several sources require it); a source directory's contents merge
//! into the destination, which keeps its own mode and owner when it exists; missing parents
//! are created owned per `--chown`, 0755 or the octal `--chmod` (a symbolic one applies only
//! to what is copied); a wildcard matching nothing copies nothing. `COPY --from` also copies
//! FIFOs and device nodes, and `--parents` keeps the path below the `/./` pivot.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rbuild_solver::chmod::Chmod;
use rbuild_solver::context::{BuildContext, EntryKind, RootKind};
use rbuild_solver::inputs::StepInputs;
use rbuild_solver::op::{CopyOp, CopySource};
use rbuild_store::layer::path::RelPath;
use rbuild_store::layer::tar::looks_like_tar;
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use super::dest::{self, Attrs, Dest, rel_path};
use super::error::StepError;
use crate::fsmeta::Kind;
use crate::lower::{LowerEntry, LowerView};

/// Largest /etc/passwd or /etc/group read to resolve `--chown` names.
const MAX_ID_FILE: u64 = 4 << 20;

/// What one copied entry is.
#[derive(Debug)]
enum ItemKind {
    File,
    Dir,
    Symlink(PathBuf),
    /// A FIFO or device node (`COPY --from`), with its device number.
    Node(FileType, u64),
}

/// Where an item's data comes from.
#[derive(Debug)]
enum Data {
    None,
    /// A context file, by entry index (opened beneath the context root, checked unchanged).
    Context(usize),
    /// A file in a snapshot directory of the store.
    Host(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug)]
struct Item {
    dest: RelPath,
    kind: ItemKind,
    data: Data,
    attrs: Attrs,
    /// Source inode identity, to keep hard links between copied files.
    link_key: Option<(u64, u64)>,
    /// ADD: when this file is a tar archive, extract it into this directory instead of
    /// copying it to `dest`.
    extract: Option<RelPath>,
    /// The directory a source directory's contents are merged into (BuildKit's
    /// `CopyDirContentsOnly` root): an existing one keeps its mode and owner and only takes
    /// the source's mtime; a missing one is created like any destination parent.
    merge: bool,
}

/// The ownership `--chown` asks for, resolved in the destination image.
fn chown_ids(spec: &str, dest: &Dest) -> Result<(u32, u32), StepError> {
    // A bare numeric UID means UID:UID, as in BuildKit (`--chown=user` by name takes the
    // user's primary group from the image's passwd instead).
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
        let uid: u32 = spec.parse().map_err(|_| StepError::Chown {
            spec: spec.to_string(),
            message: "the user ID is out of range".into(),
        })?;
        return Ok((uid, uid));
    }
    let passwd = dest.read_small("/etc/passwd", MAX_ID_FILE);
    let group = dest.read_small("/etc/group", MAX_ID_FILE);
    let id = crate::user::resolve(spec, passwd.as_deref(), group.as_deref()).map_err(|e| {
        StepError::Chown {
            spec: spec.to_string(),
            message: e.to_string(),
        }
    })?;
    // `--chown=user` without a group uses the user's primary group.
    Ok((id.uid, id.gid))
}

/// Everything `copy` needs besides the op itself.
pub struct CopyInputs<'a> {
    pub context: Option<&'a BuildContext>,
    pub step: Option<&'a StepInputs>,
    /// For `--from`: the source stage's or image's snapshot directories, bottom first.
    pub source_layers: Option<Vec<PathBuf>>,
    /// The snapshot of the layer the last build of this step produced: unchanged context files
    /// are hard-linked from it instead of copied (after checking them).
    pub reuse: Option<PathBuf>,
}

/// Perform a COPY/ADD into the rootfs behind `root`.
pub fn copy(root: &Dest, op: &CopyOp, inputs: &CopyInputs<'_>) -> Result<(), StepError> {
    let chmod = match &op.chmod {
        Some(text) => Some(Chmod::parse(text).map_err(|message| StepError::Invalid {
            message: format!("invalid --chmod: {message}"),
        })?),
        None => None,
    };
    let chown = match &op.chown {
        Some(spec) => Some(chown_ids(spec, root)?),
        None => None,
    };
    let parents = Parents::new(chown, chmod.as_ref());
    let dest_text = op.dest.clone();
    // Symlinks on the destination, the last component included, are followed inside the
    // image (a dangling one names the path it points at), as BuildKit's `RootPath` does.
    let dest_rel = rel_path(&dest_text)
        .and_then(|rel| root.resolve(&rel))
        .map_err(|e| StepError::io("resolve", &dest_text, e))?;
    let source_count = op.sources.len();
    let into = dest_text.ends_with('/') || root.is_dir(&dest_rel);
    let several = |many: bool| -> Result<(), StepError> {
        if many && !into {
            return Err(StepError::Invalid {
                message: format!(
                    "when copying several files (or a wildcard matching several) the destination `{dest_text}` must be a directory and end with a /"
                ),
            });
        }
        Ok(())
    };
    let attrs_for = |mode: u32, is_dir: bool, owner: (u32, u32), mtime: Option<i64>| Attrs {
        uid: chown.map_or(owner.0, |c| c.0),
        gid: chown.map_or(owner.1, |c| c.1),
        mode: chmod.as_ref().map_or(mode, |c| c.apply(mode, is_dir)),
        mtime,
    };
    // The directory that takes a source directory's contents: only its mtime comes from the
    // source; when missing it is created as a destination parent.
    let merge_item = |mtime: Option<i64>| Item {
        dest: dest_rel.clone(),
        kind: ItemKind::Dir,
        data: Data::None,
        attrs: Attrs {
            uid: parents.owner.0,
            gid: parents.owner.1,
            mode: parents.mode,
            mtime,
        },
        link_key: None,
        extract: None,
        merge: true,
    };
    let target = |name: &[u8]| -> RelPath {
        if into {
            dest_rel.join(name)
        } else {
            dest_rel.clone()
        }
    };

    let mut items: Vec<Item> = Vec::new();
    // 1. Build-context sources, resolved before the build. A wildcard matching nothing adds
    //    no root (BuildKit's `AllowEmptyWildcard`).
    if let (Some(ctx), Some(resolved)) = (inputs.context, inputs.step.and_then(|s| s.copy.as_ref()))
    {
        several(source_count > 1 || resolved.roots.len() > 1)?;
        for root_src in &resolved.roots {
            for it in &resolved.items[root_src.items.clone()] {
                let entry = &ctx.entries()[it.entry];
                let rel = it.dest.as_os_str().as_bytes();
                let mtime = Some(entry.mtime.sec);
                if root_src.kind == RootKind::Dir && rel.is_empty() {
                    items.push(merge_item(mtime));
                    continue;
                }
                let dest = match root_src.kind {
                    RootKind::Dir => dest_rel.join(rel),
                    RootKind::File if op.parents => dest_rel.join(rel),
                    RootKind::File => target(rel),
                };
                let (kind, data) = match &entry.kind {
                    EntryKind::File => (ItemKind::File, Data::Context(it.entry)),
                    EntryKind::Dir => (ItemKind::Dir, Data::None),
                    EntryKind::Symlink { target } => {
                        (ItemKind::Symlink(target.clone()), Data::None)
                    }
                    EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } => {
                        return Err(StepError::Invalid {
                            message: format!(
                                "`{}` in the build context is a device file; rbuild does not copy devices",
                                String::from_utf8_lossy(entry.path_bytes())
                            ),
                        });
                    }
                };
                let is_dir = matches!(kind, ItemKind::Dir);
                let extract = (op.add
                    && op.unpack != Some(false)
                    && matches!(kind, ItemKind::File)
                    && root_src.kind == RootKind::File)
                    .then(|| dest_rel.clone());
                items.push(Item {
                    dest,
                    attrs: attrs_for(entry.mode & 0o7777, is_dir, (0, 0), mtime),
                    link_key: (entry.nlink > 1 && matches!(kind, ItemKind::File))
                        .then_some((entry.dev, entry.ino)),
                    kind,
                    data,
                    extract,
                    merge: false,
                });
            }
        }
    }

    // 2. Another stage or an image.
    if let Some(layers) = &inputs.source_layers {
        let view = LowerView::new(layers);
        for src in &op.sources {
            let CopySource::Path { path, .. } = src else {
                continue;
            };
            if op.parents {
                let mut push = |dest: Option<RelPath>, e: &LowerEntry, kind: ItemKind| {
                    items.push(match dest {
                        None => merge_item(Some(e.meta.mtime)),
                        Some(dest) => view_item(dest, e, kind, &attrs_for),
                    })
                };
                copy_parents_from_view(&view, path, &dest_rel, &op.excludes, &mut push)?;
                continue;
            }
            let matches = expand_in_view(&view, path)?;
            if matches.is_empty() && !has_wildcard(path) {
                return Err(StepError::SourceMissing { path: path.clone() });
            }
            several(source_count > 1 || matches.len() > 1)?;
            for (named, entry) in matches {
                let name = named
                    .file_name()
                    .map(|n| n.as_bytes().to_vec())
                    .unwrap_or_default();
                match entry.meta.kind {
                    Kind::Dir => walk_view(
                        &view,
                        &named,
                        &dest_rel,
                        "",
                        &op.excludes,
                        &mut |rel_dest, e, kind| {
                            items.push(match rel_dest {
                                None => merge_item(Some(e.meta.mtime)),
                                Some(dest) => view_item(dest, e, kind, &attrs_for),
                            });
                        },
                    )?,
                    _ => {
                        let kind = view_kind(&entry)?;
                        items.push(view_item(target(&name), &entry, kind, &attrs_for));
                    }
                }
            }
        }
    }

    // 3. Here-documents and downloads.
    for src in &op.sources {
        match src {
            CopySource::Heredoc { name, content, .. } => {
                let name = Path::new(name)
                    .file_name()
                    .map(|n| n.as_bytes().to_vec())
                    .unwrap_or_else(|| name.as_bytes().to_vec());
                several(source_count > 1)?;
                items.push(Item {
                    dest: target(&name),
                    kind: ItemKind::File,
                    data: Data::Bytes(content.clone()),
                    attrs: attrs_for(0o644, false, (0, 0), None),
                    link_key: None,
                    extract: None,
                    merge: false,
                });
            }
            CopySource::Url { url, .. } => {
                let fetched = inputs
                    .step
                    .and_then(|s| s.urls.iter().find(|f| &f.url == url))
                    .ok_or_else(|| StepError::Invalid {
                        message: format!(
                            "internal error: `{url}` was not downloaded before the build"
                        ),
                    })?;
                several(source_count > 1)?;
                items.push(Item {
                    dest: target(fetched.name.as_bytes()),
                    kind: ItemKind::File,
                    data: Data::Host(fetched.path.clone()),
                    attrs: attrs_for(0o600, false, (0, 0), fetched.modified),
                    link_key: None,
                    extract: (op.unpack == Some(true)).then(|| dest_rel.clone()),
                    merge: false,
                });
            }
            CopySource::Git { url, .. } => {
                let fetched = inputs
                    .step
                    .and_then(|s| s.git.iter().find(|f| &f.url == url))
                    .ok_or_else(|| StepError::Invalid {
                        message: format!(
                            "internal error: `{}` was not checked out before the build",
                            rbuild_solver::inputs::redact(url)
                        ),
                    })?;
                // The checkout's contents merge into the destination, owned by root (or
                // `--chown`), with the checkout's modes and mtimes — BuildKit's copy of the
                // git source's `/`.
                let view = LowerView::new(std::slice::from_ref(&fetched.dir));
                let root_owned =
                    |mode: u32, is_dir: bool, _owner: (u32, u32), mtime: Option<i64>| {
                        attrs_for(mode, is_dir, (0, 0), mtime)
                    };
                walk_view(
                    &view,
                    Path::new(""),
                    &dest_rel,
                    "",
                    &op.excludes,
                    &mut |rel_dest, e, kind| {
                        items.push(match rel_dest {
                            None => merge_item(Some(e.meta.mtime)),
                            Some(dest) => view_item(dest, e, kind, &root_owned),
                        });
                    },
                )?;
            }
            CopySource::Path { .. } => {}
        }
    }

    apply(
        root,
        items,
        parents,
        inputs.context,
        inputs.reuse.as_deref(),
    )
}

/// Attributes of destination parents a copy creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Parents {
    owner: (u32, u32),
    mode: u32,
}

impl Parents {
    /// As BuildKit makes them: owned per `--chown` (else root), mode 0755 — or the octal
    /// `--chmod`'s permission bits; a symbolic `--chmod` only applies to what is copied.
    fn new(chown: Option<(u32, u32)>, chmod: Option<&Chmod>) -> Parents {
        Parents {
            owner: chown.unwrap_or((0, 0)),
            mode: match chmod {
                Some(Chmod::Octal(mode)) => mode & 0o777,
                _ => 0o755,
            },
        }
    }
}

fn has_wildcard(path: &str) -> bool {
    path.bytes().any(|b| matches!(b, b'*' | b'?' | b'['))
}

fn view_kind(entry: &LowerEntry) -> Result<ItemKind, StepError> {
    Ok(match entry.meta.kind {
        Kind::File => ItemKind::File,
        Kind::Dir => ItemKind::Dir,
        Kind::Symlink => ItemKind::Symlink(
            std::fs::read_link(&entry.path)
                .map_err(|e| StepError::io("read", entry.path.display(), e))?,
        ),
        Kind::Fifo => ItemKind::Node(FileType::Fifo, 0),
        Kind::CharDev => ItemKind::Node(FileType::CharacterDevice, entry.meta.rdev),
        Kind::BlockDev => ItemKind::Node(FileType::BlockDevice, entry.meta.rdev),
        Kind::Socket => {
            return Err(StepError::Invalid {
                message: format!(
                    "`{}` is a socket; image layers cannot hold sockets",
                    entry.path.display()
                ),
            });
        }
    })
}

fn view_item(
    dest: RelPath,
    entry: &LowerEntry,
    kind: ItemKind,
    attrs_for: &dyn Fn(u32, bool, (u32, u32), Option<i64>) -> Attrs,
) -> Item {
    let is_dir = matches!(kind, ItemKind::Dir);
    let data = match kind {
        ItemKind::File => Data::Host(entry.path.clone()),
        _ => Data::None,
    };
    Item {
        dest,
        attrs: attrs_for(
            entry.meta.mode,
            is_dir,
            (entry.meta.uid, entry.meta.gid),
            Some(entry.meta.mtime),
        ),
        link_key: (entry.meta.nlink > 1 && matches!(kind, ItemKind::File))
            .then_some((entry.meta.dev, entry.meta.ino)),
        kind,
        data,
        extract: None,
        merge: false,
    }
}

/// `COPY --parents --from`: BuildKit copies the pivot directory (the part before `/./`, else
/// the root) into the destination with the rest of the source as an include pattern (moby's
/// rules, `**` spanning directories). Every top-most match comes with its subtree and the
/// directories on its way; a source without wildcards must exist. `visit(None, ..)` is the
/// pivot itself, whose contents merge into the destination.
fn copy_parents_from_view(
    view: &LowerView,
    source: &str,
    dest_root: &RelPath,
    excludes: &[String],
    visit: &mut dyn FnMut(Option<RelPath>, &LowerEntry, ItemKind),
) -> Result<(), StepError> {
    let (pivot, pattern) = match source.split_once("/./") {
        Some((pivot, rest)) => (pivot, rest),
        None => ("/", source),
    };
    let pivot_rel = rel_path(pivot).map_err(|e| StepError::io("resolve", source, e))?;
    let pattern_rel = rel_path(pattern).map_err(|e| StepError::io("resolve", source, e))?;
    let required = !has_wildcard(pivot) && !has_wildcard(pattern);
    let missing = || StepError::SourceMissing {
        path: source.to_string(),
    };
    let text = |r: &RelPath| String::from_utf8_lossy(r.as_bytes()).into_owned();
    if required {
        let full = if pattern_rel.is_root() {
            pivot_rel.clone()
        } else {
            pivot_rel.join(pattern_rel.as_bytes())
        };
        let found = view
            .resolve(&text(&full), false)
            .map_err(|e| StepError::io("resolve", source, e))?;
        if !found.missing.is_empty() || found.leaf.is_none() {
            return Err(missing());
        }
    }
    let resolved = view
        .resolve(&text(&pivot_rel), true)
        .map_err(|e| StepError::io("resolve", source, e))?;
    let Some(top) = resolved.leaf.filter(|_| resolved.missing.is_empty()) else {
        return if required { Err(missing()) } else { Ok(()) };
    };
    if top.meta.kind != Kind::Dir {
        return Err(StepError::Invalid {
            message: format!("`{pivot}` in `{source}` is not a directory"),
        });
    }
    if pattern_rel.is_root() {
        // Nothing after the pivot: the whole directory, merged into the destination.
        return walk_view(
            view,
            &resolved.existing,
            dest_root,
            "",
            excludes,
            &mut |d, e, kind| visit(d, e, kind),
        );
    }
    let matcher =
        rbuild_solver::context::MobyPattern::new(pattern_rel.as_bytes()).map_err(|e| {
            StepError::Invalid {
                message: format!("invalid --parents source `{source}`: {}", e.reason),
            }
        })?;
    let exclude_res: Vec<regex::Regex> = excludes
        .iter()
        .map(|e| glob_path_regex(e))
        .collect::<Result<_, _>>()?;
    visit(None, &top, ItemKind::Dir);
    // Depth-first in name order; `chain` holds the directories above the current one that
    // are not copied yet (they are, once something below them matches).
    struct Frame {
        src: PathBuf,
        rel: Vec<u8>,
        entry: Option<LowerEntry>,
    }
    let mut pending: Vec<Frame> = vec![Frame {
        src: resolved.existing.clone(),
        rel: Vec::new(),
        entry: None,
    }];
    // Directories entered but not yet emitted, by depth.
    let mut chain: Vec<(Vec<u8>, LowerEntry, bool)> = Vec::new();
    while let Some(frame) = pending.pop() {
        if let Some(entry) = frame.entry {
            let depth = frame.rel.iter().filter(|&&b| b == b'/').count();
            chain.truncate(depth);
            chain.push((frame.rel.clone(), entry, false));
        }
        let listing = view
            .read_dir(&frame.src)
            .map_err(|e| StepError::io("read", frame.src.display(), e))?;
        let mut subdirs = Vec::new();
        for (name, entry) in listing {
            let rel = if frame.rel.is_empty() {
                name.as_bytes().to_vec()
            } else {
                [frame.rel.as_slice(), b"/", name.as_bytes()].concat()
            };
            let rel_text = String::from_utf8_lossy(&rel).into_owned();
            if exclude_res.iter().any(|re| re.is_match(&rel_text)) {
                continue;
            }
            if entry.meta.kind == Kind::Socket {
                continue;
            }
            if matcher.matches(&rel) {
                for (dir_rel, dir_entry, emitted) in chain.iter_mut() {
                    if !*emitted {
                        visit(Some(dest_root.join(dir_rel)), dir_entry, ItemKind::Dir);
                        *emitted = true;
                    }
                }
                let dest = dest_root.join(&rel);
                if entry.meta.kind == Kind::Dir {
                    walk_view(
                        view,
                        &frame.src.join(&name),
                        &dest,
                        &rel_text,
                        excludes,
                        &mut |d, e, kind| {
                            visit(Some(d.unwrap_or_else(|| dest.clone())), e, kind);
                        },
                    )?;
                } else {
                    let kind = view_kind(&entry)?;
                    visit(Some(dest), &entry, kind);
                }
            } else if entry.meta.kind == Kind::Dir {
                subdirs.push(Frame {
                    src: frame.src.join(&name),
                    rel,
                    entry: Some(entry),
                });
            }
        }
        pending.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// Sources in another stage: the path resolved in its merged view (a symlink as the source is
/// followed, inside the view), wildcards matched component by component.
fn expand_in_view(
    view: &LowerView,
    pattern: &str,
) -> Result<Vec<(PathBuf, LowerEntry)>, StepError> {
    let cleaned =
        super::dest::rel_path(pattern).map_err(|e| StepError::io("resolve", pattern, e))?;
    let text = String::from_utf8_lossy(cleaned.as_bytes()).into_owned();
    if !has_wildcard(&text) {
        let resolved = view
            .resolve(&text, true)
            .map_err(|e| StepError::io("resolve", pattern, e))?;
        return Ok(match (resolved.missing.is_empty(), resolved.leaf) {
            (true, Some(leaf)) => vec![(PathBuf::from(&text), leaf)],
            _ => Vec::new(),
        });
    }
    let mut current: Vec<PathBuf> = vec![PathBuf::new()];
    for comp in text.split('/') {
        let mut next = Vec::new();
        for base in &current {
            if has_wildcard(comp) {
                let re = glob_regex(comp)?;
                let resolved = view
                    .resolve(&base.to_string_lossy(), true)
                    .map_err(|e| StepError::io("resolve", pattern, e))?;
                if !resolved.missing.is_empty() {
                    continue;
                }
                let listing = view
                    .read_dir(&resolved.existing)
                    .map_err(|e| StepError::io("read", pattern, e))?;
                for name in listing.keys() {
                    if re.is_match(&name.to_string_lossy()) {
                        next.push(base.join(name));
                    }
                }
            } else {
                next.push(base.join(comp));
            }
        }
        current = next;
    }
    let mut out = Vec::new();
    for path in current {
        let resolved = view
            .resolve(&path.to_string_lossy(), true)
            .map_err(|e| StepError::io("resolve", pattern, e))?;
        if let (true, Some(leaf)) = (resolved.missing.is_empty(), resolved.leaf) {
            out.push((path, leaf));
        }
    }
    Ok(out)
}

/// Go `filepath.Match` for one path component, as a regex.
fn glob_regex(pattern: &str) -> Result<regex::Regex, StepError> {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    re.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '[' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                re.push(']');
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    re.push_str(&regex::escape(&n.to_string()));
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| StepError::Invalid {
        message: format!("invalid wildcard `{pattern}`: {e}"),
    })
}

/// Walk a directory of the view; `visit(dest, entry, kind)` for the directory itself (`dest`
/// `None`: its contents go to `dest_root`) and everything below, skipping paths matched by
/// `excludes` (relative to the copied source: `rel_base` is the directory's path in it).
fn walk_view(
    view: &LowerView,
    dir: &Path,
    dest_root: &RelPath,
    rel_base: &str,
    excludes: &[String],
    visit: &mut dyn FnMut(Option<RelPath>, &LowerEntry, ItemKind),
) -> Result<(), StepError> {
    let resolved = view
        .resolve(&dir.to_string_lossy(), true)
        .map_err(|e| StepError::io("resolve", dir.display(), e))?;
    let Some(top) = resolved.leaf else {
        return Ok(());
    };
    let excludes: Vec<regex::Regex> = excludes
        .iter()
        .map(|e| glob_path_regex(e))
        .collect::<Result<_, _>>()?;
    visit(None, &top, ItemKind::Dir);
    let mut stack: Vec<(PathBuf, RelPath, String)> = vec![(
        resolved.existing.clone(),
        dest_root.clone(),
        rel_base.to_string(),
    )];
    while let Some((src, dst, rel)) = stack.pop() {
        let listing = view
            .read_dir(&src)
            .map_err(|e| StepError::io("read", src.display(), e))?;
        for (name, entry) in listing {
            let child_rel = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            if excludes.iter().any(|re| re.is_match(&child_rel)) {
                continue;
            }
            // Sockets inside a copied directory are left out, as layer tars cannot hold them
            // (BuildKit's differ drops them too); naming one as the source is an error.
            if entry.meta.kind == Kind::Socket {
                continue;
            }
            let child_dst = dst.join(name.as_bytes());
            let kind = view_kind(&entry)?;
            let is_dir = matches!(kind, ItemKind::Dir);
            visit(Some(child_dst.clone()), &entry, kind);
            if is_dir {
                stack.push((src.join(&name), child_dst, child_rel));
            }
        }
    }
    Ok(())
}

/// `--exclude` patterns (Go globs with `**`) over a path relative to the copied directory.
fn glob_path_regex(pattern: &str) -> Result<regex::Regex, StepError> {
    let mut re = String::from("^");
    for (i, comp) in pattern.trim_matches('/').split('/').enumerate() {
        if comp == "**" {
            re.push_str("(.*/)?");
            continue;
        }
        if i > 0 && !re.ends_with("(.*/)?") {
            re.push('/');
        }
        let part = glob_regex(comp)?;
        let text = part.as_str();
        re.push_str(&text[1..text.len() - 1]);
    }
    re.push_str("(/.*)?$");
    regex::Regex::new(&re).map_err(|e| StepError::Invalid {
        message: format!("invalid --exclude `{pattern}`: {e}"),
    })
}

/// Open a context file beneath the context root (no symlinks anywhere on the way) and check it
/// is still the file that was hashed for the cache key.
fn open_context_file(ctx: &BuildContext, root: &OwnedFd, index: usize) -> Result<File, StepError> {
    let entry = &ctx.entries()[index];
    let rel = entry.path_bytes();
    let shown = String::from_utf8_lossy(rel).into_owned();
    let fd = rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    )
    .map_err(|e| StepError::io("open", &shown, e.into()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| StepError::io("stat", &shown, e.into()))?;
    if st.st_size as u64 != entry.size
        || st.st_ino != entry.ino
        || st.st_mtime != entry.mtime.sec
        || st.st_mtime_nsec as i64 != entry.mtime.nsec
    {
        return Err(StepError::ContextChanged { path: shown });
    }
    Ok(File::from(fd))
}

/// Create every item, parents first, keeping hard links between copied files.
fn apply(
    root: &Dest,
    mut items: Vec<Item>,
    parents: Parents,
    ctx: Option<&BuildContext>,
    reuse: Option<&Path>,
) -> Result<(), StepError> {
    let ctx_root = match ctx {
        Some(ctx) => Some(
            rustix::fs::open(
                ctx.root(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| StepError::io("open", ctx.root().display(), e.into()))?,
        ),
        None => None,
    };
    // Directories first (sorted by path), so files land in place; later duplicates win. An
    // ADD archive sorts at the directory it extracts into, so archives keep their source
    // order (a later one wins where they overlap, as in BuildKit).
    fn sort_key(item: &Item) -> &[u8] {
        item.extract.as_ref().unwrap_or(&item.dest).as_bytes()
    }
    items.sort_by(|a, b| sort_key(a).cmp(sort_key(b)));
    let mut links: HashMap<(u64, u64), RelPath> = HashMap::new();
    // (path, attributes, merge: only the mtime is set)
    let mut dirs: Vec<(RelPath, Attrs, bool)> = Vec::new();
    for item in items {
        let shown = item.dest.display();
        if let Some(name) = item.dest.as_bytes().rsplit(|&b| b == b'/').next()
            && name.starts_with(b".wh.")
        {
            return Err(StepError::Invalid {
                message: format!(
                    "cannot add `{shown}`: names starting with `.wh.` are reserved for whiteouts in image layers"
                ),
            });
        }
        let io_err = |action: &'static str| {
            let shown = shown.clone();
            move |e: io::Error| StepError::io(action, &shown, e)
        };
        if let Some(into) = &item.extract
            && extract_archive(root, &item, into, ctx, ctx_root.as_ref())?
        {
            continue;
        }
        if item.merge {
            // Created (with its missing parents) as a destination parent when missing; an
            // existing directory keeps its mode and owner.
            root.mkdir_all(
                &item.dest,
                (item.attrs.uid, item.attrs.gid),
                item.attrs.mode,
            )
            .map_err(io_err("create directory"))?;
            dirs.push((item.dest.clone(), item.attrs, true));
            continue;
        }
        if item.dest.is_root() {
            return Err(StepError::Invalid {
                message: "cannot copy a file onto the root directory".into(),
            });
        }
        let (dir, name) = root
            .parent_of(&item.dest, parents.owner, parents.mode)
            .map_err(io_err("create parents of"))?;
        match &item.kind {
            ItemKind::Dir => {
                dest::make_dir(dir.as_fd(), &name, &item.attrs)
                    .map_err(io_err("create directory"))?;
                dirs.push((item.dest.clone(), item.attrs, false));
            }
            ItemKind::Node(kind, rdev) => {
                dest::make_node(dir.as_fd(), &name, *kind, *rdev, &item.attrs)
                    .map_err(io_err("create node"))?;
            }
            ItemKind::Symlink(target) => {
                dest::make_symlink(dir.as_fd(), &name, target, &item.attrs)
                    .map_err(io_err("create symlink"))?;
                root.symlink_created();
            }
            ItemKind::File => {
                if let Some(key) = item.link_key
                    && let Some(first) = links.get(&key)
                {
                    let (first_dir, first_name) = root
                        .parent_of(first, parents.owner, parents.mode)
                        .map_err(io_err("link"))?;
                    dest::make_hardlink(first_dir.as_fd(), &first_name, dir.as_fd(), &name)
                        .map_err(io_err("create hard link"))?;
                    continue;
                }
                match &item.data {
                    Data::Context(index) => {
                        let ctx = ctx.expect("context items come with a context");
                        let reused = reuse.is_some_and(|prev| {
                            reuse_file(prev, root, &item, &name, ctx, *index, dir.as_fd())
                        });
                        if !reused {
                            let mut file = open_context_file(
                                ctx,
                                ctx_root.as_ref().expect("context root open"),
                                *index,
                            )?;
                            dest::copy_file(dir.as_fd(), &name, &mut file, &item.attrs)
                                .map_err(io_err("copy"))?;
                        }
                    }
                    Data::Host(path) => {
                        let mut file = File::options()
                            .read(true)
                            .custom_flags(libc::O_NOFOLLOW)
                            .open(path)
                            .map_err(|e| StepError::io("open", path.display(), e))?;
                        dest::copy_file(dir.as_fd(), &name, &mut file, &item.attrs)
                            .map_err(io_err("copy"))?;
                    }
                    Data::Bytes(bytes) => {
                        dest::write_file(dir.as_fd(), &name, &mut bytes.as_slice(), &item.attrs)
                            .map_err(io_err("write"))?;
                    }
                    Data::None => unreachable!("files carry data"),
                }
                if let Some(key) = item.link_key {
                    links.insert(key, item.dest.clone());
                }
            }
        }
    }
    // Directory attributes last: creating entries inside them changed their mtimes. Deepest
    // first; of several entries for one directory the last one wins.
    let mut done: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    for (rel, attrs, merge) in dirs.iter().rev() {
        if !done.insert(rel.as_bytes()) {
            continue;
        }
        let fd = root
            .mkdir_all(rel, parents.owner, parents.mode)
            .map_err(|e| StepError::io("open", rel.display(), e))?;
        let set = match (merge, attrs.mtime) {
            (false, _) => dest::set_attrs(&fd, attrs),
            (true, Some(mtime)) => dest::set_mtime(&fd, mtime),
            (true, None) => Ok(()),
        };
        set.map_err(|e| StepError::io("set attributes of", rel.display(), e))?;
    }
    Ok(())
}

use std::os::unix::fs::OpenOptionsExt;

/// Hard-link a context file from the previous build's snapshot of this step when that file is
/// provably the one we would write: same place, type, size, mode, owner, mtime, and the same
/// content (its blake3 is recomputed and compared with the context file's hash). Snapshots are
/// immutable, so sharing the inode is safe. Any doubt means a normal copy.
fn reuse_file(
    prev: &Path,
    root: &Dest,
    item: &Item,
    name: &[u8],
    ctx: &BuildContext,
    index: usize,
    dir: std::os::fd::BorrowedFd<'_>,
) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = root.resolved_parent(&item.dest) else {
        return false;
    };
    let Some(want) = ctx.content_hash(index) else {
        return false;
    };
    let candidate = prev.join(parent).join(std::ffi::OsStr::from_bytes(name));
    let Ok(md) = std::fs::symlink_metadata(&candidate) else {
        return false;
    };
    let entry = &ctx.entries()[index];
    let same_meta = md.file_type().is_file()
        && md.len() == entry.size
        && md.mode() & 0o7777 == item.attrs.mode
        && md.uid() == item.attrs.uid
        && md.gid() == item.attrs.gid
        && Some(md.mtime()) == item.attrs.mtime;
    if !same_meta {
        return false;
    }
    let Ok(mut file) = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&candidate)
    else {
        return false;
    };
    let mut hasher = blake3::Hasher::new();
    if io::copy(&mut file, &mut hasher).is_err() || *hasher.finalize().as_bytes() != want {
        return false;
    }
    if dest::clear_for(dir, name, false).is_err() {
        return false;
    }
    rustix::fs::linkat(
        rustix::fs::CWD,
        &candidate,
        dir,
        name,
        rustix::fs::AtFlags::empty(),
    )
    .is_ok()
}

/// ADD of a local archive: detect the compression by content; a tar is extracted into
/// `dest_dir` (created `0755`, owned per `--chown`, as BuildKit's unpack does) with the store's
/// in-root unpacker and `true` returned; anything else is left to be copied as a file (`false`).
fn extract_archive(
    root: &Dest,
    item: &Item,
    dest_dir: &RelPath,
    ctx: Option<&BuildContext>,
    ctx_root: Option<&OwnedFd>,
) -> Result<bool, StepError> {
    let open = || -> Result<File, StepError> {
        match &item.data {
            Data::Context(i) => open_context_file(
                ctx.expect("context items come with a context"),
                ctx_root.expect("context root open"),
                *i,
            ),
            Data::Host(path) => {
                File::open(path).map_err(|e| StepError::io("open", path.display(), e))
            }
            _ => unreachable!("archives are files"),
        }
    };
    let mut head = [0u8; 512 + 8];
    let n = read_full(&mut open()?, &mut head).map_err(|e| StepError::io("read", "archive", e))?;
    let compression = rbuild_store::Compression::from_magic(&head[..n]);
    let is_tar = match compression {
        rbuild_store::Compression::None => looks_like_tar(&head[..n]),
        _ => {
            // Peek into the decompressed stream.
            let mut dec = decompressor(open()?, compression)?;
            let mut inner = [0u8; 512];
            let m =
                read_full(&mut dec, &mut inner).map_err(|e| StepError::io("read", "archive", e))?;
            looks_like_tar(&inner[..m])
        }
    };
    if !is_tar {
        return Ok(false);
    }
    root.mkdir_all(dest_dir, (item.attrs.uid, item.attrs.gid), 0o755)
        .map_err(|e| StepError::io("create", dest_dir.display(), e))?;
    let reader = decompressor(open()?, compression)?;
    let mut opts = rbuild_store::layer::UnpackOptions::new(rbuild_store::layer::UnpackMode::Plain);
    opts.base = dest_dir.clone();
    opts.duplicates = rbuild_store::layer::DuplicatePolicy::LastWins;
    if item.attrs.uid != 0 || item.attrs.gid != 0 {
        opts.owner = Some((item.attrs.uid, item.attrs.gid));
    }
    let limits = rbuild_store::Limits::from_env().map_err(|e| StepError::Invalid {
        message: e.to_string(),
    })?;
    let merged = root.proc_path().ok_or_else(|| StepError::Invalid {
        message: "internal error: archives are extracted through a mounted step".into(),
    })?;
    rbuild_store::layer::unpack(reader, &merged, &opts, &limits, "ADD archive").map_err(|e| {
        StepError::Archive {
            message: e.to_string(),
        }
    })?;
    Ok(true)
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn decompressor(
    file: File,
    compression: rbuild_store::Compression,
) -> Result<Box<dyn Read + Send>, StepError> {
    let limits = rbuild_store::Limits::from_env().map_err(|e| StepError::Invalid {
        message: e.to_string(),
    })?;
    rbuild_store::layer::decompress::decoder(file, compression, &limits).map_err(|e| {
        StepError::Archive {
            message: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let re = glob_regex("*.txt").unwrap();
        assert!(re.is_match("a.txt") && !re.is_match("a.txt.bak"));
        let re = glob_regex("fil?[0-9]").unwrap();
        assert!(re.is_match("file1") && !re.is_match("file"));
        let re = glob_path_regex("**/*.log").unwrap();
        assert!(re.is_match("a.log") && re.is_match("x/y/a.log") && !re.is_match("a.logx"));
        let re = glob_path_regex("tmp").unwrap();
        assert!(re.is_match("tmp") && re.is_match("tmp/x") && !re.is_match("tmpx"));
    }

    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};

    use rbuild_solver::op::FileSource;

    fn op(sources: &[&str], dest: &str) -> CopyOp {
        CopyOp {
            add: false,
            from: FileSource::Stage(0),
            sources: sources
                .iter()
                .map(|p| CopySource::Path {
                    path: p.to_string(),
                    span: 0..0,
                })
                .collect(),
            dest: dest.into(),
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            excludes: Vec::new(),
            checksum: None,
            keep_git_dir: false,
            unpack: None,
            workdir: "/".into(),
        }
    }

    /// A step writing into its upper directory over `image`, copying from `source`.
    struct Step {
        image: tempfile::TempDir,
        source: tempfile::TempDir,
        upper: tempfile::TempDir,
    }

    impl Step {
        fn new() -> Step {
            Step {
                image: tempfile::tempdir().unwrap(),
                source: tempfile::tempdir().unwrap(),
                upper: tempfile::tempdir().unwrap(),
            }
        }
        fn run(&self, op: &CopyOp) -> Result<(), StepError> {
            let dest = Dest::upper(self.upper.path(), &[self.image.path().to_path_buf()]).unwrap();
            let inputs = CopyInputs {
                context: None,
                step: None,
                source_layers: Some(vec![self.source.path().to_path_buf()]),
                reuse: None,
            };
            copy(&dest, op, &inputs)
        }
        fn out(&self, rel: &str) -> std::fs::Metadata {
            std::fs::symlink_metadata(self.upper.path().join(rel)).unwrap()
        }
    }

    fn mkdir(root: &Path, rel: &str, mode: u32, owner: u32) {
        let p = root.join(rel);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&p, Some(owner), Some(owner)).unwrap();
    }

    /// A directory's contents merged into an existing directory leave its mode and owner
    /// alone (only the mtime comes from the source); `--chmod` applies to what is copied.
    #[test]
    fn merging_into_an_existing_directory_keeps_its_mode_and_owner() {
        let step = Step::new();
        mkdir(step.image.path(), "tmp", 0o1777, 7);
        mkdir(step.source.path(), "conf/sub", 0o700, 0);
        mkdir(step.source.path(), "conf", 0o700, 0);
        std::fs::write(step.source.path().join("conf/a"), "a").unwrap();
        let mut op = op(&["/conf/"], "/tmp/");
        op.chmod = Some("640".into());
        op.chown = Some("5:5".into());
        step.run(&op).unwrap();
        let tmp = step.out("tmp");
        assert_eq!((tmp.mode() & 0o7777, tmp.uid()), (0o1777, 7));
        let src_mtime = std::fs::metadata(step.source.path().join("conf"))
            .unwrap()
            .mtime();
        assert_eq!(tmp.mtime(), src_mtime);
        let a = step.out("tmp/a");
        assert_eq!((a.mode() & 0o7777, a.uid(), a.gid()), (0o640, 5, 5));
        assert_eq!(step.out("tmp/sub").mode() & 0o7777, 0o640);
    }

    /// A missing merge destination is created like a destination parent: 0755 (or an octal
    /// `--chmod`), owned per `--chown` — not with the source directory's mode.
    #[test]
    fn missing_merge_destination_is_created_as_a_parent() {
        let step = Step::new();
        mkdir(step.source.path(), "conf", 0o700, 3);
        std::fs::write(step.source.path().join("conf/a"), "a").unwrap();
        step.run(&op(&["/conf"], "/new/dir")).unwrap();
        let d = step.out("new/dir");
        assert_eq!((d.mode() & 0o7777, d.uid()), (0o755, 0));
        let mut with_chown = op(&["/conf"], "/other/");
        with_chown.chown = Some("9".into());
        with_chown.chmod = Some("u+x,g-w".into());
        step.run(&with_chown).unwrap();
        let d = step.out("other");
        assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o755, 9, 9));
    }

    /// Created parents: 0755 with a symbolic `--chmod`, the permission bits of an octal one.
    #[test]
    fn parent_modes_follow_buildkit() {
        let symbolic = Chmod::parse("u+x,g-w").unwrap();
        let octal = Chmod::parse("4750").unwrap();
        assert_eq!(Parents::new(None, Some(&symbolic)).mode, 0o755);
        assert_eq!(Parents::new(Some((1, 2)), Some(&octal)).mode, 0o750);
        assert_eq!(Parents::new(Some((1, 2)), None).owner, (1, 2));
        let step = Step::new();
        std::fs::write(step.source.path().join("f"), "f").unwrap();
        let mut o = op(&["/f"], "/a/b/");
        o.chmod = Some("u+x,g-w".into());
        step.run(&o).unwrap();
        assert_eq!(step.out("a").mode() & 0o7777, 0o755);
        assert_eq!(step.out("a/b/f").mode() & 0o7777, 0o744);
    }

    /// A destination that is a symlink is written through (resolved in the image), dangling
    /// or not; the link itself stays.
    #[test]
    fn symlink_destinations_are_written_through() {
        let step = Step::new();
        mkdir(step.image.path(), "etc", 0o755, 0);
        symlink("/etc/target", step.image.path().join("dangling")).unwrap();
        symlink("etc", step.image.path().join("dirlink")).unwrap();
        std::fs::write(step.source.path().join("f"), "f").unwrap();
        step.run(&op(&["/f"], "/dangling")).unwrap();
        step.run(&op(&["/f"], "/dirlink")).unwrap();
        assert!(step.out("etc/target").is_file());
        assert!(step.out("etc/f").is_file());
        assert!(!step.upper.path().join("dangling").exists());
        assert!(!step.upper.path().join("dirlink").exists());
    }

    /// `COPY --from` copies a FIFO as a FIFO, and a device node as one.
    #[test]
    fn fifos_are_copied() {
        let step = Step::new();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            step.source.path().join("p"),
            FileType::Fifo,
            Mode::from_raw_mode(0o640),
            0,
        )
        .unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            step.source.path().join("null"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        step.run(&op(&["/p"], "/q")).unwrap();
        step.run(&op(&["/null"], "/dev/")).unwrap();
        let q = step.out("q");
        assert!(q.file_type().is_fifo());
        assert_eq!(q.mode() & 0o7777, 0o640);
        let null = step.out("dev/null");
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    }

    /// A socket inside a copied directory is left out; named as the source it is an error.
    #[test]
    fn sockets_are_left_out_of_directories() {
        let step = Step::new();
        mkdir(step.source.path(), "run", 0o755, 0);
        std::fs::write(step.source.path().join("run/pid"), "1").unwrap();
        let _listener =
            std::os::unix::net::UnixListener::bind(step.source.path().join("run/s.sock")).unwrap();
        step.run(&op(&["/run"], "/out/")).unwrap();
        assert!(step.out("out/pid").is_file());
        assert!(!step.upper.path().join("out/s.sock").exists());
        let e = step.run(&op(&["/run/s.sock"], "/x")).unwrap_err();
        assert!(
            matches!(&e, StepError::Invalid { message } if message.contains("socket")),
            "{e:?}"
        );
    }

    /// Wildcards matching nothing copy nothing (alone or together); a literal missing
    /// source is an error.
    #[test]
    fn empty_wildcards_copy_nothing() {
        let step = Step::new();
        std::fs::write(step.source.path().join("f"), "f").unwrap();
        step.run(&op(&["/none*"], "/out/")).unwrap();
        step.run(&op(&["/none*", "/no[p]e"], "/out/")).unwrap();
        assert!(
            std::fs::read_dir(step.upper.path())
                .unwrap()
                .next()
                .is_none()
        );
        let e = step.run(&op(&["/none*", "/missing"], "/out/")).unwrap_err();
        assert!(matches!(e, StepError::SourceMissing { .. }), "{e:?}");
        // One match renames the file, as BuildKit does.
        step.run(&op(&["/f*"], "/renamed")).unwrap();
        assert!(step.out("renamed").is_file());
    }

    /// `COPY --parents --from` keeps the path below the pivot with its directories.
    #[test]
    fn parents_from_a_stage_keep_their_directories() {
        let step = Step::new();
        mkdir(step.source.path(), "a/b/c", 0o750, 4);
        mkdir(step.source.path(), "a/x", 0o755, 0);
        std::fs::write(step.source.path().join("a/b/c/f.js"), "f").unwrap();
        std::fs::write(step.source.path().join("a/x/g.js"), "g").unwrap();
        std::fs::write(step.source.path().join("a/x/h.txt"), "h").unwrap();
        let mut o = op(&["/a/./b/c/f.js", "/a/**/g.js"], "/out/");
        o.parents = true;
        step.run(&o).unwrap();
        assert!(step.out("out/b/c/f.js").is_file());
        let c = step.out("out/b/c");
        assert_eq!((c.mode() & 0o7777, c.uid()), (0o750, 4));
        assert!(step.out("out/a/x/g.js").is_file());
        assert!(!step.upper.path().join("out/a/x/h.txt").exists());
        assert!(!step.upper.path().join("out/a/b").exists());
        let mut whole = op(&["/a/./"], "/whole/");
        whole.parents = true;
        step.run(&whole).unwrap();
        assert!(step.out("whole/b/c/f.js").is_file() && step.out("whole/x/h.txt").is_file());
        let mut missing = op(&["/a/./nope.js"], "/out/");
        missing.parents = true;
        assert!(matches!(
            step.run(&missing).unwrap_err(),
            StepError::SourceMissing { .. }
        ));
    }

    #[test]
    fn tar_detection() {
        let mut header = tar::Header::new_ustar();
        header.set_path("a").unwrap();
        header.set_size(0);
        header.set_cksum();
        assert!(looks_like_tar(header.as_bytes()));
        assert!(!looks_like_tar(&[0u8; 512]));
        assert!(!looks_like_tar(b"hello"));
    }
}
