//! The build-context errors: reading the context and its `.dockerignore` (`ContextError`) and
//! resolving COPY/ADD sources (`SourceError`, labelled at the source's span in the Dockerfile,
//! with the `.dockerignore` rule that excluded a path as a related, labelled diagnostic).

use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, SourceSpan};
use rbuild_parser::diagnostics::CutSource;
use thiserror::Error;

/// Source text for diagnostics (a Dockerfile or a `.dockerignore`), cheap to clone into
/// every error that labels it. A huge line shows as a window around the span.
pub type Source = Arc<CutSource<Arc<str>>>;

/// Makes a [`Source`] from a display name and text.
pub fn source(name: impl AsRef<str>, text: impl Into<Arc<str>>) -> Source {
    Arc::new(CutSource::new(name.as_ref(), text.into()))
}

/// Failure to read the build context, parse its `.dockerignore`, or hash its files.
#[derive(Debug, Error, Diagnostic)]
pub enum ContextError {
    /// An I/O error on a named path.
    #[error("cannot read `{path}` in the build context: {source}")]
    #[diagnostic(
        code(rbuild::context::io),
        help("check that the path exists and is readable by the user running rbuild")
    )]
    Io {
        /// The path (absolute or context-relative) that failed.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The context directory is not a directory.
    #[error("build context `{path}` is not a directory")]
    #[diagnostic(
        code(rbuild::context::not_a_directory),
        help("pass a directory as the build context, e.g. `rbuild build .`")
    )]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },

    /// A `.dockerignore` line that is not a valid pattern.
    #[error("invalid pattern in `{file}` line {line}: {reason}")]
    #[diagnostic(
        code(rbuild::context::dockerignore),
        help(
            "patterns use Go `filepath.Match` syntax plus `**`; escape a literal `[` as `[[]` \
             and a literal `\\` as `\\\\`"
        )
    )]
    BadIgnorePattern {
        /// Display name of the ignore file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
        /// The ignore file's text.
        #[source_code]
        src: Source,
        /// The offending part of the line.
        #[label("{reason}")]
        span: SourceSpan,
    },

    /// The ignore file is larger than any real one (`/dev/zero`, a generated blob).
    #[error("`{path}` is larger than {limit} MiB, the limit for an ignore file")]
    #[diagnostic(
        code(rbuild::context::dockerignore_too_large),
        help("an ignore file lists patterns, one per line; remove or shorten it")
    )]
    IgnoreFileTooLarge { path: String, limit: u64 },

    /// The context's `.dockerignore` is a symlink that leaves the context.
    #[error("`.dockerignore` is a symlink to `{target}`, which is outside the build context")]
    #[diagnostic(
        code(rbuild::context::dockerignore_escape),
        help("replace the symlink with a regular file inside the context")
    )]
    IgnoreFileEscapes {
        /// The symlink's target as stored.
        target: String,
    },

    /// A file changed (size, mtime, ctime or inode) between the walk and the end of hashing.
    #[error("file changed while the build context was being read: `{path}`")]
    #[diagnostic(
        code(rbuild::context::file_changed),
        help("stop the process that is writing to the context and build again")
    )]
    FileChanged {
        /// Context-relative path.
        path: String,
        /// Which stat field differed.
        detail: String,
    },

    /// A file that a caller asked for is not a regular file of the walked context.
    #[error("`{path}` is not a regular file of the build context")]
    #[diagnostic(code(rbuild::context::not_a_file))]
    NotAFile {
        /// Context-relative path.
        path: String,
    },
}

impl ContextError {
    /// An I/O error on `path`.
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        ContextError::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// The `.dockerignore` rule that excluded a path, shown as a related diagnostic pointing at the
/// rule's line.
#[derive(Debug, Error, Diagnostic)]
#[error("`{file}:{line}` excludes `{path}`")]
#[diagnostic(code(rbuild::context::excluded_here), severity(Advice))]
pub struct ExcludedHere {
    /// Display name of the ignore file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The excluded path.
    pub path: String,
    /// The ignore file's text.
    #[source_code]
    pub src: Source,
    /// The rule on that line.
    #[label("this rule excludes it")]
    pub span: SourceSpan,
}

/// Why a COPY/ADD source could not be resolved; every variant is labelled at the source's span
/// in the Dockerfile.
#[derive(Debug, Error, Diagnostic)]
pub enum SourceError {
    /// Nothing at that path in the context.
    #[error("COPY source `{source_text}` not found in the build context")]
    #[diagnostic(code(rbuild::context::source_not_found), help("{help}"))]
    NotFound {
        /// The source as written.
        source_text: String,
        /// A suggestion ("did you mean `src/`?") or where the context is.
        help: String,
        /// The Dockerfile.
        #[source_code]
        src: Source,
        /// The source's span.
        #[label("not in the context")]
        span: SourceSpan,
    },

    /// The path exists but `.dockerignore` excludes it.
    #[error("COPY source `{source_text}` is excluded by {rule_ref}")]
    #[diagnostic(code(rbuild::context::source_excluded), help("{help}"))]
    Excluded {
        /// The source as written.
        source_text: String,
        /// The rule, as "`.dockerignore:3` (`*.txt`)".
        rule_ref: String,
        /// What to change.
        help: String,
        /// The Dockerfile.
        #[source_code]
        src: Source,
        /// The source's span.
        #[label("excluded from the build context")]
        span: SourceSpan,
        /// The rule, pointing at its line in the ignore file.
        #[related]
        rule: Vec<ExcludedHere>,
    },

    /// The source climbs out of the context (`../x`) and what it is clamped to does not exist.
    #[error("COPY source `{source_text}` is outside the build context")]
    #[diagnostic(
        code(rbuild::context::source_outside),
        help(
            "sources are relative to the context root and cannot leave it: `{source_text}` \
             means `{clamped}` inside the context, which does not exist; move the file into the \
             context or build with a different context directory"
        )
    )]
    Outside {
        /// The source as written.
        source_text: String,
        /// What it means inside the context.
        clamped: String,
        /// The Dockerfile.
        #[source_code]
        src: Source,
        /// The source's span.
        #[label("outside the context")]
        span: SourceSpan,
    },

    /// Following a symlink would leave the context.
    #[error(
        "COPY source `{source_text}` leaves the build context through symlink `{link}` -> `{target}`"
    )]
    #[diagnostic(
        code(rbuild::context::symlink_escape),
        help(
            "a symlink given as a source is followed only inside the context; copy the target \
             into the context, or copy the directory holding the link (links inside copied \
             directories are copied as links)"
        )
    )]
    SymlinkEscape {
        /// The source as written.
        source_text: String,
        /// Context-relative path of the link.
        link: String,
        /// Its target.
        target: String,
        /// The Dockerfile.
        #[source_code]
        src: Source,
        /// The source's span.
        #[label("leaves the context through `{link}`")]
        span: SourceSpan,
    },

    /// Too many symlinks while resolving (a loop).
    #[error(
        "too many levels of symbolic links resolving COPY source `{source_text}` (at `{link}`)"
    )]
    #[diagnostic(
        code(rbuild::context::symlink_loop),
        help("the symlinks form a loop or a chain longer than 40 links")
    )]
    SymlinkLoop {
        /// The source as written.
        source_text: String,
        /// The link where the limit was hit.
        link: String,
        /// The Dockerfile.
        #[source_code]
        src: Source,
        /// The source's span.
        #[label("symlink loop")]
        span: SourceSpan,
    },

    /// A wildcard that matched nothing, when no other source of the instruction matched either.
    #[error("no file in the build context matches `{source_text}`")]
    #[diagnostic(code(rbuild::context::no_match), help("{help}"))]
    NoMatch {
        /// The source as written.
        source_text: String,
        /// A suggestion.
        help: String,
        /// The Dockerfile.
        #[source_code]
        src: Source,
        /// The source's span.
        #[label("matches nothing")]
        span: SourceSpan,
    },

    /// A path component below the source is not a directory (`file.txt/x`).
    #[error("COPY source `{source_text}`: `{component}` is not a directory")]
    #[diagnostic(
        code(rbuild::context::not_a_directory),
        help("remove the part after `{component}`")
    )]
    NotADirectory {
        /// The source as written.
        source_text: String,
        /// The component that is a file.
        component: String,
        /// The Dockerfile.
        #[source_code]
        src: Source,
        /// The source's span.
        #[label("not a directory")]
        span: SourceSpan,
    },

    /// A file whose name starts with `.wh.` would be copied; OCI layers cannot represent it.
    #[error("cannot add file with reserved whiteout prefix: `{path}`")]
    #[diagnostic(
        code(rbuild::context::reserved_name),
        help(
            "names starting with `.wh.` mark deletions in OCI layers; rename the file or exclude \
             it with `.dockerignore` or `--exclude`"
        )
    )]
    ReservedName {
        /// Context-relative path.
        path: String,
        /// The Dockerfile.
        #[source_code]
        src: Source,
        /// The source's span.
        #[label("copies `{path}`")]
        span: SourceSpan,
    },

    /// A device node would be copied.
    #[error("refusing to copy device file `{path}` from the build context")]
    #[diagnostic(
        code(rbuild::context::device_file),
        help(
            "device nodes are never copied from a build context; exclude it with \
             `.dockerignore` or `--exclude`, or create it in a RUN step with `mknod`"
        )
    )]
    DeviceFile {
        /// Context-relative path.
        path: String,
        /// The Dockerfile.
        #[source_code]
        src: Source,
        /// The source's span.
        #[label("copies `{path}`")]
        span: SourceSpan,
    },

    /// An invalid `--exclude` pattern.
    #[error("invalid --exclude pattern `{pattern}`: {reason}")]
    #[diagnostic(
        code(rbuild::context::bad_exclude),
        help("patterns use Go `filepath.Match` syntax plus `**`")
    )]
    BadExclude {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: String,
        /// The Dockerfile.
        #[source_code]
        src: Source,
        /// The pattern's span.
        #[label("{reason}")]
        span: SourceSpan,
    },

    /// A wildcard in a source is not a valid pattern.
    #[error("invalid wildcard in COPY source `{source_text}`: {reason}")]
    #[diagnostic(
        code(rbuild::context::bad_wildcard),
        help("wildcards use Go `filepath.Match` syntax; escape a literal `[` as `[[]`")
    )]
    BadWildcard {
        /// The source as written.
        source_text: String,
        /// What is wrong.
        reason: String,
        /// The Dockerfile.
        #[source_code]
        src: Source,
        /// The source's span.
        #[label("{reason}")]
        span: SourceSpan,
    },

    /// Reading the context failed while resolving.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Context(#[from] ContextError),
}
