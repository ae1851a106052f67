//! `NoEmptyContinuation`: an empty line inside a continued instruction (the parser records
//! where).

use super::{Context, Rule};
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for span in &cx.extras.empty_continuations {
        out.push(lint(
            Rule::NoEmptyContinuation,
            *span,
            "Empty continuation line".into(),
        ));
    }
}
