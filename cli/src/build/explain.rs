//! Rendering cache explanations: one line per cached step, a miette report per missed step
//! (pointing at its instruction, one label per reason), or JSON for CI.

use std::io::Write;

use miette::{Diagnostic, LabeledSpan, Report, SourceSpan};
use rbuild_solver::explain::{MissReason, StepExplanation};
use rbuild_solver::plan::Planned;
use rbuild_solver::scheduler::Solved;

use super::dockerfile::DockerfileText;

/// Explanations of every file-changing step of the needed stages, in build order.
pub fn collect(planned: &Planned, solved: &Solved, order: &[usize]) -> Vec<StepExplanation> {
    let mut out = Vec::new();
    for &s in order {
        let stage = &planned.plan.stages[s];
        let Some(outcome) = &solved.stages[s] else {
            continue;
        };
        for (step, record) in stage.steps.iter().zip(&outcome.steps) {
            if !step.op.changes_files() {
                continue;
            }
            out.push(StepExplanation {
                stage: stage.label(),
                step: step.display.clone(),
                line: step.site.line,
                span: step.site.span.clone(),
                key: record.key.as_ref().map(|k| k.0.clone()).unwrap_or_default(),
                cached: record.cached,
                reasons: record.reasons.clone(),
            });
        }
    }
    out
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
pub fn print(text: &DockerfileText, explanations: &[StepExplanation], json: bool) -> usize {
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
