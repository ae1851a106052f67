//! Reading and parsing the Dockerfile for a build: the file (or stdin) with a size cap, its
//! display name, the parse with every error rendered against the source, and lint warnings
//! reported once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::Report;
use rbuild_parser::diagnostics::CutSource;
use rbuild_parser::{Dockerfile, Severity};

use crate::report::{Notice, Reporter};

/// The Dockerfile text and the name diagnostics show for it.
#[derive(Debug, Clone)]
pub struct DockerfileText {
    /// `Dockerfile`, `build/Dockerfile.prod` or `<stdin>`.
    pub name: String,
    /// Where it was read from (`None` for stdin).
    pub path: Option<PathBuf>,
    pub text: Arc<str>,
}

impl DockerfileText {
    /// The text for a report; a huge line shows as a window around the span.
    pub fn source(&self) -> CutSource<Arc<str>> {
        CutSource::new(&self.name, self.text.clone())
    }

    /// A planning or context error with the Dockerfile attached for rendering.
    pub fn report(&self, err: impl miette::Diagnostic + Send + Sync + 'static) -> Report {
        Report::new(err).with_source_code(self.source())
    }

    /// The Dockerfile attached to a report from the solver or the executor, whose labels
    /// point into it (a report that carries its own source keeps it).
    pub fn attach(&self, report: Report) -> Report {
        report.with_source_code(self.source())
    }
}

pub fn read(path: Option<&Path>) -> miette::Result<(DockerfileText, Vec<u8>)> {
    let bytes = read_bytes(path)?;
    let name = path.map_or_else(|| "<stdin>".to_string(), display_name);
    let text: Arc<str> = String::from_utf8_lossy(&bytes).into();
    Ok((
        DockerfileText {
            name,
            path: path.map(Path::to_path_buf),
            text,
        },
        bytes,
    ))
}

/// The default cap on a Dockerfile's size. BuildKit has no explicit one (its gRPC messages
/// stop at 16 MiB and its lines at 64 KiB); real Dockerfiles are kilobytes, and the cap keeps
/// `-f /dev/zero` or a stray binary from reading forever or flooding the terminal.
pub const MAX_DOCKERFILE_SIZE: u64 = 4 << 20;
/// Environment variable overriding [`MAX_DOCKERFILE_SIZE`] (a [`rbuild_store::size`] size,
/// binary units).
pub const ENV_MAX_DOCKERFILE_SIZE: &str = "RBUILD_MAX_DOCKERFILE_SIZE";

fn max_dockerfile_size() -> miette::Result<u64> {
    let Some(raw) = std::env::var_os(ENV_MAX_DOCKERFILE_SIZE) else {
        return Ok(MAX_DOCKERFILE_SIZE);
    };
    let raw = raw.to_string_lossy();
    use rbuild_store::size::{Base, help, parse};
    parse(&raw, Base::Binary).map_err(|e| {
        miette::miette!(
            code = "rbuild::usage::size",
            help = help(Base::Binary),
            "{ENV_MAX_DOCKERFILE_SIZE}: {e}"
        )
    })
}

/// The expansion limits of a build (defaults, or `RBUILD_EXPANSION_LIMIT` and
/// `RBUILD_EXPANSION_TOTAL`).
pub fn expansion_limits() -> miette::Result<rbuild_parser::shell::Limits> {
    use rbuild_parser::shell::{ENV_PER_BUILD, ENV_PER_WORD, Limits};
    use rbuild_store::size::{Base, help, parse};
    let mut limits = Limits::default();
    for (var, slot) in [
        (ENV_PER_WORD, &mut limits.per_word),
        (ENV_PER_BUILD, &mut limits.per_build),
    ] {
        let Some(raw) = std::env::var_os(var) else {
            continue;
        };
        let bytes = parse(&raw.to_string_lossy(), Base::Binary).map_err(|e| {
            miette::miette!(
                code = "rbuild::usage::size",
                help = help(Base::Binary),
                "{var}: {e}"
            )
        })?;
        *slot = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    Ok(limits)
}

/// A Dockerfile's bytes from `path` (`None`: stdin), read with the size cap so an endless
/// source (`/dev/zero`, a pipe that never closes its flood) stops at the cap.
pub fn read_bytes(path: Option<&Path>) -> miette::Result<Vec<u8>> {
    let shown = path.map_or_else(|| "<stdin>".to_string(), |p| p.display().to_string());
    let reader: Box<dyn Read> = match path {
        None => Box::new(std::io::stdin()),
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| {
                miette::miette!(
                    code = "rbuild::build::no_dockerfile",
                    help =
                        "pass the Dockerfile with `-f FILE`, or run from the directory that has it",
                    "cannot read the Dockerfile `{shown}`: {e}"
                )
            })?;
            if file.metadata().is_ok_and(|m| m.is_dir()) {
                return Err(miette::miette!(
                    code = "rbuild::build::no_dockerfile",
                    help = "pass the Dockerfile with `-f FILE`, not its directory",
                    "cannot read the Dockerfile `{shown}`: it is a directory"
                ));
            }
            Box::new(file)
        }
    };
    read_capped(reader, &shown)
}

/// Read a Dockerfile from `reader` with the size cap; `shown` names it in errors.
pub fn read_capped(reader: impl Read, shown: &str) -> miette::Result<Vec<u8>> {
    let cap = max_dockerfile_size()?;
    let mut bytes = Vec::new();
    reader.take(cap + 1).read_to_end(&mut bytes).map_err(|e| {
        miette::miette!(
            code = "rbuild::build::no_dockerfile",
            "cannot read the Dockerfile `{shown}`: {e}"
        )
    })?;
    if bytes.len() as u64 > cap {
        return Err(miette::miette!(
            code = "rbuild::build::dockerfile_too_large",
            help = format!(
                "a Dockerfile is text of at most {}; check the `-f` path, or set \
                 {ENV_MAX_DOCKERFILE_SIZE} to raise the limit",
                rbuild_parser::shell::human_size(cap as usize)
            ),
            "the Dockerfile `{shown}` is larger than {}",
            rbuild_parser::shell::human_size(cap as usize)
        ));
    }
    Ok(bytes)
}

fn display_name(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let shown = match cwd.as_deref().and_then(|c| path.strip_prefix(c).ok()) {
        Some(rel) => rel.to_path_buf(),
        None => path.to_path_buf(),
    };
    let shown = shown
        .strip_prefix("./")
        .unwrap_or(&shown)
        .display()
        .to_string();
    if shown.is_empty() {
        "Dockerfile".into()
    } else {
        shown
    }
}

/// How many parse errors (and, separately, warnings) a build prints.
pub const MAX_SHOWN: usize = 50;

/// Parse; report warnings (at most [`MAX_SHOWN`]); fail with every error rendered (the first
/// as the report, at most `MAX_SHOWN - 1` others reported before it).
pub fn parse(
    text: &DockerfileText,
    bytes: &[u8],
    reporter: &dyn Reporter,
) -> miette::Result<Dockerfile> {
    let parsed = rbuild_parser::parse_bytes(bytes).parsed;
    let source = text.source();
    let treat_warnings_as_errors = parsed.dockerfile.directives.check.error;
    let (errors, warnings): (Vec<_>, Vec<_>) = parsed
        .diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error || treat_warnings_as_errors);
    let total = warnings.len();
    for warning in warnings.into_iter().take(MAX_SHOWN) {
        let report = Report::new(warning).with_source_code(source.clone());
        reporter.notice(Notice::Diagnostic {
            report: &report,
            error: false,
        });
    }
    if total > MAX_SHOWN {
        reporter.notice(Notice::Message(&format!(
            "... and {} more warnings (`rbuild check --format json` lists them all)",
            total - MAX_SHOWN
        )));
    }
    if errors.is_empty() {
        return Ok(parsed.dockerfile);
    }
    let count = errors.len();
    let mut iter = errors.into_iter();
    let first = iter.next().expect("at least one error");
    for extra in iter.by_ref().take(MAX_SHOWN - 1) {
        let report = Report::new(extra).with_source_code(source.clone());
        reporter.notice(Notice::Diagnostic {
            report: &report,
            error: true,
        });
    }
    let hidden = iter.count();
    if hidden > 0 {
        reporter.notice(Notice::Problem(&format!(
            "... and {hidden} more errors (`rbuild check --format json` lists them all)"
        )));
    }
    let report = Report::new(first).with_source_code(source);
    if count > 1 {
        Err(report.wrap_err(format!("{count} errors in {}", text.name)))
    } else {
        Err(report)
    }
}
