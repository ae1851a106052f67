//! `ContinuationAtEof`: the last instruction ends with an escape at the end of the file (the
//! parser records where).

use super::{Context, Rule};
use crate::diagnostics::{ParseDiagnostic, lint, lint_help};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    if let Some(span) = cx.extras.eof_continuation {
        out.push(lint_help(
            lint(
                Rule::ContinuationAtEof,
                span,
                "the last instruction ends with a line continuation at the end of the file".into(),
            ),
            "remove the trailing escape character",
        ));
    }
}
