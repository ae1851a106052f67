//! Reading and parsing the Dockerfile for a build: the file (or stdin), its display name, the
//! parse with every error rendered against the source, and lint warnings printed once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{NamedSource, Report};
use rbuild_parser::{Dockerfile, Severity};

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
    pub fn source(&self) -> NamedSource<Arc<str>> {
        NamedSource::new(&self.name, self.text.clone())
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

/// The Dockerfile path a build uses: `-f FILE` (relative to the current directory) or
/// `CONTEXT/Dockerfile`; `-` is stdin.
pub fn locate(file: Option<&Path>, context: &Path) -> Option<PathBuf> {
    match file {
        Some(f) if f == Path::new("-") => None,
        Some(f) => Some(f.to_path_buf()),
        None => Some(context.join("Dockerfile")),
    }
}

pub fn read(path: Option<&Path>) -> miette::Result<(DockerfileText, Vec<u8>)> {
    let (name, bytes) = match path {
        None => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).map_err(|e| {
                miette::miette!(
                    code = "rbuild::io",
                    "cannot read the Dockerfile from stdin: {e}"
                )
            })?;
            ("<stdin>".to_string(), bytes)
        }
        Some(path) => {
            let bytes = fs_err::read(path).map_err(|e| {
                miette::miette!(
                    code = "rbuild::build::no_dockerfile",
                    help =
                        "pass the Dockerfile with `-f FILE`, or run from the directory that has it",
                    "cannot read the Dockerfile: {e}"
                )
            })?;
            (display_name(path), bytes)
        }
    };
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

/// Parse; print warnings; fail with every error rendered (the first as the report, the rest
/// as related diagnostics).
pub fn parse(text: &DockerfileText, bytes: &[u8], quiet: bool) -> miette::Result<Dockerfile> {
    let parsed = rbuild_parser::parse_bytes(bytes).parsed;
    let source = text.source();
    let treat_warnings_as_errors = parsed.dockerfile.directives.check.error;
    let (errors, warnings): (Vec<_>, Vec<_>) = parsed
        .diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error || treat_warnings_as_errors);
    if !quiet {
        for warning in warnings {
            eprintln!(
                "{:?}",
                Report::new(warning).with_source_code(source.clone())
            );
        }
    }
    if errors.is_empty() {
        return Ok(parsed.dockerfile);
    }
    let count = errors.len();
    let mut iter = errors.into_iter();
    let first = iter.next().expect("at least one error");
    let rest: Vec<Report> = iter
        .map(|d| Report::new(d).with_source_code(source.clone()))
        .collect();
    for extra in &rest {
        eprintln!("{extra:?}");
    }
    let report = Report::new(first).with_source_code(source);
    if count > 1 {
        Err(report.wrap_err(format!("{count} errors in {}", text.name)))
    } else {
        Err(report)
    }
}
