//! How a build step fails, as its user sees it: a report labelled at the instruction (the CLI
//! attaches the Dockerfile text), with a help line — the command and exit status, the last lines
//! of output and the full log for RUN; the path and what to do for COPY/ADD.

use std::fmt::Display;
use std::io;

use miette::{Diagnostic, LabeledSpan, SourceSpan};
use rbuild_solver::op::Step;

/// A failure inside a file step, before it is tied to its instruction.
#[derive(Debug)]
pub enum StepError {
    Io {
        action: &'static str,
        path: String,
        source: io::Error,
    },
    Chown {
        spec: String,
        message: String,
    },
    Invalid {
        message: String,
    },
    SourceMissing {
        path: String,
    },
    ContextChanged {
        path: String,
    },
    Archive {
        message: String,
    },
    Exec(crate::error::ExecError),
    Store(rbuild_store::Error),
}

impl StepError {
    pub fn io(action: &'static str, path: impl Display, source: io::Error) -> StepError {
        StepError::Io {
            action,
            path: path.to_string(),
            source,
        }
    }
}

impl From<crate::error::ExecError> for StepError {
    fn from(e: crate::error::ExecError) -> Self {
        StepError::Exec(e)
    }
}

impl From<rbuild_store::Error> for StepError {
    fn from(e: rbuild_store::Error) -> Self {
        StepError::Store(e)
    }
}

/// A step failure tied to its instruction.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StepFailure {
    /// The failure's class: a failed step is the build's input's, a store fault while
    /// running it is the store's.
    pub class: rbuild_store::ErrorClass,
    pub code: &'static str,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
    pub span: SourceSpan,
}

impl Diagnostic for StepFailure {
    fn code<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(self.label.clone()),
            self.span,
        ))))
    }
}

/// The code of a step that failed on a store fault.
const STORE_CODE: &str = "rbuild::store::build";

/// The first line of the instruction, for labels.
pub fn step_span(step: &Step) -> SourceSpan {
    (
        step.site.span.start,
        step.site.span.end - step.site.span.start,
    )
        .into()
}

impl StepError {
    /// Tie the failure to `step`.
    pub fn at(self, step: &Step) -> miette::Report {
        let span = step_span(step);
        let what = step
            .display
            .split_whitespace()
            .next()
            .unwrap_or("step")
            .to_string();
        let (code, message, label, help) = match self {
            // Rootless, an owner the user namespace does not map is EINVAL.
            StepError::Io { action, path, source }
                if source.raw_os_error() == Some(libc::EINVAL)
                    && rbuild_store::userns::rootless() =>
            {
                (
                    "rbuild::build::io",
                    format!(
                        "{what} failed: cannot {action} `{path}`: an owner is outside the ids \
                         rbuild's user namespace maps ({source})"
                    ),
                    "while running this".to_string(),
                    Some(
                        "rootless, container ids are 0 and your ranges in /etc/subuid and \
                         /etc/subgid; with `--userns=single` only 0 exists, so `--chown` to \
                         another id cannot work: drop it, or build with subordinate ids"
                            .to_string(),
                    ),
                )
            }
            StepError::Io { action, path, source } => (
                "rbuild::build::io",
                format!("{what} failed: cannot {action} `{path}`: {source}"),
                "while running this".to_string(),
                Some("check the paths involved and that the disk is not full".to_string()),
            ),
            StepError::Chown { spec, message } => (
                "rbuild::build::chown",
                format!("{what} --chown={spec}: {message}"),
                "the image has no such user or group".to_string(),
                Some(
                    "names are looked up in the image's `/etc/passwd` and `/etc/group`: create \
                     them in an earlier step (e.g. `RUN adduser -D NAME`), or use numeric ids \
                     like `--chown=1000:1000`"
                        .to_string(),
                ),
            ),
            StepError::Invalid { message } => (
                "rbuild::build::invalid",
                format!("{what} failed: {message}"),
                "here".to_string(),
                None,
            ),
            StepError::SourceMissing { path } => (
                "rbuild::build::source_missing",
                format!("{what} failed: `{path}` not found in the source stage"),
                "copies from here".to_string(),
                Some("check the path in the stage named by --from (it is resolved inside that stage's filesystem)".to_string()),
            ),
            StepError::ContextChanged { path } => (
                "rbuild::build::context_changed",
                format!("{what} failed: `{path}` changed in the build context while the build ran"),
                "reads it".to_string(),
                Some("do not modify the context during a build; run the build again".to_string()),
            ),
            StepError::Archive { message } => (
                "rbuild::build::archive",
                format!("{what} failed: cannot extract the archive: {message}"),
                "extracts it".to_string(),
                Some("check the archive; entries may not leave the destination".to_string()),
            ),
            StepError::Exec(e) => {
                let help = e.help().map(|h| h.to_string());
                ("rbuild::build::exec", format!("{what} failed: {e}"), "here".to_string(), help)
            }
            StepError::Store(e) => {
                let help = e.help().map(|h| h.to_string());
                (STORE_CODE, format!("{what} failed: {e}"), "here".to_string(), help)
            }
        };
        let class = if code == STORE_CODE {
            rbuild_store::ErrorClass::Store
        } else {
            rbuild_store::ErrorClass::Input
        };
        miette::Report::new(StepFailure {
            class,
            code,
            message,
            label,
            help,
            span,
        })
    }
}
