//! `StageNameCasing`: stage names (`AS name`) are lowercase.

use super::{Context, Rule};
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for st in &cx.stages.stages {
        if let (Some(name), Some(lower)) = (&st.from.stage_name, st.name_lowercase())
            && name.value != *lower
        {
            out.push(lint(
                Rule::StageNameCasing,
                name.span,
                format!("Stage name '{}' should be lowercase", name.value),
            ));
        }
    }
}
