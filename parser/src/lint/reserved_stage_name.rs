//! `ReservedStageName`: no stage is named `scratch` or `context` (ignoring ASCII case).

use super::{Context, Rule};
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for st in &cx.stages.stages {
        if let (Some(name), Some(lower)) = (&st.from.stage_name, st.name_lowercase())
            && (lower == "scratch" || lower == "context")
        {
            out.push(lint(
                Rule::ReservedStageName,
                name.span,
                format!("Stage name should not use the same name as reserved stage \"{lower}\""),
            ));
        }
    }
}
