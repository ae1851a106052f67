//! The main build context's source, made a directory the solver reads like any other
//! (`BuildContext`): a directory as given; `-` (stdin) holding a tar archive, unpacked into a
//! store-owned temporary directory with the store's in-root unpacker (compression sniffed:
//! gzip, bzip2, xz, zstd; `../` names refused, absolute names rooted, every path resolved in
//! the directory so a symlink cannot lead a later entry outside); `-` holding a Dockerfile (no
//! context: an empty directory, and a step that reads the context fails naming the step); or a
//! git URL checked out there by `rbuild_executor::git`. The temporary directory lives as long
//! as the [`MainContext`] (the build's `Session`).
//!
//! As in docker/BuildKit, the Dockerfile of a tar or git context is inside it: `Dockerfile`,
//! or `-f PATH` relative to the context's root. It is opened in-root (`openat2`
//! `RESOLVE_IN_ROOT`: a symlink inside the context resolves inside it), and a
//! `Dockerfile.dockerignore` beside it must not be a symlink. A git context keeps `.git` with
//! `?keep-git-dir` or `--build-arg BUILDKIT_CONTEXT_KEEP_GIT_DIR=1`, and its files take the
//! commit's time with `?mtime=commit` or when `SOURCE_DATE_EPOCH` is set (BuildKit's rules).

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::Report;
use rbuild_solver::gitref::GitMtime;
use rbuild_store::Store;
use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::dockerfile::{self, DockerfileText};
use crate::options::{ContextSource, DockerfileSource, PrepareOptions};
use crate::report::{Notice, Reporter};

/// The build arg that keeps `.git` in a git context (BuildKit's).
const KEEP_GIT_DIR_ARG: &str = "BUILDKIT_CONTEXT_KEEP_GIT_DIR";

/// The main context, ready to be read.
pub(crate) struct MainContext {
    /// The context's root directory.
    pub dir: PathBuf,
    pub dockerfile: DockerfileText,
    pub bytes: Vec<u8>,
    /// The Dockerfile's path on disk, for `<Dockerfile>.dockerignore` (None: stdin).
    pub dockerfile_path: Option<PathBuf>,
    /// False for `rbuild build - < Dockerfile`: there is no context to read.
    pub has_context: bool,
    /// Names this build's Dockerfile across builds (explanations, cache import), when the
    /// directory is temporary: `git:URL:FILE`, `stdin-tar:FILE`, `stdin`.
    pub site: Option<String>,
    /// Owns `dir` when it is temporary.
    pub temp: Option<Arc<tempfile::TempDir>>,
}

/// Make the context of `options` a directory and read its Dockerfile.
pub(crate) fn open(
    options: &PrepareOptions,
    store: &Store,
    reporter: &dyn Reporter,
) -> miette::Result<MainContext> {
    match &options.context {
        ContextSource::Dir(dir) => from_dir(dir, &options.dockerfile),
        ContextSource::Stdin => from_stdin(options, store),
        ContextSource::Git(url) => from_git(url, options, store, reporter),
    }
}

fn from_dir(dir: &Path, source: &DockerfileSource) -> miette::Result<MainContext> {
    if !dir.is_dir() {
        return Err(miette::miette!(
            code = "rbuild::build::no_context",
            help = "pass the directory that holds the files COPY uses, usually `.`; `-` reads \
                    a tar archive (or a Dockerfile) from stdin, and a git URL \
                    (`https://host/repo.git#ref`) is fetched",
            "the build context `{}` is not a directory",
            dir.display()
        ));
    }
    let path = match source {
        DockerfileSource::InContext => Some(dir.join("Dockerfile")),
        DockerfileSource::Path(path) => Some(path.clone()),
        DockerfileSource::Stdin => None,
    };
    let (text, bytes) = dockerfile::read(path.as_deref())?;
    Ok(MainContext {
        dir: dir.to_path_buf(),
        dockerfile: text,
        bytes,
        dockerfile_path: path,
        has_context: true,
        site: None,
        temp: None,
    })
}

fn temp_dir(store: &Store, prefix: &str) -> miette::Result<tempfile::TempDir> {
    let parent = store.layout().tmp();
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .map_err(|e| {
            Report::new(rbuild_store::Failure::new(
                rbuild_store::ErrorClass::Store,
                "rbuild::build::context_temp",
                format!("cannot create a directory in `{}`: {e}", parent.display()),
            ))
        })
}

fn from_stdin(options: &PrepareOptions, store: &Store) -> miette::Result<MainContext> {
    if options.dockerfile == DockerfileSource::Stdin {
        return Err(miette::miette!(
            code = "rbuild::usage::stdin_twice",
            help = "give the context as a directory (`-f - .`), or put the Dockerfile in the \
                    archive on stdin",
            "the context and the Dockerfile cannot both come from stdin"
        ));
    }
    let mut stdin = std::io::stdin();
    let mut head = Vec::with_capacity(1024);
    (&mut stdin)
        .take(1024)
        .read_to_end(&mut head)
        .map_err(|e| miette::miette!(code = "rbuild::build::stdin", "cannot read stdin: {e}"))?;
    let compression = rbuild_store::Compression::from_magic(&head);
    let archive = compression != rbuild_store::Compression::None
        || rbuild_store::layer::tar::looks_like_tar(&head);
    let rest = std::io::Cursor::new(head).chain(stdin);
    let temp = temp_dir(store, "context-")?;
    let dir = temp.path().join("context");
    std::fs::create_dir(&dir).map_err(|e| {
        miette::miette!(
            code = "rbuild::build::context_temp",
            "cannot create `{}`: {e}",
            dir.display()
        )
    })?;
    if !archive {
        if let DockerfileSource::Path(path) = &options.dockerfile {
            return Err(miette::miette!(
                code = "rbuild::usage::stdin_dockerfile",
                help = "drop `-f`, or send a tar archive of the context on stdin",
                "stdin holds a Dockerfile, and `-f {}` names another",
                path.display()
            ));
        }
        let bytes = dockerfile::read_capped(rest, "<stdin>")?;
        let text = DockerfileText {
            name: "<stdin>".into(),
            path: None,
            text: String::from_utf8_lossy(&bytes).into(),
        };
        return Ok(MainContext {
            dir,
            dockerfile: text,
            bytes,
            dockerfile_path: None,
            has_context: false,
            site: Some("stdin".into()),
            temp: Some(Arc::new(temp)),
        });
    }
    let limits = rbuild_store::Limits::from_env().map_err(Report::new)?;
    let bad = |e: rbuild_store::Error| {
        miette::miette!(
            code = "rbuild::build::context_archive",
            help = "send a tar archive (plain, gzip, bzip2, xz or zstd) whose names stay inside it",
            "cannot unpack the build context from stdin: {e}"
        )
    };
    let (_, reader) = rbuild_store::layer::decompress(rest, None, &limits, "the context on stdin")
        .map_err(bad)?;
    let mut opts = rbuild_store::layer::UnpackOptions::new(rbuild_store::layer::UnpackMode::Plain);
    opts.duplicates = rbuild_store::layer::DuplicatePolicy::LastWins;
    // The caller owns what it unpacks (the archive's owners would need privileges, and the
    // context's records use 0:0 whatever the files' owners).
    opts.owner = Some((
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    ));
    rbuild_store::layer::unpack(reader, &dir, &opts, &limits, "the context on stdin")
        .map_err(bad)?;
    let (text, bytes, path) = read_in_root(&dir, &options.dockerfile)?;
    Ok(MainContext {
        site: Some(format!("stdin-tar:{}", text.name)),
        dir,
        dockerfile: text,
        bytes,
        dockerfile_path: Some(path),
        has_context: true,
        temp: Some(Arc::new(temp)),
    })
}

fn from_git(
    url: &str,
    options: &PrepareOptions,
    store: &Store,
    reporter: &dyn Reporter,
) -> miette::Result<MainContext> {
    let shown = rbuild_solver::inputs::redact(url);
    let git = match rbuild_solver::gitref::parse(url) {
        Ok(Some(git)) => git,
        Ok(None) | Err(_) => {
            // `ContextSource::from_arg` only makes `Git` of a valid git URL.
            return Err(miette::miette!(
                code = "rbuild::usage::git_context",
                "`{shown}` is not a git URL"
            ));
        }
    };
    let keep_arg = match options.build_args.get(KEEP_GIT_DIR_ARG) {
        None => None,
        Some(v) => Some(parse_bool(v).ok_or_else(|| {
            miette::miette!(
                code = "rbuild::usage::build_arg",
                help = "use 1/true or 0/false",
                "invalid {KEEP_GIT_DIR_ARG}=`{v}`"
            )
        })?),
    };
    let keep_git_dir = git.keep_git_dir == Some(true) || keep_arg == Some(true);
    let mtime = match git.mtime {
        Some(m) => m,
        None if options.source_date_epoch.is_some() => GitMtime::Commit,
        None => GitMtime::Checkout,
    };
    reporter.notice(Notice::Message(&format!(
        "fetching the git context {shown}"
    )));
    let checkout = rbuild_executor::git::checkout(
        &store.layout().tmp(),
        &git,
        &rbuild_executor::git::CheckoutOptions {
            keep_git_dir,
            mtime,
        },
    )
    .map_err(|e| match e.help {
        Some(help) => miette::miette!(
            code = "rbuild::build::git_context",
            help = help,
            "cannot fetch the git context `{shown}`: {}",
            e.message
        ),
        None => miette::miette!(
            code = "rbuild::build::git_context",
            "cannot fetch the git context `{shown}`: {}",
            e.message
        ),
    })?;
    reporter.notice(Notice::Message(&format!(
        "git context {shown} at commit {}",
        checkout.commit
    )));
    let (text, bytes, path) = read_in_root(&checkout.root, &options.dockerfile)?;
    Ok(MainContext {
        site: Some(format!("git:{shown}:{}", text.name)),
        dir: checkout.root.clone(),
        dockerfile: text,
        bytes,
        dockerfile_path: Some(path),
        has_context: true,
        temp: Some(Arc::new(checkout.dir)),
    })
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The Dockerfile of a context that came as an archive or a repository: `Dockerfile` or the
/// `-f` path, relative to the context's root and resolved inside it. Returns the text, its
/// bytes and its real path (inside `root`).
fn read_in_root(
    root: &Path,
    source: &DockerfileSource,
) -> miette::Result<(DockerfileText, Vec<u8>, PathBuf)> {
    let name = match source {
        DockerfileSource::Path(p) => p.to_string_lossy().trim_start_matches('/').to_string(),
        _ => "Dockerfile".to_string(),
    };
    let missing = |e: &dyn std::fmt::Display| {
        miette::miette!(
            code = "rbuild::build::no_dockerfile",
            help = "the Dockerfile of a context from stdin or git is inside it: `Dockerfile` at \
                    its root, or `-f PATH` relative to its root",
            "cannot read the Dockerfile `{name}` in the build context: {e}"
        )
    };
    let dir = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| missing(&e))?;
    let fd = rustix::fs::openat2(
        dir.as_fd(),
        name.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| missing(&e))?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| missing(&e))?;
    if !meta.is_file() {
        return Err(missing(&"it is not a regular file"));
    }
    let real = std::fs::read_link(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        file.as_raw_fd()
    }))
    .map_err(|e| missing(&e))?;
    let root_real = std::fs::canonicalize(root).map_err(|e| missing(&e))?;
    if !real.starts_with(&root_real) {
        return Err(missing(&"it resolves outside the context"));
    }
    let mut ignore = real.clone().into_os_string();
    ignore.push(".dockerignore");
    if std::fs::symlink_metadata(&ignore).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(miette::miette!(
            code = "rbuild::build::context_ignore",
            help = "make it a regular file in the context",
            "`{name}.dockerignore` in the build context is a symlink"
        ));
    }
    let bytes = dockerfile::read_capped(file, &name)?;
    let text = DockerfileText {
        name: name.clone(),
        path: None,
        text: String::from_utf8_lossy(&bytes).into(),
    };
    Ok((text, bytes, real))
}
