//! `WorkdirRelativePath`: a relative `WORKDIR` before any absolute one in its stage (it
//! depends on the base image's working directory). A path starting with `$` counts as
//! absolute.

use super::{Context, Rule};
use crate::ast::Instruction;
use crate::diagnostics::{ParseDiagnostic, lint};

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<ParseDiagnostic>) {
    for st in &cx.stages.stages {
        let mut absolute_workdir = false;
        for ins in st.instructions {
            let Instruction::Workdir(w) = ins else {
                continue;
            };
            let p = &w.path.value;
            if p.starts_with('/') || p.starts_with('$') {
                absolute_workdir = true;
            } else if !absolute_workdir {
                out.push(lint(
                    Rule::WorkdirRelativePath,
                    w.path.span,
                    format!(
                        "Relative workdir \"{p}\" can have unexpected results if the base image changes"
                    ),
                ));
            }
        }
    }
}
