//! The cli's side of a build's reporting: [`BuildView`] renders what the engine reports (step
//! events through [`ProgressReporter`], warnings and diagnostics on stderr, registry
//! transfers as `rbuild pull`/`push` show them), and [`print_explanations`] renders cache
//! explanations (one line per cached step, a miette report per missed step pointing at its
//! instruction with one label per reason, or JSON for CI).

use std::io::Write;
use std::sync::OnceLock;

use miette::{Diagnostic, LabeledSpan, Report, SourceSpan};
use rbuild_engine::dockerfile::DockerfileText;
use rbuild_engine::{Notice, Transfer};
use rbuild_solver::explain::{MissReason, StepExplanation};
use rbuild_solver::reporter::Event;

use crate::commands::build::Progress;
use crate::commands::pull::TransferProgress;
use crate::progress::ProgressReporter;

/// Renders one command's build: `quiet` hides everything but errors (and the final id);
/// `transfers` shows registry transfers.
pub struct BuildView {
    progress: Progress,
    quiet: bool,
    transfers: bool,
    /// The step view of the build (its counts make the summary), made when solving starts.
    first: OnceLock<ProgressReporter>,
    /// The step view of `--verify-reproducible`'s second build, from its start.
    second: OnceLock<ProgressReporter>,
    /// Whether the second build is running (its events and lines go to its own view).
    in_second: std::sync::atomic::AtomicBool,
}

impl BuildView {
    pub fn new(progress: Progress, quiet: bool) -> BuildView {
        BuildView {
            progress,
            quiet,
            transfers: !quiet && !matches!(progress, Progress::Json | Progress::Quiet),
            first: OnceLock::new(),
            second: OnceLock::new(),
            in_second: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The step view of the first build (summary, `wrote`/`tagged` lines).
    pub fn view(&self) -> &ProgressReporter {
        self.first
            .get_or_init(|| ProgressReporter::new(self.progress, self.quiet))
    }

    fn current(&self) -> &ProgressReporter {
        match self.second.get() {
            Some(second) if self.in_second.load(std::sync::atomic::Ordering::SeqCst) => second,
            _ => self.view(),
        }
    }
}

impl rbuild_solver::reporter::Reporter for BuildView {
    fn event(&self, event: Event<'_>) {
        self.current().event(event);
    }
}

impl rbuild_engine::Reporter for BuildView {
    fn platform_event(&self, platform: &rbuild_solver::op::Platform, event: Event<'_>) {
        self.current().event_in(Some(platform), event);
    }

    fn notice(&self, notice: Notice<'_>) {
        match notice {
            Notice::Diagnostic { report, error } => {
                if error || !self.quiet {
                    eprintln!("{report:?}");
                }
            }
            Notice::Message(text) => {
                if !self.quiet {
                    eprintln!("{text}");
                }
            }
            Notice::Problem(text) => eprintln!("{text}"),
            Notice::Line(text) => self.current().line(text),
            Notice::Explained {
                dockerfile,
                explanations,
            } => {
                print_explanations(dockerfile, explanations, false);
            }
            Notice::Pass(pass) => {
                if pass == 1 {
                    self.view();
                } else {
                    let _ = self
                        .second
                        .set(ProgressReporter::new(self.progress, self.quiet));
                }
                self.in_second
                    .store(pass > 1, std::sync::atomic::Ordering::SeqCst);
            }
            Notice::Finishing => {
                self.in_second
                    .store(false, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    fn transfer(&self, direction: Transfer) -> Box<dyn rbuild_registry::Progress + '_> {
        Box::new(TransferProgress::new(
            direction == Transfer::Push,
            !self.transfers,
        ))
    }
}

/// A missed step as a diagnostic: the summary, the instruction underlined, each reason a label.
#[derive(Debug)]
struct Missed {
    summary: String,
    span: SourceSpan,
    reasons: Vec<MissReason>,
}

impl std::fmt::Display for Missed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

impl std::error::Error for Missed {}

impl Diagnostic for Missed {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new("rbuild::explain::miss"))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Warning)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let label = match self.reasons.as_slice() {
            [one] => one.to_string(),
            many => format!("{} reasons, see below", many.len()),
        };
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(label),
            self.span,
        ))))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        if self.reasons.len() < 2 {
            return None;
        }
        let lines: Vec<String> = self.reasons.iter().map(|r| format!("- {r}")).collect();
        Some(Box::new(lines.join("\n")))
    }
}

/// Print explanations; returns how many steps missed.
pub fn print_explanations(
    text: &DockerfileText,
    explanations: &[StepExplanation],
    json: bool,
) -> usize {
    let missed = explanations.iter().filter(|e| !e.cached).count();
    if json {
        let value = serde_json::json!({
            "dockerfile": text.name,
            "steps": explanations,
            "missed": missed,
            "cached": explanations.len() - missed,
        });
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&value).expect("json")
        );
        return missed;
    }
    for e in explanations {
        if e.cached {
            println!("{}", e.summary(&text.name));
            continue;
        }
        // Keep the first line of multi-line instructions for the label.
        let span_len = text.text[e.span.clone()].find('\n').unwrap_or(e.span.len());
        let report = Report::new(Missed {
            summary: e.summary(&text.name),
            span: (e.span.start, span_len).into(),
            reasons: e.reasons.clone(),
        })
        .with_source_code(text.source());
        println!("{report:?}");
    }
    println!(
        "{} steps: {} cached, {} would run",
        explanations.len(),
        explanations.len() - missed,
        missed
    );
    missed
}
