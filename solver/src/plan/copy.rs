//! COPY and ADD: expanded sources (paths, here-documents, URLs), the destination resolved
//! against WORKDIR with its trailing slash kept, `--from` resolved to a stage or an image, and
//! `--chown`/`--chmod`/`--exclude` expanded and validated.

use std::collections::BTreeMap;

use rbuild_parser::{Add, Copy, CopyFlags, Heredoc, Span, Word};

use super::Ctx;
use super::error::PlanError;
use super::expand;
use super::meta::clean_path;
use super::state::StageState;
use crate::chmod::Chmod;
use crate::op::{CopyOp, CopySource, FileSource, Op, Step};

struct Common {
    sources: Vec<CopySource>,
    dest: String,
    dest_written: String,
    chown: Option<String>,
    chmod: Option<String>,
    link: bool,
    excludes: Vec<String>,
    used: BTreeMap<String, Option<String>>,
}

#[allow(clippy::too_many_arguments)]
fn common(
    ctx: &Ctx<'_>,
    state: &StageState,
    name: &str,
    sources: &[Word],
    heredocs: &[Heredoc],
    dest: &Word,
    flags: &CopyFlags,
    allow_urls: bool,
) -> Result<Common, PlanError> {
    let mut used = BTreeMap::new();
    let escape = ctx.escape;
    let mut out = Vec::new();
    for word in sources {
        let value = expand::word(&state.vars, word, escape, &mut used)?;
        let span = word.span.start..word.span.end;
        // BuildKit's order: a git URL first (a malformed one is an error even for COPY), then
        // an http(s) download, then a path. `github.com/...` stays a path here, as in BuildKit.
        let git = crate::gitref::parse(&value).map_err(|message| {
            PlanError::invalid(
                word.span,
                format!(
                    "invalid git URL `{}`: {message}",
                    crate::inputs::redact(&value)
                ),
                "this git URL",
                Some(
                    "write `https://host/repo.git#REF:SUBDIR`, `git@host:repo.git#REF` or \
                     `git://host/repo#REF` (query keys: ref, tag, branch, subdir, checksum, \
                     keep-git-dir, submodules, mtime)"
                        .into(),
                ),
            )
        })?;
        if let Some(git) = git.filter(|g| !g.github_shorthand) {
            if !allow_urls {
                return Err(PlanError::invalid(
                    word.span,
                    format!("source can't be a git ref for {name}"),
                    "a git URL",
                    Some("use ADD to copy a git repository".into()),
                ));
            }
            out.push(CopySource::Git {
                url: value,
                git,
                span,
            });
        } else if value.starts_with("http://") || value.starts_with("https://") {
            if !allow_urls {
                return Err(PlanError::invalid(
                    word.span,
                    format!("source can't be a URL for {name}"),
                    "a URL",
                    Some("use ADD to download files".into()),
                ));
            }
            out.push(CopySource::Url { url: value, span });
        } else {
            out.push(CopySource::Path { path: value, span });
        }
    }
    for doc in heredocs {
        let body = Word::new(doc.content().into_owned(), doc.span);
        let content = if doc.expand {
            expand::raw(&state.vars, &body, &mut used)?
        } else {
            body.value
        };
        out.push(CopySource::Heredoc {
            name: doc.name.clone(),
            content: content.into_bytes(),
            span: doc.span.start..doc.span.end,
        });
    }
    if out.is_empty() {
        return Err(PlanError::invalid(
            dest.span,
            format!(
                "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
            ),
            "only a destination",
            Some(format!("write `{name} <source>... <destination>`")),
        ));
    }
    let dest_written = expand::word(&state.vars, dest, escape, &mut used)?;
    let resolved = relative_to_workdir(&state.workdir(), &dest_written);
    if out.len() > 1 && !resolved.ends_with('/') {
        return Err(PlanError::invalid(
            dest.span,
            format!(
                "when using {name} with more than one source file, the destination must be a directory and end with a /"
            ),
            "not ending in /",
            Some(format!("write `{dest_written}/`")),
        ));
    }
    let chown = match &flags.chown {
        Some(flag) => Some(expand_flag(
            ctx,
            state,
            flag.raw.as_str(),
            flag.span,
            &mut used,
        )?),
        None => None,
    };
    let chmod = match &flags.chmod {
        Some(flag) => {
            let value = expand_flag(ctx, state, flag.raw.as_str(), flag.span, &mut used)?;
            Chmod::parse(&value).map_err(|message| {
                PlanError::invalid(
                    flag.span,
                    format!("invalid --chmod: {message}"),
                    if value == flag.raw {
                        "invalid --chmod".to_string()
                    } else {
                        format!("`{}` expands to `{value}`", flag.raw)
                    },
                    Some(
                        "use an octal mode like `0644` or a symbolic one like `u=rwX,go=rX`".into(),
                    ),
                )
            })?;
            Some(value)
        }
        None => None,
    };
    let link = flags.link.as_ref().is_some_and(|f| f.value.unwrap_or(true));
    let mut excludes = Vec::new();
    for flag in &flags.exclude {
        excludes.push(expand_flag(ctx, state, &flag.raw, flag.span, &mut used)?);
    }
    Ok(Common {
        sources: out,
        dest: resolved,
        dest_written,
        chown,
        chmod,
        link,
        excludes,
        used,
    })
}

fn expand_flag(
    ctx: &Ctx<'_>,
    state: &StageState,
    raw: &str,
    span: Span,
    used: &mut BTreeMap<String, Option<String>>,
) -> Result<String, PlanError> {
    expand::word(&state.vars, &Word::new(raw, span), ctx.escape, used)
}

/// BuildKit's pathRelativeToWorkingDir: absolute paths are cleaned, `.`/empty mean the
/// working directory itself, and a trailing `/` is kept because it means "into".
pub fn relative_to_workdir(workdir: &str, dest: &str) -> String {
    let dir_like = dest.is_empty()
        || dest == "."
        || dest.ends_with('/')
        || dest.ends_with("/.")
        || dest == "..";
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{workdir}/{dest}")
    };
    let mut cleaned = clean_path(&joined);
    if dir_like && !cleaned.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

fn canonical(kind: &str, c: &Common, extra: &[String]) -> String {
    let mut parts = vec![kind.to_string()];
    parts.extend(extra.iter().cloned());
    if let Some(chown) = &c.chown {
        parts.push(format!("--chown={chown}"));
    }
    if let Some(chmod) = &c.chmod {
        parts.push(format!("--chmod={chmod}"));
    }
    if c.link {
        parts.push("--link".into());
    }
    for ex in &c.excludes {
        parts.push(format!("--exclude={ex}"));
    }
    let sources: Vec<String> = c
        .sources
        .iter()
        .map(|s| match s {
            CopySource::Path { path, .. } => path.clone(),
            CopySource::Url { url, .. } | CopySource::Git { url, .. } => url.clone(),
            CopySource::Heredoc { name, content, .. } => {
                format!("<<{name}:{}", blake3::hash(content).to_hex())
            }
        })
        .collect();
    parts.push(serde_json::to_string(&sources).expect("strings serialise"));
    parts.push(c.dest.clone());
    parts.join(" ")
}

fn history(kind: &str, c: &Common, parents: bool) -> String {
    let mut text = kind.to_string();
    if parents {
        text.push_str(" --parents");
    }
    if let Some(chown) = &c.chown {
        text.push_str(&format!(" --chown={chown}"));
    }
    if let Some(chmod) = &c.chmod {
        text.push_str(&format!(" --chmod={chmod}"));
    }
    for s in &c.sources {
        match s {
            CopySource::Path { path, .. } => text.push_str(&format!(" {path}")),
            CopySource::Url { url, .. } | CopySource::Git { url, .. } => {
                text.push_str(&format!(" {}", crate::inputs::redact(url)))
            }
            CopySource::Heredoc { .. } => {}
        }
    }
    for s in &c.sources {
        if let CopySource::Heredoc { name, .. } = s {
            text.push_str(&format!(" <<{name}"));
        }
    }
    text.push_str(&format!(" {} # buildkit", c.dest_written));
    text
}

pub fn dispatch_copy(
    ctx: &Ctx<'_>,
    state: &mut StageState,
    stage: usize,
    copy: &Copy,
    step: &mut Step,
) -> Result<(), PlanError> {
    let c = common(
        ctx,
        state,
        "COPY",
        &copy.sources,
        &copy.heredocs,
        &copy.dest,
        &copy.flags,
        false,
    )?;
    let from = match &copy.from {
        None => FileSource::Context,
        Some(flag) => {
            if flag.raw.contains('$') {
                return Err(PlanError::FromExpansion {
                    span: flag.span.into(),
                });
            }
            match ctx.stage_ref(&flag.raw, stage, flag.span)? {
                Some(i) => FileSource::Stage(i),
                None => {
                    let resolved = ctx.resolve_not_stage(
                        &flag.raw,
                        flag.span,
                        ctx.names,
                        ctx.target_platform,
                    )?;
                    step.key.inputs.insert(
                        "from-image".into(),
                        resolved.base.manifest_digest.to_string(),
                    );
                    FileSource::Image(resolved.base)
                }
            }
        }
    };
    let parents = copy
        .parents
        .as_ref()
        .is_some_and(|f| f.value.unwrap_or(true));
    let mut extra = Vec::new();
    if let Some(flag) = &copy.from {
        extra.push(format!("--from={}", flag.raw));
    }
    if parents {
        extra.push("--parents".into());
    }
    step.key.canonical = canonical("COPY", &c, &extra);
    step.key.vars = c.used.clone();
    step.created_by = history("COPY", &c, parents);
    step.op = Op::Copy(CopyOp {
        add: false,
        from,
        sources: c.sources,
        dest: c.dest,
        chown: c.chown,
        chmod: c.chmod,
        link: c.link,
        parents,
        excludes: c.excludes,
        checksum: None,
        keep_git_dir: false,
        unpack: None,
        workdir: state.workdir(),
    });
    Ok(())
}

pub fn dispatch_add(
    ctx: &Ctx<'_>,
    state: &mut StageState,
    add: &Add,
    step: &mut Step,
) -> Result<(), PlanError> {
    let mut c = common(
        ctx,
        state,
        "ADD",
        &add.sources,
        &add.heredocs,
        &add.dest,
        &add.flags,
        true,
    )?;
    let keep_flag = add.keep_git_dir.as_ref().map(|f| f.value.unwrap_or(true));
    let checksum = match &add.checksum {
        Some(flag) => {
            let value = expand_flag(ctx, state, &flag.raw, flag.span, &mut c.used)?;
            let downloads = c
                .sources
                .iter()
                .filter(|s| matches!(s, CopySource::Url { .. } | CopySource::Git { .. }))
                .count();
            if c.sources.len() != 1 || downloads != 1 {
                return Err(PlanError::invalid(
                    flag.span,
                    "--checksum needs exactly one http(s) or git source",
                    "checksum of what?",
                    Some("use `ADD --checksum=sha256:<hex> https://... <dest>`".into()),
                ));
            }
            let git = matches!(c.sources[0], CopySource::Git { .. });
            let valid = if git {
                !value.is_empty() && value.bytes().all(|b| b.is_ascii_hexdigit())
            } else {
                value
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            };
            if !valid {
                return Err(PlanError::invalid(
                    flag.span,
                    format!("invalid checksum `{value}`"),
                    if git {
                        "expected the commit's hex digits"
                    } else {
                        "expected sha256:<64 hex digits>"
                    },
                    None,
                ));
            }
            Some(value)
        }
        None => None,
    };
    // Per git source: `--keep-git-dir` and `--checksum` merged with the URL's own query, as
    // BuildKit does (a disagreement is an error), so the source says what it fetches.
    for source in &mut c.sources {
        let CopySource::Git { git, span, .. } = source else {
            continue;
        };
        let at = Span::new(span.start, span.end);
        if let (Some(flag), Some(query)) = (keep_flag, git.keep_git_dir)
            && flag != query
        {
            return Err(PlanError::invalid(
                at,
                "inconsistent keep-git-dir configuration",
                "the URL's keep-git-dir differs from --keep-git-dir",
                Some("give keep-git-dir once, as the flag or in the URL".into()),
            ));
        }
        git.keep_git_dir = Some(git.keep_git_dir.or(keep_flag).unwrap_or(false));
        if let Some(sum) = &checksum {
            if let Some(own) = &git.checksum
                && own != sum
            {
                return Err(PlanError::invalid(
                    at,
                    format!("checksum mismatch `{sum}` != `{own}`"),
                    "the URL's checksum differs from --checksum",
                    None,
                ));
            }
            git.checksum = Some(sum.clone());
        }
    }
    let keep_git_dir = keep_flag.unwrap_or(false);
    let unpack = add.unpack.as_ref().and_then(|f| f.value);
    let mut extra = Vec::new();
    if let Some(sum) = &checksum {
        extra.push(format!("--checksum={sum}"));
    }
    if let Some(u) = unpack {
        extra.push(format!("--unpack={u}"));
    }
    if let Some(keep) = keep_flag {
        extra.push(format!("--keep-git-dir={keep}"));
    }
    step.key.canonical = canonical("ADD", &c, &extra);
    step.key.vars = c.used.clone();
    step.created_by = history("ADD", &c, false);
    step.op = Op::Copy(CopyOp {
        add: true,
        from: FileSource::Context,
        sources: c.sources,
        dest: c.dest,
        chown: c.chown,
        chmod: c.chmod,
        link: c.link,
        parents: false,
        excludes: c.excludes,
        checksum,
        keep_git_dir,
        unpack,
        workdir: state.workdir(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(relative_to_workdir("/app", "x"), "/app/x");
        assert_eq!(relative_to_workdir("/app", "x/"), "/app/x/");
        assert_eq!(relative_to_workdir("/app", "."), "/app/");
        assert_eq!(relative_to_workdir("/app", ""), "/app/");
        assert_eq!(relative_to_workdir("/app", "/abs"), "/abs");
        assert_eq!(relative_to_workdir("/app", "/abs/"), "/abs/");
        assert_eq!(relative_to_workdir("/", "a/../b"), "/b");
        assert_eq!(relative_to_workdir("/a/b", ".."), "/a/");
    }
}
